"""Scheduled retraining, really run: spans arriving, warm start, idempotent repeats, a
retrain killed mid-way and re-run, and Beam's multi-processing DirectRunner.

The retrain demo (`make retrain-demo` on ML-100k) runs here in CI size: a small synthetic
dataset cut into 3 spans by time.
"""
import contextlib
import io
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from ml_metadata.proto import metadata_store_pb2

from movierec import cli, metadata, retrain_demo
from movierec.components.data import spans
from movierec.config_file import parse_gate
from movierec.pipeline.pipeline import COMPONENT_IDS
from movierec.serving import versions
from tests.conftest import mlmd_store

pytestmark = pytest.mark.slow

# Small and fast; with no baseline rule a model is blessed unless it is worse than the
# last blessed one on a gated metric (ndcg@10, and rmse for mf), so pushes follow the
# candidates' quality.
RUN_ARGS = ["--epochs", "20", "--batch-size", "256", "--embedding-dim", "8",
            "--gate", "mf=ndcg@10:none", "--gate", "mf=rmse:none", "--gate", "content=ndcg@10:none"]
# the same settings as movierec.yaml's keys, for the demo's library call
SETTINGS = {"mf": {"epochs": 20, "batch_size": 256, "embedding_dim": 8},
            "evaluation": {"overrides": tuple(parse_gate(g) for g in ("mf=ndcg@10:none", "mf=rmse:none",
                                                                        "content=ndcg@10:none"))}}


_store = mlmd_store


@pytest.fixture(scope="module")
def dataset(small_synthetic):
    return small_synthetic


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, dataset):
    """The demo's rows and everything it printed (the runs' progress lines included)."""
    out = str(tmp_path_factory.mktemp("demo") / "retrain-demo")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rows = retrain_demo.run(dataset, out, n_spans=3, settings=SETTINGS, log=print)
    return out, rows, printed.getvalue()


@pytest.fixture(scope="module")
def demo(demo_run):
    return demo_run[:2]


def test_the_settings_are_those_of_the_retrain_flags(tmp_path):
    inbox, output = str(tmp_path / "in"), str(tmp_path / "out")
    assert retrain_demo.retrain_config(inbox, output, SETTINGS) == cli.config_from_flags(
        ["retrain", "--data-dir", inbox, "--output-dir", output, *RUN_ARGS])


def test_each_run_prints_one_progress_line_per_component_with_its_mlmd_time(demo_run):
    """Every run's lines name each component once, numbered in the order they started, with
    the wall time and cache state of its execution in ML Metadata."""
    out, rows, printed = demo_run
    store = _store(os.path.join(out, "output"))
    runs = metadata.run_ids(store, "movierec")
    sections = printed.split("=== retrain: ")[1:]
    assert len(runs) == len(sections) == len(rows) == 4
    n = len(COMPONENT_IDS)
    line = re.compile(rf"^  \[(\d+)/{n}\] (\S+) \.\.\. done in ([\d.]+) s( \(cached\))?$", re.M)
    for run_id, section in zip(runs, sections):
        shown = line.findall(section)
        executions = metadata.component_executions(store, "movierec", run_id)
        assert [int(i) for i, *_ in shown] == list(range(1, n + 1)), section
        assert sorted(name for _, name, *_ in shown) == sorted(COMPONENT_IDS)
        assert [(name, seconds, bool(cached)) for _, name, seconds, cached in shown] == [
            (e.node_id, f"{e.seconds:.1f}", e.cached) for e in executions]
    for row, run_id in zip(rows, runs):   # the timings run_once returns: the same executions'
        executions = metadata.component_executions(store, "movierec", run_id)
        assert row["components"] == [{"component": e.node_id, "seconds": round(e.seconds, 1), "cached": e.cached}
                                     for e in executions]
    repeat = line.findall(sections[-1])
    assert all(cached for _, name, _, cached in repeat if not name.startswith("LatestBlessed")), sections[-1]


