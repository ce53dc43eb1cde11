"""RankingEvaluator executor: metrics, baselines, blessing, report.

For the candidate (and the last blessed model, when the Resolver found one):
  * ranking metrics from the model's own `recommend` signature on its `Format-TFMA` export
    (train split masked): every known user with eval ratings gets a top-k list, batched
    (`batch_users` users per signature call); relevant = the user's eval-split movies with
    rating >= `rating_threshold` (default: all). Metrics, novelty and the per-segment
    metrics (users by train activity, movies by train popularity) are defined in
    `components/ranking_metrics.py`.
  * rating metrics (RMSE, MAE) when the model has `predict_rating`.
When there are more than `EXACT_MAX_USERS` eval users, the ranking metrics (of the
candidate, the last blessed model and popularity, on the same users) are computed over
`SAMPLED_USERS` of them drawn without replacement with seed `USER_SAMPLE_SEED`, and each
per-user mean gets a 95% confidence interval (`<metric>_ci95`, the half-width, normal
approximation with the finite-population correction: `ranking_metrics.sample_mean_ci`);
at or below that size every eval user is ranked and the means are exact. Top-k costs users
x catalog, so the sample keeps evaluation linear in the ratings (reading the splits, the
rating metrics over every eval rating and the baselines' fits stay exact).
Baselines fitted here on the train split: popularity (train rating counts, train movies
masked) and bias-only ratings (global mean + user and movie biases, ridge-regularised,
alternating updates).

Blessing (`EvalConfig.rules`, see eval_config.py): each rule's metric must beat its
baseline, and, when a previous blessed model exists, must not be worse than that model's
by more than `max_regression` (relative); a rating rule applies only to a candidate with
rating metrics. Every rule is reported with both numbers; the Pusher pushes only a blessed
model. The evaluation artifact holds metrics.json and a self-contained report.html.
"""
from __future__ import annotations

import base64
import dataclasses
import html
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
from movierec.components import ranking_metrics as rm
from movierec.components.ranking_evaluator.eval_config import LOWER_IS_BETTER, EvalConfig

REPORT_FILE = "report.html"
METRICS_FILE = "metrics.json"
EXACT_MAX_USERS = 10_000    # up to this many eval users every one is ranked (exact metrics)
SAMPLED_USERS = 10_000      # above it, this many, drawn with USER_SAMPLE_SEED
USER_SAMPLE_SEED = 20_240


@dataclasses.dataclass
class EvalData:
    train: training_data.Interactions
    eval: training_data.Interactions
    user_vocab: list[str]
    movie_vocab: list[str]
    users: np.ndarray              # eval user indices ranked (known users with relevant movies)
    relevant: list[set]            # per user in `users`
    train_seen: list[np.ndarray]   # per user in `users`
    population: int = -1           # eval users with relevant movies; > len(users) when sampled

    def __post_init__(self):
        if self.population < 0:
            self.population = len(self.users)

    @property
    def sampled(self) -> bool:
        return len(self.users) < self.population


def sample_users(data: EvalData, exact_max: int = EXACT_MAX_USERS, size: int = SAMPLED_USERS,
                 seed: int = USER_SAMPLE_SEED) -> EvalData:
    """`data` itself with at most `exact_max` eval users; else `size` of them drawn without
    replacement with `seed` (kept in index order), `population` the number of all."""
    if len(data.users) <= exact_max:
        return data
    rows = np.sort(np.random.default_rng(seed).choice(len(data.users), size, replace=False))
    return dataclasses.replace(data, users=data.users[rows], relevant=[data.relevant[r] for r in rows],
                               train_seen=[data.train_seen[r] for r in rows], population=len(data.users))


