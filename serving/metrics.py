"""Prometheus metrics in TF Serving's names, through prometheus_client:

  :tensorflow:serving:request_count{model_name, status}                    requests answered
  :tensorflow:serving:request_latency{model_name, API, entrypoint}         histogram (us)

One server process keeps its counts in its own registry. Worker processes
(`movierec serve --workers N`) use prometheus_client's multiprocess mode: the pool sets
PROMETHEUS_MULTIPROC_DIR for each worker before prometheus_client is imported there, every
worker's values live in files of that folder, and a scrape of any worker sums them all
(`multiprocess.MultiProcessCollector`), those of workers that died included, so counts
never go back.

Names as TF Serving exposes them: prometheus_client writes a counter as `<name>_total`
with a `<name>_created` sample; the exposition here keeps TF Serving's sample name
`:tensorflow:serving:request_count` (typed `untyped`, since the text format's `counter`
type would announce the `_total` name) and leaves out the `_created` samples.
"""
from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import Metric

REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
# microsecond buckets, 10 us .. ~10 s
BUCKETS_US = [float(round(10 * 1.8 ** i)) for i in range(24)]
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def multiprocess_dir() -> str | None:
    """The shared folder of multiprocess mode, if this process is a worker of a pool."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


class _TfServingNames:
    """A collector that re-exposes `source`'s families in TF Serving's names (module doc)."""

    def __init__(self, source):
        self.source = source

    def collect(self):
        for family in self.source.collect():
            if family.name == REQUEST_COUNT:
                renamed = Metric(REQUEST_COUNT, family.documentation, "unknown")
                for s in family.samples:
                    if s.name == REQUEST_COUNT + "_total":
                        renamed.add_sample(REQUEST_COUNT, s.labels, s.value)
                yield renamed
            else:
                family.samples = [s for s in family.samples if not s.name.endswith("_created")]
                yield family


class Metrics:
    def __init__(self):
        registry = CollectorRegistry()   # one per server, so that several servers share no counts
        self._count = Counter(REQUEST_COUNT, "Requests answered, by model and status code.",
                              ["model_name", "status"], registry=registry)
        self._latency = Histogram(REQUEST_LATENCY, "Request latency in microseconds.",
                                  ["model_name", "API", "entrypoint"], buckets=BUCKETS_US, registry=registry)
        folder = multiprocess_dir()
        source = multiprocess.MultiProcessCollector(None, folder) if folder else registry
        self._exposition = CollectorRegistry()
        self._exposition.register(_TfServingNames(source))

    def observe(self, model: str, api: str, entrypoint: str, status: str, seconds: float) -> None:
        self._count.labels(model, status).inc()
        self._latency.labels(model, api, entrypoint).observe(seconds * 1e6)

    def render(self) -> str:
        """Prometheus text format 0.0.4 (every worker's counts in multiprocess mode)."""
        return generate_latest(self._exposition).decode("utf-8")
