"""The local server against TF Serving's own test models and expected JSON.

Real sockets: REST over http.client, gRPC over the tensorflow-serving-api stubs.
"""
import json
import os
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc)

from movierec.serving.model_config import ModelSpec, parse_model_config
from movierec.serving.server import ModelServer, ServerOptions
from tests.conftest import shared_dir

TESTDATA = os.path.join(shared_dir(), "tfserving-testdata")
pytestmark = pytest.mark.skipif(not os.path.isdir(TESTDATA), reason=f"{TESTDATA} missing")


@pytest.fixture(scope="module")
def server():
    config = f"""
    model_config_list {{
      config {{ name: "default" base_path: "{TESTDATA}/saved_model_half_plus_two_cpu" model_platform: "tensorflow" }}
      config {{ name: "saved_model_half_plus_two_2_versions"
               base_path: "{TESTDATA}/saved_model_half_plus_two_2_versions"
               model_version_policy {{ all {{}} }}
               version_labels {{ key: "stable" value: 123 }}
               version_labels {{ key: "canary" value: 124 }} }}
      config {{ name: "latest_only" base_path: "{TESTDATA}/saved_model_half_plus_two_2_versions" }}
    }}"""
    s = ModelServer(parse_model_config(config), ServerOptions(grpc_port=0, rest_port=0, poll_seconds=0))
    s.start()
    yield s
    s.stop()


def rest(server, method, path, body=None, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(f"http://127.0.0.1:{server.rest_port}{path}", data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture(scope="module")
def stubs(server):
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    yield (prediction_service_pb2_grpc.PredictionServiceStub(channel),
           model_service_pb2_grpc.ModelServiceStub(channel))
    channel.close()


def test_rest_row_and_columnar_predict(server):
    code, body = rest(server, "POST", "/v1/models/default:predict", {"instances": [[1.0], [2.0], [5.0]]})
    assert code == 200 and body == {"predictions": [[2.5], [3.0], [4.5]]}
    code, body = rest(server, "POST", "/v1/models/default:predict", {"inputs": {"x": [[1.0], [2.0]]}})
    assert code == 200 and body == {"outputs": [[2.5], [3.0]]}
    code, body = rest(server, "POST", "/v1/models/default:predict", {"inputs": [[1.0], [2.0]]})
    assert code == 200 and body == {"outputs": [[2.5], [3.0]]}
    code, body = rest(server, "POST", "/v1/models/default:predict", {"instances": [{"x": [1.0]}, {"x": [3.0]}]})
    assert code == 200 and body == {"predictions": [[2.5], [3.5]]}


def test_predict_2x2_batch_as_tf_serving(server, stubs):
    """half_plus_two predicts [[1,2],[3,4]] -> [[2.5,3],[3.5,4]]: TF Serving's own case
    (http_rest_api_handler_test.cc, Predict); `x` is [-1, 1] in the signature, and TF Serving
    does not hold a request to the signature's shape."""
    code, body = rest(server, "POST", "/v1/models/default:predict", {"instances": [[1.0, 2.0], [3.0, 4.0]]})
    assert code == 200 and body == {"predictions": [[2.5, 3.0], [3.5, 4.0]]}
    predict, _ = stubs
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "default"
    req.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[1, 2], [3, 4]], np.float32)))
    out = tf.make_ndarray(predict.Predict(req, timeout=30).outputs["y"])
    assert out.tolist() == [[2.5, 3.0], [3.5, 4.0]]


def test_grpc_predict_versions_and_labels(stubs):
    predict, _ = stubs
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "saved_model_half_plus_two_2_versions"
    req.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[1.0]], np.float32)))
    resp = predict.Predict(req, timeout=30)
    assert resp.model_spec.version.value == 124 and resp.model_spec.signature_name == "serving_default"
    req.model_spec.version.value = 123
    assert predict.Predict(req, timeout=30).model_spec.version.value == 123
    req.model_spec.version_label = "canary"
    assert predict.Predict(req, timeout=30).model_spec.version.value == 124