def load_eval_data(examples_uri: str, transform_uri: str, rating_threshold: float | None) -> EvalData:
    out = tft.TFTransformOutput(transform_uri)
    user_vocab = training_data.decode_vocabulary(out.vocabulary_by_name(features.USER_VOCAB))
    movie_vocab = training_data.decode_vocabulary(out.vocabulary_by_name(features.MOVIE_VOCAB))
    train = training_data.read_interactions([os.path.join(examples_uri, "Split-train", "*")], transform_uri)
    evaluation = training_data.read_interactions([os.path.join(examples_uri, "Split-eval", "*")], transform_uri)
    return eval_data(train, evaluation, user_vocab, movie_vocab, rating_threshold)


def eval_data(train: training_data.Interactions, evaluation: training_data.Interactions,
              user_vocab: list[str], movie_vocab: list[str], rating_threshold: float | None = None) -> EvalData:
    """Relevance per known user (their eval movies) and their train movies (to mask).

    rating_threshold: only eval ratings >= it are relevant; implicit events (no ratings)
    have nothing to compare with it, so a threshold is refused for them (ValueError)."""
    u_count, m_count = len(user_vocab), len(movie_vocab)
    keep = evaluation.user_idx < u_count
    if rating_threshold is not None:
        if not (features.has_ratings(train.rating) and features.has_ratings(evaluation.rating)):
            raise ValueError(f"evaluation.rating_threshold={rating_threshold!r} selects relevant eval ratings, "
                             "and this dataset has none (implicit events): leave rating_threshold unset, "
                             "every held-out event is relevant")
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
    """Top-k movie indices [users, k] from a loaded model's `recommend` signature (k [B] per
    row, no exclusions beyond the model's mask; -1 padding)."""
    fn = loaded.signatures["recommend"]
    index = {m: i for i, m in enumerate(data.movie_vocab)}
    rows = []
    for start in range(0, len(data.users), batch_users):
        ids = [data.user_vocab[u] for u in data.users[start:start + batch_users]]
        out = fn(user_id=tf.constant(ids), k=tf.fill([len(ids)], tf.constant(k, tf.int32)),
                 exclude_movie_ids=tf.fill([len(ids), 1], ""))
        movie_ids = out["movie_ids"].numpy()
        valid = out["valid"].numpy()
        rows.append(np.array([[index.get(m.decode(), -1) if ok else -1 for m, ok in zip(r, v)]
                              for r, v in zip(movie_ids, valid)], np.int64).reshape(-1, k))
    return np.concatenate(rows) if rows else np.zeros((0, k), np.int64)


def movie_counts(data: EvalData) -> np.ndarray:
    """Train ratings per vocabulary movie [N]."""
    n = len(data.movie_vocab)
    return np.bincount(data.train.movie_idx[data.train.movie_idx < n], minlength=n)


def popularity_top_k(data: EvalData, k: int) -> np.ndarray:
    order = np.argsort(-movie_counts(data), kind="stable")
    top = np.full((len(data.users), k), -1, np.int64)
    for i, seen in enumerate(data.train_seen):
        seen = set(seen.tolist())
        picked = [m for m in order[: k + len(seen)] if m not in seen][:k]
        top[i, :len(picked)] = picked
    return top


def ranking_at(top: np.ndarray, data: EvalData, ks: tuple[int, ...]) -> dict:
    """Ranking metrics and novelty at every k of `ks` from lists of length max(ks); per-user
    NDCG at the largest k is kept under `ndcg_per_user` for the report."""
    metrics = {}
    counts = movie_counts(data)
    for k in ks:
        at_k = rm.ranking_metrics(top, data.relevant, k, len(data.movie_vocab), per_user_values=data.sampled)
        if data.sampled:
            for name, values in at_k["per_user"].items():
                at_k[f"{name}_ci95"] = rm.sample_mean_ci(values, data.population)
        metrics.update(at_k)
        metrics[f"novelty@{k}"] = rm.novelty(top, k, counts)
    metrics.pop("per_user", None)
    return metrics


@dataclasses.dataclass
class Segments:
    """Eval users by train activity and movies by train popularity (ranking_metrics.py)."""
    user_segment: np.ndarray    # per user in EvalData.users
    movie_segment: np.ndarray   # per vocabulary movie
    described: dict             # {"user_activity": [...], "movie_popularity": [...]}


