"""Server settings: plain frozen dataclasses, validated when made (no TensorFlow import,
so that `movierec serve --workers N`'s supervisor stays small)."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Limits:
    max_batch_size: int = 10_000        # rows in any input's first dimension
    max_concurrent_requests: int = 64   # beyond this: RESOURCE_EXHAUSTED / HTTP 429
    max_body_bytes: int = 16 << 20      # REST body limit
    request_timeout_seconds: float = 30.0   # REST: from arrival until the model must start
                                            # (TF Serving's --rest_api_timeout_in_ms); gRPC
                                            # requests carry the client's own deadline
    # One connection (a gRPC channel, a REST keep-alive connection) may hold at most this
    # many of the max_concurrent_requests slots, so that one client (an HTTP/2 rapid reset,
    # say) cannot take them all: RESOURCE_EXHAUSTED / HTTP 429 beyond it.
    max_requests_per_connection: int = 32
    # Most values in one output of an answer (rows x k for a top-k model): a bigger answer
    # is refused with INVALID_ARGUMENT / HTTP 400 before it is encoded (and, when the
    # request has a `k` input, before the model runs), since encoding it would hold the
    # serving loop.
    max_response_values: int = 200_000
    # Most JSON values in a REST body, counted before parsing as its ',' and ':' bytes (an
    # upper bound on array elements after the first and on object members): parsing
    # millions of values (keys, small arrays) holds the serving loop for seconds, and
    # 1,000,000 is 0.1-0.7 s of json.loads on one core. A top-k request of 10,000 users with
    # 100 exclusions each is about 1,000,000.
    max_json_values: int = 1_000_000
    # Idle connections are closed after this long: REST keep-alive and a request's headers
    # not yet complete (aiohttp's keepalive_timeout), gRPC connections without calls
    # (grpc.max_connection_idle_ms).
    idle_timeout_seconds: float = 60.0
    # A REST body not read completely this long after its headers gets 408; a gRPC
    # connection must finish its HTTP/2 handshake in this time (grpc.server_handshake_timeout_ms).
    read_timeout_seconds: float = 10.0

    def __post_init__(self):
        for f in dataclasses.fields(self):
            if getattr(self, f.name) <= 0 or (f.type == "int" and getattr(self, f.name) < 1):
                raise ValueError(f"{f.name} must be > 0, got {getattr(self, f.name)}")


@dataclasses.dataclass(frozen=True)
class BatchingOptions:
    max_batch_rows: int = 256
    timeout_micros: int = 0     # 0: merge the requests read in the same pass of the loop

    def __post_init__(self):
        if self.max_batch_rows < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_rows}")
        if self.timeout_micros < 0:
            raise ValueError(f"batch_timeout_micros must be >= 0, got {self.timeout_micros}")


@dataclasses.dataclass(frozen=True)
class ServerOptions:
    host: str = "127.0.0.1"
    grpc_port: int = 8500
    rest_port: int = 8501
    poll_seconds: float = 1.0
    warmup: bool = True
    model_threads: int = 2          # threads for model calls too big to run on the loop
    inline_max_rows: int = 64       # calls of at most this many rows run on the loop
    limits: Limits = Limits()
    enable_batching: bool = False
    batch_timeout_micros: int = 0   # 0: merge the requests read in the same pass of the loop
    max_batch_rows: int = 256
    workers: int = 1                # server processes on the same ports (serving/workers.py)
    metrics_path: str | None = "/monitoring/prometheus/metrics"   # None: no metrics endpoint
    model_config_file: str | None = None    # re-read every model_config_poll_seconds (0: never)
    model_config_poll_seconds: float = 0.0

    def __post_init__(self):
        for name in ("model_threads", "workers", "max_batch_rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("inline_max_rows", "batch_timeout_micros", "poll_seconds", "model_config_poll_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
