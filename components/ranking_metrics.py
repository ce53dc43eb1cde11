"""Top-k ranking metrics, one implementation for the evaluator and the benchmarks.

Inputs: `top` int [U, K] recommended item indices per user, best first (-1 = padding, never
a hit); `relevant` a sequence of U collections of relevant item indices; `k` <= K.

Per user u with R = |relevant[u]| > 0 and hits h_i (1 if top[u, i] is relevant):
  precision@k = sum(h) / k                 (padding counts as a miss)
  recall@k    = sum(h) / R
  NDCG@k      = sum_i h_i / log2(i + 2)  /  sum_{i < min(R, k)} 1 / log2(i + 2)   (binary gain)
  AP@k        = sum_i h_i * precision@(i+1)  /  min(R, k)
  hit@k       = 1 if any h_i
Means are over users with R > 0; users with no relevant item are left out of every mean and
counted in `users_without_relevant` (they cannot be ranked well or badly).
coverage@k = distinct recommended items (over all users, padding excluded) / catalog size.
With `per_user_values`, `per_user` keeps each mean's per-user values; over a random sample of the users,
`sample_mean_ci` gives the 95% confidence interval of each mean (coverage, over a sample,
is the sample's coverage: it has no per-user form and no interval).

Beyond accuracy (who is served well, and what gets recommended):
Counts come from the train split: `item_counts` int [N] ratings per catalog item,
`user_counts` int [U] ratings per ranked user (row of `top`).

novelty@k = mean over recommended slots (padding excluded) of -log2 p(m), with
    p(m) = (c_m + 1) / (C + N)   (C = sum of item_counts; add-one smoothing keeps a never-
    rated movie finite: it is the most novel one). Higher = less obvious recommendations.
user activity segments: terciles of user_counts over the ranked users. With q1, q2 the
    counts at ranks ceil(U/3) and ceil(2U/3) (ascending), light: c <= q1, medium:
    q1 < c <= q2, heavy: c > q2; ties stay together, so segments can differ in size.
movie popularity segments: items sorted by count, most rated first (ties by index);
    head = the most rated items holding the first third of all train ratings (an item is
    head if the items before it hold < C/3), torso up to two thirds, tail the rest
    (including never-rated items and relevant items outside the catalog, index < 0).
    Per segment: share_of_recommendations = recommended slots on the segment's items /
    all recommended slots; precision = hits among those slots / those slots; recall =
    those hits / the relevant items of the segment (over all users with relevant items).
"""
from __future__ import annotations

from typing import Collection, Sequence

import numpy as np


def ranking_metrics(top: np.ndarray, relevant: Sequence[Collection[int]], k: int,
                    catalog_size: int, per_user_values: bool = False) -> dict:
    top = np.asarray(top)
    if top.ndim != 2:
        raise ValueError(f"top must be [users, K], got shape {top.shape}")
    if len(relevant) != top.shape[0]:
        raise ValueError(f"{top.shape[0]} ranked lists but {len(relevant)} relevance sets")
    if not 1 <= k <= top.shape[1]:
        raise ValueError(f"k={k} must be in 1..{top.shape[1]} (the lists' length)")
    if catalog_size < 1:
        raise ValueError(f"catalog_size must be >= 1, got {catalog_size}")
    top = top[:, :k]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    per_user = {"precision": [], "recall": [], "ndcg": [], "map": [], "hit_rate": []}
    skipped = 0
    for row, rel in zip(top, relevant):
        rel = set(int(r) for r in rel)
        if not rel:
            skipped += 1
            continue
        hits = np.array([(i >= 0) and (int(i) in rel) for i in row], float)
        n_hits = hits.sum()
        ideal = discounts[:min(len(rel), k)].sum()
        precision_at = np.cumsum(hits) / np.arange(1, k + 1)
        per_user["precision"].append(n_hits / k)
        per_user["recall"].append(n_hits / len(rel))
        per_user["ndcg"].append(float((hits * discounts).sum() / ideal))
        per_user["map"].append(float((hits * precision_at).sum() / min(len(rel), k)))
        per_user["hit_rate"].append(float(n_hits > 0))
    valid = top[top >= 0]
    result = {f"{name}@{k}": float(np.mean(v)) if v else 0.0 for name, v in per_user.items()}
    result[f"coverage@{k}"] = float(len(np.unique(valid)) / catalog_size)
    result["users"] = len(per_user["ndcg"])
    result["users_without_relevant"] = skipped
    result["ndcg_per_user"] = per_user["ndcg"]
    if per_user_values:
        result["per_user"] = {f"{name}@{k}": v for name, v in per_user.items()}
    return result


Z95 = 1.959963984540054   # the standard normal's 97.5% quantile


