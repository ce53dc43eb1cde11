"""tf.Transform preprocessing: ID vocabularies with an OOV bucket, genre indices, rating.

Outputs (names from `features`):
  user_idx   int64 [B]        index in vocabulary `user_id`; unseen users -> vocab size (OOV)
  movie_idx  int64 [B]        index in vocabulary `movie_id`; unseen movies -> vocab size
  genre_ids  int64 ragged [B, None]  indices in vocabulary `genre` (one row per rating;
                              an empty row for a movie without genres). `genre_multi_hot`
                              turns them into the [B, num_genres] multi-hot matrix.
  rating     float32 [B]        NaN for an implicit event (the schema of implicit data makes the
                              raw rating optional; `features.has_ratings` reads the result)
  weight     float32 [B]        the event's declared weight; 1 where the example has none
  timestamp  int64 [B]
  title      string [B]

Vocabularies are ordered by frequency (most frequent first; ties by value, larger first),
computed on the train split only, so eval-only users and movies are out-of-vocabulary, as at
serving time.

Each vocabulary is given a weight of 1 per token (`_counted_vocabulary`): tf.Transform then
reduces every batch to its unique tokens and their summed weights inside the TF graph
(`tf.unique_with_counts`) and Beam adds up one (token, count) pair per unique token and
batch. Without weights it hands Beam every token of every row as its own element (a user
id, a movie id and each genre per rating), which was most of the analysis's cost. The
counts, hence the vocabularies and their order, are the same (sums of 1.0 are exact in
float32 up to 2^24 per batch, and Beam adds the batches' sums as Python floats).

`transform_in_process` runs `preprocessing_fn` with tf.Transform's Beam API in this process
(analysis on the train records only, train and eval transformed), for code that needs the
pipeline's vocabularies and indices without a TFX run (benchmarks).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, Iterable, Optional

import tensorflow as tf
import tensorflow_transform as tft

from movierec.components import features

NUM_OOV_BUCKETS = 1


def _dense_1d(x: tf.Tensor | tf.SparseTensor | tf.RaggedTensor, default=None) -> tf.Tensor:
    """[B, 1] (FixedLen with shape [1]) or an optional feature ([B, None], at most one value;
    `default` where a row has none) -> [B]."""
    if isinstance(x, tf.SparseTensor):
        x = tf.RaggedTensor.from_sparse(x)
    if isinstance(x, tf.RaggedTensor):
        x = x.to_tensor(default_value=default, shape=[None, 1])
    return tf.reshape(x, [-1])


def _counted_vocabulary(x: tf.Tensor | tf.SparseTensor, vocab_filename: str, **kwargs) -> tf.Tensor | tf.SparseTensor:
    """`tft.compute_and_apply_vocabulary` of x (string [B] or sparse [B, None]) with weight 1
    per token, so that the analysis counts a batch's tokens in the graph (see the module)."""
    values = x.values if isinstance(x, tf.SparseTensor) else x
    return tft.compute_and_apply_vocabulary(
        x, vocab_filename=vocab_filename, weights=tf.ones_like(values, tf.float32), **kwargs)


