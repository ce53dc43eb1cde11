"""Clients of the serving contract over TF Serving's gRPC and REST APIs.

They work unchanged against `movierec serve` and the real `tensorflow_model_server`.
`recommend` without k and exclusions calls `serving_default` with `user_id` alone (the top
10); with either it calls the `recommend` signature with every input explicit and
batch-dimensioned (TF Serving's REST API applies no signature defaults): see
`movierec.contract.contract_call`. Rows keep only `valid` positions, so a list is never
longer than its k, whatever width a batched answer has.

The gRPC client imports grpc, TensorFlow and the TF Serving protos when it is built, so
that a process using only the REST client never loads TensorFlow.
"""
from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.request

import numpy as np

from movierec.contract import K_RANGE_MESSAGE, contract_call

__all__ = ["ClientError", "GrpcClient", "Recommendation", "RestClient", "UserRecommendations", "contract_call",
           "predict_request"]


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


@dataclasses.dataclass(frozen=True)
class UserRecommendations:
    """One user's answer: `known` False means the model does not know the user and served
    the popularity fallback, whose `score`s are training rating counts, not model scores."""

    user_id: str
    known: bool
    items: list[Recommendation]


def _rows(user_ids: list[str], outputs: dict) -> list[UserRecommendations]:
    result = []
    for i, user in enumerate(user_ids):
        recs = []
        for j, ok in enumerate(outputs["valid"][i]):
            if ok:
                recs.append(Recommendation(str(outputs["movie_ids"][i][j]), str(outputs["titles"][i][j]),
                                           str(outputs["genres"][i][j]), float(outputs["scores"][i][j])))
        known = outputs.get("user_known")
        result.append(UserRecommendations(user, True if known is None else bool(known[i]), recs))
    return result


def _client_error(error: ClientError) -> ClientError:
    """The model's k-range assertion as one line ("k must be >= 1 and <= 100, got 0"), not
    TensorFlow's "assertion failed: [...] [0]" with its graph node names."""
    message = str(error.message)
    at = message.find(K_RANGE_MESSAGE)
    if at < 0:
        return error
    line = message[at:].split("\n")[0].split(" [[")[0].split("\t")[0]
    return ClientError(error.code, line.replace("] [", " ").replace("]", "").strip())


class _ContractCalls:
    """`recommend` / `recommendations` over a `predict(model, inputs, signature, version)`."""

    def _predict_contract(self, user_ids, k, model, exclude, version) -> dict:
        signature, inputs = contract_call(user_ids, k, exclude)
        try:
            return self.predict(model, self._inputs(inputs), signature, version)
        except ClientError as e:
            raise _client_error(e) from None

    def recommendations(self, user_ids: list[str], k: int | None = None, model: str = "mf",
                        exclude: list[list[str]] | None = None,
                        version: int | None = None) -> list[UserRecommendations]:
        """Top k (None: serving_default's list) per user, minus their `exclude` row, with
        whether the model knew the user. k out of 1..MAX_K_LIMIT is a ValueError before any
        call; over the model's max_k, a ClientError naming its limit."""
        return _rows(list(user_ids), self._predict_contract(user_ids, k, model, exclude, version))

    def recommend(self, user_ids: list[str], k: int | None = None, model: str = "mf",
                  exclude: list[list[str]] | None = None, version: int | None = None) -> list[list[Recommendation]]:
        """The lists of `recommendations` alone."""
        return [row.items for row in self.recommendations(user_ids, k, model, exclude, version)]


class RestClient(_ContractCalls):
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

    @staticmethod
    def _inputs(inputs: dict) -> dict:
        return inputs   # JSON lists as they are


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


class GrpcClient(_ContractCalls):
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

    @staticmethod
    def _inputs(inputs: dict) -> dict:
        return {alias: np.array(v, dtype=np.int32 if alias == "k" else object) for alias, v in inputs.items()}
