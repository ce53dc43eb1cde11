"""Prometheus metrics in TF Serving's names, served at /monitoring/prometheus/metrics.

  :tensorflow:serving:request_count{model_name, status}                    counter
  :tensorflow:serving:request_latency{model_name, API, entrypoint}         histogram (us)

With several server processes (`movierec serve --workers N`) each worker publishes its
counts to a shared folder (`publish`, about once a second and at every scrape) and a
scrape of any worker renders the sum over all of them (`render(others=...)`).
"""
from __future__ import annotations

import bisect
import json
import os
import threading
from collections import defaultdict

# microsecond buckets, 10 us .. ~10 s
BUCKETS_US = [10 * 1.8 ** i for i in range(24)]


class Metrics:
    def __init__(self):
        self._lock = threading.Lock()
        self._counts: dict[tuple, int] = defaultdict(int)
        self._hist: dict[tuple, list[int]] = {}
        self._sums: dict[tuple, float] = defaultdict(float)

    def observe(self, model: str, api: str, entrypoint: str, status: str, seconds: float) -> None:
        us = seconds * 1e6
        key = (model, api, entrypoint)
        with self._lock:
            self._counts[(model, status)] += 1
            buckets = self._hist.setdefault(key, [0] * (len(BUCKETS_US) + 1))
            buckets[bisect.bisect_left(BUCKETS_US, us)] += 1
            self._sums[key] += us

    def snapshot(self) -> dict:
        """The counts as JSON-able lists (for other workers to add up)."""
        with self._lock:
            return {"counts": [[*k, n] for k, n in self._counts.items()],
                    "hist": [[*k, list(b), self._sums[k]] for k, b in self._hist.items()]}

    def publish(self, folder: str, worker: str) -> None:
        """Writes the snapshot to <folder>/<worker>.json (atomically: temp file + rename)."""
        path = os.path.join(folder, f"{worker}.json")
        with open(path + ".tmp", "w") as f:
            json.dump(self.snapshot(), f)
        os.replace(path + ".tmp", path)

    def render(self, others: list[dict] = ()) -> str:
        """Prometheus text of these counts plus `others` (snapshots of other workers)."""
        with self._lock:
            counts = defaultdict(int, self._counts)
            hist = {k: list(b) for k, b in self._hist.items()}
            sums = defaultdict(float, self._sums)
        for snap in others:
            for *key, n in snap["counts"]:
                counts[tuple(key)] += n
            for model, api, entry, buckets, total_us in snap["hist"]:
                key = (model, api, entry)
                mine = hist.setdefault(key, [0] * len(buckets))
                hist[key] = [a + b for a, b in zip(mine, buckets)]
                sums[key] += total_us

        def labels(**kv):
            return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in kv.items()) + "}"

        out = ["# TYPE :tensorflow:serving:request_count counter"]
        for (model, status), n in sorted(counts.items()):
            out.append(":tensorflow:serving:request_count" + labels(model_name=model, status=status) + f" {n}")
        out.append("# TYPE :tensorflow:serving:request_latency histogram")
        for (model, api, entry), buckets in sorted(hist.items()):
            base = dict(model_name=model, API=api, entrypoint=entry)
            total = 0
            for bound, n in zip(BUCKETS_US + [float("inf")], buckets):
                total += n
                le = "+Inf" if bound == float("inf") else f"{bound:.0f}"
                out.append(":tensorflow:serving:request_latency_bucket" + labels(**base, le=le) + f" {total}")
            out.append(":tensorflow:serving:request_latency_sum" + labels(**base) + f" {sums[(model, api, entry)]:.0f}")
            out.append(":tensorflow:serving:request_latency_count" + labels(**base) + f" {total}")
        return "\n".join(out) + "\n"


def read_published(folder: str, skip: str) -> list[dict]:
    """Snapshots in `folder` except <skip>.json. Files are replaced atomically; one removed
    between listing and reading (its folder is being cleaned up) is left out."""
    out = []
    for entry in sorted(os.listdir(folder)):
        if entry.endswith(".json") and entry != f"{skip}.json":
            try:
                with open(os.path.join(folder, entry)) as f:
                    out.append(json.load(f))
            except FileNotFoundError:
                continue
    return out


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
