"""What both front ends (gRPC, REST) do for a request, in one place.

Model resolution, limits (batch size, concurrency), metrics and error mapping live here;
the front ends only translate wire formats.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from contextlib import contextmanager

import grpc
import numpy as np

from movierec.serving.batching import Batcher
from movierec.serving.errors import ServingError, invalid_argument
from movierec.serving.manager import ModelManager
from movierec.serving.metrics import Metrics


@dataclasses.dataclass(frozen=True)
class Limits:
    max_batch_size: int = 10_000        # rows in any input's first dimension
    max_concurrent_requests: int = 64   # beyond this: RESOURCE_EXHAUSTED / HTTP 429
    max_body_bytes: int = 16 << 20      # REST body limit
    request_timeout_seconds: float = 30.0   # REST: from arrival until the model must start
                                            # (TF Serving's --rest_api_timeout_in_ms); gRPC
                                            # requests carry the client's own deadline

    def __post_init__(self):
        for f in dataclasses.fields(self):
            if getattr(self, f.name) <= 0 or (f.type == "int" and getattr(self, f.name) < 1):
                raise ValueError(f"{f.name} must be > 0, got {getattr(self, f.name)}")


class PredictionCore:
    def __init__(self, manager: ModelManager, limits: Limits = Limits(), metrics: Metrics | None = None,
                 batcher: Batcher | None = None):
        self.manager = manager
        self.batcher = batcher
        self.limits = limits
        self.metrics = metrics or Metrics()
        self._slots = threading.BoundedSemaphore(limits.max_concurrent_requests)

    @contextmanager
    def request(self, model: str, api: str, entrypoint: str):
        """Admission control + metrics around one request."""
        if not self._slots.acquire(blocking=False):
            self.metrics.observe(model, api, entrypoint, "RESOURCE_EXHAUSTED", 0.0)
            raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"Server busy: more than {self.limits.max_concurrent_requests} "
                               "concurrent requests")
        started = time.perf_counter()
        status = "OK"
        try:
            yield
        except ServingError as e:
            status = e.code.name
            raise
        except Exception:
            status = "INTERNAL"
            raise
        finally:
            self._slots.release()
            self.metrics.observe(model, api, entrypoint, status, time.perf_counter() - started)

    def check_batch(self, inputs: dict) -> None:
        for alias, value in inputs.items():
            shape = np.shape(value)
            if shape and shape[0] > self.limits.max_batch_size:
                raise invalid_argument(f"input '{alias}' has batch size {shape[0]}, more than the "
                                       f"maximum {self.limits.max_batch_size}")

    def predict(self, name: str, version: int | None, label: str | None, signature_name: str,
                inputs: dict, output_filter=(), deadline: float | None = None):
        self.check_batch(inputs)
        servable = self.manager.servable(name, version, label)
        return servable, self.predict_on(servable, signature_name, inputs, output_filter, deadline)

    def predict_on(self, servable, signature_name: str, inputs: dict, output_filter=(),
                   deadline: float | None = None) -> dict:
        """Predict on an already resolved servable (through the batcher when enabled).

        deadline: `time.monotonic()` by which the model must start; past it the request ends
        with DEADLINE_EXCEEDED (HTTP 504) instead of using the model for an answer nobody
        waits for. A model call that has started is not interrupted (nor is it in TF Serving).
        """
        if deadline is not None and time.monotonic() > deadline:
            raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED,
                               "Deadline exceeded before the model ran (request timeout)")
        if self.batcher is not None:
            return self.batcher.predict(servable, signature_name, inputs, output_filter)
        return servable.predict(signature_name, inputs, output_filter)

    def metadata(self, name: str, version: int | None, label: str | None):
        return self.manager.servable(name, version, label)

    def status(self, name: str, version: int | None, label: str | None):
        return self.manager.version_entries(name, version, label)
