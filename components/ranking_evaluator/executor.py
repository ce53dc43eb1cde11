"""RankingEvaluator executor: metrics, baselines, blessing, report.

For the candidate (and the last blessed model, when the Resolver found one):
  * ranking metrics from the model's own `serving_default` on its `Format-TFMA` export
    (train split masked): every known user with eval ratings gets a top-k list, batched
    (`batch_users` users per signature call); relevant = the user's eval-split movies with
    rating >= `rating_threshold` (default: all). Metrics: `components/ranking_metrics.py`.
  * rating metrics (RMSE, MAE) when the model has `predict_rating`.
Baselines fitted here on the train split: popularity (train rating counts, train movies
masked) and bias-only ratings (global mean + user and movie biases, ridge-regularised,
alternating updates).

Blessing (EvalConfig): the candidate's `judged_on` metric must beat `must_beat`
(`bias_baseline` for RMSE, `popularity` for a ranking metric), and, when a previous
blessed model exists, must not be worse than it by more than `max_regression` (relative).
Every rule is reported with both numbers; the Pusher pushes only a blessed model.
"""
from __future__ import annotations

import base64
import dataclasses
import io
import json
import logging
import os
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from movierec.components.mf.biases import fit_bias_baseline
from movierec.components import features, training_data
from movierec.components.ranking_evaluator.eval_config import LOWER_IS_BETTER, EvalConfig
from movierec.components.ranking_metrics import ranking_metrics

REPORT_FILE = "report.html"
METRICS_FILE = "metrics.json"


@dataclasses.dataclass
class EvalData:
    train: training_data.Interactions
    eval: training_data.Interactions
    user_vocab: list[str]
    movie_vocab: list[str]
    users: np.ndarray              # eval user indices (known users with relevant movies)
    relevant: list[set]            # per user in `users`
    train_seen: list[np.ndarray]   # per user in `users`


def load_eval_data(examples_uri: str, transform_uri: str, rating_threshold: float | None) -> EvalData:
    out = tft.TFTransformOutput(transform_uri)
    user_vocab = training_data.decode_vocabulary(out.vocabulary_by_name(features.USER_VOCAB))
    movie_vocab = training_data.decode_vocabulary(out.vocabulary_by_name(features.MOVIE_VOCAB))
    train = training_data.read_interactions([os.path.join(examples_uri, "Split-train", "*")])
    evaluation = training_data.read_interactions([os.path.join(examples_uri, "Split-eval", "*")])
    return eval_data(train, evaluation, user_vocab, movie_vocab, rating_threshold)


def eval_data(train: training_data.Interactions, evaluation: training_data.Interactions,
              user_vocab: list[str], movie_vocab: list[str], rating_threshold: float | None = None) -> EvalData:
    """Relevance per known user (their eval movies) and their train movies (to mask)."""
    u_count, m_count = len(user_vocab), len(movie_vocab)
    keep = evaluation.user_idx < u_count
    if rating_threshold is not None:
        keep &= evaluation.rating >= rating_threshold
    rel: dict[int, set] = {}
    for n, (u, m) in enumerate(zip(evaluation.user_idx[keep], evaluation.movie_idx[keep])):
        # an eval movie unknown to training cannot be recommended but still counts as relevant
        rel.setdefault(int(u), set()).add(int(m) if m < m_count else -2 - n)
    users = np.array(sorted(rel), np.int64)
    seen = training_data.rated_items(train, u_count, m_count)
    return EvalData(train, evaluation, user_vocab, movie_vocab, users, [rel[int(u)] for u in users],
                    [seen.row(int(u)) for u in users])


def model_top_k(loaded, data: EvalData, k: int, batch_users: int) -> np.ndarray:
    """Top-k movie indices [users, k] from a loaded model's serving_default (-1 padding)."""
    fn = loaded.signatures["serving_default"]
    index = {m: i for i, m in enumerate(data.movie_vocab)}
    rows = []
    for start in range(0, len(data.users), batch_users):
        ids = [data.user_vocab[u] for u in data.users[start:start + batch_users]]
        out = fn(user_id=tf.constant(ids), k=tf.constant(k, tf.int32),
                 exclude_movie_ids=tf.zeros([0, 0], tf.string))
        movie_ids = out["movie_ids"].numpy()
        valid = out["valid"].numpy()
        rows.append(np.array([[index.get(m.decode(), -1) if ok else -1 for m, ok in zip(r, v)]
                              for r, v in zip(movie_ids, valid)], np.int64).reshape(-1, k))
    return np.concatenate(rows) if rows else np.zeros((0, k), np.int64)


