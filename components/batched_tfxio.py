"""tf.Examples in TFRecord files, read and written a record batch at a time in Beam.

TFX's reader of examples (tfx_bsl's `TFExampleRecord.BeamSource`) makes every record one
Beam element: Beam's TFRecord source reads and checks it in Python, a telemetry step counts
it, `BatchElements` gathers the records into batches of at most 1,000 (grown from 1 while it
tunes), and only then does C++ decode them. TFX Transform writes the same way backwards: one
element per transformed example into Beam's TFRecord sink, which compresses each record by a
Python call. On one process these per-element steps, not the statistics or the TF graph, are
most of what StatisticsGen and Transform cost per rating.

`BatchedTFExampleRecord` is the same TFXIO (same schema, projection, Arrow schema and tensor
adapter; `TFExampleRecord` subclass) whose `BeamSource` emits one element per file and reads
it with tfx_bsl's own `TFExampleRecord.RecordBatches`: tf.data's C++ TFRecord reader (GZIP
detected from the `.gz` names, as Beam's source does), `BATCH_ROWS` records per batch decoded
by tfx_bsl's `ExamplesToRecordBatchDecoder` into a `pa.RecordBatch` [<= BATCH_ROWS rows].
Files are the unit of parallelism (Beam's source splits large files into ranges; this does
not), so it is meant for the in-process runner (`runs_in_process`); on a distributed runner
the executors keep TFX's reader.

`WriteExampleBatches` is the writing half: lists of serialized tf.Examples written by
TensorFlow's C++ `TFRecordWriter` (GZIP), one file per bundle, through tf.io.gfile.
"""
from __future__ import annotations

import os
import uuid
from typing import Iterator, List, Optional

import apache_beam as beam
import pyarrow as pa
import tensorflow as tf
from tfx_bsl.tfxio import dataset_options, telemetry, tf_example_record, tfxio

from movierec.components.movielens_example_gen.executor import runs_in_process  # noqa: F401  (re-exported)

BATCH_ROWS = 65536   # records per decoded batch


class BatchedTFExampleRecord(tf_example_record.TFExampleRecord):
    """`TFExampleRecord` whose `BeamSource` reads whole files in C++, `batch_size` (or
    BATCH_ROWS) records per `pa.RecordBatch`."""

    def _ProjectImpl(self, tensor_names: List[str]) -> tfxio.TFXIO:
        return batched(super()._ProjectImpl(tensor_names))

    def files(self) -> list[str]:
        """The files the patterns match, sorted per pattern (patterns in their order)."""
        matched: list[str] = []
        for pattern in self._file_pattern:
            matched.extend(sorted(tf.io.gfile.glob(pattern)))
        return matched

    def read_file(self, path: str, batch_size: Optional[int] = None) -> Iterator[pa.RecordBatch]:
        """The record batches of one file, in record order."""
        one = tf_example_record.TFExampleRecord(
            path, schema=self._schema, raw_record_column_name=self.raw_record_column_name,
            telemetry_descriptors=self.telemetry_descriptors)
        yield from one.RecordBatches(dataset_options.RecordBatchesOptions(
            batch_size=batch_size or BATCH_ROWS, num_epochs=1, shuffle=False))

    def BeamSource(self, batch_size: Optional[int] = None) -> beam.PTransform:
        files = self.files()

        @beam.typehints.with_input_types(beam.Pipeline)
        @beam.typehints.with_output_types(pa.RecordBatch)
        def _ptransform_fn(pipeline):
            return (pipeline
                    | "ListFiles" >> beam.Create(files)
                    | "ReadRecordBatches" >> beam.FlatMap(self.read_file, batch_size)
                    | "CollectRecordBatchTelemetry" >> telemetry.ProfileRecordBatches(
                        self.telemetry_descriptors, self._logical_format, self._physical_format))

        return beam.ptransform_fn(_ptransform_fn)()


def batched(source: tfxio.TFXIO) -> tfxio.TFXIO:
    """`source` as a BatchedTFExampleRecord if it is a plain TFExampleRecord (same files,
    schema, raw-record column and telemetry); any other TFXIO unchanged."""
    if type(source) is not tf_example_record.TFExampleRecord:  # noqa: E721 (exactly that class)
        return source
    return BatchedTFExampleRecord(
        file_pattern=list(source._file_pattern), schema=source._schema,  # noqa: SLF001
        raw_record_column_name=source.raw_record_column_name,
        telemetry_descriptors=source.telemetry_descriptors)


class WriteExampleBatches(beam.DoFn):
    """Writes lists of serialized tf.Examples as GZIP TFRecords, one file per bundle:
    `<prefix>-<writer id>-<bundle>.gz`, records in their order."""

    def __init__(self, prefix: str):
        self._prefix = prefix
        self._writer, self._bundle, self._id = None, 0, ""

    def setup(self):
        self._id = uuid.uuid4().hex[:8]
        tf.io.gfile.makedirs(os.path.dirname(self._prefix))

    def start_bundle(self):
        self._writer = None

    def process(self, examples: List[bytes]):
        if self._writer is None:
            path = f"{self._prefix}-{self._id}-{self._bundle:05d}.gz"
            self._writer = tf.io.TFRecordWriter(path, tf.io.TFRecordOptions(compression_type="GZIP"))
            self._bundle += 1
        for example in examples:
            self._writer.write(example)

    def finish_bundle(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def ensure_a_file(prefix: str) -> None:
    """An empty GZIP TFRecord file `<prefix>-empty.gz` if no file starts with `prefix` (no
    examples were written), so that readers of the folder find a file, as after Beam's sink."""
    if not tf.io.gfile.glob(prefix + "*"):
        tf.io.gfile.makedirs(os.path.dirname(prefix))
        tf.io.TFRecordWriter(prefix + "-empty.gz", tf.io.TFRecordOptions(compression_type="GZIP")).close()
