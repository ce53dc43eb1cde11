"""Running a front end's request coroutine without an asyncio Task (`run_request`).

A Task per request cost about 33 us of CPU (its creation, a round through the loop and a
done callback) against 11 us for stepping the coroutine here: on the caller's stack until
it first waits, then from the done callback of the future it waits on. Most requests never
wait (their model call runs inline, `PredictionCore.predict_async`) and are answered
before `run_request` returns; a batched request waits for its batch, a big one for a
model thread.

What a Task does and this does not: cancellation (nothing cancels a request: once read,
it is answered, as TF Serving answers it) and `asyncio.current_task()` (None inside).
"""
from __future__ import annotations

import asyncio
from typing import Callable


def run_request(coro, done: Callable[[object, BaseException | None], None]) -> None:
    """Steps `coro` to its end; done(result, error) once it ends. The coroutine may wait on
    asyncio futures (and bare yields, as asyncio.sleep(0)), as it could in a Task."""
    loop = asyncio.get_running_loop()

    def step(_=None) -> None:
        try:
            waiting_on = coro.send(None)
        except StopIteration as e:
            done(e.value, None)
            return
        except (Exception, asyncio.CancelledError) as e:  # noqa: BLE001 - the front end answers it
            done(None, e)   # (a future it awaited was cancelled: at shutdown, say)
            return
        if waiting_on is None:   # a bare yield: go round the loop once
            loop.call_soon(step)
        elif getattr(waiting_on, "_asyncio_future_blocking", None):
            waiting_on._asyncio_future_blocking = False   # as Task does: the wait is taken over
            waiting_on.add_done_callback(step)
        else:
            coro.close()
            done(None, RuntimeError(f"request coroutine yielded {waiting_on!r}, not an asyncio future"))

    step()
