"""Export the MF model as a TF Serving SavedModel with the serving contract's signatures.

Signatures:
  serving_default  user_id string [B] -> the top 10 (see `movierec.components.recommend`:
                   masked top-k, popularity fallback)
  recommend        user_id [B], k int32 [B], exclude_movie_ids string [B, E] -> the top k
                   per row (same module)
  predict_rating   user_id string [B], movie_id string [B] ->
                   rating float32 [B] (clipped to the training rating range),
                   user_known bool [B], movie_known bool [B]
                   An unknown user or movie contributes neither embedding nor bias: the
                   prediction falls back to global mean + the known side's bias.
                   Only for a model trained on ratings: a model of implicit events has no
                   rating scale to predict on, so its export has no such signature (and the
                   evaluator's rating rules do not apply to it).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from movierec.components.mf.model import MatrixFactorization, RankAndRate
from movierec.components.recommend import RatedItems, RecommenderModule, finish_export
from movierec.components.training_data import Catalog


class MFServingModule(RecommenderModule):
    """The ranking signatures of an MF model (see the module docstring)."""

    def __init__(self, model: MatrixFactorization | RankAndRate, *,
                 user_ids: list[str], genre_names: list[str] = (), **kwargs):
        super().__init__(**kwargs)
        if model.num_movies != self.num_movies or model.num_users != self.num_users:
            raise ValueError(f"model has {model.num_users} users / {model.num_movies} movies, "
                             f"catalog and mask have {self.num_users} / {self.num_movies}")
        self.model = model
        # Named handles for warm start (movierec.components.mf.warm_start): the rows of these
        # matrices follow `user_ids` / `movie_ids` (+ one OOV row last). Of a RankAndRate,
        # the ranker's: the Bayesian rater always starts from its prior.
        ranking = model.ranker if isinstance(model, RankAndRate) else model
        self.user_ids = tf.Variable(np.asarray(user_ids, dtype=object), trainable=False, name="user_ids")
        self.factors = {"user_embedding": ranking.user_embedding.embeddings,
                        "movie_embedding": ranking.movie_embedding.embeddings,
                        "user_bias": ranking.user_bias.embeddings,
                        "movie_bias": ranking.movie_bias.embeddings}
        if ranking.hybrid:   # rows follow `genre_names` (no OOV row)
            self.genre_names = tf.Variable(np.asarray(genre_names, dtype=object), trainable=False,
                                           name="genre_names")
            self.factors["genre_embedding"] = ranking.genre_embedding.kernel
        # The movie side of the ranking scores, computed once here rather than on every
        # call: q^T [dim, N] and the per-movie offset [1, N] (`ranking_movie_side`).
        self.ranker = ranking
        movie_factors_t, movie_offset = ranking.ranking_movie_side()
        self.ranking_movie_factors_t = tf.Variable(movie_factors_t, trainable=False,
                                                   name="ranking_movie_factors_t")
        self.ranking_movie_offset = tf.Variable(movie_offset, trainable=False, name="ranking_movie_offset")

    def score_users(self, user_idx):
        """user_idx int64 [B] -> the ranker's scores [B, N], as `score_all_movies` computes
        them: one [B, dim] x [dim, N] product plus the stored per-movie offset."""
        p = tf.gather(self.ranker.user_embedding.embeddings, user_idx)    # [B, dim]
        bu = tf.gather(self.ranker.user_bias.embeddings, user_idx)        # [B, 1]
        return (self.ranking_movie_offset + self.ranker.rank_with_biases * bu
                + tf.matmul(p, self.ranking_movie_factors_t))


class MFRatingServingModule(MFServingModule):
    """MFServingModule plus `predict_rating`, clipped to `rating_range` (low, high)."""

    def __init__(self, model: MatrixFactorization | RankAndRate, *, rating_range: tuple[float, float], **kwargs):
        super().__init__(model, **kwargs)
        self.rating_low = tf.constant(rating_range[0], tf.float32)
        self.rating_high = tf.constant(rating_range[1], tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id"),
                                  tf.TensorSpec([None], tf.string, name="movie_id")])
    def predict_rating(self, user_id, movie_id):
        tf.debugging.assert_equal(tf.shape(user_id), tf.shape(movie_id),
                                  message="user_id and movie_id must have the same length")
        u, uk = self.lookup_users(user_id)
        m, mk = self.lookup_movies(movie_id)
        rating = self.model.predict_known(u, m, uk, mk)
        return {"rating": tf.clip_by_value(rating, self.rating_low, self.rating_high),
                "user_known": uk, "movie_known": mk}


def export(model: MatrixFactorization | RankAndRate, export_dir: str, *, user_vocab_path: str,
           movie_vocab_path: str, user_ids: list[str], catalog: Catalog, rated: RatedItems, popularity: np.ndarray,
           rating_range: tuple[float, float] | None, max_k: int, metadata: dict | None = None) -> str:
    """Saves the SavedModel to `export_dir`; `metadata` goes to assets.extra/movierec.json.

    rating_range None: a model of implicit events, exported without `predict_rating`."""
    common = dict(user_ids=user_ids, genre_names=catalog.genre_names, user_vocab_path=user_vocab_path,
                  movie_vocab_path=movie_vocab_path, movie_ids=catalog.movie_ids, titles=catalog.titles,
                  genres=catalog.genre_strings(), rated=rated, popularity=popularity, max_k=max_k)
    if rating_range is None:
        module = MFServingModule(model, **common)
        tf.saved_model.save(module, export_dir, signatures=module.contract_signatures())
        return finish_export(export_dir, "mf", user_vocab_path, max_k, metadata=metadata)
    module = MFRatingServingModule(model, rating_range=rating_range, **common)
    signatures = {**module.contract_signatures(), "predict_rating": module.predict_rating}
    tf.saved_model.save(module, export_dir, signatures=signatures)
    return finish_export(export_dir, "mf", user_vocab_path, max_k, metadata=metadata, extra_requests=lambda user: [
        {"__signature__": "predict_rating", "user_id": np.array([user, ""], dtype=object),
         "movie_id": np.array([catalog.movie_ids[0]] * 2, dtype=object)}])
