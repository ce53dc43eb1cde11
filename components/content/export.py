"""Export a fitted content model (`profiles.ContentModel`) as a TF Serving SavedModel.

Signatures (U users, N catalog movies, G genres, D release decades, F = G + D features):

  serving_default        the shared contract (see `movierec.components.recommend`):
  recommend              user_id [B] -> top 10; user_id [B], k int32 [B], exclude_movie_ids
                         [B, E] -> top k per row. score[u, m] = profile[u] . X[m] + prior[m]
                         (`profiles.score`), rated movies masked.
  user_profile           user_id string [B] -> genres string [B, G] and weights float32 [B, G]
                         (the genre part of the profile ranked by weight, ties in vocabulary
                         order: the seed article's "Juan: Action, Sci-Fi, ..."), decades string
                         [B, D] and decade_weights float32 [B, D] (the decade part, ranked the
                         same way; D = 0 when the model has no decade features), user_known
                         bool [B]. The weights are the ones the score uses: shares summing to
                         1 for a "share" profile, log-lifts (negative: less than average) for
                         a "lift" profile.
  recommend_cold_start   user_id [B], k int32 [B] (per row, as `recommend`; [1]: every row),
                         rated_movie_ids string [B, R] + ratings float32 [B, R]  (fold-in; "" pads),
                         new_movie_ids string [B, M], new_movie_titles string [B, M],
                         new_movie_genres string [B, M, H] (genre names)  ("" pads all three)
                         -> the `recommend` outputs over the catalog + the row's new movies.
                         Every input is per row, so TF Serving's batching can merge requests.
                         Under `pad_variable_length_inputs` TF Serving widens a request's
                         tensors with their first element: rows that begin with a "" pad
                         (the README's requests do) make that padding add nothing.
                         The fold-in pairs are added to the user's stored rating sums (exact:
                         they are linear in the ratings), so an unknown user with a few ratings
                         gets a real profile, and those movies are masked too. New movies are
                         scored by their genres and the decade of their title's "(YYYY)" like
                         any catalog movie, with no popularity prior (no ratings yet).

Defined edge cases:
  * a user with an all-zero profile (rated movies without features, or an unknown user
    without fold-in pairs) is served the popularity list (`popularity` / its max, the
    unknown-user fallback's order);
  * a movie without features scores its prior only (0 for a new movie);
  * a new movie's title without a year, or with a decade no catalog movie has, adds no
    decade feature;
  * an unknown genre name in `new_movie_genres` or an unknown movie in `rated_movie_ids`
    is an INVALID_ARGUMENT error naming the rule, never silently ignored.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from movierec.components.content import profiles
from movierec.components.recommend import (DEFAULT_K, RatedItems, RecommenderModule,
                                            finish_export, vocabulary_table)
from movierec.components.training_data import Catalog


def _padded(rows: np.ndarray) -> np.ndarray:
    """Appends the OOV user's all-zero row (index U)."""
    rows = np.asarray(rows, np.float32)
    return np.concatenate([rows, np.zeros((1,) + rows.shape[1:], np.float32)])


