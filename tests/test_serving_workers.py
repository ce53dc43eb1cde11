"""`movierec serve --workers N`: several processes on one pair of ports, summed metrics,
a killed worker replaced, and a clean stop."""
import http.client
import json
import os
import signal
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_service_pb2_grpc

from movierec.serving.client import predict_request
from movierec.serving.model_config import ModelSpec
from movierec.serving.options import ServerOptions
from movierec.serving.workers import WorkerPool
from tests.conftest import shared_dir

MODEL = os.path.join(shared_dir(), "tfserving-testdata", "saved_model_half_plus_two_cpu")
pytestmark = pytest.mark.skipif(not os.path.isdir(MODEL), reason=f"{MODEL} missing")


def rest_predict(port: int) -> tuple[int, dict]:
    """One request on a new connection (the kernel spreads connections over the workers)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/v1/models/half:predict", json.dumps({"instances": [[1.0], [2.0]]}))
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


def counting_pids(pool: WorkerPool) -> set[int]:
    """Processes with request counts in the pool's prometheus_client multiprocess folder
    (one counter_<pid>.db file each, made at a worker's first counted request)."""
    folder = pool._metrics_dir   # noqa: SLF001 - the test looks inside
    return {int(name[len("counter_"):-len(".db")]) for name in os.listdir(folder)
            if name.startswith("counter_") and name.endswith(".db")}


def is_running(pid: int) -> bool:
    """False once the process is gone: reaped by the supervisor, every thread ended and
    every socket closed (a zombie main thread may still have live threads and sockets)."""
    return os.path.exists(f"/proc/{pid}")


def wait_until(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_workers_share_ports_and_metrics_and_a_killed_worker_is_replaced():
    pool = WorkerPool([ModelSpec("half", MODEL)], ServerOptions(grpc_port=0, rest_port=0, poll_seconds=0, workers=2))
    pool.start()
    stop = threading.Event()
    supervisor = threading.Thread(target=pool.supervise, args=(stop.is_set,), daemon=True)
    supervisor.start()
    try:
        assert len(pool.processes) == 2 and all(p.is_alive() for p in pool.processes.values())
        # REST over 40 new connections, gRPC on one channel: all answered correctly
        for _ in range(40):
            assert rest_predict(pool.rest_port) == (200, {"predictions": [[2.5], [3.0]]})
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{pool.grpc_port}"))
        reply = stub.Predict(predict_request("half", {"x": tf.make_tensor_proto(np.array([[1.0]], np.float32))}),
                             timeout=30)
        assert tf.make_ndarray(reply.outputs["y"]).tolist() == [[2.5]]

        # both workers took connections, and a scrape of either one counts all 41 requests
        assert counting_pids(pool) == {p.pid for p in pool.processes.values()}
        conn = http.client.HTTPConnection("127.0.0.1", pool.rest_port, timeout=30)
        conn.request("GET", "/monitoring/prometheus/metrics")
        text = conn.getresponse().read().decode()
        assert ':tensorflow:serving:request_count{model_name="half",status="OK"} 41' in text, text

        # SIGKILL one worker: once it is gone (its sockets closed with it; connections it
        # had accepted die with it), new connections keep being answered, and it is replaced
        killed = pool.processes[0].pid
        os.kill(killed, signal.SIGKILL)
        assert wait_until(lambda: not is_running(killed))
        failures = 0
        deadline = time.monotonic() + 120
        while (pool.restarts < 1 or not pool.processes[0].is_alive()) and time.monotonic() < deadline:
            status, _ = rest_predict(pool.rest_port)
            failures += status != 200
            time.sleep(0.05)
        assert pool.restarts == 1 and pool.processes[0].pid != killed
        assert failures == 0
        time.sleep(1.0)
        for _ in range(20):
            assert rest_predict(pool.rest_port)[0] == 200
    finally:
        stop.set()
        supervisor.join(timeout=30)
        started = time.monotonic()
        pool.stop()
    # the stop does not hang on the killed worker, and leaves no process behind
    assert time.monotonic() - started < 60
    assert not any(p.is_alive() for p in pool.processes.values())
    assert not os.path.exists(pool._metrics_dir)   # noqa: SLF001


def test_worker_pool_refuses_fewer_than_two_workers():
    with pytest.raises(ValueError, match="workers >= 2, got 1"):
        WorkerPool([ModelSpec("half", MODEL)], ServerOptions(workers=1))
    with pytest.raises(ValueError, match="workers must be >= 1, got 0"):
        ServerOptions(workers=0)


def test_a_port_in_use_is_refused_before_any_worker_starts():
    """The supervisor binds both ports itself: a port held by another socket is an error
    naming the port, and no worker is started."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"could not bind REST to 127.0.0.1:{port}: Address already in use"):
            WorkerPool([ModelSpec("half", MODEL)], ServerOptions(grpc_port=0, rest_port=port, poll_seconds=0,
                                                                 workers=2))
