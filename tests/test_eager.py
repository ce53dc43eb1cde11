"""run_request: a request coroutine runs on the caller's stack, and a Task takes over only
when it waits."""
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


def test_a_coroutine_that_waits_is_finished_by_a_task_with_the_awaited_values():
    calls = []

    async def handler(fut):
        first = await fut                # a future: the Task waits on it
        await asyncio.sleep(0)           # a bare yield: the Task reschedules
        return first * 2

    async def main():
        fut = asyncio.get_running_loop().create_future()
        run_request(handler(fut), lambda result, error: calls.append((result, error)))
        assert calls == []
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


def test_cancelling_the_task_cancels_the_coroutine_and_says_so():
    calls, cleaned = [], []

    async def handler(fut):
        try:
            await fut
        finally:
            cleaned.append(True)

    async def main():
        fut = asyncio.get_running_loop().create_future()
        run_request(handler(fut), lambda result, error: calls.append((result, error)))
        task = next(t for t in asyncio.all_tasks() if t is not asyncio.current_task())
        task.cancel()
        for _ in range(3):
            await asyncio.sleep(0)

    asyncio.run(main())
    assert cleaned == [True]
    assert isinstance(calls[0][1], asyncio.CancelledError)