def segments(data: EvalData) -> Segments:
    user_counts = np.bincount(data.train.user_idx, minlength=len(data.user_vocab) + 1)[data.users]
    users, user_desc = rm.user_activity_segments(user_counts)
    movies, movie_desc = rm.movie_popularity_segments(movie_counts(data))
    return Segments(users, movies, {"user_activity": user_desc, "movie_popularity": movie_desc})


def list_metrics(top: np.ndarray, data: EvalData, ks: tuple[int, ...], segs: Segments) -> dict:
    """`ranking_at` plus, at the largest k, the metrics of each user and movie segment."""
    k = max(ks)
    metrics = ranking_at(top, data, ks)
    metrics["segments"] = {
        "user_activity": rm.by_user_segment(top, data.relevant, k, len(data.movie_vocab), segs.user_segment),
        "movie_popularity": rm.by_movie_segment(top, data.relevant, k, segs.movie_segment)}
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


def evaluate_model(model_uri: str, data: EvalData, config: EvalConfig, segs: Segments) -> tuple[dict, np.ndarray]:
    """(metrics, top-k lists [users, max(ks)]) of one model's train-masked export."""
    model_dir = os.path.join(model_uri, "Format-TFMA")
    if not tf.io.gfile.isdir(model_dir):
        raise FileNotFoundError(f"{model_uri} has no Format-TFMA export (the train-masked model)")
    loaded = tf.saved_model.load(model_dir)
    top = model_top_k(loaded, data, max(config.ks), config.batch_users)
    metrics = list_metrics(top, data, config.ks, segs)
    errors = model_rating_errors(loaded, data)
    if errors:
        metrics.update(errors)
    return metrics, top


TIE_TOLERANCE = 1e-6   # relative: metrics are float32 sums, equal models differ in the 7th digit


def beats(value: float, base: float, lower_is_better: bool) -> bool:
    """Whether `value` is better than the baseline's `base` by more than float noise: a
    model that reproduces the baseline (an MF whose rating head is the bias model) ties."""
    margin = TIE_TOLERANCE * max(1.0, abs(base))
    return value < base - margin if lower_is_better else value > base + margin


def rating_baselines(data: EvalData, config: EvalConfig) -> dict:
    """{"bias_baseline": its rating errors on the eval ratings} (global mean + ridge user and
    movie biases, clipped to the train ratings' range), or {} for implicit events: with no
    ratings there is nothing for it to predict, and rating rules do not gate."""
    if not features.has_ratings(data.train.rating):
        return {}
    mu, bu, bm = fit_bias_baseline(data.train, len(data.user_vocab), len(data.movie_vocab), config.bias_l2)
    lo, hi = float(data.train.rating.min()), float(data.train.rating.max())
    bias_pred = np.clip(mu + bu[data.eval.user_idx] + bm[data.eval.movie_idx], lo, hi)
    return {"bias_baseline": rating_errors(bias_pred, data.eval.rating)}


def decide(config: EvalConfig, candidate: dict, baselines: dict, previous: dict | None) -> tuple[bool, list[str]]:
    """(blessed, one line per rule with both numbers), over `config.rules` in order.

    A rule's metric missing from the candidate fails the gate, except a rating metric: a
    model without predict_rating has none, and its rating rules do not apply."""
    reasons, blessed = [], True
    for rule in config.rules:
        metric = rule.metric
        value = candidate.get(metric)
        if value is None:
            if rule.rating:
                reasons.append(f"{metric}: not gated (the candidate has no predict_rating)")
            else:
                blessed = False
                reasons.append(f"{metric}: the candidate does not produce it")
            continue
        lower = metric in LOWER_IS_BETTER
        if rule.baseline is None:
            reasons.append(f"{metric} {value:.4f}: no baseline to beat")
        else:
            base = baselines[rule.baseline][metric]
            ok = beats(value, base, lower)
            blessed &= ok
            reasons.append(f"{metric} {value:.4f} {'beats' if ok else 'does not beat'} {rule.baseline} {base:.4f}")
        if previous is None:
            continue
        prev = previous.get(metric)
        if prev is None:
            reasons.append(f"{metric}: the last blessed model has none to compare with")
            continue
        limit = prev * (1 + config.max_regression) if lower else prev * (1 - config.max_regression)
        ok = value <= limit if lower else value >= limit
        blessed &= ok
        verdict = ("better than" if (value < prev if lower else value > prev)
                   else f"within {config.max_regression:.0%} of" if ok else f"worse than {config.max_regression:.0%} of")
        reasons.append(f"{metric} {value:.4f} {verdict} the last blessed model's {prev:.4f}")
    if previous is None:
        reasons.append("no previously blessed model to compare with")
    return blessed, reasons


