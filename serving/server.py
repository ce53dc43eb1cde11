"""`movierec serve`: TF Serving's gRPC and REST APIs over the model manager.

    ModelServer(specs).start()  ->  gRPC on grpc_port (8500), REST on rest_port (8501)

Bound to 127.0.0.1 unless a host is given. Port 0 picks a free port (tests).

Threads: both front ends (grpcio's `grpc.aio` server and an `aiohttp.web` app) run on one
asyncio loop in its own thread ("serving-loop"), so the Python work of a request (parsing,
JSON or protos, routing, metrics) is done in one place and never waits for the GIL behind
other request threads. Small model calls run on the loop too, big ones in a pool of
`model_threads` threads where the graph runs outside the GIL
(`PredictionCore.predict_async`). Version loading and polling have their own thread (the
manager).

Several server processes on the same ports (`serving.workers`) each bind both ports with
SO_REUSEPORT (`reuse_port=True`); the kernel spreads new connections over them.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import logging
import os
import socket
import threading
import time

from movierec import filesystems
from movierec.serving.grpc_service import start_grpc_server
from movierec.serving.manager import ModelManager
from movierec.serving.model_config import ModelSpec
from movierec.serving.options import BatchingOptions, ServerOptions
from movierec.serving.rest import start_rest_server
from movierec.serving.service import PredictionCore

log = logging.getLogger(__name__)

BACKLOG = 128


def listen_socket(host: str, port: int, what: str, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket on (host, port), IPv4 or IPv6; an OSError naming `what` and
    the address if it cannot be had (a port in use, say)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
        sock = socket.create_server((host, port), family=family, backlog=BACKLOG, reuse_port=reuse_port)
    except OSError as e:
        reason = os.strerror(e.errno) if e.errno else str(e)
        raise OSError(e.errno, f"could not bind {what} to {host}:{port}: {reason}") from None
    sock.setblocking(False)
    return sock


def _read_text(path: str) -> str | None:
    try:
        return filesystems.read_text(path)
    except OSError as e:
        log.error("model config %s cannot be read: %s", path, e)
        return None


_accept_warned = [float("-inf")]


def _loop_exception(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """The serving loop's exception handler: running out of file descriptors (or socket
    buffers) when accepting is an expected state under load or attack, not a bug: asyncio
    stops accepting for a second and tries again; that is logged as one warning line, not
    a traceback. Everything else goes to asyncio's default handler."""
    if context.get("message", "").startswith("socket.accept() out of system resource"):
        now = time.monotonic()
        if now - _accept_warned[0] < 1.0:   # asyncio retries each second: one line a second at most
            return
        _accept_warned[0] = now
        log.warning("cannot accept connections for now: %s (open connections hit the open-files limit; "
                    "idle ones close after idle_timeout_seconds)", context.get("exception"))
        return
    loop.default_exception_handler(context)


class ModelServer:
    """One server process. reuse_port: bind both ports with SO_REUSEPORT, alongside the
    other workers of a `serving.workers.WorkerPool`."""

    def __init__(self, specs: list[ModelSpec], options: ServerOptions = ServerOptions(), *,
                 reuse_port: bool = False):
        self.options = options
        self.reuse_port = reuse_port
        self.manager = ModelManager(specs, poll_seconds=options.poll_seconds, run_warmup=options.warmup)
        self._executor = concurrent.futures.ThreadPoolExecutor(options.model_threads, thread_name_prefix="model")
        batching = (BatchingOptions(options.max_batch_rows, options.batch_timeout_micros)
                    if options.enable_batching else None)
        self.core = PredictionCore(self.manager, options.limits, executor=self._executor,
                                   inline_max_rows=options.inline_max_rows, batching=batching)
        self._grpc = self._rest = None
        self._loop = self._thread = None
        self._config_stop = threading.Event()
        self._config_thread = None
        self.grpc_port = self.rest_port = None

    def start(self) -> "ModelServer":
        try:
            self.manager.start()
            self._loop = asyncio.new_event_loop()
            self._loop.set_exception_handler(_loop_exception)
            self._thread = threading.Thread(target=self._loop.run_forever, name="serving-loop", daemon=True)
            self._thread.start()
            asyncio.run_coroutine_threadsafe(self._start_front_ends(), self._loop).result()
        except BaseException:   # nothing half-started is left behind: sockets, loop, threads
            self.stop()
            raise
        # Everything alive now (TensorFlow's modules, the loaded graphs: hundreds of
        # thousands of objects) moves
        # out of the garbage collector's reach: a full collection over it is a pause every
        # request in flight would wait out.
        gc.freeze()
        if self.options.model_config_file and self.options.model_config_poll_seconds > 0:
            self._config_thread = threading.Thread(target=self._poll_model_config, name="model-config-poller",
                                                   daemon=True)
            self._config_thread.start()
        log.info("serving %s: gRPC %s:%d, REST %s:%d", self.manager.model_names(),
                 self.options.host, self.grpc_port, self.options.host, self.rest_port)
        return self

    def _poll_model_config(self) -> None:
        """--model_config_file_poll_wait_seconds: re-reads the model config file and serves
        its model list when its text changed; a file that does not parse is logged and the
        models being served go on."""
        from movierec.serving.model_config import load_model_config  # noqa: PLC0415

        path = self.options.model_config_file
        last = _read_text(path)
        while not self._config_stop.wait(self.options.model_config_poll_seconds):
            text = _read_text(path)
            if text is None or text == last:
                continue
            last = text
            try:
                self.manager.reload(load_model_config(path))
                log.info("model config %s reloaded: serving %s", path, self.manager.model_names())
            except (ValueError, OSError) as e:
                log.error("model config %s not reloaded: %s", path, e)

    async def _start_front_ends(self) -> None:
        host = self.options.host
        self._grpc, self.grpc_port = await start_grpc_server(self.core, host, self.options.grpc_port,
                                                             self.reuse_port)
        rest_sock = listen_socket(host, self.options.rest_port, "REST", self.reuse_port)
        try:
            self._rest = await start_rest_server(self.core, rest_sock, self.options.metrics_path)
        except BaseException:
            rest_sock.close()
            raise
        self.rest_port = self._rest.port

    async def _stop_front_ends(self) -> None:
        if self._rest is not None:
            await self._rest.close()
        if self._grpc is not None:
            await self._grpc.stop(grace=2)

    def stop(self) -> None:
        self._config_stop.set()
        if self._config_thread is not None:
            self._config_thread.join(timeout=30)
        if self._loop is not None:
            if self._thread.is_alive():
                asyncio.run_coroutine_threadsafe(self._stop_front_ends(), self._loop).result(timeout=30)
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(timeout=30)
            self._loop.close()
            self._loop = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self.manager.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