def test_rest_versions_labels_and_status(server):
    code, body = rest(server, "GET", "/v1/models/saved_model_half_plus_two_2_versions")
    assert code == 200
    assert body == {"model_version_status": [
        {"version": "124", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
        {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    code, body = rest(server, "GET", "/v1/models/latest_only")
    assert [r["version"] for r in body["model_version_status"]] == ["124"]
    code, body = rest(server, "GET", "/v1/models/saved_model_half_plus_two_2_versions/labels/stable")
    assert [r["version"] for r in body["model_version_status"]] == ["123"]
    code, _ = rest(server, "POST", "/v1/models/saved_model_half_plus_two_2_versions/versions/123:predict",
                   {"instances": [[1.0]]})
    assert code == 200


def test_metadata_equals_tf_serving_json(server, stubs):
    for name, expected_file, path in [
        ("saved_model_half_plus_two_2_versions", "saved_model_half_plus_two_2_versions_metadata.json",
         "/v1/models/saved_model_half_plus_two_2_versions/versions/123/metadata"),
        ("default", "half_plus_two_model_metadata.json", "/v1/models/default/metadata"),
    ]:
        with open(os.path.join(TESTDATA, expected_file)) as f:
            expected = json.load(f)
        code, body = rest(server, "GET", path)
        assert code == 200 and body == expected, name
    with open(os.path.join(TESTDATA, "saved_model_half_plus_two_2_versions_metadata.json")) as f:
        expected = json.load(f)
    predict, _ = stubs
    req = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    req.model_spec.name = "saved_model_half_plus_two_2_versions"
    resp = predict.GetModelMetadata(req, timeout=30)
    sdm = get_model_metadata_pb2.SignatureDefMap()
    resp.metadata["signature_def"].Unpack(sdm)
    assert resp.model_spec.version.value == 124
    assert sorted(sdm.signature_def) == sorted(expected["metadata"]["signature_def"]["signature_def"])


@pytest.mark.parametrize("method,path,body,code,message", [
    ("POST", "/v1/models/nope:predict", {"instances": [[1.0]]}, 404, "Servable not found for request: Latest(nope)"),
    ("POST", "/v1/models/default/versions/999:predict", {"instances": [[1.0]]}, 404,
     "Servable not found for request: Specific(default, 999)"),
    ("GET", "/v1/models/saved_model_half_plus_two_2_versions/labels/nope", None, 400,
     "Unrecognized servable version label: nope"),
    ("GET", "/v1/models/default/versions/999", None, 404, "Could not find version 999 of model default"),
    ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
    ("POST", "/v1/models/default:predict", {"signature_name": "nope", "instances": [[1.0]]}, 400,
     'Serving signature name: "nope" not found in signature def'),
    ("POST", "/v1/models/default:predict", {"instances": [[1.0]], "inputs": [[1.0]]}, 400,
     "expecting only one of 'inputs' or 'instances'"),
    ("POST", "/v1/models/default:predict", {"foo": 1}, 400, "Unexpected key"),
    ("POST", "/v1/models/default:predict", {}, 400, "Missing 'inputs' or 'instances' key"),
    ("POST", "/v1/models/default:predict", {"instances": []}, 400, "No values in 'instances' array"),
    ("POST", "/v1/models/default:predict", {"instances": [["a"]]}, 400,
     'JSON Value: "a" Type: String is not of expected type: float'),
    ("POST", "/v1/models/default:predict", {"inputs": {"y": [[1.0]]}}, 400, "Missing named input: x in 'inputs' object."),
    ("POST", "/v1/models/default:predict", {"instances": [[1.0], [2.0, 3.0]]}, 400, "Expecting tensor size: 1 but got: 2"),
    ("POST", "/v1/models/default:regress", {"instances": [[1.0]]}, 400, "key 'examples' is expected"),
    ("POST", "/v1/foo", {"instances": [[1.0]]}, 400, "Malformed request: POST /v1/foo"),
    ("GET", "/v1/models/default/versions/abc", None, 400, "Malformed request"),
])
def test_rest_errors_have_tf_serving_codes_and_shape(server, method, path, body, code, message):
    got_code, got = rest(server, method, path, body)
    assert got_code == code, got
    assert set(got) == {"error"} and message in got["error"]


def test_rest_malformed_json(server):
    code, body = rest(server, "POST", "/v1/models/default:predict", raw=b'{"instances": [1.0')
    assert code == 400 and body["error"].startswith("JSON Parse error")


def test_grpc_error_codes(stubs):
    predict, status = stubs

    def call(fn, req):
        with pytest.raises(grpc.RpcError) as e:
            fn(req, timeout=30)
        return e.value.code(), e.value.details()

    req = predict_pb2.PredictRequest()
    req.model_spec.name = "nope"
    req.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[1.0]], np.float32)))
    assert call(predict.Predict, req) == (grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)")
    req.model_spec.name = "default"
    req.model_spec.version.value = 7
    assert call(predict.Predict, req)[0] == grpc.StatusCode.NOT_FOUND
    req.model_spec.ClearField("version")
    req.model_spec.signature_name = "nope"
    assert call(predict.Predict, req) == (grpc.StatusCode.FAILED_PRECONDITION, 'Serving signature key "nope" not found.')
    req.model_spec.signature_name = ""
    req.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([["a"]])))
    assert call(predict.Predict, req)[0] == grpc.StatusCode.INVALID_ARGUMENT
    req.inputs.clear()
    code, details = call(predict.Predict, req)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "not found in request and no default value" in details
    sreq = get_model_status_pb2.GetModelStatusRequest()
    sreq.model_spec.name = "nope"
    assert call(status.GetModelStatus, sreq)[0] == grpc.StatusCode.NOT_FOUND
    sreq.model_spec.name = "saved_model_half_plus_two_2_versions"
    resp = status.GetModelStatus(sreq, timeout=30)
    assert [(s.version, s.state) for s in resp.model_version_status] == [(124, 30), (123, 30)]


