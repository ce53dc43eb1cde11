"""The whole TFX pipeline, really run (LocalDagRunner, MLMD in SQLite, Beam, tf.Transform).

One small synthetic dataset; the run goes through `movierec run` exactly as a user calls it.
"""
import glob
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf
from ml_metadata.proto import metadata_store_pb2

from movierec import cli
from movierec.serving import versions
from movierec.serving.servability import check_servable
from tests.conftest import mlmd_store

pytestmark = pytest.mark.slow

# mf keeps its rmse rule (vs the bias baseline) and content none: on this small dataset
# neither reliably beats popularity, and these tests are about the pipeline's mechanics.
RUN_ARGS = ["--epochs", "20", "--batch-size", "256", "--embedding-dim", "8",
            "--gate", "mf=ndcg@10:none", "--gate", "content=ndcg@10:none"]


_store = mlmd_store


def _executions_by_component(store):
    types = {t.id: t.name for t in store.get_execution_types()}
    found = {}
    for e in store.get_executions():
        found.setdefault(types[e.type_id].split(".")[-1], []).append(e)
    return found


@pytest.fixture(scope="module")
def data_dir(small_synthetic):
    return small_synthetic


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, data_dir):
    out = str(tmp_path_factory.mktemp("run"))
    code = cli.main(["run", "--data-dir", data_dir, "--output-dir", out, *RUN_ARGS])
    return code, out


def test_every_component_ran_and_a_model_was_pushed(first_run, capsys):
    code, out = first_run
    assert code == 0
    store = _store(out)
    ran = _executions_by_component(store)
    complete = metadata_store_pb2.Execution.COMPLETE
    for component in ("MovieLensExampleGen", "StatisticsGen", "ImportSchemaGen",
                      "ExampleValidator", "Transform", "Trainer", "RankingEvaluator", "Pusher"):
        assert any(component in name for name in ran), f"{component} did not run: {sorted(ran)}"
    assert all(e.last_known_state == complete for es in ran.values() for e in es)
    for model in ("mf", "content"):
        assert len(versions.list_versions(os.path.join(out, "serving", model))) == 1, model
    assert len(ran.get("Trainer", [])) == 2 and len(ran.get("AtomicPusher", [])) == 2
    assert len(ran.get("RankingEvaluator", [])) == 2


def test_pushed_model_serves_both_signatures(first_run, data_dir):
    _, out = first_run
    base = os.path.join(out, "serving", "mf")
    model_dir = versions.version_dir(base, versions.latest_version(base))
    assert check_servable(model_dir)["signatures"] == ["predict_rating", "recommend", "serving_default"]
    model = tf.saved_model.load(model_dir)
    users = ["1", "2", "no-such-user"]
    rec = model.signatures["recommend"](
        user_id=tf.constant(users), k=tf.constant([5, 5, 5]), exclude_movie_ids=tf.constant([[""]] * 3))
    ids = rec["movie_ids"].numpy().astype(str)
    assert ids.shape == (3, 5) and rec["valid"].numpy().all()
    assert rec["user_known"].numpy().tolist() == [True, True, False]
    # never a movie the user rated (any split)
    rated = {}
    with open(os.path.join(data_dir, "ratings.csv")) as f:
        next(f)
        for line in f:
            u, m = line.split(",")[:2]
            rated.setdefault(u, set()).add(m)
    for u, row in zip(users[:2], ids[:2]):
        assert not set(row) & rated[u]
    scores = rec["scores"].numpy()
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # sorted best first
    pred = model.signatures["predict_rating"](user_id=tf.constant(["1", "2"]), movie_id=tf.constant(["1", "2"]))
    assert ((pred["rating"].numpy() >= 0.5) & (pred["rating"].numpy() <= 5.0)).all()


