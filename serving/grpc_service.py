"""gRPC front end: tensorflow.serving.PredictionService and ModelService.

On grpc.aio, on the server's asyncio loop (as the REST front end): TensorProto decoding and
response building run on the loop; where the model call runs is
`PredictionCore.predict_async`'s choice.
"""
from __future__ import annotations

import time

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from movierec.serving import protos
from movierec.serving.errors import ServingError, invalid_argument
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
        proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode() for v in value.reshape(-1))
    elif value.dtype in _DTYPES:
        proto.dtype = _DTYPES[value.dtype]
        proto.tensor_content = np.ascontiguousarray(value).tobytes()
    else:
        proto.CopyFrom(tf.make_tensor_proto(value))


def _version_and_label(spec) -> tuple[int | None, str | None]:
    which = spec.WhichOneof("version_choice")
    if which == "version":
        return spec.version.value, None
    if which == "version_label":
        return None, spec.version_label
    return None, None


async def _abort(context, e: ServingError):
    await context.abort(e.code, e.message)


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, core: PredictionCore):
        self.core = core

    async def Predict(self, request, context):
        name = request.model_spec.name
        remaining = context.time_remaining()   # None: the client set no deadline
        deadline = time.monotonic() + remaining if remaining is not None else None
        try:
            with self.core.request(name, "predict", "GRPC"):
                version, label = _version_and_label(request.model_spec)
                inputs = {}
                for alias, proto in request.inputs.items():
                    try:
                        inputs[alias] = tf.make_ndarray(proto)
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
        except ServingError as e:
            await _abort(context, e)

    async def GetModelMetadata(self, request, context):
        name = request.model_spec.name
        try:
            with self.core.request(name, "GetModelMetadata", "GRPC"):
                fields = list(request.metadata_field)
                if fields != ["signature_def"]:
                    raise invalid_argument(
                        "Metadata field(s) not supported: " + ",".join(f for f in fields if f != "signature_def")
                        if any(f != "signature_def" for f in fields) else "Missing metadata_field: signature_def")
                version, label = _version_and_label(request.model_spec)
                return protos.metadata_response(name, self.core.metadata(name, version, label))
        except ServingError as e:
            await _abort(context, e)

    async def _unimplemented(self, request, context):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED,
                      "Classify, Regress and MultiInference are not implemented by movierec serve; "
                      "use Predict")

    Classify = Regress = MultiInference = _unimplemented


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, core: PredictionCore):
        self.core = core

    async def GetModelStatus(self, request, context):
        name = request.model_spec.name
        try:
            with self.core.request(name, "GetModelStatus", "GRPC"):
                version, label = _version_and_label(request.model_spec)
                return protos.status_response(name, self.core.status(name, version, label))
        except ServingError as e:
            await _abort(context, e)

    async def HandleReloadConfigRequest(self, request, context):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "config reload is not supported; restart the server")


async def start_grpc_server(core: PredictionCore, host: str, port: int,
                            reuse_port: bool = False) -> tuple[grpc.aio.Server, int]:
    """Listens on (host, port) on the running loop; port 0 picks a free port; reuse_port:
    share the port with other worker processes (SO_REUSEPORT; off, a port in use is an
    error instead of a silently shared port)."""
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", core.limits.max_body_bytes),
                                      ("grpc.so_reuseport", int(reuse_port))])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(core), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(core), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"could not bind gRPC to {host}:{port}")
    await server.start()
    return server, bound
