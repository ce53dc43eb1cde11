"""gRPC front end: tensorflow.serving.PredictionService and ModelService.

HTTP/2 and the gRPC protocol are grpcio's (`grpc.aio` on the server's asyncio loop, with
the servicer classes generated in `tensorflow_serving.apis`). TensorProto decoding and
response building run on the loop; where the model call runs is
`PredictionCore.predict_async`'s choice. Each `PredictionService` method takes (request
message, deadline) and returns the response message, or raises ServingError with the
status TF Serving gives; `_Servicers` turns that into the call's status.
"""
from __future__ import annotations

import errno
import logging
import time

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     inference_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc, regression_pb2)

from movierec.serving import protos
from movierec.serving.errors import ServingError, invalid_argument
from movierec.serving.service import CONNECTION, PredictionCore

log = logging.getLogger(__name__)


_DTYPES = {np.dtype(np.float32): types_pb2.DT_FLOAT, np.dtype(np.float64): types_pb2.DT_DOUBLE,
           np.dtype(np.int32): types_pb2.DT_INT32, np.dtype(np.int64): types_pb2.DT_INT64,
           np.dtype(np.bool_): types_pb2.DT_BOOL}


_SHAPES: dict[tuple, tensor_shape_pb2.TensorShapeProto] = {}


def _shape_proto(shape: tuple) -> tensor_shape_pb2.TensorShapeProto:
    """The TensorShapeProto of a shape, built once per shape (responses repeat a few)."""
    proto = _SHAPES.get(shape)
    if proto is None:
        if len(_SHAPES) > 1024:
            _SHAPES.clear()
        proto = _SHAPES[shape] = tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in shape])
    return proto


# numpy dtype -> (DataType, TensorProto repeated field) as TF's Tensor::AsProtoField fills them
_VALUE_FIELD_OF = {np.dtype(np.float32): (types_pb2.DT_FLOAT, "float_val"),
                   np.dtype(np.float64): (types_pb2.DT_DOUBLE, "double_val"),
                   np.dtype(np.int8): (types_pb2.DT_INT8, "int_val"),
                   np.dtype(np.int16): (types_pb2.DT_INT16, "int_val"),
                   np.dtype(np.int32): (types_pb2.DT_INT32, "int_val"),
                   np.dtype(np.uint8): (types_pb2.DT_UINT8, "int_val"),
                   np.dtype(np.uint16): (types_pb2.DT_UINT16, "int_val"),
                   np.dtype(np.int64): (types_pb2.DT_INT64, "int64_val"),
                   np.dtype(np.uint32): (types_pb2.DT_UINT32, "uint32_val"),
                   np.dtype(np.uint64): (types_pb2.DT_UINT64, "uint64_val"),
                   np.dtype(np.bool_): (types_pb2.DT_BOOL, "bool_val")}


def fill_tensor_proto(proto, value: np.ndarray) -> None:
    """numpy -> TensorProto as TF Serving writes Predict outputs (Tensor::AsProtoField: the
    values in the dtype's repeated field, `float_val` for float32 and so on; strings in
    `string_val`; float16 as `half_val` bit patterns). Clients read `float_val` directly
    (TF Serving's own tests do), so `tensor_content` is not used."""
    value = np.asarray(value)
    proto.tensor_shape.CopyFrom(_shape_proto(value.shape))
    if value.dtype == object or value.dtype.kind == "S":
        proto.dtype = types_pb2.DT_STRING
        flat = value.reshape(-1).tolist()
        try:
            proto.string_val.extend(flat)   # session outputs: bytes already
        except TypeError:
            proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode() for v in flat)
    elif value.dtype in _VALUE_FIELD_OF:
        dtype, field = _VALUE_FIELD_OF[value.dtype]
        proto.dtype = dtype
        getattr(proto, field).extend(value.reshape(-1).tolist())
    elif value.dtype == np.float16:
        proto.dtype = types_pb2.DT_HALF
        proto.half_val.extend(value.reshape(-1).view(np.uint16).tolist())
    else:
        made = tf.make_tensor_proto(value)
        proto.CopyFrom(made)


# dtype -> (repeated field, numpy dtype): the TensorProto forms clients send
_VALUE_FIELDS = {types_pb2.DT_STRING: ("string_val", object), types_pb2.DT_INT32: ("int_val", np.int32),
                 types_pb2.DT_INT64: ("int64_val", np.int64), types_pb2.DT_FLOAT: ("float_val", np.float32),
                 types_pb2.DT_DOUBLE: ("double_val", np.float64), types_pb2.DT_BOOL: ("bool_val", np.bool_)}
