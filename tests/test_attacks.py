"""Attacks on `movierec serve` over loopback, each bounded in count and time, while a
legitimate client keeps calling: its calls must all succeed with p99 under LEGIT_P99_S,
the server's RSS must grow by less than RSS_GROWTH_MB, and the server's log must show no
traceback and no ERROR line.

The server is one `movierec serve` subprocess (so its RSS and log are its own) with an
open-files limit of OPEN_FILES, short timeouts (IDLE_TIMEOUT_S, READ_TIMEOUT_S) and a
small answer limit (MAX_RESPONSE_VALUES), serving TF Serving's half_plus_two. The
legitimate client keeps one REST keep-alive connection and one gRPC channel, as real
clients do, and makes a REST and a gRPC Predict call every few milliseconds.
"""
import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tests.conftest import REPO, shared_dir

HALF = os.path.join(shared_dir(), "tfserving-testdata", "saved_model_half_plus_two_cpu")
pytestmark = pytest.mark.skipif(not os.path.isdir(HALF), reason="tfserving testdata missing")
h2 = pytest.importorskip("h2.connection")
from h2.config import H2Configuration  # noqa: E402
from h2.exceptions import H2Error  # noqa: E402
from h2.settings import SettingCodes  # noqa: E402

LEGIT_P99_S = 1.0          # generous: 2 cores shared by the server, the attack and the client
RSS_GROWTH_MB = 100        # above the RSS after warm-up calls
OPEN_FILES = 256
IDLE_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 2.0
MAX_RESPONSE_VALUES = 20_000
MAX_ROWS = 50_000
ATTACK_SECONDS = 6.0       # each attack ends by then (the last batch of frames may finish later)
PREDICT_PATH = "/tensorflow.serving.PredictionService/Predict"


# -- the server ------------------------------------------------------------------------------------
class Server:
    def __init__(self, proc: subprocess.Popen, log_path: str, grpc_port: int, rest_port: int):
        self.proc, self.log_path, self.grpc_port, self.rest_port = proc, log_path, grpc_port, rest_port
        self._log_offset = 0

    def rss_mb(self) -> float:
        """VmRSS of the server process and its children (a worker pool's workers)."""
        pids = [self.proc.pid]
        with contextlib.suppress(OSError):
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                pids += [int(p) for p in f.read().split()]
        kb = 0
        for pid in pids:
            with contextlib.suppress(OSError, StopIteration), open(f"/proc/{pid}/status") as f:
                kb += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        return kb / 1024

    def new_log(self) -> str:
        """The server's log since the last call."""
        with open(self.log_path, errors="replace") as f:
            f.seek(self._log_offset)
            text = f.read()
            self._log_offset = f.tell()
        return text


def _limit_open_files():
    import resource  # noqa: PLC0415

    resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from _serve(tmp_path_factory.mktemp("attack"))


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """`movierec serve --workers 2`: attacks on the pool."""
    yield from _serve(tmp_path_factory.mktemp("attack_pool"), "--workers", "2")


def _serve(root, *extra: str):
    shutil.copytree(HALF, root / "half")
    log_path = str(root / "server.log")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=os.path.dirname(REPO))
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "movierec.cli", "serve", "--model_name", "half",
             "--model_base_path", str(root / "half"), "--port", "0", "--rest_api_port", "0",
             "--file_system_poll_wait_seconds", "0", "--no-warmup",
             "--idle_timeout_seconds", str(IDLE_TIMEOUT_S), "--read_timeout_seconds", str(READ_TIMEOUT_S),
             "--max_response_values", str(MAX_RESPONSE_VALUES), "--max_request_rows", str(MAX_ROWS), *extra],
            stdout=subprocess.PIPE, stderr=log, text=True, env=env, preexec_fn=_limit_open_files)
    try:
        line = ""
        deadline = time.monotonic() + 120
        while "serving gRPC on" not in line:
            line = proc.stdout.readline()
            if (not line and proc.poll() is not None) or time.monotonic() > deadline:
                pytest.fail(f"server did not start: {open(log_path).read()[-3000:]}")
        grpc_port, rest_port = map(int, re.search(r":(\d+), REST on http://[^:]+:(\d+)", line).groups())
        s = Server(proc, log_path, grpc_port, rest_port)
        for _ in range(50):   # warm up: the RSS baseline includes the usual per-call allocations
            rest_predict(http.client.HTTPConnection("127.0.0.1", rest_port, timeout=10), [[1.0]] * 100)
        yield s
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


