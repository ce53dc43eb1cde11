"""TF Serving's own test cases, run against `movierec serve`.

Each test reproduces one case of tensorflow/serving (its inputs and its expected values, our
server): `tensorflow_serving/model_servers/tensorflow_model_server_test.py` and its base
`test_util/tensorflow_model_server_test_base.py` (a `tensorflow_model_server` with
half_plus_two, y = 0.5 x + 2, called over gRPC and REST), and
`tensorflow_serving/model_servers/http_rest_api_handler_test.cc` (the REST handler on
`saved_model_half_plus_two_2_versions` with the version policy `specific { 123 }` and the
label `Version_Label` -> 123). The docstring of each test names the case.

Servers run in-process on free ports (`ModelServer(..., ServerOptions(grpc_port=0,
rest_port=0))`). A case about a flag runs the `movierec serve` command with TF Serving's
flag.
Models TF Serving builds in its tests (half_plus_three, TF2 `tf.saved_model.save` exports)
are built here the same way. The half_plus_two models and expected JSON come from
`<shared>/tfserving-testdata` (MOVIEREC_SHARED_DIR, or ../shared next to the repository).
"""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import grpc
import pytest
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     inference_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc, regression_pb2)

from movierec.serving.model_config import ModelSpec, load_model_config, parse_model_config
from movierec.serving.options import ServerOptions
from movierec.serving.server import ModelServer
from tests.conftest import REPO, shared_dir

TESTDATA = os.path.join(shared_dir(), "tfserving-testdata")
HALF_PLUS_TWO = os.path.join(TESTDATA, "saved_model_half_plus_two_cpu")
TWO_VERSIONS = os.path.join(TESTDATA, "saved_model_half_plus_two_2_versions")
pytestmark = pytest.mark.skipif(not os.path.isdir(TESTDATA),
                                reason=f"TF Serving's test models not found at {TESTDATA} (set MOVIEREC_SHARED_DIR)")

RPC_TIMEOUT = 20.0
HANDLER_MODEL = "saved_model_half_plus_two_2_versions"   # http_rest_api_handler_test.cc's kTestModelName


# -- servers and clients ----------------------------------------------------------------------
def _start(specs, **options) -> ModelServer:
    return ModelServer(specs, ServerOptions(grpc_port=0, rest_port=0, poll_seconds=0, **options)).start()


@pytest.fixture(scope="module")
def server():
    """RunServer('default', saved_model_half_plus_two_cpu), and the REST handler test's model
    (specific version 123, label Version_Label -> 123) beside it."""
    s = _start([ModelSpec("default", HALF_PLUS_TWO),
                ModelSpec(HANDLER_MODEL, TWO_VERSIONS, policy="specific", versions=(123,),
                          labels=(("Version_Label", 123),))])
    yield s
    s.stop()


def _stub(port: int):
    channel = grpc.insecure_channel(f"localhost:{port}")
    return channel, prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def stub(server):
    channel, stub = _stub(server.grpc_port)
    yield stub
    channel.close()


def call_rest(port: int, path: str, req=None, raw: bytes | None = None, method: str | None = None):
    """-> (HTTP status, parsed JSON body, Content-Type); req is sent as JSON (TF Serving's
    CallREST: POST when there is a body, GET otherwise)."""
    data = raw if raw is not None else (json.dumps(req).encode() if req is not None else None)
    request = urllib.request.Request(f"http://localhost:{port}{path}", data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=RPC_TIMEOUT) as r:
            return r.status, json.loads(r.read()), r.headers.get("Content-Type")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), e.headers.get("Content-Type")


