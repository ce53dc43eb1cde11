"""Thread-level parallelism for the MF solvers' batched numpy work.

The iALS and Gibbs sweeps spend their time in numpy calls that release the GIL (fancy-index
gathers, batched matmul, batched LAPACK factorisations), on groups of rows that are
independent and write disjoint slices of their outputs. Running those groups on a thread
pool uses every core the process may use and leaves the results bit-identical whatever the
scheduling. While the pool runs, BLAS/LAPACK are held to one thread each (threadpoolctl):
a multi-threaded OpenBLAS on thousands of small [d, d] factorisations spends more time
synchronising its threads than computing (measured 2-4x slower on 2 cores, with or
without the pool), so the parallelism is over groups, never inside one small call.
"""
from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, TypeVar

from threadpoolctl import ThreadpoolController

T = TypeVar("T")


@functools.lru_cache(maxsize=1)
def _controller() -> ThreadpoolController:
    return ThreadpoolController()    # inspects the loaded BLAS libraries once


def workers() -> int:
    """The number of CPUs this process may run on (its affinity mask, not the machine's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:   # not on Linux
        return max(1, os.cpu_count() or 1)


def run_all(fn: Callable[[T], None], items: Iterable[T]) -> None:
    """fn(item) for every item, on `workers()` threads (inline when there is one), with
    single-threaded BLAS meanwhile; the first exception raised by any call is raised here."""
    items = list(items)
    n = workers()
    with _controller().limit(limits=1, user_api="blas"):
        if n == 1 or len(items) < 2:
            for item in items:
                fn(item)
            return
        with ThreadPoolExecutor(max_workers=min(n, len(items))) as pool:
            for _ in pool.map(fn, items):
                pass


def chunks(total: int, parts: int | None = None) -> list[slice]:
    """[0, total) cut into `parts` (default `workers()`) contiguous slices of near-equal size."""
    parts = max(1, min(parts or workers(), total)) if total else 1
    bounds = [total * i // parts for i in range(parts + 1)]
    return [slice(bounds[i], bounds[i + 1]) for i in range(parts)]
