"""Choose the content model's default settings on validation splits, never on test.

    .venv/bin/python benchmarks/tune_content.py
    .venv/bin/python benchmarks/tune_content.py --data-dir ../shared/data/ml-100k --json rows.json

Datasets: ML-100k (`--data-dir`) and an ml-latest-format dataset written by the project's
generator (`quality.TUNING_SYNTHETIC`, the dataset `tune_mf.py` uses too), or a real ml-latest folder given as
`--latest-dir`. For each, `benchmarks/quality.py`'s ranking protocol keeps its train part
(per user 75/25, seed 42); that part is split again per user 75/25 (seed 43, as
`tune_mf.py` does), so the test part is never read.

Every grid point is fitted on the first part with `profiles.fit` (the Trainer's code) and
ranked with `ContentModel.scores` (the numbers `serving_default` ranks by, through the same
TensorFlow ops), the fitted movies masked, top 10 with lower index first on ties (as
`masked_top_k`), metrics by the RankingEvaluator's code. Popularity on the same split is the
reference. The chosen point maximises the mean over datasets of validation NDCG@10 /
popularity NDCG@10 (each dataset counts the same, whatever its scale); the script prints
one table per dataset, the choice, and whether `ContentConfig()`'s defaults are that choice.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import sys
import tempfile

import numpy as np

import quality   # benchmarks/quality.py: a script's own folder is on sys.path

# (profile, smoothing, deviation_weight, popularity_weight, decades); smoothing and
# deviation_weight shape lift profiles only, so share profiles get one value of each
LIFT_GRID = {"smoothing": (30.0, 100.0, 300.0), "deviation_weight": (0.0, 0.25, 0.5, 0.75, 1.0),
             "popularity_weight": (0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0), "decades": (False, True)}
SHARE_GRID = {"popularity_weight": (0.0, 0.05, 0.1, 0.2, 0.4), "decades": (False, True)}
TOP = 10


def grid():
    from movierec.config import ContentConfig

    points = [ContentConfig(profile="lift", **dict(zip(LIFT_GRID, values)))
              for values in itertools.product(*LIFT_GRID.values())]
    points += [ContentConfig(profile="share", deviation_weight=0.0, **dict(zip(SHARE_GRID, values)))
               for values in itertools.product(*SHARE_GRID.values())]
    return points


def validation_split(quality, data_dir: str, folder: str):
    ratings, movies = quality.load(data_dir)
    train, _ = quality.per_user_split(ratings, 0.75, quality.SEED)
    fit_part, valid = quality.per_user_split(train, 0.75, quality.SEED + 1)
    return quality.make_split(fit_part, valid, movies, folder)


def evaluate(split, data, config) -> dict:
    """Validation metrics of one setting: fit, score, mask, top 10, the evaluator's metrics."""
    import tensorflow as tf
    from movierec.components.content import profiles
    from movierec.components.ranking_evaluator import executor as ev

    model = profiles.fit(split.train.user_idx, split.train.movie_idx, split.train.rating, split.catalog,
                         split.sizes[0], config)
    scores = model.scores(data.users)
    rows = np.repeat(np.arange(len(data.users)), [len(s) for s in data.train_seen])
    scores[rows, np.concatenate(data.train_seen) if data.train_seen else []] = -np.inf
    top = tf.math.top_k(scores, k=TOP).indices.numpy()
    return {"fit_seconds": model.fit_seconds, **ev.ranking_at(top, data, (TOP,))}


def tune(splits: dict, points) -> tuple[dict, list]:
    """({dataset: popularity metrics}, rows): one row per (dataset, point)."""
    from movierec.components.ranking_evaluator import executor as ev

    baselines, rows = {}, []
    for name, split in splits.items():
        data = ev.eval_data(split.train, split.test, split.user_vocab, split.movie_vocab)
        baselines[name] = ev.ranking_at(ev.popularity_top_k(data, TOP), data, (TOP,))
        for config in points:
            metrics = evaluate(split, data, config)
            rows.append({"dataset": name, "config": config, **metrics,
                         "vs_popularity": metrics["ndcg@10"] / baselines[name]["ndcg@10"]})
            print(f"  {name}: {describe(config)}: validation NDCG@10 {metrics['ndcg@10']:.4f}",
                  file=sys.stderr, flush=True)
    return baselines, rows


