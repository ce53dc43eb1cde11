"""Fit the MF model and measure it: training speed and held-out rating error."""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Callable

import numpy as np
import tensorflow as tf

from movierec.components import features
from movierec.components.mf.adam import Adam
from movierec.components.mf.data import RatingTensors
from movierec.components.mf import bayes, ials
from movierec.components.mf.low_rank import refactor
from movierec.components.mf.biases import BIAS_L2, fit_bias_baseline
from movierec.components.mf.model import MatrixFactorization, RankAndRate, genre_features
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
    part_seconds: dict = dataclasses.field(default_factory=dict)   # "ials+bayes": fit seconds of each half


def rating_errors(model: MatrixFactorization, data: Interactions, sizes: tuple[int, int],
                  scale: tuple[float, float], batch_size: int = 1 << 16) -> dict:
    """RMSE and MAE of clipped predictions on `data` (unknown users/movies included).

    Pairs are predicted `batch_size` at a time: each batch gathers [batch, dim] factors per
    side (a single batch of 5M eval ratings at width 128 would gather 2 x 2.6 GB)."""
    num_users, num_movies = sizes
    pred = np.empty(len(data), np.float32)
    for start in range(0, len(data), batch_size):
        users = tf.constant(data.user_idx[start:start + batch_size])
        movies = tf.constant(data.movie_idx[start:start + batch_size])
        pred[start:start + batch_size] = model.predict_known(users, movies, users < num_users,
                                                             movies < num_movies).numpy()
    pred = np.clip(pred, *scale)
    err = pred - data.rating
    return {"rmse": float(np.sqrt(np.mean(err ** 2))), "mae": float(np.mean(np.abs(err))),
            "examples": int(len(err))}


