"""Server-side batching: merged calls give each request exactly its own answer."""
import os
import threading
import time

import numpy as np
import pytest

from movierec.serving.batching import Batcher
from movierec.serving.errors import ServingError
from movierec.serving.servable import Servable
from tests.conftest import shared_dir

MODEL = os.path.join(shared_dir(), "tfserving-testdata", "saved_model_half_plus_two_cpu", "00000123")
pytestmark = pytest.mark.skipif(not os.path.isdir(MODEL), reason="tfserving testdata missing")


class CountingServable:
    def __init__(self, inner):
        self.inner, self.calls, self.rows = inner, 0, []

    def predict(self, signature_name, inputs, output_filter=()):
        self.calls += 1
        self.rows.append(len(next(iter(inputs.values()))))
        return self.inner.predict(signature_name, inputs, output_filter)


def test_concurrent_requests_are_merged_and_split_back():
    servable = CountingServable(Servable("half", 123, MODEL))
    batcher = Batcher(max_batch_size=16, timeout_micros=200_000)  # 8 x 2 rows fill a batch early
    results, barrier = {}, threading.Barrier(8)

    def call(i):
        barrier.wait()
        x = np.array([[float(i)], [float(i) + 0.5]], np.float32)
        results[i] = batcher.predict(servable, "", {"x": x})["y"]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(8):
        np.testing.assert_allclose(results[i], [[0.5 * i + 2], [0.5 * (i + 0.5) + 2]])
    assert servable.calls < 8 and sum(servable.rows) == 16


def test_a_bad_request_does_not_fail_its_batch_neighbours():
    servable = Servable("half", 123, MODEL)
    batcher = Batcher(max_batch_size=64, timeout_micros=20000)
    outcome, barrier = {}, threading.Barrier(2)

    def call(name, x):
        barrier.wait()
        try:
            outcome[name] = batcher.predict(servable, "", {"x": x})["y"].tolist()
        except ServingError as e:
            outcome[name] = e.code.name

    good = threading.Thread(target=call, args=("good", np.array([[2.0]], np.float32)))
    bad = threading.Thread(target=call, args=("bad", np.array([[1.0, 2.0]], np.float32)))  # wrong shape
    for t in (good, bad):
        t.start()
    for t in (good, bad):
        t.join()
    assert outcome == {"good": [[3.0]], "bad": "INVALID_ARGUMENT"}


def test_concurrency_limit_answers_resource_exhausted_instead_of_queuing():
    import grpc

    from movierec.serving.manager import ModelManager
    from movierec.serving.model_config import ModelSpec
    from movierec.serving.service import Limits, PredictionCore

    core = PredictionCore(ModelManager([ModelSpec("half", os.path.dirname(MODEL))], poll_seconds=0),
                          Limits(max_concurrent_requests=1))
    with core.request("half", "predict", "REST"):
        with pytest.raises(ServingError) as e:
            with core.request("half", "predict", "REST"):
                pass
    assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and e.value.http_status == 429
    with core.request("half", "predict", "REST"):  # the slot is free again
        pass
    assert 'status="RESOURCE_EXHAUSTED"' in core.metrics.render()


def test_request_past_its_deadline_is_not_run_and_answers_504():
    """A REST request that waited past --rest_api_timeout_in_ms before reaching the model,
    and a gRPC request whose client deadline passed, end with DEADLINE_EXCEEDED."""
    import http.client
    import json

    import grpc

    from movierec.serving.manager import ModelManager
    from movierec.serving.model_config import ModelSpec
    from movierec.serving.server import ModelServer, ServerOptions
    from movierec.serving.service import Limits, PredictionCore

    manager = ModelManager([ModelSpec("half", os.path.dirname(MODEL))], poll_seconds=0)
    manager.poll_once()
    core = PredictionCore(manager)
    servable = core.manager.servable("half", None, None)
    x = {"x": np.array([[1.0]], np.float32)}
    with pytest.raises(ServingError) as e:
        core.predict_on(servable, "", x, deadline=time.monotonic() - 0.001)
    assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and e.value.http_status == 504
    assert core.predict_on(servable, "", x, deadline=time.monotonic() + 10)["y"].tolist() == [[2.5]]
    with pytest.raises(ValueError, match="request_timeout_seconds must be > 0"):
        Limits(request_timeout_seconds=0)

    options = ServerOptions(grpc_port=0, rest_port=0, poll_seconds=0, limits=Limits(request_timeout_seconds=1e-9))
    with ModelServer([ModelSpec("half", os.path.dirname(MODEL))], options) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=10)
        conn.request("POST", "/v1/models/half:predict", json.dumps({"instances": [[1.0]]}))
        r = conn.getresponse()
        assert r.status == 504 and "Deadline exceeded" in json.loads(r.read())["error"]


def _loop_core(**kwargs):
    """A PredictionCore as the server makes it (model threads, loop batching), no server."""
    import concurrent.futures

    from movierec.serving.manager import ModelManager
    from movierec.serving.model_config import ModelSpec
    from movierec.serving.service import PredictionCore

    manager = ModelManager([ModelSpec("half", os.path.dirname(MODEL))], poll_seconds=0)
    manager.poll_once()
    executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="model")
    return PredictionCore(manager, executor=executor, **kwargs), executor


def test_loop_batching_merges_the_requests_of_one_pass_and_splits_them_back():
    import asyncio

    from movierec.serving.options import BatchingOptions

    core, executor = _loop_core(batching=BatchingOptions(max_batch_rows=256, timeout_micros=0))
    servable = CountingServable(core.manager.servable("half", None, None))
    inputs = [{"x": np.array([[float(i)], [i + 0.5]], np.float32)} for i in range(8)]
    bad = {"x": np.array([[1.0, 2.0]], np.float32)}   # wrong shape: fails alone

    async def run():
        return await asyncio.gather(*[core.predict_async(servable, "", x) for x in inputs],
                                    core.predict_async(servable, "", bad), return_exceptions=True)

    try:
        *good, failed = asyncio.run(run())
    finally:
        executor.shutdown()
    for i, out in enumerate(good):
        np.testing.assert_allclose(out["y"], [[0.5 * i + 2], [0.5 * (i + 0.5) + 2]])
    assert isinstance(failed, ServingError) and failed.code.name == "INVALID_ARGUMENT"
    # the 8 good requests went in one merged call (16 rows); the bad one, whose shape
    # differs, in its own group
    assert 16 in servable.rows and core.loop_batcher.calls == 1 and core.loop_batcher.requests == 9


def test_small_calls_run_on_the_loop_and_big_ones_on_a_model_thread():
    import asyncio

    core, executor = _loop_core(inline_max_rows=4)
    threads = []

    class Recording(CountingServable):
        def predict(self, signature_name, inputs, output_filter=()):
            threads.append(threading.current_thread().name)
            return super().predict(signature_name, inputs, output_filter)

    servable = Recording(core.manager.servable("half", None, None))

    async def run():
        small = await core.predict_async(servable, "", {"x": np.ones((4, 1), np.float32)})
        big = await core.predict_async(servable, "", {"x": np.ones((5, 1), np.float32)})
        return small, big

    try:
        small, big = asyncio.run(run())
    finally:
        executor.shutdown()
    assert small["y"].tolist() == [[2.5]] * 4 and big["y"].tolist() == [[2.5]] * 5
    assert threads[0] == "MainThread" and threads[1].startswith("model")
