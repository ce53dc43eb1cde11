"""Open-source recommenders next to the project's models, on the splits of benchmarks/quality.py.

    benchmarks/peers/run.sh --data-dir ../shared/data/ml-100k [--out table.md]
    benchmarks/peers/run.sh --data-dir ../shared/data/ml-100k --tune     # the validation sweep

Runs in the peers venv (benchmarks/peers/.venv, made by setup.sh; no TensorFlow). For each
protocol of `quality.py` (its own `load`, `random_split`, `per_user_split` and `file_split`,
imported from its file, so the splits are the same rows) every peer is fitted on the train
part, its fit timed (the library's fit call only, data conversion excluded), and scored:

  ranking (per user 75/25, seed 42): every movie seen in train is scored, the user's train
      movies are removed, top 10; relevant = any test movie of the user (a test movie never
      seen in train still counts, and can never be hit). Users are the train users with test
      movies. Metrics: `movierec.components.ranking_metrics.ranking_metrics`, the code of the
      pipeline's RankingEvaluator. All ratings count as positive feedback (value 1).
  rating (random 80/20 seed 42, and u1.base/u1.test): RMSE and MAE of the predicted ratings
      on every test row (Surprise's own `accuracy` functions; Surprise clips to 1..5 and
      falls back to the biases for a user or movie unknown to train).

Vocabularies follow `quality.make_split`, which takes them from the pipeline's Transform
(train users and movies by train count, most first, ties by id, larger first), so
the harness's popularity ranks exactly like the evaluator's popularity baseline: the two
popularity rows of the table must agree, which checks that the protocol is the same.

Then the project's rows come from the main venv's `quality.py --models mf,content,popularity
--json` (run in a subprocess unless `--project-json` names a file it wrote), and one markdown
table is printed (and written to `--out`).

Peers and hyper-parameters. The ranking peers' settings were chosen on a validation split
carved from the ranking protocol's train part (per user 75/25, seed 43, as `quality.py
--tune`; the test part is never read) from the grids of TUNE_GRID, around each library's
documented or usual ML-100k settings; `--tune` re-runs that sweep. The chosen point of each
is noted at PEERS. The rating peers use Surprise's defaults (the settings of its own ML-100k
benchmark table); they are not tuned.
  implicit ALS    confidence 1 + alpha * r (Hu et al.); BM25 weighting (implicit's lastfm
                  example) is in the grid and lost on validation
  implicit BPR    implicit's sampler, item bias
  cornac EASE     the closed form of Steck (2019), negative weights kept (posB=False, the
                  paper's model; cornac's default clips them)
  cornac BPR      cornac's sampler, item bias
  LightFM WARP    item features = identity + the movie's genres, rows normalised to sum 1
                  (as `lightfm.data.Dataset` builds them), adagrad
  Surprise SVD, SVD++   the library's defaults
"""
from __future__ import annotations

import os

# implicit asks for a single-threaded OpenBLAS (its own threads do the work); set before numpy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import collections
import dataclasses
import datetime
import importlib.util
import itertools
import json
import platform
import subprocess
import sys
import tempfile
import time
from typing import Callable

import numpy as np
import scipy.sparse as sp

from movierec.components.ranking_metrics import ranking_metrics

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
QUALITY_PATH = os.path.join(REPO, "benchmarks", "quality.py")
SEED = 42
K = 10
THREADS = 2