def preprocessing_fn(inputs: Dict[str, Any], custom_config: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The Transform function. `custom_config` carries only a code fingerprint (cache key)."""
    del custom_config
    user_id = _dense_1d(inputs[features.USER_ID])
    movie_id = _dense_1d(inputs[features.MOVIE_ID])
    genres = inputs[features.GENRES]
    if isinstance(genres, tf.RaggedTensor):
        genres = genres.to_sparse()
    genre_ids = _counted_vocabulary(genres, features.GENRE_VOCAB, num_oov_buckets=0, default_value=-1)
    batch = tf.shape(user_id)[0]
    rating = (tf.cast(_dense_1d(inputs[features.RATING], float("nan")), tf.float32)
              if features.RATING in inputs else tf.fill([batch], float("nan")))
    weight = (tf.cast(_dense_1d(inputs[features.WEIGHT], 1.0), tf.float32)
              if features.WEIGHT in inputs else tf.ones([batch], tf.float32))
    return {
        features.USER_IDX: _counted_vocabulary(user_id, features.USER_VOCAB, num_oov_buckets=NUM_OOV_BUCKETS),
        features.MOVIE_IDX: _counted_vocabulary(movie_id, features.MOVIE_VOCAB, num_oov_buckets=NUM_OOV_BUCKETS),
        features.GENRE_IDS: genre_ids,
        features.RATING: rating,
        features.WEIGHT: weight,
        features.TIMESTAMP: _dense_1d(inputs[features.TIMESTAMP]),
        features.TITLE: _dense_1d(inputs[features.TITLE]),
    }


def genre_multi_hot(genre_ids: tf.SparseTensor | tf.RaggedTensor, num_genres: int) -> tf.Tensor:
    """Ragged/sparse genre indices [B, None] -> float32 multi-hot [B, num_genres].

    Indices outside [0, num_genres) (e.g. -1 for a genre unseen in training) are ignored.
    """
    if isinstance(genre_ids, tf.SparseTensor):
        genre_ids = tf.RaggedTensor.from_sparse(genre_ids)
    genre_ids = tf.cast(genre_ids, tf.int64)
    rows = tf.cast(genre_ids.value_rowids(), tf.int64)  # int32 when the splits are int32
    cols = genre_ids.flat_values
    keep = (cols >= 0) & (cols < num_genres)
    idx = tf.stack([tf.boolean_mask(rows, keep), tf.boolean_mask(cols, keep)], axis=1)
    batch = tf.cast(genre_ids.nrows(), tf.int64)
    counts = tf.scatter_nd(idx, tf.ones_like(idx[:, 0], tf.float32), tf.stack([batch, tf.constant(num_genres, tf.int64)]))
    return tf.minimum(counts, 1.0)  # a genre listed twice is still one genre


@dataclasses.dataclass(frozen=True)
class InProcessTransform:
    """Where `transform_in_process` wrote its output, in the Transform component's formats.

    transform_output: the transform graph folder (`tft.TFTransformOutput(...)` reads the
                      vocabularies from it); train_files / eval_files: file patterns of the
                      gzipped transformed tf.Examples (`training_data.read_interactions`).
    """

    transform_output: str
    train_files: str
    eval_files: str


def transform_in_process(train: Iterable, evaluation: Iterable, schema, output_dir: str) -> InProcessTransform:
    """Runs `preprocessing_fn` by tf.Transform on Beam's in-process runner, as the Transform
    component does: analyzed on `train` only, `train` and `evaluation` transformed.

    train, evaluation: the pipeline's raw records (`data.readers.RatingRecord`), encoded as
    the ExampleGen encodes them (`data.arrow_reader.records_to_batch`, tf.Examples) and read
    through TFXIO as Transform reads them; schema: the raw data's `schema_pb2.Schema` (the
    curated schema, fitted to the dataset by `data.dataset_schema.schema_for`). Writes the
    transform graph and the gzipped transformed tf.Examples under `output_dir`; returns
    their paths.
    """
    import apache_beam as beam  # noqa: PLC0415  (only this function runs Beam)
    import tensorflow_transform.beam as tft_beam  # noqa: PLC0415
    from tfx_bsl.coders import example_coder  # noqa: PLC0415
    from tfx_bsl.public import tfxio  # noqa: PLC0415

    from movierec.components.data import arrow_reader  # noqa: PLC0415

    def examples(records) -> list:
        encoder = example_coder.RecordBatchToExamplesEncoder()
        return [e for batch in arrow_reader.batches_of_records(records) for e in encoder.encode(batch)]

    train_examples, eval_examples = examples(train), examples(evaluation)
    if not train_examples:
        raise ValueError("transform_in_process: no train records to analyze")
    out = InProcessTransform(transform_output=os.path.join(output_dir, "transform_graph"),
                             train_files=os.path.join(output_dir, "train", "part-*.gz"),
                             eval_files=os.path.join(output_dir, "eval", "part-*.gz"))
    source = tfxio.TFExampleBeamRecord(physical_format="inmem", telemetry_descriptors=["movierec"], schema=schema)
    with beam.Pipeline() as p, tft_beam.Context(temp_dir=os.path.join(output_dir, "tmp")):
        (train_out, _), transform_fn = (
            (p | "CreateTrain" >> beam.Create(train_examples) | "ReadTrain" >> source.BeamSource(),
             source.TensorAdapterConfig())
            | tft_beam.AnalyzeAndTransformDataset(preprocessing_fn, output_record_batches=True))
        eval_out, _ = (((p | "CreateEval" >> beam.Create(eval_examples) | "ReadEval" >> source.BeamSource(),
                         source.TensorAdapterConfig()), transform_fn)
                       | tft_beam.TransformDataset(output_record_batches=True))
        for name, data in (("train", train_out), ("eval", eval_out)):
            # (record batch, passthrough features) -> serialized transformed tf.Examples
            _ = (data | f"Encode{name}" >> beam.FlatMap(
                    lambda batch: example_coder.RecordBatchToExamplesEncoder().encode(batch[0]))
                 | f"Write{name}" >> beam.io.WriteToTFRecord(os.path.join(output_dir, name, "part"),
                                                             file_name_suffix=".gz"))
        _ = transform_fn | tft_beam.WriteTransformFn(out.transform_output)
    return out
