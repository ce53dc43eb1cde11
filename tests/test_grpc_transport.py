"""The gRPC front end's own HTTP/2 (serving/grpc_transport.py), frame by frame.

A raw HTTP/2 client (the `h2` library, no gRPC in between) checks what grpcio's client
never exercises: flow control against a tiny client window, CONTINUATION and padding,
PING, refused streams, GOAWAY, and the gRPC status a malformed call gets. The
conformance tests cover the same server through grpcio.
"""
import os
import socket
import threading

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tensorflow_serving.apis import predict_pb2

from movierec.serving.grpc_service import tensor_to_ndarray
from movierec.serving.grpc_transport import parse_timeout
from movierec.serving.model_config import ModelSpec
from movierec.serving.options import Limits
from movierec.serving.server import ModelServer, ServerOptions
from tests.conftest import shared_dir

MODEL = os.path.join(shared_dir(), "tfserving-testdata", "saved_model_half_plus_two_cpu")
needs_model = pytest.mark.skipif(not os.path.isdir(MODEL), reason=f"{MODEL} missing")
PREDICT = "/tensorflow.serving.PredictionService/Predict"
MAX_BODY = 16 << 10


def predict_message(xs) -> bytes:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.asarray(xs, np.float32).reshape(-1, 1)))
    return request.SerializeToString()


def framed(message: bytes) -> bytes:
    return b"\x00" + len(message).to_bytes(4, "big") + message


class Call:
    def __init__(self):
        self.headers, self.trailers, self.data, self.frames = {}, {}, bytearray(), []
        self.ended = self.reset = None

    @property
    def status(self) -> int:
        return int((self.trailers or self.headers)[b"grpc-status"])

    @property
    def message(self) -> str:
        from urllib.parse import unquote
        return unquote((self.trailers or self.headers).get(b"grpc-message", b"").decode())

    def outputs(self) -> dict:
        assert self.data[0] == 0 and int.from_bytes(self.data[1:5], "big") == len(self.data) - 5
        response = predict_pb2.PredictResponse.FromString(bytes(self.data[5:]))
        return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}


class RawClient:
    """A client-side h2 connection over a blocking socket."""

    def __init__(self, port: int, settings: dict | None = None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.calls: dict[int, Call] = {}
        self.events = []
        self.flush()

    def flush(self):
        self.sock.sendall(self.conn.data_to_send())

    def start(self, path=PREDICT, body: bytes | None = None, headers=(), end=True, pad=None,
              method="POST", content_type="application/grpc") -> int:
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(":method", method), (":scheme", "http"), (":path", path),
                                     (":authority", "localhost"), ("content-type", content_type),
                                     ("te", "trailers"), *headers], end_stream=body is None and end)
        if body is not None:
            chunks = [body[i:i + 16000] for i in range(0, len(body), 16000)] or [b""]
            for i, chunk in enumerate(chunks):
                self.conn.send_data(sid, chunk, end_stream=end and i == len(chunks) - 1, pad_length=pad)
        self.calls[sid] = Call()
        self.flush()
        return sid

    def read(self, until) -> None:
        while not until():
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("server closed the connection")
            for ev in self.conn.receive_data(chunk):
                self.events.append(ev)
                call = self.calls.get(getattr(ev, "stream_id", None))
                if isinstance(ev, h2.events.ResponseReceived):
                    call.headers = dict(ev.headers)
                elif isinstance(ev, h2.events.TrailersReceived):
                    call.trailers = dict(ev.headers)
                elif isinstance(ev, h2.events.DataReceived):
                    call.data += ev.data
                    call.frames.append(len(ev.data))
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    call.ended = True
                elif isinstance(ev, h2.events.StreamReset):
                    call.reset = ev.error_code
            self.flush()

    def call(self, *args, **kwargs) -> Call:
        sid = self.start(*args, **kwargs)
        self.read(lambda: self.calls[sid].ended or self.calls[sid].reset is not None)
        return self.calls[sid]

    def close(self):
        self.sock.close()


@pytest.fixture(scope="module")
def server():
    if not os.path.isdir(MODEL):
        pytest.skip(f"{MODEL} missing")
    with ModelServer([ModelSpec("half", MODEL)], ServerOptions(
            grpc_port=0, rest_port=0, poll_seconds=0, limits=Limits(max_body_bytes=MAX_BODY))) as s:
        yield s


@pytest.fixture
def client(server):
    c = RawClient(server.grpc_port)
    yield c
    c.close()


