"""Serving latency and throughput: top-10 requests over gRPC and REST vs the in-process call.

    .venv/bin/python benchmarks/serving.py [--serving-root outputs/serving] [--model mf]
                                           [--seconds 5] [--concurrency 1 8 32]
                                           [--enable-batching] [--workers N]
                                           [--load-generator python|native|both]
                                           [--grpc-floor]

Starts `movierec serve` in its own process (so the load generator does not share its GIL),
then for each protocol and concurrency level runs closed-loop clients (one request in
flight per client, keep-alive connections, a random known user per request) for
`--seconds`, and prints p50/p95/p99 latency and QPS as a markdown table. Each client has
its own connection (with `--workers N` the server spreads connections over the workers).
The Python clients are asyncio tasks on one event loop (grpc.aio for gRPC, raw HTTP/1.1
for REST): client threads would fight over the load generator's own GIL and add its
thread-switch delays to the measured latency. With `--load-generator native` the
load comes from generators in C instead, whose own CPU hardly competes with the
server's: wrk (`benchmarks/wrk_predict.lua`, a random known user per request) for REST
and h2load (nghttp2) for gRPC, which sends one request body, so one user (the first in
the vocabulary), for every call; the server's Prometheus counts give h2load's errors
(gRPC reports them in HTTP/2 trailers, which h2load does not read). `both` (the default
when both tools are installed) runs both kinds. Install them with
`scripts/install-bench-tools.sh` (Debian's wrk and nghttp2-client).
Next to the load, two in-process baselines on the same SavedModel: the TF2
`signatures["serving_default"]` call, and `Servable.predict`, the session call the server
itself makes (input checks included, no network, no parsing). The last two columns
divide each p50 by the in-process p50s: "signature call" is the TF2 call a user would
make in-process, "server's call" the server's own session call (the stricter: it already
skips the TF2 call overhead).
`--grpc-floor` adds h2load rows for grpcio alone: `--workers` processes of
`benchmarks/grpc_floor.py`, grpc.aio servers that answer every call with the model's own
top-10 answer for that user, computed once, and do nothing else; the gap between these rows
and the server's is what the model and movierec's request path cost under load.
Needs a pushed model: run `make run` first.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

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


def in_process(model_dir: str, users: list[str], n: int = 300) -> dict[str, list[float]]:
    """Per-call seconds of the two in-process baselines (serving_default: 1 user, top 10)."""
    import tensorflow as tf
    from movierec.serving.servable import Servable

    fn = tf.saved_model.load(model_dir).signatures["serving_default"]
    servable = Servable("bench", 1, model_dir)
    calls = {
        "TF2 signature function": lambda u: fn(user_id=tf.constant([u])),
        "Servable.predict (the server's call)": lambda u: servable.predict(
            "", {"user_id": np.array([u.encode()], object)}),
    }
    times = {}
    for name, call in calls.items():
        times[name] = []
        for i in range(n + 20):
            start = time.perf_counter()
            call(users[i % len(users)])
            if i >= 20:
                times[name].append(time.perf_counter() - start)
    return times


async def rest_client(port, model, users, stop, out, errors, rng):
    """One keep-alive HTTP/1.1 connection, one request in flight."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    path = f"/v1/models/{model}:predict"
    try:
        while not stop.is_set():
            body = json.dumps({"instances": [{"user_id": rng.choice(users)}]}).encode()
            head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode()
            start = time.perf_counter()
            writer.write(head + body)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            out.append(time.perf_counter() - start)
            if b" 200 " not in status_line:
                errors.append(status_line.decode().strip())
    finally:
        writer.close()


def top10_request(model: str, user: str):
    """The benchmark's gRPC PredictRequest: serving_default (top 10) for one user."""
    import tensorflow as tf
    from movierec.serving.client import predict_request

    return predict_request(model, {"user_id": tf.make_tensor_proto(np.array([user], dtype=object))})


async def grpc_client(channel, model, users, stop, out, errors, rng):
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    requests = [top10_request(model, u) for u in users[:500]]
    while not stop.is_set():
        request = rng.choice(requests)
        start = time.perf_counter()
        try:
            await stub.Predict(request, timeout=10)
        except grpc.RpcError as e:
            errors.append(e.code().name)
        out.append(time.perf_counter() - start)


async def run_load_async(protocol, port, model, users, concurrency, seconds):
    stop, samples, errors = asyncio.Event(), [], []
    channels = []
    if protocol == "gRPC":
        import grpc
        # one channel, so one TCP connection, per client (as for REST): a local subchannel
        # pool stops gRPC from sharing one connection between channels to the same address
        channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
                    for _ in range(concurrency)]
        tasks = [grpc_client(channels[i], model, users, stop, samples, errors, random.Random(i))
                 for i in range(concurrency)]
    else:
        tasks = [rest_client(port, model, users, stop, samples, errors, random.Random(i))
                 for i in range(concurrency)]
    running = [asyncio.ensure_future(t) for t in tasks]
    await asyncio.sleep(0.5)   # warm connections; reset the samples
    samples.clear()
    errors.clear()
    start = time.perf_counter()
    await asyncio.sleep(seconds)
    stop.set()
    elapsed = time.perf_counter() - start
    n = len(samples)   # requests completed within the window
    await asyncio.gather(*running)
    for channel in channels:
        await channel.close()
    return samples[:n], errors, elapsed