def verify_predict_request(address: str, expected_output: float, expected_version: int, model_name="default",
                           specify_output=True, batch_input=False, signature_name="serving_default"):
    """tensorflow_model_server_test_base.py's VerifyPredictRequest: x = [2.0] (shape [1], or
    [1, 1] with batch_input), optionally output_filter y; y must come back as DT_FLOAT with
    exactly one value in float_val, and model_spec must name the model, signature and version."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].float_val.append(2.0)
    request.inputs["x"].tensor_shape.dim.add().size = 1
    if batch_input:
        request.inputs["x"].tensor_shape.dim.add().size = 1
    if specify_output:
        request.output_filter.append("y")
    channel = grpc.insecure_channel(address)
    try:
        result = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, RPC_TIMEOUT)
    finally:
        channel.close()
    assert "y" in result.outputs
    assert result.outputs["y"].dtype == types_pb2.DT_FLOAT
    assert len(result.outputs["y"].float_val) == 1
    assert result.outputs["y"].float_val[0] == expected_output
    verify_model_spec(result.model_spec, model_name, signature_name, expected_version)


def verify_model_spec(spec, name: str, signature_name: str, version: int) -> None:
    """tensorflow_model_server_test_base.py's _VerifyModelSpec."""
    assert spec.name == name
    assert spec.signature_name == signature_name
    assert spec.version.value == version


def model_version(model_path: str) -> int:
    """_GetModelVersion: the one numeric folder under the model path."""
    return int(os.listdir(model_path)[0])


def sorted_object(obj):
    """tensorflow_model_server_test_base.py's SortedObject (metadata has no order)."""
    if isinstance(obj, dict):
        return sorted((k, sorted_object(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return sorted(sorted_object(x) for x in obj)
    return obj


# -- models TF Serving's tests build ------------------------------------------------------------
def build_half_plus(path: str, b: float) -> str:
    """A SavedModel like TF Serving's half_plus_two / half_plus_three test models: version
    00000123, serving_default x [-1, 1] -> y = a * x + b with variables a = 0.5 and b."""
    import tensorflow as tf

    export = os.path.join(path, "00000123")
    graph = tf.Graph()
    with graph.as_default():
        a_var = tf.compat.v1.Variable(0.5, name="a")
        b_var = tf.compat.v1.Variable(b, name="b")
        x = tf.compat.v1.placeholder(tf.float32, [None, 1], name="x")
        y = tf.add(tf.multiply(a_var, x), b_var, name="y")
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            builder = tf.compat.v1.saved_model.Builder(export)
            signature = tf.compat.v1.saved_model.predict_signature_def({"x": x}, {"y": y})
            builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map={"serving_default": signature})
            builder.save()
    return path


@pytest.fixture(scope="module")
def half_plus_three(tmp_path_factory) -> str:
    return build_half_plus(str(tmp_path_factory.mktemp("tfs") / "saved_model_half_plus_three"), 3.0)


def good_model_config(tmp_path, half_plus_three: str) -> str:
    """testdata/good_model_config.txt with its placeholders filled, as __BuildModelConfigFile does."""
    path = os.path.join(tmp_path, "good_model_config.conf")
    with open(path, "w") as f:
        f.write(f"""model_config_list: {{
  config: {{
    name: "half_plus_two",
    base_path: "{HALF_PLUS_TWO}",
    model_platform: "tensorflow"
  }},
  config: {{
    name: "half_plus_three",
    base_path: "{half_plus_three}",
    model_platform: "tensorflow"
  }}
}}
""")
    return path


BASE_CONFIG_PROTO = """
    model_config_list: {{
      config: {{
        name: "{name}",
        base_path: "{model_path}",
        model_platform: "tensorflow"
      }}
    }}
    """


# -- `movierec serve` as a command (cases that need its flags) --------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


class ServeCommand:
    """`movierec serve` run with TF Serving's flags (RunServer's command line)."""

    def __init__(self, *flags: str):
        self.port, self.rest_port = _free_port(), _free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "movierec.cli", "serve", f"--port={self.port}",
             f"--rest_api_port={self.rest_port}", *flags],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def wait_ready(self, timeout: float = 120.0) -> str:
        """WaitForServerReady: a Predict for a missing model answers an error naming the
        Servable once the server is up. -> the gRPC address."""
        address = f"localhost:{self.port}"
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "intentionally_missing_model"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"movierec serve exited with {self.proc.returncode}: "
                                     f"{self.proc.stderr.read()[-2000:]}")
            channel, stub = _stub(self.port)
            try:
                stub.Predict(request, 2.0)
            except grpc.RpcError as e:
                if "Servable" in (e.details() or ""):
                    return address
            finally:
                channel.close()
            time.sleep(0.5)
        raise AssertionError(f"movierec serve not ready on {address} after {timeout} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stderr.close()


# == tensorflow_model_server_test.py ===========================================================
def test_get_model_status(server):
    """tensorflow_model_server_test.py: testGetModelStatus."""
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "default"
    channel = grpc.insecure_channel(f"localhost:{server.grpc_port}")
    try:
        result = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, RPC_TIMEOUT)
    finally:
        channel.close()
    assert len(result.model_version_status) == 1
    assert result.model_version_status[0].version == 123
    assert result.model_version_status[0].status.error_code == 0