# -- the legitimate client -------------------------------------------------------------------------
def rest_predict(conn: http.client.HTTPConnection, instances) -> tuple[int, dict]:
    conn.request("POST", "/v1/models/half:predict", json.dumps({"instances": instances}))
    r = conn.getresponse()
    return r.status, json.loads(r.read())


def grpc_request(rows: int) -> predict_pb2.PredictRequest:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "half"
    req.inputs["x"].CopyFrom(tf.make_tensor_proto(np.ones((rows, 1), np.float32)))
    return req


class LegitClient:
    """A REST and a gRPC Predict call in turn, on one keep-alive connection and one
    channel, until stopped; each call's latency, and any failure, recorded."""

    def __init__(self, server: Server):
        self.server = server
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.server.rest_port, timeout=15)
        channel = grpc.insecure_channel(f"127.0.0.1:{self.server.grpc_port}")
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        req = grpc_request(2)
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                status, body = rest_predict(conn, [[1.0], [2.0]])
                if (status, body) != (200, {"predictions": [[2.5], [3.0]]}):
                    self.failures.append(f"REST {status} {body}")
            except (OSError, http.client.HTTPException) as e:
                self.failures.append(f"REST {type(e).__name__}: {e}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.server.rest_port, timeout=15)
            self.latencies.append(time.monotonic() - started)
            started = time.monotonic()
            try:
                got = tf.make_ndarray(stub.Predict(req, timeout=15).outputs["y"])
                if got.tolist() != [[2.5], [2.5]]:
                    self.failures.append(f"gRPC {got}")
            except grpc.RpcError as e:
                self.failures.append(f"gRPC {e.code()}: {e.details()}")
            self.latencies.append(time.monotonic() - started)
            self._stop.wait(0.005)
        conn.close()
        channel.close()

    def __enter__(self):
        self._thread.start()
        time.sleep(0.3)   # connected and warm before the attack
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=30)

    def p99(self) -> float:
        return float(np.percentile(self.latencies, 99))


RESULTS: dict[str, tuple[float, float, int]] = {}   # attack -> (legit p99 s, RSS growth MB, calls)
LOGS: dict[str, str] = {}                            # attack -> the server's log during it


@contextlib.contextmanager
def under_attack(server: Server, name: str, p99_bound: float = LEGIT_P99_S):
    """Runs the block (the attack) while a legitimate client calls; then checks the
    client's calls, the server's RSS and log."""
    server.new_log()
    rss_before = server.rss_mb()
    peak = [rss_before]
    sampling = threading.Event()

    def sample():
        while not sampling.wait(0.05):
            with contextlib.suppress(OSError, StopIteration):
                peak[0] = max(peak[0], server.rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with LegitClient(server) as legit:
        yield
        time.sleep(0.2)
    sampling.set()
    sampler.join()
    growth = peak[0] - rss_before
    RESULTS[name] = (legit.p99(), growth, len(legit.latencies))
    print(f"\n{name}: legit p99 {legit.p99() * 1000:.0f} ms over {len(legit.latencies)} calls, "
          f"RSS +{growth:.1f} MB (peak {peak[0]:.0f} MB)")
    assert server.proc.poll() is None, "the server died"
    assert not legit.failures, legit.failures[:5]
    assert len(legit.latencies) >= 10
    assert legit.p99() < p99_bound, (name, legit.p99())
    assert growth < RSS_GROWTH_MB, (name, growth)
    log = server.new_log()
    LOGS[name] = log
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]


def run_for(seconds: float, fn, *args):
    """fn(*args) in a thread; fails the test if it has not ended `seconds` + 10 s later."""
    thread = threading.Thread(target=fn, args=args, daemon=True)
    thread.start()
    thread.join(seconds + 10)
    assert not thread.is_alive(), f"{fn.__name__} overran"