def test_second_run_reuses_the_cache_and_pushes_nothing_new(first_run, data_dir, capsys):
    _, out = first_run
    capsys.readouterr()
    assert cli.main(["run", "--data-dir", data_dir, "--output-dir", out, *RUN_ARGS]) == 0
    printed = capsys.readouterr().out
    for component in ("MovieLensExampleGen", "StatisticsGen", "StrictExampleValidator", "Transform",
                      "Trainer.mf", "Trainer.content"):
        assert re.search(rf"{re.escape(component)} \.\.\. done in [\d.]+ s \(cached\)", printed), printed
    # the evaluators run again (the last blessed model is now a baseline) and re-bless the
    # same model; the pusher finds it already serving and writes no new version
    for model in ("mf", "content"):
        assert len(versions.list_versions(os.path.join(out, "serving", model))) == 1
    assert "within 1% of the last blessed model's" in printed
    for model in ("mf", "content"):
        assert f"Model {model}: no new version this run; serving {out}/serving/{model}/" in printed
        assert f"Model {model}: pushed" not in printed


def test_worse_candidate_is_not_blessed_and_not_pushed(first_run, data_dir, capsys):
    _, out = first_run
    before = versions.list_versions(os.path.join(out, "serving", "mf"))
    capsys.readouterr()
    # an MF trained by Adam for one epoch at a tiny learning rate: about the global mean
    worse = ["--mf-objective", "mse", "--epochs", "1", "--learning-rate", "0.00001", "--embedding-dim", "8",
             "--batch-size", "256", "--gate", "mf=ndcg@10:none", "--gate", "content=ndcg@10:none"]
    assert cli.main(["run", "--data-dir", data_dir, "--output-dir", out, *worse]) == 0
    printed = capsys.readouterr().out
    assert "mf: NOT BLESSED" in printed and "does not beat bias_baseline" in printed
    assert versions.list_versions(os.path.join(out, "serving", "mf")) == before


def test_schema_anomaly_stops_the_run_before_transform(tmp_path, data_dir, capsys, monkeypatch):
    """A stricter schema (ratings at most 4) makes ExampleValidator stop the run by name."""
    from movierec import config as config_module
    schema = open(config_module.default_schema_path()).read().replace("max: 5.0", "max: 4.0")
    strict = tmp_path / "schema.pbtxt"
    strict.write_text(schema)
    monkeypatch.setattr(config_module, "default_schema_path", lambda: str(strict))
    out = str(tmp_path / "out")
    code = cli.main(["run", "--data-dir", data_dir, "--output-dir", out, *RUN_ARGS])
    err = capsys.readouterr().err
    assert code == cli.EXIT_DATA_ERROR, err
    assert "error in StrictExampleValidator" in err and "rating: Out-of-range values" in err
    ran = _executions_by_component(_store(out))
    assert not any("Transform" in name for name in ran)
    assert versions.list_versions(os.path.join(out, "serving", "mf")) == []
    assert versions.list_versions(os.path.join(out, "serving", "content")) == []


def test_pushed_model_served_over_grpc_and_rest(first_run):
    """The pushed model behind the local server: both protocols give the in-process answer."""
    from movierec.serving.client import GrpcClient, RestClient
    from movierec.serving.model_config import ModelSpec
    from movierec.serving.server import ModelServer, ServerOptions
    from movierec.serving.warmup import read_warmup_requests

    _, out = first_run
    base = os.path.join(out, "serving", "mf")
    model_dir = versions.version_dir(base, versions.latest_version(base))
    assert len(read_warmup_requests(model_dir)) == 3
    with ModelServer([ModelSpec("mf", base)], ServerOptions(grpc_port=0, rest_port=0, poll_seconds=0)) as server:
        users = ["1", "7", "nobody"]
        grpc_client = GrpcClient(port=server.grpc_port)
        try:
            by_grpc = grpc_client.recommend(users, k=4, exclude=[["1"], [], []])
        finally:
            grpc_client.close()
        by_rest = RestClient(port=server.rest_port).recommend(users, k=4, exclude=[["1"], [], []])
    model = tf.saved_model.load(model_dir)
    direct = model.signatures["recommend"](
        user_id=tf.constant(users), k=tf.constant([4, 4, 4]),
        exclude_movie_ids=tf.constant([["1"], [""], [""]]))
    expected = direct["movie_ids"].numpy().astype(str).tolist()
    assert [[r.movie_id for r in row] for row in by_grpc] == expected
    assert [[r.movie_id for r in row] for row in by_rest] == expected
    assert "1" not in expected[0]
    np.testing.assert_allclose([[r.score for r in row] for row in by_rest], direct["scores"].numpy(), rtol=1e-6)


