"""The retrain demo: a dataset cut into spans by time, arriving one span per scheduled run.

    python -m movierec.retrain_demo --data-dir ../shared/data/ml-100k --out outputs/retrain-demo

1. `movierec data split-spans` cuts the dataset into `--spans` equal parts by timestamp;
2. for each span in turn, the span folder "arrives" in the input folder and the run
   `movierec retrain` makes follows (`movierec.runs.run_once` with retrain's settings:
   window all spans so far, MF warm-started from the last blessed MF model; extra
   `retrain` flags, `--config FILE` included, after `--`);
3. one more retrain with no new span shows that a repeat trains and pushes nothing.
After each run it records, from ML Metadata (`movierec.summary`, `movierec.metadata`),
each model's evaluation, whether it was blessed, which version is served and how MF was
warm-started; it prints them as a markdown table.

Paths go through `tf.io.gfile` (imported on first use), so `--out` may be local or on any
filesystem TensorFlow has registered (gs://, s3://, ...).
"""
from __future__ import annotations

import argparse
import json
import posixpath
import sys
import time
from typing import Any, Mapping

from movierec import config_file, runs, summary
from movierec.components.data import spans
from movierec.config import MODEL_NAMES, PipelineConfig


def _gfile():
    import tensorflow as tf  # noqa: PLC0415  (lazy: `--help` starts without TF)
    return tf.io.gfile


def _copy_tree(src: str, dst: str) -> None:
    """Copies the folder `src` to `dst` file by file (works across filesystems)."""
    gfile = _gfile()
    for folder, _dirs, files in gfile.walk(src):
        rel = folder[len(src.rstrip("/")):].strip("/")
        target = posixpath.join(dst, rel) if rel else dst
        gfile.makedirs(target)
        for name in files:
            gfile.copy(posixpath.join(folder, name), posixpath.join(target, name), overwrite=True)


def newest_training_metrics(config: PipelineConfig, model_name: str) -> dict:
    """training_metrics.json of the newest successful `Trainer.<model_name>` execution (its
    `model_run` artifact, from ML Metadata); {} when there is none."""
    from movierec import metadata  # noqa: PLC0415  (lazy: ML Metadata and TFX)

    store = metadata.open_store(config.metadata_path)
    if store is None:
        return {}
    model_run = metadata.latest_output(store, config.pipeline_name, f"Trainer.{model_name}", "model_run")
    if model_run is None:
        return {}
    path = posixpath.join(model_run.uri, "training_metrics.json")   # training_data.write_run_metrics
    if not _gfile().exists(path):
        return {}
    with _gfile().GFile(path, "r") as f:
        return json.loads(f.read())


def outcome(config: PipelineConfig, label: str, before: dict, seconds: float, timings=()) -> dict:
    """What one retrain did: its components' wall times (`timings`: the run's
    progress.ComponentTiming), each model's newest evaluation and blessing, served version
    and MF warm start, read back from ML Metadata."""
    row = {"run": label, "seconds": round(seconds, 1),
           "components": [{"component": t.component, "seconds": round(t.seconds, 1), "cached": t.cached}
                          for t in timings],
           "models": {}}
    served_now = summary.served_versions(config, MODEL_NAMES)
    for name in MODEL_NAMES:
        evaluation = summary.latest_evaluation(config, name)
        candidate = evaluation.metrics.get("candidate", {}) if evaluation else {}
        served = served_now[name]
        row["models"][name] = {
            "rmse": candidate.get("rmse"),
            "ndcg@10": candidate.get("ndcg@10"),
            "blessed": evaluation.blessed if evaluation else None,
            "served_version": served,
            "new_version": served is not None and served != before.get(name),
            "warm_start": newest_training_metrics(config, name).get("warm_start"),
        }
    return row


