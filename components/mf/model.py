"""Biased matrix factorization in Keras (tf_keras, Keras 2).

    rating(u, m) = global_mean + b_u + b_m + <p_u, q_m>

p_u, q_m: [dim] embeddings; b_u, b_m: scalar biases; one extra row each for the OOV index
(vocabulary size). L2: `l2 * mean_over_batch(|p_u|^2 + |q_m|^2 + 0.1 (b_u^2 + b_m^2))` is
added to the batch MSE, so only the rows a batch touches are regularised and updated.
Biases are regularised 10x less than the factors: a bias is one number shared by all of
a user's (or movie's) ratings, so it is well determined by fewer ratings than a vector is,
and shrinking it as hard as the factors costs held-out RMSE.

Objectives (`MFConfig.objective`), same variables and signatures:
  mse   the article's model: top-k ranks by the predicted rating
        mu + b_u + b_m + <p_u, q_m>.
  ials  a ranking model (`ials.py`): p, q are implicit-feedback factors and top-k ranks by
        <p_u, q_m> alone; mu, b_u, b_m are a separate rating head (the ridge bias model),
        so `predict_rating` returns mu + b_u + b_m.
  bayes the posterior mean of Bayesian MF (`bayes.py`), same formula as mse: the averaged
        samples re-factored into one p, q (wide), with averaged biases.
  ials+bayes (the default) `RankAndRate`: an ials model for top-k and a bayes model for
        ratings, side by side in one SavedModel.
Two non-trainable weights in the graph select this: `rank_with_biases` (1 / 0) and
`rate_with_factors` (1 / 0).

Hybrid (`movie_features` given, `MFConfig.hybrid`): the movie vector is its own embedding
plus a learned genre part,

    q_m = v_m + f_m W      f_m: the movie's genre row [G] (multi-hot / genre count),
                           W: genre_embedding [G, dim]

so a movie's genres pull its vector toward what its genres share, and a movie with few
ratings still gets a meaningful vector. The L2 falls on v_m (the free part), so the genre
part is the "prior mean" of each movie's vector.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras as keras

from movierec.components import features

BIAS_L2_WEIGHT = 0.1
OBJECTIVES = ("mse", "ials", "bayes")   # of one MatrixFactorization; "ials+bayes" is `RankAndRate`


def genre_features(genre_matrix: np.ndarray) -> np.ndarray:
    """Hybrid movie features: multi-hot genres [N, G] -> each row divided by its genre count
    (a movie without genres gets a zero row). float32 [N, G]."""
    g = np.asarray(genre_matrix, np.float32)
    if g.ndim != 2:
        raise ValueError(f"genre_matrix must be [movies, genres], got shape {g.shape}")
    return g / np.maximum(g.sum(axis=1, keepdims=True), 1.0)


class MatrixFactorization(keras.Model):
    def __init__(self, num_users: int, num_movies: int, embedding_dim: int, l2: float,
                 global_mean: float, seed: int = 42, objective: str = "mse",
                 movie_features: np.ndarray | None = None, **kwargs):
        """movie_features: float32 [num_movies, G] (see `genre_features`) makes it a hybrid."""
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
        for layer in (self.user_embedding, self.movie_embedding, self.user_bias, self.movie_bias):
            layer.build(None)   # variables exist from the start (the lookups below use them directly)
        self.global_mean = tf.Variable(float(global_mean), trainable=False, name="global_mean")
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        self.objective = objective
        ranking_only = 0.0 if objective == "ials" else 1.0
        self.rank_with_biases = tf.Variable(ranking_only, trainable=False, name="rank_with_biases")
        self.rate_with_factors = tf.Variable(ranking_only, trainable=False, name="rate_with_factors")
        self.movie_features = self.genre_embedding = None
        if movie_features is not None:
            f = np.asarray(movie_features, np.float32)
            if f.ndim != 2 or f.shape[0] != num_movies or f.shape[1] < 1:
                raise ValueError(f"movie_features must be [num_movies={num_movies}, genres >= 1], "
                                 f"got shape {f.shape}")
            f = np.vstack([f, np.zeros((1, f.shape[1]), np.float32)])   # the OOV movie: no genres
            self.movie_features = tf.Variable(f, trainable=False, name="movie_features")
            self.genre_embedding = keras.layers.Dense(embedding_dim, use_bias=False, kernel_initializer="zeros",
                                                      name="genre_embedding")
            self.genre_embedding.build((None, f.shape[1]))

    @property
    def hybrid(self) -> bool:
        return self.movie_features is not None

    def genre_part(self, movie_idx: tf.Tensor | None = None) -> tf.Tensor | None:
        """f_m W for movie_idx [B] -> [B, dim] (all known movies [N, dim] when None); None
        when the model is not a hybrid."""
        if not self.hybrid:
            return None
        f = (self.movie_features[: self.num_movies] if movie_idx is None
             else tf.gather(self.movie_features, movie_idx))
        return tf.matmul(f, self.genre_embedding.kernel)

    def _parts(self, user_idx: tf.Tensor, movie_idx: tf.Tensor):
        """-> p [B, dim], q [B, dim] (hybrid: v + genre part), b_u [B], b_m [B], v [B, dim]."""
        # plain gathers, not the layers' __call__: the same lookup, without Keras' per-call
        # machinery, which tracing the training epoch would otherwise go through
        p = tf.gather(self.user_embedding.embeddings, user_idx)      # [B, dim]
        v = tf.gather(self.movie_embedding.embeddings, movie_idx)    # [B, dim]
        genre = self.genre_part(movie_idx)
        q = v if genre is None else v + genre
        bu = tf.gather(self.user_bias.embeddings[:, 0], user_idx)    # [B]
        bm = tf.gather(self.movie_bias.embeddings[:, 0], movie_idx)
        return p, q, bu, bm, v

    @tf.autograph.experimental.do_not_convert  # plain TF code: skip AutoGraph's slow rewrite
    def call(self, inputs, training=False):
        """inputs: {user_idx: int64 [B], movie_idx: int64 [B]} -> predicted rating [B]."""
        p, q, bu, bm, v = self._parts(inputs[features.USER_IDX], inputs[features.MOVIE_IDX])
        if training and self.l2 > 0:
            self.add_loss(self._penalty(p, v, bu, bm))
        return self.global_mean + bu + bm + tf.reduce_sum(p * q, axis=-1)

    def _penalty(self, p, v, bu, bm) -> tf.Tensor:
        """The L2 term of a batch (scalar): l2 * mean(|p|^2 + |v|^2 + 0.1 (b_u^2 + b_m^2))."""
        penalty = (tf.reduce_sum(tf.square(p), -1) + tf.reduce_sum(tf.square(v), -1)
                   + BIAS_L2_WEIGHT * (tf.square(bu) + tf.square(bm)))
        total = self.l2 * tf.reduce_mean(penalty)
        if self.hybrid:   # W is shared by all movies: weighted like one movie row per batch
            total += (self.l2 * tf.reduce_sum(tf.square(self.genre_embedding.kernel))
                      / tf.cast(self.num_movies, tf.float32))
        return total

    def training_loss(self, user_idx: tf.Tensor, movie_idx: tf.Tensor, rating: tf.Tensor) -> tf.Tensor:
        """The objective of a batch (scalar): MSE of [B] ratings + the L2 term; the same as
        `call(training=True)` plus its added loss, without Keras' call machinery."""
        p, q, bu, bm, v = self._parts(user_idx, movie_idx)
        pred = self.global_mean + bu + bm + tf.reduce_sum(p * q, axis=-1)
        mse = tf.reduce_mean(tf.square(pred - rating))
        return mse + self._penalty(p, v, bu, bm) if self.l2 > 0 else mse

    def ranking_movie_side(self) -> tuple[np.ndarray, np.ndarray]:
        """What the ranking scores of every known movie need from the movie side, fixed once
        trained: (q^T float32 [dim, N] (hybrid: with the genre part), offset float32 [1, N]
        = rank_with_biases * (global_mean + b_m)), so that

            score_all_movies(u) = offset + rank_with_biases * b_u + p_u q^T.

        An exported model stores these instead of recomputing them on every call."""
        n = self.num_movies
        q = self.movie_embedding.embeddings[:n]
        if self.hybrid:
            q = q + self.genre_part()
        offset = self.rank_with_biases * (self.global_mean + self.movie_bias.embeddings[:n, 0])
        return (np.ascontiguousarray(q.numpy().T, np.float32),
                offset.numpy().reshape(1, n).astype(np.float32))

    def score_all_movies(self, user_idx: tf.Tensor) -> tf.Tensor:
        """Ranking scores of every known movie: user_idx int64 [B] -> float32 [B, N]
        (mse: predicted ratings; ials: <p_u, q_m>)."""
        p = tf.gather(self.user_embedding.embeddings, user_idx)          # [B, dim]
        bu = tf.gather(self.user_bias.embeddings, user_idx)              # [B, 1]
        if self.hybrid:
            q = self.movie_embedding.embeddings[: self.num_movies] + self.genre_part()   # [N, dim]
            bm = tf.reshape(self.movie_bias.embeddings[: self.num_movies], [1, -1])      # [1, N]
            return self.rank_with_biases * (self.global_mean + bu + bm) + tf.matmul(p, q, transpose_b=True)
        # all N + 1 rows (the OOV movie last), then the first N columns: slicing the [B, N + 1]
        # scores copies far less than slicing the [N + 1, dim] table on every call
        bm = tf.reshape(self.movie_bias.embeddings, [1, -1])             # [1, N + 1]
        scores = (self.rank_with_biases * (self.global_mean + bu + bm)
                  + tf.matmul(p, self.movie_embedding.embeddings, transpose_b=True))
        return scores[:, : self.num_movies]

    def predict_known(self, user_idx: tf.Tensor, movie_idx: tf.Tensor,
                      user_known: tf.Tensor, movie_known: tf.Tensor) -> tf.Tensor:
        """Rating [B] where an unknown side contributes nothing (no embedding, no bias)."""
        p, q, bu, bm, _ = self._parts(user_idx, movie_idx)
        uk = tf.cast(user_known, tf.float32)
        mk = tf.cast(movie_known, tf.float32)
        dot = self.rate_with_factors * tf.reduce_sum(p * q, axis=-1)
        return self.global_mean + uk * bu + mk * bm + uk * mk * dot


