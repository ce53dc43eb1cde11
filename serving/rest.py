"""REST front end with TF Serving's URLs, JSON and error bodies.

  GET  /v1/models/{name}[/versions/{v}|/labels/{l}]            model status
  GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata   signature defs
  POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict    row or columnar JSON
  GET  /monitoring/prometheus/metrics                           Prometheus text format
Errors: {"error": "<message>"} with the HTTP status TF Serving maps the code to.
"""
from __future__ import annotations

import http.server
import json
import logging
import re
import socketserver
import threading
import time
import urllib.parse

import grpc

from movierec.serving import protos, tensor_json
from movierec.serving.errors import ServingError, invalid_argument, not_found
from movierec.serving.service import PredictionCore

log = logging.getLogger(__name__)

METRICS_PATH = "/monitoring/prometheus/metrics"
_MODEL_URL = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?:/(?P<metadata>metadata)|:(?P<verb>[A-Za-z]+))?$")


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


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "movierec-serving"
    protocol_version = "HTTP/1.1"
    wbufsize = 1 << 16  # headers and body leave in one write (flushed after each request)
    disable_nagle_algorithm = True
    core: PredictionCore  # set on the subclass made by start_rest_server

    def log_message(self, fmt, *args):  # route access logs to logging, not stderr
        log.debug("%s %s", self.address_string(), fmt % args)

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, obj) -> None:
        self._send(status, json.dumps(obj, separators=(",", ":")).encode("utf-8"))

    def _error(self, e: ServingError) -> None:
        self._send_json(e.http_status, {"error": e.message})

    def do_GET(self):
        if urllib.parse.urlsplit(self.path).path == METRICS_PATH:
            self._send(200, self.core.metrics.render().encode(), "text/plain; version=0.0.4")
            return
        try:
            name, version, label, metadata, verb = _parse_path("GET", self.path)
            if verb is not None:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"Use POST for :{verb}")
            if metadata:
                with self.core.request(name, "GetModelMetadata", "REST"):
                    servable = self.core.metadata(name, version, label)
                    body = protos.metadata_json(name, servable)
            else:
                with self.core.request(name, "GetModelStatus", "REST"):
                    body = protos.status_json(protos.status_response(name, self.core.status(name, version, label)))
            self._send_json(200, body)
        except ServingError as e:
            self._error(e)

    def do_POST(self):
        deadline = time.monotonic() + self.core.limits.request_timeout_seconds
        try:
            name, version, label, metadata, verb = _parse_path("POST", self.path)
            if metadata or verb is None:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Use GET for status and metadata")
            if verb in ("classify", "regress"):
                raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                                   f":{verb} is not implemented by movierec serve; use :predict")
            if verb != "predict":
                raise not_found(f"Malformed request: unknown method :{verb}")
            body = self._read_json()
            with self.core.request(name, "predict", "REST"):
                servable = self.core.manager.servable(name, version, label)
                signature = _requested_signature(body)
                if (signature or "serving_default") not in servable.signature_defs:
                    raise invalid_argument(f'Serving signature name: "{signature}" not found in signature def')
                aliases = list(servable.signature_defs[signature or "serving_default"].inputs)
                signature_name, inputs, rows = tensor_json.parse_predict_body(body, aliases)
                self.core.check_batch(inputs)
                outputs = self.core.predict_on(servable, signature_name, inputs, deadline=deadline)
                response = tensor_json.predict_response(outputs, rows)
            self._send_json(200, response)
        except ServingError as e:
            self._error(e)

    def _read_json(self):
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Content-Length header is required")
        length = int(length)
        if length > self.core.limits.max_body_bytes:
            self.close_connection = True
            raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"Request body of {length} bytes is larger than the limit "
                               f"{self.core.limits.max_body_bytes}")
        raw = self.rfile.read(length)
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


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def start_rest_server(core: PredictionCore, host: str, port: int) -> tuple[_Server, int]:
    handler = type("Handler", (_Handler,), {"core": core})
    server = _Server((host, port), handler)
    thread = threading.Thread(target=server.serve_forever, name="rest-server", daemon=True)
    thread.start()
    return server, server.server_address[1]