def retrain_config(data_dir: str, output_dir: str, settings: Mapping[str, Any] | None = None) -> PipelineConfig:
    """The config `movierec retrain --data-dir <data_dir> --output-dir <output_dir>` runs with
    `settings` (movierec.yaml's keys, e.g. {"mf": {"epochs": 20}}) on top of retrain's defaults."""
    resolved = config_file.resolve(settings or {}, {"data_dir": data_dir, "output_dir": output_dir}, retrain=True)
    return PipelineConfig.from_settings(resolved)


def run(data_dir: str, out_dir: str, n_spans: int = 3, settings: Mapping[str, Any] | None = None,
        log=print) -> list[dict]:
    """Runs the demo with retrain `settings` (see `retrain_config`); returns one `outcome`
    row per retrain (the last one: the repeat)."""
    gfile = _gfile()
    all_spans, inbox, output = (posixpath.join(out_dir, d) for d in ("spans", "input", "output"))
    if not gfile.isdir(all_spans):
        for row in spans.split_spans(data_dir, all_spans, by="count", count=n_spans):
            log(f"span-{row['span']}: {row['ratings']} ratings, "
                f"{time.strftime('%Y-%m-%d', time.gmtime(row['first']))} .. "
                f"{time.strftime('%Y-%m-%d', time.gmtime(row['last']))}")
    gfile.makedirs(inbox)
    config = retrain_config(inbox, output, settings)
    rows = []
    schedule = [(f"span {s}", s) for s in spans.list_spans(all_spans)] + [("repeat (no new span)", None)]
    for label, span in schedule:
        if span is not None and not gfile.isdir(spans.span_dir(inbox, span)):
            _copy_tree(spans.span_dir(all_spans, span), spans.span_dir(inbox, span))
        before = summary.served_versions(config, MODEL_NAMES)
        log(f"\n=== retrain: {label} ===")
        started = time.perf_counter()
        try:
            result = runs.run_once(config, "retrain", say=log)
        except Exception as e:
            raise RuntimeError(f"movierec retrain failed on {label}: {e}") from e
        rows.append(outcome(config, label, before, time.perf_counter() - started, result.timings))
    return rows


def table(rows: list[dict]) -> str:
    def fmt(v, spec=".4f"):
        return "-" if v is None else format(v, spec)

    lines = ["| run | seconds | model | RMSE | NDCG@10 | blessed | served version | warm start |",
             "|---|---:|---|---:|---:|---|---|---|"]
    for row in rows:
        for name, m in row["models"].items():
            warm = m["warm_start"] or {}
            if warm.get("used"):
                warm_text = (f"{warm['users_kept']} users / {warm['movies_kept']} movies kept, "
                             f"{warm['users_new']} / {warm['movies_new']} new")
            else:
                warm_text = warm.get("reason", "-") if name == "mf" else "n/a (closed form)"
            served = "-" if m["served_version"] is None else (
                f"{m['served_version']}{' (new)' if m['new_version'] else ' (unchanged)'}")
            lines.append(f"| {row['run']} | {row['seconds']} | {name} | {fmt(m['rmse'])} | "
                         f"{fmt(m['ndcg@10'])} | {'yes' if m['blessed'] else 'no'} | {served} | {warm_text} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m movierec.retrain_demo", description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", required=True, help="a MovieLens folder to cut into spans")
    p.add_argument("--out", default="outputs/retrain-demo", help="demo folder (default: %(default)s)")
    p.add_argument("--spans", type=int, default=3)
    p.add_argument("run_args", nargs=argparse.REMAINDER,
                   help="extra `movierec retrain` flags after -- (--config FILE included)")
    args = p.parse_args(argv)
    from movierec import cli  # noqa: PLC0415  (the `retrain` flags after -- are the command line's)

    if _gfile().exists(args.out):
        print(f"error: {args.out} exists; remove it or pass another --out", file=sys.stderr)
        return cli.EXIT_DATA_ERROR

    settings = cli.settings_from_argv(["retrain", *(a for a in args.run_args if a != "--")])
    rows = run(args.data_dir, args.out, args.spans, settings)
    print("\n" + table(rows))
    with _gfile().GFile(posixpath.join(args.out, "retrain_demo.json"), "w") as f:
        f.write(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