# -- HTTP/2 by hand --------------------------------------------------------------------------------
GRPC_HEADERS = [(":method", "POST"), (":scheme", "http"), (":path", PREDICT_PATH),
                (":authority", "127.0.0.1"), ("content-type", "application/grpc"), ("te", "trailers")]
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def grpc_message(req) -> bytes:
    payload = req.SerializeToString()
    return b"\x00" + struct.pack(">I", len(payload)) + payload


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def h2_client(port: int, settings: dict | None = None):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn = h2.H2Connection(H2Configuration(client_side=True))
    conn.initiate_connection()
    if settings:
        conn.update_settings(settings)
    sock.sendall(conn.data_to_send())
    return sock, conn


def drain(sock: socket.socket, conn) -> None:
    """Reads whatever the server sent, without waiting, into the h2 state machine (its
    WINDOW_UPDATEs open our sending window)."""
    sock.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        while True:
            data = sock.recv(1 << 16)
            if not data:
                raise ConnectionResetError("closed by the server")
            conn.receive_data(data)
    sock.setblocking(True)


def test_rapid_reset(server):
    """HTTP/2 rapid reset (CVE-2023-44487): streams opened with a Predict call and reset at
    once, 2,000 per connection on 4 connections. Defended by grpc core (reset streams
    count against the connection; too many and it sends GOAWAY) and by admission: a reset
    cancels the call's task, which frees its slot, and one connection holds at most
    max_requests_per_connection slots."""
    rapid_reset(server, "rapid reset (gRPC, 4 x 2000 streams, 3000 rows each)")


def test_rapid_reset_against_a_worker_pool(pool):
    """The same rapid reset against `--workers 2`: each attacking connection lands on one
    worker (SO_REUSEPORT), whose defences are those above; the legitimate client's
    connections, wherever they land, keep answering."""
    rapid_reset(pool, "rapid reset, --workers 2")


def rapid_reset(server, name: str):
    body = grpc_message(grpc_request(3000))   # more than inline_max_rows: model work on a model thread
    sent = []

    def attack():
        deadline = time.monotonic() + ATTACK_SECONDS
        for _ in range(4):
            sock, conn = h2_client(server.grpc_port)
            try:
                for stream in range(1, 4001, 2):
                    while conn.outbound_flow_control_window < len(body):
                        if time.monotonic() > deadline:
                            return
                        sock.sendall(conn.data_to_send())
                        time.sleep(0.01)
                        drain(sock, conn)
                    conn.send_headers(stream, GRPC_HEADERS)
                    conn.send_data(stream, body, end_stream=True)
                    conn.reset_stream(stream)
                    sent.append(stream)
                    if stream % 64 == 1:
                        sock.sendall(conn.data_to_send())
                        drain(sock, conn)
                sock.sendall(conn.data_to_send())
            except (OSError, H2Error):
                pass   # the server closed the connection: defended
            finally:
                sock.close()

    with under_attack(server, name):
        run_for(ATTACK_SECONDS, attack)
    print(f"rapid reset: {len(sent)} streams opened and reset")
    assert len(sent) >= 500


def test_continuation_flood(server):
    """A HEADERS frame without END_HEADERS followed by 20,000 zero-length CONTINUATION
    frames, on 10 connections. Defended by grpc core: a header block is bounded by
    grpc.max_metadata_size and the connection is closed on a violation."""
    opening = PREFACE + frame(4, 0, 0)                      # SETTINGS, empty
    headers = frame(1, 0, 1, b"\x83\x86")                   # HEADERS :method POST, :scheme http; no END_HEADERS
    flood = frame(9, 0, 1) * 2000                           # CONTINUATION, empty

    def attack():
        deadline = time.monotonic() + ATTACK_SECONDS
        for _ in range(10):
            with socket.create_connection(("127.0.0.1", server.grpc_port), timeout=5) as sock:
                try:
                    sock.sendall(opening + headers)
                    for _ in range(10):
                        if time.monotonic() > deadline:
                            break
                        sock.sendall(flood)
                except OSError:
                    pass   # closed by the server: defended

    with under_attack(server, "CONTINUATION flood (10 x 20000 frames)"):
        run_for(ATTACK_SECONDS, attack)