def _load_quality():
    """quality.py as a module (benchmarks/ is not a package); it imports only the readers."""
    spec = importlib.util.spec_from_file_location("movierec_quality_benchmark", QUALITY_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


quality = _load_quality()


@dataclasses.dataclass
class Protocol:
    """One train/test split, indexed like `quality.make_split` indexes it."""

    name: str
    train: object                 # quality.Ratings
    test: object
    user_vocab: list
    movie_vocab: list
    train_user: np.ndarray        # int [n] indices of the train rows
    train_movie: np.ndarray
    genre_matrix: np.ndarray      # float [movies, genres] of the train movies
    eval_users: np.ndarray        # int [U'] train users with test movies
    relevant: list                # per eval user: set of movie indices (< 0: not in train)

    @property
    def sizes(self) -> tuple[int, int]:
        return len(self.user_vocab), len(self.movie_vocab)

    def train_matrix(self) -> sp.csr_matrix:
        """Users x movies, 1 for every train rating."""
        ones = np.ones(len(self.train_user), np.float32)
        return sp.csr_matrix((ones, (self.train_user, self.train_movie)), shape=self.sizes)


def _by_frequency(ids) -> list:
    """tf.Transform's frequency vocabulary order (components/preprocessing.py): most train
    ratings first, ties by id, larger first."""
    counts = collections.Counter(ids)
    return sorted(counts, key=lambda x: (counts[x], x.encode()), reverse=True)


def prepare(name: str, train, test, movies: dict) -> Protocol:
    """Index a split as `quality.make_split` and the evaluator's `eval_data` do: vocabularies
    of the train users and movies in the Transform's order (`_by_frequency`); relevant sets
    per train user with test rows. (Those two import TensorFlow, which this venv does not
    have; the order is written again here for that reason, and the popularity rows of the
    table, which must agree, check it.)"""
    user_vocab = _by_frequency(train.user)
    movie_vocab = _by_frequency(train.movie)
    uix = {u: i for i, u in enumerate(user_vocab)}
    mix = {m: i for i, m in enumerate(movie_vocab)}
    genres = sorted({g for m in movies.values() for g in m.genres})
    gix = {g: i for i, g in enumerate(genres)}
    genre_matrix = np.zeros((len(movie_vocab), len(genres)), np.float32)
    for i, m in enumerate(movie_vocab):
        genre_matrix[i, [gix[g] for g in movies[m].genres]] = 1.0
    relevant: dict[int, set] = {}
    for n, (u, m) in enumerate(zip(test.user, test.movie)):
        if u in uix:  # a movie unknown to train is relevant but can never be recommended
            relevant.setdefault(uix[u], set()).add(mix.get(m, -2 - n))
    users = np.array(sorted(relevant), np.int64)
    return Protocol(name, train, test, user_vocab, movie_vocab,
                    np.array([uix[u] for u in train.user], np.int64),
                    np.array([mix[m] for m in train.movie], np.int64),
                    genre_matrix, users, [relevant[int(u)] for u in users])


def top_k(scores: np.ndarray, p: Protocol) -> np.ndarray:
    """Top-K movie indices per eval user, best first, train movies masked; ties keep the
    lower movie index first (a stable sort, as the evaluator's popularity baseline)."""
    seen = p.train_matrix()
    scores = np.array(scores, np.float64)
    for row, u in enumerate(p.eval_users):
        scores[row, seen.indices[seen.indptr[u]:seen.indptr[u + 1]]] = -np.inf
    return np.argsort(-scores, axis=1, kind="stable")[:, :K]


# -- peers: each `fit(protocol, **params)` returns a fitted model and the fit seconds; a
# ranking peer's `scores(model, protocol)` gives [eval users, movies], a rating peer's
# `rating_errors(model, protocol)` gives {rmse, mae} on the test rows.
def _timed(fn: Callable):
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def popularity_fit(p: Protocol):
    return _timed(lambda: np.bincount(p.train_movie, minlength=p.sizes[1]).astype(np.float64))


def popularity_scores(counts, p: Protocol):
    return np.broadcast_to(counts, (len(p.eval_users), len(counts)))


def implicit_als_fit(p: Protocol, factors=64, regularization=0.05, iterations=15, weighting="bm25", alpha=1.0):
    """weighting "bm25": the weighting of implicit's lastfm example (BM25 over the item x user
    matrix, K1=100, B=0.8); "confidence": the plain 1 + alpha * r of Hu et al."""
    from implicit.als import AlternatingLeastSquares
    from implicit.nearest_neighbours import bm25_weight

    matrix = p.train_matrix()
    if weighting == "bm25":
        matrix = bm25_weight(matrix.T.tocoo(), K1=100, B=0.8).T.tocsr().astype(np.float32)
    model = AlternatingLeastSquares(factors=factors, regularization=regularization, alpha=alpha,
                                    iterations=iterations, num_threads=THREADS, random_state=SEED)
    return model, _timed(lambda: model.fit(matrix, show_progress=False))[1]


def implicit_bpr_fit(p: Protocol, factors=64, learning_rate=0.01, regularization=0.01, iterations=100):
    from implicit.bpr import BayesianPersonalizedRanking

    model = BayesianPersonalizedRanking(factors=factors, learning_rate=learning_rate, regularization=regularization,
                                        iterations=iterations, num_threads=THREADS, random_state=SEED)
    matrix = p.train_matrix()
    return model, _timed(lambda: model.fit(matrix, show_progress=False))[1]


def implicit_scores(model, p: Protocol):
    return model.user_factors[p.eval_users] @ model.item_factors.T


def _cornac_train_set(p: Protocol):
    import cornac

    triples = [(str(u), str(m), 1.0) for u, m in zip(p.train_user, p.train_movie)]
    return cornac.data.Dataset.from_uir(triples, seed=SEED)


def cornac_ease_fit(p: Protocol, lamb=500.0, pos_b=False):
    from cornac.models import EASE

    data = _cornac_train_set(p)
    model = EASE(lamb=lamb, posB=pos_b, verbose=False, seed=SEED)
    return (model, data), _timed(lambda: model.fit(data))[1]


def cornac_bpr_fit(p: Protocol, k=64, max_iter=200, learning_rate=0.01, lambda_reg=0.01):
    from cornac.models import BPR

    data = _cornac_train_set(p)
    model = BPR(k=k, max_iter=max_iter, learning_rate=learning_rate, lambda_reg=lambda_reg,
                num_threads=THREADS, verbose=False, seed=SEED)
    return (model, data), _timed(lambda: model.fit(data))[1]


def cornac_scores(fitted, p: Protocol):
    """The model's `score(user)` over its own item index, mapped back to the protocol's."""
    model, data = fitted
    items = np.array([data.iid_map[str(m)] for m in range(p.sizes[1])])
    return np.stack([np.asarray(model.score(data.uid_map[str(u)])).ravel()[items] for u in p.eval_users])


def lightfm_fit(p: Protocol, no_components=64, epochs=30, learning_rate=0.05, item_alpha=0.0):
    from lightfm import LightFM

    n = p.sizes[1]
    features = sp.hstack([sp.identity(n, np.float32, format="csr"), sp.csr_matrix(p.genre_matrix)]).tocsr()
    features = sp.diags(1.0 / np.asarray(features.sum(axis=1)).ravel()) @ features
    model = LightFM(no_components=no_components, loss="warp", learning_rate=learning_rate, item_alpha=item_alpha,
                    random_state=SEED)
    matrix = p.train_matrix().tocoo()
    seconds = _timed(lambda: model.fit(matrix, item_features=features, epochs=epochs, num_threads=THREADS))[1]
    return (model, features), seconds


def lightfm_scores(fitted, p: Protocol):
    model, features = fitted
    item_bias, item_embed = model.get_item_representations(features)
    user_bias, user_embed = model.get_user_representations()
    return user_embed[p.eval_users] @ item_embed.T + item_bias[None, :] + user_bias[p.eval_users, None]


def surprise_fit(p: Protocol, algo: str, **params):
    """Surprise's documented path: the train rows written as a ratings file, read with
    `Dataset.load_from_file`, fitted on `build_full_trainset()`."""
    import surprise

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "train.tsv")
        with open(path, "w") as f:
            f.writelines(f"{u}\t{m}\t{r:g}\n" for u, m, r in zip(p.train.user, p.train.movie, p.train.rating))
        reader = surprise.Reader(line_format="user item rating", sep="\t", rating_scale=(1, 5))
        trainset = surprise.Dataset.load_from_file(path, reader).build_full_trainset()
    model = getattr(surprise, algo)(random_state=SEED, **params)
    return model, _timed(lambda: model.fit(trainset))[1]


