"""Masked top-k recommendation: the one implementation every exported model uses.

Pieces, each usable alone:

* `RatedItems` (`movierec.contract`, shared with the training data code): which movies
  each user has rated, as CSR rows (row_splits [U + 2], movie_idx [nnz]); row U (the OOV
  user) is empty. It is the swappable mask: the pushed model masks every rating it was
  given (train + eval), an offline evaluation model masks the train split only.
* `masked_top_k(scores, mask_rows, mask_cols, k)`: scores [B, N] -> masked entries set to
  -inf -> top-k -> indices [B, K], scores [B, K], valid [B, K]. `k` is one width for every
  row (K = k) or one per row (int32 [B], K = max(k)): positions >= a row's k are padding.
  When fewer movies are left than asked for, the result is padded too (index -1, score 0,
  valid False): a rated movie is never used to fill the list.
* `RecommenderModule`: a tf.Module base class that turns a model's `score_users(user_idx)`
  ([B] -> [B, N]) into the two signatures of the serving contract. Every input of both
  has the batch dimension B first, so TF Serving's `--enable_batching` can concatenate
  concurrent requests along it and split the outputs back:

  serving_default   the call a user writes: `{"instances": [{"user_id": "13"}]}`
      user_id            string [B]
    -> the top DEFAULT_K (10, or max_k when smaller) unseen movies, outputs below with K = 10

  recommend         the same with a per-row list length and per-row exclusions
      user_id            string [B]
      k                  int32  [B]     per row, 1..max_k
      exclude_movie_ids  string [B, E]  movies not to return for that row; "" pads
    -> outputs below with K = max(k): row b's positions >= k[b] are padding

  outputs (both signatures)
       movie_ids   string  [B, K]  ("" where padded)
       titles      string  [B, K]  ("" where padded)
       genres      string  [B, K]  (genre names joined by "|"; "" where padded)
       scores      float32 [B, K]  (0 where padded)
       valid       bool    [B, K]  (False where padded)
       user_known  bool    [B]     (False: unknown user, served the popularity fallback)

  An unknown user is served by popularity (training rating counts), with only
  `exclude_movie_ids` masked.

Why two signatures and no SignatureDef defaults: TF Serving's REST API needs every input
of the signature in each request (row format: each instance's keys must equal the
signature's inputs; columnar: "Missing named input"), whatever defaults the SignatureDef
records; and TF Serving's batching session concatenates every fed tensor along dimension
0, which a scalar `k` or a [0, 0] default cannot take ("input tensors must have at least
one dimension" / "must have equal 0th-dimension size"). So `serving_default` has exactly
one input, and `recommend` has three, all required, all [B, ...].

Under batching, what a request gets back is its own rows of the merged call: the same
movies, scores and `valid` flags as alone (rows are computed independently), with K the
largest k of the merged requests, the extra positions padding (read `valid`). With
`pad_variable_length_inputs`, TF Serving widens a request's `exclude_movie_ids` to the
merged E with the request's first element: rows that begin with "" (the Python client
sends them so) make that padding exclude nothing; an [B, 0] tensor cannot be merged with
non-empty ones, send [[""], ...] for "no exclusions".
"""
from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf

from movierec.contract import (DEFAULT_K, K_RANGE_MESSAGE, RECOMMEND, SERVING_DEFAULT, RatedItems,
                               contract_warmup_requests, serving_default_k, write_predict_warmup)

__all__ = ["DEFAULT_K", "RatedItems", "RecommenderModule", "contract_warmup_requests", "finish_export",
           "gather_mask", "masked_top_k", "vocabulary_table", "write_contract_warmup"]

NEG_INF = float("-inf")


