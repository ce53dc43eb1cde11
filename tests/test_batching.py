"""Server-side batching: merged calls give each request exactly its own answer."""
import asyncio
import concurrent.futures
import os
import threading
import time

import numpy as np
import pytest

from movierec.serving.errors import ServingError, invalid_argument
from movierec.serving.manager import ModelManager
from movierec.serving.model_config import ModelSpec
from movierec.serving.options import BatchingOptions
from movierec.serving.service import PredictionCore
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


def loop_core(**kwargs) -> tuple[PredictionCore, concurrent.futures.Executor]:
    """A PredictionCore as the server makes it (one model thread), without the server."""
    manager = ModelManager([ModelSpec("half", os.path.dirname(MODEL))], poll_seconds=0)
    manager.poll_once()
    executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="model")
    return PredictionCore(manager, executor=executor, **kwargs), executor


def predict_all(core, servable, inputs: list[dict]) -> list:
    """The requests submitted together on one loop (one pass); results or exceptions."""
    async def run():
        return await asyncio.gather(*[core.predict_async(servable, "", x) for x in inputs],
                                    return_exceptions=True)
    return asyncio.run(run())


def test_concurrent_requests_are_merged_and_split_back():
    core, executor = loop_core(batching=BatchingOptions(max_batch_rows=256, timeout_micros=0))
    servable = CountingServable(core.manager.servable("half", None, None))
    try:
        results = predict_all(core, servable, [{"x": np.array([[float(i)], [i + 0.5]], np.float32)}
                                               for i in range(8)])
    finally:
        executor.shutdown()
    for i in range(8):
        np.testing.assert_allclose(results[i]["y"], [[0.5 * i + 2], [0.5 * (i + 0.5) + 2]])
    assert servable.calls < 8 and sum(servable.rows) == 16
    assert servable.rows == [16] and core.loop_batcher.calls == 1 and core.loop_batcher.requests == 8


def test_a_request_cancelled_while_waiting_for_its_batch_is_never_computed():
    """A client that goes away while its request waits for company (a 50 ms batch window)
    frees its rows: the merged call holds only the two live requests (2 + 3 rows)."""
    core, executor = loop_core(batching=BatchingOptions(max_batch_rows=256, timeout_micros=50_000))
    servable = CountingServable(core.manager.servable("half", None, None))

    def x(rows, start):
        return {"x": np.arange(start, start + rows, dtype=np.float32)[:, None]}

    async def run():
        tasks = [asyncio.ensure_future(core.predict_async(servable, "", x(rows, start)))
                 for rows, start in ((2, 0), (7, 10), (3, 20))]
        await asyncio.sleep(0.01)   # all three wait in the batch window
        tasks[1].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    try:
        first, cancelled, third = asyncio.run(run())
    finally:
        executor.shutdown()
    assert isinstance(cancelled, asyncio.CancelledError)
    assert servable.rows == [5]
    np.testing.assert_allclose(first["y"], [[2.0], [2.5]])
    np.testing.assert_allclose(third["y"], [[12.0], [12.5], [13.0]])


class RefusingServable(CountingServable):
    """Fails any call that contains the value 13 (as a model would on a bad value)."""

    def predict(self, signature_name, inputs, output_filter=()):
        self.calls += 1
        self.rows.append(len(inputs["x"]))
        if np.any(inputs["x"] == 13.0):
            raise invalid_argument("13 is refused")
        return self.inner.predict(signature_name, inputs, output_filter)


def test_a_bad_request_does_not_fail_its_batch_neighbours():
    """A request that cannot join the batch (another shape: answered on its own, shapes are
    not enforced, as in TF Serving) and one that joins it but breaks the merged call (a
    refused value, failing alone): its neighbours are answered."""
    core, executor = loop_core(batching=BatchingOptions(max_batch_rows=256, timeout_micros=0))
    servable = RefusingServable(core.manager.servable("half", None, None))
    inputs = {"good": np.array([[2.0]], np.float32),
              "other shape": np.array([[1.0, 2.0]], np.float32),    # a group of its own
              "also good": np.array([[4.0]], np.float32),
              "bad value": np.array([[13.0]], np.float32)}  # fails the merged call
    try:
        results = predict_all(core, servable, [{"x": x} for x in inputs.values()])
    finally:
        executor.shutdown()
    outcome = {name: r.code.name if isinstance(r, ServingError) else r["y"].tolist()
               for name, r in zip(inputs, results)}
    assert outcome == {"good": [[3.0]], "other shape": [[2.5, 3.0]], "also good": [[4.0]],
                       "bad value": "INVALID_ARGUMENT"}
    # the merged call of the three same-shape requests failed, then each ran alone
    assert servable.rows[:1] == [3] and sorted(servable.rows[1:]) == [1, 1, 1, 1]


def test_concurrency_limit_answers_resource_exhausted_instead_of_queuing():
    import grpc

    from movierec.serving.options import Limits

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

    from movierec.serving.options import Limits
    from movierec.serving.server import ModelServer, ServerOptions

    manager = ModelManager([ModelSpec("half", os.path.dirname(MODEL))], poll_seconds=0)
    manager.poll_once()
    core = PredictionCore(manager)
    servable = core.manager.servable("half", None, None)
    x = {"x": np.array([[1.0]], np.float32)}
    with pytest.raises(ServingError) as e:
        asyncio.run(core.predict_async(servable, "", x, deadline=time.monotonic() - 0.001))
    assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and e.value.http_status == 504
    assert asyncio.run(core.predict_async(servable, "", x, deadline=time.monotonic() + 10))["y"].tolist() == [[2.5]]
    with pytest.raises(ValueError, match="request_timeout_seconds must be > 0"):
        Limits(request_timeout_seconds=0)

    options = ServerOptions(grpc_port=0, rest_port=0, poll_seconds=0, limits=Limits(request_timeout_seconds=1e-9))
    with ModelServer([ModelSpec("half", os.path.dirname(MODEL))], options) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=10)
        conn.request("POST", "/v1/models/half:predict", json.dumps({"instances": [[1.0]]}))
        r = conn.getresponse()
        assert r.status == 504 and "Deadline exceeded" in json.loads(r.read())["error"]


def test_small_calls_run_on_the_loop_and_big_ones_on_a_model_thread():
    core, executor = loop_core(inline_max_rows=4)
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
