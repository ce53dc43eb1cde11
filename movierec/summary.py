"""The end-of-run summary: timings, the pushed model, its metrics, example recommendations.

What a run produced is looked up in ML Metadata (`movierec.metadata`): the newest
evaluation and blessing of each model's RankingEvaluator, the newest PushedModel of its
Pusher; then the files those artifacts point at are read. Paths go through `tf.io.gfile`
(imported on first use), so the pipeline root and the serving base paths may be local or
on any filesystem TensorFlow has registered.
"""
from __future__ import annotations

import dataclasses
import json
import os

from movierec.config import PipelineConfig

EXAMPLE_USERS = 3
EXAMPLE_K = 5


def _gfile():
    import tensorflow as tf  # noqa: PLC0415  (lazy: the CLI imports this module before TF)
    return tf.io.gfile


def _read_json(path: str) -> dict | None:
    """The JSON object at `path`, None when there is no such file."""
    gfile = _gfile()
    if not gfile.exists(path):
        return None
    with gfile.GFile(path, "r") as f:
        return json.loads(f.read())


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """A model's newest evaluation in ML Metadata: its RankingEvaluator's outputs."""
    model: str
    folder: str          # the evaluation artifact's URI: metrics.json, report.html, plots
    blessed: bool        # the blessing artifact's `blessed` custom property
    metrics: dict        # metrics.json: candidate, previous_blessed, baselines, reasons, ...


@dataclasses.dataclass(frozen=True)
class Push:
    """A model's newest push in ML Metadata: its AtomicPusher's PushedModel artifact."""
    model: str
    version: int         # the `pushed_version` custom property
    folder: str          # `pushed_destination`: <serving root>/<model>/<version>
    meta: dict           # the version's assets.extra/movierec.json (recommend.METADATA_FILE; {} when absent)


def _store(config: PipelineConfig):
    """The run's ML Metadata store (read-only); None before any run."""
    from movierec import metadata  # noqa: PLC0415  (lazy: ML Metadata and TFX)

    return metadata.open_store(config.metadata_path)


def latest_evaluation(config: PipelineConfig, model_name: str) -> Evaluation | None:
    """The newest successful `Evaluator.<model_name>` execution's evaluation (metrics.json
    read from its artifact's URI) and blessing; None when the model has not been evaluated."""
    from movierec import metadata  # noqa: PLC0415

    store = _store(config)
    if store is None:
        return None
    node = f"Evaluator.{model_name}"
    execution = metadata.latest_execution(store, config.pipeline_name, node)
    if execution is None:
        return None
    [evaluation] = metadata.output_artifacts(store, execution.id, "evaluation") or [None]
    [blessing] = metadata.output_artifacts(store, execution.id, "blessing") or [None]
    if evaluation is None or blessing is None:
        return None
    from movierec.components.ranking_evaluator.executor import METRICS_FILE  # noqa: PLC0415

    metrics = _read_json(os.path.join(evaluation.uri, METRICS_FILE))
    if metrics is None:
        raise FileNotFoundError(f"{node}'s evaluation {evaluation.uri} has no {METRICS_FILE}")
    return Evaluation(model_name, evaluation.uri, bool(metadata.custom_property(blessing, "blessed", 0)), metrics)


def latest_push(config: PipelineConfig, model_name: str) -> Push | None:
    """The newest PushedModel of `Pusher.<model_name>` that pushed a model (`pushed` 1):
    the version being served. None when nothing was pushed yet."""
    from movierec import metadata  # noqa: PLC0415
    from movierec.components.recommend import METADATA_FILE  # noqa: PLC0415

    store = _store(config)
    if store is None:
        return None
    for artifact in metadata.latest_outputs(store, config.pipeline_name, f"Pusher.{model_name}", "pushed_model"):
        if metadata.custom_property(artifact, "pushed", 0):
            folder = metadata.custom_property(artifact, "pushed_destination")
            meta = _read_json(os.path.join(folder, METADATA_FILE)) or {}
            return Push(model_name, int(metadata.custom_property(artifact, "pushed_version")), folder, meta)
    return None


def example_recommendations(model_dir: str, n_users: int = EXAMPLE_USERS, k: int = EXAMPLE_K) -> list[tuple[str, list[tuple[str, str, float]]]]:
    """Calls the pushed model's `recommend` signature (top k, k [B] per row) in process for
    its `n_users` most active users."""
    import tensorflow as tf  # noqa: PLC0415

    with tf.io.gfile.GFile(os.path.join(model_dir, "assets", "user_id"), "rb") as f:
        users = [line.decode("utf-8").rstrip("\n") for _, line in zip(range(n_users), f)]
    model = tf.saved_model.load(model_dir)
    out = model.signatures["recommend"](
        user_id=tf.constant(users), k=tf.fill([len(users)], tf.constant(k, tf.int32)),
        exclude_movie_ids=tf.fill([len(users), 1], ""))
    rows = []
    for i, user in enumerate(users):
        recs = []
        for j in range(k):
            if bool(out["valid"][i, j]):
                recs.append((out["titles"][i, j].numpy().decode(), out["genres"][i, j].numpy().decode(),
                             float(out["scores"][i, j])))
        rows.append((user, recs))
    return rows


