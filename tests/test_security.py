"""Security: loopback by default, no way out of a model base path, no code from requests."""
import http.client
import json
import os
import re
import shutil

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_service_pb2_grpc

from movierec.serving.client import predict_request
from movierec.serving.model_config import ModelSpec
from movierec.serving.server import ModelServer, ServerOptions
from tests.conftest import shared_dir

HALF = os.path.join(shared_dir(), "tfserving-testdata", "saved_model_half_plus_two_cpu")
pytestmark = pytest.mark.skipif(not os.path.isdir(HALF), reason="tfserving testdata missing")
SERVING = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "serving")


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on `port`, from /proc/net/tcp{,6}."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in list(f)[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:   # 0A: LISTEN
                    found.add(address)
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    shutil.copytree(HALF, root / "half")
    shutil.copytree(HALF, root / "secret")     # a model next door that is not configured
    with ModelServer([ModelSpec("half", str(root / "half"))],
                     ServerOptions(grpc_port=0, rest_port=0, poll_seconds=0)) as s:
        yield s


def test_both_servers_listen_on_loopback_only_by_default(server):
    assert ServerOptions().host == "127.0.0.1"
    loopback = {"0100007F", "0000000000000000FFFF00000100007F"}   # 127.0.0.1 and ::ffff:127.0.0.1
    for port in (server.grpc_port, server.rest_port):
        found = listening_addresses(port)
        assert found and found <= loopback, (port, found)   # never 0.0.0.0 / ::


@pytest.mark.parametrize("path", [
    "/v1/models/secret:predict", "/v1/models/../secret:predict", "/v1/models/half/../secret:predict",
    "/v1/models/%2e%2e%2fsecret:predict", "/v1/models/half%2f..%2fsecret:predict",
    "/v1/models/half/versions/..%2f..%2fsecret%2f123:predict", "/v1/models/half/versions/-1:predict",
])
def test_path_tricks_never_reach_another_model(server, path):
    conn = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=10)
    conn.request("POST", path, json.dumps({"instances": [[1.0]]}))
    r = conn.getresponse()
    body = json.loads(r.read())
    assert r.status in (400, 404) and "predictions" not in body, (path, r.status, body)


@pytest.mark.parametrize("name", ["secret", "../secret", "half/../secret", "half/123", ""])
def test_grpc_model_names_are_names_not_paths(server, name):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))
    req = predict_request(name, {"x": tf.make_tensor_proto(np.array([[1.0]], np.float32))})
    with pytest.raises(grpc.RpcError) as e:
        stub.Predict(req, timeout=10)
    assert e.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)


def test_no_serving_code_unpickles_or_evaluates():
    """Requests are decoded as JSON or protobuf only: no pickle, marshal, eval, exec or
    unsafe YAML anywhere in the serving package."""
    forbidden = re.compile(r"\b(pickle|cPickle|marshal|dill|shelve)\b|\beval\(|\bexec\(|yaml\.load\(")
    offenders = []
    for folder, _, files in os.walk(SERVING):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(folder, name)) as f:
                    for number, line in enumerate(f, 1):
                        if forbidden.search(line):
                            offenders.append(f"{name}:{number}: {line.strip()}")
    assert not offenders, offenders
