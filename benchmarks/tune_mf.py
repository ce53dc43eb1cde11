"""Choose the default MF's hyper-parameters on validation splits carved from train, on several datasets.

    .venv/bin/python benchmarks/tune_mf.py                     # ML-100k + a synthetic ml-latest dataset
    .venv/bin/python benchmarks/tune_mf.py --half rating --data-dir DIR --data-dir synthetic

The default MF (`MFConfig`, objective "ials+bayes") has two halves, tuned separately:
  ranking (iALS, serving_default): the ranking protocol's train part (per user 75%, seed 42,
      `quality.per_user_split`) is split again per user 75/25 (seed 43); fit on the first part,
      NDCG@10 on the second, the user's fit movies masked. Grid: RANKING_GRID.
  rating (Bayesian MF, predict_rating): the 80/20 protocol's train part (seed 42) is split
      again 90/10 (seed 7); RMSE of clipped predictions. Grid: RATING_GRID.
The test parts of the protocols are never read. Each point's score on a dataset is relative to
that dataset's best point (NDCG / best NDCG; best RMSE / RMSE). The chosen point is the
fastest to fit of those whose mean relative score over the datasets is within TOLERANCE of
the best; the table shows every dataset's own number and the fit seconds, so a point that
wins on one dataset only is visible.

`synthetic` as a data dir means the project's generator (`components/data/synth.py`) in the
ml-latest layout, at `quality.TUNING_SYNTHETIC` (a few thousand users with genre tastes and
long-tailed popularity), written to a temporary folder.
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile

import numpy as np

import quality   # benchmarks/quality.py: a script's own folder is on sys.path

# alpha0 0.05 / 0.2, reg 0.05 and widths 192 / 256 lost on both datasets in wider sweeps (docs/quality.md)
RANKING_GRID = {"embedding_dim": (64, 128), "ials_alpha0": (0.1,), "ials_reg": (0.02, 0.03),
                "ials_iterations": (10, 20), "hybrid": (False, True)}
RATING_GRID = {"bayes_dim": (8, 10, 16), "hybrid": (False, True),
               "schedule": ((100, 50, 4), (50, 30, 2))}   # (samples kept, burn-in sweeps, thinning)
TOLERANCE = 0.001   # mean relative scores this close are a tie (seeds move them about as much): the faster wins


def ranking_point(split: "quality.Split", **overrides) -> dict:
    """Validation metrics of one iALS point: fit through `train.fit`, rank with the model's own
    `score_all_movies` (what `serving_default` ranks by), fit movies masked, the evaluator's
    metric code. No SavedModel per point: the sweep would spend most of its time saving."""
    import tensorflow as tf
    from movierec.components.mf import train
    from movierec.components.ranking_evaluator import executor as ev
    from movierec.config import MFConfig

    config = MFConfig(objective="ials", **overrides)
    model, result = train.fit(config, split.train, *split.sizes, genre_matrix=split.catalog.genre_matrix)
    data = quality.eval_data(split)
    scores = model.score_all_movies(tf.constant(data.users)).numpy()
    for row, seen in enumerate(data.train_seen):
        scores[row, seen] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    return {"fit_seconds": result.fit_seconds, **ev.ranking_at(top, data, (10,))}


def rating_point(split: "quality.Split", schedule=(100, 50, 4), **overrides) -> dict:
    """Validation RMSE of one Bayesian MF point (the model the Trainer exports, re-factored)."""
    from movierec.components.mf import train
    from movierec.config import MFConfig

    samples, burn_in, thin = schedule
    config = MFConfig(objective="bayes", bayes_samples=samples, bayes_burn_in=burn_in, bayes_thin=thin, **overrides)
    scale = (float(split.train.rating.min()), float(split.train.rating.max()))
    model, result = train.fit(config, split.train, *split.sizes, genre_matrix=split.catalog.genre_matrix)
    return {"fit_seconds": result.fit_seconds, **train.rating_errors(model, split.test, split.sizes, scale)}


HALVES = {
    # half: (grid, point function, metric, higher is better, validation split of a dataset)
    "ranking": (RANKING_GRID, ranking_point, "ndcg@10", True,
                lambda r: quality.per_user_split(quality.per_user_split(r, 0.75, quality.SEED)[0], 0.75,
                                                 quality.SEED + 1)),
    "rating": (RATING_GRID, rating_point, "rmse", False,
               lambda r: quality.random_split(quality.random_split(r, 0.8, quality.SEED)[0], 0.9, 7)),
}


def sweep(half: str, datasets: dict, tmp: str) -> tuple[list[dict], dict]:
    """Every grid point on every dataset -> (rows sorted best first, the chosen point)."""
    grid, point_fn, metric, higher, carve = HALVES[half]
    points = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    rows = [{"point": p, "scores": {}, "seconds": {}} for p in points]
    for name, (ratings, movies) in datasets.items():
        fit_part, valid = carve(ratings)
        split = quality.make_split(fit_part, valid, movies, os.path.join(tmp, half, name, "vocab"))
        for row in rows:
            result = point_fn(split, **row["point"])
            row["scores"][name], row["seconds"][name] = result[metric], result["fit_seconds"]
            print(f"  {half} {name} {row['point']}: {metric} {result[metric]:.4f} ({result['fit_seconds']:.1f} s)",
                  file=sys.stderr, flush=True)
    for name in datasets:
        values = [r["scores"][name] for r in rows]
        best = max(values) if higher else min(values)
        for r in rows:
            r.setdefault("relative", {})[name] = r["scores"][name] / best if higher else best / r["scores"][name]
    for r in rows:
        r["mean_relative"] = float(np.mean(list(r["relative"].values())))
        r["mean_seconds"] = float(np.mean(list(r["seconds"].values())))
    rows.sort(key=lambda r: -r["mean_relative"])
    close = [r for r in rows if r["mean_relative"] >= rows[0]["mean_relative"] - TOLERANCE]
    return rows, min(close, key=lambda r: r["mean_seconds"])["point"]


def table(half: str, rows: list[dict], datasets: list[str]) -> str:
    grid, _, metric, _, _ = HALVES[half]
    head = list(grid) + [f"{metric} {d}" for d in datasets] + ["mean relative"] + [f"fit s {d}" for d in datasets]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for r in rows:
        cells = [str(r["point"][k]) for k in grid] + [f"{r['scores'][d]:.4f}" for d in datasets]
        cells += [f"{r['mean_relative']:.4f}"] + [f"{r['seconds'][d]:.1f}" for d in datasets]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def load_datasets(dirs: list[str], tmp: str) -> dict:
    out = {}
    for d in dirs:
        if d == "synthetic":
            out["synthetic"] = quality.load(quality.write_tuning_synthetic(os.path.join(tmp, "synthetic")))
        else:
            out[os.path.basename(os.path.normpath(d))] = quality.load(d)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", action="append", default=None,
                   help="a MovieLens folder, or 'synthetic'; repeat (default: ../shared/data/ml-100k and synthetic)")
    p.add_argument("--half", choices=sorted(HALVES), action="append", default=None,
                   help="which half to tune (default: both)")
    args = p.parse_args(argv)
    dirs = args.data_dir or [os.environ.get("MOVIEREC_DATA_DIR", "../shared/data/ml-100k"), "synthetic"]
    with tempfile.TemporaryDirectory() as tmp:
        datasets = load_datasets(dirs, tmp)
        for half in args.half or sorted(HALVES):
            rows, chosen = sweep(half, datasets, tmp)
            print(f"\n{half} half, validation splits of {', '.join(datasets)}; chosen: {chosen}\n")
            print(table(half, rows, list(datasets)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
