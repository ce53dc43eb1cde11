"""The REST front end over HTTP/1.1 (aiohttp underneath): keep-alive, pipelining, HTTP/1.0,
malformed requests, limits. Raw sockets, so nothing in between fixes a request up."""
import json
import os
import socket

import pytest

from movierec.serving.model_config import ModelSpec
from movierec.serving.options import Limits
from movierec.serving.server import ModelServer, ServerOptions
from tests.conftest import shared_dir

MODEL = os.path.join(shared_dir(), "tfserving-testdata", "saved_model_half_plus_two_cpu")
pytestmark = pytest.mark.skipif(not os.path.isdir(MODEL), reason=f"{MODEL} missing")
BODY = json.dumps({"instances": [[1.0]]}).encode()


def predict(version: bytes = b"HTTP/1.1", headers: bytes = b"", body: bytes = BODY) -> bytes:
    return (b"POST /v1/models/half:predict " + version + b"\r\nHost: x\r\n" + headers
            + b"Content-Length: %d\r\n\r\n" % len(body) + body)


@pytest.fixture(scope="module")
def server():
    with ModelServer([ModelSpec("half", MODEL)], ServerOptions(
            grpc_port=0, rest_port=0, poll_seconds=0, limits=Limits(max_body_bytes=4096))) as s:
        yield s


def exchange(server, raw: bytes, until_closed: bool = True, answers: int = 1) -> bytes:
    """Sends raw bytes; reads until the server closes (or `answers` responses arrived)."""
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=20) as c:
        c.sendall(raw)
        data = b""
        while True:
            chunk = c.recv(1 << 20)
            if not chunk:
                return data
            data += chunk
            if not until_closed and data.count(b"HTTP/1.") >= answers and data.endswith(b"}"):
                return data


def responses(data: bytes) -> list[tuple[int, dict, dict]]:
    """Splits a byte stream of responses into (status, headers, JSON body)."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        n = int(headers["content-length"])
        out.append((int(lines[0].split(" ")[1]), headers, json.loads(rest[:n])))
        data = rest[n:]
    return out


def test_pipelined_requests_are_all_answered_in_order(server):
    # 300 requests in one write (far more bytes than one body may be: reading pauses and
    # resumes), the last one asking to close
    raw = predict() * 299 + predict(headers=b"Connection: close\r\n")
    got = responses(exchange(server, raw))
    assert [s for s, _, _ in got] == [200] * 300
    assert all(body == {"predictions": [[2.5]]} for _, _, body in got)
    assert got[-1][1].get("connection") == "close" and "connection" not in got[0][1]


def test_keep_alive_serves_several_requests_on_one_connection(server):
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=20) as c:
        for x in (1.0, 2.0, 3.0):
            c.sendall(predict(body=json.dumps({"instances": [[x]]}).encode()))
            data = b""
            while not data.endswith(b"}"):
                data += c.recv(1 << 16)
            assert responses(data) == [(200, responses(data)[0][1], {"predictions": [[x / 2 + 2]]})]


def test_http_1_0_closes_after_the_answer_unless_kept_alive(server):
    assert [s for s, _, _ in responses(exchange(server, predict(b"HTTP/1.0")))] == [200]
    data = exchange(server, predict(b"HTTP/1.0", b"Connection: keep-alive\r\n"), until_closed=False)
    assert [s for s, _, _ in responses(data)] == [200]


@pytest.mark.parametrize("raw, status, message", [
    (b"POST /v1/models/half:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n", 429,
     "Request body of 5000 bytes is larger than the limit 4096"),
    (b"POST /v1/models/half:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"1001\r\n" + b" " * 4097 + b"\r\n0\r\n\r\n", 429, "Request body is larger than the limit 4096"),
    (b"PUT /v1/models/half HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 501, "Unsupported method: PUT"),
])
def test_requests_over_the_limits_get_a_json_error_naming_the_problem(server, raw, status, message):
    got = responses(exchange(server, raw, until_closed=status != 501))
    assert len(got) == 1
    code, headers, body = got[0]
    assert (code, body) == (status, {"error": message})
    # a body refused unread closes the connection; a readable request keeps it
    assert (headers.get("connection", "").lower() == "close") == (status != 501)


@pytest.mark.parametrize("raw", [
    b"GARBAGE\r\n\r\n",
    b"POST /v1/models/half:predict HTTP/1.1\r\nno colon here\r\n\r\n",
    b"POST /v1/models/half:predict HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    "POST /v1/models/half:predict HTTP/1.1\r\nContent-Length: \u00b2\r\n\r\n".encode(),
    b"GET /v1/models/half HTTP/1.1\r\n" + b"X-Long: " + b"a" * (70 << 10) + b"\r\n\r\n",
])
def test_malformed_http_gets_a_4xx_and_the_connection_closed(server, raw):
    data = exchange(server, raw)   # returns once the server has closed
    status = int(data.split(b" ", 2)[1])
    assert 400 <= status < 500, data[:200]


def test_the_server_answers_normally_after_the_malformed_ones(server):
    assert [s for s, _, _ in responses(exchange(server, predict(headers=b"Connection: close\r\n")))] == [200]


def test_a_request_arriving_in_pieces_is_answered_once_complete(server):
    import time

    raw = predict(headers=b"Connection: close\r\n")
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=20) as c:
        for i in range(0, len(raw), 7):   # the head and the body in 7-byte pieces
            c.sendall(raw[i:i + 7])
            time.sleep(0.002)
        data = b""
        while chunk := c.recv(1 << 16):
            data += chunk
    assert [(s, b) for s, _, b in responses(data)] == [(200, {"predictions": [[2.5]]})]
