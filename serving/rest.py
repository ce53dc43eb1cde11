"""REST front end with TF Serving's URLs, JSON and error bodies.

  GET  /v1/models/{name}[/versions/{v}|/labels/{l}]            model status
  GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata   signature defs
  POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict    row or columnar JSON
  GET  /monitoring/prometheus/metrics                           Prometheus text format
Errors: {"error": "<message>"} with the HTTP status TF Serving maps the code to.

Transport: HTTP/1.1 (keep-alive, pipelined requests answered in order; HTTP/1.0 closes
unless it asks for keep-alive) on the server's asyncio loop, one `HttpConnection` protocol
per connection. Parsing, JSON and routing run on the loop; where the model call runs is
`PredictionCore.predict_async`'s choice. A request body needs Content-Length (no chunked
bodies); a body over the limit is refused before it is read, and the connection is closed.
"""
from __future__ import annotations

import asyncio
import http
import json
import logging
import re
import socket
import time
import urllib.parse

import grpc

from movierec.serving import protos, tensor_json
from movierec.serving.errors import ServingError, invalid_argument, not_found
from movierec.serving.listener import Balance, Listener
from movierec.serving.eager import run_request
from movierec.serving.service import PredictionCore

log = logging.getLogger(__name__)

METRICS_PATH = "/monitoring/prometheus/metrics"
SERVER_NAME = "movierec-serving"
MAX_HEAD_BYTES = 64 << 10   # request line + headers
MAX_HEADERS = 100
_MODEL_URL = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?:/(?P<metadata>metadata)|:(?P<verb>[A-Za-z]+))?$")
_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_REASONS = {s.value: s.phrase for s in http.HTTPStatus}


def _parse_path(method: str, raw_path: str):
    path = urllib.parse.urlsplit(raw_path).path
    m = _MODEL_URL.match(urllib.parse.unquote(path))
    if not m:
        raise invalid_argument(f"Malformed request: {method} {path}")
    version = m.group("version")
    if version is not None:
        if not version.isdigit():
            raise invalid_argument(f"Malformed request: {method} {path}")
        if len(version) > 18:
            raise invalid_argument(f"Failed to convert version: {version} to numeric.")
        version = int(version)
    return m.group("name"), version, m.group("label"), m.group("metadata"), m.group("verb")


_ENCODER = json.JSONEncoder(separators=(",", ":"))   # one encoder: json.dumps with options builds one a call


def _json_body(status: int, obj) -> tuple[int, bytes, str]:
    return status, _ENCODER.encode(obj).encode("utf-8"), "application/json"


def _error(e: ServingError) -> tuple[int, bytes, str]:
    return _json_body(e.http_status, {"error": e.message})


def _parse_json(raw: bytes):
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise invalid_argument("Request body is not valid UTF-8") from None
    except RecursionError:
        raise invalid_argument("JSON nested too deeply") from None
    except json.JSONDecodeError as e:
        raise invalid_argument(f"JSON Parse error: {e.msg} at offset {e.pos}") from None


def _requested_signature(body) -> str:
    if isinstance(body, dict) and isinstance(body.get("signature_name", ""), str):
        return body.get("signature_name", "")
    return ""