def surprise_rating_errors(model, p: Protocol) -> dict:
    from surprise import accuracy

    predictions = [model.predict(u, m, r_ui=float(r)) for u, m, r in zip(p.test.user, p.test.movie, p.test.rating)]
    return {"rmse": accuracy.rmse(predictions, verbose=False), "mae": accuracy.mae(predictions, verbose=False)}


@dataclasses.dataclass
class Peer:
    name: str
    fit: Callable
    scores: Callable | None = None          # ranking peers
    rating_errors: Callable | None = None   # rating peers
    params: dict = dataclasses.field(default_factory=dict)


# Chosen hyper-parameters: the best validation NDCG@10 of `--tune` (TUNE_GRID), unless noted.
PEERS = [
    Peer("popularity (this harness)", popularity_fit, popularity_scores),
    # 64 factors: within 0.003 of the best (32) on validation, and the usual size
    Peer("implicit ALS", implicit_als_fit, implicit_scores,
         params=dict(factors=64, regularization=50.0, weighting="confidence", alpha=10.0)),
    Peer("implicit BPR", implicit_bpr_fit, implicit_scores,
         params=dict(factors=64, learning_rate=0.005, regularization=0.01, iterations=100)),
    Peer("cornac EASE", cornac_ease_fit, cornac_scores, params=dict(lamb=500.0, pos_b=False)),
    Peer("cornac BPR", cornac_bpr_fit, cornac_scores, params=dict(k=64, max_iter=200, learning_rate=0.01)),
    Peer("LightFM WARP + genres", lightfm_fit, lightfm_scores, params=dict(no_components=32, epochs=60)),
    Peer("Surprise SVD", lambda p: surprise_fit(p, "SVD"), rating_errors=surprise_rating_errors),
    Peer("Surprise SVD++", lambda p: surprise_fit(p, "SVDpp", cache_ratings=True),
         rating_errors=surprise_rating_errors),
]

