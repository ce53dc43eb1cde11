"""gRPC front end: tensorflow.serving.PredictionService and ModelService.

The calls run on the server's asyncio loop over `grpc_transport` (HTTP/2 of our own, as
the REST front end has its own HTTP/1.1): TensorProto decoding and response building run
on the loop; where the model call runs is `PredictionCore.predict_async`'s choice. Each
handler takes (request message, deadline) and returns the response message, or raises
ServingError with the status TF Serving gives.
"""
from __future__ import annotations

import socket

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, predict_pb2

from movierec.serving import protos
from movierec.serving.errors import ServingError, invalid_argument
from movierec.serving.grpc_transport import GrpcServer, UnaryMethod, start_grpc_transport
from movierec.serving.listener import Balance
from movierec.serving.service import PredictionCore


_DTYPES = {np.dtype(np.float32): types_pb2.DT_FLOAT, np.dtype(np.float64): types_pb2.DT_DOUBLE,
           np.dtype(np.int32): types_pb2.DT_INT32, np.dtype(np.int64): types_pb2.DT_INT64,
           np.dtype(np.bool_): types_pb2.DT_BOOL}


def fill_tensor_proto(proto, value: np.ndarray) -> None:
    """numpy -> TensorProto without tf.make_tensor_proto's per-call overhead (strings go in
    string_val, numbers in tensor_content, as TF Serving writes them)."""
    value = np.asarray(value)
    for d in value.shape:
        proto.tensor_shape.dim.add().size = d
    if value.dtype == object or value.dtype.kind == "S":
        proto.dtype = types_pb2.DT_STRING
        flat = value.reshape(-1).tolist()
        try:
            proto.string_val.extend(flat)   # session outputs: bytes already
        except TypeError:
            proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode() for v in flat)
    elif value.dtype in _DTYPES:
        proto.dtype = _DTYPES[value.dtype]
        proto.tensor_content = np.ascontiguousarray(value).tobytes()
    else:
        proto.CopyFrom(tf.make_tensor_proto(value))


# dtype -> (repeated field, numpy dtype): the TensorProto forms clients send
_VALUE_FIELDS = {types_pb2.DT_STRING: ("string_val", object), types_pb2.DT_INT32: ("int_val", np.int32),
                 types_pb2.DT_INT64: ("int64_val", np.int64), types_pb2.DT_FLOAT: ("float_val", np.float32),
                 types_pb2.DT_DOUBLE: ("double_val", np.float64), types_pb2.DT_BOOL: ("bool_val", np.bool_)}
_CONTENT_DTYPES = {v: k for k, v in _DTYPES.items()}


def tensor_to_ndarray(proto) -> np.ndarray:
    """TensorProto -> numpy, as tf.make_ndarray but without its per-call overhead (about
    40 us a tensor) for the common forms: one value per element in the dtype's repeated
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
            values = getattr(proto, field[0])
            if len(values) == n and n > 0:
                return np.array(values, dtype=field[1]).reshape(shape)
    return tf.make_ndarray(proto)


def _version_and_label(spec) -> tuple[int | None, str | None]:
    which = spec.WhichOneof("version_choice")
    if which == "version":
        return spec.version.value, None
    if which == "version_label":
        return None, spec.version_label
    return None, None





class PredictionService:
    """tensorflow.serving.PredictionService: Predict and GetModelMetadata."""

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


def _unimplemented(message: str) -> UnaryMethod:
    async def handler(request, deadline):
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED, message)
    return UnaryMethod(lambda raw: None, handler)


def methods(core: PredictionCore) -> dict[str, UnaryMethod]:
    """gRPC method path -> UnaryMethod, for every method of TF Serving's two services."""
    svc = PredictionService(core)
    prediction = "/tensorflow.serving.PredictionService/"
    not_predict = _unimplemented("Classify, Regress and MultiInference are not implemented by movierec serve; "
                                 "use Predict")
    return {
        prediction + "Predict": UnaryMethod(predict_pb2.PredictRequest.FromString, svc.predict),
        prediction + "GetModelMetadata": UnaryMethod(get_model_metadata_pb2.GetModelMetadataRequest.FromString,
                                                     svc.get_model_metadata),
        prediction + "Classify": not_predict,
        prediction + "Regress": not_predict,
        prediction + "MultiInference": not_predict,
        "/tensorflow.serving.ModelService/GetModelStatus": UnaryMethod(
            get_model_status_pb2.GetModelStatusRequest.FromString, svc.get_model_status),
        "/tensorflow.serving.ModelService/HandleReloadConfigRequest": _unimplemented(
            "config reload is not supported; restart the server"),
    }


async def start_grpc_server(core: PredictionCore, sock: socket.socket, balance: Balance | None = None) -> GrpcServer:
    """Serves TF Serving's gRPC services on a listening socket (`listener.listen_socket`)
    from the running loop; balance: share connections with other worker processes."""
    return await start_grpc_transport(methods(core), sock, core.limits.max_body_bytes, balance)
