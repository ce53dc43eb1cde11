"""Serving latency and throughput: top-10 requests over gRPC and REST vs the in-process call.

    .venv/bin/python benchmarks/serving.py [--serving-root outputs/serving] [--model mf]
                                           [--seconds 5] [--concurrency 1 8 32]

Starts `movierec serve` in its own process (so the load generator does not share its GIL),
then for each protocol and concurrency level runs closed-loop clients (one request in
flight per client thread, keep-alive connections, a random known user per request) for
`--seconds`, and prints p50/p95/p99 latency and QPS as a markdown table, next to the
in-process `serving_default` call time of the same SavedModel. Needs a pushed model:
run `make run` first.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def newest_pushed_model(serving_root: str, model: str) -> tuple[str, int, list[str]] | None:
    """(version folder, version, its known users) of the newest push of `model`, or None."""
    from movierec.serving import versions

    base = os.path.join(serving_root, model)
    latest = versions.latest_version(base)
    if latest is None:
        print(f"no pushed model under {base}: run `make run` first", file=sys.stderr)
        return None
    model_dir = versions.version_dir(base, latest)
    with open(os.path.join(model_dir, "assets", "user_id"), encoding="utf-8") as f:
        return model_dir, latest, [line.rstrip("\n") for line in f]


def start_server(serve_args: list[str]) -> tuple[subprocess.Popen, int, int] | None:
    """`movierec serve` in its own process on free ports: (process, gRPC port, REST port), once
    it says it is serving; None (and the process stopped) if it never does."""
    grpc_port, rest_port = free_port(), free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "movierec.cli", "serve", *serve_args, "--port", str(grpc_port),
         "--rest_api_port", str(rest_port), "--max-concurrent-requests", "256"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), text=True)
    for line in server.stdout:
        if line.startswith("serving gRPC"):
            return server, grpc_port, rest_port
    server.terminate()
    server.wait(timeout=30)
    print("server did not start", file=sys.stderr)
    return None


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    a = np.array(samples) * 1000.0
    return tuple(float(np.percentile(a, q)) for q in (50, 95, 99))


def in_process(model_dir: str, users: list[str], n: int = 300) -> list[float]:
    import tensorflow as tf

    fn = tf.saved_model.load(model_dir).signatures["serving_default"]
    k = tf.constant(10)
    ex = tf.constant([[""]])
    times = []
    for i in range(n + 20):
        start = time.perf_counter()
        fn(user_id=tf.constant([users[i % len(users)]]), k=k, exclude_movie_ids=ex)
        if i >= 20:
            times.append(time.perf_counter() - start)
    return times


def rest_worker(port, model, users, stop, out, errors):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    rng = random.Random(threading.get_ident())
    while not stop.is_set():
        body = json.dumps({"inputs": {"user_id": [rng.choice(users)], "k": 10, "exclude_movie_ids": [[""]]}})
        start = time.perf_counter()
        conn.request("POST", f"/v1/models/{model}:predict", body, {"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        out.append(time.perf_counter() - start)
        if r.status != 200:
            errors.append(r.status)


def grpc_worker(port, model, users, stop, out, errors):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    rng = random.Random(threading.get_ident())
    k = tf.make_tensor_proto(np.int32(10))
    ex = tf.make_tensor_proto(np.array([[""]], dtype=object))
    protos = {u: tf.make_tensor_proto(np.array([u], dtype=object)) for u in users[:500]}
    while not stop.is_set():
        req = predict_pb2.PredictRequest()
        req.model_spec.name = model
        req.inputs["user_id"].CopyFrom(protos[rng.choice(list(protos))])
        req.inputs["k"].CopyFrom(k)
        req.inputs["exclude_movie_ids"].CopyFrom(ex)
        start = time.perf_counter()
        try:
            stub.Predict(req, timeout=10)
        except grpc.RpcError as e:
            errors.append(e.code().name)
        out.append(time.perf_counter() - start)
    channel.close()


def run_load(worker, port, model, users, concurrency, seconds):
    stop, samples, errors = threading.Event(), [], []
    threads = [threading.Thread(target=worker, args=(port, model, users, stop, samples, errors))
               for _ in range(concurrency)]
    for t in threads:
        t.start()
    time.sleep(0.5)   # warm connections; reset the samples
    samples.clear()
    start = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    elapsed = time.perf_counter() - start
    for t in threads:
        t.join()
    return samples, errors, elapsed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--serving-root", default=os.path.join(REPO, "outputs", "serving"))
    p.add_argument("--model", default="mf")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--enable-batching", action="store_true", help="start the server with --enable_batching")
    args = p.parse_args()

    found = newest_pushed_model(args.serving_root, args.model)
    if found is None:
        return 2
    model_dir, latest, users = found
    base_ms = percentiles(in_process(model_dir, users))
    print(f"model {args.model} v{latest}: {len(users)} users; in-process serving_default (1 user, k=10): "
          f"p50 {base_ms[0]:.2f} ms, p99 {base_ms[2]:.2f} ms", flush=True)

    started = start_server(["--serving-root", args.serving_root, "--file_system_poll_wait_seconds", "0",
                            *(["--enable_batching"] if args.enable_batching else [])])
    if started is None:
        return 1
    server, grpc_port, rest_port = started
    try:
        rows = []
        print(f"server: movierec serve{' --enable_batching' if args.enable_batching else ''}", flush=True)
        for protocol, worker, port in (("gRPC", grpc_worker, grpc_port), ("REST", rest_worker, rest_port)):
            for c in args.concurrency:
                samples, errors, elapsed = run_load(worker, port, args.model, users, c, args.seconds)
                p50, p95, p99 = percentiles(samples)
                rows.append((protocol, c, len(samples), len(errors), p50, p95, p99, len(samples) / elapsed,
                             p50 / base_ms[0]))
                print(f"  {protocol} c={c}: {len(samples)} requests, p99 {p99:.2f} ms", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)

    print()
    print("| protocol | concurrency | requests | errors | p50 ms | p95 ms | p99 ms | QPS | p50 / in-process p50 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]:.2f} | {r[5]:.2f} | {r[6]:.2f} | {r[7]:.0f} | {r[8]:.1f}x |")
    print(f"| in-process | 1 | {300} | 0 | {base_ms[0]:.2f} | {base_ms[1]:.2f} | {base_ms[2]:.2f} | "
          f"{1000 / base_ms[0]:.0f} | 1.0x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