def test_settings_flood(server):
    """20,000 SETTINGS frames per connection on 10 connections, never reading the ACKs.
    Defended by grpc core: it stops reading a connection whose induced frames (SETTINGS
    and PING ACKs) pile up unread (grpc.http2.max_pending_induced_frames)."""
    opening = PREFACE + frame(4, 0, 0)
    flood = frame(4, 0, 0, struct.pack(">HI", SettingCodes.MAX_CONCURRENT_STREAMS, 100)) * 2000

    def attack():
        deadline = time.monotonic() + ATTACK_SECONDS
        for _ in range(10):
            with socket.create_connection(("127.0.0.1", server.grpc_port), timeout=2) as sock:
                try:
                    sock.sendall(opening)
                    for _ in range(10):
                        if time.monotonic() > deadline:
                            break
                        sock.sendall(flood)
                except OSError:
                    pass   # stopped reading (send timed out) or closed: defended

    with under_attack(server, "SETTINGS flood (10 x 20000 frames)"):
        run_for(ATTACK_SECONDS + 25, attack)


def test_zero_window(server):
    """Clients that announce a zero flow-control window and ask for 16 kB answers on every
    stream they may open (5 connections), never opening the window. Defended by grpc
    core's flow control and grpc.max_concurrent_streams: at most one answer is held per
    open stream, and streams per connection are bounded."""
    body = grpc_message(grpc_request(4_000))   # one frame; the answer is as big
    opened = []

    def attack():
        socks = []
        deadline = time.monotonic() + ATTACK_SECONDS - 2
        try:
            for _ in range(5):
                sock, conn = h2_client(server.grpc_port, {SettingCodes.INITIAL_WINDOW_SIZE: 0})
                socks.append(sock)
                for stream in range(1, 2 * 64, 2):
                    # our sending window: read the server's WINDOW_UPDATEs (and nothing it sends
                    # on a stream can arrive: our receiving window is zero)
                    while conn.local_flow_control_window(stream) < len(body) if stream in conn.streams \
                            else conn.outbound_flow_control_window < len(body):
                        if time.monotonic() > deadline:
                            raise TimeoutError
                        sock.settimeout(0.2)
                        with contextlib.suppress(socket.timeout):
                            conn.receive_data(sock.recv(1 << 16))
                        sock.sendall(conn.data_to_send())
                    conn.send_headers(stream, GRPC_HEADERS)
                    conn.send_data(stream, body, end_stream=True)
                    sock.sendall(conn.data_to_send())
                    opened.append(stream)
            time.sleep(max(0.0, deadline - time.monotonic()))   # held open, never read
        except TimeoutError:
            pass
        except (OSError, H2Error):
            pass
        finally:
            for sock in socks:
                sock.close()

    with under_attack(server, "zero window (5 conns x 64 streams x 16 kB)"):
        run_for(ATTACK_SECONDS, attack)
    assert len(opened) >= 100, len(opened)


# -- HTTP/1.1 by hand ------------------------------------------------------------------------------
def rest_request(body: bytes, extra: bytes = b"") -> bytes:
    return (b"POST /v1/models/half:predict HTTP/1.1\r\nHost: x\r\n" + extra
            + b"Content-Length: %d\r\n\r\n" % len(body) + body)