def test_get_model_metadata(stub):
    """tensorflow_model_server_test.py: testGetModelMetadata."""
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "default"
    request.metadata_field.append("signature_def")
    result = stub.GetModelMetadata(request, RPC_TIMEOUT)
    assert result.model_spec.name == "default"
    assert result.model_spec.version.value == model_version(HALF_PLUS_TWO)
    assert len(result.metadata) == 1
    assert "signature_def" in result.metadata


def test_classify(stub):
    """tensorflow_model_server_test.py: testClassify (_TestClassify on the TF1 model)."""
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "default"
    request.model_spec.signature_name = "classify_x_to_y"
    example = request.input.example_list.examples.add()
    example.features.feature["x"].float_list.value.extend([2.0])
    result = stub.Classify(request, RPC_TIMEOUT)
    assert len(result.result.classifications) == 1
    assert len(result.result.classifications[0].classes) == 1
    assert result.result.classifications[0].classes[0].score == 3.0
    verify_model_spec(result.model_spec, "default", "classify_x_to_y", model_version(HALF_PLUS_TWO))


def test_regress(stub):
    """tensorflow_model_server_test.py: testRegress (_TestRegress on the TF1 model)."""
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "default"
    request.model_spec.signature_name = "regress_x_to_y"
    example = request.input.example_list.examples.add()
    example.features.feature["x"].float_list.value.extend([2.0])
    result = stub.Regress(request, RPC_TIMEOUT)
    assert len(result.result.regressions) == 1
    assert result.result.regressions[0].value == 3.0
    verify_model_spec(result.model_spec, "default", "regress_x_to_y", model_version(HALF_PLUS_TWO))


def test_multi_inference(stub):
    """tensorflow_model_server_test.py: testMultiInference (_TestMultiInference on the TF1 model)."""
    request = inference_pb2.MultiInferenceRequest()
    request.tasks.add().model_spec.name = "default"
    request.tasks[0].model_spec.signature_name = "regress_x_to_y"
    request.tasks[0].method_name = "tensorflow/serving/regress"
    request.tasks.add().model_spec.name = "default"
    request.tasks[1].model_spec.signature_name = "classify_x_to_y"
    request.tasks[1].method_name = "tensorflow/serving/classify"
    example = request.input.example_list.examples.add()
    example.features.feature["x"].float_list.value.extend([2.0])
    result = stub.MultiInference(request, RPC_TIMEOUT)
    assert len(result.results) == 2
    assert result.results[0].regression_result.regressions[0].value == 3.0
    assert result.results[1].classification_result.classifications[0].classes[0].score == 3.0
    for i in range(2):
        verify_model_spec(result.results[i].model_spec, request.tasks[i].model_spec.name,
                          request.tasks[i].model_spec.signature_name, model_version(HALF_PLUS_TWO))


