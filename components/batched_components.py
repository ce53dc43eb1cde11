"""StatisticsGen and Transform reading (and Transform writing) examples a record batch at a
time when Beam runs in this process.

`BatchedStatisticsGen` and `BatchedTransform` are TFX's StatisticsGen and Transform (same
spec, parameters, outputs, artifacts and split handling), with executors that differ in I/O
only, and only when the Beam options name an in-process runner (`runs_in_process`):

- the examples are read by `batched_tfxio.BatchedTFExampleRecord` (tf.data's C++ TFRecord
  reader, record batches of BATCH_ROWS decoded in C++) instead of one Beam element per
  record grouped into batches of at most 1,000;
- Transform's transformed record batches [<= BATCH_ROWS rows] are encoded by tfx_bsl's C++
  `RecordBatchToExamplesEncoder` a batch at a time (as TFX does) and written a list at a
  time by TensorFlow's C++ TFRecordWriter (`batched_tfxio.WriteExampleBatches`, one GZIP
  file per bundle under the split's folder), instead of one Beam element per example into
  Beam's TFRecord sink.

TFX builds these readers and writers inside its executors (StatisticsGen's `Do` through
`tfxio_utils.get_split_tfxio`; Transform's `Do` through a `TransformProcessor` it makes
itself), so each executor swaps them in for the duration of its `Do`
(`_swapped_attribute`). With any other runner both run TFX's executors unchanged.
"""
from __future__ import annotations

import contextlib
from typing import Any, Dict, List

import apache_beam as beam
from tfx.components.statistics_gen import component as statistics_gen_component
from tfx.components.statistics_gen import executor as statistics_gen_executor
from tfx.components.transform import component as transform_component
from tfx.components.transform import executor as transform_executor
from tfx.components.transform import labels
from tfx.components.util import tfxio_utils
from tfx.dsl.components.base import executor_spec
from tfx_bsl.coders import example_coder

from movierec.components import batched_tfxio
from movierec.components.batched_tfxio import runs_in_process


@contextlib.contextmanager
def _swapped_attribute(owner: Any, name: str, value: Any):
    """`owner.name` is `value` inside the block, its own value again after (also on error).

    Process-wide while it lasts: TFX's LocalDagRunner runs one component at a time, so no
    other executor in the process uses the swapped attribute meanwhile."""
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


# -- StatisticsGen -----------------------------------------------------------------------------
class _BatchedTfxioUtils:
    """`tfx.components.util.tfxio_utils` as StatisticsGen's executor uses it, except that
    `get_split_tfxio` returns a BatchedTFExampleRecord for TFRecords of tf.Examples."""

    def __getattr__(self, name: str) -> Any:
        return getattr(tfxio_utils, name)

    @staticmethod
    def get_split_tfxio(*args, **kwargs):
        return batched_tfxio.batched(tfxio_utils.get_split_tfxio(*args, **kwargs))


class StatisticsGenExecutor(statistics_gen_executor.Executor):
    """TFX's StatisticsGen executor; in process, each split is read by BatchedTFExampleRecord."""

    def Do(self, input_dict: Dict[str, List[Any]], output_dict: Dict[str, List[Any]],
           exec_properties: Dict[str, Any]) -> None:
        if not runs_in_process(self._beam_pipeline_args):
            return super().Do(input_dict, output_dict, exec_properties)
        with _swapped_attribute(statistics_gen_executor, "tfxio_utils", _BatchedTfxioUtils()):
            return super().Do(input_dict, output_dict, exec_properties)


class BatchedStatisticsGen(statistics_gen_component.StatisticsGen):
    """TFX's StatisticsGen with `StatisticsGenExecutor`."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(StatisticsGenExecutor)


# -- Transform ---------------------------------------------------------------------------------
_TFX_TRANSFORM_PROCESSOR = transform_executor.TransformProcessor   # (swapped during Do below)


class _EncodeRecordBatch(beam.DoFn):
    """(transformed pa.RecordBatch [n rows], unary pass-through features) -> the n serialized
    tf.Examples of the batch, as one list."""

    def __init__(self, schema):
        self._schema = schema
        self._encoder = None

    def setup(self):
        self._encoder = example_coder.RecordBatchToExamplesEncoder(self._schema)

    def process(self, element):
        record_batch, _ = element
        if transform_executor._TRANSFORM_INTERNAL_FEATURE_FOR_KEY in record_batch.schema.names:  # noqa: SLF001
            raise ValueError("batched Transform writing does not carry pass-through keys")
        yield self._encoder.encode(record_batch)


class _BatchedTransformProcessor(_TFX_TRANSFORM_PROCESSOR):
    """TFX's TransformProcessor reading with BatchedTFExampleRecord and writing TFRecords a
    record batch at a time."""

    def _CreateTFXIO(self, dataset, schema):
        return batched_tfxio.batched(super()._CreateTFXIO(dataset, schema))

    @staticmethod
    @beam.ptransform_fn
    @beam.typehints.with_input_types(Any)
    def _EncodeAndWrite(pcoll: beam.PCollection, schema, file_format: str, output_path: str):
        if file_format != labels.FORMAT_TFRECORD:
            return pcoll | "EncodeAndWrite" >> _TFX_TRANSFORM_PROCESSOR._EncodeAndWrite(  # noqa: SLF001
                schema=schema, file_format=file_format, output_path=output_path)
        return (pcoll
                | "EncodeRecordBatches" >> beam.ParDo(_EncodeRecordBatch(schema))
                | "WriteExampleBatches" >> beam.ParDo(batched_tfxio.WriteExampleBatches(output_path)))

    def _RunBeamImpl(self, analyze_data_list, transform_data_list, *args, **kwargs):
        status = super()._RunBeamImpl(analyze_data_list, transform_data_list, *args, **kwargs)
        for dataset in transform_data_list:
            if dataset.materialize_output_path:
                batched_tfxio.ensure_a_file(dataset.materialize_output_path)
        return status


class TransformExecutor(transform_executor.Executor):
    """TFX's Transform executor; in process, with `_BatchedTransformProcessor`."""

    def Do(self, input_dict: Dict[str, List[Any]], output_dict: Dict[str, List[Any]],
           exec_properties: Dict[str, Any]) -> None:
        if not runs_in_process(self._beam_pipeline_args):
            return super().Do(input_dict, output_dict, exec_properties)
        with _swapped_attribute(transform_executor, "TransformProcessor", _BatchedTransformProcessor):
            return super().Do(input_dict, output_dict, exec_properties)


class BatchedTransform(transform_component.Transform):
    """TFX's Transform with `TransformExecutor`."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(TransformExecutor)
