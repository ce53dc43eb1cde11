"""Where the default MF trainer's time goes: iALS sweeps, Gibbs sweeps, the rater's export
preparation and the trainer's eval, timed by calling the training functions directly.

    .venv/bin/python benchmarks/mf_phases.py --data /work/shared/data/ml-100k
    .venv/bin/python benchmarks/mf_phases.py --data ~/.cache/movierec/scale/data/synth2-r1000000-u7000-m10000-s42
    .venv/bin/python benchmarks/mf_phases.py --data ... --impl HEAD~1 --bayes-sweeps 3 --ials-iterations 2

--data: an ml-100k folder (u.data, u.item) or an ml-latest-format folder (ratings.csv,
movies.csv). Ratings are split 80/20 at random (seed 42), as the pipeline's train/eval split.
--impl REV: time the iALS and Bayesian MF modules of git revision REV (`git show
REV:components/mf/ials.py`, `.../bayes.py`; they import only numpy and scipy) instead of the
working tree's; only the two fits are timed then (no export preparation, no eval).
--bayes-sweeps N: run N sweeps (burn-in N - 1, one sample) instead of the schedule, to time
sweeps on data where the whole schedule would take long; the setup (implicit-feature
links, row groups) is reported apart from the per-sweep time. --ials-iterations N likewise.
Prints one JSON object: seconds per phase, microseconds per rating, the schedule used.
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(folder: str):
    """(user_idx, movie_idx, rating, genre flags [movies, G]) with dense indices."""
    if os.path.exists(os.path.join(folder, "u.data")):
        raw = np.loadtxt(os.path.join(folder, "u.data"), dtype=np.int64)
        users, movies, rating = raw[:, 0], raw[:, 1], raw[:, 2].astype(np.float64)
        genre_of = {}
        with open(os.path.join(folder, "u.item"), encoding="latin-1") as f:
            for line in f:
                parts = line.rstrip("\n").split("|")
                genre_of[int(parts[0])] = [int(x) for x in parts[5:]]
    else:
        table = np.loadtxt(os.path.join(folder, "ratings.csv"), delimiter=",", skiprows=1,
                           usecols=(0, 1, 2))
        users, movies, rating = table[:, 0].astype(np.int64), table[:, 1].astype(np.int64), table[:, 2]
        names, rows = [], {}
        with open(os.path.join(folder, "movies.csv"), encoding="utf-8") as f:
            for rec in csv.DictReader(f):
                rows[int(rec["movieId"])] = rec["genres"].split("|")
                names.extend(g for g in rows[int(rec["movieId"])] if g not in names)
        genre_of = {m: [int(n in gs) for n in names] for m, gs in rows.items()}
    user_ids, u = np.unique(users, return_inverse=True)
    movie_ids, m = np.unique(movies, return_inverse=True)
    genres = np.array([genre_of[int(x)] for x in movie_ids], np.float32)
    return u, m, rating, genres, len(user_ids), len(movie_ids)


def module_at(rev: str, name: str):
    source = subprocess.run(["git", "-C", REPO, "show", f"{rev}:components/mf/{name}.py"],
                            check=True, capture_output=True, text=True).stdout
    path = os.path.join(tempfile.mkdtemp(), f"{name}_{rev.replace('~', '_')}.py")
    with open(path, "w") as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location(f"{name}_at_rev", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module      # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--impl", default=None, help="a git revision (default: the working tree)")
    parser.add_argument("--bayes-sweeps", type=int, default=None)
    parser.add_argument("--ials-iterations", type=int, default=None)
    parser.add_argument("--trainer", action="store_true",
                        help="instead: `train.fit` with the default MFConfig (both halves, the rater's "
                             "export preparation) and the trainer's eval `train.rating_errors`")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from movierec.components.mf import train
    from movierec.components.mf.model import genre_features
    from movierec.config import MFConfig

    t0 = time.perf_counter()
    u, m, r, genres, num_users, num_movies = load(os.path.expanduser(args.data))
    order = np.random.default_rng(42).permutation(len(r))
    cut = int(0.8 * len(r))
    tr, ev = order[:cut], order[cut:]
    out = {"data": args.data, "ratings": int(len(r)), "train": int(cut), "users": num_users,
           "movies": num_movies, "impl": args.impl or "working tree", "load_s": time.perf_counter() - t0}
    config = MFConfig()
    if args.trainer:
        from movierec.components.training_data import Interactions

        def interactions(rows):
            return Interactions(u[rows], m[rows], r[rows].astype(np.float32), np.zeros(len(rows), np.int64))
        start = time.perf_counter()
        model, result = train.fit(config, interactions(tr), num_users, num_movies, genre_matrix=genres)
        out["train_fit_s"] = time.perf_counter() - start
        out["part_seconds"] = result.part_seconds
        out["bayes_schedule"] = config.bayes_schedule(cut)
        start = time.perf_counter()
        out["eval"] = train.rating_errors(model, interactions(ev), (num_users, num_movies), (0.5, 5.0))
        out["eval_s"] = time.perf_counter() - start
        out["us_per_train_rating"] = (out["train_fit_s"] + out["eval_s"]) / cut * 1e6
        out["loadavg"] = os.getloadavg()
        print(json.dumps(out, indent=1))
        return
    if args.impl:
        ials, bayes = module_at(args.impl, "ials"), module_at(args.impl, "bayes")
        schedule = (config.bayes_burn_in, config.bayes_samples, config.bayes_thin)
    else:
        from movierec.components.mf import bayes, ials
        schedule = config.bayes_schedule(cut)
    if args.bayes_sweeps:
        schedule = (args.bayes_sweeps - 1, 1, 1)
    iterations = args.ials_iterations or config.ials_iterations
    out["bayes_schedule"] = schedule
    out["ials_iterations"] = iterations

    start = time.perf_counter()
    fitted = ials.fit(u[tr], m[tr], num_users, num_movies, dim=config.embedding_dim, alpha0=config.ials_alpha0,
                      reg=config.ials_reg, iterations=iterations, seed=config.seed,
                      movie_features=genre_features(genres), feature_reg=config.ials_feature_reg)
    out["ials_s"] = time.perf_counter() - start
    out["ials_s_per_iteration"] = fitted.fit_seconds / iterations
    out["ials_setup_s"] = out["ials_s"] - fitted.fit_seconds

    stamps = []
    start = time.perf_counter()
    burn_in, samples, thin = schedule
    result = bayes.fit(u[tr], m[tr], r[tr], num_users, num_movies, dim=config.bayes_dim, samples=samples,
                       burn_in=burn_in, thin=thin, seed=config.seed, implicit=config.bayes_implicit,
                       movie_genres=genres, progress=lambda *a: stamps.append(time.perf_counter()))
    out["bayes_s"] = time.perf_counter() - start
    sweeps = np.diff([start] + stamps)
    per_sweep = float(np.median(sweeps[1:])) if len(sweeps) > 1 else float(sweeps[0])
    out["bayes_sweeps"] = len(stamps)
    out["bayes_s_per_sweep"] = per_sweep
    out["bayes_setup_s"] = float(sweeps[0] - per_sweep)
    out["bayes_us_per_rating_sweep"] = per_sweep / cut * 1e6

    if not args.impl:
        from movierec.components.mf.low_rank import refactor
        start = time.perf_counter()
        refactor(*result.concatenated()[:2], rank=config.bayes_export_rank)
        out["bayes_export_prep_s"] = time.perf_counter() - start
        if not args.bayes_sweeps:
            err = np.clip(result.predict(u[ev], m[ev]), 0.5, 5.0) - r[ev]
            out["eval_rmse_posterior_mean"] = float(np.sqrt(np.mean(err ** 2)))
    out["fits_s"] = out["ials_s"] + out["bayes_s"]
    out["fits_us_per_rating"] = out["fits_s"] / cut * 1e6
    out["loadavg"] = os.getloadavg()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    sys.exit(main())