def test_predict_saved_model(server):
    """tensorflow_model_server_test.py: testPredictSavedModel (_TestPredict: with and without
    output_filter)."""
    address = f"localhost:{server.grpc_port}"
    verify_predict_request(address, expected_output=3.0, expected_version=model_version(HALF_PLUS_TWO))
    verify_predict_request(address, expected_output=3.0, specify_output=False,
                           expected_version=model_version(HALF_PLUS_TWO))


def test_predict_batching():
    """tensorflow_model_server_test_base.py: _TestPredict with batching_parameters_file
    (testPredictBatching), on the in-process server's batching (--enable_batching)."""
    s = _start([ModelSpec("default", HALF_PLUS_TWO)], enable_batching=True)
    try:
        address = f"localhost:{s.grpc_port}"
        verify_predict_request(address, expected_output=3.0, expected_version=model_version(HALF_PLUS_TWO))
        verify_predict_request(address, expected_output=3.0, specify_output=False,
                               expected_version=model_version(HALF_PLUS_TWO))
    finally:
        s.stop()


def test_predict_batching_parameters_file():
    """tensorflow_model_server_test_base.py: RunServer(batching_parameters_file=...) and
    _TestPredict (testPredictBatching): --enable_batching --batching_parameters_file."""
    cmd = ServeCommand("--model_name=default", f"--model_base_path={HALF_PLUS_TWO}", "--enable_batching",
                       f"--batching_parameters_file={os.path.join(TESTDATA, 'batching_config.txt')}")
    try:
        address = cmd.wait_ready()
        verify_predict_request(address, expected_output=3.0, expected_version=model_version(HALF_PLUS_TWO))
        verify_predict_request(address, expected_output=3.0, specify_output=False,
                               expected_version=model_version(HALF_PLUS_TWO))
    finally:
        cmd.stop()


def test_good_model_config(tmp_path, half_plus_three):
    """tensorflow_model_server_test.py: testGoodModelConfig (half_plus_two and half_plus_three
    from one model config file)."""
    s = _start(load_model_config(good_model_config(tmp_path, half_plus_three)))
    try:
        address = f"localhost:{s.grpc_port}"
        for specify_output in (True, False):
            verify_predict_request(address, model_name="half_plus_two", expected_output=3.0,
                                   specify_output=specify_output, expected_version=model_version(HALF_PLUS_TWO))
            verify_predict_request(address, model_name="half_plus_three", expected_output=4.0,
                                   specify_output=specify_output, expected_version=model_version(half_plus_three))
    finally:
        s.stop()


def test_bad_model_config(tmp_path):
    """tensorflow_model_server_test.py: testBadModelConfig (testdata/bad_model_config.txt)."""
    path = tmp_path / "bad_model_config.txt"
    path.write_text("improperly formatted file")
    with pytest.raises(ValueError) as e:
        load_model_config(str(path))
    assert "Error parsing text-format tensorflow.serving.ModelServerConfig" in str(e.value)


def test_model_config_reload(tmp_path, half_plus_three):
    """tensorflow_model_server_test.py: testModelConfigReload (poll period 1 s; the config
    rewritten to half_plus_three is served within 10 s)."""
    config_path = tmp_path / "model_config.txt"
    config_path.write_text(BASE_CONFIG_PROTO.format(name="half_plus_two", model_path=HALF_PLUS_TWO))
    cmd = ServeCommand(f"--model_config_file={config_path}", "--model_config_file_poll_wait_seconds=1")
    try:
        address = cmd.wait_ready()
        verify_predict_request(address, model_name="half_plus_two", expected_output=3.0, specify_output=False,
                               expected_version=model_version(HALF_PLUS_TWO))
        config_path.write_text(BASE_CONFIG_PROTO.format(name="half_plus_three", model_path=half_plus_three))
        time.sleep(10)
        verify_predict_request(address, model_name="half_plus_three", expected_output=4.0, specify_output=False,
                               expected_version=model_version(half_plus_three))
    finally:
        cmd.stop()