def test_content_model_pushed_and_served(first_run, data_dir):
    """`movierec recommend --model content` against the server, on the pipeline's push."""
    from movierec.serving.model_config import ModelSpec
    from movierec.serving.server import ModelServer, ServerOptions

    _, out = first_run
    base = os.path.join(out, "serving", "content")
    model_dir = versions.version_dir(base, versions.latest_version(base))
    assert check_servable(model_dir)["signatures"] == ["recommend", "recommend_cold_start", "serving_default",
                                                       "user_profile"]
    specs = [ModelSpec("content", base)]
    with ModelServer(specs, ServerOptions(grpc_port=0, rest_port=0, poll_seconds=0)) as server:
        for protocol, port in (("--grpc", server.grpc_port), ("--rest", server.rest_port)):
            assert cli.main(["recommend", "--user", "1", "-k", "3", "--model", "content", protocol,
                             "--port", str(port)]) == 0
    profile = tf.saved_model.load(model_dir).signatures["user_profile"](user_id=tf.constant(["1"]))
    weights = profile["weights"].numpy()[0]   # log-lifts, ranked: the user's genres explained
    assert np.all(np.isfinite(weights)) and np.all(np.diff(weights) <= 0) and weights[0] > 0


def test_mf_is_gated_on_ndcg_against_popularity_and_rmse_against_the_bias_baseline(tmp_path, data_dir, capsys):
    """The default rules (`--mf-objective ials`: a top-k model with a bias rating head): it
    must beat popularity on NDCG@10 and, as it predicts ratings, the bias baseline on RMSE;
    pushed exactly when it wins both."""
    out = str(tmp_path / "ials")
    args = ["--mf-objective", "ials", "--embedding-dim", "16", "--gate", "content=ndcg@10:none"]
    assert cli.main(["run", "--data-dir", data_dir, "--output-dir", out, *args]) == 0
    printed = capsys.readouterr().out
    verdict = re.search(r"mf: (NOT )?BLESSED - ndcg@10 ([\d.]+) (beats|does not beat) popularity ([\d.]+); "
                        r"rmse ([\d.]+) (beats|does not beat) bias_baseline ([\d.]+)", printed)
    assert verdict, printed
    ranks, rates = float(verdict.group(2)) > float(verdict.group(4)), float(verdict.group(5)) < float(verdict.group(7))
    assert (verdict.group(3) == "beats") == ranks and (verdict.group(6) == "beats") == rates
    wins = ranks and rates
    assert (verdict.group(1) is None) == wins
    base = os.path.join(out, "serving", "mf")
    assert len(versions.list_versions(base)) == int(wins)
    trainer_runs = glob.glob(os.path.join(out, "pipeline", "Trainer.mf", "model_run", "*", "training_metrics.json"))
    metrics = json.load(open(trainer_runs[0]))
    assert metrics["config"]["mf"]["objective"] == "ials" and len(metrics["loss_history"]) == 10


def test_bayesian_rating_model_runs_through_the_pipeline(tmp_path, data_dir, capsys):
    """`--mf-objective bayes`: Gibbs-sampled MF in the Trainer, exported as one MF, gated like
    every model: NDCG@10 against popularity, and RMSE against the bias baseline."""
    out = str(tmp_path / "bayes")
    args = ["--mf-objective", "bayes", "--mf-hybrid", "--bayes-samples", "8", "--bayes-burn-in", "10",
            "--bayes-thin", "1", "--gate", "content=ndcg@10:none"]
    assert cli.main(["run", "--data-dir", data_dir, "--output-dir", out, *args]) == 0
    printed = capsys.readouterr().out
    verdict = re.search(r"mf: (NOT )?BLESSED - ndcg@10 [\d.]+ .*popularity [\d.]+; rmse ([\d.]+)", printed)
    assert verdict, printed
    trainer_runs = glob.glob(os.path.join(out, "pipeline", "Trainer.mf", "model_run", "*", "training_metrics.json"))
    metrics = json.load(open(trainer_runs[0]))
    assert metrics["config"]["mf"]["objective"] == "bayes" and metrics["epochs"] == 18
    assert len(metrics["loss_history"]) == 18 and metrics["eval_rmse"] < 1.2