def test_pipelining_without_reading(server):
    """4 connections each send 0.5 MB of pipelined requests for 1,000-row answers and never
    read. Defended by aiohttp: it answers one request at a time, waits for each answer to
    drain to the socket before the next, and stops reading while its queue is full; so the
    server holds about one answer and one socket buffer per connection."""
    one = rest_request(json.dumps({"instances": [[1.0]] * 1000}).encode())
    stream = one * (512 * 1024 // len(one))

    def attack():
        socks = []
        try:
            for _ in range(4):
                sock = socket.create_connection(("127.0.0.1", server.rest_port), timeout=1)
                socks.append(sock)
                with contextlib.suppress(OSError):    # send blocks once the server stops reading
                    sock.sendall(stream)
            time.sleep(2)
        finally:
            for sock in socks:
                sock.close()

    with under_attack(server, "pipelining without reading (4 x 0.5 MB)"):
        run_for(ATTACK_SECONDS, attack)


def test_slowloris_headers_and_body(server):
    """100 connections send headers one byte at a time, 50 more send full headers and then
    their body one byte at a time. Defended by aiohttp's keepalive_timeout for headers
    (--idle_timeout_seconds) and our body read timeout (--read_timeout_seconds, 408): every
    slow connection is closed within those bounds."""
    head = b"POST /v1/models/half:predict HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 200
    closed = {"headers": 0, "body": 0}
    answers = []

    def attack():
        socks = []
        for i in range(150):
            sock = socket.create_connection(("127.0.0.1", server.rest_port), timeout=5)
            sock.setblocking(False)
            if i >= 100:
                sock.sendall(b"POST /v1/models/half:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
            socks.append([sock, "headers" if i < 100 else "body", 0, b""])
        started = time.monotonic()
        while time.monotonic() - started < IDLE_TIMEOUT_S + READ_TIMEOUT_S + 2:
            for entry in socks:
                sock, kind, sent, got = entry
                if sock is None:
                    continue
                try:
                    data = sock.recv(4096)
                    if not data:
                        raise ConnectionResetError
                    entry[3] = got + data
                    continue
                except BlockingIOError:
                    pass
                except OSError:
                    closed[kind] += 1
                    answers.append(entry[3])
                    sock.close()
                    entry[0] = None
                    continue
                with contextlib.suppress(OSError):
                    sock.send(head[sent:sent + 1] if kind == "headers" else b" ")
                    entry[2] = sent + 1
            time.sleep(0.25)
        for entry in socks:
            if entry[0] is not None:
                entry[0].close()

    with under_attack(server, "slowloris (100 headers, 50 bodies)"):
        run_for(IDLE_TIMEOUT_S + READ_TIMEOUT_S + 5, attack)
    assert closed == {"headers": 100, "body": 50}, closed
    assert sum(a.startswith(b"HTTP/1.1 408") for a in answers) == 50


def test_idle_sockets_under_open_files_limit(server):
    """300 idle connections (150 REST, 150 gRPC) against a server whose open-files limit is
    256. Connections already open keep answering (the legitimate client's); new ones wait
    in the listen backlog until idle connections are closed (REST: aiohttp's
    keepalive_timeout; gRPC: grpc.server_handshake_timeout_ms for connections that never
    send the preface), then are served: a new connection made during the attack answers
    within the idle timeout plus a few seconds. Running out of descriptors while
    accepting is logged as a warning line, not a traceback."""
    socks = []
    new_connection = {}

    def attack():
        try:
            for i in range(300):
                socks.append(socket.create_connection(
                    ("127.0.0.1", server.rest_port if i % 2 else server.grpc_port), timeout=5))
        except OSError:
            pass
        started = time.monotonic()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=IDLE_TIMEOUT_S + 15)
            new_connection["answer"] = rest_predict(conn, [[1.0]])
            conn.close()
        except (OSError, http.client.HTTPException) as e:
            new_connection["answer"] = repr(e)
        new_connection["seconds"] = time.monotonic() - started
        for sock in socks:
            sock.close()

    with under_attack(server, "300 idle sockets, open-files limit 256"):
        run_for(IDLE_TIMEOUT_S + READ_TIMEOUT_S + 20, attack)
    log = LOGS["300 idle sockets, open-files limit 256"]
    print("".join(line for line in log.splitlines(True) if "cannot accept" not in line)[-1500:])
    assert "cannot accept connections for now: [Errno 24]" in log   # the limit was reached
    assert log.count("cannot accept connections") <= 2 * (IDLE_TIMEOUT_S + READ_TIMEOUT_S + 5)
    print(f"idle sockets: a new connection made during the attack answered after {new_connection['seconds']:.1f} s")
    assert len(socks) == 300
    assert new_connection["answer"] == (200, {"predictions": [[2.5]]}), new_connection
    assert new_connection["seconds"] < max(IDLE_TIMEOUT_S, READ_TIMEOUT_S) + 5, new_connection


def test_oversized_answers(server):
    """Requests for more values than --max_response_values (30,000 rows of half_plus_two,
    whose answer has one value a row; for a top-k model rows x k) over REST and gRPC, 40
    of each: refused with INVALID_ARGUMENT / HTTP 400 naming the limit, before encoding."""
    rows = [[1.0]] * 30_000
    statuses, messages = [], []

    def attack():
        conn = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=15)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(
            grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))
        req = grpc_request(30_000)
        for _ in range(40):
            status, body = rest_predict(conn, rows)
            statuses.append(status)
            messages.append(body.get("error", ""))
            with pytest.raises(grpc.RpcError) as e:
                stub.Predict(req, timeout=15)
            statuses.append(e.value.code())
            messages.append(e.value.details())

    with under_attack(server, "oversized answers (80 x 30000 values)"):
        run_for(ATTACK_SECONDS + 20, attack)
    assert set(statuses) == {400, grpc.StatusCode.INVALID_ARGUMENT}
    assert all("max_response_values" in m and f"limit {MAX_RESPONSE_VALUES}" in m for m in messages), messages[:2]


