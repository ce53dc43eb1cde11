"""REST front end with TF Serving's URLs, JSON and error bodies.

  GET  /v1/models/{name}[/versions/{v}|/labels/{l}]            model status
  GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata   signature defs
  POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict    row or columnar JSON
  POST /v1/models/{name}[/versions/{v}|/labels/{l}]:classify   {"examples": [...]} (tf.Examples)
  POST /v1/models/{name}[/versions/{v}|/labels/{l}]:regress    {"examples": [...]} (tf.Examples)
  GET  /monitoring/prometheus/metrics                           Prometheus text format
Errors: {"error": "<message>"} with the HTTP status TF Serving maps the code to; a path that
fits no route (or the wrong method for it) is 400 "Malformed request: <METHOD> <path>".

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
from tensorflow.core.framework import types_pb2

from movierec.serving import protos, tensor_json
from movierec.serving.errors import ServingError, invalid_argument
from movierec.serving.listener import Balance, Listener
from movierec.serving.eager import run_request
from movierec.serving.service import PredictionCore

log = logging.getLogger(__name__)

METRICS_PATH = "/monitoring/prometheus/metrics"
SERVER_NAME = "movierec-serving"
MAX_HEAD_BYTES = 64 << 10   # request line + headers
MAX_HEADERS = 100
# TF Serving's two REST routes (http_rest_api_util.cc), case-insensitive as there: POST
# for :predict/:classify/:regress, GET for status and metadata; anything else is
# "Malformed request".
_POST_URL = re.compile(r"/v1/models/([^/:]+)(?:(?:/versions/([0-9]+))|(?:/labels/([^/:]+)))?"
                       r":(classify|regress|predict)", re.IGNORECASE)
_GET_URL = re.compile(r"/v1/models(?:/([^/:]+))?(?:(?:/versions/([0-9]+))|(?:/labels/([^/:]+)))?"
                      r"(?:/(metadata))?", re.IGNORECASE)
_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_REASONS = {s.value: s.phrase for s in http.HTTPStatus}


def _parse_path(method: str, raw_path: str):
    """-> (model name, version, label, "metadata" or None, verb or None) as TF Serving's
    ParseModelInfo reads the path; INVALID_ARGUMENT "Malformed request" when the path
    does not fit the method's route."""
    path = urllib.parse.urlsplit(raw_path).path
    m = (_POST_URL if method == "POST" else _GET_URL).fullmatch(path)
    if not m:
        raise invalid_argument(f"Malformed request: {method} {path}")
    name, version, label, last = m.groups()
    if version is not None:
        digits = version.lstrip("0") or "0"
        if len(digits) > 19 or int(digits) >= 2**63:
            raise invalid_argument(f"Failed to convert version: {version} to numeric.")
        version = int(digits)
    name = urllib.parse.unquote(name) if name else name
    label = urllib.parse.unquote(label) if label else label
    if method == "POST":
        return name, version, label, None, last
    if not name:
        raise invalid_argument("Missing model name in request.")
    return name, version, label, last if last == "metadata" else None, None   # other cases: status


_ENCODER = json.JSONEncoder(separators=(",", ":"))   # one encoder: json.dumps with options builds one a call


def _json_body(status: int, obj) -> tuple[int, bytes, str]:
    return status, _ENCODER.encode(obj).encode("utf-8"), "application/json"


def _error(e: ServingError) -> tuple[int, bytes, str]:
    return _json_body(e.http_status, {"error": e.message})


# Python's JSON messages -> rapidjson's, which TF Serving's errors quote
_JSON_MESSAGES = (("Expecting value", "Invalid value."), ("Extra data", "The document root must not be followed by other values."),
                  ("Expecting property name", "Missing a name for object member."),
                  ("Expecting ':' delimiter", "Missing a colon after a name of object member."),
                  ("Unterminated string", "Missing a closing quotation mark in string."),
                  ("Invalid \\escape", "Invalid escape character in string."),
                  ("Invalid \\u", "Incorrect hex digit after \\u escape in string."),
                  ("Invalid control character", "Invalid encoding in string."))


