"""Recommendation quality on MovieLens: the rating and ranking protocols, one markdown table each.

    .venv/bin/python benchmarks/quality.py --data-dir ../shared/data/ml-100k

Protocols
  rating (random)  ratings shuffled with seed 42, 80% train / 20% test; RMSE and MAE
  rating (u1)      the canonical u1.base / u1.test split
  ranking          per user, that user's ratings shuffled with seed 42, 75% to train and the
                   rest to test; every movie seen in train is scored, the user's train
                   movies are removed, top 10; relevant = any test movie of that user.
                   P@10, R@10, NDCG@10 (binary gain, ideal DCG over min(|relevant|, 10)),
                   MAP@10, HitRate@10, coverage.

Every model is trained by the project's own code (`movierec.components.mf.train`,
`...content.profiles`), exported by the project's exporters with the train movies masked,
loaded back, and scored through its SavedModel signatures (`serving_default` for the
top-10, `predict_rating` for ratings), with the metric code of the pipeline's
RankingEvaluator. So what is measured is what is served. Popularity is the evaluator's own
baseline (train counts, train movies removed).

Default hyper-parameters are chosen by `benchmarks/tune_mf.py` on validation splits carved
from these protocols' train parts, never on their test parts.

Models: mf (the default `MFConfig()`: the ials ranker and bayes rater side by side, hybrid),
mf-mse (the article), mf-bayes (Bayesian MF alone), mf-ials (the iALS ranker alone, ratings
from a bias head), each also as -hybrid (genres inside the MF) or not, content (seed 000),
popularity.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time

import numpy as np

from movierec.components.data import readers
from movierec.contract import DEFAULT_MAX_K

SEED = 42


# The ml-latest-format dataset the tuning commands use beside real MovieLens folders: the
# project's generator (`components/data/synth.py`) at a few thousand users.
TUNING_SYNTHETIC = {"users": 2000, "movies": 3000, "ratings": 150_000, "seed": 7}


@dataclasses.dataclass
class Ratings:
    user: np.ndarray    # str [n]
    movie: np.ndarray   # str [n]
    rating: np.ndarray  # float32 [n]


def load(data_dir: str) -> tuple[Ratings, dict]:
    records = list(readers.read_ratings(data_dir))
    movies, _ = readers.read_movies(data_dir)
    return Ratings(np.array([r.user_id for r in records], object), np.array([r.movie_id for r in records], object),
                   np.array([r.rating for r in records], np.float32)), movies


def write_tuning_synthetic(folder: str) -> str:
    """Writes the TUNING_SYNTHETIC dataset (ml-latest layout) to `folder`; returns it."""
    from movierec.components.data import synth

    synth.generate(synth.SynthSpec(**TUNING_SYNTHETIC), folder)
    return folder


def subset(r: Ratings, idx) -> Ratings:
    return Ratings(r.user[idx], r.movie[idx], r.rating[idx])


def random_split(r: Ratings, train_fraction: float, seed: int) -> tuple[Ratings, Ratings]:
    order = np.random.default_rng(seed).permutation(len(r.rating))
    cut = int(round(train_fraction * len(order)))
    return subset(r, np.sort(order[:cut])), subset(r, np.sort(order[cut:]))


def per_user_split(r: Ratings, train_fraction: float, seed: int) -> tuple[Ratings, Ratings]:
    rng = np.random.default_rng(seed)
    train = np.zeros(len(r.rating), bool)
    order = np.argsort(r.user, kind="stable")
    users, starts = np.unique(r.user[order], return_index=True)
    for start, end in zip(starts, list(starts[1:]) + [len(order)]):
        idx = order[start:end].copy()
        rng.shuffle(idx)
        train[idx[: int(round(train_fraction * len(idx)))]] = True
    return subset(r, np.flatnonzero(train)), subset(r, np.flatnonzero(~train))


def file_split(r: Ratings, data_dir: str, base: str, test: str) -> tuple[Ratings, Ratings]:
    index = {(u, m): i for i, (u, m) in enumerate(zip(r.user, r.movie))}

    def rows(name):
        with open(os.path.join(data_dir, name), encoding="latin-1") as f:
            return np.array([index[tuple(line.split("\t")[:2])] for line in f if line.strip()])
    return subset(r, rows(base)), subset(r, rows(test))


@dataclasses.dataclass
class Split:
    """One train/test split in the shapes the project's trainers and evaluator take."""

    train: object            # training_data.Interactions
    test: object
    user_vocab: list
    movie_vocab: list
    catalog: object          # training_data.Catalog
    folder: str              # vocabulary files

    @property
    def sizes(self):
        return len(self.user_vocab), len(self.movie_vocab)