_CONTENT_DTYPES = {v: k for k, v in _DTYPES.items()}


def tensor_to_ndarray(proto) -> np.ndarray:
    """TensorProto -> numpy, as tf.make_ndarray but without its per-call overhead (it goes
    through TensorFlow's dtype and shape machinery for every tensor) for the common forms: one value per element in the dtype's repeated
    field, or `tensor_content`. Any other form (fewer values than elements, which TF pads
    with the last one; other dtypes; a malformed tensor) goes through tf.make_ndarray."""
    shape = [d.size for d in proto.tensor_shape.dim]
    n = 1
    for d in shape:
        n *= d
    if proto.tensor_content:
        dtype = _CONTENT_DTYPES.get(proto.dtype)
        if dtype is not None and n >= 0 and len(proto.tensor_content) == n * dtype.itemsize:
            return np.frombuffer(proto.tensor_content, dtype=dtype).copy().reshape(shape)
    else:
        field = _VALUE_FIELDS.get(proto.dtype)
        if field is not None:
            values = list(getattr(proto, field[0]))
            if len(values) == n and n > 0:
                if field[1] is object:
                    arr = np.empty(n, dtype=object)
                    arr[:] = values
                    return arr.reshape(shape)
                return np.array(values, dtype=field[1]).reshape(shape)
    return tf.make_ndarray(proto)


def _version_and_label(spec) -> tuple[int | None, str | None]:
    which = spec.WhichOneof("version_choice")
    if which == "version":
        return spec.version.value, None
    if which == "version_label":
        return None, spec.version_label
    return None, None





def serialized_examples(inp) -> list[bytes]:
    """A tensorflow.serving.Input -> one serialized tf.Example per example; with a context,
    the context's bytes come first (parsing merges the two, as TF Serving feeds them)."""
    which = inp.WhichOneof("kind")
    if which == "example_list":
        return [e.SerializeToString() for e in inp.example_list.examples]
    if which == "example_list_with_context":
        context = inp.example_list_with_context.context.SerializeToString()
        return [context + e.SerializeToString() for e in inp.example_list_with_context.examples]
    return []


def _fill_model_spec(spec, name: str, signature_name: str, version: int) -> None:
    """The response's model_spec as TF Serving's MakeModelSpec writes it."""
    spec.name = name
    spec.signature_name = signature_name or "serving_default"
    spec.version.value = version


def _fill_classifications(result, classifications) -> None:
    for row in classifications:
        c = result.classifications.add()
        for label, score in row:
            c.classes.add(label=label, score=score)


