"""The gRPC front end (grpcio's asyncio server underneath): Predict over a real channel,
many calls on one connection, the status codes of bad calls, a big answer to a slow
reader, a graceful stop; TensorProto decoding and encoding against TensorFlow's own."""
import os
import threading

import grpc
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from movierec.serving.grpc_service import fill_tensor_proto, tensor_to_ndarray
from movierec.serving.model_config import ModelSpec
from movierec.serving.options import Limits
from movierec.serving.server import ModelServer, ServerOptions
from tests.conftest import shared_dir

MODEL = os.path.join(shared_dir(), "tfserving-testdata", "saved_model_half_plus_two_cpu")
needs_model = pytest.mark.skipif(not os.path.isdir(MODEL), reason=f"{MODEL} missing")
MAX_BODY = 16 << 10


def predict_request(xs) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.asarray(xs, np.float32).reshape(-1, 1)))
    return request


@pytest.fixture(scope="module")
def server():
    if not os.path.isdir(MODEL):
        pytest.skip(f"{MODEL} missing")
    with ModelServer([ModelSpec("half", MODEL)], ServerOptions(
            grpc_port=0, rest_port=0, poll_seconds=0, limits=Limits(max_body_bytes=MAX_BODY))) as s:
        yield s


@pytest.fixture
def channel(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as c:
        yield c


@needs_model
def test_predict_answers_the_model_outputs_with_its_model_spec(channel):
    reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(predict_request([1.0, 3.0]),
                                                                                timeout=30)
    np.testing.assert_allclose(tf.make_ndarray(reply.outputs["y"]), [[2.5], [3.5]])
    assert (reply.model_spec.name, reply.model_spec.version.value, reply.model_spec.signature_name) == \
        ("half", 123, "serving_default")
    assert list(reply.outputs["y"].float_val) == [2.5, 3.5]   # values in float_val, as TF Serving


@needs_model
def test_many_concurrent_calls_on_one_connection_each_get_their_answer(channel):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    futures = {i: stub.Predict.future(predict_request([float(i)]), timeout=30) for i in range(40)}
    for i, f in futures.items():
        np.testing.assert_allclose(tf.make_ndarray(f.result().outputs["y"]), [[i / 2 + 2]])


@needs_model
def test_a_big_answer_reaches_a_client_with_a_small_window(server):
    # 64-byte HTTP/2 windows on the client: a 12 KB answer still arrives whole
    options = [("grpc.http2.lookahead_bytes", 64), ("grpc.http2.bdp_probe", 0)]
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}", options=options) as c:
        xs = np.arange(3000, dtype=np.float32)
        reply = prediction_service_pb2_grpc.PredictionServiceStub(c).Predict(predict_request(xs), timeout=30)
    np.testing.assert_allclose(tf.make_ndarray(reply.outputs["y"])[:, 0], xs / 2 + 2)


@needs_model
@pytest.mark.parametrize("method, request_bytes, timeout, code, words", [
    ("/tensorflow.serving.PredictionService/Nope", predict_request([1.0]).SerializeToString(), 30,
     grpc.StatusCode.UNIMPLEMENTED, ""),
    # grpcio's answer to bytes that do not parse (the C++ server's is INTERNAL)
    ("/tensorflow.serving.PredictionService/Predict", b"\xff\xff\xff", 30, grpc.StatusCode.UNKNOWN,
     "Error parsing message with type 'tensorflow.serving.PredictRequest'"),
    ("/tensorflow.serving.PredictionService/Predict", predict_request([1.0]).SerializeToString(), 1e-9,
     grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline"),
    ("/tensorflow.serving.PredictionService/Predict", b"\x0a" + b"x" * (MAX_BODY + 1), 30,
     grpc.StatusCode.RESOURCE_EXHAUSTED, "larger than max"),
    ("/tensorflow.serving.ModelService/HandleReloadConfigRequest", b"", 30, grpc.StatusCode.UNIMPLEMENTED,
     "config reload is not supported; restart the server"),
])
def test_bad_calls_get_the_status_grpc_gives(channel, method, request_bytes, timeout, code, words):
    call = channel.unary_unary(method)   # raw bytes in and out
    with pytest.raises(grpc.RpcError) as e:
        call(request_bytes, timeout=timeout)
    assert e.value.code() == code and words in (e.value.details() or ""), (e.value.code(), e.value.details())


@needs_model
def test_stop_lets_the_call_in_flight_finish():
    s = ModelServer([ModelSpec("half", MODEL)], ServerOptions(grpc_port=0, rest_port=0, poll_seconds=0,
                                                              limits=Limits(max_batch_size=1 << 20))).start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{s.grpc_port}") as c:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(c)
            stub.Predict(predict_request([1.0]), timeout=30)   # connected
            xs = np.arange(200_000, dtype=np.float32)
            future = stub.Predict.future(predict_request(xs), timeout=30)
            stopper = threading.Thread(target=s.stop)
            stopper.start()
            np.testing.assert_allclose(tf.make_ndarray(future.result().outputs["y"])[:, 0], xs / 2 + 2)
            stopper.join(timeout=30)
    finally:
        s.stop()


@pytest.mark.parametrize("value", [
    np.array([b"a", b"bc"], object), np.int32(10), np.array([[b""]], object), np.array([[1.5, 2]], np.float32),
    np.array([1, 2], np.int64), np.array([True, False]), np.zeros([0, 3], np.float32), np.array([[1.0]], np.float64),
])
def test_tensor_decoding_matches_tensorflow(value):
    proto = tf.make_tensor_proto(value)
    ours, theirs = tensor_to_ndarray(proto), tf.make_ndarray(proto)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape and (ours == theirs).all()


def test_tensor_decoding_pads_short_value_lists_as_tensorflow_does():
    # TF Serving clients may send one value for a whole tensor: TF repeats the last one
    proto = tf.make_tensor_proto(np.array([b"x"], object))
    proto.tensor_shape.dim[0].size = 3
    assert tensor_to_ndarray(proto).tolist() == [b"x", b"x", b"x"]


_arrays = st.one_of(
    hnp.arrays(st.sampled_from([np.float32, np.float64, np.int32, np.int64, np.bool_]),
               hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)),
    hnp.arrays(object, hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=4),
               elements=st.binary(max_size=200)))


@settings(max_examples=300, deadline=None)
@given(_arrays)
def test_tensor_encoding_round_trips_through_tensorflow(value):
    proto = predict_pb2.PredictResponse().outputs["y"]
    fill_tensor_proto(proto, value)
    back = tf.make_ndarray(proto)
    assert back.shape == value.shape and back.dtype == (value.dtype if value.dtype != object else back.dtype)
    if value.dtype == object:
        assert back.tolist() == value.tolist()
    else:   # NaN round-trips as NaN (not equal to itself)
        np.testing.assert_array_equal(back, value)