def evaluation_table(config: PipelineConfig, model_names: tuple[str, ...]) -> list[str]:
    """The metrics table of each model's newest evaluation (candidate, last blessed model,
    baselines) and each verdict with its reasons and report; [] when none was evaluated."""
    cols = [f"{m}@{k}" for k in config.evaluation.ks
            for m in ("ndcg", "precision", "recall", "map", "hit_rate", "coverage")] + ["rmse", "mae"]
    lines = ["", "Evaluation (eval split; ranking: train movies masked):",
             "  " + f"{'':<22}" + "".join(f"{c:>13}" for c in cols)]
    verdicts, rows, baselines = [], [], []
    for name in model_names:
        found = latest_evaluation(config, name)
        if not found:
            continue
        r = found.metrics
        rows.append((name, r["candidate"]))
        if r.get("previous_blessed"):
            rows.append((f"{name} (last blessed)", r["previous_blessed"]))
        # the bias baseline predicts ratings: implicit data (no ratings) has none
        baselines = [(label, r["baselines"][key]) for label, key in
                     (("popularity", "popularity"), ("bias baseline", "bias_baseline")) if key in r["baselines"]]
        verdicts += verdict_lines(found)
    for label, m in rows + baselines:
        lines.append("  " + f"{label:<22}" + "".join(f"{m[c]:>13.4f}" if c in m else f"{'':>13}" for c in cols))
    return lines + [""] + verdicts if verdicts else []


def verdict_lines(evaluation: Evaluation) -> list[str]:
    """`  mf: BLESSED - <reasons>` and the path of its report."""
    from movierec.components.ranking_evaluator.executor import REPORT_FILE  # noqa: PLC0415

    return [f"  {evaluation.model}: {'BLESSED' if evaluation.blessed else 'NOT BLESSED'} - "
            + "; ".join(evaluation.metrics["reasons"]),
            f"    report: {os.path.join(evaluation.folder, REPORT_FILE)}"]


def served_versions(config: PipelineConfig, model_names: tuple[str, ...]) -> dict[str, int | None]:
    """The version of each model's newest push (`latest_push`; None: nothing pushed yet)."""
    pushes = {name: latest_push(config, name) for name in model_names}
    return {name: push.version if push else None for name, push in pushes.items()}


def render(config: PipelineConfig, timings: list, total_seconds: float,
           model_names: tuple[str, ...] = ("mf", "content"),
           before: dict[str, int | None] | None = None) -> str:
    """The summary printed after a run: `timings` (progress.ComponentTiming per component,
    from ML Metadata), each model's evaluation, and what each model serves now with its
    training figures and example recommendations. `before`: `served_versions` taken before
    the run, to tell new pushes from old ones."""
    lines = ["", "Components (wall time this run):"]
    for t in timings:
        lines.append(f"  {t.component:<24} {t.seconds:7.1f} s{'  (cached)' if t.cached else ''}")
    lines.append(f"  {'total (incl. start-up)':<24} {total_seconds:7.1f} s")
    lines += evaluation_table(config, model_names)
    for name in model_names:
        push = latest_push(config, name)
        if push is None:
            lines.append(f"\nModel {name}: nothing pushed.")
            continue
        folder, meta = push.folder, push.meta
        if before is not None and before.get(name) == push.version:
            lines.append(f"\nModel {name}: no new version this run; serving {folder}")
            continue
        lines.append(f"\nModel {name}: pushed {folder}")
        warm = meta.get("warm_start") or {}
        if warm.get("used"):
            lines.append(f"  warm start from the last blessed model: {warm['users_kept']} users and "
                         f"{warm['movies_kept']} movies kept, {warm['users_new']} / {warm['movies_new']} new, "
                         f"{warm['users_dropped']} / {warm['movies_dropped']} dropped")
        elif warm.get("reason") and warm["reason"] != "off":
            lines.append(f"  cold start ({warm['reason']})")
        if "eval_rmse" in meta:
            lines.append(f"  eval RMSE {meta['eval_rmse']:.4f}, MAE {meta['eval_mae']:.4f} on "
                         f"{meta['eval_examples']} held-out ratings")
        objective = ((meta.get("config") or {}).get("mf") or {}).get("objective", "mse")
        if meta.get("part_seconds"):   # ials+bayes: the ranker and the rater
            parts = ", ".join(f"{part} {s:.1f} s" for part, s in meta["part_seconds"].items())
            lines.append(f"  trained ({objective}) on {meta['train_examples']} ratings in "
                         f"{meta['fit_seconds']:.1f} s ({parts})")
        elif "epochs" in meta and objective != "mse":   # ials / bayes: sweeps over the ratings
            kind = {"ials": "ALS sweeps", "bayes": "Gibbs sweeps"}.get(objective, "sweeps")
            lines.append(f"  trained ({objective}) on {meta['train_examples']} ratings x {meta['epochs']} {kind} "
                         f"in {meta['fit_seconds']:.1f} s")
        elif "epochs" in meta:
            lines.append(f"  trained on {meta['train_examples']} ratings x {meta['epochs']} epochs in "
                         f"{meta['fit_seconds']:.1f} s = {meta['examples_per_second']:,.0f} examples/s "
                         f"({meta.get('steady_examples_per_second', 0):,.0f}/s after the first epoch)")
        elif meta:
            lines.append(f"  {meta['num_users']} user genre profiles from {meta['train_examples']} ratings "
                         f"in {meta['fit_seconds']:.2f} s")
        lines.append("  example recommendations (recommend signature, rated movies masked):")
        for user, recs in example_recommendations(folder):
            lines.append(f"    user {user}:")
            for title, genres, score in recs:
                lines.append(f"      {score:6.3f}  {title}  [{genres}]")
    return "\n".join(lines)
