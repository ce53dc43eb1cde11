"""Fit the MF model and measure it: training speed and held-out rating error."""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Callable

import numpy as np
import tensorflow as tf
import tf_keras as keras

from movierec.components import features
from movierec.components.mf.data import RatingTensors, epoch_batches
from movierec.components.mf import ials
from movierec.components.mf.biases import BIAS_L2, fit_bias_baseline
from movierec.components.mf.model import MatrixFactorization
from movierec.components.training_data import Interactions
from movierec.config import MFConfig


@dataclasses.dataclass(frozen=True)
class TrainResult:
    epochs: int
    train_examples: int
    fit_seconds: float
    examples_per_second: float           # all epochs, first-step tracing included
    steady_examples_per_second: float    # epochs after the first (no tracing), eval passes excluded
    loss_history: list[float]
    eval_rmse_history: list[float]


def rating_errors(model: MatrixFactorization, data: Interactions, sizes: tuple[int, int],
                  scale: tuple[float, float]) -> dict:
    """RMSE and MAE of clipped predictions on `data` (unknown users/movies included)."""
    num_users, num_movies = sizes
    users = tf.constant(data.user_idx)
    movies = tf.constant(data.movie_idx)
    pred = model.predict_known(users, movies, users < num_users, movies < num_movies)
    pred = np.clip(pred.numpy(), *scale)
    err = pred - data.rating
    return {"rmse": float(np.sqrt(np.mean(err ** 2))), "mae": float(np.mean(np.abs(err))),
            "examples": int(len(err))}


def make_train_step(model: MatrixFactorization, optimizer, data: RatingTensors) -> callable:
    """One optimisation step as a graph function.

    AutoGraph is off: Keras' own `fit` would send its whole training machinery through
    AutoGraph, which costs 10-20 s of tracing before the first step on this model; the
    step below is plain TF and traces in well under a second.
    """

    @tf.function(autograph=False, input_signature=[tf.TensorSpec([None], tf.int64)])
    def step(batch_idx):
        user_idx = tf.gather(data.user_idx, batch_idx)
        movie_idx = tf.gather(data.movie_idx, batch_idx)
        rating = tf.gather(data.rating, batch_idx)
        with tf.GradientTape() as tape:
            pred = model({features.USER_IDX: user_idx, features.MOVIE_IDX: movie_idx}, training=True)
            mse = tf.reduce_mean(tf.square(pred - rating))
            loss = mse + tf.add_n(model.losses) if model.losses else mse
        variables = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    return step


def build(config: MFConfig, num_users: int, num_movies: int, global_mean: float) -> MatrixFactorization:
    """A freshly initialised model with its variables created (so they can be assigned)."""
    model = MatrixFactorization(num_users, num_movies, config.embedding_dim, config.l2,
                                global_mean, seed=config.seed, objective=config.objective)
    zero = tf.zeros([1], tf.int64)
    model({features.USER_IDX: zero, features.MOVIE_IDX: zero})
    return model


def fit(config: MFConfig, train: Interactions, num_users: int, num_movies: int,
        eval_data: Interactions | None = None,
        scale: tuple[float, float] = (0.5, 5.0),
        init: Callable[[MatrixFactorization], None] | None = None) -> tuple[MatrixFactorization, TrainResult]:
    """Trains with Adam on shuffled in-memory batches; eval RMSE after every epoch
    (objective "mse"), or by alternating least squares (objective "ials", `fit_ials`).

    `init(model)` runs on the built model before the first step (warm start)."""
    if config.objective == "ials":
        return fit_ials(config, train, num_users, num_movies, init)
    tf.keras.utils.set_random_seed(config.seed)
    global_mean = float(np.mean(train.rating))
    model = build(config, num_users, num_movies, global_mean)
    if init is not None:
        init(model)
    optimizer = keras.optimizers.Adam(config.learning_rate)
    step = make_train_step(model, optimizer, RatingTensors.from_interactions(train))
    rng = np.random.default_rng(config.seed)
    losses, curve, epoch_seconds = [], [], []
    start = time.perf_counter()
    for epoch in range(config.epochs):
        epoch_start = time.perf_counter()
        batch_losses = [step(idx) for idx in epoch_batches(len(train), config.batch_size, rng)]
        losses.append(float(tf.reduce_mean(batch_losses)))  # one host sync per epoch
        epoch_seconds.append(time.perf_counter() - epoch_start)
        if eval_data is not None and len(eval_data):
            curve.append(rating_errors(model, eval_data, (num_users, num_movies), scale)["rmse"])
        logging.info("MF epoch %d/%d: loss %.4f%s", epoch + 1, config.epochs, losses[-1],
                     f", eval RMSE {curve[-1]:.4f}" if curve else "")
    seconds = time.perf_counter() - start
    n = len(train) * config.epochs
    result = TrainResult(
        epochs=config.epochs, train_examples=len(train), fit_seconds=seconds,
        examples_per_second=n / seconds if seconds > 0 else float("inf"),
        steady_examples_per_second=(len(train) * (len(epoch_seconds) - 1) / sum(epoch_seconds[1:])
                                    if len(epoch_seconds) > 1 and sum(epoch_seconds[1:]) > 0
                                    else n / seconds if seconds > 0 else float("inf")),
        loss_history=losses, eval_rmse_history=curve)
    logging.info("MF fit: %d epochs x %d ratings in %.1f s = %.0f examples/s (%.0f/s after the "
                 "first epoch)", config.epochs, len(train), seconds, result.examples_per_second,
                 result.steady_examples_per_second)
    return model, result


def fit_ials(config: MFConfig, train: Interactions, num_users: int, num_movies: int,
             init: Callable[[MatrixFactorization], None] | None = None,
             bias_l2: float = BIAS_L2) -> tuple[MatrixFactorization, TrainResult]:
    """The ranking objective: iALS factors for top-k plus the ridge bias model for ratings.

    With `init` (warm start), the sweeps start from the model's remapped rows instead of
    random ones. Loss history: the iALS objective after each sweep."""
    mu, bu, bm = fit_bias_baseline(train, num_users, num_movies, bias_l2)
    model = build(config, num_users, num_movies, mu)
    start_users = start_movies = None
    if init is not None:
        init(model)
        start_users = model.user_embedding.embeddings.numpy()[:num_users]
        start_movies = model.movie_embedding.embeddings.numpy()[:num_movies]
    result = ials.fit(train.user_idx, train.movie_idx, num_users, num_movies, dim=config.embedding_dim,
                      alpha0=config.ials_alpha0, reg=config.ials_reg, iterations=config.ials_iterations,
                      seed=config.seed, init_user_factors=start_users, init_movie_factors=start_movies)
    zero_row = np.zeros((1, config.embedding_dim), np.float32)   # OOV: no factors, no bias
    model.user_embedding.embeddings.assign(np.vstack([result.user_factors, zero_row]))
    model.movie_embedding.embeddings.assign(np.vstack([result.movie_factors, zero_row]))
    model.user_bias.embeddings.assign(bu[:, None].astype(np.float32))
    model.movie_bias.embeddings.assign(bm[:, None].astype(np.float32))
    n = len(train) * config.ials_iterations
    seconds = result.fit_seconds
    speed = n / seconds if seconds > 0 else float("inf")
    logging.info("iALS fit: %d sweeps over %d ratings in %.1f s", config.ials_iterations, len(train), seconds)
    return model, TrainResult(epochs=config.ials_iterations, train_examples=len(train), fit_seconds=seconds,
                              examples_per_second=speed, steady_examples_per_second=speed,
                              loss_history=result.loss_history, eval_rmse_history=[])