def make_split(train: Ratings, test: Ratings, movies: dict, folder: str):
    from movierec.components.training_data import Catalog, Interactions

    user_vocab = sorted(set(train.user), key=lambda x: (len(x), x))
    movie_vocab = sorted(set(train.movie), key=lambda x: (len(x), x))
    uix = {u: i for i, u in enumerate(user_vocab)}
    mix = {m: i for i, m in enumerate(movie_vocab)}

    def inter(r: Ratings):
        n = len(r.rating)
        return Interactions(
            user_idx=np.array([uix.get(u, len(user_vocab)) for u in r.user], np.int64),
            movie_idx=np.array([mix.get(m, len(movie_vocab)) for m in r.movie], np.int64),
            rating=r.rating, timestamp=np.zeros(n, np.int64), title=np.zeros(n, object),
            genre_row_splits=np.zeros(n + 1, np.int64), genre_values=np.zeros(0, np.int64))

    genre_names = sorted({g for m in movies.values() for g in m.genres})
    gix = {g: i for i, g in enumerate(genre_names)}
    matrix = np.zeros((len(movie_vocab), len(genre_names)), np.float32)
    for i, m in enumerate(movie_vocab):
        matrix[i, [gix[g] for g in movies[m].genres]] = 1.0
    os.makedirs(folder, exist_ok=True)
    for name, vocab in (("users", user_vocab), ("movies", movie_vocab), ("genres", genre_names)):
        with open(os.path.join(folder, name), "w") as f:
            f.write("\n".join(vocab) + "\n")
    catalog = Catalog(movie_ids=movie_vocab, titles=[movies[m].title for m in movie_vocab],
                      genre_names=genre_names, genre_matrix=matrix)
    return Split(inter(train), inter(test), user_vocab, movie_vocab, catalog, folder)


# -- models: train with the project's code, export with its exporters ----------------------
def export_mf(split: Split, config, out_dir: str) -> float:
    from movierec.components import training_data
    from movierec.components.mf import export, train

    started = time.perf_counter()
    model, _ = train.fit(config, split.train, *split.sizes,
                         scale=(float(split.train.rating.min()), float(split.train.rating.max())),
                         genre_matrix=split.catalog.genre_matrix)
    seconds = time.perf_counter() - started
    export.export(model, out_dir, user_vocab_path=os.path.join(split.folder, "users"),
                  movie_vocab_path=os.path.join(split.folder, "movies"), user_ids=split.user_vocab,
                  catalog=split.catalog, rated=training_data.rated_items(split.train, *split.sizes),
                  popularity=training_data.popularity(split.train, split.sizes[1]),
                  rating_range=(float(split.train.rating.min()), float(split.train.rating.max())), max_k=DEFAULT_MAX_K)
    return seconds


def export_content(split: Split, out_dir: str) -> float:
    from movierec.components import training_data
    from movierec.components.content import export, profiles

    started = time.perf_counter()
    model = profiles.fit(split.train.user_idx, split.train.movie_idx, split.train.rating, split.catalog,
                         split.sizes[0])
    seconds = time.perf_counter() - started
    export.export(out_dir, model=model, catalog=split.catalog,
                  user_vocab_path=os.path.join(split.folder, "users"),
                  movie_vocab_path=os.path.join(split.folder, "movies"),
                  genre_vocab_path=os.path.join(split.folder, "genres"),
                  rated=training_data.rated_items(split.train, *split.sizes),
                  popularity=training_data.popularity(split.train, split.sizes[1]), max_k=DEFAULT_MAX_K)
    return seconds


def eval_data(split: Split):
    """The evaluator's own relevance and masks for this split (see RankingEvaluator)."""
    from movierec.components.ranking_evaluator.executor import eval_data as evaluator_eval_data

    return evaluator_eval_data(split.train, split.test, split.user_vocab, split.movie_vocab)


