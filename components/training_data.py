"""Examples through the transform graph -> in-memory arrays, the catalog and the rated-movie mask.

Both Trainers (and the Evaluators) read the raw Parquet examples once, a record batch at a
time, apply the Transform graph to each batch (tf.Transform's `transform_raw_features`: the
vocabulary lookups the serving graph makes too) and keep numpy arrays (32 bytes per
rating), so every epoch after the first read is pure tensor work. Transformed tf.Examples
(gzipped TFRecords, as `preprocessing.transform_in_process` writes them) are read as well.

Shapes: for n ratings, k distinct movie indices, U known users, N known movies (vocabulary
sizes) and G genres, `Interactions` holds user_idx/movie_idx int64 [n] (OOV = U / N),
rating float32 [n] (NaN for implicit events), timestamp int64 [n], weight float32 [n] (an
event's weight, 1 unless declared) and `movies`, the title and genre ids of each movie
index as first read ([k] rows: every example repeats its movie's metadata, which is kept
once per movie, not once per rating); `Catalog` holds movie_ids [N], titles [N],
genre_names [G] and the multi-hot genre matrix float32 [N, G].
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
from typing import Iterable

import numpy as np
import tensorflow as tf

from movierec.components import features
from movierec.components.preprocessing import genre_multi_hot
from movierec.components.recommend import RatedItems

_READ_BATCH = 65536


@dataclasses.dataclass(frozen=True)
class MovieRows:
    """Title and genre ids of distinct movie indices, in order of first appearance.

    movie_idx int64 [k] (distinct), title object [k] (bytes), genre ids as a ragged
    [k, None]: genre_row_splits int64 [k + 1], genre_values int64 [total]."""

    movie_idx: np.ndarray
    title: np.ndarray
    genre_row_splits: np.ndarray
    genre_values: np.ndarray

    def __post_init__(self) -> None:
        k = len(self.movie_idx)
        if len(self.title) != k or len(self.genre_row_splits) != k + 1:
            raise ValueError(f"MovieRows: {k} movie indices, {len(self.title)} titles and "
                             f"{len(self.genre_row_splits)} genre row splits (expected {k + 1})")
        if len(np.unique(self.movie_idx)) != k:
            raise ValueError("MovieRows: movie indices must be distinct")

    def __len__(self) -> int:
        return len(self.movie_idx)

    @staticmethod
    def empty() -> "MovieRows":
        return MovieRows(np.zeros(0, np.int64), np.zeros(0, object), np.zeros(1, np.int64), np.zeros(0, np.int64))

    @staticmethod
    def first_of(movie_idx: np.ndarray, title: np.ndarray, genre_row_splits: np.ndarray,
                 genre_values: np.ndarray, skip: np.ndarray | None = None) -> "MovieRows":
        """The first row of each distinct movie among per-example rows (movie_idx [B], title
        [B], genres ragged [B, None]), leaving out the indices in `skip` (already kept)."""
        movie_idx = np.asarray(movie_idx, np.int64)
        movies, first = np.unique(movie_idx, return_index=True)
        if skip is not None and len(skip):
            fresh = ~np.isin(movies, skip)
            movies, first = movies[fresh], first[fresh]
        first = np.sort(first)      # order of first appearance
        lengths = np.diff(genre_row_splits)[first]
        starts = genre_row_splits[first]
        values = (np.concatenate([genre_values[s:s + n] for s, n in zip(starts, lengths)])
                  if len(first) else np.zeros(0, np.int64))
        return MovieRows(movie_idx[first], np.asarray(title, object)[first],
                         np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                         np.asarray(values, np.int64))

    @staticmethod
    def concat(parts: Iterable["MovieRows"]) -> "MovieRows":
        """All parts' rows, a movie index already in an earlier part left out."""
        kept = MovieRows.empty()
        for part in parts:
            new = np.flatnonzero(~np.isin(part.movie_idx, kept.movie_idx))
            lengths = np.diff(part.genre_row_splits)[new]
            values = [part.genre_values[part.genre_row_splits[i]:part.genre_row_splits[i + 1]] for i in new]
            kept = MovieRows(
                np.concatenate([kept.movie_idx, part.movie_idx[new]]),
                np.concatenate([kept.title, part.title[new]]),
                np.concatenate([kept.genre_row_splits, kept.genre_row_splits[-1] + np.cumsum(lengths)]).astype(np.int64),
                np.concatenate([kept.genre_values, *values]).astype(np.int64))
        return kept