@needs_model
def test_predict_over_raw_http2(client):
    call = client.call(body=framed(predict_message([1.0, 3.0])))
    assert call.headers[b":status"] == b"200" and call.headers[b"content-type"] == b"application/grpc"
    assert call.status == 0
    np.testing.assert_allclose(call.outputs()["y"], [[2.5], [3.5]])


@needs_model
def test_many_calls_multiplexed_on_one_connection_each_get_their_answer(client):
    sids = {client.start(body=framed(predict_message([float(i)]))): i for i in range(40)}
    client.read(lambda: all(client.calls[s].ended for s in sids))
    for sid, i in sids.items():
        assert client.calls[sid].status == 0
        np.testing.assert_allclose(client.calls[sid].outputs()["y"], [[i / 2 + 2]])


@needs_model
def test_response_waits_for_a_tiny_client_window(server):
    # 64-byte stream windows: a 12 KB answer must come in <= 64-byte DATA frames, each sent
    # only once the client opened its window again
    client = RawClient(server.grpc_port, {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 64})
    try:
        xs = np.arange(3000, dtype=np.float32)
        call = client.call(body=framed(predict_message(xs)))
        assert call.status == 0
        assert max(call.frames) <= 64 and len(call.frames) > 100
        np.testing.assert_allclose(call.outputs()["y"][:, 0], xs / 2 + 2)
    finally:
        client.close()


@needs_model
def test_header_block_in_continuation_frames_and_padded_data(client):
    # a 20 KB metadata header does not fit one 16 KB frame: HEADERS + CONTINUATION
    call = client.call(body=framed(predict_message([5.0])), headers=[("x-big", "v" * 20000)], pad=33)
    assert call.status == 0
    np.testing.assert_allclose(call.outputs()["y"], [[4.5]])


@needs_model
def test_ping_is_acknowledged_with_its_payload(client):
    client.conn.ping(b"12345678")
    client.flush()
    client.read(lambda: any(isinstance(e, h2.events.PingAckReceived) for e in client.events))
    ack = next(e for e in client.events if isinstance(e, h2.events.PingAckReceived))
    assert ack.ping_data == b"12345678"


@needs_model
@pytest.mark.parametrize("kwargs, code, words", [
    (dict(path="/tensorflow.serving.PredictionService/Nope"), 12, "Method not found: /tensorflow.serving"),
    (dict(headers=[("grpc-encoding", "gzip")]), 12, "grpc-encoding gzip is not supported"),
    (dict(body=b"\x00\x00\x00\x00\x09abc"), 13, "exactly one length-prefixed message; got 8 bytes"),
    (dict(body=b"\x01\x00\x00\x00\x01a"), 13, "compressed message without a grpc-encoding"),
    (dict(body=framed(b"\xff\xff\xff")), 13, "Failed to parse the request message"),
    (dict(headers=[("grpc-timeout", "1n")]), 4, "Deadline exceeded"),
    (dict(headers=[("grpc-timeout", "soon")]), 13, "malformed grpc-timeout"),
    (dict(body=framed(b"x" * (MAX_BODY + 1))), 8, f"Received message larger than max ({MAX_BODY + 1} vs. {MAX_BODY})"),
])
def test_malformed_calls_get_the_status_grpc_gives(client, kwargs, code, words):
    kwargs.setdefault("body", framed(predict_message([1.0])))
    call = client.call(**kwargs)
    assert call.headers[b":status"] == b"200"
    assert (call.status, words in call.message) == (code, True), call.message


@needs_model
@pytest.mark.parametrize("method, content_type, status", [("GET", "application/grpc", b"405"),
                                                          ("POST", "application/json", b"415")])
def test_not_a_grpc_request_gets_an_http_status(client, method, content_type, status):
    call = client.call(body=framed(predict_message([1.0])), method=method, content_type=content_type)
    assert call.headers[b":status"] == status


@needs_model
def test_calls_over_the_stream_limit_are_refused_and_the_rest_served(client):
    sids = [client.start(body=framed(predict_message([1.0])), end=False) for _ in range(101)]
    client.read(lambda: client.calls[sids[-1]].reset is not None)
    assert client.calls[sids[-1]].reset == h2.errors.ErrorCodes.REFUSED_STREAM
    for sid in sids[:3]:
        client.conn.end_stream(sid)
    client.flush()
    client.read(lambda: all(client.calls[s].ended for s in sids[:3]))
    assert [client.calls[s].status for s in sids[:3]] == [0, 0, 0]