class RankAndRate(tf.Module):
    """The default MF: two factor sets side by side, each trained for the signature it serves.

      ranker  MatrixFactorization with objective "ials": `serving_default` ranks every movie
              by <p_u, q_m> (q_m with its genre part when hybrid), [B] -> [B, N];
      rater   MatrixFactorization with objective "bayes": `predict_rating` answers
              mu + b_u + b_m + <p'_u, q'_m>, [B] x [B] -> [B].

    One objective cannot serve both: squared error on observed ratings learns how much a
    user likes what they chose to watch, not what they will choose, so it ranks below
    popularity; the implicit objective ranks well but carries no rating scale. Both halves
    are the seed's biased MF (embeddings, biases, L2 or its Bayesian prior) over the same
    vocabularies, so one SavedModel holds both, and each signature matches the model it
    comes from exactly.
    """

    def __init__(self, ranker: MatrixFactorization, rater: MatrixFactorization):
        super().__init__(name="rank_and_rate")
        if (ranker.num_users, ranker.num_movies) != (rater.num_users, rater.num_movies):
            raise ValueError(f"ranker ({ranker.num_users} users, {ranker.num_movies} movies) and rater "
                             f"({rater.num_users}, {rater.num_movies}) must share vocabularies")
        self.ranker, self.rater = ranker, rater
        self.num_users, self.num_movies = ranker.num_users, ranker.num_movies

    @property
    def hybrid(self) -> bool:
        return self.ranker.hybrid

    def score_all_movies(self, user_idx: tf.Tensor) -> tf.Tensor:
        """The ranker's scores: user_idx int64 [B] -> float32 [B, N]."""
        return self.ranker.score_all_movies(user_idx)

    def predict_known(self, user_idx: tf.Tensor, movie_idx: tf.Tensor,
                      user_known: tf.Tensor, movie_known: tf.Tensor) -> tf.Tensor:
        """The rater's ratings [B] (an unknown side contributes nothing)."""
        return self.rater.predict_known(user_idx, movie_idx, user_known, movie_known)