def popularity_top_k(data: EvalData, k: int) -> np.ndarray:
    counts = np.bincount(data.train.movie_idx[data.train.movie_idx < len(data.movie_vocab)],
                         minlength=len(data.movie_vocab))
    order = np.argsort(-counts, kind="stable")
    top = np.full((len(data.users), k), -1, np.int64)
    for i, seen in enumerate(data.train_seen):
        seen = set(seen.tolist())
        picked = [m for m in order[: k + len(seen)] if m not in seen][:k]
        top[i, :len(picked)] = picked
    return top


def ranking_at(top: np.ndarray, data: EvalData, ks: tuple[int, ...]) -> dict:
    """Ranking metrics at every k of `ks` from lists of length max(ks); per-user NDCG at
    the largest k is kept under `ndcg_per_user` for the report."""
    metrics = {}
    for k in ks:
        metrics.update(ranking_metrics(top, data.relevant, k, len(data.movie_vocab)))
    return metrics


def rating_errors(pred: np.ndarray, truth: np.ndarray) -> dict:
    err = np.asarray(pred, np.float64) - truth
    return {"rmse": float(np.sqrt(np.mean(err ** 2))), "mae": float(np.mean(np.abs(err)))}


def model_rating_errors(loaded, data: EvalData, batch: int = 65536) -> dict | None:
    if "predict_rating" not in loaded.signatures:
        return None
    fn = loaded.signatures["predict_rating"]
    users = np.array([data.user_vocab[u] if u < len(data.user_vocab) else "" for u in data.eval.user_idx], object)
    movies = np.array([data.movie_vocab[m] if m < len(data.movie_vocab) else "" for m in data.eval.movie_idx], object)
    preds = [fn(user_id=tf.constant(users[i:i + batch]), movie_id=tf.constant(movies[i:i + batch]))["rating"].numpy()
             for i in range(0, len(users), batch)]
    return rating_errors(np.concatenate(preds), data.eval.rating)


def evaluate_model(model_uri: str, data: EvalData, config: EvalConfig) -> dict:
    model_dir = os.path.join(model_uri, "Format-TFMA")
    if not os.path.isdir(model_dir):
        raise FileNotFoundError(f"{model_uri} has no Format-TFMA export (the train-masked model)")
    loaded = tf.saved_model.load(model_dir)
    metrics = ranking_at(model_top_k(loaded, data, max(config.ks), config.batch_users), data, config.ks)
    errors = model_rating_errors(loaded, data)
    if errors:
        metrics.update(errors)
    return metrics


def decide(config: EvalConfig, candidate: dict, baselines: dict, previous: dict | None) -> tuple[bool, list[str]]:
    """(blessed, one line per rule with both numbers)."""
    metric = config.judged_on
    lower = metric in LOWER_IS_BETTER
    value = candidate.get(metric)
    if value is None:
        return False, [f"{metric}: the candidate does not produce it (no predict_rating?)"]
    reasons, blessed = [], True
    better = (lambda a, b: a < b) if lower else (lambda a, b: a > b)
    if config.must_beat is not None:
        base = baselines[config.must_beat][metric]
        ok = better(value, base)
        blessed &= ok
        reasons.append(f"{metric} {value:.4f} {'beats' if ok else 'does not beat'} "
                       f"{config.must_beat} {base:.4f}")
    if previous is not None and metric in previous:
        prev = previous[metric]
        limit = prev * (1 + config.max_regression) if lower else prev * (1 - config.max_regression)
        ok = value <= limit if lower else value >= limit
        blessed &= ok
        reasons.append(f"{metric} {value:.4f} {'within' if ok else 'worse than'} "
                       f"{config.max_regression:.0%} of the last blessed model's {prev:.4f}")
    elif previous is None:
        reasons.append("no previously blessed model to compare with")
    return blessed, reasons


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        name = exec_properties["model_name"]
        config = EvalConfig.from_dict(json.loads(exec_properties["eval_config"]))
        model = artifact_utils.get_single_instance(input_dict["model"])
        baseline = input_dict.get("baseline_model") or []
        data = load_eval_data(artifact_utils.get_single_uri(input_dict["examples"]),
                              artifact_utils.get_single_uri(input_dict["transform_graph"]),
                              config.rating_threshold)
        logging.info("RankingEvaluator[%s]: %d eval users", name, len(data.users))

        candidate = evaluate_model(model.uri, data, config)
        pop = ranking_at(popularity_top_k(data, max(config.ks)), data, config.ks)
        mu, bu, bm = fit_bias_baseline(data.train, len(data.user_vocab), len(data.movie_vocab), config.bias_l2)
        lo, hi = float(data.train.rating.min()), float(data.train.rating.max())
        bias_pred = np.clip(mu + bu[data.eval.user_idx] + bm[data.eval.movie_idx], lo, hi)
        baselines = {"popularity": pop, "bias_baseline": rating_errors(bias_pred, data.eval.rating)}
        previous = evaluate_model(baseline[0].uri, data, config) if baseline else None
        blessed, reasons = decide(config, candidate, baselines, previous)

        blessing = artifact_utils.get_single_instance(output_dict["blessing"])
        blessing.set_int_custom_property("blessed", int(blessed))
        blessing.set_int_custom_property("current_model_id", model.id)
        blessing.set_string_custom_property("current_model", model.uri)
        if baseline:
            blessing.set_int_custom_property("baseline_model_id", baseline[0].id)
            blessing.set_string_custom_property("baseline_model", baseline[0].uri)
        with tf.io.gfile.GFile(os.path.join(blessing.uri, "BLESSED" if blessed else "NOT_BLESSED"), "w") as f:
            f.write("\n".join(reasons) + "\n")

        evaluation = artifact_utils.get_single_instance(output_dict["evaluation"])
        training = _training_metadata(model.uri)
        result = {
            "model": name, "blessed": blessed, "reasons": reasons, "config": dataclasses.asdict(config),
            "candidate": _strip(candidate), "previous_blessed": _strip(previous) if previous else None,
            "baselines": {k: _strip(v) for k, v in baselines.items()}, "eval_users": int(len(data.users)),
            "training": {k: training.get(k) for k in ("loss_history", "eval_rmse_history") if k in training},
        }
        os.makedirs(evaluation.uri, exist_ok=True)
        with open(os.path.join(evaluation.uri, METRICS_FILE), "w") as f:
            json.dump(result, f, indent=2, sort_keys=True)
        write_report(evaluation.uri, result, candidate.get("ndcg_per_user", []),
                     pop.get("ndcg_per_user", []))
        logging.info("RankingEvaluator[%s]: %s (%s)", name, "BLESSED" if blessed else "NOT BLESSED",
                     "; ".join(reasons))