def test_each_span_is_read_with_its_window_and_recorded_in_metadata(demo):
    out, rows = demo
    assert [r["run"] for r in rows] == ["span 1", "span 2", "span 3", "repeat (no new span)"]
    store = _store(os.path.join(out, "output"))
    examples = [a for a in store.get_artifacts_by_type("Examples")
                if "MovieLensExampleGen" in a.uri]
    assert sorted(a.custom_properties["span"].int_value for a in examples) == [1, 2, 3]
    complete = metadata_store_pb2.Execution.COMPLETE
    cached = metadata_store_pb2.Execution.CACHED
    assert all(e.last_known_state in (complete, cached) for e in store.get_executions())


def _users_in_spans(out: str, last_span: int) -> int:
    """Distinct users in span-1 .. span-<last_span> of the demo's split (ml-latest CSVs)."""
    users = set()
    for span in range(1, last_span + 1):
        with open(os.path.join(out, "spans", f"span-{span}", "ratings.csv")) as f:
            users.update(line.split(",", 1)[0] for line in list(f)[1:])
    return len(users)


def test_mf_warm_starts_from_the_last_blessed_model(demo):
    out, rows = demo
    first = rows[0]["models"]["mf"]
    assert first["warm_start"] == {"used": False, "reason": "no blessed MF model yet"}
    for span, row in zip((2, 3), rows[1:3]):
        warm = row["models"]["mf"]["warm_start"]
        assert warm["used"], row
        assert warm["users_kept"] > 0 and warm["movies_kept"] > 0
        # the users of the window (spans 1..span): those of the last model kept, the rest new
        assert warm["users_kept"] + warm["users_new"] == _users_in_spans(out, span)


def test_a_version_is_pushed_exactly_when_blessed(demo):
    out, rows = demo
    for row in rows[:3]:
        for name, m in row["models"].items():
            assert m["new_version"] == bool(m["blessed"]), (row["run"], name, m)
    assert rows[0]["models"]["mf"]["new_version"]   # the first model has nothing to lose to
    pushed = sum(m["new_version"] for r in rows[:3] for m in r["models"].values())
    on_disk = sum(len(versions.list_versions(os.path.join(out, "output", "serving", n))) for n in ("mf", "content"))
    assert on_disk == pushed


def test_a_repeat_with_no_new_span_pushes_nothing_and_retrains_nothing(demo):
    out, rows = demo
    repeat, last = rows[3], rows[2]
    for name in ("mf", "content"):
        assert not repeat["models"][name]["new_version"]
        assert repeat["models"][name]["served_version"] == last["models"][name]["served_version"]
    # the repeat's pipeline run reused every execution (cache hit on the unchanged spans);
    # the Resolvers always run (they only look up the last blessed model)
    store = _store(os.path.join(out, "output"))
    last_run = {e.node_id: e.state for e in metadata.component_executions(store, "movierec")}
    assert sorted(last_run) == sorted(COMPONENT_IDS)
    for component in COMPONENT_IDS:
        assert last_run[component] == ("COMPLETE" if component.startswith("LatestBlessed.") else "CACHED"), last_run
    assert "repeat" in retrain_demo.table(rows)


