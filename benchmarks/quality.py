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

Each split is indexed by the pipeline's own preprocessing: `preprocessing_fn` run by
tf.Transform in process, analyzed on the train part only (user, movie and genre vocabularies
by frequency; a test user or movie unseen in train gets the OOV index), both parts
transformed, read back and turned into the catalog by the Trainers' own reader
(`training_data`); the exporters take the Transform's vocabulary files.

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
    user: np.ndarray       # str [n]
    movie: np.ndarray      # str [n]
    rating: np.ndarray     # float32 [n]
    timestamp: np.ndarray  # int64 [n]


def load(data_dir: str) -> tuple[Ratings, dict]:
    records = list(readers.read_ratings(data_dir))
    movies, _ = readers.read_movies(data_dir)
    return Ratings(np.array([r.user_id for r in records], object), np.array([r.movie_id for r in records], object),
                   np.array([r.rating for r in records], np.float32),
                   np.array([r.timestamp for r in records], np.int64)), movies


def write_tuning_synthetic(folder: str) -> str:
    """Writes the TUNING_SYNTHETIC dataset (ml-latest layout) to `folder`; returns it."""
    from movierec.components.data import synth

    synth.generate(synth.SynthSpec(**TUNING_SYNTHETIC), folder)
    return folder


def subset(r: Ratings, idx) -> Ratings:
    return Ratings(r.user[idx], r.movie[idx], r.rating[idx], r.timestamp[idx])


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
    """One train/test split in the shapes the project's trainers and evaluator take, indexed
    by the pipeline's Transform (see `make_split`)."""

    train: object            # training_data.Interactions
    test: object
    user_vocab: list
    movie_vocab: list
    catalog: object          # training_data.Catalog
    vocab_paths: dict        # features.*_VOCAB -> the Transform's vocabulary file

    @property
    def sizes(self):
        return len(self.user_vocab), len(self.movie_vocab)


def records(r: Ratings, movies: dict) -> list[readers.RatingRecord]:
    """The rows of `r` as the pipeline's raw records (each joined with its movie)."""
    return [readers.RatingRecord(u, m, float(x), int(t), movies[m].title, movies[m].genres)
            for u, m, x, t in zip(r.user, r.movie, r.rating, r.timestamp)]


def make_split(train: Ratings, test: Ratings, movies: dict, folder: str, data_dir: str | None = None) -> Split:
    """Indexes a split with the pipeline's own preprocessing: `preprocessing_fn` run by
    tf.Transform in this process, analyzed on `train` only (vocabularies by frequency,
    unseen users and movies -> the OOV index = vocabulary size), `train` and `test`
    transformed and read back by the Trainers' reader; the catalog is the Trainers' too.
    `data_dir` fits the raw schema to the dataset as the pipeline does (default: the
    curated schema). Output under `folder`."""
    from movierec.components import features, preprocessing, training_data
    from movierec.components.data import dataset_schema
    from movierec.config import default_schema_path
    import tensorflow_transform as tft

    schema = dataset_schema.read_schema(default_schema_path())
    if data_dir is not None:
        schema = dataset_schema.schema_for(data_dir, schema)
    out = preprocessing.transform_in_process(records(train, movies), records(test, movies), schema, folder)
    tft_out = tft.TFTransformOutput(out.transform_output)
    names = (features.USER_VOCAB, features.MOVIE_VOCAB, features.GENRE_VOCAB)
    vocab = {n: training_data.decode_vocabulary(tft_out.vocabulary_by_name(n)) for n in names}
    train_data = training_data.read_interactions([out.train_files])
    test_data = training_data.read_interactions([out.eval_files])
    catalog = training_data.build_catalog(train_data.movies, vocab[features.MOVIE_VOCAB], vocab[features.GENRE_VOCAB])
    return Split(train_data, test_data, vocab[features.USER_VOCAB], vocab[features.MOVIE_VOCAB], catalog,
                 {n: tft_out.vocabulary_file_by_name(n) for n in names})


# -- models: train with the project's code, export with its exporters ----------------------
def export_mf(split: Split, config, out_dir: str) -> float:
    from movierec.components import features, training_data
    from movierec.components.mf import export, train

    started = time.perf_counter()
    model, _ = train.fit(config, split.train, *split.sizes,
                         scale=(float(split.train.rating.min()), float(split.train.rating.max())),
                         genre_matrix=split.catalog.genre_matrix)
    seconds = time.perf_counter() - started
    export.export(model, out_dir, user_vocab_path=split.vocab_paths[features.USER_VOCAB],
                  movie_vocab_path=split.vocab_paths[features.MOVIE_VOCAB], user_ids=split.user_vocab,
                  catalog=split.catalog, rated=training_data.rated_items(split.train, *split.sizes),
                  popularity=training_data.popularity(split.train, split.sizes[1]),
                  rating_range=(float(split.train.rating.min()), float(split.train.rating.max())), max_k=DEFAULT_MAX_K)
    return seconds


def export_content(split: Split, out_dir: str) -> float:
    from movierec.components import features, training_data
    from movierec.components.content import export, profiles

    started = time.perf_counter()
    model = profiles.fit(split.train.user_idx, split.train.movie_idx, split.train.rating, split.catalog,
                         split.sizes[0])
    seconds = time.perf_counter() - started
    export.export(out_dir, model=model, catalog=split.catalog,
                  user_vocab_path=split.vocab_paths[features.USER_VOCAB],
                  movie_vocab_path=split.vocab_paths[features.MOVIE_VOCAB],
                  genre_vocab_path=split.vocab_paths[features.GENRE_VOCAB],
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
                 models=MODELS, data_dir: str | None = None) -> list[dict]:
    split = make_split(train, test, movies, os.path.join(tmp, name, "transform"), data_dir)
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
        rating_rows += run_protocol("random 80/20", tr, te, movies, tmp, False, models, args.data_dir)
        if os.path.isfile(os.path.join(args.data_dir, "u1.base")):
            tr, te = file_split(ratings, args.data_dir, "u1.base", "u1.test")
            rating_rows += run_protocol("u1.base/u1.test", tr, te, movies, tmp, False, models, args.data_dir)
        tr, te = per_user_split(ratings, 0.75, SEED)
        ranking_rows = run_protocol("ranking", tr, te, movies, tmp, True, models, args.data_dir)
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