def _strip(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "ndcg_per_user"}


def _training_metadata(model_uri: str) -> dict:
    path = os.path.join(model_uri, "Format-Serving", "assets.extra", "movierec.json")
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    return {}


def _save_png(fig, path: str) -> str:
    """Writes the figure to `path`, closes it, returns it base64-encoded (for embedding)."""
    import matplotlib.pyplot as plt  # noqa: PLC0415

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    with open(path, "wb") as f:
        f.write(buf.getvalue())
    return base64.b64encode(buf.getvalue()).decode()


def write_report(folder: str, result: dict, ndcg_model: list, ndcg_pop: list) -> str:
    """report.html (self-contained, plots embedded) + the plots as PNG files."""
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    images = []
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = np.linspace(0, 1, 21)
    ax.hist([ndcg_model, ndcg_pop], bins=bins, label=[result["model"], "popularity"])
    ax.set_xlabel(f"NDCG@{max(result['config']['ks'])} per user")
    ax.set_ylabel("users")
    ax.legend()
    images.append(("NDCG distribution over users", _save_png(fig, os.path.join(folder, "ndcg_distribution.png"))))
    curves = result.get("training", {})
    if curves.get("loss_history"):
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(range(1, len(curves["loss_history"]) + 1), curves["loss_history"], label="train loss")
        if curves.get("eval_rmse_history"):
            ax.plot(range(1, len(curves["eval_rmse_history"]) + 1), curves["eval_rmse_history"], label="eval RMSE")
        ax.set_xlabel("epoch")
        ax.legend()
        images.append(("Training curves", _save_png(fig, os.path.join(folder, "training_curves.png"))))

    columns = [("candidate", result["candidate"])]
    if result.get("previous_blessed"):
        columns.append(("last blessed", result["previous_blessed"]))
    columns += [(k, v) for k, v in result["baselines"].items()]
    names = [n for n in result["candidate"] if isinstance(result["candidate"][n], float)]
    head = "".join(f"<th>{c}</th>" for c, _ in columns)
    body = "".join(
        f"<tr><td>{n}</td>" + "".join(f"<td>{v[n]:.4f}</td>" if n in v else "<td></td>" for _, v in columns) + "</tr>"
        for n in names)
    verdict = "BLESSED" if result["blessed"] else "NOT BLESSED"
    html = f"""<!doctype html><html><head><meta charset="utf-8"><title>movierec {result['model']} evaluation</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}</style>
</head><body><h1>{result['model']}: {verdict}</h1><ul>{''.join(f'<li>{r}</li>' for r in result['reasons'])}</ul>
<p>{result['eval_users']} eval users, k in {result['config']['ks']}</p>
<table><tr><th>metric</th>{head}</tr>{body}</table>
{''.join(f'<h2>{t}</h2><img src="data:image/png;base64,{b}">' for t, b in images)}
</body></html>"""
    path = os.path.join(folder, REPORT_FILE)
    with open(path, "w") as f:
        f.write(html)
    return path

