"""Executor of MovieLensExampleGen: reads one MovieLens folder into tf.Examples.

TFX's FileBasedDriver resolves the input pattern (and spans, `{SPAN}`) and fingerprints the
files; this executor turns the resolved folder into one tf.Example per valid rating, in
three Beam steps that work on Arrow record batches, not on single examples:

1. ReadAndCheck: `arrow_reader.read_batches` (the checks of `readers`, vectorised for the
   CSV layout; every problem named by file and line) yields record batches of joined
   ratings [<= BATCH_ROWS rows, one list column per raw feature];
2. EncodeAndSplit: each row's split is a FarmHash (`tf.strings.to_hash_bucket_fast`) of its
   `user_id` + 0x1F + `movie_id` into the output config's hash buckets, so a (user, movie)
   pair always lands in the same split, whatever its rating, title or timestamp (and in the
   same split when a newer span re-rates it); each split's rows are encoded into serialized
   tf.Examples by tfx_bsl's C++ `RecordBatchToExamplesEncoder` (parse-identical to building
   the protos in Python; the bytes differ only in the order of the feature map);
3. the splits are written as GZIP TFRecords.

Writing differs from TFX's when the Beam options name an in-process runner
(FnApiRunner/DirectRunner with one worker): each split's lists of examples are written a
list at a time by TensorFlow's C++ TFRecordWriter (`_WriteBatches`, one file per bundle),
without TFX's `Reshuffle` (a GroupByKey over every example, there so that a distributed
runner spreads the writes over workers; in one process it only costs a copy of every
example) and without a Beam element per example (Beam's per-element work and its
per-record GZIP calls in Python would be most of the component's time). With any other runner
the lists are unbatched into one element per example and TFX's `Do` writes them (with
its Reshuffle, on the workers). Split names and artifact properties are TFX's either way.
"""
from __future__ import annotations

import dataclasses

import logging
import os
import uuid
from typing import Any, Dict, Iterator

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import tensorflow as tf
from tfx_bsl.coders import example_coder
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


class _EncodeAndSplit(beam.DoFn):
    """Record batch -> per split, the list of its rows' serialized tf.Examples (one output
    element per batch and split, tagged with the split's name)."""

    def __init__(self, buckets: list[int], split_names: list[str]):
        self._buckets, self._split_names = list(buckets), list(split_names)
        self._encoder = None

    def setup(self):
        self._encoder = example_coder.RecordBatchToExamplesEncoder()

    def process(self, batch: pa.RecordBatch):
        split = split_of_rows(batch, self._buckets)
        for index, name in enumerate(self._split_names):
            rows = np.flatnonzero(split == index)
            if len(rows):
                yield beam.pvalue.TaggedOutput(name, self._encoder.encode(batch.take(pa.array(rows))))


class _WriteBatches(beam.DoFn):
    """Writes lists of serialized examples into GZIP TFRecord files under `split_dir`, one
    file per bundle (`data_tfrecord-<id>-<bundle>.gz`), each record written by TensorFlow's
    C++ TFRecordWriter (through tf.io.gfile's file systems)."""

    def __init__(self, split_dir: str):
        self._split_dir = split_dir
        self._writer, self._bundle, self._id = None, 0, ""

    def setup(self):
        self._id = uuid.uuid4().hex[:8]
        tf.io.gfile.makedirs(self._split_dir)

    def start_bundle(self):
        self._writer = None

    def process(self, examples: list[bytes]):
        if self._writer is None:
            path = os.path.join(self._split_dir, f"{write_split.DEFAULT_FILE_NAME}-{self._id}-{self._bundle:05d}.gz")
            self._writer = tf.io.TFRecordWriter(path, tf.io.TFRecordOptions(compression_type="GZIP"))
            self._bundle += 1
        for example in examples:
            self._writer.write(example)

    def finish_bundle(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


IN_PROCESS_RUNNERS = ("FnApiRunner", "DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner")


def runs_in_process(beam_pipeline_args: list[str]) -> bool:
    """Whether these Beam options run the pipeline in this process with one worker (no
    runner flag means Beam's DirectRunner, one worker unless --direct_num_workers says more)."""
    options = {}
    for arg in beam_pipeline_args:
        key, _, value = arg.lstrip("-").partition("=")
        options[key] = value
    workers = options.get("direct_num_workers", "1")
    return (options.get("runner", "DirectRunner") in IN_PROCESS_RUNNERS
            and options.get("direct_running_mode", "in_memory") == "in_memory" and workers in ("1", ""))


def write_empty_splits(split_dirs: list[str]) -> None:
    """An empty GZIP TFRecord file in each split folder that got no examples (as TFX's
    writer leaves one), so readers of the split find a file."""
    for split_dir in split_dirs:
        if not tf.io.gfile.glob(os.path.join(split_dir, "*")):
            tf.io.gfile.makedirs(split_dir)
            tf.io.TFRecordWriter(os.path.join(split_dir, f"{write_split.DEFAULT_FILE_NAME}-empty.gz"),
                                 tf.io.TFRecordOptions(compression_type="GZIP")).close()


class Executor(BaseExampleGenExecutor):
    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return _MovieLensToRecordBatches

    def GenerateExamplesByBeam(self, pipeline: beam.Pipeline,
                               exec_properties: Dict[str, Any]) -> Dict[str, beam.pvalue.PCollection]:
        """{split name: serialized tf.Examples}, one element per example: what TFX's `Do`
        writes (with its Reshuffle) on a distributed runner."""
        return {name: batches | f"Unbatch[{name}]" >> beam.FlatMap(lambda examples: examples)
                for name, batches in self.encoded_batches(pipeline, exec_properties).items()}

    def encoded_batches(self, pipeline: beam.Pipeline,
                        exec_properties: Dict[str, Any]) -> Dict[str, beam.pvalue.PCollection]:
        """{split name: lists of serialized tf.Examples}, one list per record batch: one
        input split, hash-bucket output splits."""
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
                  | "EncodeAndSplit" >> beam.ParDo(_EncodeAndSplit(buckets, names)).with_outputs(*names))
        return {name: tagged[name] for name in names}

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        if not runs_in_process(self._beam_pipeline_args):
            return super().Do(input_dict, output_dict, exec_properties)
        self._log_startup(input_dict, output_dict, exec_properties)
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
        output_config = example_gen_pb2.Output()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], output_config)
        outputs = output_dict[standard_component_specs.EXAMPLES_KEY]
        artifact_utils.get_single_instance(outputs).split_names = artifact_utils.encode_split_names(
            utils.generate_output_split_names(input_config, output_config))
        logging.info("MovieLensExampleGen: writing splits a record batch at a time (in-process runner)")
        split_dirs = []
        with self._make_beam_pipeline() as pipeline:
            for split_name, batches in self.encoded_batches(pipeline, exec_properties).items():
                split_dirs.append(artifact_utils.get_split_uri(outputs, split_name))
                _ = batches | f"WriteSplit[{split_name}]" >> beam.ParDo(_WriteBatches(split_dirs[-1]))
        write_empty_splits(split_dirs)
        payload_format = exec_properties.get(standard_component_specs.OUTPUT_DATA_FORMAT_KEY)
        file_format = exec_properties.get(standard_component_specs.OUTPUT_FILE_FORMAT_KEY)
        for artifact in outputs:
            if payload_format:
                examples_utils.set_payload_format(artifact, payload_format)
            if file_format:
                examples_utils.set_file_format(artifact, write_split.to_file_format_str(file_format))
