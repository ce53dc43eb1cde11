"""Pushes killed half-way leave nothing a server would load, and the next push succeeds.

Each push runs in a subprocess slowed down by `MOVIEREC_PUSH_FILE_DELAY_SECONDS` (a sleep
after every file copied) and is killed with SIGKILL while it copies: a real kill on the
real filesystem. The version scanner (`serving.versions`, which decides what the server
loads) must list nothing while the push is cut short, and a following push must produce
one complete version. Both ways of writing a version are exercised: rename (local disks)
and in place with `saved_model.pb` last (object stores, where a rename is a copy).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from movierec.components.atomic_pusher import executor as pusher
from movierec.serving import versions

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_FILES = {
    "fingerprint.pb": b"fp",
    "variables/variables.index": b"index",
    "variables/variables.data-00000-of-00001": b"data" * 1000,
    "assets/user_id": b"1\n2\n3\n",
    "assets.extra/movierec.json": b"{}",
    "saved_model.pb": b"graph",
}


def make_model(folder: str, graph: bytes = b"graph") -> str:
    for rel, content in MODEL_FILES.items():
        path = os.path.join(folder, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(graph if rel == "saved_model.pb" else content)
    return folder


def start_push(model: str, base: str, atomic_rename: bool, delay: float) -> subprocess.Popen:
    code = ("import sys; from movierec.components.atomic_pusher import executor as p; "
            "print(p.push(sys.argv[1], sys.argv[2], atomic_rename=sys.argv[3] == '1'))")
    env = dict(os.environ, **{pusher.ENV_FILE_DELAY: str(delay), "TF_CPP_MIN_LOG_LEVEL": "2"})
    return subprocess.Popen([sys.executable, "-c", code, model, base, "1" if atomic_rename else "0"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def files_under(base: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), base) for d, _, fs in os.walk(base) for f in fs)


def kill_half_way(proc: subprocess.Popen, base: str, min_files: int, timeout: float = 120) -> list[str]:
    """Waits until `min_files` files are written under `base`, checking on every poll that
    the scanner lists no version meanwhile, then SIGKILLs the push; returns what it left."""
    deadline = time.time() + timeout
    while len(files_under(base) if os.path.isdir(base) else []) < min_files:
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "push did not start writing"
        assert versions.list_versions(base) == []
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return files_under(base)


@pytest.mark.parametrize("atomic_rename", [False, True], ids=["in-place-graph-last", "rename"])
def test_killed_push_leaves_no_loadable_version_and_next_push_succeeds(tmp_path, atomic_rename):
    model = make_model(str(tmp_path / "model"))
    base = str(tmp_path / "serving" / "mf")
    left = kill_half_way(start_push(model, base, atomic_rename, delay=1.0), base, min_files=2)
    assert 2 <= len(left) < len(MODEL_FILES)
    assert not any(f.endswith("saved_model.pb") for f in left), left  # the graph comes last
    assert versions.list_versions(base) == []  # nothing a server would load

    removed = pusher.remove_stale_temporaries(base, older_than_seconds=0)
    assert len(removed) == 1 and not os.listdir(base)
    version, written = pusher.push(model, base, atomic_rename=atomic_rename)
    assert written and versions.list_versions(base) == [version]
    assert files_under(base) == sorted(os.path.join(str(version), rel)
                                       for rel in [*MODEL_FILES, pusher.PUSH_RECORD])


def test_unfinished_in_place_version_is_removed_by_the_next_push_not_served(tmp_path):
    """Without an explicit clean-up, the next push skips the unfinished folder's number,
    and the clean-up at push time (the executor's) removes it."""
    model = make_model(str(tmp_path / "model"))
    base = str(tmp_path / "serving")
    unfinished = tmp_path / "serving" / "2000000000" / "variables"
    unfinished.mkdir(parents=True)
    (unfinished / "variables.index").write_bytes(b"index")
    assert versions.list_versions(base) == []
    version, written = pusher.push(model, base, atomic_rename=False)
    assert written and version > 2000000000 and versions.list_versions(base) == [version]
    assert pusher.remove_stale_temporaries(base) == [os.path.join(base, "2000000000")]
    assert versions.list_versions(base) == [version] and os.listdir(base) == [str(version)]


def test_a_server_polling_during_an_in_place_push_sees_the_version_only_when_complete(tmp_path):
    model = make_model(str(tmp_path / "model"))
    base = str(tmp_path / "serving")
    proc = start_push(model, base, atomic_rename=False, delay=0.3)
    seen: list[int] = []
    while proc.poll() is None:
        listed = versions.list_versions(base)
        if listed:
            folder = os.path.join(base, str(listed[0]))
            assert sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs) \
                == sorted([*MODEL_FILES, pusher.PUSH_RECORD])
            seen = listed
        time.sleep(0.02)
    out, err = proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert versions.list_versions(base) == [int(out.decode().strip().strip("()").split(",")[0])]
    record = json.load(open(os.path.join(base, str(versions.latest_version(base)), pusher.PUSH_RECORD)))
    assert record["fingerprint"] == pusher.model_fingerprint(model)


def test_push_of_a_folder_without_a_graph_is_refused_naming_it(tmp_path):
    model = tmp_path / "model"
    (model / "variables").mkdir(parents=True)
    (model / "variables" / "variables.index").write_bytes(b"index")
    with pytest.raises(FileNotFoundError, match="model.*saved_model.pb"):
        pusher.push(str(model), str(tmp_path / "serving"))
    with pytest.raises(FileNotFoundError, match="missing"):
        pusher.push(str(tmp_path / "missing"), str(tmp_path / "serving"))
