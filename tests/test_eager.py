"""run_request: a request coroutine runs on the caller's stack, and is resumed from the
future it waits on, with no Task."""
import asyncio

import pytest

from movierec.serving.eager import run_request


def test_a_coroutine_that_never_waits_is_answered_before_run_request_returns():
    calls = []

    async def handler():
        return "answer"

    async def main():
        run_request(handler(), lambda result, error: calls.append((result, error)))
        assert calls == [("answer", None)]   # no Task, no loop pass
        assert len(asyncio.all_tasks()) == 1   # only main()

    asyncio.run(main())


def test_a_coroutine_that_waits_is_resumed_with_the_awaited_values_and_no_task():
    calls = []

    async def handler(fut):
        first = await fut                # a future: the Task waits on it
        await asyncio.sleep(0)           # a bare yield: the Task reschedules
        return first * 2

    async def main():
        fut = asyncio.get_running_loop().create_future()
        run_request(handler(fut), lambda result, error: calls.append((result, error)))
        assert calls == [] and len(asyncio.all_tasks()) == 1   # only main()
        fut.set_result(21)
        for _ in range(5):
            await asyncio.sleep(0)
        assert calls == [(42, None)]

    asyncio.run(main())


@pytest.mark.parametrize("wait_first", [False, True])
def test_errors_reach_done_whether_raised_at_once_or_after_a_wait(wait_first):
    calls = []

    async def handler():
        if wait_first:
            await asyncio.sleep(0)
        raise ValueError("bad request")

    async def main():
        run_request(handler(), lambda result, error: calls.append((result, error)))
        for _ in range(3):
            await asyncio.sleep(0)

    asyncio.run(main())
    assert len(calls) == 1 and calls[0][0] is None
    assert isinstance(calls[0][1], ValueError) and str(calls[0][1]) == "bad request"


def test_an_awaited_future_that_fails_raises_inside_the_coroutine():
    calls, seen = [], []

    async def handler(fut):
        try:
            return await fut
        except KeyError as e:
            seen.append(e)
            raise ValueError("handled and re-raised") from e

    async def main():
        fut = asyncio.get_running_loop().create_future()
        run_request(handler(fut), lambda result, error: calls.append((result, error)))
        fut.set_exception(KeyError("model gone"))
        for _ in range(3):
            await asyncio.sleep(0)

    asyncio.run(main())
    assert len(seen) == 1 and isinstance(calls[0][1], ValueError)


def test_a_yield_that_is_not_a_future_is_an_error_not_a_hang():
    calls = []

    class Odd:
        def __await__(self):
            yield "not a future"

    async def handler():
        await Odd()

    async def main():
        run_request(handler(), lambda result, error: calls.append((result, error)))

    asyncio.run(main())
    assert isinstance(calls[0][1], RuntimeError) and "not an asyncio future" in str(calls[0][1])


def test_a_cancelled_future_ends_the_request_with_cancelled_error():
    calls = []

    async def handler(fut):
        await fut

    async def main():
        fut = asyncio.get_running_loop().create_future()
        run_request(handler(fut), lambda result, error: calls.append((result, error)))
        fut.cancel()   # e.g. a model thread's future at shutdown
        for _ in range(3):
            await asyncio.sleep(0)

    asyncio.run(main())
    assert len(calls) == 1 and isinstance(calls[0][1], asyncio.CancelledError)