def test_prometheus_metrics_count_requests(server):
    rest(server, "POST", "/v1/models/default:predict", {"instances": [[1.0]]})
    with urllib.request.urlopen(f"http://127.0.0.1:{server.rest_port}/monitoring/prometheus/metrics", timeout=10) as r:
        text = r.read().decode()
    assert ':tensorflow:serving:request_count{model_name="default",status="OK"}' in text
    from prometheus_client.parser import text_string_to_metric_families
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    key = (":tensorflow:serving:request_latency_bucket",
           (("API", "predict"), ("entrypoint", "REST"), ("le", "+Inf"), ("model_name", "default")))
    assert samples[key] >= 1
    assert not any(name.endswith(("_created", "_total")) for name, _ in samples)


def test_model_config_parsing_errors(tmp_path):
    with pytest.raises(ValueError, match="models.config"):
        parse_model_config("model_config_list { config { name: 1 } ")
    with pytest.raises(ValueError, match="listed twice"):
        parse_model_config('model_config_list { config { name: "a" base_path: "/x" } config { name: "a" base_path: "/y" } }')
    with pytest.raises(ValueError, match="invalid model name"):
        ModelSpec(name="../x", base_path="/x")
    specs = parse_model_config('model_config_list { config { name: "a" base_path: "rel" '
                               'model_version_policy { specific { versions: 3 } } } }', relative_to=str(tmp_path))
    assert specs[0].base_path == str(tmp_path / "rel") and specs[0].aspired([1, 3, 5]) == [3]


def test_production_models_config_parses_with_both_models():
    from movierec.serving.model_config import load_model_config
    from tests.conftest import REPO
    specs = load_model_config(os.path.join(REPO, "serving", "models.config"))
    assert [(s.name, s.base_path, s.policy) for s in specs] == [
        ("mf", "/models/mf", "latest"), ("content", "/models/content", "latest")]
    dockerfile = open(os.path.join(REPO, "serving", "Dockerfile")).read()
    assert "FROM tensorflow/serving:" in dockerfile and "--model_config_file=/models/models.config" in dockerfile


def test_production_image_batches_with_a_batching_parameters_file():
    """The Dockerfile turns on TF Serving's batching with serving/batching_parameters.txt,
    written in BatchingParameters' text format (the fields of TF Serving 2.16's
    session_bundle_config.proto; the Int64Value ones as `name { value: n }`)."""
    import re

    from tests.conftest import REPO
    dockerfile = open(os.path.join(REPO, "serving", "Dockerfile")).read()
    assert '"--enable_batching=true"' in dockerfile
    assert '"--batching_parameters_file=/models/batching_parameters.txt"' in dockerfile
    assert "COPY batching_parameters.txt /models/batching_parameters.txt" in dockerfile
    int64_fields = {"max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"}
    fields = {}
    with open(os.path.join(REPO, "serving", "batching_parameters.txt")) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            m = re.fullmatch(r"(\w+) \{ value: (\d+) \}", line) or re.fullmatch(r"(pad_variable_length_inputs): (true)", line)
            assert m, f"not a BatchingParameters line: {line!r}"
            assert m.group(1) in int64_fields | {"pad_variable_length_inputs"} and m.group(1) not in fields
            fields[m.group(1)] = m.group(2)
    assert set(fields) == int64_fields | {"pad_variable_length_inputs"}
    assert int(fields["max_batch_size"]) >= 1 and int(fields["num_batch_threads"]) >= 1