def _parse_json(raw: bytes):
    """The request body as JSON, or TF Serving's "JSON Parse error: ..." messages."""
    if not raw:
        raise invalid_argument("JSON Parse error: The document is empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise invalid_argument(f"JSON Parse error: Invalid encoding in string. at offset: {e.start}") from None
    if not text.strip():
        raise invalid_argument(f"JSON Parse error: The document is empty. at offset: {len(text)}")
    try:
        return json.loads(text)
    except RecursionError:
        raise invalid_argument("JSON nested too deeply") from None
    except json.JSONDecodeError as e:
        message = e.msg
        if message.startswith("Expecting ',' delimiter"):
            before = text[:e.pos].rstrip()
            inside = "array" if before.count("[") - before.count("]") > before.count("{") - before.count("}") else "object"
            message = ("Missing a comma or ']' after an array element." if inside == "array"
                       else "Missing a comma or '}' after an object member.")
        else:
            message = next((ours for theirs, ours in _JSON_MESSAGES if message.startswith(theirs)), message)
        raise invalid_argument(f"JSON Parse error: {message} at offset: {e.pos}") from None
    except ValueError:   # an integer literal of more digits than Python converts
        raise invalid_argument("JSON Parse error: Number too big to be stored in double.") from None


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
        name, version, label, metadata, _ = _parse_path("GET", target)
        _one_version_choice(version, label)
        if metadata:
            with self.core.request(name, "GetModelMetadata", "REST"):
                body = protos.metadata_json(name, self.core.metadata(name, version, label))
        else:
            with self.core.request(name, "GetModelStatus", "REST"):
                body = protos.status_json(protos.status_response(name, self.core.status(name, version, label)))
        return _json_body(200, body)

    async def _post(self, target: str, raw: bytes, deadline: float):
        name, version, label, _, verb = _parse_path("POST", target)
        _one_version_choice(version, label)
        if verb == "predict":
            return await self._predict(name, version, label, raw, deadline)
        if verb in ("classify", "regress"):
            return await self._classify_or_regress(verb, name, version, label, raw, deadline)
        raise invalid_argument(f"Malformed request: POST {urllib.parse.urlsplit(target).path}")

    async def _predict(self, name, version, label, raw: bytes, deadline: float):
        body = _parse_json(raw)
        with self.core.request(name, "predict", "REST"):
            servable = self.core.manager.servable(name, version, label)
            signature = _requested_signature(body)
            if (signature or "serving_default") not in servable.signature_defs:
                raise invalid_argument(f'Serving signature name: "{signature or "serving_default"}" '
                                       "not found in signature def")
            infos = servable.signature_defs[signature or "serving_default"].inputs
            dtypes = {a: _dtype_name(info.dtype) for a, info in infos.items()}
            signature_name, inputs, rows = tensor_json.parse_predict_body(body, list(infos), dtypes)
            self.core.check_batch(inputs)
            outputs = await self.core.predict_async(servable, signature_name, inputs, (), deadline)
            response = tensor_json.predict_response(outputs, rows)
        return _json_body(200, response)

    async def _classify_or_regress(self, verb: str, name, version, label, raw: bytes, deadline: float):
        body = _parse_json(raw)
        with self.core.request(name, verb, "REST"):
            signature_name, examples = tensor_json.parse_examples_body(body, verb)
            servable = self.core.manager.servable(name, version, label)
            if verb == "classify":
                result = await self.core.infer_async(len(examples), servable.classify, signature_name, examples,
                                                     deadline=deadline)
                return _json_body(200, tensor_json.classify_response(result))
            result = await self.core.infer_async(len(examples), servable.regress, signature_name, examples,
                                                 deadline=deadline)
            return _json_body(200, tensor_json.regress_response(result))


def _one_version_choice(version, label) -> None:
    if version is not None and label is not None:   # the route allows one; kept as TF Serving words it
        raise invalid_argument(f"Both model version ({version}) and model version label ({label}) "
                               "cannot be supplied.")


def _dtype_name(enum_value: int) -> str:
    """TF's DataTypeString: DT_FLOAT -> "float", DT_INT64 -> "int64"."""
    return types_pb2.DataType.Name(enum_value)[3:].lower()


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