def gather_mask(row_splits: tf.Tensor, values: tf.Tensor, user_idx: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Rows of the CSR mask for a batch: (batch row, movie index) pairs, each [M].

    Written with the raw RaggedRange op and one searchsorted for the batch rows: the same
    result as `tf.ragged.range(...).value_rowids()` in 8 graph nodes instead of about 40,
    which matters in a serving call of a few hundred microseconds."""
    user_idx = tf.cast(user_idx, tf.int64)
    starts = tf.gather(row_splits, user_idx)
    limits = tf.gather(row_splits, user_idx + 1)
    splits, positions = tf.raw_ops.RaggedRange(starts=starts, limits=limits, deltas=tf.constant(1, tf.int64))
    # position j belongs to batch row b where splits[b] <= j < splits[b + 1]
    rows = tf.searchsorted(splits[1:], tf.range(tf.size(positions, out_type=tf.int64)), side="right",
                           out_type=tf.int64)
    return rows, tf.gather(values, positions)


def masked_top_k(scores: tf.Tensor, mask_rows: tf.Tensor, mask_cols: tf.Tensor,
                 k: tf.Tensor, max_k: int | None = None) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Top-k of `scores` [B, N] after setting (mask_rows[i], mask_cols[i]) to -inf.

    k: int32 scalar (K = k for every row) or int32 [B] (K = max(k), 0 when B = 0; row b's
    positions >= k[b] are padding). Returns indices int64 [B, K] (-1 where padded), scores
    float32 [B, K] (0 where padded) and valid bool [B, K]. Entries equal in score keep
    their lower index first. max_k: the largest k the caller allows; when it is known to be
    <= N, k > N cannot happen and the graph has no padding step.
    """
    scores = tf.convert_to_tensor(scores, tf.float32)
    k = tf.cast(k, tf.int32)
    row_k = k if k.shape.rank == 1 else None
    if row_k is not None:
        k = tf.reduce_max(tf.concat([row_k, [0]], 0))
    mask_rows = tf.cast(mask_rows, tf.int64)
    idx = tf.stack([mask_rows, tf.cast(mask_cols, tf.int64)], axis=1)
    masked = tf.tensor_scatter_nd_update(scores, idx, tf.fill(tf.shape(mask_rows), NEG_INF))
    n_static = masked.shape[1]
    if max_k is not None and n_static is not None and max_k <= n_static:
        top_scores, top_idx = tf.math.top_k(masked, k=k, sorted=True)
    else:
        n = tf.shape(masked)[1]
        top_scores, top_idx = tf.math.top_k(masked, k=tf.minimum(k, n), sorted=True)
        pad = k - tf.shape(top_idx)[1]
        top_scores = tf.pad(top_scores, [[0, 0], [0, pad]], constant_values=NEG_INF)
        top_idx = tf.pad(top_idx, [[0, 0], [0, pad]], constant_values=-1)
    valid = top_scores > NEG_INF
    if row_k is not None:
        valid = tf.logical_and(valid, tf.range(k)[tf.newaxis, :] < row_k[:, tf.newaxis])
    top_idx = tf.where(valid, tf.cast(top_idx, tf.int64), tf.constant(-1, tf.int64))
    top_scores = tf.where(valid, top_scores, tf.zeros_like(top_scores))
    return top_idx, top_scores, valid


def vocabulary_table(vocab_path: str) -> tf.lookup.StaticHashTable:
    """ID string -> line number of a tf.Transform vocabulary file; unknown -> -1."""
    init = tf.lookup.TextFileInitializer(
        vocab_path, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
        tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER)
    return tf.lookup.StaticHashTable(init, default_value=-1)


class RecommenderModule(tf.Module):
    """Base of every exported model: ID lookups, mask, popularity fallback, top-k.

    Subclasses implement `score_users(user_idx)`: int64 [B] (all known) -> float32 [B, N].
    """

    def __init__(self, *, user_vocab_path: str, movie_vocab_path: str, movie_ids: list[str],
                 titles: list[str], genres: list[str], rated: RatedItems, popularity: np.ndarray,
                 max_k: int):
        super().__init__()
        num_movies = len(movie_ids)
        if not len(titles) == len(genres) == len(popularity) == num_movies:
            raise ValueError(f"catalog sizes differ: {num_movies} movie ids, {len(titles)} titles, "
                             f"{len(genres)} genre lists, {len(popularity)} popularity scores")
        if max_k < 1:
            raise ValueError(f"max_k must be >= 1, got {max_k}")
        self.num_movies = num_movies
        self.num_users = rated.num_users
        self.max_k = max_k
        self.user_table = vocabulary_table(user_vocab_path)
        self.movie_table = vocabulary_table(movie_vocab_path)
        self.movie_ids = tf.Variable(np.asarray(movie_ids, dtype=object), trainable=False, name="movie_ids")
        self.titles = tf.Variable(np.asarray(titles, dtype=object), trainable=False, name="titles")
        self.genres = tf.Variable(np.asarray(genres, dtype=object), trainable=False, name="genres")
        self.rated_row_splits = tf.Variable(rated.row_splits, trainable=False, name="rated_row_splits")
        self.rated_movie_idx = tf.Variable(rated.movie_idx, trainable=False, name="rated_movie_idx")
        self.popularity = tf.Variable(np.asarray(popularity, np.float32), trainable=False, name="popularity")

    # -- to implement -------------------------------------------------------------------
    def score_users(self, user_idx: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    # -- lookups ------------------------------------------------------------------------
    def lookup_users(self, user_id: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """user_id string [B] -> (index int64 [B], known bool [B]); unknown -> OOV index U."""
        idx = self.user_table.lookup(user_id)
        known = idx >= 0
        return tf.where(known, idx, tf.cast(self.num_users, tf.int64)), known

    def lookup_movies(self, movie_id: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        idx = self.movie_table.lookup(movie_id)
        known = idx >= 0
        return tf.where(known, idx, tf.cast(self.num_movies, tf.int64)), known

    # -- the serving contract -----------------------------------------------------------
    @property
    def default_k(self) -> int:
        """The list length of `serving_default`: DEFAULT_K, or max_k when smaller."""
        return serving_default_k(self.max_k)

    def check_k(self, k: tf.Tensor, user_id: tf.Tensor) -> list:
        """Asserts k int32 [B] has one value per user_id and each is in 1..max_k; the
        message names the values out of range."""
        # one Assert node per rule: tf.debugging.assert_* add a dozen nodes each to every call
        bad = tf.logical_or(k < 1, k > self.max_k)
        return [
            tf.debugging.Assert(tf.equal(tf.size(k), tf.size(user_id)),
                                ["k must have one value per user_id (shape [B]); k has", tf.size(k),
                                 "values, user_id", tf.size(user_id)]),
            tf.debugging.Assert(tf.logical_not(tf.reduce_any(bad)),
                                [f"{K_RANGE_MESSAGE}{self.max_k}, got", tf.boolean_mask(k, bad)],
                                summarize=10),
        ]

    def recommend(self, user_id: tf.Tensor, k: tf.Tensor | None = None,
                  exclude_movie_ids: tf.Tensor | None = None) -> dict:
        """user_id string [B]; k int32 [B] (None: `default_k` for every row, no per-row
        padding); exclude_movie_ids string [B, E] (None: nothing more excluded)."""
        checks = []
        if k is not None:
            k = tf.cast(k, tf.int32)
            checks += self.check_k(k, user_id)
        if exclude_movie_ids is not None:
            checks.append(tf.debugging.Assert(
                tf.equal(tf.shape(exclude_movie_ids)[0], tf.shape(user_id)[0]),
                ["exclude_movie_ids must have one row per user_id (shape [B, E]); rows:",
                 tf.shape(exclude_movie_ids)[0], "users:", tf.shape(user_id)[0]]))
        with tf.control_dependencies(checks):
            user_idx, known = self.lookup_users(user_id)
        safe_idx = tf.where(known, user_idx, tf.zeros_like(user_idx))
        model_scores = self.score_users(safe_idx)
        scores = tf.where(known[:, tf.newaxis], model_scores, self.popularity[tf.newaxis, :])   # broadcasts
        if exclude_movie_ids is None:
            ex_rows = ex_cols = tf.zeros([0], tf.int64)
        else:
            ex_idx = self.movie_table.lookup(exclude_movie_ids)  # [B, E]; unknown/"" -> -1
            ex_pos = tf.where(ex_idx >= 0)
            ex_rows, ex_cols = ex_pos[:, 0], tf.gather_nd(ex_idx, ex_pos)
        return self.top_k_response(scores, user_idx, known, self.default_k if k is None else k,
                                   ex_rows, ex_cols)

    def top_k_response(self, scores, user_idx, known, k, extra_rows, extra_cols, row_candidates=None) -> dict:
        """Masks each user's rated movies (+ extra (row, col) pairs), takes the top k and
        gathers ids/titles/genres. scores: [B, N], or [B, N + M] when `row_candidates`
        (ids, titles, genres, each string [B, M]) gives each row M more candidates, whose
        columns follow the catalog's."""
        rows, cols = gather_mask(self.rated_row_splits, self.rated_movie_idx, user_idx)
        rows = tf.concat([rows, tf.cast(extra_rows, tf.int64)], 0)
        cols = tf.concat([cols, tf.cast(extra_cols, tf.int64)], 0)
        top_idx, top_scores, valid = masked_top_k(scores, rows, cols, k, self.max_k)
        empty = tf.fill(tf.shape(top_idx), "")
        catalog_idx = tf.clip_by_value(top_idx, 0, self.num_movies - 1)
        fields = [tf.gather(v, catalog_idx) for v in (self.movie_ids, self.titles, self.genres)]
        if row_candidates is not None:
            is_row_candidate = top_idx >= self.num_movies
            # one "" column more, so that the gather has a column to read when M = 0
            row_idx = tf.maximum(top_idx - self.num_movies, 0)
            fields = [tf.where(is_row_candidate,
                               tf.gather(tf.concat([v, tf.fill([tf.shape(v)[0], 1], "")], 1), row_idx, batch_dims=1),
                               f)
                      for f, v in zip(fields, row_candidates)]
        movie_ids, titles, genres = (tf.where(valid, f, empty) for f in fields)
        return {"movie_ids": movie_ids, "titles": titles, "genres": genres, "scores": top_scores,
                "valid": valid, "user_known": known}

    def contract_signatures(self) -> dict:
        """{"serving_default": user_id [B] -> top default_k, "recommend": user_id [B], k [B],
        exclude_movie_ids [B, E] -> top max(k)}: the contract of the module docstring."""

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id")])
        def serving_default(user_id):
            return self.recommend(user_id)

        @tf.function(input_signature=[
            tf.TensorSpec([None], tf.string, name="user_id"),
            tf.TensorSpec([None], tf.int32, name="k"),
            tf.TensorSpec([None, None], tf.string, name="exclude_movie_ids"),
        ])
        def recommend(user_id, k, exclude_movie_ids):
            return self.recommend(user_id, k, exclude_movie_ids)

        return {SERVING_DEFAULT: serving_default, RECOMMEND: recommend}


METADATA_FILE = os.path.join("assets.extra", "movierec.json")


def finish_export(export_dir: str, model_name: str, user_vocab_path: str, max_k: int,
                  extra_requests=lambda first_user: [], metadata: dict | None = None) -> str:
    """After tf.saved_model.save: the warmup file and assets.extra/movierec.json (metadata)."""
    with tf.io.gfile.GFile(user_vocab_path, "rb") as f:  # any filesystem TF has registered
        first_user = f.readline().decode("utf-8").rstrip("\n")
    write_contract_warmup(export_dir, model_name, first_user, max_k, extra_requests(first_user))
    if metadata is not None:
        path = os.path.join(export_dir, METADATA_FILE)
        tf.io.gfile.makedirs(os.path.dirname(path))
        with tf.io.gfile.GFile(path, "w") as f:
            f.write(json.dumps(metadata, indent=2, sort_keys=True))
    return export_dir


def write_contract_warmup(export_dir: str, model_name: str, first_user: str, max_k: int,
                          extra_requests: list[dict] = ()) -> str:
    """assets.extra warmup: `contract_warmup_requests`, then the model's extra requests."""
    return write_predict_warmup(export_dir, model_name,
                                [*contract_warmup_requests(first_user, max_k), *extra_requests])