def test_model_config_reload_with_zero_poll_period(tmp_path, half_plus_three):
    """tensorflow_model_server_test.py: testModelConfigReloadWithZeroPollPeriod (poll period 0:
    the rewritten config is not read, half_plus_two goes on answering)."""
    config_path = tmp_path / "model_config.txt"
    config_path.write_text(BASE_CONFIG_PROTO.format(name="half_plus_two", model_path=HALF_PLUS_TWO))
    cmd = ServeCommand(f"--model_config_file={config_path}", "--model_config_file_poll_wait_seconds=0")
    try:
        address = cmd.wait_ready()
        verify_predict_request(address, model_name="half_plus_two", expected_output=3.0, specify_output=False,
                               expected_version=model_version(HALF_PLUS_TWO))
        config_path.write_text(BASE_CONFIG_PROTO.format(name="half_plus_three", model_path=half_plus_three))
        time.sleep(0 + 1)
        verify_predict_request(address, model_name="half_plus_two", expected_output=3.0, specify_output=False,
                               expected_version=model_version(HALF_PLUS_TWO))
    finally:
        cmd.stop()


def test_classify_rest(server):
    """tensorflow_model_server_test.py: testClassifyREST."""
    code, body, _ = call_rest(server.rest_port, "/v1/models/default:classify",
                              {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]})
    assert code == 200 and body == {"results": [[["", 3.0]]]}


def test_regress_rest(server):
    """tensorflow_model_server_test.py: testRegressREST."""
    code, body, _ = call_rest(server.rest_port, "/v1/models/default:regress",
                              {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]})
    assert code == 200 and body == {"results": [3.0]}


def test_predict_rest(server):
    """tensorflow_model_server_test.py: testPredictREST (x is [-1, 1] in the signature; a
    plain list of 3 values is served all the same)."""
    code, body, _ = call_rest(server.rest_port, "/v1/models/default:predict", {"instances": [2.0, 3.0, 4.0]})
    assert code == 200 and body == {"predictions": [3.0, 3.5, 4.0]}


def test_predict_columnar_rest(server):
    """tensorflow_model_server_test.py: testPredictColumnarREST."""
    code, body, _ = call_rest(server.rest_port, "/v1/models/default:predict", {"inputs": [2.0, 3.0, 4.0]})
    assert code == 200 and body == {"outputs": [3.0, 3.5, 4.0]}


