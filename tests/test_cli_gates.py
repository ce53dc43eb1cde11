"""`--gate` flags: parsed into per-model rule overrides and validated before any run starts."""
import re

import pytest

from movierec import cli
from movierec.components.ranking_evaluator.eval_config import Rule


def test_gate_flags_become_per_model_overrides():
    overrides = cli.parse_gates(["content=ndcg@10:none", "mf=mae:bias_baseline", "mf=ndcg@10:none"])
    assert overrides == (("content", Rule("ndcg@10")), ("mf", Rule("mae", "bias_baseline")),
                         ("mf", Rule("ndcg@10")))


@pytest.mark.parametrize("spec", ["content", "mf=rmse", "=ndcg@10:none", "mf=:popularity", "mf=ndcg@10:"])
def test_malformed_gate_is_rejected(spec):
    with pytest.raises(ValueError, match=f"--gate '{spec}': expected MODEL=METRIC:BASELINE"):
        cli.parse_gates([spec])


@pytest.mark.parametrize("spec, message", [
    ("mf=ndcg@x:popularity", "metric 'ndcg@x' must be rmse, mae or one of"),
    ("mf=rmse:popular", "baseline 'popular' must be one of"),
])
def test_bad_metric_or_baseline_is_named(spec, message):
    with pytest.raises(ValueError, match=f"--gate '{spec}': {message}"):
        cli.parse_gates([spec])


@pytest.mark.parametrize("gates, message", [
    (["mf=ndcg@10:bias_baseline"], "the bias baseline predicts ratings: judge it on rmse or mae"),
    (["nope=ndcg@10:none"], r"evaluation.overrides=\['nope'\] is invalid"),
    (["content=ndcg@5:popularity"], r"rules of content: ndcg@5 needs k=5 among the eval ks \[10\]"),
    (["mf=rmse:none", "mf=rmse:bias_baseline"], "more than one rule for mf=rmse"),
])
def test_inconsistent_gate_fails_fast(tmp_path, capsys, gates, message):
    args = ["run", "--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "o")]
    code = cli.main(args + [a for g in gates for a in ("--gate", g)])
    assert code == cli.EXIT_DATA_ERROR
    err = capsys.readouterr().err
    assert re.search(message, err), err
