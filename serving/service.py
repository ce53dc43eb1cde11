"""What both front ends (gRPC, REST) do for a request, in one place.

Model resolution, limits (batch size, concurrency), metrics, error mapping and where a model
call runs live here; the front ends only translate wire formats.

Where a model call runs (`predict_async`, from the server's asyncio loop): a call of at most
`inline_max_rows` rows runs on the loop itself, a bigger one in a model thread. Handing a
call to a thread and back costs CPU (thread wake-ups and GIL hand-offs) of the order of the
top-10 call itself; a big call on the loop would hold up every other request, so it goes
to a thread, where the graph runs outside the GIL.

Fair admission: at most `Limits.max_concurrent_requests` requests hold a slot at once, and
at most `Limits.max_requests_per_connection` of them from one connection (the front ends
name the connection in `CONNECTION`), so one client cannot take every slot. A request
whose client goes away (a gRPC cancel or RST_STREAM, a closed REST connection) is a
cancelled task: its slot is released at once and a model call still queued for a model
thread is dropped (asyncio cancels the executor's future).

Answer size: `Limits.max_response_values` bounds rows x k before the model runs (when the
request has a `k` input) and every output's values before the answer is encoded.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
import time
from contextlib import contextmanager

import grpc
import numpy as np

from movierec.serving.batching import LoopBatcher, run_group
from movierec.serving.errors import ServingError, invalid_argument
from movierec.serving.manager import ModelManager
from movierec.serving.metrics import Metrics
from movierec.serving.options import BatchingOptions, Limits

# The connection a request came on (the peer address, as each front end names it): the
# unit of `Limits.max_requests_per_connection`. Set by the front end in the request's task.
CONNECTION: contextvars.ContextVar = contextvars.ContextVar("connection", default=None)


class PredictionCore:
    def __init__(self, manager: ModelManager, limits: Limits = Limits(), metrics: Metrics | None = None,
                 executor: concurrent.futures.Executor | None = None, inline_max_rows: int = 64,
                 batching: BatchingOptions | None = None):
        """executor, inline_max_rows and batching: how `predict_async` runs calls (module doc;
        no executor: every call inline)."""
        self.manager = manager
        self.limits = limits
        self.metrics = metrics or Metrics()
        self.executor = executor
        self.inline_max_rows = inline_max_rows
        self.loop_batcher = (LoopBatcher(self._run_group, batching.max_batch_rows, batching.timeout_micros)
                             if batching is not None else None)
        self._slots = threading.BoundedSemaphore(limits.max_concurrent_requests)
        self._per_connection: dict = {}     # connection -> slots it holds (on the serving loop)
        self._per_connection_lock = threading.Lock()

    @contextmanager
    def request(self, model: str, api: str, entrypoint: str):
        """Admission control (module doc) + metrics around one request."""
        connection = CONNECTION.get()
        with self._per_connection_lock:
            held = self._per_connection.get(connection, 0)
            if connection is not None and held >= self.limits.max_requests_per_connection:
                refused = (f"Server busy: more than {self.limits.max_requests_per_connection} concurrent "
                           "requests on one connection (max_requests_per_connection)")
            elif not self._slots.acquire(blocking=False):
                refused = (f"Server busy: more than {self.limits.max_concurrent_requests} "
                           "concurrent requests (max_concurrent_requests)")
            else:
                refused = None
                if connection is not None:
                    self._per_connection[connection] = held + 1
        if refused is not None:
            self.metrics.observe(model, api, entrypoint, "RESOURCE_EXHAUSTED", 0.0)
            raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED, refused)
        started = time.perf_counter()
        status = "OK"
        try:
            yield
        except ServingError as e:
            status = e.code.name
            raise
        except asyncio.CancelledError:   # the client went away (a gRPC cancel or reset)
            status = "CANCELLED"
            raise
        except Exception:
            status = "INTERNAL"
            raise
        finally:
            if connection is not None:
                with self._per_connection_lock:
                    left = self._per_connection.pop(connection) - 1
                    if left:
                        self._per_connection[connection] = left
            self._slots.release()
            self.metrics.observe(model, api, entrypoint, status, time.perf_counter() - started)

    def render_metrics(self) -> str:
        """Prometheus text: this server's counts (every worker's, in a worker pool)."""
        return self.metrics.render()

    def check_batch(self, inputs: dict) -> None:
        for alias, value in inputs.items():
            shape = np.shape(value)
            if shape and shape[0] > self.limits.max_batch_size:
                raise invalid_argument(f"input '{alias}' has batch size {shape[0]}, more than the "
                                       f"maximum {self.limits.max_batch_size}")
        k = inputs.get("k")
        if k is not None:   # a top-k signature: rows x k values come back
            try:
                most_k = int(np.max(k)) if np.size(k) else 0
            except (TypeError, ValueError):
                return      # not numbers: the model call reports it
            wanted = max(_rows(inputs), 1) * most_k
            if wanted > self.limits.max_response_values:
                raise _too_many_values(f"{max(_rows(inputs), 1)} rows x k={most_k}", wanted,
                                       self.limits.max_response_values)

    def check_response(self, outputs: dict) -> None:
        """Refuses an answer with an output of more than `Limits.max_response_values`
        values (rows x k for a top-k model's outputs) before it is encoded."""
        for alias, value in outputs.items():
            values = int(np.size(value))
            if values > self.limits.max_response_values:
                raise _too_many_values(f"output '{alias}'", values, self.limits.max_response_values)

    async def predict_async(self, servable, signature_name: str, inputs: dict, output_filter=(),
                            deadline: float | None = None) -> dict:
        """Predict on an already resolved servable: inline, batched or on a model thread.

        deadline: `time.monotonic()` by which the model must start; past it the request ends
        with DEADLINE_EXCEEDED (HTTP 504) instead of using the model for an answer nobody
        waits for. A model call that has started is not interrupted (nor is it in TF Serving).
        """
        _check_deadline(deadline)
        if self.loop_batcher is not None:
            outputs = await self.loop_batcher.submit(servable, signature_name, inputs, output_filter)
        else:
            outputs = await self._call(_rows(inputs), servable.predict, signature_name, inputs, output_filter)
        self.check_response(outputs)
        return outputs

    async def infer_async(self, rows: int, fn, *args, deadline: float | None = None):
        """A Classify, Regress or MultiInference call (`fn(*args)`, a Servable method) on
        `rows` examples: limits and deadline as for Predict, inline or on a model thread."""
        if rows > self.limits.max_batch_size:
            raise invalid_argument(f"{rows} examples, more than the maximum batch size "
                                   f"{self.limits.max_batch_size}")
        _check_deadline(deadline)
        return await self._call(rows, fn, *args)

    async def _run_group(self, servable, signature_name, output_filter, group, rows: int) -> None:
        await self._call(rows, run_group, servable, signature_name, output_filter, group)

    async def _call(self, rows: int, fn, *args):
        """fn(*args) on the loop when `rows` is small enough, else on a model thread."""
        if self.executor is None or rows <= self.inline_max_rows:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def metadata(self, name: str, version: int | None, label: str | None):
        return self.manager.servable(name, version, label)

    def status(self, name: str, version: int | None, label: str | None):
        return self.manager.version_entries(name, version, label)


def _too_many_values(what: str, values: int, limit: int) -> ServingError:
    return invalid_argument(f"Response too large: {what} is {values} values, more than the limit "
                            f"{limit} (max_response_values); ask for fewer rows or a smaller k")


def _check_deadline(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED,
                           "Deadline exceeded before the model ran (request timeout)")


def _rows(inputs: dict) -> int:
    """The largest first dimension among the inputs (0 for scalars only)."""
    rows = 0
    for v in inputs.values():
        shape = v.shape if type(v) is np.ndarray else np.shape(v)
        if shape and shape[0] > rows:
            rows = shape[0]
    return rows