@dataclasses.dataclass(frozen=True)
class Interactions:
    user_idx: np.ndarray
    movie_idx: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    # title and genres of the movies above, once per movie (used to build the catalog);
    # None when built: none known
    movies: MovieRows | None = None
    # float32 [n]: each event's weight (Transform's `weight`: 1 unless the dataset declares
    # one; repeated implicit events of a pair add up); None when built: all ones
    weight: np.ndarray | None = None

    def __post_init__(self) -> None:
        weight = (np.ones(len(self.rating), np.float32) if self.weight is None
                  else np.asarray(self.weight, np.float32))
        if weight.shape != (len(self.rating),):
            raise ValueError(f"weight must have one value per interaction ({len(self.rating)}), "
                             f"got shape {weight.shape}")
        object.__setattr__(self, "weight", weight)
        if self.movies is None:
            object.__setattr__(self, "movies", MovieRows.empty())

    def __len__(self) -> int:
        return len(self.rating)

    @staticmethod
    def concat(parts: Iterable["Interactions"]) -> "Interactions":
        parts = list(parts)
        return Interactions(
            user_idx=np.concatenate([p.user_idx for p in parts]),
            movie_idx=np.concatenate([p.movie_idx for p in parts]),
            rating=np.concatenate([p.rating for p in parts]),
            timestamp=np.concatenate([p.timestamp for p in parts]),
            movies=MovieRows.concat(p.movies for p in parts),
            weight=np.concatenate([p.weight for p in parts]),
        )


@dataclasses.dataclass(frozen=True)
class Catalog:
    movie_ids: list[str]
    titles: list[str]
    genre_names: list[str]
    genre_matrix: np.ndarray  # float32 [N, G] multi-hot

    def __len__(self) -> int:
        return len(self.movie_ids)

    def genre_strings(self) -> list[str]:
        """Each movie's genre names joined by '|' (vocabulary order), '' for none."""
        return ["|".join(self.genre_names[g] for g in np.flatnonzero(row)) for row in self.genre_matrix]


def transformed_feature_spec() -> dict:
    return {
        features.USER_IDX: tf.io.FixedLenFeature([], tf.int64),
        features.MOVIE_IDX: tf.io.FixedLenFeature([], tf.int64),
        features.RATING: tf.io.FixedLenFeature([], tf.float32),
        features.TIMESTAMP: tf.io.FixedLenFeature([], tf.int64),
        # Transform always writes it (1 where the dataset declares none); the default reads
        # examples transformed before it existed
        features.WEIGHT: tf.io.FixedLenFeature([], tf.float32, default_value=1.0),
        features.TITLE: tf.io.FixedLenFeature([], tf.string),
        features.GENRE_IDS: tf.io.RaggedFeature(tf.int64),
    }


def _expand(file_patterns: Iterable[str]) -> list[str]:
    files: list[str] = []
    for pattern in file_patterns:
        matched = sorted(tf.io.gfile.glob(pattern))
        if not matched:
            raise FileNotFoundError(f"no transformed examples match {pattern!r}")
        files.extend(matched)
    return files


def read_interactions(file_patterns: Iterable[str], transform_output: str | None = None) -> Interactions:
    """Reads examples into arrays, in file order: raw Parquet examples (`*.parquet`, through
    the transform graph at `transform_output`) or gzipped transformed TFRecords."""
    files = _expand(file_patterns)
    if all(f.endswith(".parquet") for f in files):
        if transform_output is None:
            raise ValueError(f"raw examples {files[:3]} need the transform graph to be read")
        batches = _transformed_parquet_batches(files, transform_output)
    elif any(f.endswith(".parquet") for f in files):
        raise ValueError(f"examples mix Parquet and TFRecord files: {files[:6]}")
    else:
        batches = _transformed_tfrecord_batches(files)
    parts = []
    seen = np.zeros(0, np.int64)     # movie indices whose title and genres are kept already
    for batch in batches:
        parts.append(_interactions_of(batch, seen))
        seen = np.concatenate([seen, parts[-1].movies.movie_idx])
    if not parts:
        raise ValueError(f"examples {files} hold no ratings")
    return Interactions.concat(parts)