# The validation sweep of `--tune`: small grids around the usual settings.
TUNE_GRID = {
    "implicit ALS": {"factors": (32, 64, 128), "regularization": (0.05, 5.0, 20.0, 50.0, 100.0),
                     "weighting": ("bm25", "confidence"), "alpha": (1.0, 10.0)},
    "implicit BPR": {"factors": (64,), "learning_rate": (0.005, 0.01), "regularization": (0.01, 0.1),
                     "iterations": (30, 60, 100)},
    "cornac EASE": {"lamb": (100.0, 250.0, 500.0, 1000.0), "pos_b": (False, True)},
    "cornac BPR": {"k": (64,), "max_iter": (100, 200, 400), "learning_rate": (0.01, 0.05)},
    "LightFM WARP + genres": {"no_components": (32, 64), "epochs": (15, 30, 60)},
}


def run_peer(peer: Peer, p: Protocol, **override) -> dict:
    """Fit one peer on the protocol's train part and score it: one row of the table."""
    model, seconds = peer.fit(p, **{**peer.params, **override})
    if peer.scores is not None:
        metrics = ranking_metrics(top_k(peer.scores(model, p), p), p.relevant, K, p.sizes[1])
    else:
        metrics = peer.rating_errors(model, p)
    return {"protocol": p.name, "model": peer.name, "fit_seconds": seconds,
            **{k: v for k, v in metrics.items() if not isinstance(v, list)}}


