"""The end-of-run summary: timings, the pushed model, its metrics, example recommendations.

Paths go through `tf.io.gfile` (imported on first use), so the pipeline root and the
serving base paths may be local or on any filesystem TensorFlow has registered.
"""
from __future__ import annotations

import json
import os

from movierec.config import PipelineConfig
from movierec.progress import ComponentTiming
from movierec import contract

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


def pushed_model_info(base_path: str) -> tuple[str, dict] | None:
    """(version folder, assets.extra/movierec.json) of the latest complete version."""
    latest = contract.latest_version(base_path)
    if latest is None:
        return None
    folder = contract.version_dir(base_path, latest)
    meta_path = os.path.join(folder, "assets.extra", "movierec.json")
    return folder, _read_json(meta_path) or {}


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


def latest_evaluation(config: PipelineConfig, model_name: str) -> tuple[str, dict] | None:
    """(folder, metrics.json) of the newest evaluation of `model_name` in this pipeline root."""
    root = os.path.join(config.pipeline_root, f"Evaluator.{model_name}", "evaluation")
    gfile = _gfile()
    names = [d.rstrip("/") for d in gfile.listdir(root)] if gfile.isdir(root) else []
    for run in sorted((int(d) for d in names if d.isdigit()), reverse=True):
        folder = os.path.join(root, str(run))
        metrics = _read_json(os.path.join(folder, "metrics.json"))
        if metrics is not None:
            return folder, metrics
    return None


def evaluation_table(config: PipelineConfig, model_names: tuple[str, ...]) -> list[str]:
    cols = [f"{m}@{k}" for k in config.evaluation.ks
            for m in ("ndcg", "precision", "recall", "map", "hit_rate", "coverage")] + ["rmse", "mae"]
    lines = ["", "Evaluation (eval split; ranking: train movies masked):",
             "  " + f"{'':<22}" + "".join(f"{c:>13}" for c in cols)]
    verdicts, rows, baselines = [], [], []
    for name in model_names:
        found = latest_evaluation(config, name)
        if not found:
            continue
        folder, r = found
        rows.append((name, r["candidate"]))
        if r.get("previous_blessed"):
            rows.append((f"{name} (last blessed)", r["previous_blessed"]))
        baselines = [("popularity", r["baselines"]["popularity"]), ("bias baseline", r["baselines"]["bias_baseline"])]
        verdicts.append(f"  {name}: {'BLESSED' if r['blessed'] else 'NOT BLESSED'} - " + "; ".join(r["reasons"]))
        verdicts.append(f"    report: {os.path.join(folder, 'report.html')}")
    for label, m in rows + baselines:
        lines.append("  " + f"{label:<22}" + "".join(f"{m[c]:>13.4f}" if c in m else f"{'':>13}" for c in cols))
    return lines + [""] + verdicts if verdicts else []


def served_versions(config: PipelineConfig, model_names: tuple[str, ...]) -> dict[str, int | None]:
    """The newest complete pushed version of each model (None: nothing pushed yet)."""
    return {name: contract.latest_version(config.serving_model_dir(name)) for name in model_names}


def render(config: PipelineConfig, timings: list[ComponentTiming], total_seconds: float,
           model_names: tuple[str, ...] = ("mf", "content"),
           before: dict[str, int | None] | None = None) -> str:
    """`before`: `served_versions` taken before the run, to tell new pushes from old ones."""
    lines = ["", "Components (wall time this run):"]
    for t in timings:
        lines.append(f"  {t.component:<24} {t.seconds:7.1f} s{'  (cached)' if t.cached else ''}")
    lines.append(f"  {'total (incl. start-up)':<24} {total_seconds:7.1f} s")
    lines += evaluation_table(config, model_names)
    for name in model_names:
        info = pushed_model_info(config.serving_model_dir(name))
        if info is None:
            lines.append(f"\nModel {name}: nothing pushed.")
            continue
        folder, meta = info
        if before is not None and before.get(name) == contract.latest_version(config.serving_model_dir(name)):
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
