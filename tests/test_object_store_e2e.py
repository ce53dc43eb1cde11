"""The product path on an object store, end to end, through the `movierec` commands a user
types: the input in an S3 bucket, `movierec run` with its pipeline root and pushes in the
bucket, `movierec serve` serving from the bucket over REST, and `movierec retrain` reading
span folders that arrive in the bucket.

The S3 server is moto's, started on loopback by `tests.test_object_store.s3_endpoint`;
TensorFlow reaches it through tensorflow-io's s3:// file system (S3_* variables), Beam's
components through boto3 (AWS_ENDPOINT_URL_S3). Every command runs as its own process (the
installed `.venv/bin/movierec`), which ends through `movierec.filesystems.finish` with the
command's real status; this test process only talks to the bucket with boto3 and never
loads TensorFlow's S3 plug-in (tensorflow-io 0.37.1 aborts at interpreter exit after S3 use).

ML Metadata's SQLite file cannot live in a bucket: for an s3:// output folder it is the
local `<cache>/metadata/<sha256 of the URL>/metadata.sqlite` (`config.metadata_path_for`),
checked here with the cache pointed at a test folder ($MOVIEREC_CACHE).
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import mlmd_store
from tests.test_object_store import BUCKET, _free_port, s3_endpoint, s3_env  # noqa: F401 (fixture)
from tests.test_object_store import pytestmark as _needs_s3

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOVIEREC = os.path.join(REPO, ".venv", "bin", "movierec")

pytestmark = [_needs_s3, pytest.mark.slow, pytest.mark.timeout(3600)]

# Small and fast (as tests/test_retrain_e2e.py), fewer MF sweeps; with no baseline rule a
# model is blessed unless it is worse than the last blessed one, so the first run pushes both.
RUN_ARGS = ["--epochs", "20", "--batch-size", "256", "--embedding-dim", "8",
            "--ials-iterations", "5", "--bayes-samples", "10", "--bayes-burn-in", "10",
            "--gate", "mf=ndcg@10:none", "--gate", "mf=rmse:none", "--gate", "content=ndcg@10:none"]
SYNTH = ["--users", "120", "--movies", "150", "--ratings", "4000", "--seed", "3"]


def bucket_client(endpoint: str):
    import boto3  # noqa: PLC0415

    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                        region_name="us-east-1")


def upload(client, folder: str, prefix: str) -> list[str]:
    """Every file under the local `folder` to s3://BUCKET/<prefix>/<relative path>; the keys."""
    keys = []
    for root, _, files in os.walk(folder):
        for name in sorted(files):
            path = os.path.join(root, name)
            key = f"{prefix}/{os.path.relpath(path, folder)}"
            client.upload_file(path, BUCKET, key)
            keys.append(key)
    return keys


def keys(client, prefix: str) -> list[str]:
    found = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        found += [o["Key"][len(prefix):] for o in page.get("Contents", [])]
    return sorted(found)


def pushed_versions(client, serving_prefix: str, model: str) -> list[str]:
    """Versions under serving/<model>/ whose saved_model.pb is in the bucket (loadable)."""
    return sorted(k.split("/")[0] for k in keys(client, f"{serving_prefix}/{model}/")
                  if k.count("/") == 1 and k.endswith("/saved_model.pb"))


@pytest.fixture(scope="module")
def env(s3_endpoint, tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("cache"))
    return dict(s3_env(s3_endpoint), AWS_ENDPOINT_URL_S3=s3_endpoint, MOVIEREC_CACHE=cache,
                PYTHONWARNINGS="ignore")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The commands' working directory (nothing may appear in it)."""
    return str(tmp_path_factory.mktemp("cwd"))


def movierec(env, workdir, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run(["nice", "-n", "10", MOVIEREC, *args], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=timeout)


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, env, workdir):
    """The small synthetic dataset (as conftest's small_synthetic), made by the command."""
    out = str(tmp_path_factory.mktemp("data") / "synthetic")
    ok(movierec(env, workdir, "data", "synth", *SYNTH, "--out", out))
    return out


@pytest.fixture(scope="module")
def ran(dataset, env, workdir, s3_endpoint):
    client = bucket_client(s3_endpoint)
    assert sorted(upload(client, dataset, "data")) == ["data/movies.csv", "data/ratings.csv"]
    proc = movierec(env, workdir, "run", "--data-dir", f"s3://{BUCKET}/data",
                    "--output-dir", f"s3://{BUCKET}/out", *RUN_ARGS)
    return proc, client


