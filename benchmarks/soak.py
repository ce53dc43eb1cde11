"""Soak: a fixed request rate for a minute, a model version swap in the middle, zero failures.

    .venv/bin/python benchmarks/soak.py [--serving-root outputs/serving] [--model mf]
                                        [--seconds 60] [--rate 200]

Copies the newest pushed version of `--model` into a fresh model base path as version 1,
starts `movierec serve` on it in its own process (polling every second), and sends top-10
requests at a fixed rate (open loop: a request is due every 1/rate seconds, half over
gRPC, half over REST, from a pool of client threads). Half-way through, version 2 is
written the way the AtomicPusher writes it (hidden temporary folder, then rename); the
server loads it and swaps. Latency is measured from when a request was due, so a stall
shows up as latency instead of as fewer requests. Prints, for the phases before, during
(from the copy until the server reports version 2, plus 2 s) and after the swap: requests,
failures, p50/p99 per protocol, and the server's resident memory at start and end.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
import urllib.request

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

from serving import newest_pushed_model, start_server  # noqa: E402  (benchmarks/serving.py)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def served_version(rest_port: int, model: str) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/v1/models/{model}", timeout=2) as r:
            status = json.load(r)["model_version_status"]
    except OSError:
        return None
    available = [int(s["version"]) for s in status if s["state"] == "AVAILABLE"]
    return max(available) if available else None


class Load:
    """Open-loop load: one request due every 1/rate s; latency from the due time."""

    def __init__(self, grpc_port, rest_port, model, users, rate, threads=16):
        self.due: queue.Queue = queue.Queue()
        self.results: list[tuple[float, str, float, str | None]] = []   # (due, protocol, latency, error)
        self.lock = threading.Lock()
        self.args = (grpc_port, rest_port, model, users)
        self.rate = rate
        self.workers = [threading.Thread(target=self._work, args=(i,), daemon=True) for i in range(threads)]
        self.ready = threading.Barrier(threads + 1)

    def _work(self, i):
        from movierec.serving.client import ClientError, GrpcClient, RestClient

        grpc_port, rest_port, model, users = self.args
        grpc_client, rest_client = GrpcClient(port=grpc_port), RestClient(port=rest_port)
        for client in (grpc_client, rest_client):   # connect and warm up before the clock starts
            client.recommend([users[0]], k=10, model=model)
        self.ready.wait()
        n = 0
        while True:
            due = self.due.get()
            if due is None:
                break
            protocol = "gRPC" if n % 2 == 0 else "REST"
            client = grpc_client if protocol == "gRPC" else rest_client
            error = None
            try:
                rows = client.recommend([users[(i * 7919 + n) % len(users)]], k=10, model=model)
                if len(rows[0]) != 10:
                    error = f"{len(rows[0])} recommendations"
            except (ClientError, OSError) as e:
                error = f"{type(e).__name__}: {e}"
            latency = time.perf_counter() - due
            with self.lock:
                self.results.append((due, protocol, latency, error))
            n += 1
        grpc_client.close()

    def run(self, seconds: float, at_half=None) -> float:
        for w in self.workers:
            w.start()
        self.ready.wait()
        start = time.perf_counter()
        half_done = False
        for i in range(int(seconds * self.rate)):
            due = start + i / self.rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if not half_done and i >= seconds * self.rate / 2 and at_half:
                half_done = True
                threading.Thread(target=at_half, daemon=True).start()
            self.due.put(due)
        for _ in self.workers:
            self.due.put(None)
        for w in self.workers:
            w.join()
        return start


def phase_table(results, start, swap_start, swap_end) -> list[str]:
    phases = (("before", lambda t: t < swap_start), ("during", lambda t: swap_start <= t < swap_end),
              ("after", lambda t: t >= swap_end))
    lines = ["| phase | protocol | requests | failed | p50 ms | p99 ms |", "|---|---|---:|---:|---:|---:|"]
    for name, inside in phases:
        for protocol in ("gRPC", "REST"):
            rows = [r for r in results if r[1] == protocol and inside(r[0])]
            if not rows:
                continue
            lat = np.array([r[2] for r in rows]) * 1000
            failed = sum(r[3] is not None for r in rows)
            lines.append(f"| {name} | {protocol} | {len(rows)} | {failed} | {np.percentile(lat, 50):.2f} | "
                         f"{np.percentile(lat, 99):.2f} |")
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--serving-root", default=os.path.join(REPO, "outputs", "serving"))
    p.add_argument("--model", default="mf")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--rate", type=float, default=200.0, help="requests per second (default: %(default)s)")
    args = p.parse_args()

    found = newest_pushed_model(args.serving_root, args.model)
    if found is None:
        return 2
    source, _, users = found

    with tempfile.TemporaryDirectory() as tmp:
        base = os.path.join(tmp, args.model)
        shutil.copytree(source, os.path.join(base, "1"))
        started = start_server(["--model_name", args.model, "--model_base_path", base,
                                "--file_system_poll_wait_seconds", "1"])
        if started is None:
            return 1
        server, grpc_port, rest_port = started
        try:
            rss_start = rss_mb(server.pid)
            swap = {}

            def push_version_2():
                swap["start"] = time.perf_counter()
                staging = os.path.join(base, ".tmp-2")
                shutil.copytree(source, staging)
                os.replace(staging, os.path.join(base, "2"))
                while served_version(rest_port, args.model) != 2:
                    time.sleep(0.05)
                swap["served"] = time.perf_counter()

            print(f"{args.seconds:.0f} s at {args.rate:.0f} requests/s against {args.model} "
                  f"(version 2 pushed half-way) ...", flush=True)
            load = Load(grpc_port, rest_port, args.model, users, args.rate)
            start = load.run(args.seconds, at_half=push_version_2)
            rss_end = rss_mb(server.pid)
            final_version = served_version(rest_port, args.model)
        finally:
            server.terminate()
            server.wait(timeout=30)

    if "served" not in swap:
        print("the server never reported version 2", file=sys.stderr)
        return 1
    results = load.results
    failed = [r for r in results if r[3] is not None]
    print(f"\nversion 2 served {swap['served'] - swap['start']:.2f} s after the copy started; "
          f"final version {final_version}")
    print("\n".join(phase_table(results, start, swap["start"], swap["served"] + 2.0)))
    print(f"\nall: {len(results)} requests, {len(failed)} failed; server RSS {rss_start:.0f} MB at start, "
          f"{rss_end:.0f} MB at end")
    for r in failed[:5]:
        print(f"  failure: {r[1]} {r[3]}")
    return 0 if not failed and final_version == 2 else 1


if __name__ == "__main__":
    sys.exit(main())
