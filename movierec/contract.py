"""What training and serving agree on, in one module that imports neither side.

The exporters (`movierec.components`: the Trainers' SavedModels, the AtomicPusher) and the
serving side (`movierec.serving`: the model server, its clients, `movierec recommend`) both
import this module; it imports nothing from either, and TensorFlow only inside the
functions that need it (`import movierec.contract` stays light).

* The serving contract every pushed model keeps (implemented by
  `movierec.components.recommend.RecommenderModule`):

  serving_default   user_id string [B] -> the top `DEFAULT_K` unseen movies
  recommend         user_id string [B], k int32 [B] (1..max_k), exclude_movie_ids string
                    [B, E] ("" pads) -> the top max(k), row b's positions >= k[b] padding
  outputs           movie_ids, titles, genres string [B, K]; scores float32 [B, K];
                    valid bool [B, K]; user_known bool [B] (False: an unknown user, served
                    by popularity: `scores` are then training rating counts, not model scores)

* `RatedItems`: the movies each user has rated, as CSR rows; the mask the exported top-k
  applies, built from the training data.
* Warmup records: `assets.extra/tf_serving_warmup_requests`, a TFRecord of PredictionLog
  (TF Serving's format), written by the exporters, replayed by the server on load.
* The version-folder layout under a TF Serving model base path, `<base>/<version>/`,
  written by the AtomicPusher and read by the server and the run summary.
"""
from __future__ import annotations

import dataclasses
import posixpath

import numpy as np

# -- the serving contract ------------------------------------------------------------------
SERVING_DEFAULT = "serving_default"
RECOMMEND = "recommend"
RECOMMEND_INPUTS = ("user_id", "k", "exclude_movie_ids")
OUTPUTS = ("movie_ids", "titles", "genres", "scores", "valid", "user_known")
DEFAULT_K = 10            # the list length of serving_default (max_k when that is smaller)
DEFAULT_MAX_K = 100       # the largest k a request may ask, unless the pipeline sets max_k
MAX_K_LIMIT = 10_000      # the largest max_k a pipeline may set
# The start of the error a model gives for a k out of range (the model appends max_k and
# the bad values); clients recognise it.
K_RANGE_MESSAGE = "k must be >= 1 and <= "


def serving_default_k(max_k: int) -> int:
    """The list length serving_default returns for a model of `max_k`."""
    return min(DEFAULT_K, max_k)


