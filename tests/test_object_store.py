"""The file paths of the pipeline on a real S3-compatible object store started on loopback.

Why S3 (moto's server mode) and not GCS: TF 2.16's built-in `gs://` filesystem always
talks to www.googleapis.com (no endpoint setting), and the modular GCS plugin
(`TF_USE_MODULAR_FILESYSTEM=true`, tensorflow-io-gcs-filesystem 0.37.1, which does honour
`CLOUD_STORAGE_EMULATOR_ENDPOINT`) crashes with a segmentation fault on the first write.
TF 2.16 itself has no `s3://`; tensorflow-io 0.37.1 (its release for TF 2.16) registers
it on `import tensorflow_io` and is pointed at the emulator with `S3_ENDPOINT`.

tensorflow-io 0.37.1's S3 filesystem aborts the process at interpreter exit after any S3
access ("pure virtual method called", exit code 134; tensorflow/io issue 2039, fixed after
that release). Production entry points register s3:// and end through
`movierec.filesystems` (`ensure`, `finish`), which keeps their exit status; here everything
that touches S3 runs in a child process that does the same and reports its results as
JSON, and the test process itself never loads the S3 filesystem.

What is checked, against the bucket: the readers read an ml-100k folder (made from the
synthetic generator) exactly as they read the same folder on disk; spans are cut and
listed there; a SavedModel is pushed in place with `saved_model.pb` last, listed by
`serving.versions` and loaded by TensorFlow from the bucket; a push killed (SIGKILL)
half-way leaves nothing the version scanner would load, and the next push succeeds.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUCKET = "movierec"
# A Python interpreter with moto[server] installed (default: this one).
MOTO_PYTHON = os.environ.get("MOVIEREC_TEST_MOTO_PYTHON") or sys.executable


def _missing_modules() -> list[str]:
    missing = [] if importlib.util.find_spec("tensorflow_io") else ["tensorflow_io (tensorflow-io==0.37.1)"]
    if MOTO_PYTHON == sys.executable and not importlib.util.find_spec("moto"):
        missing.append("moto (moto[server])")
    return missing


pytestmark = pytest.mark.skipif(bool(_missing_modules()),
                                reason=f"object-store test needs {', '.join(_missing_modules())}: not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    """moto's S3 server on 127.0.0.1 with one empty bucket; its URL."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("moto") / "server.log"  # a file: a pipe would fill and block it
    log = open(log_path, "wb")
    proc = subprocess.Popen([MOTO_PYTHON, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            assert proc.poll() is None, f"moto server exited: {log_path.read_text()[-2000:]}"
            try:
                urllib.request.urlopen(urllib.request.Request(f"{url}/{BUCKET}", method="PUT"), timeout=2).read()
                break
            except OSError:
                assert time.time() < deadline, f"moto server did not answer on {url}"
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def s3_env(endpoint: str) -> dict:
    return dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1",
                S3_ENDPOINT=endpoint, S3_USE_HTTPS="0", S3_VERIFY_SSL="0", TF_CPP_MIN_LOG_LEVEL="2")


def run_on_s3(endpoint: str, code: str, *args: str, timeout: float = 300) -> dict:
    """Runs `code` (which sets `result`) in a child with the S3 filesystem; returns `result`."""
    program = ("import json, os, sys\nimport tensorflow as tf\nfrom movierec import filesystems\n"
               f"filesystems.ensure('s3://{BUCKET}')\n"
               + code + "\nprint('RESULT ' + json.dumps(result), flush=True)\nsys.exit(filesystems.finish(0))\n")
    proc = subprocess.run([sys.executable, "-c", program, *args], cwd=REPO, env=s3_env(endpoint),
                          capture_output=True, timeout=timeout)
    out = proc.stdout.decode()
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"exit {proc.returncode}\n{out[-3000:]}\n{proc.stderr.decode()[-3000:]}"
    return json.loads(lines[-1][len("RESULT "):])


def write_ml100k(folder: str, users: int = 60, movies: int = 80, ratings: int = 1500) -> str:
    """An ml-100k folder (u.data, u.item, u.genre) from the synthetic generator's output:
    half stars rounded up to whole stars, genres as u.item's flags."""
    import csv

    from movierec.components.data import synth

    latest = folder + "-latest"
    synth.generate(synth.SynthSpec(users=users, movies=movies, ratings=ratings, seed=5), latest)
    os.makedirs(folder)
    genres = ["unknown", *synth.GENRES]
    with open(os.path.join(folder, "u.genre"), "w", encoding="latin-1") as f:
        f.writelines(f"{g}|{i}\n" for i, g in enumerate(genres))
    with open(os.path.join(latest, "movies.csv"), encoding="utf-8") as f, \
            open(os.path.join(folder, "u.item"), "w", encoding="latin-1") as out:
        for row in csv.DictReader(f):
            mine = set(row["genres"].split("|"))
            flags = "|".join("1" if g in mine else "0" for g in genres)
            title = row["title"].encode("latin-1", "replace").decode("latin-1").replace("|", "/")
            out.write(f"{row['movieId']}|{title}|01-Jan-1995||http://example.org|{flags}\n")
    with open(os.path.join(latest, "ratings.csv"), encoding="utf-8") as f, \
            open(os.path.join(folder, "u.data"), "w", encoding="latin-1") as out:
        for row in csv.DictReader(f):
            stars = math.ceil(float(row["rating"]))
            out.write(f"{row['userId']}\t{row['movieId']}\t{stars}\t{row['timestamp']}\n")
    return folder


def local_records(folder: str) -> list:
    from movierec.components.data import readers

    return [[r.user_id, r.movie_id, r.rating, r.timestamp, r.title, list(r.genres)]
            for r in readers.read_ratings(folder)]


READ_AND_SPLIT = """
from movierec.components.data import readers, spans
local, remote = sys.argv[1], sys.argv[2]
for name in os.listdir(local):
    tf.io.gfile.copy(os.path.join(local, name), remote + "/" + name, overwrite=True)
report = readers.check_dataset(remote)
records = [[r.user_id, r.movie_id, r.rating, r.timestamp, r.title, list(r.genres)]
           for r in readers.read_ratings(remote)]
try:
    readers.detect_format(remote + "-missing")
    missing = None
except FileNotFoundError as e:
    missing = str(e)
summaries = spans.split_spans(remote, remote + "-spans", by="count", count=3)
result = {"format": readers.detect_format(remote), "ratings": report.ratings, "records": records,
          "missing": missing, "spans": spans.list_spans(remote + "-spans"),
          "span_ratings": [s["ratings"] for s in summaries],
          "span_files": sorted(tf.io.gfile.listdir(spans.span_dir(remote + "-spans", 2))),
          "span_2_ratings": sum(1 for _ in readers.read_ratings(spans.span_dir(remote + "-spans", 2)))}
"""


def test_readers_and_spans_read_an_ml100k_folder_in_the_bucket(tmp_path, s3_endpoint):
    local = write_ml100k(str(tmp_path / "ml-100k"))
    expected = local_records(local)
    got = run_on_s3(s3_endpoint, READ_AND_SPLIT, local, f"s3://{BUCKET}/input/ml-100k")
    assert got["format"] == "ml-100k"
    assert got["ratings"] == len(expected) > 1000
    assert got["records"] == expected
    assert f"s3://{BUCKET}/input/ml-100k-missing" in got["missing"] and "does not exist" in got["missing"]
    assert got["spans"] == [1, 2, 3] and sum(got["span_ratings"]) == len(expected)
    assert got["span_files"] == ["u.data", "u.genre", "u.item"]
    assert got["span_2_ratings"] == got["span_ratings"][1]


PUSH = """
import signal, subprocess, time
from movierec.components.atomic_pusher import executor as pusher
from movierec.serving import versions
model_dir, base = sys.argv[1], sys.argv[2]

class Scorer(tf.Module):
    def __init__(self):
        self.w = tf.Variable([1.0, 2.0, 3.0])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32)])
    def __call__(self, i):
        return tf.gather(self.w, i) * 2.0

tf.saved_model.save(Scorer(), model_dir)

def objects(prefix):
    return sorted(p[len(prefix):] for p in tf.io.gfile.glob(prefix + "*/*") + tf.io.gfile.glob(prefix + "*/*/*")
                  if not tf.io.gfile.isdir(p))

# A push killed half-way (real SIGKILL of a child slowed down between files).
code = ("import sys, tensorflow_io; from movierec.components.atomic_pusher import executor as p; "
        "p.push(sys.argv[1], sys.argv[2])")
child = subprocess.Popen([sys.executable, "-c", code, model_dir, base],
                         env=dict(os.environ, **{pusher.ENV_FILE_DELAY: "1.5"}))
scans_during_push = []
deadline = time.time() + 300
while len(objects(base + "/")) < 2 and time.time() < deadline and child.poll() is None:
    scans_during_push.append(versions.list_versions(base))
    time.sleep(0.2)
child.send_signal(signal.SIGKILL)
child.wait()
left = objects(base + "/")
after_kill = versions.list_versions(base)
removed = pusher.remove_stale_temporaries(base)

version, written = pusher.push(model_dir, base, model_id=3)
again = pusher.push(model_dir, base)
folder = versions.version_dir(base, version)
loaded = tf.saved_model.load(folder)
record = json.loads(tf.io.gfile.GFile(folder + "/" + pusher.PUSH_RECORD).read())
result = {"killed_code": child.returncode, "left": left, "scans_during_push": scans_during_push,
          "after_kill": after_kill, "removed": removed, "version": version, "written": written,
          "again": list(again), "listed": versions.list_versions(base), "files": objects(base + "/"),
          "scores": loaded(tf.constant([0, 2])).numpy().tolist(),
          "fingerprint_ok": record["fingerprint"] == pusher.model_fingerprint(model_dir),
          "model_files": len(objects(model_dir + "/"))}
"""


def test_push_into_the_bucket_is_atomic_even_when_killed(tmp_path, s3_endpoint):
    base = f"s3://{BUCKET}/serving/mf"
    got = run_on_s3(s3_endpoint, PUSH, str(tmp_path / "model"), base)
    assert got["killed_code"] == -9
    assert got["left"] and not any(p.endswith("saved_model.pb") for p in got["left"]), got["left"]
    assert got["after_kill"] == [] and all(scan == [] for scan in got["scans_during_push"])
    assert len(got["removed"]) == 1 and got["removed"][0].startswith(base + "/")
    version = got["version"]
    assert got["written"] and got["again"] == [version, False] and got["listed"] == [version]
    names = [f.split("/", 1)[1] for f in got["files"]]
    assert all(f.startswith(f"{version}/") for f in got["files"]), got["files"]
    assert "saved_model.pb" in names and "variables/variables.index" in names and "assets.extra/push.json" in names
    assert got["scores"] == [2.0, 6.0] and got["fingerprint_ok"]


EXIT = """
import sys
import tensorflow as tf
from movierec import filesystems
folder, code, how = sys.argv[1], int(sys.argv[2]), sys.argv[3]
filesystems.ensure(folder)
with tf.io.gfile.GFile(folder + "/marker", "w") as f:
    f.write("x")
assert tf.io.gfile.exists(folder + "/marker")
print("wrote", folder, flush=True)
sys.exit(filesystems.finish(code) if how == "finish" else code)
"""


@pytest.mark.parametrize("code", [0, 3])
def test_an_entry_point_that_used_s3_exits_with_its_own_status(s3_endpoint, code):
    def run(how):
        return subprocess.run([sys.executable, "-c", EXIT, f"s3://{BUCKET}/exit/{how}{code}", str(code), how],
                              cwd=REPO, env=s3_env(s3_endpoint), capture_output=True, text=True, timeout=300)

    ours = run("finish")
    assert ours.returncode == code and f"wrote s3://{BUCKET}/exit/finish{code}" in ours.stdout, ours.stderr[-3000:]
    plain = run("plain")  # the same work ending with plain sys.exit: tensorflow-io's abort at exit
    assert plain.returncode == -signal.SIGABRT and "pure virtual method called" in plain.stderr, (
        plain.returncode, plain.stderr[-3000:])  # SIGABRT: status 134 in a shell
