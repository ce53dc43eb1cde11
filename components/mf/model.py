"""Biased matrix factorization in Keras (tf_keras, Keras 2).

    rating(u, m) = global_mean + b_u + b_m + <p_u, q_m>

p_u, q_m: [dim] embeddings; b_u, b_m: scalar biases; one extra row each for the OOV index
(vocabulary size). L2: `l2 * mean_over_batch(|p_u|^2 + |q_m|^2 + 0.1 (b_u^2 + b_m^2))` is
added to the batch MSE, so only the rows a batch touches are regularised and updated.
Biases are regularised 10x less than the factors (on ML-100k this gives lower held-out
RMSE than equal weights).

Objectives (`MFConfig.objective`), same variables and signatures:
  mse   the article's model: top-k ranks by the predicted rating
        mu + b_u + b_m + <p_u, q_m>.
  ials  a ranking model (`ials.py`): p, q are implicit-feedback factors and top-k ranks by
        <p_u, q_m> alone; mu, b_u, b_m are a separate rating head (the ridge bias model),
        so `predict_rating` returns mu + b_u + b_m.
Two non-trainable weights in the graph select this: `rank_with_biases` (1 / 0) and
`rate_with_factors` (1 / 0).
"""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from movierec.components import features

BIAS_L2_WEIGHT = 0.1
OBJECTIVES = ("mse", "ials")


class MatrixFactorization(keras.Model):
    def __init__(self, num_users: int, num_movies: int, embedding_dim: int, l2: float,
                 global_mean: float, seed: int = 42, objective: str = "mse", **kwargs):
        super().__init__(**kwargs)
        if num_users < 1 or num_movies < 1:
            raise ValueError(f"need at least one user and one movie, got num_users={num_users}, "
                             f"num_movies={num_movies}")
        if embedding_dim < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
        self.num_users, self.num_movies = num_users, num_movies
        self.l2 = float(l2)
        init = keras.initializers.RandomNormal(stddev=0.05, seed=seed)
        init2 = keras.initializers.RandomNormal(stddev=0.05, seed=seed + 1)
        self.user_embedding = keras.layers.Embedding(num_users + 1, embedding_dim, embeddings_initializer=init, name="user_embedding")
        self.movie_embedding = keras.layers.Embedding(num_movies + 1, embedding_dim, embeddings_initializer=init2, name="movie_embedding")
        self.user_bias = keras.layers.Embedding(num_users + 1, 1, embeddings_initializer="zeros", name="user_bias")
        self.movie_bias = keras.layers.Embedding(num_movies + 1, 1, embeddings_initializer="zeros", name="movie_bias")
        self.global_mean = tf.Variable(float(global_mean), trainable=False, name="global_mean")
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        self.objective = objective
        ranking_only = 0.0 if objective == "ials" else 1.0
        self.rank_with_biases = tf.Variable(ranking_only, trainable=False, name="rank_with_biases")
        self.rate_with_factors = tf.Variable(ranking_only, trainable=False, name="rate_with_factors")

    def _parts(self, user_idx: tf.Tensor, movie_idx: tf.Tensor):
        p = self.user_embedding(user_idx)              # [B, dim]
        q = self.movie_embedding(movie_idx)            # [B, dim]
        bu = tf.squeeze(self.user_bias(user_idx), -1)  # [B]
        bm = tf.squeeze(self.movie_bias(movie_idx), -1)
        return p, q, bu, bm

    @tf.autograph.experimental.do_not_convert  # plain TF code: skip AutoGraph's slow rewrite
    def call(self, inputs, training=False):
        """inputs: {user_idx: int64 [B], movie_idx: int64 [B]} -> predicted rating [B]."""
        p, q, bu, bm = self._parts(inputs[features.USER_IDX], inputs[features.MOVIE_IDX])
        if training and self.l2 > 0:
            penalty = (tf.reduce_sum(tf.square(p), -1) + tf.reduce_sum(tf.square(q), -1)
                       + BIAS_L2_WEIGHT * (tf.square(bu) + tf.square(bm)))
            self.add_loss(self.l2 * tf.reduce_mean(penalty))
        return self.global_mean + bu + bm + tf.reduce_sum(p * q, axis=-1)

    def score_all_movies(self, user_idx: tf.Tensor) -> tf.Tensor:
        """Ranking scores of every known movie: user_idx int64 [B] -> float32 [B, N]
        (mse: predicted ratings; ials: <p_u, q_m>)."""
        p = self.user_embedding(user_idx)                                # [B, dim]
        bu = tf.squeeze(self.user_bias(user_idx), -1)                    # [B]
        q = self.movie_embedding.embeddings[: self.num_movies]           # [N, dim]
        bm = tf.squeeze(self.movie_bias.embeddings[: self.num_movies], -1)  # [N]
        biases = self.global_mean + bu[:, tf.newaxis] + bm[tf.newaxis, :]
        return self.rank_with_biases * biases + tf.matmul(p, q, transpose_b=True)

    def predict_known(self, user_idx: tf.Tensor, movie_idx: tf.Tensor,
                      user_known: tf.Tensor, movie_known: tf.Tensor) -> tf.Tensor:
        """Rating [B] where an unknown side contributes nothing (no embedding, no bias)."""
        p, q, bu, bm = self._parts(user_idx, movie_idx)
        uk = tf.cast(user_known, tf.float32)
        mk = tf.cast(movie_known, tf.float32)
        dot = self.rate_with_factors * tf.reduce_sum(p * q, axis=-1)
        return self.global_mean + uk * bu + mk * bm + uk * mk * dot