SAMPLE_SEED = 0
SAMPLE_LIKED = 5     # train movies shown per sample user
SAMPLE_K = 10        # recommendations shown per list


def movie_titles(data: EvalData) -> list[str]:
    """Title of every vocabulary movie, from its first rating in train or eval."""
    titles = [""] * len(data.movie_vocab)
    movies = training_data.MovieRows.concat([data.train.movies, data.eval.movies])
    for m, title in zip(movies.movie_idx, movies.title):
        if m < len(titles):
            titles[m] = title.decode("utf-8", "replace")
    return titles


def sample_lists(data: EvalData, lists: dict[str, np.ndarray], n_users: int, seed: int = SAMPLE_SEED) -> list[dict]:
    """`n_users` eval users drawn with `seed`: their best-rated train movies (highest rating,
    then most rated in train) and each list's top SAMPLE_K titles, hits marked."""
    if not n_users or not len(data.users):
        return []
    rows = np.sort(np.random.default_rng(seed).choice(len(data.users), min(n_users, len(data.users)), replace=False))
    titles, counts = movie_titles(data), movie_counts(data)
    samples = []
    for r in rows:
        u = int(data.users[r])
        mine = np.flatnonzero((data.train.user_idx == u) & (data.train.movie_idx < len(titles)))
        movies, ratings = data.train.movie_idx[mine], data.train.rating[mine]
        best = np.lexsort((-counts[movies], -ratings))[:SAMPLE_LIKED]
        relevant = data.relevant[r]
        samples.append({
            "user": data.user_vocab[u], "train_ratings": int(len(mine)), "relevant": len(relevant),
            "liked": [{"title": titles[movies[i]], "rating": float(ratings[i])} for i in best],
            "lists": {name: [{"title": titles[m], "hit": int(m) in relevant} for m in top[r, :SAMPLE_K] if m >= 0]
                      for name, top in lists.items()}})
    return samples


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
        data = sample_users(data)
        logging.info("RankingEvaluator[%s]: %d eval users%s", name, data.population,
                     f", {len(data.users)} ranked (seed {USER_SAMPLE_SEED})" if data.sampled else "")

        segs = segments(data)
        candidate, lists = evaluate_model(model.uri, data, config, segs)
        lists = {name: lists}
        pop_top = popularity_top_k(data, max(config.ks))
        pop = list_metrics(pop_top, data, config.ks, segs)
        baselines = {"popularity": pop, **rating_baselines(data, config)}
        previous = None
        if baseline:
            previous, lists["last blessed"] = evaluate_model(baseline[0].uri, data, config, segs)
        lists["popularity"] = pop_top
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
            "baselines": {k: _strip(v) for k, v in baselines.items()}, "eval_users": int(data.population),
            "ranked_users": int(len(data.users)),
            "user_sample": ({"size": int(len(data.users)), "of": int(data.population), "seed": USER_SAMPLE_SEED,
                             "exact_max_users": EXACT_MAX_USERS} if data.sampled else None),
            "segments": segs.described, "samples": sample_lists(data, lists, config.sample_users),
            "training": {k: training.get(k) for k in ("loss_history", "eval_rmse_history") if k in training},
        }
        tf.io.gfile.makedirs(evaluation.uri)
        with tf.io.gfile.GFile(os.path.join(evaluation.uri, METRICS_FILE), "w") as f:
            f.write(json.dumps(result, indent=2, sort_keys=True))
        write_report(evaluation.uri, result, candidate.get("ndcg_per_user", []),
                     pop.get("ndcg_per_user", []))
        logging.info("RankingEvaluator[%s]: %s (%s)", name, "BLESSED" if blessed else "NOT BLESSED",
                     "; ".join(reasons))


