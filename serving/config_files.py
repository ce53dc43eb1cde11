"""TF Serving's text-proto flag files that `tensorflow-serving-api` ships no Python classes
for: `--batching_parameters_file` (tensorflow.serving.BatchingParameters, from
session_bundle_config.proto) and `--monitoring_config_file`
(tensorflow.serving.MonitoringConfig, from monitoring_config.proto).

The two messages are declared here with protobuf's descriptor API, field for field as in
TF Serving's .proto files, so a file written for `tensorflow_model_server` parses the same
(and a misspelt field is refused by name, as there).
"""
from __future__ import annotations

import dataclasses

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2

from movierec import filesystems
from movierec.serving.options import BatchingOptions

_F = descriptor_pb2.FieldDescriptorProto
METRICS_PATH = "/monitoring/prometheus/metrics"   # TF Serving's default prometheus_config path


def _build():
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    f = descriptor_pb2.FileDescriptorProto(name="movierec_tfs_flag_files.proto", package="tensorflow.serving",
                                           syntax="proto3", dependency=["google/protobuf/wrappers.proto"])
    bp = f.message_type.add(name="BatchingParameters")
    for number, name, wrapper in ((1, "max_batch_size", "Int64Value"), (2, "batch_timeout_micros", "Int64Value"),
                                  (3, "max_enqueued_batches", "Int64Value"), (4, "num_batch_threads", "Int64Value"),
                                  (5, "thread_pool_name", "StringValue")):
        bp.field.add(name=name, number=number, label=_F.LABEL_OPTIONAL, type=_F.TYPE_MESSAGE,
                     type_name=f".google.protobuf.{wrapper}")
    bp.field.add(name="allowed_batch_sizes", number=6, label=_F.LABEL_REPEATED, type=_F.TYPE_INT64)
    bp.field.add(name="pad_variable_length_inputs", number=7, label=_F.LABEL_OPTIONAL, type=_F.TYPE_BOOL)
    pc = f.message_type.add(name="PrometheusConfig")
    pc.field.add(name="enable", number=1, label=_F.LABEL_OPTIONAL, type=_F.TYPE_BOOL)
    pc.field.add(name="path", number=2, label=_F.LABEL_OPTIONAL, type=_F.TYPE_STRING)
    mc = f.message_type.add(name="MonitoringConfig")
    mc.field.add(name="prometheus_config", number=1, label=_F.LABEL_OPTIONAL, type=_F.TYPE_MESSAGE,
                 type_name=".tensorflow.serving.PrometheusConfig")
    pool.Add(f)
    factory = message_factory.MessageFactory(pool)
    return (factory.GetPrototype(pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters")),
            factory.GetPrototype(pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig")))


BatchingParameters, MonitoringConfig = _build()


def _parse(path: str, message, flag: str):
    try:
        text = filesystems.read_text(path)
    except OSError as e:
        raise ValueError(f"{flag}: cannot read {path}: {e.strerror or e}") from None
    try:
        return text_format.Parse(text, message())
    except text_format.ParseError as e:
        raise ValueError(f"{flag}: error parsing text-format {message.DESCRIPTOR.full_name} "
                         f"in {path}: {e}") from None


def load_batching_parameters(path: str) -> BatchingOptions:
    """--batching_parameters_file -> our batching settings: max_batch_size (rows in one merged
    call) and batch_timeout_micros carry over; TF Serving's thread and queue settings
    (num_batch_threads, max_enqueued_batches, thread_pool_name, allowed_batch_sizes,
    pad_variable_length_inputs) have no counterpart here (batches run on the serving loop or
    a model thread, `--model_threads`) and are accepted and ignored. An omitted field keeps
    BatchingOptions' default, as in TF Serving."""
    params = _parse(path, BatchingParameters, "--batching_parameters_file")
    defaults = BatchingOptions()
    try:
        return dataclasses.replace(
            defaults,
            max_batch_rows=params.max_batch_size.value if params.HasField("max_batch_size") else defaults.max_batch_rows,
            timeout_micros=(params.batch_timeout_micros.value if params.HasField("batch_timeout_micros")
                            else defaults.timeout_micros))
    except ValueError as e:
        raise ValueError(f"--batching_parameters_file {path}: {e}") from None


def load_monitoring_config(path: str) -> str | None:
    """--monitoring_config_file -> the Prometheus metrics path, or None when
    prometheus_config is not enabled (as in TF Serving: no metrics endpoint then). An empty
    path is TF Serving's default, /monitoring/prometheus/metrics."""
    config = _parse(path, MonitoringConfig, "--monitoring_config_file")
    if not config.prometheus_config.enable:
        return None
    path = config.prometheus_config.path or METRICS_PATH
    if not path.startswith("/"):
        raise ValueError(f"--monitoring_config_file: prometheus_config path must start with '/', got {path!r}")
    return path
