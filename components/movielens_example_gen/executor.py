"""Executor of MovieLensExampleGen: reads one MovieLens folder into tf.Examples.

TFX's FileBasedDriver resolves the input pattern (and spans, `{SPAN}`) and fingerprints the
files; this executor turns the resolved folder into one tf.Example per valid rating with
the checked reader of `movierec.components.data.readers`, and TFX's base executor splits
them into train/eval by a hash of each serialized example.

Writing differs from TFX's in one step: TFX's `WriteSplit` puts a `Reshuffle` (a
GroupByKey over every example) before the TFRecord writes, so that a distributed runner
spreads the writes over workers. With the in-process runner there are no other workers,
and that shuffle was the largest cost of the component at scale (about 75 us and one
in-memory copy per example; a third of ExampleGen's time at 1M ratings). So `Do` writes
without it when the Beam options name an in-process runner (FnApiRunner/DirectRunner with
one worker), and with it otherwise. Everything else is TFX's `Do` (same files, split names
and artifact properties).
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, Iterator

import apache_beam as beam
import tensorflow as tf
from tfx.components.example_gen import utils, write_split
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.components.util import examples_utils
from tfx.utils import proto_utils

from movierec.components import features
from movierec.components.data import readers, spans

MAX_BAD_RECORDS_KEY = "max_bad_records"
SPAN_WINDOW_KEY = "span_window"


def record_to_example(record: readers.RatingRecord) -> tf.train.Example:
    """One joined rating -> tf.Example with the raw features of `features.RAW_FEATURES`."""
    ex = tf.train.Example()
    f = ex.features.feature
    f[features.USER_ID].bytes_list.value.append(record.user_id.encode())
    f[features.MOVIE_ID].bytes_list.value.append(record.movie_id.encode())
    f[features.RATING].float_list.value.append(record.rating)
    f[features.TIMESTAMP].int64_list.value.append(record.timestamp)
    f[features.TITLE].bytes_list.value.append(record.title.encode("utf-8"))
    f[features.GENRES].bytes_list.value.extend(g.encode("utf-8") for g in record.genres)
    return ex


def dataset_dir_of(input_base: str, split_pattern: str) -> str:
    """The MovieLens folder that a resolved split pattern (`*`, `span-3/*`) points at."""
    return os.path.dirname(os.path.join(input_base, split_pattern))


def _read_examples(data_dir: str, max_bad_records: int) -> Iterator[tf.train.Example]:
    report = readers.ReadReport()
    for record in readers.read_ratings(data_dir, max_bad_records, report):
        yield record_to_example(record)
    _log_report(data_dir, report, max_bad_records)


def _log_report(data_dir: str, report: readers.ReadReport, max_bad_records: int, extra: str = "") -> None:
    logging.info("MovieLensExampleGen: %s (%s): %d ratings, %d users, %d movies, %d invalid "
                 "record(s) skipped within tolerance %d%s", data_dir, report.data_format,
                 report.ratings, report.users, report.movies, len(report.problems),
                 max_bad_records, extra)


def read_window(folders: list[str], max_bad_records: int) -> Iterator[readers.RatingRecord]:
    """Ratings of several span folders (oldest first); a (user, movie) pair rated in more
    than one span keeps the newest span's rating. Superseded ratings are counted and logged.

    Each span is checked on its own, with the same tolerance.
    """
    seen: set[tuple[str, str]] = set()
    track = len(folders) > 1
    for folder in reversed(folders):   # newest first, so the newest rating of a pair wins
        report = readers.ReadReport()
        superseded, keys = 0, []
        for record in readers.read_ratings(folder, max_bad_records, report):
            key = (record.user_id, record.movie_id)
            if key in seen:
                superseded += 1
                continue
            if track:
                keys.append(key)
            yield record
        seen.update(keys)
        _log_report(folder, report, max_bad_records,
                    f"; {superseded} rating(s) superseded by a newer span" if superseded else "")


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def _MovieLensToExample(pipeline: beam.Pipeline, exec_properties: Dict[str, Any],
                        split_pattern: str) -> beam.pvalue.PCollection:
    input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
    max_bad_records = int(exec_properties.get(MAX_BAD_RECORDS_KEY) or 0)
    size = exec_properties.get(SPAN_WINDOW_KEY)
    if size is None or int(size) < 0:
        return (pipeline
                | "Folder" >> beam.Create([dataset_dir_of(input_base, split_pattern)])
                | "ReadAndCheck" >> beam.FlatMap(_read_examples, max_bad_records))
    folders = spans.window_dirs(input_base, int(exec_properties[utils.SPAN_PROPERTY_NAME]), int(size))
    logging.info("MovieLensExampleGen: span window %s of %s", [os.path.basename(f) for f in folders], input_base)
    return (pipeline
            | "Window" >> beam.Create([folders])
            | "ReadAndCheck" >> beam.FlatMap(
                lambda fs: (record_to_example(r) for r in read_window(fs, max_bad_records))))


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


@beam.ptransform_fn
def _WriteSplitInProcess(examples: beam.pvalue.PCollection, split_dir: str) -> beam.pvalue.PDone:
    """TFX's WriteSplit without its Reshuffle: same file names, GZIP TFRecords."""
    return (examples
            | "Serialize" >> beam.ParDo(write_split.MaybeSerialize())
            | "Write" >> beam.io.WriteToTFRecord(os.path.join(split_dir, write_split.DEFAULT_FILE_NAME),
                                                 file_name_suffix=".gz"))


class Executor(BaseExampleGenExecutor):
    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return _MovieLensToExample

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
        logging.info("MovieLensExampleGen: writing splits without a reshuffle (in-process runner)")
        with self._make_beam_pipeline() as pipeline:
            for split_name, examples in self.GenerateExamplesByBeam(pipeline, exec_properties).items():
                _ = examples | f"WriteSplit[{split_name}]" >> _WriteSplitInProcess(
                    artifact_utils.get_split_uri(outputs, split_name))
        payload_format = exec_properties.get(standard_component_specs.OUTPUT_DATA_FORMAT_KEY)
        file_format = exec_properties.get(standard_component_specs.OUTPUT_FILE_FORMAT_KEY)
        for artifact in outputs:
            if payload_format:
                examples_utils.set_payload_format(artifact, payload_format)
            if file_format:
                examples_utils.set_file_format(artifact, write_split.to_file_format_str(file_format))
