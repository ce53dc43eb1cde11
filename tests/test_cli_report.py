"""`movierec report` and `movierec serve`'s model discovery: the CLI parses and prints, the
library (`movierec.summary` over ML Metadata, `movierec.serving.served_models`) decides."""
import json
import os

import pytest

from movierec import cli, config_file
from movierec.config import PipelineConfig
from movierec.serving import served_models
from tests.mlmd_fixtures import HandMadeStore


def _evaluation(made: HandMadeStore, root: str, run_id: str, number: int, blessed: int, reasons: list[str],
                state: str = "COMPLETE", started_ms: int = 0) -> None:
    folder = f"{root}/Evaluator.mf/evaluation/{number}"
    os.makedirs(folder)
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        json.dump({"reasons": reasons}, f)
    evaluation = made.artifact("ModelEvaluation", folder)
    blessing = made.artifact("ModelBlessing", f"{root}/Evaluator.mf/blessing/{number}", blessed=blessed)
    made.execution(run_id, "Evaluator.mf", state, started_ms, started_ms + 1000,
                   {"evaluation": [evaluation], "blessing": [blessing]})


def test_report_prints_the_newest_evaluation_in_ml_metadata_and_the_latest_config(tmp_path, capsys):
    """Two runs evaluated mf; the second's Evaluator failed after writing a folder: report
    shows the first's verdict (its blessing artifact), whatever folders exist."""
    out = str(tmp_path / "out")
    config = PipelineConfig.from_output_dir("/data", out)
    made = HandMadeStore(config.metadata_path)
    _evaluation(made, config.pipeline_root, "run-1", 4, 1, ["ndcg@10 0.2 beats popularity 0.1"])
    _evaluation(made, config.pipeline_root, "run-2", 8, 0, ["written, then failed"], state="FAILED",
                started_ms=60_000)
    config_file.save_effective(config, "run", when=0)
    assert cli.main(["report", "--output-dir", out]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[:2] == ["mf: BLESSED - ndcg@10 0.2 beats popularity 0.1",
                           f"  report: {config.pipeline_root}/Evaluator.mf/evaluation/4/report.html"]
    assert printed[3] == f"config of the latest run ({config.pipeline_root}/effective_config/19700101T000000Z-run.yaml):"
    assert "  data_dir: /data" in printed


def test_report_names_an_evaluation_whose_files_are_gone(tmp_path, capsys):
    out = str(tmp_path / "out")
    config = PipelineConfig.from_output_dir("/data", out)
    _evaluation(HandMadeStore(config.metadata_path), config.pipeline_root, "run-1", 4, 1, ["ok"])
    os.remove(f"{config.pipeline_root}/Evaluator.mf/evaluation/4/metrics.json")
    assert cli.main(["report", "--output-dir", out]) == cli.EXIT_DATA_ERROR
    assert "Evaluator.mf's evaluation" in capsys.readouterr().err


def test_serve_discovers_every_model_folder_under_the_serving_root(tmp_path):
    root = tmp_path / "serving"
    for name in ("mf", "content"):
        (root / name / "1").mkdir(parents=True)
    (root / "notes.txt").write_text("not a model")
    specs = served_models.model_specs(serving_root=str(root))
    assert [(s.name, s.base_path) for s in specs] == [("content", f"{root}/content"), ("mf", f"{root}/mf")]
    # a model named by flags wins over the serving root
    [one] = served_models.model_specs(model_name="mf", model_base_path=str(root / "mf"), serving_root=str(root))
    assert (one.name, one.base_path) == ("mf", f"{root}/mf")
    with pytest.raises(ValueError, match="--model_name and --model_base_path go together"):
        served_models.model_specs(model_base_path=str(root / "mf"))
    with pytest.raises(ValueError, match=f"no models to serve: {tmp_path}/empty has no model folders"):
        served_models.model_specs(serving_root=str(tmp_path / "empty"))
