"""Reading runs back from ML Metadata (`movierec.metadata`) and what the summary, `movierec
report` and the retrain demo take from it, on a hand-made store of three runs:

  run-1  Trainer.mf COMPLETE (model_run R1), Evaluator.mf COMPLETE (evaluation E1, blessing
         blessed=1), Pusher.mf COMPLETE (pushed 1, version 100)
  run-2  Evaluator.mf COMPLETE (E2, blessed=0), Pusher.mf COMPLETE (pushed 0: not blessed),
         Evaluator.content FAILED
  run-3  Evaluator.mf CACHED (reuses E2 and its blessing), Pusher.mf RUNNING (killed)
"""
import json
import os

import pytest

from movierec import metadata, retrain_demo, summary
from movierec.config import PipelineConfig
from tests.mlmd_fixtures import HandMadeStore

T = 1_700_000_000_000   # ms since the epoch


def _folder(path: str, files: dict) -> str:
    for name, content in files.items():
        os.makedirs(os.path.dirname(os.path.join(path, name)), exist_ok=True)
        with open(os.path.join(path, name), "w") as f:
            f.write(json.dumps(content))
    return path


@pytest.fixture
def runs(tmp_path):
    config = PipelineConfig.from_output_dir(str(tmp_path / "data"), str(tmp_path / "out"))
    made = HandMadeStore(config.metadata_path)
    root = config.pipeline_root
    r1 = made.artifact("ModelRun", _folder(f"{root}/Trainer.mf/model_run/3",
                                           {"training_metrics.json": {"warm_start": {"used": False}}}))
    e1 = made.artifact("ModelEvaluation", _folder(f"{root}/Evaluator.mf/evaluation/5",
                                                  {"metrics.json": {"candidate": {"ndcg@10": 0.21}, "reasons": ["first"]}}))
    b1 = made.artifact("ModelBlessing", f"{root}/Evaluator.mf/blessing/5", blessed=1)
    version = _folder(f"{config.serving_root}/mf/100", {"assets.extra/movierec.json": {"epochs": 3}})
    p1 = made.artifact("PushedModel", f"{root}/Pusher.mf/pushed_model/6", pushed=1, pushed_version="100",
                       pushed_destination=version)
    made.execution("run-1", "Trainer.mf", "COMPLETE", T, T + 30_000, {"model_run": [r1]})
    made.execution("run-1", "Evaluator.mf", "COMPLETE", T + 31_000, T + 35_000, {"evaluation": [e1], "blessing": [b1]})
    made.execution("run-1", "Pusher.mf", "COMPLETE", T + 36_000, T + 36_500, {"pushed_model": [p1]})

    e2 = made.artifact("ModelEvaluation", _folder(f"{root}/Evaluator.mf/evaluation/9",
                                                  {"metrics.json": {"candidate": {"ndcg@10": 0.19}, "reasons": ["worse"]}}))
    b2 = made.artifact("ModelBlessing", f"{root}/Evaluator.mf/blessing/9", blessed=0)
    p2 = made.artifact("PushedModel", f"{root}/Pusher.mf/pushed_model/10", pushed=0)
    made.execution("run-2", "Evaluator.mf", "COMPLETE", T + 100_000, T + 104_000, {"evaluation": [e2], "blessing": [b2]})
    made.execution("run-2", "Pusher.mf", "COMPLETE", T + 105_000, T + 105_200, {"pushed_model": [p2]})
    made.execution("run-2", "Evaluator.content", "FAILED", T + 106_000, T + 106_900)

    made.execution("run-3", "Evaluator.mf", "CACHED", T + 200_000, T + 200_400, {"evaluation": [e2], "blessing": [b2]})
    made.execution("run-3", "Pusher.mf", "RUNNING", T + 201_000)
    return config, made, {"e1": e1, "e2": e2, "p1": p1, "p2": p2}


