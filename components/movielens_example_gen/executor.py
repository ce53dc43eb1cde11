"""Executor of MovieLensExampleGen: reads one MovieLens folder into Parquet examples.

TFX's FileBasedDriver resolves the input pattern (and spans, `{SPAN}`) and fingerprints the
files; this executor turns the resolved folder into one example (a Parquet row) per valid
rating, in three Beam steps that work on Arrow record batches, not on single examples:

1. ReadAndCheck: `arrow_reader.read_batches` (the checks of `readers`, vectorised for the
   CSV layout; every problem named by file and line) yields record batches of joined
   ratings [<= BATCH_ROWS rows, one list column per raw feature];
2. Split: each row's split is a FarmHash (`tf.strings.to_hash_bucket_fast`) of its
   `user_id` + 0x1F + `movie_id` into the output config's hash buckets, so a (user, movie)
   pair always lands in the same split, whatever its rating, title or timestamp (and in the
   same split when a newer span re-rates it); each split's rows become a table in
   `features.raw_arrow_schema()` (a feature the dataset lacks, e.g. `weight`, is an
   all-null column, which TFXIO reads as an absent feature);
3. each split is written by Beam's `WriteToParquetBatched` (a table at a time, on any
   runner), under TFX's split folders and names.

The artifact's payload format is TFX's `FORMAT_PARQUET`: StatisticsGen and Transform read
it through tfx_bsl's ParquetTFXIO as whole record batches (no tf.Example decoding, no Beam
element per example), and the Trainers apply the transform graph to it
(`training_data.read_interactions`).
"""
from __future__ import annotations

import dataclasses

import logging
import os
from typing import Any, Dict, Iterator

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import tensorflow as tf
from tfx.components.example_gen import utils, write_split
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.components.util import examples_utils
from tfx.utils import proto_utils

from movierec.components import features
from movierec.components.data import arrow_reader, readers, spans

MAX_BAD_RECORDS_KEY = "max_bad_records"
SPAN_WINDOW_KEY = "span_window"


BATCH_ROWS = arrow_reader.BATCH_ROWS
PAIR_SEPARATOR = "\x1f"   # between user_id and movie_id in the split key


def dataset_dir_of(input_base: str, split_pattern: str) -> str:
    """The MovieLens folder that a resolved split pattern (`*`, `span-3/*`) points at."""
    return os.path.dirname(os.path.join(input_base, split_pattern))


def _read_batches(data_dir: str, max_bad_records: int) -> Iterator[pa.RecordBatch]:
    report = readers.ReadReport()
    yield from arrow_reader.read_batches(data_dir, max_bad_records, report)
    _log_report(data_dir, report, max_bad_records)


def _log_report(data_dir: str, report: readers.ReadReport, max_bad_records: int, extra: str = "") -> None:
    logging.info("MovieLensExampleGen: %s (%s): %d ratings, %d users, %d movies, %d invalid "
                 "record(s) skipped within tolerance %d%s", data_dir, report.data_format,
                 report.ratings, report.users, report.movies, len(report.problems),
                 max_bad_records, extra)


def read_window(folders: list[str], max_bad_records: int) -> Iterator[readers.RatingRecord]:
    """Ratings or implicit events of several span folders (oldest first).

    A rating of a (user, movie) pair in more than one span: the newest span's rating wins
    (a re-rating supersedes the old one); superseded ratings are counted and logged.
    An implicit event (rating None) of a pair in more than one span: one interaction whose
    weight is the sum of the spans' weights (1 where none is declared) and whose timestamp
    and metadata are the newest span's, as repeated events within one file are read
    (`components.data.interactions`); these come after the ratings, once every span is read.

    Each span is checked on its own, with the same tolerance.
    """
    seen: set[tuple[str, str]] = set()
    events: dict[tuple[str, str], readers.RatingRecord] = {}   # implicit, summed over spans
    track = len(folders) > 1
    for folder in reversed(folders):   # newest first, so the newest rating of a pair wins
        report = readers.ReadReport()
        superseded, keys = 0, []
        for record in readers.read_ratings(folder, max_bad_records, report):
            key = (record.user_id, record.movie_id)
            if track and record.rating is None:
                newer = events.get(key)
                events[key] = record if newer is None else dataclasses.replace(
                    newer, weight=(newer.weight or 1.0) + (record.weight or 1.0))
                continue
            if key in seen:
                superseded += 1
                continue
            if track:
                keys.append(key)
            yield record
        seen.update(keys)
        _log_report(folder, report, max_bad_records,
                    f"; {superseded} rating(s) superseded by a newer span" if superseded else "")
    yield from events.values()


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
def _MovieLensToRecordBatches(pipeline: beam.Pipeline, exec_properties: Dict[str, Any],
                              split_pattern: str) -> beam.pvalue.PCollection:
    """The checked, joined ratings of the input folder (or span window) as record batches."""
    input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
    max_bad_records = int(exec_properties.get(MAX_BAD_RECORDS_KEY) or 0)
    size = exec_properties.get(SPAN_WINDOW_KEY)
    if size is None or int(size) < 0:
        return (pipeline
                | "Folder" >> beam.Create([dataset_dir_of(input_base, split_pattern)])
                | "ReadAndCheck" >> beam.FlatMap(_read_batches, max_bad_records))
    folders = spans.window_dirs(input_base, int(exec_properties[utils.SPAN_PROPERTY_NAME]), int(size))
    logging.info("MovieLensExampleGen: span window %s of %s", [os.path.basename(f) for f in folders], input_base)
    return (pipeline
            | "Window" >> beam.Create([folders])
            | "ReadAndCheck" >> beam.FlatMap(
                lambda fs: arrow_reader.batches_of_records(read_window(fs, max_bad_records))))


