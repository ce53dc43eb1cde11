"""Hostile and malformed requests against both protocols: every answer is a clean
TF-Serving-style error (4xx / an error status) or a valid result, and the server stays up.

Generated with hypothesis (derandomized, so CI sees the same cases every run).
"""
import http.client
import json
import os

import grpc
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, example, given, settings, strategies as st
from tensorflow_serving.apis import prediction_service_pb2_grpc

from movierec.serving.client import predict_request
from movierec.serving.model_config import ModelSpec
from movierec.serving.server import ModelServer, ServerOptions
from movierec.serving.service import Limits
from tests.conftest import shared_dir

MODEL = os.path.join(shared_dir(), "tfserving-testdata", "saved_model_half_plus_two_cpu")
pytestmark = pytest.mark.skipif(not os.path.isdir(MODEL), reason="tfserving testdata missing")

N_REST = int(os.environ.get("MOVIEREC_FUZZ_REST", "10000"))
N_GRPC = int(os.environ.get("MOVIEREC_FUZZ_GRPC", "10000"))
FUZZ = settings(derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def server():
    s = ModelServer([ModelSpec("half", MODEL)], ServerOptions(
        grpc_port=0, rest_port=0, poll_seconds=0, limits=Limits(max_batch_size=1000, max_body_bytes=1 << 16)))
    s.start()
    yield s
    s.stop()


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                      st.text(max_size=20), st.just({"b64": "!!notbase64"}), st.just({"b64": "YWJj"}))
json_values = st.recursive(json_leaf, lambda c: st.one_of(st.lists(c, max_size=4),
                                                          st.dictionaries(st.text(max_size=8), c, max_size=4)),
                           max_leaves=20)
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({}, optional={"instances": json_values, "inputs": json_values,
                                        "signature_name": json_values}),
)
paths = st.one_of(
    st.sampled_from(["/v1/models/half:predict", "/v1/models/half/versions/123:predict",
                     "/v1/models/half/labels/x:predict", "/v1/models/%2e%2e%2f..:predict",
                     "/v1/models/../../etc/passwd:predict", "/v1/models/half:classify",
                     "/v1/models/half/versions/99999999999999999999:predict", "/v1/models/half/metadata"]),
    st.text(alphabet="/%.:abcv1models0123456789", max_size=40).map(lambda p: "/" + p),
)


def _request(server, method, path, raw: bytes):
    conn = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
    try:
        conn.request(method, path, raw, {"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def _check(status, body):
    assert status < 500 or status == 501, (status, body)
    payload = json.loads(body)
    if status != 200:
        assert set(payload) == {"error"} and isinstance(payload["error"], str) and payload["error"]


@settings(FUZZ, max_examples=N_REST)
@given(path=paths, body=bodies, method=st.sampled_from(["POST", "GET"]))
@example(path="/%0a", body={}, method="POST")   # a newline in the path still gets TF Serving's JSON error
def test_rest_fuzz(server, path, body, method):
    raw = json.dumps(body).encode()
    status, reply = _request(server, method, path, raw if method == "POST" else None)
    _check(status, reply)


@settings(FUZZ, max_examples=max(N_REST // 10, 50))
@given(raw=st.one_of(st.binary(max_size=200), st.just(b"[" * 5000 + b"]" * 5000),
                     st.just(b'{"instances": ' + b"[" * 3000 + b"1" + b"]" * 3000 + b"}"),
                     st.just(b'{"instances": [[1.0]], "x": "\xff\xfe"}')))
def test_rest_raw_bytes_and_deep_nesting(server, raw):
    _check(*_request(server, "POST", "/v1/models/half:predict", raw))


def test_rest_oversized_body_is_refused(server):
    status, reply = _request(server, "POST", "/v1/models/half:predict", b" " * (1 << 17))
    assert status == 429 and "larger than the limit" in json.loads(reply)["error"]


tensors = st.one_of(
    st.builds(lambda a: tf.make_tensor_proto(np.array(a, np.float32)),
              st.lists(st.lists(st.floats(width=32), min_size=0, max_size=3), max_size=3).filter(
                  lambda a: len({len(r) for r in a}) <= 1)),
    st.builds(lambda a: tf.make_tensor_proto(np.array(a, dtype=object)), st.lists(st.binary(max_size=5), max_size=3)),
    st.builds(lambda a: tf.make_tensor_proto(np.array(a, np.int64)), st.lists(st.integers(-2**63, 2**63 - 1), max_size=3)),
    st.just(tf.make_tensor_proto(np.float32(1.0))),
)


@settings(FUZZ, max_examples=N_GRPC)
@given(name=st.one_of(st.just("half"), st.text(max_size=10)),
       signature=st.one_of(st.just(""), st.sampled_from(["serving_default", "regress_x_to_y", "nope"])),
       inputs=st.dictionaries(st.sampled_from(["x", "y", "inputs", ""]), tensors, max_size=2),
       version=st.one_of(st.none(), st.integers(-5, 200)))
def test_grpc_fuzz(server, name, signature, inputs, version):
    stub = _stub(server)
    req = predict_request(name, inputs, signature, version)
    try:
        stub.Predict(req, timeout=30)
    except grpc.RpcError as e:
        assert e.code() in {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                            grpc.StatusCode.FAILED_PRECONDITION}, (e.code(), e.details())


_STUBS = {}


def _stub(server):
    if server.grpc_port not in _STUBS:
        _STUBS[server.grpc_port] = prediction_service_pb2_grpc.PredictionServiceStub(
            grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))
    return _STUBS[server.grpc_port]


def test_server_still_answers_after_the_fuzzing(server):
    status, reply = _request(server, "POST", "/v1/models/half:predict", json.dumps({"instances": [[2.0]]}).encode())
    assert status == 200 and json.loads(reply) == {"predictions": [[3.0]]}


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))


BAD_REST = [("/v1/models/half:predict", b'{"instances": [[1.0, "x"]]}'),
            ("/v1/models/half:predict", b'{"inputs": {"x": [[1.0]]}, "instances": []}'),
            ("/v1/models/nope:predict", b'{"instances": [[1.0]]}'),
            ("/v1/models/half/versions/77:predict", b'{"instances": [[1.0]]}'),
            ("/v1/models/half:predict", b"[" * 2000 + b"]" * 2000),
            ("/v1/models/half:predict", b'{"instances": [[1.0]]' + b"\xff" * 100 + b"}"),
            ("/v1/models/half:predict", b'{"instances": [' + b"[1.0]," * 500 + b"[1.0]]}")]


def test_memory_stays_flat_under_repeated_bad_requests(server):
    """The same mix of bad REST and gRPC requests, 500 rounds after a warm-up of 100: the
    (in-process) server's resident memory must not grow with the number of requests."""
    stub = _stub(server)
    bad_grpc = predict_request("half", {"x": tf.make_tensor_proto(np.array([b"a", b"b"], dtype=object))})

    def round_trip():
        for path, raw in BAD_REST:
            status, _ = _request(server, "POST", path, raw)
            assert 400 <= status < 500 or status == 200
        with pytest.raises(grpc.RpcError):
            stub.Predict(bad_grpc, timeout=30)

    for _ in range(100):
        round_trip()
    before = _rss_mb()
    for _ in range(500):
        round_trip()
    grown = _rss_mb() - before
    # 4,000 requests: a leak of even 5 KB per request would add 20 MB
    assert grown < 15, f"resident memory grew {grown:.1f} MB over 4,000 bad requests"
