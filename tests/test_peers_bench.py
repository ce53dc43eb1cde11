"""benchmarks/peers/run.py against the project's evaluator, on MovieLens 100k.

The peers harness runs in its own venv (benchmarks/peers/setup.sh; CI does not build it), so
these tests skip without it. They check that the harness's ranking protocol is the
evaluator's: its popularity ranking must score exactly like the RankingEvaluator's
popularity baseline on quality.py's ranking split, and a real peer (cornac EASE) must run
end to end and beat popularity.
"""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

PEERS_PYTHON = os.path.join(REPO, "benchmarks", "peers", ".venv", "bin", "python")
RUN = os.path.join(REPO, "benchmarks", "peers", "run.py")

pytestmark = pytest.mark.skipif(not os.access(PEERS_PYTHON, os.X_OK),
                                reason="peers venv absent (benchmarks/peers/setup.sh builds it)")


def _quality():
    spec = importlib.util.spec_from_file_location("quality_for_peers_test", os.path.join(REPO, "benchmarks", "quality.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_harness_popularity_equals_evaluator_popularity_and_ease_beats_it(ml100k_dir, tmp_path):
    out = tmp_path / "rows.json"
    subprocess.run([PEERS_PYTHON, RUN, "--data-dir", ml100k_dir, "--no-project", "--json", str(out),
                    "--peers", "popularity (this harness),cornac EASE"], check=True, timeout=600,
                   stdout=subprocess.DEVNULL)
    rows = {r["model"]: r for r in json.loads(out.read_text()) if r["protocol"] == "ranking"}

    from movierec.components.ranking_evaluator import executor as ev

    quality = _quality()
    ratings, movies = quality.load(ml100k_dir)
    train, test = quality.per_user_split(ratings, 0.75, quality.SEED)
    split = quality.make_split(train, test, movies, str(tmp_path / "vocab"))
    data = quality.eval_data(split)
    expected = ev.ranking_at(ev.popularity_top_k(data, 10), data, (10,))

    ours = rows["popularity (this harness)"]
    for key in ("ndcg@10", "precision@10", "recall@10", "map@10", "coverage@10", "users"):
        assert ours[key] == pytest.approx(expected[key], abs=1e-12), key
    assert rows["cornac EASE"]["ndcg@10"] > ours["ndcg@10"] + 0.1