class RestApi:
    """TF Serving's REST routes: (method, target, body) -> (HTTP status, body, content type)."""

    def __init__(self, core: PredictionCore):
        self.core = core

    async def handle(self, method: str, target: str, body: bytes, arrived: float) -> tuple[int, bytes, str]:
        try:
            if method == "GET":
                return self._get(target)
            if method == "POST":
                return await self._post(target, body, arrived + self.core.limits.request_timeout_seconds)
            raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f"Unsupported method: {method}")
        except ServingError as e:
            return _error(e)

    def _get(self, target: str):
        if urllib.parse.urlsplit(target).path == METRICS_PATH:
            return 200, self.core.render_metrics().encode(), "text/plain; version=0.0.4"
        name, version, label, metadata, verb = _parse_path("GET", target)
        if verb is not None:
            raise invalid_argument(f"Use POST for :{verb}")
        if metadata:
            with self.core.request(name, "GetModelMetadata", "REST"):
                body = protos.metadata_json(name, self.core.metadata(name, version, label))
        else:
            with self.core.request(name, "GetModelStatus", "REST"):
                body = protos.status_json(protos.status_response(name, self.core.status(name, version, label)))
        return _json_body(200, body)

    async def _post(self, target: str, raw: bytes, deadline: float):
        name, version, label, metadata, verb = _parse_path("POST", target)
        if metadata or verb is None:
            raise invalid_argument("Use GET for status and metadata")
        if verb in ("classify", "regress"):
            raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                               f":{verb} is not implemented by movierec serve; use :predict")
        if verb != "predict":
            raise not_found(f"Malformed request: unknown method :{verb}")
        body = _parse_json(raw)
        with self.core.request(name, "predict", "REST"):
            servable = self.core.manager.servable(name, version, label)
            signature = _requested_signature(body)
            if (signature or "serving_default") not in servable.signature_defs:
                raise invalid_argument(f'Serving signature name: "{signature}" not found in signature def')
            aliases = list(servable.signature_defs[signature or "serving_default"].inputs)
            signature_name, inputs, rows = tensor_json.parse_predict_body(body, aliases)
            self.core.check_batch(inputs)
            outputs = await self.core.predict_async(servable, signature_name, inputs, (), deadline)
            response = tensor_json.predict_response(outputs, rows)
        return _json_body(200, response)