class PredictionService:
    """tensorflow.serving.PredictionService: Predict, Classify, Regress, MultiInference and
    GetModelMetadata."""

    def __init__(self, core: PredictionCore):
        self.core = core

    async def predict(self, request: predict_pb2.PredictRequest, deadline: float | None):
        name = request.model_spec.name
        with self.core.request(name, "predict", "GRPC"):
            version, label = _version_and_label(request.model_spec)
            inputs = {}
            for alias, proto in request.inputs.items():
                try:
                    inputs[alias] = tensor_to_ndarray(proto)
                except Exception as e:  # noqa: BLE001 - any undecodable TensorProto
                    raise invalid_argument(f"input '{alias}': invalid TensorProto: {e}") from None
            self.core.check_batch(inputs)
            servable = self.core.manager.servable(name, version, label)
            outputs = await self.core.predict_async(servable, request.model_spec.signature_name,
                                                    inputs, list(request.output_filter), deadline)
            response = predict_pb2.PredictResponse()
            response.model_spec.name = name
            response.model_spec.version.value = servable.version
            response.model_spec.signature_name = request.model_spec.signature_name or "serving_default"
            for alias, value in outputs.items():
                fill_tensor_proto(response.outputs[alias], value)
            return response

    async def _infer_examples(self, request, method: str, deadline: float | None):
        """Classify or Regress: the request's tf.Examples through `servable.<method>` ->
        (servable, its results)."""
        version, label = _version_and_label(request.model_spec)
        servable = self.core.manager.servable(request.model_spec.name, version, label)
        examples = serialized_examples(request.input)
        results = await self.core.infer_async(len(examples), getattr(servable, method),
                                              request.model_spec.signature_name, examples, deadline=deadline)
        return servable, results

    async def classify(self, request: classification_pb2.ClassificationRequest, deadline: float | None):
        name = request.model_spec.name
        with self.core.request(name, "classify", "GRPC"):
            servable, classes = await self._infer_examples(request, "classify", deadline)
            response = classification_pb2.ClassificationResponse()
            _fill_model_spec(response.model_spec, name, request.model_spec.signature_name, servable.version)
            _fill_classifications(response.result, classes)
            return response

    async def regress(self, request: regression_pb2.RegressionRequest, deadline: float | None):
        name = request.model_spec.name
        with self.core.request(name, "regress", "GRPC"):
            servable, values = await self._infer_examples(request, "regress", deadline)
            response = regression_pb2.RegressionResponse()
            _fill_model_spec(response.model_spec, name, request.model_spec.signature_name, servable.version)
            for v in values:
                response.result.regressions.add(value=v)
            return response

    async def multi_inference(self, request: inference_pb2.MultiInferenceRequest, deadline: float | None):
        """Every task on the same model and examples; the servable is the first task's."""
        first = request.tasks[0].model_spec if request.tasks else None
        name = first.name if first is not None else ""
        with self.core.request(name, "multi_inference", "GRPC"):
            version, label = _version_and_label(first) if first is not None else (None, None)
            servable = self.core.manager.servable(name, version, label)
            for task in request.tasks:
                if not task.model_spec.name:
                    raise invalid_argument("Found ModelSpec with an empty model name.")
                if task.model_spec.name != name:
                    raise invalid_argument("All ModelSpecs in a MultiInferenceRequest must access the same "
                                           "model name.")
            tasks = [(t.model_spec.signature_name, t.method_name) for t in request.tasks]
            examples = serialized_examples(request.input)
            results = await self.core.infer_async(len(examples), servable.infer, tasks, examples,
                                                  deadline=deadline)
            response = inference_pb2.MultiInferenceResponse()
            for task, (kind, value) in zip(request.tasks, results):
                r = response.results.add()
                _fill_model_spec(r.model_spec, name, task.model_spec.signature_name, servable.version)
                if kind == "classify":
                    _fill_classifications(r.classification_result, value)
                else:
                    for v in value:
                        r.regression_result.regressions.add(value=v)
            return response

    async def get_model_metadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest,
                                 deadline: float | None):
        name = request.model_spec.name
        with self.core.request(name, "GetModelMetadata", "GRPC"):
            fields = list(request.metadata_field)
            if fields != ["signature_def"]:
                raise invalid_argument(
                    "Metadata field(s) not supported: " + ",".join(f for f in fields if f != "signature_def")
                    if any(f != "signature_def" for f in fields) else "Missing metadata_field: signature_def")
            version, label = _version_and_label(request.model_spec)
            return protos.metadata_response(name, self.core.metadata(name, version, label))

    async def get_model_status(self, request: get_model_status_pb2.GetModelStatusRequest,
                               deadline: float | None):
        name = request.model_spec.name
        with self.core.request(name, "GetModelStatus", "GRPC"):
            version, label = _version_and_label(request.model_spec)
            return protos.status_response(name, self.core.status(name, version, label))


class _Servicers(prediction_service_pb2_grpc.PredictionServiceServicer, model_service_pb2_grpc.ModelServiceServicer):
    """grpcio's servicer methods over PredictionService: the request's deadline from the
    call, a ServingError answered with its status code and message."""

    def __init__(self, core: PredictionCore):
        self.svc = PredictionService(core)

    async def Predict(self, request, context):  # noqa: N802 - gRPC method names
        return await _answer(self.svc.predict, request, context)

    async def Classify(self, request, context):  # noqa: N802
        return await _answer(self.svc.classify, request, context)

    async def Regress(self, request, context):  # noqa: N802
        return await _answer(self.svc.regress, request, context)

    async def MultiInference(self, request, context):  # noqa: N802
        return await _answer(self.svc.multi_inference, request, context)

    async def GetModelMetadata(self, request, context):  # noqa: N802
        return await _answer(self.svc.get_model_metadata, request, context)

    async def GetModelStatus(self, request, context):  # noqa: N802
        return await _answer(self.svc.get_model_status, request, context)

    async def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "config reload is not supported; restart the server")


