"""movierec.yaml: the file < flag precedence, unknown keys and wrong types named with their
line, the effective config saved and shown, the committed example equal to the defaults."""
import dataclasses
import os
import re

import pytest
import yaml

from movierec import cli, config_file
from movierec.components.data import synth
from movierec.components.ranking_evaluator.eval_config import Rule
from movierec.config import MFConfig, PipelineConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(args: list[str]) -> PipelineConfig:
    """The config `movierec <command> ...args` would run with (no data read, no run)."""
    parsed = cli._build_parser().parse_args(args)
    return cli._build_config(parsed)[0]


def _write(tmp_path, text: str, name: str = "movierec.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_committed_example_is_the_defaults_generated_from_the_dataclasses(tmp_path):
    with open(os.path.join(REPO, "movierec.yaml")) as f:
        committed = f.read()
    assert committed == config_file.example_text(), "regenerate: python -m movierec.config_file > movierec.yaml"
    loaded = config_file.parse(committed, "movierec.yaml")
    built = PipelineConfig.from_settings({**loaded, "data_dir": "d", "output_dir": str(tmp_path)})
    assert built == PipelineConfig.from_output_dir("d", str(tmp_path))
    # every setting of the dataclasses is in the file (the command-dependent ones commented)
    text_keys = set(re.findall(r"^#? ?(\w+):", committed, re.M)) | set(re.findall(r"^  (\w+):", committed, re.M))
    for cls in (PipelineConfig, MFConfig, type(built.content), type(built.evaluation)):
        for f in dataclasses.fields(cls):
            if f.name not in ("pipeline_root", "metadata_path", "serving_root", "check_local_files"):
                assert f.name in text_keys, f.name


def test_file_values_apply_and_flags_override_them(tmp_path):
    path = _write(tmp_path, f"""
data_dir: /data/ml-100k
output_dir: {tmp_path}/out
max_k: 50
mf:
  objective: ials
  ials_iterations: 3
  hybrid: false
content:
  smoothing: 20
evaluation:
  ks: [5, 10]
  overrides:
    content: [{{metric: ndcg@10, baseline: null}}]
    mf: [{{metric: ndcg@5, baseline: popularity}}]
""")
    from_file = _config(["run", "--config", path])
    assert (from_file.max_k, from_file.mf.objective, from_file.mf.ials_iterations, from_file.mf.hybrid) == \
        (50, "ials", 3, False)
    assert from_file.content.smoothing == 20.0 and from_file.evaluation.ks == (5, 10)
    assert from_file.data_dir == "/data/ml-100k" and from_file.output_dir == f"{tmp_path}/out"
    assert from_file.mf.epochs == MFConfig().epochs                      # not in the file: the default
    assert from_file.mf.embedding_dim == 64                              # ials' default width
    flagged = _config(["run", "--config", path, "--max-k", "20", "--ials-iterations", "7", "--mf-hybrid",
                       "--data-dir", "/other", "--output-dir", str(tmp_path / "o2"),
                       "--gate", "content=ndcg@10:popularity", "--gate", "mf=rmse:none"])
    assert (flagged.max_k, flagged.mf.ials_iterations, flagged.mf.hybrid) == (20, 7, True)
    assert flagged.mf.objective == "ials" and flagged.content.smoothing == 20.0    # the file's still
    assert flagged.data_dir == "/other" and flagged.output_dir == str(tmp_path / "o2")
    # a gate replaces the file's rule on the same model and metric, and adds the others
    assert dict(((m, r.metric), r.baseline) for m, r in flagged.evaluation.overrides) == {
        ("content", "ndcg@10"): "popularity", ("mf", "ndcg@5"): "popularity", ("mf", "rmse"): None}


def test_retrain_trains_the_settings_run_trains(tmp_path):
    path = _write(tmp_path, f"data_dir: /spans\noutput_dir: {tmp_path}/out\nmf: {{objective: mse, epochs: 3}}\n")
    run, retrain = _config(["run", "--config", path]), _config(["retrain", "--config", path])
    assert retrain.mf == run.mf and retrain.content == run.content and retrain.evaluation == run.evaluation
    assert (run.span_window, run.warm_start) == (None, False)            # run: one folder, cold
    assert (retrain.span_window, retrain.warm_start) == (0, True)        # retrain: every span, warm
    both = _write(tmp_path, "data_dir: /spans\nspan_window: 2\nwarm_start: false\n", "b.yaml")
    assert (_config(["retrain", "--config", both]).span_window, _config(["retrain", "--config", both]).warm_start) \
        == (2, False)
    assert _config(["retrain", "--config", both, "--warm-start"]).warm_start is True


@pytest.mark.parametrize("text, message", [
    ("mf:\n  epoch: 3\n", r"movierec.yaml:2: unknown key mf.epoch \(did you mean mf.epochs\?\); known in mf: "),
    ("max_k: 5\nmaxk: 3\n", r"movierec.yaml:2: unknown key maxk \(did you mean max_k\?\)"),
    ("content:\n  smoothing: 2\n  colour: red\n  size: 3\n",
     r"movierec.yaml:3: unknown key content.colour; also unknown: size; known in content: profile, "),
    ("evaluation:\n  rules:\n  - {metric: rmse, basline: bias_baseline}\n",
     r"movierec.yaml:3: unknown key evaluation.rules\[0\].basline \(did you mean evaluation.rules\[0\].baseline\?\)"),
    ("pipeline_root: /x\n", r"movierec.yaml:1: unknown key pipeline_root \(set output_dir: pipeline/, "
                            r"metadata.sqlite and serving/ are made under it\); known at the top level: "),
])
def test_unknown_keys_are_refused_naming_them_and_their_line(tmp_path, text, message):
    with pytest.raises(config_file.ConfigFileError, match=message):
        config_file.load(_write(tmp_path, text))


@pytest.mark.parametrize("text, message", [
    ("mf:\n  epochs: '25'\n", r":2: mf.epochs: expected an integer, got '25' \(str\)"),
    ("mf:\n  epochs: 2.5\n", r":2: mf.epochs: expected an integer, got 2.5 \(float\)"),
    ("mf:\n  hybrid: 'yes'\n", r":2: mf.hybrid: expected true or false, got 'yes' \(str\)"),
    ("max_k: true\n", r":1: max_k: expected an integer, got True \(bool\)"),
    ("content:\n  smoothing: high\n", r":2: content.smoothing: expected a number, got 'high'"),
    ("mf:\n  embedding_dim: [8]\n", r":2: mf.embedding_dim: expected an integer or null, got \[8\]"),
    ("evaluation:\n  ks: 10\n", r":2: evaluation.ks: expected a list of integers, got 10"),
    ("evaluation:\n  ks: [5, ten]\n", r":2: evaluation.ks\[1\]: expected an integer, got 'ten'"),
    ("beam_pipeline_args: --runner=X\n", r":1: beam_pipeline_args: expected a list of strings"),
    ("mf: 3\n", r":1: mf: expected a mapping of keys, got 3"),
    ("evaluation:\n  rules:\n  - {metric: ndcg@x}\n", r":3: evaluation.rules\[0\]: metric 'ndcg@x' must be"),
    ("- a\n- b\n", r":1: expected a mapping of settings, got list"),
    ("mf: {epochs: 3\n", r"movierec.yaml:2: not valid YAML"),
])
def test_wrong_types_are_named_with_key_and_line(tmp_path, text, message):
    with pytest.raises(config_file.ConfigFileError, match=message):
        config_file.load(_write(tmp_path, text))


def test_values_out_of_range_are_refused_by_the_config_once(tmp_path, capsys):
    path = _write(tmp_path, "mf:\n  epochs: 0\n")
    code = cli.main(["run", "--config", path, "--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "o")])
    assert code == cli.EXIT_DATA_ERROR
    assert "config: mf.epochs=0 is invalid: 1..10000" in capsys.readouterr().err
    code = cli.main(["run", "--config", str(tmp_path / "missing.yaml"), "--data-dir", str(tmp_path)])
    assert code == cli.EXIT_DATA_ERROR
    assert f"{tmp_path / 'missing.yaml'}: no such config file" in capsys.readouterr().err


def test_compile_kfp_and_retrain_need_a_data_dir_from_flag_or_file(tmp_path, capsys):
    assert cli.main(["retrain", "--output-dir", str(tmp_path)]) == cli.EXIT_DATA_ERROR
    assert "--data-dir (or data_dir in --config) is required" in capsys.readouterr().err
    assert cli.main(["compile-kfp", "--image", "x", "--out", str(tmp_path / "p.json")]) == cli.EXIT_DATA_ERROR
    assert "where the cluster reads the data" in capsys.readouterr().err


def test_effective_config_round_trips(tmp_path):
    config = PipelineConfig.from_output_dir(
        "/data", str(tmp_path / "out"), max_k=7, span_window=2, warm_start=True,
        beam_pipeline_args=("--runner=FnApiRunner",), mf=MFConfig(objective="mse", epochs=3),
        evaluation=dataclasses.replace(PipelineConfig.from_output_dir("d", "/o").evaluation, ks=(5, 10),
                                       overrides=(("content", Rule("ndcg@10")), ("mf", Rule("ndcg@5", "popularity")))))
    path = config_file.save_effective(config, "run", when=0)
    assert path == f"{tmp_path}/out/pipeline/effective_config/19700101T000000Z-run.yaml"
    again = PipelineConfig.from_settings(config_file.load(path))
    assert again == config
    with open(path) as f:
        saved = yaml.safe_load(f)
    assert saved["mf"]["embedding_dim"] == 32 and saved["schema_path"] == ""   # resolved; "" = the packaged one
    assert saved["evaluation"]["overrides"] == {"content": [{"metric": "ndcg@10", "baseline": None}],
                                                "mf": [{"metric": "ndcg@5", "baseline": "popularity"}]}
    # the saved file is a --config that trains the same settings
    assert _config(["run", "--config", path]) == config
    later = config_file.save_effective(dataclasses.replace(config, max_k=9), "retrain", when=60)
    assert config_file.latest_effective(config.pipeline_root)[0] == later


def test_report_shows_the_latest_runs_config(tmp_path, capsys):
    """A run with one evaluation (recorded in ML Metadata) and two saved configs: report
    shows the newer config."""
    from tests.mlmd_fixtures import HandMadeStore
    out = tmp_path / "out"
    evaluation = out / "pipeline" / "Evaluator.mf" / "evaluation" / "3"
    evaluation.mkdir(parents=True)
    (evaluation / "metrics.json").write_text('{"blessed": true, "reasons": ["ndcg@10 0.2 > popularity 0.1"]}')
    config = PipelineConfig.from_output_dir("/data", str(out))
    made = HandMadeStore(config.metadata_path)
    made.execution("run-1", "Evaluator.mf", "COMPLETE", 0, 1000, {
        "evaluation": [made.artifact("ModelEvaluation", str(evaluation))],
        "blessing": [made.artifact("ModelBlessing", f"{out}/pipeline/Evaluator.mf/blessing/3", blessed=1)]})
    config_file.save_effective(dataclasses.replace(config, max_k=11), "run", when=0)
    config_file.save_effective(dataclasses.replace(config, max_k=12), "run", when=60)
    assert cli.main(["report", "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "mf: BLESSED - ndcg@10 0.2 > popularity 0.1" in printed
    assert f"config of the latest run ({out}/pipeline/effective_config/19700101T000100Z-run.yaml):" in printed
    assert "  max_k: 12" in printed and "max_k: 11" not in printed
    assert "  data_dir: /data" in printed


def test_run_saves_its_effective_config_before_the_pipeline(tmp_path, capsys, monkeypatch):
    """`movierec run --config`: the config is saved under the pipeline root once the inputs
    are checked and the output folder locked (the pipeline itself is replaced here by a
    failure: what is asserted is the saved file)."""
    from movierec import runs
    data = str(tmp_path / "data")
    synth.generate(synth.SynthSpec(users=20, movies=30, ratings=300, seed=3), data)
    path = _write(tmp_path, f"data_dir: {data}\noutput_dir: {tmp_path}/out\nmf: {{objective: ials}}\n")

    def stop(config, stream=None):
        raise runs.PipelineFailed("Trainer.mf", RuntimeError("stopped by the test"))
    monkeypatch.setattr(runs, "run_pipeline", stop)
    assert cli.main(["run", "--config", path, "--max-k", "30"]) == cli.EXIT_PIPELINE_ERROR
    captured = capsys.readouterr()
    assert "error in Trainer.mf: stopped by the test" in captured.err
    saved = config_file.latest_effective(f"{tmp_path}/out/pipeline")
    assert saved is not None and f"  config: {saved[0]}" in captured.out
    loaded = config_file.parse(saved[1])
    assert loaded["mf"]["objective"] == "ials" and loaded["max_k"] == 30 and loaded["data_dir"] == data


def test_compile_kfp_takes_the_file_and_saves_its_config_beside_the_spec(tmp_path, capsys):
    path = _write(tmp_path, "data_dir: gs://bucket/ml-100k\noutput_dir: gs://bucket/movierec\n"
                            "mf: {objective: mse, epochs: 9}\n")
    out = tmp_path / "spec.json"
    assert cli.main(["compile-kfp", "--config", path, "--image", "example.com/movierec:1", "--out", str(out),
                     "--max-k", "40"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out)
    text = out.read_text()
    assert '\\"epochs\\": 9' in text and '\\"max_k\\": 40' in text      # the file's and the flag's
    saved = config_file.load(str(tmp_path / "spec.config.yaml"))
    assert f"config: {tmp_path / 'spec.config.yaml'}" in captured.err
    assert (saved["mf"]["epochs"], saved["max_k"], saved["output_dir"]) == (9, 40, "gs://bucket/movierec")