def run_load(protocol, port, model, users, concurrency, seconds):
    return asyncio.run(run_load_async(protocol, port, model, users, concurrency, seconds))


NATIVE_TOOLS = ("wrk", "h2load")


def server_failures(rest_port: int) -> int:
    """Requests the server counted with a status other than OK or CANCELLED, so far (all
    models). CANCELLED: calls h2load still had in flight when its run ended and it closed
    its connections, not answers it got."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/monitoring/prometheus/metrics", timeout=10).read()
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.decode().splitlines()
               if line.startswith(":tensorflow:serving:request_count{")
               and 'status="OK"' not in line and 'status="CANCELLED"' not in line)


def run_wrk(rest_port, model, users_file, concurrency, seconds):
    """wrk's REST run: (p50, p95, p99 in ms, requests, errors, QPS)."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "-s",
         os.path.join(REPO, "benchmarks", "wrk_predict.lua"), f"http://127.0.0.1:{rest_port}/v1/models/{model}:predict"],
        env=dict(os.environ, USERS_FILE=users_file), capture_output=True, text=True, check=True).stdout
    m = re.search(r"requests (\d+), errors (\d+), p50 ([\d.]+) ms, p95 ([\d.]+) ms, p99 ([\d.]+) ms", out)
    qps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m is None or qps is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    return float(m[3]), float(m[4]), float(m[5]), int(m[1]), int(m[2]), float(qps[1])


def grpc_answer(grpc_port: int, model: str, user: str) -> bytes:
    """The server's serialized PredictResponse to the benchmark's request for `user`."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return stub.Predict(top10_request(model, user), timeout=30).SerializeToString()


def grpc_body(model: str, user: str) -> bytes:
    """One length-prefixed PredictRequest, as gRPC puts it on the wire."""
    raw = top10_request(model, user).SerializeToString()
    return struct.pack(">BI", 0, len(raw)) + raw


def run_h2load(grpc_port, rest_port, body_file, concurrency, seconds):
    """h2load's gRPC run: (p50, p95, p99 in ms, requests, errors, QPS). rest_port: where the
    server's Prometheus counts are read (None: only HTTP errors are counted)."""
    failed_before = server_failures(rest_port) if rest_port is not None else 0
    with tempfile.NamedTemporaryFile(suffix=".log") as log:
        out = subprocess.run(
            ["h2load", "-D", str(max(1, round(seconds))), "--warm-up-time", "500ms", "-c", str(concurrency), "-m", "1",
             "-d", body_file, "-H", "content-type: application/grpc", "-H", "te: trailers", "--log-file", log.name,
             f"http://127.0.0.1:{grpc_port}/tensorflow.serving.PredictionService/Predict"],
            capture_output=True, text=True, check=True).stdout
        with open(log.name) as f:
            rows = [line.split("\t") for line in f if line.strip()]
    qps = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out)
    if qps is None or not rows:
        raise RuntimeError(f"unexpected h2load output:\n{out}")
    micros = np.array([float(r[2]) for r in rows])
    http_errors = sum(r[1] != "200" for r in rows)
    p50, p95, p99 = (float(np.percentile(micros, q)) / 1000 for q in (50, 95, 99))
    failed = server_failures(rest_port) - failed_before if rest_port is not None else 0
    return p50, p95, p99, len(rows), http_errors + failed, float(qps[1])