def _start_retrain(args):
    return subprocess.Popen([sys.executable, "-u", "-m", "movierec.cli", "retrain", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def _kill_when(args, marker: bytes, delay: float = 0.0) -> str:
    """Starts `movierec retrain`, SIGKILLs its process group `delay` s after `marker` shows in
    its progress output; returns what it printed."""
    proc = _start_retrain(args)
    seen = b""
    deadline = time.time() + 600
    while marker not in seen:
        chunk = os.read(proc.stdout.fileno(), 4096)
        assert chunk and time.time() < deadline, seen.decode(errors="replace")[-3000:]
        seen += chunk
    time.sleep(delay)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return seen.decode(errors="replace")


def _no_partial_version_visible(serving: str) -> None:
    for name in ("mf", "content"):
        folder = os.path.join(serving, name)
        if not os.path.isdir(folder):
            continue
        for entry in os.listdir(folder):
            if not entry.startswith("."):   # hidden: the pusher's staging folders
                assert versions.list_versions(folder) and entry.isdigit(), (folder, os.listdir(folder))
                assert os.path.isfile(os.path.join(folder, entry, "saved_model.pb"))


def test_a_retrain_killed_at_every_stage_completes_when_run_again(tmp_path, dataset):
    """SIGKILL during Transform, during a Trainer, and as the Pushers start; each re-run
    picks up from ML Metadata's cache, and no half-written version is ever visible."""
    inbox = str(tmp_path / "input")
    spans.split_spans(dataset, str(tmp_path / "spans"), count=2)
    os.makedirs(inbox)
    os.rename(spans.span_dir(str(tmp_path / "spans"), 1), spans.span_dir(inbox, 1))
    out = str(tmp_path / "out")
    serving = os.path.join(out, "serving")
    args = ["--data-dir", inbox, "--output-dir", out, *RUN_ARGS]
    _kill_when(args, b"Transform ...", delay=3.0)            # mid-Transform
    _no_partial_version_visible(serving)
    printed = _kill_when(args, b"Trainer.", delay=1.0)       # mid-way through the first Trainer
    assert re.search(rb"MovieLensExampleGen \.\.\. done in [\d.]+ s \(cached\)", printed.encode()), printed
    _no_partial_version_visible(serving)
    _kill_when(args, b"Pusher.")                             # a Pusher starts
    _no_partial_version_visible(serving)

    assert cli.main(["retrain", *args]) == 0
    _no_partial_version_visible(serving)
    assert len(versions.list_versions(os.path.join(serving, "mf"))) == 1
    assert len(versions.list_versions(os.path.join(serving, "content"))) == 1
    store = _store(out)
    states: dict = {}   # node id -> the state of its execution in each run, oldest run first
    for run_id in metadata.run_ids(store, "movierec"):
        for e in metadata.component_executions(store, "movierec", run_id):
            states.setdefault(e.node_id, []).append(e.state)
    # trained to completion once each (in the third attempt), reused from the cache afterwards
    assert states["Trainer.mf"].count("COMPLETE") == 1 and states["Trainer.content"].count("COMPLETE") == 1, states
    assert states["Transform"].count("COMPLETE") == 1, states
    # the killed attempts left their executions unfinished; none of them is reported complete
    assert set(sum(states.values(), [])) <= {"COMPLETE", "CACHED", "RUNNING", "NEW"}, states


def test_example_gen_runs_on_beams_multiprocessing_direct_runner(tmp_path, dataset):
    """The Beam-based ExampleGen under `--direct_running_mode=multi_processing` with 2 worker
    processes: every rating arrives as a Parquet row, split train/eval."""
    import pyarrow.parquet as pq
    import tensorflow as tf
    from tfx.orchestration import metadata as tfx_metadata
    from tfx.orchestration import pipeline as tfx_pipeline
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    from movierec.components.movielens_example_gen.component import MovieLensExampleGen

    gen = MovieLensExampleGen(input_base=dataset, eval_percent=20)
    LocalDagRunner().run(tfx_pipeline.Pipeline(
        pipeline_name="mp", pipeline_root=str(tmp_path / "root"), components=[gen],
        metadata_connection_config=tfx_metadata.sqlite_metadata_connection_config(str(tmp_path / "m.sqlite")),
        beam_pipeline_args=["--runner=FnApiRunner", "--direct_running_mode=multi_processing",
                            "--direct_num_workers=2", "--requirements_file=/dev/null"]))
    store = mlmd_store(str(tmp_path / "m.sqlite"))
    [examples] = store.get_artifacts_by_type("Examples")
    counts = {}
    for split in ("train", "eval"):
        files = tf.io.gfile.glob(os.path.join(examples.uri, f"Split-{split}", "*.parquet"))
        counts[split] = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    assert counts["train"] + counts["eval"] == 4000
    assert 0.1 < counts["eval"] / 4000 < 0.3
