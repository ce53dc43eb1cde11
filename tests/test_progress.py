"""Progress lines and timings read from ML Metadata (`movierec.progress.RunProgress`), on a
hand-made store whose executions change between polls as a run's would.

The real runs' progress (LocalDagRunner, the whole pipeline) is checked in
tests/test_retrain_e2e.py against the executions those runs recorded.
"""
import io
import subprocess
import sys

import pytest

from movierec.progress import ComponentTiming, RunProgress
from tests.mlmd_fixtures import HandMadeStore

T = 1_000_000_000   # ms since the epoch: when the run's first component started


@pytest.fixture
def store(tmp_path):
    made = HandMadeStore(str(tmp_path / "metadata.sqlite"))
    # an earlier run killed mid-way: its ExampleGen stays RUNNING and must never be shown
    made.execution("2026-01-01T00:00:00", "MovieLensExampleGen", "RUNNING", T - 50_000)
    return made


def _progress(store, out):
    # the thread never polls by itself here: the test polls after each change
    return RunProgress(store.path, "movierec", 4, stream=out, poll_seconds=3600)


def test_one_line_per_component_with_its_mlmd_wall_time(store):
    out = io.StringIO()
    progress = _progress(store, out)
    progress.start()
    progress.poll()
    assert out.getvalue() == ""                                   # this run has not started yet
    example_gen = store.execution("run-2", "MovieLensExampleGen", "RUNNING", T)
    progress.poll()
    assert out.getvalue() == "  [1/4] MovieLensExampleGen ..."
    store.update(example_gen, "COMPLETE", T + 2_500)
    store.execution("run-2", "Transform", "CACHED", T + 3_000, T + 3_300)   # started and reused between polls
    progress.poll()
    progress.poll()                                               # nothing new: nothing printed
    trainer = store.execution("run-2", "Trainer.mf", "RUNNING", T + 4_000)
    progress.poll()
    store.update(trainer, "FAILED", T + 16_000)
    progress.stop()                                               # the last poll prints the failure
    assert out.getvalue() == ("  [1/4] MovieLensExampleGen ... done in 2.5 s\n"
                              "  [2/4] Transform ... done in 0.3 s (cached)\n"
                              "  [3/4] Trainer.mf ... failed after 12.0 s\n")
    assert progress.run_id == "run-2"
    assert progress.timings == [ComponentTiming("MovieLensExampleGen", 2.5, False),
                                ComponentTiming("Transform", pytest.approx(0.3), True)]
    assert progress.failed_component() == "Trainer.mf"


def test_a_component_still_running_when_the_run_stops_is_named(store):
    out = io.StringIO()
    with _progress(store, out) as progress:
        store.execution("run-2", "MovieLensExampleGen", "COMPLETE", T, T + 1_000)
        store.execution("run-2", "StatisticsGen", "RUNNING", T + 1_200)
    assert out.getvalue() == ("  [1/4] MovieLensExampleGen ... done in 1.0 s\n"
                              "  [2/4] StatisticsGen ...\n")
    assert progress.failed_component() == "StatisticsGen"
    assert progress.timings == [ComponentTiming("MovieLensExampleGen", 1.0, False)]


def test_no_store_yet_and_a_run_that_fails_before_any_component(tmp_path):
    out = io.StringIO()
    with RunProgress(str(tmp_path / "metadata.sqlite"), "movierec", 4, stream=out, poll_seconds=0.01) as progress:
        pass
    assert out.getvalue() == "" and progress.timings == [] and progress.failed_component() is None


def test_a_poll_while_the_pipeline_holds_the_write_lock_prints_nothing_and_the_next_one_catches_up(store):
    """Another process holds SQLite's exclusive lock (as a writer does while it commits; a
    process, since POSIX locks do not keep apart two SQLite libraries in one process)."""
    out = io.StringIO()
    progress = _progress(store, out)
    progress.start()
    store.execution("run-2", "MovieLensExampleGen", "COMPLETE", T, T + 1_000)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
                               "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); sys.stdin.read()",
         store.path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        progress.poll()                     # waits out MLMD's busy handler, then gives up quietly
        assert out.getvalue() == ""
    finally:
        holder.communicate("")              # its stdin closes: it exits, the lock goes
    progress.stop()
    assert out.getvalue() == "  [1/4] MovieLensExampleGen ... done in 1.0 s\n"