def score(model_dir: str | None, split: Split, ranking: bool) -> dict:
    import tensorflow as tf
    from movierec.components.ranking_evaluator import executor as ev

    data = eval_data(split)
    if model_dir is None:  # popularity
        return ev.ranking_at(ev.popularity_top_k(data, 10), data, (10,)) if ranking else {}
    loaded = tf.saved_model.load(model_dir)
    if ranking:
        return ev.ranking_at(ev.model_top_k(loaded, data, 10, 2048), data, (10,))
    return ev.model_rating_errors(loaded, data) or {}


MODELS = ("mf", "mf-mse", "mf-mse-hybrid", "mf-bayes", "mf-bayes-hybrid", "mf-ials", "mf-ials-hybrid", "content",
          "popularity")


def model_configs():
    from movierec.config import MFConfig
    configs = {"mf": MFConfig()}
    for objective in ("mse", "bayes", "ials"):
        configs[f"mf-{objective}"] = MFConfig(objective=objective, hybrid=False)
        configs[f"mf-{objective}-hybrid"] = MFConfig(objective=objective, hybrid=True)
    return configs


def run_protocol(name: str, train: Ratings, test: Ratings, movies: dict, tmp: str, ranking: bool,
                 models=MODELS) -> list[dict]:
    split = make_split(train, test, movies, os.path.join(tmp, name, "vocab"))
    rows = []
    configs = model_configs()
    for model in models:
        out = os.path.join(tmp, name, model)
        if model in configs:
            seconds = export_mf(split, configs[model], out)
        elif model == "content":
            if not ranking:
                continue
            seconds = export_content(split, out)
        else:
            out, seconds = None, 0.0
            if not ranking:
                continue
        metrics = score(out, split, ranking)
        rows.append({"protocol": name, "model": model, "fit_seconds": seconds, **metrics})
        print(f"  {name}: {model} done ({seconds:.1f} s fit)", file=sys.stderr, flush=True)
    return rows


def rating_table(rows: list[dict]) -> str:
    lines = ["| protocol | model | RMSE | MAE | fit s |", "|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['protocol']} | {r['model']} | {r['rmse']:.4f} | {r['mae']:.4f} | {r['fit_seconds']:.1f} |")
    return "\n".join(lines)


def ranking_table(rows: list[dict]) -> str:
    cols = ["precision@10", "recall@10", "ndcg@10", "map@10", "hit_rate@10", "coverage@10"]
    lines = ["| model | " + " | ".join(c.replace("@10", "@10") for c in cols) + " | fit s |",
             "|---|" + "---:|" * (len(cols) + 1)]
    for r in rows:
        lines.append(f"| {r['model']} | " + " | ".join(f"{r[c]:.4f}" for c in cols) + f" | {r['fit_seconds']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=os.environ.get("MOVIEREC_DATA_DIR", "../shared/data/ml-100k"))
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {MODELS}")
    p.add_argument("--json", metavar="PATH", help="also write every row (protocol, model, metrics, fit seconds) "
                   "as a JSON list to PATH")
    args = p.parse_args(argv)
    ratings, movies = load(args.data_dir)
    models = tuple(m for m in args.models.split(",") if m)
    unknown = set(models) - set(MODELS)
    if unknown:
        p.error(f"unknown models {sorted(unknown)}; known: {MODELS}")
    with tempfile.TemporaryDirectory() as tmp:
        rating_rows = []
        tr, te = random_split(ratings, 0.8, SEED)
        rating_rows += run_protocol("random 80/20", tr, te, movies, tmp, False, models)
        if os.path.isfile(os.path.join(args.data_dir, "u1.base")):
            tr, te = file_split(ratings, args.data_dir, "u1.base", "u1.test")
            rating_rows += run_protocol("u1.base/u1.test", tr, te, movies, tmp, False, models)
        tr, te = per_user_split(ratings, 0.75, SEED)
        ranking_rows = run_protocol("ranking", tr, te, movies, tmp, True, models)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rating_rows + ranking_rows, f, indent=1)
    print("Rating prediction (predict_rating signature):\n")
    print(rating_table(rating_rows))
    print("\nTop-10 ranking (serving_default signature, train movies masked):\n")
    print(ranking_table(ranking_rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
