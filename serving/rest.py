"""REST front end with TF Serving's URLs, JSON and error bodies.

  GET  /v1/models/{name}[/versions/{v}|/labels/{l}]            model status
  GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata   signature defs
  POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict    row or columnar JSON
  POST /v1/models/{name}[/versions/{v}|/labels/{l}]:classify   {"examples": [...]} (tf.Examples)
  POST /v1/models/{name}[/versions/{v}|/labels/{l}]:regress    {"examples": [...]} (tf.Examples)
  GET  /monitoring/prometheus/metrics                           Prometheus text format (the path
                                                                of --monitoring_config_file)
Errors: {"error": "<message>"} with the HTTP status TF Serving maps the code to; a path that
fits no route (or the wrong method for it) is 400 "Malformed request: <METHOD> <path>".

HTTP is aiohttp's (`aiohttp.web` on the server's asyncio loop: keep-alive, pipelining,
HTTP/1.0, chunked bodies, malformed requests); this module only routes and answers.
JSON and routing run on the loop; where the model call runs is
`PredictionCore.predict_async`'s choice. A body over `Limits.max_body_bytes` is refused
with 429 before it is read, and the connection is closed.

Hostile clients, by aiohttp's settings (`start_rest_server`) and a few checks of ours:
- idle connections and requests whose headers do not complete are closed after
  `Limits.idle_timeout_seconds` (aiohttp's keepalive_timeout runs from the connection's
  start and whenever it waits for a request); request line and header sizes are aiohttp's
  max_line_size / max_field_size / max_headers (400 beyond them);
- a body not complete `Limits.read_timeout_seconds` after the headers gets 408 and the
  connection is closed after LINGERING_SECONDS (slowloris on the body);
- pipelined requests are read one message queue at a time and answered one by one, each
  answer written only after the previous one drained to the socket (aiohttp pauses
  reading while its queue is full and the handler awaits the transport's drain), so a
  client that never reads holds a bounded amount of server memory;
- a client that goes away cancels its handler (handler_cancellation), which frees its
  admission slot;
- JSON: at most `Limits.max_json_values` values, counted before parsing, and at most
  `Limits.max_batch_size` rows, checked before the values become arrays;
  numbers too big for Python's int conversion, nesting past the recursion limit and
  malformed text are 400 with TF Serving's "JSON Parse error" messages, never 500;
  unknown keys are never echoed back in full (messages quote at most 256 characters).
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import time
import urllib.parse

import grpc
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from tensorflow.core.framework import types_pb2

from movierec.serving import metrics, protos, tensor_json
from movierec.serving.errors import ServingError, invalid_argument
from movierec.serving.options import Limits
from movierec.serving.service import CONNECTION, PredictionCore

log = logging.getLogger(__name__)

SERVER_NAME = "movierec-serving"
# TF Serving's two REST routes (http_rest_api_util.cc), case-insensitive as there: POST
# for :predict/:classify/:regress, GET for status and metadata; anything else is
# "Malformed request".
_POST_URL = re.compile(r"/v1/models/([^/:]+)(?:(?:/versions/([0-9]+))|(?:/labels/([^/:]+)))?"
                       r":(classify|regress|predict)", re.IGNORECASE)
_GET_URL = re.compile(r"/v1/models(?:/([^/:]+))?(?:(?:/versions/([0-9]+))|(?:/labels/([^/:]+)))?"
                      r"(?:/(metadata))?", re.IGNORECASE)


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


def _parse_json(raw: bytes, limits: Limits = Limits()):
    """The request body as JSON, or TF Serving's "JSON Parse error: ..." messages (and one
    of ours for more values than `limits.max_json_values`)."""
    if not raw:
        raise invalid_argument("JSON Parse error: The document is empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise invalid_argument(f"JSON Parse error: Invalid encoding in string. at offset: {e.start}") from None
    # an upper bound, found without parsing at C speed; separators inside strings count too:
    # telling them apart costs a pass per string, which a body of a million keys makes seconds
    values = raw.count(b",") + raw.count(b":")
    if values > limits.max_json_values:
        raise invalid_argument(f"JSON Parse error: up to {values} values, more than the limit "
                               f"{limits.max_json_values} (max_json_values)")
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


def _check_json_rows(body, max_rows: int) -> None:
    """Refuses a :predict body with more rows than `max_rows` ("instances", or the first
    dimension of a columnar input) before its values are turned into arrays."""
    if not isinstance(body, dict):
        return
    if "instances" in body:
        tensors = {"instances": body["instances"]}
    else:
        inputs = body.get("inputs")
        tensors = inputs if isinstance(inputs, dict) else {"inputs": inputs}
    for alias, value in tensors.items():
        if isinstance(value, list) and len(value) > max_rows:
            raise invalid_argument(f"input '{str(alias)[:64]}' has batch size "
                                   f"{len(value)}, more than the maximum {max_rows}")


def _requested_signature(body) -> str:
    if isinstance(body, dict) and isinstance(body.get("signature_name", ""), str):
        return body.get("signature_name", "")
    return ""


class RestApi:
    """TF Serving's REST routes: (method, target, body) -> (HTTP status, body, content type)."""

    def __init__(self, core: PredictionCore, metrics_path: str | None = None):
        self.core = core
        self.metrics_path = metrics_path

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
        if self.metrics_path is not None and urllib.parse.urlsplit(target).path == self.metrics_path:
            return 200, self.core.render_metrics().encode(), metrics.CONTENT_TYPE
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
        body = _parse_json(raw, self.core.limits)
        _check_json_rows(body, self.core.limits.max_batch_size)
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
        body = _parse_json(raw, self.core.limits)
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