def check_k(k: int, max_k: int = MAX_K_LIMIT) -> int:
    """`k` if it is an integer in 1..max_k, else a ValueError naming it (before any call)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= max_k:
        raise ValueError(f"k={k!r} is invalid: a list length from 1 to {max_k}")
    return int(k)


def contract_call(user_ids: list[str], k: int | None, exclude: list[list[str]] | None) -> tuple[str, dict]:
    """(signature name, inputs as lists) of one request: serving_default with user_id alone
    when neither k nor exclude is given, else `recommend` with k [B] and exclude_movie_ids
    [B, 1 + E], each row beginning with "" and padded with "" (TF Serving's batching pads
    a request's rows with their first element, which then excludes nothing)."""
    if exclude is not None and len(exclude) != len(user_ids):
        raise ValueError(f"exclude has {len(exclude)} rows for {len(user_ids)} users")
    if k is None and exclude is None:
        return SERVING_DEFAULT, {"user_id": list(user_ids)}
    rows = exclude if exclude is not None else [[] for _ in user_ids]
    width = max((len(row) for row in rows), default=0)
    return RECOMMEND, {
        "user_id": list(user_ids),
        "k": [DEFAULT_K if k is None else check_k(k)] * len(user_ids),
        "exclude_movie_ids": [[""] + list(row) + [""] * (width - len(row)) for row in rows]}


def contract_warmup_requests(first_user: str, max_k: int) -> list[dict]:
    """Warmup requests of both contract signatures, for a known user and an unknown one
    (""): the shapes of the calls clients make (exclusion rows begin with "")."""
    users = np.array([first_user, ""], dtype=object)
    return [
        {"__signature__": SERVING_DEFAULT, "user_id": users},
        {"__signature__": RECOMMEND, "user_id": users,
         "k": np.full(2, serving_default_k(max_k), np.int32),
         "exclude_movie_ids": np.array([[""], [""]], dtype=object)},
    ]


# -- the rated-items mask ------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RatedItems:
    """CSR rows of rated movie indices per user index; row U (the OOV user) is empty.

    row_splits int64 [num_users + 2], movie_idx int64 [nnz] (sorted within each row, unique).
    The pushed model masks every rating it was given (train + eval); an offline evaluation
    model masks the train split only.
    """

    row_splits: np.ndarray  # int64 [num_users + 2]
    movie_idx: np.ndarray   # int64 [nnz], sorted within each row, unique

    @classmethod
    def from_pairs(cls, user_idx: np.ndarray, movie_idx: np.ndarray, num_users: int,
                   num_movies: int) -> "RatedItems":
        """Pairs with an OOV user (>= num_users) or OOV movie (>= num_movies) are ignored."""
        user_idx = np.asarray(user_idx, np.int64)
        movie_idx = np.asarray(movie_idx, np.int64)
        if user_idx.shape != movie_idx.shape:
            raise ValueError(f"user_idx {user_idx.shape} and movie_idx {movie_idx.shape} differ")
        keep = (user_idx >= 0) & (user_idx < num_users) & (movie_idx >= 0) & (movie_idx < num_movies)
        keys = np.unique(user_idx[keep] * num_movies + movie_idx[keep])
        users, movies = keys // num_movies, keys % num_movies
        counts = np.bincount(users, minlength=num_users + 1)
        row_splits = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(row_splits=row_splits, movie_idx=movies.astype(np.int64))

    @property
    def num_users(self) -> int:
        return len(self.row_splits) - 2

    def row(self, user: int) -> np.ndarray:
        return self.movie_idx[self.row_splits[user]:self.row_splits[user + 1]]


# -- warmup records ------------------------------------------------------------------------
WARMUP_FILE = posixpath.join("assets.extra", "tf_serving_warmup_requests")
MAX_WARMUP_RECORDS = 1000  # TF Serving's limit


def write_predict_warmup(export_dir: str, model_name: str, requests: list[dict],
                         signature_name: str = SERVING_DEFAULT) -> str:
    """Writes `requests` ([{alias: array-like}], a "__signature__" key overriding
    `signature_name`) as the version's warmup file; returns its path."""
    import tensorflow as tf  # noqa: PLC0415
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2  # noqa: PLC0415

    path = posixpath.join(export_dir, WARMUP_FILE)
    tf.io.gfile.makedirs(posixpath.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for inputs in requests:
            inputs = dict(inputs)
            signature = inputs.pop("__signature__", signature_name)
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature))
            for alias, value in inputs.items():
                request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def read_warmup_requests(version_dir: str) -> list:
    """The PredictRequests of a version's warmup file ([] when it has none); a file with
    more than MAX_WARMUP_RECORDS records, or a record that is not a predict_log, is a
    ValueError naming the file (and the record)."""
    import tensorflow as tf  # noqa: PLC0415
    from tensorflow_serving.apis import prediction_log_pb2  # noqa: PLC0415

    path = posixpath.join(version_dir, WARMUP_FILE)
    if not tf.io.gfile.exists(path):
        return []
    requests = []
    for i, record in enumerate(tf.data.TFRecordDataset(path)):
        if i >= MAX_WARMUP_RECORDS:
            raise ValueError(f"{path}: more than {MAX_WARMUP_RECORDS} warmup records")
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        if log.WhichOneof("log_type") != "predict_log":
            raise ValueError(f"{path}: record {i} is a {log.WhichOneof('log_type')}; only "
                             "predict_log warmup is supported")
        requests.append(log.predict_log.request)
    return requests


# -- the version-folder layout -------------------------------------------------------------
# A version counts only when it is complete: a numeric directory holding `saved_model.pb`
# (or `saved_model.pbtxt`) and a `variables/` folder with its index, or no variables at all.
# Other names (".tmp-..." and anything not numeric) are ignored, so a writer that copies to
# a temporary name and renames never exposes a half-written version; on object stores,
# where a rename is a copy, writers write the graph file last instead (the AtomicPusher).
# Paths go through tf.io.gfile: base paths may be local or gs://, s3://, ...
GRAPH_FILES = ("saved_model.pb", "saved_model.pbtxt")


def _gfile():
    import tensorflow as tf  # noqa: PLC0415  (lazy: importers may not need TensorFlow)
    return tf.io.gfile


def _children(gfile, base_path: str) -> list[str]:
    # Object stores list sub-folders with a trailing '/'.
    return [name.rstrip("/") for name in gfile.listdir(base_path)]


def is_complete(version_dir: str) -> bool:
    gfile = _gfile()
    has_graph = any(gfile.exists(posixpath.join(version_dir, n)) and not gfile.isdir(posixpath.join(version_dir, n))
                    for n in GRAPH_FILES)
    variables = posixpath.join(version_dir, "variables")
    has_vars = not gfile.exists(variables) or gfile.exists(posixpath.join(variables, "variables.index"))
    return has_graph and has_vars


def list_versions(base_path: str) -> list[int]:
    """Complete numeric versions under `base_path`, ascending; [] if none or no folder."""
    gfile = _gfile()
    if not gfile.isdir(base_path):
        return []
    return sorted(int(name) for name in _children(gfile, base_path)
                  if name.isdigit() and is_complete(posixpath.join(base_path, name)))


def version_dir(base_path: str, version: int) -> str:
    """The folder of `version`; TF Serving accepts zero-padded names (00000123)."""
    gfile = _gfile()
    if gfile.isdir(base_path):
        for name in _children(gfile, base_path):
            if name.isdigit() and int(name) == version:
                return posixpath.join(base_path, name)
    raise FileNotFoundError(f"no version {version} under {base_path}")


def latest_version(base_path: str) -> int | None:
    found = list_versions(base_path)
    return found[-1] if found else None