def split_of_rows(batch: pa.RecordBatch, buckets: list[int]) -> np.ndarray:
    """int [rows]: the index of each row's split, from the FarmHash of its (user_id,
    movie_id) into `buckets[-1]` buckets; `buckets` are TFX's cumulative split bounds (e.g.
    [80, 100]: buckets 0-79 -> split 0, 80-99 -> split 1)."""
    keys = pc.binary_join_element_wise(pc.list_flatten(batch.column(features.USER_ID)),
                                       pc.list_flatten(batch.column(features.MOVIE_ID)),
                                       pa.scalar(PAIR_SEPARATOR.encode(), pa.binary()))
    bucket = tf.strings.to_hash_bucket_fast(keys.to_numpy(zero_copy_only=False), buckets[-1]).numpy()
    return np.searchsorted(np.asarray(buckets), bucket, side="right")


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.Table:
    """A record batch of raw feature columns -> a table in `schema` (list columns made
    large lists; a column the batch lacks, all null: the feature is absent, as from a
    tf.Example without it)."""
    columns = []
    for field in schema:
        index = batch.schema.get_field_index(field.name)
        if index < 0:
            columns.append(pa.nulls(batch.num_rows, field.type))
        else:
            columns.append(batch.column(index).cast(field.type))
    return pa.Table.from_arrays(columns, schema=schema)


class _Split(beam.DoFn):
    """Record batch -> per split, a table of its rows in `features.raw_arrow_schema()` (one
    output element per batch and split, tagged with the split's name)."""

    def __init__(self, buckets: list[int], split_names: list[str]):
        self._buckets, self._split_names = list(buckets), list(split_names)
        self._schema = None

    def setup(self):
        self._schema = features.raw_arrow_schema()

    def process(self, batch: pa.RecordBatch):
        split = split_of_rows(batch, self._buckets)
        table = conform(batch, self._schema)
        for index, name in enumerate(self._split_names):
            rows = np.flatnonzero(split == index)
            if len(rows):
                yield beam.pvalue.TaggedOutput(name, table.take(pa.array(rows)))


PARQUET_FILE_FORMAT = example_gen_pb2.FileFormat.Name(example_gen_pb2.FILE_FORMAT_PARQUET)


def _enum_name(enum, value) -> str:
    try:
        return enum.Name(int(value))
    except (TypeError, ValueError):
        return repr(value)


class Executor(BaseExampleGenExecutor):
    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return _MovieLensToRecordBatches

    def split_tables(self, pipeline: beam.Pipeline,
                     exec_properties: Dict[str, Any]) -> Dict[str, beam.pvalue.PCollection]:
        """{split name: tables of its rows}, one table per record batch: one input split,
        hash-bucket output splits."""
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
        output_config = example_gen_pb2.Output()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], output_config)
        split_config = output_config.split_config
        if len(input_config.splits) != 1 or not split_config.splits or split_config.partition_feature_name:
            raise ValueError("MovieLensExampleGen reads one input split into hash-bucket output splits; got "
                             f"input {input_config} and output {output_config}")
        names = utils.generate_output_split_names(input_config, output_config)
        buckets = list(np.cumsum([s.hash_buckets for s in split_config.splits]))
        tagged = (pipeline
                  | "InputToRecordBatches" >> _MovieLensToRecordBatches(exec_properties, input_config.splits[0].pattern)
                  | "Split" >> beam.ParDo(_Split(buckets, names)).with_outputs(*names))
        return {name: tagged[name] for name in names}

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
        output_config = example_gen_pb2.Output()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], output_config)
        payload_format = exec_properties.get(standard_component_specs.OUTPUT_DATA_FORMAT_KEY)
        file_format = exec_properties.get(standard_component_specs.OUTPUT_FILE_FORMAT_KEY)
        if payload_format != example_gen_pb2.FORMAT_PARQUET or file_format != example_gen_pb2.FILE_FORMAT_PARQUET:
            raise ValueError("MovieLensExampleGen writes Parquet examples (output_data_format FORMAT_PARQUET, "
                             "output_file_format FILE_FORMAT_PARQUET); got "
                             f"{_enum_name(example_gen_pb2.PayloadFormat, payload_format)}, "
                             f"{_enum_name(example_gen_pb2.FileFormat, file_format)}")
        outputs = output_dict[standard_component_specs.EXAMPLES_KEY]
        artifact_utils.get_single_instance(outputs).split_names = artifact_utils.encode_split_names(
            utils.generate_output_split_names(input_config, output_config))
        schema = features.raw_arrow_schema()
        with self._make_beam_pipeline() as pipeline:
            for split_name, tables in self.split_tables(pipeline, exec_properties).items():
                prefix = os.path.join(artifact_utils.get_split_uri(outputs, split_name),
                                      write_split.DEFAULT_PARQUET_FILE_NAME)
                _ = tables | f"WriteSplit[{split_name}]" >> beam.io.WriteToParquetBatched(
                    prefix, schema, codec="snappy", file_name_suffix=".parquet")
        for artifact in outputs:
            examples_utils.set_payload_format(artifact, payload_format)
            examples_utils.set_file_format(artifact, PARQUET_FILE_FORMAT)
