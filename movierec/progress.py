"""Progress of a LocalDagRunner run, read from ML Metadata while the run goes on.

`RunProgress` polls the run's ML Metadata store from a thread (`movierec.metadata`): when a
component's execution appears it prints `  [i/N] <node id> ...`, and when the execution
finishes it ends the line with its wall time, ` done in 12.3 s` (plus ` (cached)` for a
reused execution, or ` failed after 1.2 s`). i counts the components in the order they
started, N is the number of components in the pipeline. The timings of the summary are the
same executions' MLMD times (`ComponentTiming`).

The run is told apart from earlier runs in the same store by its `pipeline_run` context:
the one that did not exist before the run started. The SQLite file is opened read-only once
it exists and kept open for the run; each poll is a few short read transactions and holds
no lock in between. A poll that finds the file missing, not yet initialised or locked by
the writing pipeline prints nothing, and the next poll tries again.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import sys
import threading
import time
from typing import TextIO

from movierec import metadata

POLL_SECONDS = 0.5
_log = logging.getLogger(__name__)


@dataclasses.dataclass
class ComponentTiming:
    component: str
    seconds: float
    cached: bool


class RunProgress:
    """Progress lines and timings of the next run of `pipeline_name` recorded in the SQLite
    store at `metadata_path`. Use as a context manager around the run:

        with RunProgress(path, "movierec", 13) as progress:
            LocalDagRunner().run(...)
        progress.timings   # ComponentTiming per component, in the order they started

    The store is opened with each call tried once (`metadata.open_store`): a locked store
    waits for the next poll rather than holding this one up with MLMD's retries.
    """

    def __init__(self, metadata_path: str, pipeline_name: str, component_count: int,
                 stream: TextIO | None = None, poll_seconds: float = POLL_SECONDS):
        self.metadata_path, self.pipeline_name = metadata_path, pipeline_name
        self.component_count, self.poll_seconds = component_count, poll_seconds
        self.stream = stream or sys.stdout
        self._store = None
        self.run_id: str | None = None
        self._earlier_runs: set[str] | None = None  # None: not known (see `start`)
        self._started_ms = 0
        self._node_ids: dict[int, str] = {}          # execution id -> node id (fixed once seen)
        self._seen: dict[int, metadata.ComponentExecution] = {}
        self._position: dict[int, int] = {}          # execution id -> i of its line
        self._ended: set[int] = set()
        self._open_line: int | None = None           # execution whose "... " line awaits its end
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()                # one poll at a time (thread and final poll)

    # -- the thread ------------------------------------------------------------------------
    def __enter__(self) -> "RunProgress":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        """Notes the runs already in the store, then polls every `poll_seconds` in a thread."""
        self._started_ms = int(time.time() * 1000)
        earlier = self._read(lambda store: metadata.run_ids(store, self.pipeline_name))
        if earlier is not None or not os.path.isfile(self.metadata_path):   # local-only: MLMD's SQLite
            self._earlier_runs = set(earlier or ())
        # else unreadable now: a run counts as this one when its context was created after now
        self._thread = threading.Thread(target=self._loop, name="mlmd-progress", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops the thread and polls once more, so the last component's end is printed."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.poll()
        self._store = None                # closes the connection
        if self._open_line is not None:   # left running (the process goes on to report why)
            print(flush=True, file=self.stream)
            self._open_line = None

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.poll()

    # -- one poll --------------------------------------------------------------------------
    def _read(self, query):
        """`query(store)` on the read-only store; None when the store is not there yet or
        cannot be read now (locked by the writer, schema not yet created)."""
        try:
            if self._store is None:
                self._store = metadata.open_store(self.metadata_path, attempts=1)
            return None if self._store is None else query(self._store)
        except Exception as e:  # noqa: BLE001 - progress must never stop the run; the next poll retries
            from ml_metadata import errors  # noqa: PLC0415

            if not isinstance(e, errors.AbortedError):   # not the writer's lock: reopen next time
                self._store = None
            _log.debug("ML Metadata not readable this poll: %s", e)
            return None

    def _executions(self, store) -> list[metadata.ComponentExecution]:
        if self.run_id is None:
            new = [c.name for c in metadata.run_contexts(store, self.pipeline_name)
                   if c.name not in (self._earlier_runs or ())
                   and (self._earlier_runs is not None or c.create_time_since_epoch >= self._started_ms)]
            if not new:
                return []
            self.run_id = new[-1]
        found = []
        for execution in metadata.run_executions(store, self.run_id):
            if execution.id not in self._node_ids:
                node_id = metadata.node_id_of(store, execution.id, self.pipeline_name)
                if node_id is None:
                    continue
                self._node_ids[execution.id] = node_id
            found.append(metadata.component_execution(execution, self._node_ids[execution.id]))
        return found

    def poll(self) -> None:
        """Reads the run's executions once and prints what changed since the last poll."""
        with self._lock:
            executions = self._read(self._executions)
            for e in executions or ():
                self._seen[e.execution_id] = e
                if e.execution_id not in self._position:
                    self._print_start(e)
                if e.finished and e.execution_id not in self._ended:
                    self._print_end(e)

    def _print_start(self, e: metadata.ComponentExecution) -> None:
        if self._open_line is not None:   # another component still running: its line ends here
            print(flush=True, file=self.stream)
            self._open_line = None
        self._position[e.execution_id] = len(self._position) + 1
        print(f"  {self._label(e)} ...", end="", flush=True, file=self.stream)
        self._open_line = e.execution_id

    def _print_end(self, e: metadata.ComponentExecution) -> None:
        self._ended.add(e.execution_id)
        if self._open_line != e.execution_id:   # its start line was ended by another's
            print(f"  {self._label(e)} ...", end="", file=self.stream)
        self._open_line = None
        if e.state == "FAILED":
            print(f" failed after {e.seconds:.1f} s", flush=True, file=self.stream)
        else:
            print(f" done in {e.seconds:.1f} s{' (cached)' if e.cached else ''}", flush=True, file=self.stream)

    def _label(self, e: metadata.ComponentExecution) -> str:
        return f"[{self._position[e.execution_id]}/{self.component_count}] {e.node_id}"

    # -- results ---------------------------------------------------------------------------
    @property
    def timings(self) -> list[ComponentTiming]:
        """The finished components' MLMD wall times, in the order they started (failed ones left out)."""
        return [ComponentTiming(e.node_id, e.seconds, e.cached)
                for e in sorted(self._seen.values(), key=lambda e: self._position[e.execution_id])
                if e.finished and e.state != "FAILED"]

    def failed_component(self) -> str | None:
        """The node id of the run's failed (else still running) execution; None if none was seen."""
        for state in ("FAILED", "RUNNING", "NEW"):
            for e in self._seen.values():
                if e.state == state:
                    return e.node_id
        return None