def choose(rows: list, datasets: list):
    """The setting with the highest mean NDCG@10 / popularity NDCG@10 over the datasets."""
    by_config: dict = {}
    for r in rows:
        by_config.setdefault(r["config"], {})[r["dataset"]] = r["vs_popularity"]
    complete = {c: np.mean([v[d] for d in datasets]) for c, v in by_config.items() if set(v) == set(datasets)}
    return max(complete, key=complete.get), complete


def describe(config) -> str:
    if config.profile == "share":
        return f"share beta={config.popularity_weight} decades={config.decades}"
    return (f"lift a={config.smoothing} gamma={config.deviation_weight} beta={config.popularity_weight} "
            f"decades={config.decades}")


def table(name: str, rows: list, baseline: dict, chosen, keep: int) -> str:
    from movierec.config import ContentConfig

    mine = sorted((r for r in rows if r["dataset"] == name), key=lambda r: -r["ndcg@10"])
    marks = {chosen: "chosen", ContentConfig.seed_article(): "seed article"}
    shown = [r for i, r in enumerate(mine) if i < keep or r["config"] in marks]
    lines = [f"{name}: popularity NDCG@10 {baseline['ndcg@10']:.4f}, P@10 {baseline['precision@10']:.4f}", "",
             "| rank | profile | smoothing | deviation weight | popularity weight | decades | validation NDCG@10 "
             "| P@10 | / popularity | fit s | |",
             "|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---|"]
    for r in shown:
        c = r["config"]
        lift = c.profile == "lift"
        lines.append(f"| {mine.index(r) + 1} | {c.profile} | {c.smoothing if lift else '-'} | "
                     f"{c.deviation_weight if lift else '-'} | {c.popularity_weight} | {c.decades} | "
                     f"{r['ndcg@10']:.4f} | {r['precision@10']:.4f} | {r['vs_popularity']:.3f} | "
                     f"{r['fit_seconds']:.2f} | {marks.get(c, '')} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=os.environ.get("MOVIEREC_DATA_DIR", "../shared/data/ml-100k"),
                   help="the ML-100k folder")
    p.add_argument("--latest-dir", help="an ml-latest folder to use instead of a synthetic one")
    p.add_argument("--show", type=int, default=12, help="table rows per dataset (plus the chosen and seed rows)")
    p.add_argument("--json", metavar="PATH", help="also write every row as a JSON list to PATH")
    args = p.parse_args(argv)
    from movierec.config import ContentConfig
    with tempfile.TemporaryDirectory() as tmp:
        latest = args.latest_dir
        if latest is None:
            latest = quality.write_tuning_synthetic(os.path.join(tmp, "synthetic"))
            spec = quality.TUNING_SYNTHETIC
            latest_name = f"synthetic ml-latest ({spec['users']} users, {spec['movies']} movies, {spec['ratings']} ratings)"
        else:
            latest_name = f"ml-latest ({os.path.basename(os.path.normpath(latest))})"
        splits = {"ML-100k": validation_split(quality, args.data_dir, os.path.join(tmp, "v100k")),
                  latest_name: validation_split(quality, latest, os.path.join(tmp, "vlatest"))}
        baselines, rows = tune(splits, grid())
    chosen, means = choose(rows, list(splits))
    for name in splits:
        print(table(name, rows, baselines[name], chosen, args.show) + "\n")
    default = ContentConfig()
    print(f"chosen (mean NDCG@10 / popularity {means[chosen]:.3f} over both datasets): {describe(chosen)}")
    print(f"ContentConfig() defaults ({describe(default)}, mean {means.get(default, float('nan')):.3f}) "
          f"{'are' if default == chosen else 'are NOT'} the chosen point")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{**{k: v for k, v in r.items() if k not in ("config", "ndcg_per_user")},
                        **dataclasses.asdict(r["config"])} for r in rows], f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