def test_get_status_rest(server):
    """tensorflow_model_server_test.py: testGetStatusREST."""
    code, body, _ = call_rest(server.rest_port, "/v1/models/default")
    assert code == 200
    assert body == {"model_version_status": [
        {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}


def test_get_model_metadata_rest(server):
    """tensorflow_model_server_test.py: testGetModelMetadataREST (compared as SortedObject with
    testdata/half_plus_two_model_metadata.json)."""
    code, body, _ = call_rest(server.rest_port, "/v1/models/default/metadata")
    with open(os.path.join(TESTDATA, "half_plus_two_model_metadata.json")) as f:
        expected = json.load(f)
    assert code == 200
    assert sorted_object(body) == sorted_object(expected)


def test_prometheus_endpoint(server):
    """tensorflow_model_server_test.py: testPrometheusEndpoint (the metrics page has # TYPE
    lines; the in-process server always serves it at TF Serving's path)."""
    with urllib.request.urlopen(f"http://localhost:{server.rest_port}/monitoring/prometheus/metrics",
                                timeout=RPC_TIMEOUT) as r:
        assert "# TYPE" in r.read().decode("utf-8")


def test_prometheus_endpoint_monitoring_config_file(tmp_path):
    """tensorflow_model_server_test.py: testPrometheusEndpoint, with its
    --monitoring_config_file=testdata/monitoring_config.txt."""
    config = tmp_path / "monitoring_config.txt"
    config.write_text('prometheus_config: {\n  enable: true,\n  path: "/monitoring/prometheus/metrics"\n}\n')
    cmd = ServeCommand("--model_name=default", f"--model_base_path={HALF_PLUS_TWO}",
                       f"--monitoring_config_file={config}")
    try:
        cmd.wait_ready()
        with urllib.request.urlopen(f"http://localhost:{cmd.rest_port}/monitoring/prometheus/metrics",
                                    timeout=RPC_TIMEOUT) as r:
            assert "# TYPE" in r.read().decode("utf-8")
    finally:
        cmd.stop()


def _serve_one(base_path: str) -> ModelServer:
    return _start([ModelSpec("default", base_path)])


def test_tf_saved_model_save(tmp_path):
    """tensorflow_model_server_test.py: test_tf_saved_model_save (a tf.function y = v1 * v2 * x
    with x of unknown shape, v1 = 3, v2 = 2: x = [2.0] gives 12.0; tf.saved_model.save, which
    TF 2 keeps of tf.saved_model.experimental.save)."""
    import tensorflow as tf

    base_path = str(tmp_path / "tf_saved_model_save")
    root = tf.train.Checkpoint()
    root.v1 = tf.Variable(3.)
    root.v2 = tf.Variable(2.)
    root.f = tf.function(lambda x: {"y": root.v1 * root.v2 * x})
    to_save = root.f.get_concrete_function(tf.TensorSpec(None, tf.float32))
    tf.saved_model.save(root, os.path.join(base_path, "00000123"), to_save)
    s = _serve_one(base_path)
    try:
        verify_predict_request(f"localhost:{s.grpc_port}", expected_output=12.0, specify_output=False,
                               expected_version=model_version(base_path))
    finally:
        s.stop()


def test_tf_saved_model_save_multiple_signatures(tmp_path):
    """tensorflow_model_server_test.py: test_tf_saved_model_save_multiple_signatures
    (serving_default answers 1.0, custom_signature_key 2.0)."""
    import tensorflow as tf

    base_path = str(tmp_path / "tf_saved_model_save")
    root = tf.train.Checkpoint()
    root.f = tf.function(lambda x: {"y": 1.}, input_signature=[tf.TensorSpec(None, tf.float32)])
    root.g = tf.function(lambda x: {"y": 2.}, input_signature=[tf.TensorSpec(None, tf.float32)])
    tf.saved_model.save(root, os.path.join(base_path, "00000123"),
                                     signatures={"serving_default": root.f, "custom_signature_key": root.g})
    s = _serve_one(base_path)
    try:
        address = f"localhost:{s.grpc_port}"
        verify_predict_request(address, expected_output=2.0, expected_version=model_version(base_path),
                               signature_name="custom_signature_key")
        verify_predict_request(address, expected_output=1.0, expected_version=model_version(base_path))
    finally:
        s.stop()


def test_wait_for_server_ready_error_names_servable(stub):
    """tensorflow_model_server_test_base.py: WaitForServerReady (a Predict for a missing model
    fails with details containing 'Servable')."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "intentionally_missing_model"
    with pytest.raises(grpc.RpcError) as e:
        stub.Predict(request, RPC_TIMEOUT)
    assert "Servable" in e.value.details()


# == http_rest_api_handler_test.cc ================================================================
@pytest.mark.parametrize("method,path,message", [
    ("GET", "/v1/foo", "Malformed request"),
    ("POST", "/v1/foo", "Malformed request"),
    ("GET", "/v1/models", "Missing model name"),
    ("GET", "/v1/models/debug/model_name", "Malformed request"),
    ("POST", "/v1/models", "Malformed request"),
    ("GET", "/v1/models/foo:predict", "Malformed request"),
    ("GET", "/v1/models/foo/version/50:predict", "Malformed request"),
    ("POST", "/v1/models/foo/version/50:regress", "Malformed request"),
    ("POST", "/v1/models/foo/versions/HELLO:regress", "Malformed request"),
    ("POST", f"/v1/models/foo/versions/{2**64 - 1}:regress", "Failed to convert version"),
    ("POST", "/v1/models/foo/metadata", "Malformed request"),
    ("POST", "/v1/models/foo/label/some_label:regress", "Malformed request"),
    ("POST", "/v1/models/foo/versions/50/labels/some_label:regress", "Malformed request"),
    ("POST", "/v1/models/foo/versions/some_label:regress", "Malformed request"),
])
def test_unsupported_api_calls(server, method, path, message):
    """http_rest_api_handler_test.cc: UnsupportedApiCalls (InvalidArgument: HTTP 400)."""
    code, body, _ = call_rest(server.rest_port, path, raw=b"" if method == "POST" else None, method=method)
    assert code == 400 and message in body["error"]


@pytest.mark.parametrize("path", ["/v1/models/foo:predict", "/v1/models/foo/versions/50:predict",
                                  f"/v1/models/{HANDLER_MODEL}99:predict"])
def test_predict_model_name_version_errors(server, path):
    """http_rest_api_handler_test.cc: PredictModelNameVersionErrors (NotFound: HTTP 404)."""
    code, _, _ = call_rest(server.rest_port, path, raw=b'{ "instances": [1] }')
    assert code == 404


@pytest.mark.parametrize("path,raw,message", [
    (f"/v1/models/{HANDLER_MODEL}:predict", b"", "JSON Parse error: The document is empty"),
    (f"/v1/models/{HANDLER_MODEL}:predict", b"instances = [1, 2]", "JSON Parse error: Invalid value"),
    (f"/v1/models/{HANDLER_MODEL}:predict", b'{ "instances": ["x", "y"] }', "not of expected type: float"),
    (f"/v1/models/{HANDLER_MODEL}/labels/Version_Nonexistent:predict", b'{ "instances": ["x", "y"] }',
     "Unrecognized servable version label"),
    (f"/v1/models/{HANDLER_MODEL}:predict", b'{ "signature_name": 100 }',
     "'signature_name' key must be a string value."),
])
def test_predict_request_errors(server, path, raw, message):
    """http_rest_api_handler_test.cc: PredictRequestErrors (InvalidArgument: HTTP 400)."""
    code, body, _ = call_rest(server.rest_port, path, raw=raw)
    assert code == 400 and message in body["error"]


@pytest.mark.parametrize("path,req,expected", [
    (f"/v1/models/{HANDLER_MODEL}:predict", {"instances": [[1.0, 2.0], [3.0, 4.0]]},
     {"predictions": [[2.5, 3.0], [3.5, 4.0]]}),
    (f"/v1/models/{HANDLER_MODEL}/versions/123:predict", {"instances": [1.0, 2.0]}, {"predictions": [2.5, 3.0]}),
    (f"/v1/models/{HANDLER_MODEL}/labels/Version_Label:predict", {"instances": [1.0, 2.0]},
     {"predictions": [2.5, 3.0]}),
    (f"/v1/models/{HANDLER_MODEL}/versions/123:predict",
     {"signature_name": "serving_default", "instances": [3.0, 4.0]}, {"predictions": [3.5, 4.0]}),
    (f"/v1/models/{HANDLER_MODEL}/versions/123:predict",
     {"signature_name": "serving_default", "inputs": [3.0, 4.0]}, {"outputs": [3.5, 4.0]}),
])
def test_handler_predict(server, path, req, expected):
    """http_rest_api_handler_test.cc: Predict (latest, a version, a label, a signature name,
    columnar inputs; Content-Type application/json)."""
    code, body, content_type = call_rest(server.rest_port, path, req)
    assert code == 200 and body == expected
    assert content_type == "application/json"


@pytest.mark.parametrize("path", [f"/v1/models/{HANDLER_MODEL}:regress",
                                  f"/v1/models/{HANDLER_MODEL}/versions/123:regress",
                                  f"/v1/models/{HANDLER_MODEL}/labels/Version_Label:regress"])
def test_handler_regress(server, path):
    """http_rest_api_handler_test.cc: Regress (x = 80 -> 42 at latest, a version, a label)."""
    code, body, content_type = call_rest(server.rest_port, path,
                                         {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]})
    assert code == 200 and body == {"results": [42]}
    assert content_type == "application/json"


@pytest.mark.parametrize("path,x,expected", [
    (f"/v1/models/{HANDLER_MODEL}:classify", 20.0, {"results": [[["", 12]]]}),
    (f"/v1/models/{HANDLER_MODEL}/labels/Version_Label:classify", 10.0, {"results": [[["", 7]]]}),
])
def test_handler_classify(server, path, x, expected):
    """http_rest_api_handler_test.cc: Classify (x = 20 -> 12 at latest, x = 10 -> 7 by label)."""
    code, body, content_type = call_rest(server.rest_port, path,
                                         {"signature_name": "classify_x_to_y", "examples": [{"x": x}]})
    assert code == 200 and body == expected
    assert content_type == "application/json"


@pytest.mark.parametrize("path", [f"/v1/models/{HANDLER_MODEL}", f"/v1/models/{HANDLER_MODEL}/versions/123",
                                  f"/v1/models/{HANDLER_MODEL}/labels/Version_Label"])
def test_handler_get_status(server, path):
    """http_rest_api_handler_test.cc: GetStatus (all versions under `specific { 123 }`, a
    version, a label)."""
    code, body, content_type = call_rest(server.rest_port, path)
    assert code == 200 and content_type == "application/json"
    assert body == {"model_version_status": [
        {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}


def test_handler_get_model_metadata(server):
    """http_rest_api_handler_test.cc: GetModelMetadata (equal, as JSON objects, to
    testdata/saved_model_half_plus_two_2_versions_metadata.json)."""
    code, body, content_type = call_rest(server.rest_port, f"/v1/models/{HANDLER_MODEL}/metadata")
    with open(os.path.join(TESTDATA, "saved_model_half_plus_two_2_versions_metadata.json")) as f:
        expected = json.load(f)
    assert code == 200 and content_type == "application/json"
    assert body == expected


# == json_tensor_test.cc (REST JSON on half_plus_two's DT_FLOAT input) ============================
def test_mixed_input_for_float_tensor(server):
    """json_tensor_test.cc: MixedInputForFloatTensor (integers and decimals together are
    accepted for a DT_FLOAT input); half_plus_two's answers are 0.5 x + 2 in float32."""
    code, body, _ = call_rest(server.rest_port, "/v1/models/default:predict",
                              {"instances": [1, 2.0, 3, 4, 5.003, 0.007, 0.0]})
    assert code == 200
    assert body == {"predictions": [2.5, 3.0, 3.5, 4.0, 4.5015, 2.0035, 2.0]}


@pytest.mark.parametrize("req,message", [
    ({"signature_name": 5, "instances": [[1, 2], [3, 4], [5, 6, 7]]}, "must be a string value"),
    ({"instances": [[1, 2], [3, 4], [5, 6, 7]], "inputs": [[1, 2], [3, 4], [5, 6, 7]]}, "Not formatted correctly"),
    ({"instances": [[1, 2], [3, 4], [5, 6, 7]]}, "Expecting tensor size"),
    ({"instances": [[1, 2], [3, 4], [[5, 6]]]}, "Expecting shape"),
    ({"instances": [1, [1]]}, "Expecting shape"),
    ({"instances": [[1, 2], ["a", "b"]]}, "not of expected type"),
])
def test_single_unnamed_tensor_errors(server, req, message):
    """json_tensor_test.cc: SingleUnnamedTensorErrors (InvalidArgument: HTTP 400)."""
    code, body, _ = call_rest(server.rest_port, "/v1/models/default:predict", req)
    assert code == 400 and message in body["error"]


def test_single_unnamed_tensor_errors_empty_document(server):
    """json_tensor_test.cc: SingleUnnamedTensorErrors (an empty body: "document is empty")."""
    code, body, _ = call_rest(server.rest_port, "/v1/models/default:predict", raw=b"")
    assert code == 400 and "document is empty" in body["error"]