JSON_BOMBS = {
    "4301-digit integer": (b'{"instances": [[' + b"9" * 4301 + b"]]}", "Number too big"),
    "1M unknown keys": (b'{"instances": [[1.0]], ' + b",".join(b'"k%d":0' % i for i in range(1_000_000)) + b"}",
                        "max_json_values"),
    "16 MB of one-value rows": (b'{"instances": [' + b",".join([b"[1]"] * 4_000_000) + b"]}", "max_json_values"),
    "100k one-value rows": (b'{"instances": [' + b",".join([b"[1]"] * 100_000) + b"]}",
                            "batch size 100000, more than the maximum"),
    "900k values in one row": (b'{"instances": [[' + b",".join([b"1", b"2.5"] * 450_000) + b"]]}",
                               "max_response_values"),
    "100k nested arrays": (b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    "100k nested objects": (b'{"instances": [' + b'{"a":' * 100_000 + b"1" + b"}" * 100_000 + b"]}",
                            "nested too deeply"),
    "1M-digit float": (b'{"instances": [[0.' + b"1" * 1_000_000 + b"]]}", None),
}


@pytest.mark.parametrize("name", list(JSON_BOMBS))
def test_json_bombs(server, name):
    """Bodies that make JSON parsers slow or crash, 3 of each: answered 4xx within a second
    with a message naming the problem, no 500, the answer small (never an echo of the
    body). Defended by our checks before and around json.loads (max_json_values counted
    before parsing; rows counted before the values become arrays; Python's int digit
    limit and recursion limit turned into 400)."""
    body, expected = JSON_BOMBS[name]
    answers = []

    def attack():
        for _ in range(3):
            conn = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=15)
            started = time.monotonic()
            conn.request("POST", "/v1/models/half:predict", body)
            r = conn.getresponse()
            answers.append((r.status, r.read(), time.monotonic() - started))
            conn.close()

    with under_attack(server, f"JSON bomb: {name} ({len(body) >> 10} kB) x 3"):
        run_for(ATTACK_SECONDS + 20, attack)
    for status, payload, seconds in answers:
        assert len(payload) < 2048, payload[:200]
        if expected is None:   # a valid body: answered, within the time bound
            assert status == 200, payload[:200]
        else:
            assert status == 400 and expected in json.loads(payload)["error"], payload[:300]
        assert seconds < 1.5, (name, seconds)


def test_malformed_content_length_is_a_400_not_a_traceback(server):
    """`Content-Length: ²` (a Unicode digit Python's int() accepts) and other malformed
    lengths: aiohttp's parser answers 400."""
    server.new_log()
    for length in ("\u00b2".encode(), b"-1", b"1_0", b"0x10", b"99999999999999999999999"):
        with socket.create_connection(("127.0.0.1", server.rest_port), timeout=10) as sock:
            sock.sendall(b"POST /v1/models/half:predict HTTP/1.1\r\nHost: x\r\nContent-Length: " + length
                         + b"\r\n\r\n{}")
            data = sock.recv(4096)
        assert re.match(rb"HTTP/1\.[01] 400 ", data), (length, data[:100])
    log = server.new_log()
    assert "Traceback" not in log and " ERROR " not in log, log[-2000:]


def test_a_client_resetting_mid_body_is_not_a_server_error(server):
    """A client that announces a 100,000-byte body, sends 10 bytes and resets the connection
    (RST, SO_LINGER 0): nobody is left to answer, the server logs no error and no
    traceback, and the next request is answered."""
    server.new_log()
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", server.rest_port), timeout=10)
        sock.sendall(b"POST /v1/models/half:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
                     + b'{"instance')
        time.sleep(0.05)   # the handler is waiting in the body read
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    time.sleep(0.5)
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=10) as sock:
        sock.sendall(b"GET /v1/models/half HTTP/1.1\r\nHost: x\r\n\r\n")
        assert re.match(rb"HTTP/1\.[01] 200 ", sock.recv(4096))
    log = server.new_log()
    assert "Traceback" not in log and " ERROR " not in log, log[-2000:]