def test_runs_and_their_component_executions(runs):
    config, made, _ = runs
    store = metadata.open_store(config.metadata_path)
    assert metadata.run_ids(store, "movierec") == ["run-1", "run-2", "run-3"]
    assert metadata.run_ids(store, "another-pipeline") == []
    newest = metadata.component_executions(store, "movierec")
    assert [(e.node_id, e.state, e.finished, e.cached) for e in newest] == [
        ("Evaluator.mf", "CACHED", True, True), ("Pusher.mf", "RUNNING", False, False)]
    assert newest[0].started == (T + 200_000) / 1000 and newest[0].seconds == pytest.approx(0.4)
    second = metadata.component_executions(store, "movierec", "run-2")
    assert [(e.node_id, e.state, round(e.seconds, 3)) for e in second] == [
        ("Evaluator.mf", "COMPLETE", 4.0), ("Pusher.mf", "COMPLETE", 0.2), ("Evaluator.content", "FAILED", 0.9)]
    assert metadata.component_executions(store, "movierec", "no-such-run") == []


def test_latest_outputs_skip_failed_and_running_executions_and_follow_the_cache(runs):
    config, _, ids = runs
    store = metadata.open_store(config.metadata_path)
    # run-3's cached Evaluator.mf points at run-2's evaluation
    assert metadata.latest_output(store, "movierec", "Evaluator.mf", "evaluation").id == ids["e2"]
    assert metadata.latest_output(store, "movierec", "Evaluator.mf", "no-such-output") is None
    assert metadata.latest_execution(store, "movierec", "Evaluator.content") is None   # only FAILED
    assert metadata.latest_output(store, "movierec", "Trainer.content", "model_run") is None   # never ran
    # run-3's Pusher.mf is still RUNNING: the newest finished pushes are run-2's, then run-1's
    assert [a.id for a in metadata.latest_outputs(store, "movierec", "Pusher.mf", "pushed_model")] == [
        ids["p2"], ids["p1"]]
    pushed = metadata.latest_outputs(store, "movierec", "Pusher.mf", "pushed_model")[1]
    assert metadata.custom_property(pushed, "pushed") == 1
    assert metadata.custom_property(pushed, "pushed_version") == "100"
    assert metadata.custom_property(pushed, "no-such-property", "none") == "none"


def test_summary_reads_the_newest_evaluation_blessing_and_push(runs):
    config, _, _ = runs
    evaluation = summary.latest_evaluation(config, "mf")
    assert evaluation.folder == f"{config.pipeline_root}/Evaluator.mf/evaluation/9"
    assert evaluation.blessed is False and evaluation.metrics["candidate"] == {"ndcg@10": 0.19}
    assert summary.verdict_lines(evaluation) == [
        "  mf: NOT BLESSED - worse", f"    report: {config.pipeline_root}/Evaluator.mf/evaluation/9/report.html"]
    assert summary.latest_evaluation(config, "content") is None
    # run-2's push pushed nothing (not blessed): version 100 of run-1 is what is served
    push = summary.latest_push(config, "mf")
    assert (push.version, push.folder, push.meta) == (100, f"{config.serving_root}/mf/100", {"epochs": 3})
    assert summary.served_versions(config, ("mf", "content")) == {"mf": 100, "content": None}
    assert retrain_demo.newest_training_metrics(config, "mf") == {"warm_start": {"used": False}}
    assert retrain_demo.newest_training_metrics(config, "content") == {}


def test_before_any_run_there_is_nothing_to_read(tmp_path):
    config = PipelineConfig.from_output_dir(str(tmp_path / "data"), str(tmp_path / "out"))
    assert metadata.open_store(config.metadata_path) is None
    assert summary.latest_evaluation(config, "mf") is None
    assert summary.served_versions(config, ("mf",)) == {"mf": None}
    assert retrain_demo.newest_training_metrics(config, "mf") == {}


def test_an_evaluation_whose_files_are_gone_is_named(runs):
    config, _, _ = runs
    os.remove(f"{config.pipeline_root}/Evaluator.mf/evaluation/9/metrics.json")
    with pytest.raises(FileNotFoundError, match="Evaluator.mf's evaluation .*/evaluation/9 has no metrics.json"):
        summary.latest_evaluation(config, "mf")
