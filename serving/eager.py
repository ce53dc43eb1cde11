"""Running a front end's request coroutine on the caller's stack, without a Task when it
never waits (`run_request`)."""
from __future__ import annotations

import asyncio
from typing import Callable


def run_request(coro, done: Callable[[object, BaseException | None], None]) -> None:
    """Runs a front end's request coroutine now, on the caller's stack; done(result, error)
    once it ends: at once when it never waits, else from the Task that takes it over at
    its first wait (a big call on a model thread, a batch being gathered).

    Most requests never wait: their model call runs inline (`predict_async`). A Task per
    request cost its creation, a round through the loop and a done callback, about 25 us
    of a 0.5-0.9 ms request, and left the answer for a later pass of the loop."""
    try:
        waiting_on = coro.send(None)
    except StopIteration as e:
        done(e.value, None)
        return
    except Exception as e:  # noqa: BLE001 - the front end answers it as an error
        done(None, e)
        return

    def finished(task: asyncio.Task) -> None:
        if task.cancelled():
            done(None, asyncio.CancelledError())
        else:
            error = task.exception()
            done(None if error is not None else task.result(), error)

    asyncio.ensure_future(_Resumed(coro, waiting_on)).add_done_callback(finished)


class _Resumed:
    """Awaitable: a coroutine already started by `run_request`, continued by a Task from
    the wait it stopped at (the Task waits on what the coroutine yielded, then resumes it)."""

    def __init__(self, coro, waiting_on):
        self.coro, self.waiting_on = coro, waiting_on

    def __await__(self):
        waiting_on = self.waiting_on
        while True:
            try:
                sent = yield waiting_on
            except BaseException as e:  # noqa: BLE001 - cancellation etc.: passed into the coroutine
                try:
                    waiting_on = self.coro.throw(e)
                except StopIteration as stop:
                    return stop.value
                continue
            try:
                waiting_on = self.coro.send(sent)
            except StopIteration as stop:
                return stop.value