def _strip(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in ("ndcg_per_user", "per_user")}


def _training_metadata(model_uri: str) -> dict:
    path = os.path.join(model_uri, "Format-Serving", "assets.extra", "movierec.json")
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path, "r") as f:
            return json.loads(f.read())
    return {}


def _save_png(fig, path: str) -> str:
    """Writes the figure to `path`, closes it, returns it base64-encoded (for embedding)."""
    import matplotlib.pyplot as plt  # noqa: PLC0415

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(buf.getvalue())
    return base64.b64encode(buf.getvalue()).decode()


def _num(value, percent: bool = False) -> str:
    if value is None:
        return "<td class=na>–</td>"
    return f"<td>{value:.1%}</td>" if percent else f"<td>{value:.4f}</td>"


def _segment_tables(result: dict, columns: list[tuple[str, dict]]) -> str:
    """The per-segment tables: one row per segment, each measure under every column's name."""
    k = max(result["config"]["ks"])
    described = result.get("segments") or {}
    cols = [(label, m["segments"]) for label, m in columns if "segments" in m]
    if not described or not cols:
        return ""
    names = "".join(f"<th>{label}</th>" for label, _ in cols)
    span = len(cols)

    def table(kind: str, head: list[str], measures: list[tuple[str, str, bool]], cells) -> str:
        first = "".join(f"<th rowspan=2>{h}</th>" for h in head)
        groups = "".join(f"<th colspan={span}>{title}</th>" for _, title, _ in measures)
        body = ""
        for seg in described[kind]:
            body += f"<tr><th>{seg['name']}</th>{cells(seg)}" + "".join(
                _num(m[kind][seg["name"]][key], pct) for key, _, pct in measures for _, m in cols) + "</tr>"
        return (f"<table><tr><th rowspan=2>segment</th>{first}{groups}</tr>"
                f"<tr>{names * len(measures)}</tr>{body}</table>")

    def count_range(seg):
        lo, hi = seg["min_count"], seg["max_count"]
        return "–" if lo is None else (str(lo) if lo == hi else f"{lo}–{hi}")

    users = table("user_activity", ["users", "train ratings per user"],
                  [(f"ndcg@{k}", f"NDCG@{k}", False), (f"precision@{k}", f"Precision@{k}", False)],
                  lambda seg: f"<td>{seg['users']}</td><td>{count_range(seg)}</td>")
    movies = table("movie_popularity", ["movies", "train ratings per movie", "share of train ratings"],
                   [("share_of_recommendations", f"share of the top-{k} slots", True),
                    ("precision", "precision of those slots", False),
                    ("recall", "recall of the segment's eval movies", False)],
                   lambda seg: f"<td>{seg['movies']}</td><td>{count_range(seg)}</td><td>{seg['share_of_ratings']:.1%}</td>")
    return (f"<h2>By user activity</h2><p>Eval users in terciles of their number of train ratings "
            f"(users with the same count stay in one tercile).</p>{users}"
            f"<h2>By movie popularity</h2><p>Movies by train ratings, most rated first: <b>head</b> = "
            f"the most rated movies holding the first third of all train ratings, <b>torso</b> the "
            f"second third, <b>tail</b> the rest (the long tail, including movies never rated in "
            f"train). Recall counts the eval movies of each segment found in the top {k}.</p>{movies}")


def _hits(recs: list[dict]) -> str:
    n = sum(r["hit"] for r in recs)
    return f"{n} hit" if n == 1 else f"{n} hits"