def progress(row: dict) -> None:
    shown = (f"NDCG@10 {row['ndcg@10']:.4f}" if "ndcg@10" in row
             else f"RMSE {row['rmse']:.4f}" if "rmse" in row else "")
    print(f"  {row['protocol']}: {row['model']} {shown} ({row['fit_seconds']:.1f} s fit)", file=sys.stderr, flush=True)


def protocols(data_dir: str, ranking_only: bool = False):
    """The three protocols of quality.py, in its order: (name, train, test)."""
    ratings, movies = quality.load(data_dir)
    out = []
    if not ranking_only:
        out.append(("random 80/20", *quality.random_split(ratings, 0.8, quality.SEED)))
        if os.path.isfile(os.path.join(data_dir, "u1.base")):
            out.append(("u1.base/u1.test", *quality.file_split(ratings, data_dir, "u1.base", "u1.test")))
    out.append(("ranking", *quality.per_user_split(ratings, 0.75, quality.SEED)))
    return out, movies


def run_peers(data_dir: str, names: set | None) -> list[dict]:
    split_list, movies = protocols(data_dir)
    rows = []
    for name, train, test in split_list:
        p = prepare(name, train, test, movies)
        for peer in PEERS:
            if names is not None and peer.name not in names:
                continue
            if (peer.scores is not None) != (name == "ranking"):
                continue
            rows.append(run_peer(peer, p))
            progress(rows[-1])
    return rows


