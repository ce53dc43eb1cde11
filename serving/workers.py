"""`movierec serve --workers N`: N server processes on the same two ports.

One Python process runs a request's front-end work (parsing, JSON or protos, routing) on
one core, because of the GIL. `--workers N` starts N worker processes, each a whole
`ModelServer` with its own models and serving loop, each binding the gRPC and REST ports
itself with SO_REUSEPORT (grpcio's `grpc.so_reuseport`, a reuse-port socket for aiohttp);
the kernel hashes each new connection to one of the workers. The supervisor first
reserves both ports (a socket bound with SO_REUSEPORT that never listens, so it takes no
connections): a port in use fails before any worker starts, port 0 becomes a fixed port
for every worker, and the port stays the pool's while a worker restarts. The supervisor
loads no model and imports no TensorFlow; it starts the workers, waits until each one
serves, restarts a worker that dies (after a second, with its exit code in the log), and
stops them all on SIGTERM / Ctrl-C.

What is per worker: each loads and polls the model versions itself, so during a version
swap one connection may see the new version a poll interval before another. Prometheus
counts are shared through prometheus_client's multiprocess mode (a folder of the pool's,
PROMETHEUS_MULTIPROC_DIR in each worker): a scrape of any worker sums them all
(`serving.metrics`).
"""
from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import os
import queue
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time

from movierec.serving.model_config import ModelSpec
from movierec.serving.options import ServerOptions

log = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 600.0   # loading and warming up every model of a worker
RESTART_DELAY_SECONDS = 1.0


def reserve_port(host: str, port: int, what: str) -> socket.socket:
    """A socket bound to (host, port) with SO_REUSEPORT that never listens: it holds the
    port for the workers (which bind it with SO_REUSEPORT too) and takes no connections.
    An OSError names `what` and the address if the port cannot be had."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as e:
        raise OSError(e.errno, f"could not bind {what} to {host}:{port}: {e.strerror or e}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        reason = os.strerror(e.errno) if e.errno else str(e)
        raise OSError(e.errno, f"could not bind {what} to {host}:{port}: {reason}") from None
    return sock


def _worker_main(specs, options, index, metrics_dir, ready) -> None:
    """A worker process: one ModelServer until SIGTERM (Ctrl-C is the supervisor's to act on).

    Stopping is by signal, not by a shared multiprocessing.Event: Event.set() waits for
    every waiter to wake, and hangs for good on a worker that was killed while waiting."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s %(levelname)s worker-{index} %(name)s: %(message)s")
    # prometheus_client picks its multiprocess mode when first imported
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before the worker set PROMETHEUS_MULTIPROC_DIR: "
                           "its counts would not be shared")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    from movierec.serving.server import ModelServer  # noqa: PLC0415 - TensorFlow in the worker only

    server = ModelServer(specs, options, reuse_port=True)
    try:
        server.start()
    except BaseException as e:
        ready.put((index, f"{type(e).__name__}: {e}"))
        raise
    ready.put((index, None))
    stop.wait()
    server.stop()


class WorkerPool:
    """Starts, watches and stops the worker processes (see the module doc)."""

    def __init__(self, specs: list[ModelSpec], options: ServerOptions):
        if options.workers < 2:
            raise ValueError(f"a worker pool needs workers >= 2, got {options.workers}")
        grpc_sock = reserve_port(options.host, options.grpc_port, "gRPC")
        try:
            rest_sock = reserve_port(options.host, options.rest_port, "REST")
        except OSError:
            grpc_sock.close()
            raise
        self.sockets = grpc_sock, rest_sock
        # port 0 (tests): the ports the sockets got
        self.options = dataclasses.replace(options, grpc_port=grpc_sock.getsockname()[1],
                                           rest_port=rest_sock.getsockname()[1])
        self.specs = specs
        self._ctx = multiprocessing.get_context("spawn")   # never fork a process with TF threads
        self._ready = self._ctx.Queue()
        self._metrics_dir = tempfile.mkdtemp(prefix="movierec-metrics-")
        self.processes: dict[int, multiprocessing.Process] = {}
        self.restarts = 0

    @property
    def grpc_port(self) -> int:
        return self.options.grpc_port

    @property
    def rest_port(self) -> int:
        return self.options.rest_port

    def _spawn(self, index: int) -> None:
        p = self._ctx.Process(target=_worker_main, name=f"movierec-worker-{index}", daemon=False,
                              args=(self.specs, self.options, index, self._metrics_dir, self._ready))
        p.start()
        self.processes[index] = p

    def _await_ready(self, indexes: set[int]) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        waiting = set(indexes)
        while waiting:
            try:
                index, error = self._ready.get(timeout=min(1.0, max(deadline - time.monotonic(), 0.01)))
            except queue.Empty:
                dead = [i for i in waiting if not self.processes[i].is_alive()]
                if dead:
                    raise RuntimeError(f"worker {dead[0]} exited with code {self.processes[dead[0]].exitcode} "
                                       "before serving (see its log above)") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"workers {sorted(waiting)} did not start within "
                                       f"{START_TIMEOUT_SECONDS:.0f} s") from None
                continue
            if error is not None:
                raise RuntimeError(f"worker {index} could not start: {error}")
            waiting.discard(index)

    def start(self) -> "WorkerPool":
        try:
            for i in range(self.options.workers):
                self._spawn(i)
            self._await_ready(set(range(self.options.workers)))
        except BaseException:
            self.stop()
            raise
        return self

    def supervise(self, stop_requested) -> None:
        """Until stop_requested() is true: restart workers that exit."""
        while not stop_requested():
            sentinels = {p.sentinel: i for i, p in self.processes.items()}
            ended = multiprocessing.connection.wait(list(sentinels), timeout=0.5)
            for sentinel in ended:
                if stop_requested():
                    return
                index = sentinels[sentinel]
                self.processes[index].join(timeout=5)
                log.error("worker %d (pid %d) exited with code %s; restarting it", index,
                          self.processes[index].pid, self.processes[index].exitcode)
                time.sleep(RESTART_DELAY_SECONDS)
                self._spawn(index)
                self.restarts += 1
                try:
                    self._await_ready({index})
                except RuntimeError as e:
                    log.error("%s", e)

    def stop(self) -> None:
        for p in self.processes.values():
            if p.is_alive():
                p.terminate()   # SIGTERM: the worker stops its server and exits
        for p in self.processes.values():
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join()
        for sock in self.sockets:
            sock.close()
        shutil.rmtree(self._metrics_dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