def sample_mean_ci(values: Sequence[float], population: int, z: float = Z95) -> float:
    """Half-width of the 95% confidence interval of the population mean, from the mean of
    `values`, a simple random sample without replacement of n of `population` users:
    z * s / sqrt(n) * sqrt((N - n) / (N - 1)), s the sample standard deviation (ddof 1).
    0 when the sample is the whole population (the mean is exact); nan below 2 values."""
    n = len(values)
    if population < n:
        raise ValueError(f"a sample of {n} from a population of {population}")
    if n == population:
        return 0.0
    if n < 2:
        return float("nan")
    s = float(np.std(np.asarray(values, np.float64), ddof=1))
    return z * s / np.sqrt(n) * np.sqrt((population - n) / (population - 1))


USER_SEGMENTS = ("light", "medium", "heavy")
MOVIE_SEGMENTS = ("head", "torso", "tail")


def novelty(top: np.ndarray, k: int, item_counts: np.ndarray) -> float:
    """Mean self-information (bits) of the recommended items at k; 0.0 when none."""
    counts = np.asarray(item_counts, np.float64)
    top = np.asarray(top)[:, :k]
    valid = top[top >= 0]
    if not len(valid):
        return 0.0
    p = (counts[valid] + 1) / (counts.sum() + len(counts))
    return float(np.mean(-np.log2(p)))


def user_activity_segments(user_counts: np.ndarray) -> tuple[np.ndarray, list[dict]]:
    """(segment index 0/1/2 per user, one {name, users, min_count, max_count} per segment)."""
    counts = np.asarray(user_counts, np.int64)
    if not len(counts):
        return np.zeros(0, np.int64), [{"name": n, "users": 0, "min_count": None, "max_count": None}
                                       for n in USER_SEGMENTS]
    ordered = np.sort(counts)
    q1 = ordered[-(-len(counts) // 3) - 1]
    q2 = ordered[-(-2 * len(counts) // 3) - 1]
    segment = np.where(counts <= q1, 0, np.where(counts <= q2, 1, 2))
    return segment, [_describe(n, counts[segment == s], "users") for s, n in enumerate(USER_SEGMENTS)]


def movie_popularity_segments(item_counts: np.ndarray) -> tuple[np.ndarray, list[dict]]:
    """(segment index 0/1/2 per item, one {name, movies, min_count, max_count,
    share_of_ratings} per segment)."""
    counts = np.asarray(item_counts, np.int64)
    total = counts.sum()
    order = np.argsort(-counts, kind="stable")
    before = np.cumsum(counts[order]) - counts[order]
    segment = np.empty(len(counts), np.int64)
    segment[order] = np.where(3 * before < total, 0, np.where(3 * before < 2 * total, 1, 2))
    described = []
    for s, name in enumerate(MOVIE_SEGMENTS):
        part = counts[segment == s]
        described.append({**_describe(name, part, "movies"),
                          "share_of_ratings": float(part.sum() / total) if total else 0.0})
    return segment, described


def _describe(name: str, counts: np.ndarray, unit: str) -> dict:
    return {"name": name, unit: int(len(counts)),
            "min_count": int(counts.min()) if len(counts) else None,
            "max_count": int(counts.max()) if len(counts) else None}


def by_user_segment(top: np.ndarray, relevant: Sequence[Collection[int]], k: int, catalog_size: int,
                    user_segment: np.ndarray) -> dict:
    """{segment name: {users, ndcg@k, precision@k}}: `ranking_metrics` on each segment's rows."""
    top = np.asarray(top)
    user_segment = np.asarray(user_segment)
    result = {}
    for s, name in enumerate(USER_SEGMENTS):
        rows = np.flatnonzero(user_segment == s)
        if not len(rows):
            result[name] = {"users": 0, f"ndcg@{k}": None, f"precision@{k}": None}
            continue
        m = ranking_metrics(top[rows], [relevant[r] for r in rows], k, catalog_size)
        result[name] = {"users": m["users"], f"ndcg@{k}": m[f"ndcg@{k}"], f"precision@{k}": m[f"precision@{k}"]}
    return result


def by_movie_segment(top: np.ndarray, relevant: Sequence[Collection[int]], k: int,
                     item_segment: np.ndarray) -> dict:
    """{segment name: {share_of_recommendations, precision, recall}} (None where undefined)."""
    top = np.asarray(top)[:, :k]
    item_segment = np.asarray(item_segment)
    tail = len(MOVIE_SEGMENTS) - 1
    slots, hits, wanted = np.zeros(3), np.zeros(3), np.zeros(3)
    for row, rel in zip(top, relevant):
        rel = set(int(r) for r in rel)
        if not rel:
            continue
        for m in rel:
            wanted[item_segment[m] if 0 <= m < len(item_segment) else tail] += 1
        for m in row[row >= 0]:
            slots[item_segment[m]] += 1
            hits[item_segment[m]] += int(m) in rel
    total = slots.sum()
    return {name: {"share_of_recommendations": float(slots[s] / total) if total else None,
                   "precision": float(hits[s] / slots[s]) if slots[s] else None,
                   "recall": float(hits[s] / wanted[s]) if wanted[s] else None}
            for s, name in enumerate(MOVIE_SEGMENTS)}
