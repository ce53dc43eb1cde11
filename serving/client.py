"""Clients of the serving contract over TF Serving's gRPC and REST APIs.

They work unchanged against `movierec serve` and the real `tensorflow_model_server`.
`recommend` without k and exclusions calls `serving_default` with `user_id` alone (the top
10); with either it calls the `recommend` signature with every input explicit and
batch-dimensioned (TF Serving's REST API applies no signature defaults): k [B] and
exclude_movie_ids [B, E], each row beginning with "" so that TF Serving's batching pads it
with nothing (see `movierec.components.recommend`). Rows keep only `valid` positions, so a
list is never longer than its k, whatever width a batched answer has.
"""
from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.request

import numpy as np


@dataclasses.dataclass(frozen=True)
class Recommendation:
    movie_id: str
    title: str
    genres: str
    score: float


class ClientError(RuntimeError):
    """The server answered with an error (code and message as it sent them)."""

    def __init__(self, code, message: str):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


DEFAULT_K = 10   # what serving_default returns


def contract_call(user_ids: list[str], k: int | None, exclude: list[list[str]] | None) -> tuple[str, dict]:
    """(signature name, inputs as lists): serving_default with user_id alone when neither k
    nor exclude is given, else `recommend` with k [B] and exclude_movie_ids [B, 1 + E]
    ("" first, "" pads)."""
    if exclude is not None and len(exclude) != len(user_ids):
        raise ValueError(f"exclude has {len(exclude)} rows for {len(user_ids)} users")
    if k is None and exclude is None:
        return "serving_default", {"user_id": list(user_ids)}
    rows = exclude if exclude is not None else [[] for _ in user_ids]
    width = max((len(row) for row in rows), default=0)
    return "recommend", {
        "user_id": list(user_ids),
        "k": [DEFAULT_K if k is None else int(k)] * len(user_ids),
        "exclude_movie_ids": [[""] + list(row) + [""] * (width - len(row)) for row in rows]}


def _rows(outputs: dict, n_users: int) -> list[list[Recommendation]]:
    result = []
    for i in range(n_users):
        recs = []
        for j, ok in enumerate(outputs["valid"][i]):
            if ok:
                recs.append(Recommendation(str(outputs["movie_ids"][i][j]), str(outputs["titles"][i][j]),
                                           str(outputs["genres"][i][j]), float(outputs["scores"][i][j])))
        result.append(recs)
    return result


class RestClient:
    def __init__(self, host: str = "127.0.0.1", port: int = 8501, timeout: float = 10.0):
        self.base = f"http://{host}:{port}"
        self.timeout = timeout

    def _call(self, method: str, path: str, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            try:
                message = json.loads(e.read()).get("error", "")
            except ValueError:
                message = e.reason
            raise ClientError(e.code, message) from None

    def predict(self, model: str, inputs: dict, signature_name: str = "", version: int | None = None) -> dict:
        path = f"/v1/models/{model}" + (f"/versions/{version}" if version is not None else "") + ":predict"
        body = {"inputs": inputs}
        if signature_name:
            body["signature_name"] = signature_name
        return self._call("POST", path, body)["outputs"]

    def status(self, model: str) -> dict:
        return self._call("GET", f"/v1/models/{model}")

    def recommend(self, user_ids: list[str], k: int | None = None, model: str = "mf",
                  exclude: list[list[str]] | None = None, version: int | None = None) -> list[list[Recommendation]]:
        """Top k (None: serving_default's 10) per user, minus their `exclude` row."""
        signature, inputs = contract_call(user_ids, k, exclude)
        return _rows(self.predict(model, inputs, signature, version), len(user_ids))


def predict_request(model: str, tensors: dict, signature_name: str = "", version: int | None = None):
    """A TF Serving PredictRequest: `tensors` maps input alias -> TensorProto as given."""
    from tensorflow_serving.apis import predict_pb2  # noqa: PLC0415

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = version
    for alias, proto in tensors.items():
        request.inputs[alias].CopyFrom(proto)
    return request


class GrpcClient:
    def __init__(self, host: str = "127.0.0.1", port: int = 8500, timeout: float = 10.0):
        import grpc  # noqa: PLC0415
        from tensorflow_serving.apis import prediction_service_pb2_grpc  # noqa: PLC0415

        self._grpc = grpc
        self.channel = grpc.insecure_channel(f"{host}:{port}")
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.timeout = timeout

    def close(self) -> None:
        self.channel.close()

    def predict(self, model: str, inputs: dict, signature_name: str = "", version: int | None = None) -> dict:
        import tensorflow as tf  # noqa: PLC0415

        request = predict_request(model, {a: tf.make_tensor_proto(v) for a, v in inputs.items()},
                                  signature_name, version)
        try:
            response = self.stub.Predict(request, timeout=self.timeout)
        except self._grpc.RpcError as e:
            raise ClientError(e.code().name, e.details()) from None
        out = {}
        for alias, proto in response.outputs.items():
            arr = tf.make_ndarray(proto)
            out[alias] = np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(arr) if arr.dtype == object else arr
        return out

    def recommend(self, user_ids: list[str], k: int | None = None, model: str = "mf",
                  exclude: list[list[str]] | None = None, version: int | None = None) -> list[list[Recommendation]]:
        """Top k (None: serving_default's 10) per user, minus their `exclude` row."""
        signature, inputs = contract_call(user_ids, k, exclude)
        arrays = {alias: np.array(v, dtype=np.int32 if alias == "k" else object) for alias, v in inputs.items()}
        return _rows(self.predict(model, arrays, signature, version), len(user_ids))