async def _answer(method, request, context: grpc.aio.ServicerContext):
    CONNECTION.set(("gRPC", context.peer()))   # one HTTP/2 connection: fair admission's unit
    remaining = context.time_remaining()
    deadline = time.monotonic() + remaining if remaining is not None else None
    try:
        return await method(request, deadline)
    except ServingError as e:
        await context.abort(e.code, e.message)
    except Exception as e:  # noqa: BLE001 - INTERNAL with the error's name, the traceback to the log
        log.error("gRPC call failed", exc_info=e)
        await context.abort(grpc.StatusCode.INTERNAL, f"Internal error: {type(e).__name__}: {e}")


class _ClientGoneFilter(logging.Filter):
    """grpcio logs a call whose answer could not be sent, because its client reset the
    stream or closed the connection first, as an ERROR with a traceback
    ("ExecuteBatchError raised in core by servicer method"). That is the client's doing
    (and the call was counted as cancelled), so it becomes one INFO line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is not None and type(error).__name__ == "ExecuteBatchError":
            record.levelno, record.levelname = logging.INFO, "INFO"
            said = record.getMessage()
            record.msg, record.args = "%s (the client went away before its answer was sent)", (said,)
            record.exc_info = record.exc_text = None
        return True


logging.getLogger("grpc._cython.cygrpc").addFilter(_ClientGoneFilter())


def grpc_address(host: str, port: int) -> str:
    """host:port as gRPC writes it (an IPv6 address in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# Streams one HTTP/2 connection may have open at once: twice what it may run
# (Limits.max_requests_per_connection), so a client's queued calls wait in its own window.
MAX_STREAMS_PER_CONNECTION_FACTOR = 2


def grpc_server_options(limits, reuse_port: bool = False) -> list[tuple[str, int]]:
    """grpcio's channel arguments for the server: what HTTP/2 and gRPC defend themselves.

    - grpc.max_concurrent_streams: a connection's open streams (HTTP/2 SETTINGS), so that
      one connection's calls are bounded before they reach admission;
    - grpc.max_receive_message_length / max_send_message_length: request and answer sizes;
    - grpc.max_metadata_size: header block size (a CONTINUATION flood is refused by it and
      by grpc core's frame checks);
    - grpc.server_handshake_timeout_ms: a connection that does not finish the HTTP/2
      preface and SETTINGS in `read_timeout_seconds` is closed;
    - grpc.max_connection_idle_ms: a connection without calls for `idle_timeout_seconds`
      is closed (GOAWAY);
    - grpc.http2.max_ping_strikes / min_ping_interval_without_data_ms: ping floods are
      answered with GOAWAY.
    Rapid reset (CVE-2023-44487) and SETTINGS floods are limited by grpc core itself
    (pending induced frames, reset-stream accounting); output memory by HTTP/2 flow
    control: grpc core stops writing to a stream whose window is closed and holds at most
    one answer per open stream."""
    return [
        ("grpc.so_reuseport", 1 if reuse_port else 0),
        ("grpc.max_receive_message_length", limits.max_body_bytes),
        ("grpc.max_send_message_length", limits.max_body_bytes),
        ("grpc.max_metadata_size", 16 << 10),
        ("grpc.max_concurrent_streams", limits.max_requests_per_connection * MAX_STREAMS_PER_CONNECTION_FACTOR),
        ("grpc.server_handshake_timeout_ms", int(limits.read_timeout_seconds * 1000)),
        ("grpc.max_connection_idle_ms", int(limits.idle_timeout_seconds * 1000)),
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ]


async def start_grpc_server(core: PredictionCore, host: str, port: int, reuse_port: bool = False) -> tuple[grpc.aio.Server, int]:
    """grpcio's asyncio server with TF Serving's two services, on (host, port) from the
    running loop -> (server, bound port). reuse_port: several worker processes bind the
    same port (SO_REUSEPORT); without it a port in use is an error. An OSError names the
    address that could not be bound."""
    server = grpc.aio.server(options=grpc_server_options(core.limits, reuse_port))
    servicers = _Servicers(core)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicers, server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(servicers, server)
    try:
        bound = server.add_insecure_port(grpc_address(host, port))
    except RuntimeError as e:
        bound, reason = 0, str(e)
    else:
        reason = "Address already in use"
    if not bound:
        await server.stop(None)
        raise OSError(errno.EADDRINUSE, f"could not bind gRPC to {host}:{port}: {reason}")
    await server.start()
    return server, bound