class _BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    """Request line + header lines (no final CRLFCRLF) -> (method, target, version, headers
    with lower-case names); _BadRequest names what is wrong."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise _BadRequest(400, f"Bad request line: {lines[0][:100]!r}")
    method, target, version = parts
    if not _TOKEN.match(method):
        raise _BadRequest(400, f"Bad request method: {method[:100]!r}")
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise _BadRequest(505 if version.startswith(b"HTTP/") else 400,
                          f"Unsupported HTTP version: {version[:20]!r}")
    if len(lines) - 1 > MAX_HEADERS:
        raise _BadRequest(431, f"More than {MAX_HEADERS} header lines")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.match(name):
            raise _BadRequest(400, f"Bad header line: {line[:100]!r}")
        key = name.decode("ascii").lower()
        value = value.strip().decode("latin-1")
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    try:
        return method.decode("ascii"), target.decode("ascii"), version.decode("ascii"), headers
    except UnicodeDecodeError:
        raise _BadRequest(400, "Request target is not ASCII") from None


class HttpConnection(asyncio.Protocol):
    """One client connection: reads requests, answers them one at a time, in order."""

    def __init__(self, api: RestApi, connections: set):
        self.api = api
        self.connections = connections
        self.transport = None
        self.buffer = bytearray()
        self.busy = False        # a request is being answered; later ones wait in `buffer`
        self.closing = False
        self.discarding = False  # answered and closing: input is read and dropped
        self.eof = False         # the client half-closed: answer what was read, then close
        self.head = None         # the parsed head of a request whose body is still arriving
        self._in_next = False

    def connection_made(self, transport):
        self.transport = transport
        self.connections.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc):
        self.connections.discard(self)
        self.closing = True

    def data_received(self, data: bytes):
        if self.discarding:
            return
        self.buffer += data
        if not self.busy:
            self._next()
        elif len(self.buffer) > self.api.core.limits.max_body_bytes + MAX_HEAD_BYTES:
            # more pipelined requests than one request can be: stop reading until answered
            self.transport.pause_reading()

    def eof_received(self):
        self.eof = True
        if not self.busy:
            self._close()
        return True   # half-close: a request being answered still gets its answer

    def _close(self):
        self.closing = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _next(self) -> None:
        """Answers the complete requests in the buffer, in order, while their answers come
        at once (an answer that waits resumes this from `_answered`). A head is parsed
        once; while its body arrives, later calls only count bytes."""
        while not self.closing and not self.busy:
            if self.head is None:
                self.head = self._read_head()
                if self.head is None:
                    break
            method, target, keep_alive, body_start, length = self.head
            if len(self.buffer) < body_start + length:
                break   # wait for the rest of the body
            body = bytes(self.buffer[body_start:body_start + length])
            del self.buffer[:body_start + length]
            self.head = None
            self.busy = True
            self._in_next = True   # an answer that comes at once returns here, not into _next again
            try:
                run_request(self.api.handle(method, target, body, time.monotonic()),
                            lambda result, error, keep_alive=keep_alive: self._answered(result, error, keep_alive))
            finally:
                self._in_next = False
        if self.eof and not self.busy:
            self._close()

    def _read_head(self) -> tuple | None:
        """(method, target, keep_alive, body start, body length) of the request at the start
        of the buffer; None while incomplete, or after answering a head that cannot be served."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 and len(self.buffer) <= MAX_HEAD_BYTES:
            return None
        if end < 0 or end > MAX_HEAD_BYTES:
            self._reply_and_close(431, f"Request head larger than {MAX_HEAD_BYTES} bytes")
            return None
        try:
            method, target, version, headers = _parse_head(bytes(self.buffer[:end]))
        except _BadRequest as e:
            self._reply_and_close(e.status, e.message)
            return None
        connection = headers.get("connection", "").lower()
        keep_alive = ("close" not in connection) if version == "HTTP/1.1" else ("keep-alive" in connection)
        if "transfer-encoding" in headers:
            self._reply_and_close(400, "Content-Length header is required (chunked bodies are not supported)")
            return None
        length = headers.get("content-length")
        if length is None:
            if method == "POST":
                self._reply_and_close(400, "Content-Length header is required")
                return None
            length = "0"
        if not length.isdigit():
            self._reply_and_close(400, f"Bad Content-Length: {length[:30]!r}")
            return None
        limit = self.api.core.limits.max_body_bytes
        if int(length) > limit:
            self._reply_and_close(429, f"Request body of {length} bytes is larger than the limit {limit}")
            return None
        return method, target, keep_alive, end + 4, int(length)

    def _answered(self, result, error: BaseException | None, keep_alive: bool) -> None:
        self.busy = False
        if self.transport is not None and not self.transport.is_closing() and not self.transport.is_reading():
            self.transport.resume_reading()
        if isinstance(error, asyncio.CancelledError):
            self._close()
            return
        if error is not None:
            log.error("REST request failed", exc_info=error)
            status, body, content_type = _json_body(500, {"error": f"Internal error: {type(error).__name__}"})
        else:
            status, body, content_type = result
        self._write(status, body, content_type, keep_alive)
        if not keep_alive:
            self._close()
        elif not self._in_next:
            self._next()

    def _write(self, status: int, body: bytes, content_type: str, keep_alive: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\nServer: {SERVER_NAME}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                f"{'' if keep_alive else 'Connection: close' + chr(13) + chr(10)}\r\n")
        self.transport.write(head.encode("latin-1") + body)

    def _reply_and_close(self, status: int, message: str) -> None:
        """Answers a request that cannot be read to its end, then closes. The client may
        still be sending (an oversized body): its data is read and dropped until it closes
        or 5 s pass, so that the answer is not lost to a reset."""
        status, body, content_type = _json_body(status, {"error": message})
        self._write(status, body, content_type, keep_alive=False)
        self.closing = self.discarding = True
        self.buffer.clear()
        if self.transport is not None and not self.transport.is_closing():
            if self.transport.can_write_eof():
                self.transport.write_eof()
            asyncio.get_running_loop().call_later(5.0, self.transport.close)


class RestServer:
    """The listener and its open connections."""

    def __init__(self, listener: Listener, connections: set):
        self.listener = listener
        self.connections = connections
        self.port = listener.port

    async def close(self) -> None:
        self.listener.close()
        for conn in list(self.connections):
            conn._close()


async def start_rest_server(core: PredictionCore, sock: socket.socket, balance: Balance | None = None) -> RestServer:
    """Serves REST on a listening socket (`listener.listen_socket`) from the running loop;
    balance: share connections with other worker processes (`listener.Balance`)."""
    api = RestApi(core)
    connections: set = set()
    return RestServer(Listener(sock, lambda: HttpConnection(api, connections), balance), connections)