def test_run_reads_the_bucket_and_pushes_into_it(ran, env, workdir):
    proc, client = ran
    out = ok(proc)
    assert f"data s3://{BUCKET}/data (--data-dir)" in out
    assert "ml-latest: 4000 ratings," in out, out[:2000]
    for model in ("mf", "content"):
        versions = pushed_versions(client, "out/serving", model)
        assert len(versions) == 1 and versions[0].isdigit(), keys(client, f"out/serving/{model}/")
        assert f"Model {model}: pushed s3://{BUCKET}/out/serving/{model}/{versions[0]}" in out
        files = keys(client, f"out/serving/{model}/{versions[0]}/")
        assert "variables/variables.index" in files and "assets.extra/push.json" in files
    assert any(k.startswith("Trainer.mf/") for k in keys(client, "out/pipeline/"))
    # ML Metadata: local, in the cache, keyed by the output URL; nothing in the working directory
    digest = hashlib.sha256(f"s3://{BUCKET}/out".encode()).hexdigest()
    sqlite = os.path.join(env["MOVIEREC_CACHE"], "metadata", digest, "metadata.sqlite")
    assert os.path.isfile(sqlite), os.listdir(env["MOVIEREC_CACHE"])
    store = mlmd_store(sqlite)
    types = {t.id: t.name for t in store.get_execution_types()}
    ran_types = {types[e.type_id].split(".")[-1] for e in store.get_executions()}
    assert {"MovieLensExampleGen", "Transform", "Trainer", "AtomicPusher"} <= ran_types, ran_types
    uris = [a.uri for a in store.get_artifacts_by_type("Examples")]
    assert uris and all(u.startswith(f"s3://{BUCKET}/out/pipeline/") for u in uris), uris
    assert os.listdir(workdir) == []
    assert "metadata.sqlite" not in keys(client, "out/")


def _ratings(dataset: str) -> dict[str, set[str]]:
    rated: dict[str, set[str]] = {}
    with open(os.path.join(dataset, "ratings.csv"), encoding="utf-8") as f:
        for row in csv.DictReader(f):
            rated.setdefault(row["userId"], set()).add(row["movieId"])
    return rated


def _post(url: str, body: dict, log_path) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as e:
        raise AssertionError(f"{url}: {e.code} {e.read()[:2000]!r}\n{log_path.read_text()[-4000:]}") from None


def test_serve_answers_from_the_bucket(ran, dataset, env, workdir, tmp_path):
    ok(ran[0])
    grpc_port, rest_port = _free_port(), _free_port()
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen([MOVIEREC, "serve", "--serving_root", f"s3://{BUCKET}/out/serving",
                                   "--port", str(grpc_port), "--rest_api_port", str(rest_port)],
                                  cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 600
        while "serving gRPC on" not in log_path.read_text():
            assert server.poll() is None, f"serve exited {server.returncode}: {log_path.read_text()[-4000:]}"
            assert time.time() < deadline, log_path.read_text()[-4000:]
            time.sleep(0.5)
        text = log_path.read_text()
        assert f"model mf <- s3://{BUCKET}/out/serving/mf: v" in text, text[-3000:]
        rated = _ratings(dataset)
        movies = {row["movieId"] for row in csv.DictReader(open(os.path.join(dataset, "movies.csv"), encoding="utf-8"))}
        user = max(rated, key=lambda u: (len(rated[u]), u))   # the user with the most ratings
        base = f"http://127.0.0.1:{rest_port}/v1/models"
        for model in ("mf", "content"):
            got = _post(f"{base}/{model}:predict", {"instances": [{"user_id": user}]}, log_path)["predictions"][0]
            ids = got["movie_ids"]
            assert len(ids) == 10 == len(set(ids)) and set(ids) <= movies, got
            assert all(got["valid"]) and got["user_known"] is True
            # `recommend` with every movie the user rated excluded (serving_default masks the
            # training ratings only; the eval split's may still come back)
            got = _post(f"{base}/{model}:predict", {"signature_name": "recommend", "instances": [
                {"user_id": user, "k": 10, "exclude_movie_ids": sorted(rated[user])}]}, log_path)["predictions"][0]
            ids = got["movie_ids"]
            assert len(ids) == 10 == len(set(ids)) and set(ids) <= movies - rated[user], (ids, sorted(rated[user]))
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert server.returncode == 0, log_path.read_text()[-3000:]


def test_retrain_reads_spans_arriving_in_the_bucket(dataset, env, workdir, s3_endpoint, tmp_path):
    client = bucket_client(s3_endpoint)
    spans = str(tmp_path / "spans")
    ok(movierec(env, workdir, "data", "split-spans", dataset, "--out", spans, "--by", "count", "--count", "2"))
    assert sorted(os.listdir(spans)) == ["span-1", "span-2"]
    args = ["retrain", "--data-dir", f"s3://{BUCKET}/inbox", "--output-dir", f"s3://{BUCKET}/retrain", *RUN_ARGS]

    upload(client, os.path.join(spans, "span-1"), "inbox/span-1")
    first = ok(movierec(env, workdir, *args))
    assert "spans: span-1 (window all)" in first, first[:2000]
    assert pushed_versions(client, "retrain/serving", "mf"), keys(client, "retrain/serving/")

    upload(client, os.path.join(spans, "span-2"), "inbox/span-2")
    second = ok(movierec(env, workdir, *args))
    assert "spans: span-1, span-2 (window all); MF warm start on" in second, second[:2000]
    read = [line for line in second.splitlines() if line.strip().startswith(("span-1 ml-latest", "span-2 ml-latest"))]
    assert len(read) == 2 and sum(int(line.split(": ")[1].split()[0]) for line in read) == 4000, read
    assert os.listdir(workdir) == []
