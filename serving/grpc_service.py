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
from tensorflow.core.framework import tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     inference_pb2, predict_pb2, regression_pb2)

from movierec.serving import protos
from movierec.serving.errors import ServingError, invalid_argument
from movierec.serving.grpc_transport import GrpcServer, UnaryMethod, start_grpc_transport
from movierec.serving.listener import Balance
from movierec.serving.service import PredictionCore


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


# -- PredictResponse bytes, encoded directly --------------------------------------------
# (the same TensorProto form as fill_tensor_proto: values in the packed repeated fields)
# Building the response through protobuf's Python API (a TensorProto per output, then
# SerializeToString) took about 100 us for a top-10 answer, 6 us of it per tiny message;
# these few fields, encoded here, take about 35 us. Tested equal to the protobuf encoding.
_VARINT1 = [bytes([i]) for i in range(128)]
_DTYPE_FIELD = {dtype: b"\x08" + bytes([enum]) for dtype, enum in _DTYPES.items()}   # TensorProto.dtype (1)
_SHAPE_FIELDS: dict[tuple, bytes] = {}


def _varint(n: int) -> bytes:
    if n < 128:
        return _VARINT1[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag byte, length, payload."""
    return tag + _varint(len(payload)) + payload


def _shape_field(shape: tuple) -> bytes:
    """TensorProto.tensor_shape (field 2) of a shape: TensorShapeProto.dim (2) of Dim.size (1)."""
    encoded = _SHAPE_FIELDS.get(shape)
    if encoded is None:
        dims = b"".join(_field(b"\x12", b"\x08" + _varint(d) if d else b"") for d in shape)
        if len(_SHAPE_FIELDS) > 1024:
            _SHAPE_FIELDS.clear()
        encoded = _SHAPE_FIELDS[shape] = _field(b"\x12", dims)
    return encoded


# numpy dtype -> packed repeated field tag of TensorProto (float_val 5, double_val 6, int_val 7,
# int64_val 10, bool_val 11), for the dtypes encoded here
_PACKED_TAG = {np.dtype(np.float32): b"\x2a", np.dtype(np.float64): b"\x32", np.dtype(np.int32): b"\x3a",
               np.dtype(np.int64): b"\x52", np.dtype(np.bool_): b"\x5a"}
_LITTLE_ENDIAN = {np.dtype(np.float32): np.dtype("<f4"), np.dtype(np.float64): np.dtype("<f8")}


def _varints(values: np.ndarray) -> bytes:
    """Packed varint payload of integers (negatives as 10-byte two's complement, as protobuf
    writes int32 and int64)."""
    u = values.astype(np.int64, copy=False).reshape(-1).view(np.uint64)
    if int(u.max()) < 128:
        return u.astype(np.uint8).tobytes()
    return b"".join([_varint(v) for v in u.tolist()])


def _tensor_bytes(value: np.ndarray) -> bytes | None:
    """A TensorProto's bytes as fill_tensor_proto would make them; None for a dtype or
    value this encoder does not cover (the caller then uses protobuf)."""
    if value.dtype == object:
        flat = value.reshape(-1).tolist()
        if not all(type(v) is bytes for v in flat):
            return None
        if all(len(v) < 128 for v in flat):
            strings = b"".join([b"B" + _VARINT1[len(v)] + v for v in flat])   # string_val: field 8
        else:
            strings = b"".join([b"B" + _varint(len(v)) + v for v in flat])
        return b"\x08\x07" + _shape_field(value.shape) + strings
    dtype = _DTYPE_FIELD.get(value.dtype)
    if dtype is None:
        return None
    if not value.size:
        return dtype + _shape_field(value.shape)
    if value.dtype.kind == "f":
        payload = np.ascontiguousarray(value, dtype=_LITTLE_ENDIAN[value.dtype]).tobytes()
    elif value.dtype.kind == "b":
        payload = np.ascontiguousarray(value).view(np.uint8).tobytes()
    else:
        payload = _varints(value)
    return dtype + _shape_field(value.shape) + _field(_PACKED_TAG[value.dtype], payload)


def predict_response_bytes(name: str, version: int, signature_name: str, outputs: dict) -> bytes:
    """The serialized PredictResponse: outputs (field 1, map entries of key 1 and TensorProto
    2) and model_spec (2: name 1, version 2 as Int64Value, signature_name 3)."""
    parts = []
    for alias, value in outputs.items():
        tensor = _tensor_bytes(np.asarray(value))
        if tensor is None:   # a dtype not covered: the whole response through protobuf
            response = predict_pb2.PredictResponse()
            response.model_spec.name = name
            response.model_spec.version.value = version
            response.model_spec.signature_name = signature_name
            for a, v in outputs.items():
                fill_tensor_proto(response.outputs[a], v)
            return response.SerializeToString()
        parts.append(_field(b"\x0a", _field(b"\x0a", alias.encode()) + _field(b"\x12", tensor)))
    spec = (_field(b"\x0a", name.encode()) + _field(b"\x12", b"\x08" + _varint(version) if version else b"")
            + (_field(b"\x1a", signature_name.encode()) if signature_name else b""))
    parts.append(_field(b"\x12", spec))
    return b"".join(parts)


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
            return predict_response_bytes(name, servable.version,
                                          request.model_spec.signature_name or "serving_default", outputs)

    async def classify(self, request: classification_pb2.ClassificationRequest, deadline: float | None):
        name = request.model_spec.name
        with self.core.request(name, "classify", "GRPC"):
            version, label = _version_and_label(request.model_spec)
            servable = self.core.manager.servable(name, version, label)
            examples = serialized_examples(request.input)
            classes = await self.core.infer_async(len(examples), servable.classify,
                                                  request.model_spec.signature_name, examples, deadline=deadline)
            response = classification_pb2.ClassificationResponse()
            _fill_model_spec(response.model_spec, name, request.model_spec.signature_name, servable.version)
            _fill_classifications(response.result, classes)
            return response

    async def regress(self, request: regression_pb2.RegressionRequest, deadline: float | None):
        name = request.model_spec.name
        with self.core.request(name, "regress", "GRPC"):
            version, label = _version_and_label(request.model_spec)
            servable = self.core.manager.servable(name, version, label)
            examples = serialized_examples(request.input)
            values = await self.core.infer_async(len(examples), servable.regress,
                                                 request.model_spec.signature_name, examples, deadline=deadline)
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


def _unimplemented(message: str) -> UnaryMethod:
    async def handler(request, deadline):
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED, message)
    return UnaryMethod(lambda raw: None, handler)


def methods(core: PredictionCore) -> dict[str, UnaryMethod]:
    """gRPC method path -> UnaryMethod, for every method of TF Serving's two services."""
    svc = PredictionService(core)
    prediction = "/tensorflow.serving.PredictionService/"
    return {
        prediction + "Predict": UnaryMethod(predict_pb2.PredictRequest.FromString, svc.predict),
        prediction + "GetModelMetadata": UnaryMethod(get_model_metadata_pb2.GetModelMetadataRequest.FromString,
                                                     svc.get_model_metadata),
        prediction + "Classify": UnaryMethod(classification_pb2.ClassificationRequest.FromString, svc.classify),
        prediction + "Regress": UnaryMethod(regression_pb2.RegressionRequest.FromString, svc.regress),
        prediction + "MultiInference": UnaryMethod(inference_pb2.MultiInferenceRequest.FromString,
                                                   svc.multi_inference),
        "/tensorflow.serving.ModelService/GetModelStatus": UnaryMethod(
            get_model_status_pb2.GetModelStatusRequest.FromString, svc.get_model_status),
        "/tensorflow.serving.ModelService/HandleReloadConfigRequest": _unimplemented(
            "config reload is not supported; restart the server"),
    }


async def start_grpc_server(core: PredictionCore, sock: socket.socket, balance: Balance | None = None) -> GrpcServer:
    """Serves TF Serving's gRPC services on a listening socket (`listener.listen_socket`)
    from the running loop; balance: share connections with other worker processes."""
    return await start_grpc_transport(methods(core), sock, core.limits.max_body_bytes, balance)