def _transformed_tfrecord_batches(files: list[str]):
    spec = transformed_feature_spec()
    ds = (tf.data.TFRecordDataset(files, compression_type="GZIP", num_parallel_reads=1)
          .batch(_READ_BATCH)
          .map(lambda x: tf.io.parse_example(x, spec), num_parallel_calls=tf.data.AUTOTUNE)
          .prefetch(2))
    yield from ds


def _transformed_parquet_batches(files: list[str], transform_output: str):
    """Each record batch of the raw examples, as tensors through the transform graph: the
    graph's outputs, genre_ids as a RaggedTensor [B, None]."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415
    import tensorflow_transform as tft  # noqa: PLC0415
    from tfx.components.util import tfxio_utils  # noqa: PLC0415
    from tfx.proto import example_gen_pb2  # noqa: PLC0415

    out = tft.TFTransformOutput(transform_output)
    # the TFXIO Transform read these files with (ParquetTFXIO, the raw schema): its tensors
    # are the transform graph's inputs
    reader = tfxio_utils.make_tfxio(file_pattern=files, telemetry_descriptors=["movierec"],
                                    payload_format=example_gen_pb2.FORMAT_PARQUET, schema=out.raw_metadata.schema)
    arrow_schema, adapter = reader.ArrowSchema(), reader.TensorAdapter()
    for path in files:
        with io.BufferedReader(_GFileReader(path), buffer_size=1 << 20) as f:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=_READ_BATCH, columns=arrow_schema.names):
                batch = pa.RecordBatch.from_arrays(
                    [batch.column(field.name).cast(field.type) for field in arrow_schema], schema=arrow_schema)
                transformed = out.transform_raw_features(adapter.ToBatchTensors(batch), drop_unused_features=True)
                genres = transformed[features.GENRE_IDS]
                if isinstance(genres, tf.SparseTensor):
                    genres = tf.RaggedTensor.from_sparse(genres)
                yield {**transformed, features.GENRE_IDS: genres}


class _GFileReader(io.RawIOBase):
    """A file of any tf.io.gfile file system (local, gs://, s3://) as the seekable binary
    file object pyarrow reads Parquet from (GFile itself lacks parts of io's interface)."""

    def __init__(self, path: str):
        super().__init__()
        self._file = tf.io.gfile.GFile(path, "rb")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._file.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._file.seek(offset, whence)
        return self._file.tell()

    def tell(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()


def _interactions_of(batch: dict, seen: np.ndarray) -> Interactions:
    """One batch of transformed tensors -> Interactions; `movies` holds only the movie
    indices not in `seen` (read in an earlier batch)."""
    genres = batch[features.GENRE_IDS]
    movie_idx = _flat(batch[features.MOVIE_IDX])
    return Interactions(
        user_idx=_flat(batch[features.USER_IDX]),
        movie_idx=movie_idx,
        rating=_flat(batch[features.RATING]),
        timestamp=_flat(batch[features.TIMESTAMP]),
        movies=MovieRows.first_of(movie_idx, _flat(batch[features.TITLE]), genres.row_splits.numpy(),
                                  genres.flat_values.numpy(), skip=seen),
        weight=_flat(batch[features.WEIGHT]),
    )


def _flat(tensor) -> np.ndarray:
    """A per-example scalar [B] or [B, 1] -> numpy [B]."""
    return np.reshape(tensor.numpy(), [-1])


def build_catalog(movies: MovieRows, movie_vocab: list[str], genre_vocab: list[str]) -> Catalog:
    """Title and genres of every vocabulary movie, from its row in `movies` (the OOV index
    and any other index outside the vocabulary are left out)."""
    n, g = len(movie_vocab), len(genre_vocab)
    titles: list = [None] * n
    genre_matrix = np.zeros((n, g), np.float32)
    rows = np.flatnonzero(movies.movie_idx < n)
    for m, title in zip(movies.movie_idx[rows], movies.title[rows]):
        titles[m] = title.decode("utf-8")
    genre_rows = tf.RaggedTensor.from_row_splits(movies.genre_values, movies.genre_row_splits)
    genre_matrix[movies.movie_idx[rows]] = genre_multi_hot(tf.gather(genre_rows, rows), g).numpy()
    missing = [movie_vocab[i] for i in range(n) if titles[i] is None]
    if missing:
        raise ValueError(f"{len(missing)} vocabulary movies have no rating to take a title "
                         f"from, e.g. {missing[:5]}")
    return Catalog(movie_ids=list(movie_vocab), titles=titles, genre_names=list(genre_vocab),
                   genre_matrix=genre_matrix)


def popularity(data: Interactions, num_movies: int) -> np.ndarray:
    """Number of ratings of each vocabulary movie, float32 [N] (the cold-user fallback)."""
    idx = data.movie_idx[data.movie_idx < num_movies]
    return np.bincount(idx, minlength=num_movies).astype(np.float32)


def rated_items(data: Interactions, num_users: int, num_movies: int) -> RatedItems:
    return RatedItems.from_pairs(data.user_idx, data.movie_idx, num_users, num_movies)


def decode_vocabulary(values: Iterable[bytes | str]) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else v for v in values]


@dataclasses.dataclass(frozen=True)
class TrainerInputs:
    """Everything both Trainers read from Transform's output, read once.

    The pushed model masks `rated_all` (train + eval); the evaluation export masks
    `rated_train` only.
    """

    vocab_paths: dict          # features.*_VOCAB -> vocabulary file (becomes a SavedModel asset)
    user_ids: list             # the user vocabulary, in index order
    train: Interactions
    eval: Interactions
    catalog: Catalog
    num_users: int
    num_movies: int
    rated_all: RatedItems
    rated_train: RatedItems
    popularity: np.ndarray     # training rating counts per catalog movie

    def write_run_metrics(self, model_run_dir: str, metrics: dict, filename: str = "training_metrics.json") -> None:
        tf.io.gfile.makedirs(model_run_dir)
        with tf.io.gfile.GFile(os.path.join(model_run_dir, filename), "w") as f:
            f.write(json.dumps(metrics, indent=2, sort_keys=True))


def load_trainer_inputs(fn_args) -> TrainerInputs:
    """Reads the vocabularies, both splits, the catalog and the masks for a Trainer run_fn."""
    import tensorflow_transform as tft  # noqa: PLC0415

    out = tft.TFTransformOutput(fn_args.transform_output)
    names = (features.USER_VOCAB, features.MOVIE_VOCAB, features.GENRE_VOCAB)
    vocab = {n: decode_vocabulary(out.vocabulary_by_name(n)) for n in names}
    num_users, num_movies = len(vocab[features.USER_VOCAB]), len(vocab[features.MOVIE_VOCAB])
    train = read_interactions(fn_args.train_files, fn_args.transform_output)
    evaluation = read_interactions(fn_args.eval_files, fn_args.transform_output)
    return TrainerInputs(
        vocab_paths={n: out.vocabulary_file_by_name(n) for n in names},
        user_ids=vocab[features.USER_VOCAB],
        train=train, eval=evaluation,
        catalog=build_catalog(MovieRows.concat([train.movies, evaluation.movies]), vocab[features.MOVIE_VOCAB],
                              vocab[features.GENRE_VOCAB]),
        num_users=num_users, num_movies=num_movies,
        rated_all=RatedItems.from_pairs(np.concatenate([train.user_idx, evaluation.user_idx]),
                                        np.concatenate([train.movie_idx, evaluation.movie_idx]), num_users, num_movies),
        rated_train=rated_items(train, num_users, num_movies),
        popularity=popularity(train, num_movies))