def make_epoch(model: MatrixFactorization, optimizer: Adam, data: RatingTensors, batch_size: int) -> callable:
    """One epoch as one graph call: perm int64 [n] (a permutation of the rows) -> mean
    batch loss. The batches perm[0:B], perm[B:2B], ... run in a `tf.while_loop`, so there
    is no Python between steps; batches gather their rows from the in-memory tensors.

    AutoGraph is off (the loop is written with `tf.while_loop`): Keras' `fit` sends its
    whole training machinery through AutoGraph, 10-20 s of tracing on this model; this
    traces in well under a second.
    """
    n = int(data.rating.shape[0])
    num_batches = -(-n // batch_size)
    variables = model.trainable_variables

    def step(batch_idx):
        with tf.GradientTape() as tape:
            loss = model.training_loss(tf.gather(data.user_idx, batch_idx), tf.gather(data.movie_idx, batch_idx),
                                       tf.gather(data.rating, batch_idx))
        optimizer.apply(tape.gradient(loss, variables))
        return loss

    @tf.function(autograph=False, input_signature=[tf.TensorSpec([n], tf.int64)])
    def epoch(perm):
        def body(i, total):
            return i + 1, total + step(perm[i * batch_size: tf.minimum((i + 1) * batch_size, n)])
        _, total = tf.while_loop(lambda i, _: i < num_batches, body, (tf.constant(0), tf.constant(0.0)))
        return total / num_batches

    return epoch


def with_oov_row(rows: np.ndarray) -> np.ndarray:
    """[n, k] -> float32 [n + 1, k]: a zero row for the OOV index (no factors, no bias)."""
    return np.vstack([rows, np.zeros((1, rows.shape[1]))]).astype(np.float32)


def hybrid_features(config: MFConfig, genre_matrix: np.ndarray | None, num_movies: int) -> np.ndarray | None:
    """The hybrid's movie features [N, G] when `config.hybrid`, else None."""
    if not config.hybrid:
        return None
    if genre_matrix is None:
        raise ValueError("config.hybrid is set but no genre matrix was given")
    if len(genre_matrix) != num_movies:
        raise ValueError(f"genre matrix has {len(genre_matrix)} rows, expected {num_movies} movies")
    return genre_features(genre_matrix)


def build(config: MFConfig, num_users: int, num_movies: int, global_mean: float,
          genre_matrix: np.ndarray | None = None) -> MatrixFactorization:
    """A freshly initialised model with its variables created (so they can be assigned).

    genre_matrix: multi-hot [num_movies, G], needed when `config.hybrid`."""
    model = MatrixFactorization(num_users, num_movies, config.embedding_dim, config.l2,
                                global_mean, seed=config.seed, objective=config.objective,
                                movie_features=hybrid_features(config, genre_matrix, num_movies))
    zero = tf.zeros([1], tf.int64)
    model({features.USER_IDX: zero, features.MOVIE_IDX: zero})
    return model


def fit(config: MFConfig, train: Interactions, num_users: int, num_movies: int,
        eval_data: Interactions | None = None,
        scale: tuple[float, float] = (0.5, 5.0),
        init: Callable[[MatrixFactorization], None] | None = None,
        genre_matrix: np.ndarray | None = None) -> tuple[MatrixFactorization, TrainResult]:
    """Trains with Adam on shuffled in-memory batches, an epoch per graph call; eval RMSE after every epoch
    (objective "mse"), or by alternating least squares (objective "ials", `fit_ials`), Gibbs
    sampling (objective "bayes", `fit_bayes`) or both side by side ("ials+bayes", `fit_rank_and_rate`).

    `init(model)` runs on the built model before the first step (warm start).
    genre_matrix: multi-hot [num_movies, G] (the catalog's), needed when `config.hybrid`."""
    if config.objective == "ials+bayes":
        return fit_rank_and_rate(config, train, num_users, num_movies, init, genre_matrix=genre_matrix)
    if config.objective == "ials":
        return fit_ials(config, train, num_users, num_movies, init, genre_matrix=genre_matrix)
    if config.objective == "bayes":
        return fit_bayes(config, train, num_users, num_movies, genre_matrix=genre_matrix)
    tf.keras.utils.set_random_seed(config.seed)
    global_mean = float(np.mean(train.rating))
    model = build(config, num_users, num_movies, global_mean, genre_matrix)
    if init is not None:
        init(model)
    optimizer = Adam(model.trainable_variables, config.learning_rate)
    run_epoch = make_epoch(model, optimizer, RatingTensors.from_interactions(train), config.batch_size)
    rng = np.random.default_rng(config.seed)
    losses, curve, epoch_seconds = [], [], []
    start = time.perf_counter()
    for epoch in range(config.epochs):
        epoch_start = time.perf_counter()
        losses.append(float(run_epoch(rng.permutation(len(train)))))  # one host sync per epoch
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


def fit_rank_and_rate(config: MFConfig, train: Interactions, num_users: int, num_movies: int,
                      init: Callable[[MatrixFactorization], None] | None = None,
                      genre_matrix: np.ndarray | None = None) -> tuple[RankAndRate, TrainResult]:
    """The default MF: the iALS ranker (`fit_ials`, warm-started by `init`) and the Bayesian
    rater (`fit_bayes`, which always starts from its prior), fitted on the same ratings.
    Loss history: the ranker's (iALS objective per sweep); epochs: its sweeps."""
    ranker, ranked = fit_ials(dataclasses.replace(config, objective="ials"), train, num_users, num_movies, init,
                              genre_matrix=genre_matrix)
    rater, rated = fit_bayes(dataclasses.replace(config, objective="bayes", embedding_dim=config.bayes_dim), train,
                             num_users, num_movies, genre_matrix=genre_matrix)
    seconds = ranked.fit_seconds + rated.fit_seconds
    visits = ranked.examples_per_second * ranked.fit_seconds + rated.examples_per_second * rated.fit_seconds
    speed = visits / seconds if seconds > 0 else float("inf")   # ratings visited per second, both halves
    return RankAndRate(ranker, rater), dataclasses.replace(
        ranked, fit_seconds=seconds, examples_per_second=speed, steady_examples_per_second=speed,
        part_seconds={"ials": ranked.fit_seconds, "bayes": rated.fit_seconds})


def fit_ials(config: MFConfig, train: Interactions, num_users: int, num_movies: int,
             init: Callable[[MatrixFactorization], None] | None = None,
             bias_l2: float = BIAS_L2, genre_matrix: np.ndarray | None = None) -> tuple[MatrixFactorization, TrainResult]:
    """The ranking objective: iALS factors for top-k plus the ridge bias model for ratings.

    With `init` (warm start), the sweeps start from the model's remapped rows instead of
    random ones. Loss history: the iALS objective after each sweep."""
    mu, bu, bm = fit_bias_baseline(train, num_users, num_movies, bias_l2)
    model = build(config, num_users, num_movies, mu, genre_matrix)
    features_ = hybrid_features(config, genre_matrix, num_movies)
    start_users = start_movies = None
    if init is not None:
        init(model)
        start_users = model.user_embedding.embeddings.numpy()[:num_users]
        start_movies = model.movie_embedding.embeddings.numpy()[:num_movies]
        if model.hybrid:    # the sweeps work on whole movie vectors (free part + genre part)
            start_movies = start_movies + model.genre_part().numpy()
    result = ials.fit(train.user_idx, train.movie_idx, num_users, num_movies, dim=config.embedding_dim,
                      alpha0=config.ials_alpha0, reg=config.ials_reg, iterations=config.ials_iterations,
                      seed=config.seed, init_user_factors=start_users, init_movie_factors=start_movies,
                      movie_features=features_, feature_reg=config.ials_feature_reg)
    movie_free = result.movie_factors
    if model.hybrid:   # store h = v + f B as v (free part) and B (genre_embedding)
        model.genre_embedding.kernel.assign(result.genre_factors)
        movie_free = result.movie_factors - features_ @ result.genre_factors
    model.user_embedding.embeddings.assign(with_oov_row(result.user_factors))
    model.movie_embedding.embeddings.assign(with_oov_row(movie_free))
    model.user_bias.embeddings.assign(bu[:, None].astype(np.float32))
    model.movie_bias.embeddings.assign(bm[:, None].astype(np.float32))
    n = len(train) * config.ials_iterations
    seconds = result.fit_seconds
    speed = n / seconds if seconds > 0 else float("inf")
    logging.info("iALS fit: %d sweeps over %d ratings in %.1f s", config.ials_iterations, len(train), seconds)
    return model, TrainResult(epochs=config.ials_iterations, train_examples=len(train), fit_seconds=seconds,
                              examples_per_second=speed, steady_examples_per_second=speed,
                              loss_history=result.loss_history, eval_rmse_history=[])


def fit_bayes(config: MFConfig, train: Interactions, num_users: int, num_movies: int,
              genre_matrix: np.ndarray | None = None) -> tuple[MatrixFactorization, TrainResult]:
    """The best rating model: Bayesian MF by Gibbs sampling (`bayes.py`), served as one MF.

    The average over the kept samples is exactly an MF of width samples x d (`concatenated`);
    `low_rank.refactor` narrows it to its rank, at most `bayes_export_rank` columns (the
    best approximation of that rank when the cap is lower). Biases are the sample means, so
    the exported model predicts mu + b_u + b_m + <p_u, q_m> like the mse one and ranks by it.
    Ratings of OOV users/movies (index = vocabulary size) are left out of the fit.
    The sweeps follow `config.bayes_schedule` on the number of ratings fitted (the
    configured schedule up to its budget, fewer on large data).
    Loss history: the training RMSE of each sweep's sample. No warm start: a chain starts
    from its prior."""
    if config.hybrid and genre_matrix is None:
        raise ValueError("config.hybrid is set but no genre matrix was given")
    keep = (train.user_idx < num_users) & (train.movie_idx < num_movies)
    burn_in, samples, thin = config.bayes_schedule(max(1, int(keep.sum())))
    sweeps = burn_in + samples * thin

    def progress(sweep, total, stats):
        if sweep % 50 == 0 or sweep == total:
            logging.info("Bayesian MF sweep %d/%d: train RMSE %.4f", sweep, total, stats["train_rmse"])

    result = bayes.fit(train.user_idx[keep], train.movie_idx[keep], train.rating[keep], num_users, num_movies,
                       dim=config.bayes_dim, samples=samples, burn_in=burn_in,
                       thin=thin, seed=config.seed, implicit=config.bayes_implicit,
                       movie_genres=genre_matrix if config.hybrid else None, progress=progress)
    users, movies, user_bias, movie_bias = result.concatenated()
    users, movies = refactor(users, movies, rank=config.bayes_export_rank)
    width = users.shape[1]
    model = MatrixFactorization(num_users, num_movies, width, 0.0, result.global_mean, seed=config.seed,
                                objective="bayes")
    zero = tf.zeros([1], tf.int64)
    model({features.USER_IDX: zero, features.MOVIE_IDX: zero})

    model.user_embedding.embeddings.assign(with_oov_row(users))
    model.movie_embedding.embeddings.assign(with_oov_row(movies))
    model.user_bias.embeddings.assign(with_oov_row(user_bias[:, None]))
    model.movie_bias.embeddings.assign(with_oov_row(movie_bias[:, None]))
    n = int(keep.sum()) * sweeps
    speed = n / result.fit_seconds if result.fit_seconds > 0 else float("inf")
    logging.info("Bayesian MF: %d sweeps over %d ratings in %.1f s; %d samples of d=%d served as %d columns",
                 sweeps, int(keep.sum()), result.fit_seconds, samples, config.bayes_dim, width)
    return model, TrainResult(epochs=sweeps, train_examples=len(train), fit_seconds=result.fit_seconds,
                              examples_per_second=speed, steady_examples_per_second=speed,
                              loss_history=[float(x) for x in result.train_rmse], eval_rmse_history=[])
