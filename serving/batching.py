"""Optional server-side batching (`movierec serve --enable_batching`).

Concurrent Predict calls on the same servable and signature, with the same input aliases,
equal scalar inputs (e.g. `k`) and equal trailing dimensions, are merged into one
signature call along the batch dimension and the outputs are split back per request.
A top-10 call's cost is mostly per call, not per row, so a call on 8 users costs little
more than a call on one: under concurrency the server does several times less work per
request.

`LoopBatcher` runs on the server's asyncio loop: requests that arrive within
`timeout_micros` of a group's first one (0: those read in the same pass of the loop) are
merged, up to `max_batch_size` rows; the merged call (`run_group`) is made by the server's
`run` function (inline on the loop when small, else in a model thread).
If a merged call fails, each request of the group is run alone, so one bad request never
fails its neighbours and every request gets its own answer or error.
"""
from __future__ import annotations

import asyncio

import numpy as np


class _Pending:
    __slots__ = ("inputs", "rows", "result", "error")

    def __init__(self, inputs: dict, rows: int):
        self.inputs, self.rows = inputs, rows
        self.result = None
        self.error = None


def group_key(servable, signature_name: str, inputs: dict, output_filter) -> tuple | None:
    """Requests with equal keys can be merged; None: this request cannot be batched."""
    parts = []
    rows = None
    for alias in sorted(inputs):
        value = np.asarray(inputs[alias])
        if value.ndim == 0:
            parts.append((alias, "scalar", value.dtype.str,
                          value.tobytes() if value.dtype != object else repr(value.item())))
            continue
        if rows is None:
            rows = value.shape[0]
        elif value.shape[0] != rows:
            if value.shape[0] != 0:
                return None
        parts.append((alias, value.shape[1:], value.dtype.str, value.shape[0] == 0))
    if rows is None:
        return None
    return (id(servable), signature_name, tuple(output_filter), tuple(parts))


def batch_rows(inputs: dict) -> int:
    return next(v.shape[0] for v in inputs.values() if v.ndim)


def run_group(servable, signature_name, output_filter, group: list[_Pending]) -> None:
    """One merged call for `group`, results split back; if the merged call fails, one call
    per request. Sets each request's `result` or `error`."""
    if len(group) > 1 and _merged_call(servable, signature_name, output_filter, group):
        return
    for p in group:
        try:
            p.result = servable.predict(signature_name, p.inputs, output_filter)
        except Exception as e:  # noqa: BLE001 - handed to that request's caller
            p.error = e


def _merged_call(servable, signature_name, output_filter, group: list[_Pending]) -> bool:
    """Sets every `result` from one call on the concatenated inputs; False if that call
    failed (the caller then runs each request alone, so each gets its own error)."""
    merged = {}
    for alias, first in group[0].inputs.items():
        if first.ndim == 0 or first.shape[0] == 0:  # a scalar, or an empty optional input
            merged[alias] = first
        else:
            merged[alias] = np.concatenate([p.inputs[alias] for p in group], axis=0)
    total = sum(p.rows for p in group)
    try:
        outputs = servable.predict(signature_name, merged, output_filter)
    except Exception:  # noqa: BLE001 - any failure: answer the requests one by one
        return False
    if any(np.ndim(v) == 0 or np.shape(v)[0] != total for v in outputs.values()):
        return False   # outputs without a batch dimension cannot be split
    start = 0
    for p in group:
        p.result = {a: v[start:start + p.rows] for a, v in outputs.items()}
        start += p.rows
    return True


class LoopBatcher:
    """Batching on an asyncio loop: `await submit(...)` from the loop's thread.

    run(servable, signature_name, output_filter, group, rows) -> awaitable that makes the
    merged call (`run_group`) however the server chooses (inline or on a model thread).
    """

    def __init__(self, run, max_batch_size: int = 256, timeout_micros: int = 0):
        if max_batch_size < 1 or timeout_micros < 0:
            raise ValueError(f"max_batch_size must be >= 1 and timeout_micros >= 0, got "
                             f"{max_batch_size}, {timeout_micros}")
        self.run = run
        self.max_batch_size = max_batch_size
        self.timeout = timeout_micros / 1e6
        self._groups: dict[tuple, tuple[list[_Pending], list[asyncio.Future]]] = {}
        self.calls = 0      # merged signature calls made (more than one request)
        self.requests = 0   # requests answered through the batcher

    async def submit(self, servable, signature_name: str, inputs: dict, output_filter=()) -> dict:
        inputs = {a: np.asarray(v) for a, v in inputs.items()}
        key = group_key(servable, signature_name, inputs, output_filter)
        me = _Pending(inputs, batch_rows(inputs) if key is not None else 0)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if key is None:
            await self._flush_group(servable, signature_name, output_filter, [me], [future])
        else:
            entry = self._groups.get(key)
            if entry is None:
                entry = self._groups[key] = ([], [])
                if self.timeout:
                    loop.call_later(self.timeout, self._flush, key, servable, signature_name, output_filter)
                else:
                    loop.call_soon(self._flush, key, servable, signature_name, output_filter)
            entry[0].append(me)
            entry[1].append(future)
            if sum(p.rows for p in entry[0]) >= self.max_batch_size:
                self._flush(key, servable, signature_name, output_filter)
        return await future

    def _flush(self, key, servable, signature_name, output_filter) -> None:
        entry = self._groups.pop(key, None)
        if entry is not None:   # not already flushed for being full
            asyncio.ensure_future(self._flush_group(servable, signature_name, output_filter, *entry))

    async def _flush_group(self, servable, signature_name, output_filter, group, futures) -> None:
        # a request cancelled while it waited for company (its client reset or went away)
        # is dropped here, so its rows are never computed
        live = [(p, f) for p, f in zip(group, futures) if not f.done()]
        if not live:
            return
        group, futures = [p for p, _ in live], [f for _, f in live]
        if len(group) > 1:
            self.calls += 1
        self.requests += len(group)
        try:
            await self.run(servable, signature_name, output_filter, group, sum(p.rows for p in group))
        except BaseException as e:  # noqa: BLE001 - every waiting request must be answered
            for p in group:
                if p.result is None and p.error is None:
                    p.error = e
        for p, f in zip(group, futures):
            if f.done():        # the request was cancelled (its client went away)
                continue
            if p.error is not None:
                f.set_exception(p.error)
            else:
                f.set_result(p.result)