def project_rows(data_dir: str, python: str) -> list[dict]:
    """The project's default models through quality.py in the main venv (TensorFlow)."""
    if not os.path.isfile(os.path.join(os.path.dirname(os.path.dirname(python)), ".bootstrap-stamp")):
        raise SystemExit(f"{python}: the main venv is not ready (make venv), or pass --project-json / --no-project")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore::FutureWarning"}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "project.json")
        print(f"  project: {python} benchmarks/quality.py --models mf,content,popularity", file=sys.stderr, flush=True)
        proc = subprocess.Popen([python, QUALITY_PATH, "--data-dir", data_dir, "--models", "mf,content,popularity",
                                 "--json", path], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        log = []
        for line in proc.stderr:  # its progress lines (indented) shown, TensorFlow's chatter kept for errors
            log.append(line)
            if line.startswith("  "):
                print("  project:" + line.rstrip()[1:], file=sys.stderr, flush=True)
        if proc.wait() != 0:
            sys.stderr.writelines(log)
            raise SystemExit(f"quality.py failed (exit {proc.returncode})")
        with open(path) as f:
            return json.load(f)


COLUMNS = (("NDCG@10", "ranking", "ndcg@10"), ("P@10", "ranking", "precision@10"), ("R@10", "ranking", "recall@10"),
           ("coverage@10", "ranking", "coverage@10"), ("RMSE 80/20", "random 80/20", "rmse"),
           ("RMSE u1", "u1.base/u1.test", "rmse"))
FIT_COLUMNS = (("ranking", "ranking"), ("80/20", "random 80/20"), ("u1", "u1.base/u1.test"))


def table(rows: list[dict]) -> str:
    """One row per model (the peers in PEERS order, then the project's), metrics per
    protocol, fit seconds per protocol."""
    by_model: dict[str, dict] = {}
    for r in rows:
        by_model.setdefault(r["model"], {})[r["protocol"]] = r
    order = [p.name for p in PEERS]
    by_model = dict(sorted(by_model.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))
    head = ["model", *(c[0] for c in COLUMNS), *(f"fit s {c[0]}" for c in FIT_COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for model, per in by_model.items():
        cells = [f"{per[proto][key]:.4f}" if proto in per and key in per[proto] else "–" for _, proto, key in COLUMNS]
        cells += [f"{per[proto]['fit_seconds']:.1f}" if proto in per else "–" for _, proto in FIT_COLUMNS]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def check_popularity(rows: list[dict]) -> str:
    """The harness's popularity against the evaluator's: equal when the protocol is the same."""
    ours = next((r for r in rows if r["model"] == "popularity (this harness)"), None)
    theirs = next((r for r in rows if r["model"] == "project: popularity"), None)
    if ours is None or theirs is None:
        return ""
    same = all(abs(ours[k] - theirs[k]) < 1e-9 for k in ("ndcg@10", "precision@10", "recall@10", "coverage@10"))
    return ("Protocol check: the harness's popularity equals the project evaluator's." if same else
            "WARNING: the harness's popularity differs from the project evaluator's: the protocols differ.")


def tune(data_dir: str, names: set | None) -> str:
    """The grids of TUNE_GRID on a validation split of the ranking train part (per user
    75/25, seed SEED + 1, as `quality.py --tune`); the test part is not read."""
    [(_, train, _)], movies = protocols(data_dir, ranking_only=True)
    fit_part, valid = quality.per_user_split(train, 0.75, SEED + 1)
    p = prepare("validation", fit_part, valid, movies)
    lines = ["| peer | params | validation NDCG@10 | P@10 | fit s |", "|---|---|---:|---:|---:|"]
    for peer in PEERS:
        grid = TUNE_GRID.get(peer.name)
        if grid is None or (names is not None and peer.name not in names):
            continue
        results = []
        for point in itertools.product(*grid.values()):
            params = dict(zip(grid, point))
            row = run_peer(peer, p, **params)
            print(f"  {peer.name} {params}: validation NDCG@10 {row['ndcg@10']:.4f} ({row['fit_seconds']:.1f} s)",
                  file=sys.stderr, flush=True)
            results.append((params, row))
        for params, row in sorted(results, key=lambda x: -x[1]["ndcg@10"]):
            lines.append(f"| {peer.name} | {params} | {row['ndcg@10']:.4f} | {row['precision@10']:.4f} | "
                         f"{row['fit_seconds']:.1f} |")
    return "\n".join(lines)


def versions() -> str:
    from importlib.metadata import version
    libs = ("implicit", "cornac", "lightfm", "scikit-surprise", "numpy", "scipy")
    return ", ".join(f"{name} {version(name)}" for name in libs) + f"; Python {platform.python_version()}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=os.environ.get("MOVIEREC_DATA_DIR", "../shared/data/ml-100k"))
    ap.add_argument("--out", metavar="PATH", help="also write the table (markdown) to PATH")
    ap.add_argument("--json", metavar="PATH", help="also write every row (peers and project) as JSON to PATH")
    ap.add_argument("--peers", help="comma-separated subset of: " + ", ".join(p.name for p in PEERS))
    ap.add_argument("--project-json", metavar="PATH", help="the project's rows from an earlier "
                    "`quality.py --models mf,content,popularity --json PATH` instead of running it")
    ap.add_argument("--no-project", action="store_true", help="peers only")
    ap.add_argument("--main-python", default=os.path.join(REPO, ".venv", "bin", "python"),
                    help="the main venv's Python, which runs quality.py")
    ap.add_argument("--tune", action="store_true", help="the validation sweep of the ranking peers instead")
    args = ap.parse_args(argv)
    data_dir = os.path.abspath(args.data_dir)
    names = None if not args.peers else {n.strip() for n in args.peers.split(",")}
    unknown = (names or set()) - {p.name for p in PEERS}
    if unknown:
        ap.error(f"unknown peers {sorted(unknown)}")
    if args.tune:
        print(tune(data_dir, names))
        return 0
    rows = run_peers(data_dir, names)
    if not args.no_project:
        if args.project_json:
            with open(args.project_json) as f:
                project = json.load(f)
        else:
            project = project_rows(data_dir, args.main_python)
        rows += [{**r, "model": f"project: {r['model']}"} for r in project]
    text = (f"MovieLens 100k ({data_dir}); {datetime.date.today()}; {os.cpu_count()} cores; {versions()}\n\n"
            + table(rows) + "\n\n" + check_popularity(rows)).rstrip()
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