class _BadRequestFilter(logging.Filter):
    """aiohttp answers a malformed request (a bad Content-Length, an oversized header line)
    with 400 and logs it as an ERROR with a traceback; it is the client's error, so it
    becomes one INFO line naming it."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError) and error.code < 500:
            record.levelno, record.levelname = logging.INFO, "INFO"
            said = record.getMessage()
            record.msg, record.args = "%s: %d %s", (said, error.code, " ".join(str(error.message).split())[:200])
            record.exc_info = record.exc_text = None
        return True


logging.getLogger("aiohttp.server").addFilter(_BadRequestFilter())


async def _respond(api: RestApi, request: web.Request) -> web.Response:
    """One HTTP request through `RestApi.handle`. A body over the limit is refused before
    it is read (and the connection closed, since its bytes are not drained)."""
    arrived = time.monotonic()
    CONNECTION.set(("REST", id(request.protocol)))   # one HTTP connection: fair admission's unit
    limits = api.core.limits
    limit = limits.max_body_bytes
    length = request.content_length
    too_big = length is not None and length > limit
    if not too_big:
        try:
            body = await asyncio.wait_for(request.read(), limits.read_timeout_seconds)
        except web.HTTPRequestEntityTooLarge:   # a chunked body that grew past client_max_size
            too_big = True
        except asyncio.TimeoutError:
            return _closing(408, f"Request body not received within {limits.read_timeout_seconds:g} s "
                                 "(read_timeout_seconds)")
        except ConnectionError:   # the client reset the connection mid-body: not a server error
            # (propagated, aiohttp would log it as one with a traceback); the answer finds no socket
            return _closing(400, "The connection was reset before the request body arrived")
    if too_big:
        size = f"of {length} bytes " if length is not None else ""
        return _closing(429, f"Request body {size}is larger than the limit {limit}")
    try:
        status, payload, content_type = await api.handle(request.method, request.raw_path, body, arrived)
    except Exception as e:  # noqa: BLE001 - the client gets a JSON 500, the log the traceback
        log.error("REST request failed", exc_info=e)
        status, payload, content_type = _json_body(500, {"error": f"Internal error: {type(e).__name__}"})
    return web.Response(status=status, body=payload, headers={"Content-Type": content_type, "Server": SERVER_NAME})


def _closing(status: int, message: str) -> web.Response:
    """An error answer after which the connection is closed (its body was not read)."""
    status, payload, content_type = _json_body(status, {"error": message})
    response = web.Response(status=status, body=payload, headers={"Content-Type": content_type,
                                                                  "Server": SERVER_NAME})
    response.force_close()
    return response


# After an answer given before the body was read (408, 429), aiohttp reads and drops what
# the client still sends for this long, so that the client sees the answer rather than a
# reset; then the connection is closed.
LINGERING_SECONDS = 2.0


class RestServer:
    """The aiohttp runner serving one listening socket."""

    def __init__(self, runner: web.AppRunner, port: int):
        self.runner = runner
        self.port = port

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_rest_server(core: PredictionCore, sock: socket.socket,
                            metrics_path: str | None = None) -> RestServer:
    """Serves TF Serving's REST API with aiohttp on a listening socket, from the running
    loop, and Prometheus metrics at metrics_path (GET; None: no metrics page). Every path
    and method reaches `RestApi.handle`, which answers TF Serving's "Malformed request" for
    paths outside its routes."""
    api = RestApi(core, metrics_path)

    async def handler(request: web.Request) -> web.Response:
        return await _respond(api, request)

    app = web.Application(client_max_size=core.limits.max_body_bytes)
    app.router.add_route("*", r"/{path:[\s\S]*}", handler)   # any path, newlines included
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0,
                           keepalive_timeout=core.limits.idle_timeout_seconds, handler_cancellation=True,
                           max_line_size=8190, max_field_size=8190, max_headers=100,
                           lingering_time=LINGERING_SECONDS)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return RestServer(runner, sock.getsockname()[1])