@needs_model
def test_http1_on_the_grpc_port_gets_goaway_naming_the_problem(server):
    with socket.create_connection(("127.0.0.1", server.grpc_port), timeout=20) as s:
        s.sendall(b"POST /tensorflow.serving.PredictionService/Predict HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    frames = []
    while data:
        n = int.from_bytes(data[:3], "big")
        frames.append((data[3], data[9:9 + n]))
        data = data[9 + n:]
    goaway = [payload for ftype, payload in frames if ftype == 7]
    assert goaway and int.from_bytes(goaway[0][4:8], "big") == 1   # PROTOCOL_ERROR
    assert b"gRPC needs HTTP/2" in goaway[0][8:]


@needs_model
def test_stop_sends_goaway_and_answers_the_call_in_flight():
    with ModelServer([ModelSpec("half", MODEL)], ServerOptions(grpc_port=0, rest_port=0, poll_seconds=0)) as s:
        client = RawClient(s.grpc_port)
        sid = client.start(body=framed(predict_message([1.0])), end=False)   # request still open
        client.conn.ping(b"87654321")   # answered after the server has read the call's frames
        client.flush()
        client.read(lambda: any(isinstance(e, h2.events.PingAckReceived) for e in client.events))
        stopper = threading.Thread(target=s.stop)
        stopper.start()
        client.read(lambda: any(isinstance(e, h2.events.ConnectionTerminated) for e in client.events))
        goaway = next(e for e in client.events if isinstance(e, h2.events.ConnectionTerminated))
        assert goaway.error_code == h2.errors.ErrorCodes.NO_ERROR and goaway.last_stream_id == sid
        # the call opened before GOAWAY still gets its answer (h2 refuses to send after a
        # GOAWAY, so the last frame goes out raw, and the answer is read raw)
        client.sock.sendall(b"\x00\x00\x00\x00\x01" + sid.to_bytes(4, "big"))   # empty DATA, END_STREAM
        data = b""
        while chunk := client.sock.recv(1 << 16):
            data += chunk
        frames = []
        while data:
            n = int.from_bytes(data[:3], "big")
            frames.append((data[3], data[4], int.from_bytes(data[5:9], "big"), data[9:9 + n]))
            data = data[9 + n:]
        ours = [(ftype, flags, payload) for ftype, flags, stream, payload in frames if stream == sid]
        assert [f[0] for f in ours] == [1, 0, 1]   # HEADERS, DATA, trailers
        assert dict(hpack.Decoder().decode(ours[2][2], raw=True))[b"grpc-status"] == b"0"
        assert ours[2][1] & 1   # END_STREAM
        stopper.join(timeout=30)
        client.close()


def test_grpc_timeout_units():
    assert parse_timeout(b"250m") == pytest.approx(0.25)
    assert parse_timeout(b"3S") == 3.0 and parse_timeout(b"2M") == 120.0 and parse_timeout(b"1H") == 3600.0
    assert parse_timeout(b"5u") == pytest.approx(5e-6) and parse_timeout(b"7n") == pytest.approx(7e-9)
    for bad in (b"", b"m", b"123456789m", b"10x", b"-5S"):
        with pytest.raises(ValueError, match="malformed grpc-timeout"):
            parse_timeout(bad)


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


def protobuf_response(name, version, signature, outputs) -> predict_pb2.PredictResponse:
    from movierec.serving.grpc_service import fill_tensor_proto
    response = predict_pb2.PredictResponse()
    response.model_spec.name, response.model_spec.version.value = name, version
    response.model_spec.signature_name = signature
    for alias, value in outputs.items():
        fill_tensor_proto(response.outputs[alias], value)
    return response


_arrays = st.one_of(
    hnp.arrays(st.sampled_from([np.float32, np.float64, np.int32, np.int64, np.bool_]),
               hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)),
    hnp.arrays(object, hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=4),
               elements=st.binary(max_size=200)))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=20), _arrays, max_size=4), st.integers(1, 2**40),
       st.sampled_from(["serving_default", "predict_rating"]))
def test_response_bytes_parse_to_what_protobuf_builds(outputs, version, signature):
    from movierec.serving.grpc_service import predict_response_bytes
    ours = predict_pb2.PredictResponse.FromString(predict_response_bytes("mf", version, signature, outputs))
    assert ours == protobuf_response("mf", version, signature, outputs)


def test_response_bytes_fall_back_to_protobuf_for_other_dtypes():
    from movierec.serving.grpc_service import predict_response_bytes
    outputs = {"half": np.array([1.5, 2.0], np.float16), "s": np.array([b"a"], object)}
    ours = predict_pb2.PredictResponse.FromString(predict_response_bytes("m", 3, "serving_default", outputs))
    assert ours == protobuf_response("m", 3, "serving_default", outputs)
    assert tf.make_ndarray(ours.outputs["half"]).tolist() == [1.5, 2.0]