class ContentServingModule(RecommenderModule):
    def __init__(self, *, model: profiles.ContentModel, genre_vocab_path: str, **kwargs):
        super().__init__(**kwargs)
        f = len(model.feature_names)
        if model.num_users != self.num_users or model.item_features.shape != (self.num_movies, f):
            raise ValueError(f"the content model ({model.num_users} users, item features "
                             f"{model.item_features.shape}) does not fit {self.num_users} users x "
                             f"{self.num_movies} movies x {f} features")
        self._config = model.config
        self.num_genres = model.num_genres
        self.decades = tf.Variable(np.asarray(model.decades, np.int64), trainable=False, name="decades")
        self.rating_sums = tf.Variable(_padded(model.rating_sums), trainable=False, name="rating_sums")
        self.counts = tf.Variable(_padded(model.counts), trainable=False, name="counts")
        self.num_rated = tf.Variable(_padded(model.num_rated), trainable=False, name="num_rated")
        self.rating_total = tf.Variable(_padded(model.rating_total), trainable=False, name="rating_total")
        self.feature_share = tf.Variable(model.feature_share, trainable=False, name="feature_share")
        self.item_features = tf.Variable(model.item_features, trainable=False, name="item_features")
        self.prior = tf.Variable(profiles.prior(model.config, model.movie_counts), trainable=False, name="prior")
        # the zero-profile fallback ranks like the unknown-user one (the `popularity` given)
        self.popularity_score = tf.Variable(profiles.popularity_score(self.popularity.numpy()), trainable=False,
                                            name="popularity_score")
        self.feature_names = tf.Variable(np.asarray(model.feature_names, dtype=object), trainable=False,
                                         name="feature_names")
        self.genre_table = vocabulary_table(genre_vocab_path)

    # -- scoring --------------------------------------------------------------------------
    def _profiles(self, user_idx, extra=None) -> tf.Tensor:
        """Profile weights [B, F] of users (their stored sums, plus fold-in sums `extra`)."""
        sums = [tf.gather(v, user_idx) for v in (self.rating_sums, self.counts, self.num_rated, self.rating_total)]
        if extra is not None:
            sums = [s + e for s, e in zip(sums, extra)]
        return profiles.profile_weights(self._config, *sums, self.feature_share)

    def score_users(self, user_idx):
        return profiles.score(self._profiles(user_idx), self.item_features, self.prior, self.popularity_score)

    # -- user_profile ---------------------------------------------------------------------
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id")])
    def user_profile(self, user_id):
        user_idx, known = self.lookup_users(user_id)
        weights = self._profiles(user_idx)
        out = {"user_known": known}
        for name, part, names in (("genres", weights[:, :self.num_genres], self.feature_names[:self.num_genres]),
                                  ("decades", weights[:, self.num_genres:], self.feature_names[self.num_genres:])):
            order = tf.argsort(part, axis=1, direction="DESCENDING", stable=True)
            out[name] = tf.gather(names, order)
            out["weights" if name == "genres" else "decade_weights"] = tf.gather(part, order, batch_dims=1)
        return out

    # -- cold start -----------------------------------------------------------------------
    def cold_start_fn(self):
        @tf.function(input_signature=[
            tf.TensorSpec([None], tf.string, name="user_id"),
            tf.TensorSpec([None], tf.int32, name="k"),
            tf.TensorSpec([None, None], tf.string, name="rated_movie_ids"),
            tf.TensorSpec([None, None], tf.float32, name="ratings"),
            tf.TensorSpec([None, None], tf.string, name="new_movie_ids"),
            tf.TensorSpec([None, None], tf.string, name="new_movie_titles"),
            tf.TensorSpec([None, None, None], tf.string, name="new_movie_genres"),
        ])
        def recommend_cold_start(user_id, k=tf.constant([DEFAULT_K], tf.int32),
                                 rated_movie_ids=tf.zeros([0, 0], tf.string),
                                 ratings=tf.zeros([0, 0], tf.float32),
                                 new_movie_ids=tf.zeros([0, 0], tf.string),
                                 new_movie_titles=tf.zeros([0, 0], tf.string),
                                 new_movie_genres=tf.zeros([0, 0, 0], tf.string)):
            return self.cold_start(user_id, k, rated_movie_ids, ratings, new_movie_ids,
                                   new_movie_titles, new_movie_genres)

        return recommend_cold_start

    def cold_start(self, user_id, k, rated_movie_ids, ratings, new_movie_ids, new_movie_titles,
                   new_movie_genres):
        """The `recommend_cold_start` signature (module docstring); every input is per row."""
        batch = tf.shape(user_id)[0]
        rated_rows = tf.shape(rated_movie_ids)[0]
        new_rows = tf.shape(new_movie_ids)[0]
        rated_idx = self.movie_table.lookup(rated_movie_ids)          # [B', R], -1 unknown/""
        genre_idx = self.genre_table.lookup(new_movie_genres)         # [B', M, H], -1 unknown/""
        k = tf.cast(k, tf.int32)
        k = tf.tile(k, tf.where(tf.equal(tf.size(k), 1), tf.shape(user_id), [1]))   # [1] -> [B]
        checks = self.check_k(k, user_id) + [
            tf.debugging.Assert(tf.logical_or(tf.equal(rated_rows, 0), tf.equal(rated_rows, batch)),
                                ["rated_movie_ids must have one row per user_id (or be empty)"]),
            tf.debugging.assert_equal(tf.shape(rated_movie_ids), tf.shape(ratings),
                                      message="rated_movie_ids and ratings must have the same shape"),
            tf.debugging.Assert(tf.reduce_all((rated_idx >= 0) | tf.equal(rated_movie_ids, "")),
                                ["rated_movie_ids must be catalog movies (\"\" pads)"]),
            tf.debugging.Assert(tf.logical_or(tf.equal(new_rows, 0), tf.equal(new_rows, batch)),
                                ["new_movie_ids must have one row per user_id (shape [B, M]; or be empty)"]),
            tf.debugging.assert_equal(tf.shape(new_movie_ids), tf.shape(new_movie_titles),
                                      message="new_movie_ids and new_movie_titles must have the same shape [B, M]"),
            tf.debugging.Assert(tf.logical_or(tf.equal(tf.size(new_movie_genres), 0),
                                              tf.reduce_all(tf.equal(tf.shape(new_movie_genres)[:2],
                                                                     tf.shape(new_movie_ids)))),
                                ["new_movie_genres must have one row of genre names per new movie (shape [B, M, H])"]),
            tf.debugging.Assert(tf.reduce_all((genre_idx >= 0) | tf.equal(new_movie_genres, "")),
                                ["new_movie_genres must use genre names of the vocabulary (\"\" pads):",
                                 self.feature_names[:self.num_genres]]),
        ]
        with tf.control_dependencies(checks):   # nothing below runs on inputs that broke a rule
            user_idx, known = self.lookup_users(user_id)
            rated_idx, genre_idx = tf.identity(rated_idx), tf.identity(genre_idx)
            new_movie_ids, new_movie_titles = tf.identity(new_movie_ids), tf.identity(new_movie_titles)
        # fold-in: each (movie, rating) pair adds to its user's four sums
        pos = tf.where(rated_idx >= 0)                                # [P, 2]
        fold_movies = tf.gather_nd(rated_idx, pos)
        fold_ratings = tf.gather_nd(ratings, pos)[:, tf.newaxis]      # [P, 1]
        fold_features = tf.gather(self.item_features, fold_movies)    # [P, F]
        rows = pos[:, 0]
        extra = [tf.math.unsorted_segment_sum(v, rows, batch) for v in
                 (fold_features * fold_ratings, fold_features, tf.ones_like(fold_ratings), fold_ratings)]
        extra[2], extra[3] = extra[2][:, 0], extra[3][:, 0]
        weights = self._profiles(user_idx, extra)                     # [B, F]
        # each row's new movies [B, M] ("" pads; no rows: none), features from genre names and title
        no_new = tf.equal(new_rows, 0)
        new_ids = tf.cond(no_new, lambda: tf.fill([batch, 0], ""), lambda: new_movie_ids)
        new_titles = tf.cond(no_new, lambda: tf.fill([batch, 0], ""), lambda: new_movie_titles)
        m = tf.shape(new_ids)[1]
        gpos = tf.where(genre_idx >= 0)                               # [P', 3]
        new_genre_hot = tf.minimum(tf.scatter_nd(
            tf.stack([gpos[:, 0], gpos[:, 1], tf.gather_nd(genre_idx, gpos)], 1),
            tf.ones_like(gpos[:, 0], tf.float32),
            tf.cast(tf.stack([batch, m, self.num_genres]), tf.int64)), 1.0)          # [B, M, G]
        new_decades = tf.reshape(profiles.decade_one_hot(tf.reshape(new_titles, [-1]), self.decades),
                                 tf.stack([batch, m, tf.shape(self.decades)[0]]))   # [B, M, D]
        new_features = tf.concat([new_genre_hot, new_decades], 2)                   # [B, M, F]
        has_profile = tf.reduce_any(tf.not_equal(weights, 0.0), axis=1, keepdims=True)
        # no popularity prior (no ratings yet); a row without a profile ranks by popularity: 0
        new_scores = tf.where(has_profile, tf.einsum("bf,bmf->bm", weights, new_features), 0.0)
        scores = tf.concat([profiles.score(weights, self.item_features, self.prior, self.popularity_score),
                            new_scores], 1)                                         # [B, N + M]
        pad_pos = tf.where(tf.equal(new_ids, ""))                                   # "" is no movie
        known_with_profile = known | has_profile[:, 0]
        new_genres = tf.strings.reduce_join(
            tf.where(genre_idx >= 0, new_movie_genres, ""), axis=2, separator="|")
        new_genres = tf.strings.regex_replace(tf.strings.regex_replace(new_genres, r"\|+", "|"), r"^\||\|$", "")
        new_genres = tf.cond(tf.equal(tf.size(new_movie_genres), 0),
                             lambda: tf.fill(tf.shape(new_ids), ""), lambda: new_genres)
        out = self.top_k_response(
            scores, user_idx, known, k,
            tf.concat([rows, pad_pos[:, 0]], 0),
            tf.concat([fold_movies, pad_pos[:, 1] + self.num_movies], 0),
            row_candidates=(new_ids, new_titles, new_genres))
        out["user_known"] = known_with_profile
        return out


def export(export_dir: str, *, model: profiles.ContentModel, catalog: Catalog, user_vocab_path: str,
           movie_vocab_path: str, genre_vocab_path: str, rated: RatedItems, popularity: np.ndarray,
           max_k: int, metadata: dict | None = None) -> str:
    module = ContentServingModule(
        model=model, genre_vocab_path=genre_vocab_path, user_vocab_path=user_vocab_path,
        movie_vocab_path=movie_vocab_path, movie_ids=catalog.movie_ids, titles=catalog.titles,
        genres=catalog.genre_strings(), rated=rated, popularity=popularity, max_k=max_k)
    tf.saved_model.save(module, export_dir, signatures={
        **module.contract_signatures(),
        "user_profile": module.user_profile,
        "recommend_cold_start": module.cold_start_fn(),
    })
    return finish_export(export_dir, "content", user_vocab_path, max_k, metadata=metadata, extra_requests=lambda user: [
        {"__signature__": "user_profile", "user_id": np.array([user, ""], dtype=object)}])