def test_one_connection_cannot_take_every_slot():
    """Fair admission: one connection holds at most max_requests_per_connection slots, and
    the refusal names the limit; another connection is still admitted; a released slot
    (a finished or cancelled call) is free again."""
    from movierec.serving.errors import ServingError  # noqa: PLC0415
    from movierec.serving.options import Limits  # noqa: PLC0415
    from movierec.serving.service import CONNECTION, PredictionCore  # noqa: PLC0415

    core = PredictionCore(manager=None, limits=Limits(max_concurrent_requests=8, max_requests_per_connection=3))
    held = contextlib.ExitStack()
    CONNECTION.set("attacker")
    for _ in range(3):
        held.enter_context(core.request("m", "predict", "GRPC"))
    with pytest.raises(ServingError) as e:
        held.enter_context(core.request("m", "predict", "GRPC"))
    assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "max_requests_per_connection" in e.value.message
    CONNECTION.set("someone else")
    with core.request("m", "predict", "GRPC"):
        pass
    held.close()
    CONNECTION.set("attacker")
    with core.request("m", "predict", "GRPC"):
        assert core._per_connection == {"attacker": 1}   # noqa: SLF001
    assert core._per_connection == {}   # noqa: SLF001


def test_a_top_k_request_for_too_many_values_is_refused_before_the_model_runs():
    """rows x k over max_response_values (10,000 users with k=100: the 69 kB gRPC request
    whose answer is a million values) is refused from the inputs alone, naming the limit."""
    from movierec.serving.errors import ServingError  # noqa: PLC0415
    from movierec.serving.options import Limits  # noqa: PLC0415
    from movierec.serving.service import PredictionCore  # noqa: PLC0415

    core = PredictionCore(manager=None, limits=Limits(max_response_values=200_000))
    users = np.array([b"1"] * 10_000, object)
    with pytest.raises(ServingError) as e:
        core.check_batch({"user_id": users, "k": np.int32(100)})
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.message.startswith("Response too large: 10000 rows x k=100 is 1000000 values, more than the "
                                      "limit 200000 (max_response_values)")
    core.check_batch({"user_id": users, "k": np.int32(20)})                    # 200,000: allowed
    core.check_batch({"user_id": users[:100], "k": np.full(100, 2000, np.int32)})   # per-row k: 200,000


def test_a_cancelled_call_frees_its_slot_and_its_queued_model_work_never_runs():
    """A call whose client goes away is a cancelled task: its slot is released at once and
    its model call, still queued behind a busy model thread, is dropped."""
    import asyncio  # noqa: PLC0415
    import concurrent.futures  # noqa: PLC0415

    from movierec.serving.options import Limits  # noqa: PLC0415
    from movierec.serving.service import CONNECTION, PredictionCore  # noqa: PLC0415

    executor = concurrent.futures.ThreadPoolExecutor(1)
    core = PredictionCore(manager=None, limits=Limits(max_concurrent_requests=2, max_requests_per_connection=2),
                          executor=executor, inline_max_rows=0)
    busy, ran = threading.Event(), []

    async def call(fn):
        CONNECTION.set("client")
        with core.request("m", "predict", "GRPC"):
            return await core._call(1, fn)   # noqa: SLF001 - on the model thread

    async def scenario():
        first = asyncio.ensure_future(call(lambda: busy.wait(5)))       # holds the only model thread
        second = asyncio.ensure_future(call(lambda: ran.append(1)))     # queued behind it
        await asyncio.sleep(0.1)
        assert core._per_connection == {"client": 2}   # noqa: SLF001
        second.cancel()                                                 # its client reset the stream
        with contextlib.suppress(asyncio.CancelledError):
            await second
        assert core._per_connection == {"client": 1}   # noqa: SLF001
        busy.set()
        await first

    asyncio.run(scenario())
    executor.shutdown(wait=True)
    assert ran == [] and core._per_connection == {}   # noqa: SLF001


def test_zz_report():
    """The attack table (legitimate p99 and RSS growth per attack), printed with -s."""
    print("\n| attack | legit p99 (ms) | RSS growth (MB) | legit calls |\n|---|---|---|---|")
    for name, (p99, growth, calls) in RESULTS.items():
        print(f"| {name} | {p99 * 1000:.0f} | {growth:.1f} | {calls} |")