def _samples_html(samples: list[dict]) -> str:
    if not samples:
        return ""
    out = [f"<h2>Sample users</h2><p>{len(samples)} eval users drawn with seed {SAMPLE_SEED}; "
           f"<span class=hit>✓ bold</span> = a movie the user rated in the eval split.</p>"]
    for s in samples:
        liked = "".join(f"<li>{html.escape(m['title'])} <span class=na>({m['rating']:g})</span></li>" for m in s["liked"])
        cols = "".join(
            f"<div class=list><h4>{html.escape(name)} ({_hits(recs)})</h4><ol>" + "".join(
                f"<li class=hit>✓ {html.escape(r['title'])}</li>" if r["hit"] else f"<li>{html.escape(r['title'])}</li>"
                for r in recs) + "</ol></div>"
            for name, recs in s["lists"].items())
        out.append(f"<div class=sample><h3>user {html.escape(s['user'])}: {s['train_ratings']} train ratings, "
                   f"{s['relevant']} eval movies</h3><div class=lists><div class=list><h4>best rated in train</h4>"
                   f"<ul>{liked}</ul></div>{cols}</div></div>")
    return "".join(out)


STYLE = """body{font-family:sans-serif;margin:2em;max-width:1150px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f4f4f4}td.na,.na{color:#999}.verdict{padding:.2em .5em;border-radius:4px;color:#fff}
.ok{background:#2a7d2a}.no{background:#b02a2a}.hit{color:#1a6b1a;font-weight:bold}
.lists{display:flex;gap:1.5em;flex-wrap:wrap}.list{min-width:200px;max-width:260px;font-size:90%}
.list h4{margin:.3em 0}.list ol,.list ul{padding-left:1.4em;margin:0}.sample{border-top:1px solid #ddd;margin-top:1em}"""


def _users_text(result: dict) -> str:
    sample = result.get("user_sample")
    if not sample:
        return f"{result['eval_users']} eval users (all ranked: exact metrics)"
    return (f"{sample['size']} of {sample['of']} eval users ranked, drawn with seed {sample['seed']} "
            f"(more than {sample['exact_max_users']}); <i>_ci95</i> rows are the half-widths of the 95% "
            f"confidence intervals of the ranking means")


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

    models = [(result["model"], result["candidate"])]
    if result.get("previous_blessed"):
        models.append(("last blessed", result["previous_blessed"]))
    models.append(("popularity", result["baselines"]["popularity"]))
    columns = models + [(k, v) for k, v in result["baselines"].items() if k != "popularity"]
    names = [n for c in columns for n in c[1] if isinstance(c[1][n], float)]
    names = sorted(set(names), key=names.index)
    head = "".join(f"<th>{c}</th>" for c, _ in columns)
    body = "".join(f"<tr><th>{n}</th>" + "".join(_num(v.get(n)) for _, v in columns) + "</tr>" for n in names)
    blessed = result["blessed"]
    config = result["config"]
    relevant = ("every eval rating" if config.get("rating_threshold") is None
                else f"eval ratings >= {config['rating_threshold']}")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>movierec {result['model']} evaluation</title>
<style>{STYLE}</style></head><body>
<h1>{result['model']}: <span class="verdict {'ok' if blessed else 'no'}">{'BLESSED' if blessed else 'NOT BLESSED'}</span></h1>
<ul>{''.join(f'<li>{html.escape(r)}</li>' for r in result['reasons'])}</ul>
<p>{_users_text(result)}; top-k lists with each user's train movies masked, k = {', '.join(map(str, config['ks']))};
relevant = {relevant}. Novelty = mean -log2 p(movie) of the recommended movies in bits
(p from train counts, add-one smoothed); coverage = share of the catalog recommended to anyone.</p>
<h2>Metrics</h2><table><tr><th>metric</th>{head}</tr>{body}</table>
{_segment_tables(result, models)}
{_samples_html(result.get('samples') or [])}
{''.join(f'<h2>{t}</h2><img src="data:image/png;base64,{b}">' for t, b in images)}
</body></html>"""
    path = os.path.join(folder, REPORT_FILE)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(page)
    return path