def grpc_floor_rows(answer: bytes, body_file: str, processes: int, concurrencies, seconds: float) -> list[tuple]:
    """h2load against `processes` grpc_floor.py servers answering `answer` (a serialized
    PredictResponse): (concurrency, p50, p95, p99, requests, errors, QPS) per level."""
    port = free_port()
    with tempfile.NamedTemporaryFile(suffix=".pb") as f:
        f.write(answer)
        f.flush()
        servers = [subprocess.Popen([sys.executable, os.path.join(REPO, "benchmarks", "grpc_floor.py"), str(port), f.name],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                   for _ in range(processes)]
        try:
            for s in servers:
                if s.stdout.readline().strip() != "serving":
                    raise RuntimeError("benchmarks/grpc_floor.py did not start")
            return [(c, *run_h2load(port, None, body_file, c, seconds)) for c in concurrencies]
        finally:
            for s in servers:
                s.terminate()
                s.wait(timeout=30)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--serving-root", default=os.path.join(REPO, "outputs", "serving"))
    p.add_argument("--model", default="mf")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--enable-batching", action="store_true", help="start the server with --enable_batching")
    p.add_argument("--workers", type=int, default=1, help="start the server with --workers N (default: 1)")
    p.add_argument("--load-generator", choices=("python", "native", "both"), default=None,
                   help="python: asyncio clients; native: wrk (REST) and h2load (gRPC); both "
                        "(default: both when wrk and h2load are installed, else python)")
    p.add_argument("--grpc-floor", action="store_true",
                   help="also run h2load against grpcio servers that return a constant answer (needs h2load)")
    args = p.parse_args()
    missing = [t for t in NATIVE_TOOLS if shutil.which(t) is None]
    if args.load_generator is None:
        args.load_generator = "python" if missing else "both"
        if missing:
            print(f"note: {', '.join(missing)} not installed (scripts/install-bench-tools.sh): "
                  "Python clients only", flush=True)
    elif (args.load_generator != "python" or args.grpc_floor) and missing:
        print(f"--load-generator {args.load_generator} needs {', '.join(missing)}: "
              "run scripts/install-bench-tools.sh", file=sys.stderr)
        return 2

    found = newest_pushed_model(args.serving_root, args.model)
    if found is None:
        return 2
    model_dir, latest, users = found
    baselines = {name: percentiles(t) for name, t in in_process(model_dir, users).items()}
    for name, (p50, _, p99) in baselines.items():
        print(f"model {args.model} v{latest}: in-process {name} (1 user, k=10): p50 {p50:.2f} ms, "
              f"p99 {p99:.2f} ms", flush=True)
    server_call = baselines["Servable.predict (the server's call)"][0]
    signature_call = baselines["TF2 signature function"][0]

    flags = [*(["--enable_batching"] if args.enable_batching else []),
             *(["--workers", str(args.workers)] if args.workers != 1 else [])]
    started = start_server(["--serving_root", args.serving_root, "--file_system_poll_wait_seconds", "0", *flags])
    if started is None:
        return 1
    server, grpc_port, rest_port = started
    generators = {"python": ["python"], "native": ["native"], "both": ["python", "native"]}[args.load_generator]
    try:
        rows = []
        print(f"server: movierec serve {' '.join(flags)}".rstrip(), flush=True)
        with tempfile.NamedTemporaryFile(suffix=".grpc") as body:
            body.write(grpc_body(args.model, users[0]))
            body.flush()
            users_file = os.path.join(model_dir, "assets", "user_id")
            for generator in generators:
                for protocol in ("gRPC", "REST"):
                    client = {"python": "Python asyncio", "native": {"gRPC": "h2load", "REST": "wrk"}[protocol]}
                    for c in args.concurrency:
                        if generator == "python":
                            samples, errors, elapsed = run_load(protocol, grpc_port if protocol == "gRPC" else rest_port,
                                                                args.model, users, c, args.seconds)
                            p50, p95, p99 = percentiles(samples)
                            n, n_errors, qps = len(samples), len(errors), len(samples) / elapsed
                        elif protocol == "gRPC":
                            p50, p95, p99, n, n_errors, qps = run_h2load(grpc_port, rest_port, body.name, c, args.seconds)
                        else:
                            p50, p95, p99, n, n_errors, qps = run_wrk(rest_port, args.model, users_file, c, args.seconds)
                        rows.append((protocol, client[generator], c, n, n_errors, p50, p95, p99, qps,
                                     p50 / signature_call, p50 / server_call))
                        print(f"  {protocol} ({client[generator]}) c={c}: {n} requests, p99 {p99:.2f} ms", flush=True)
            if args.grpc_floor:
                answer = grpc_answer(grpc_port, args.model, users[0])
                server.terminate()
                server.wait(timeout=30)
                for c, p50, p95, p99, n, n_errors, qps in grpc_floor_rows(
                        answer, body.name, args.workers, args.concurrency, args.seconds):
                    rows.append(("gRPC", "h2load: grpcio floor (constant answer)", c, n, n_errors, p50, p95, p99, qps,
                                 p50 / signature_call, p50 / server_call))
                    print(f"  gRPC floor (h2load) c={c}: {n} requests, p99 {p99:.2f} ms", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)

    print()
    print("| protocol | client | concurrency | requests | errors | p50 ms | p95 ms | p99 ms | QPS "
          "| p50 / signature call | p50 / server's call |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]:.2f} | {r[6]:.2f} | {r[7]:.2f} | {r[8]:.0f} "
              f"| {r[9]:.1f}x | {r[10]:.1f}x |")
    for name, (p50, p95, p99) in baselines.items():
        print(f"| in-process: {name} | | 1 | 300 | 0 | {p50:.2f} | {p95:.2f} | {p99:.2f} | {1000 / p50:.0f} | "
              f"{p50 / signature_call:.1f}x | {p50 / server_call:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
