"""Executor: push a blessed model as `<base>/<version>/`, atomically and idempotently.

* Atomic on local disks: the model is copied to `<base>/.tmp-<version>-<pid>/` (ignored by
  servers: not numeric) and renamed to `<base>/<version>/` in one rename, so a server never
  sees a half-written version, whatever moment the process dies at.
* Atomic on object stores (any `scheme://` path: gs://, s3://, ...), where a rename is a
  copy of every object and so not atomic: the version is written in place, every file
  except `saved_model.pb` first and `saved_model.pb` last. A version folder without
  `saved_model.pb` is not loadable (TF Serving's SavedModel loader and
  `movierec.contract.is_complete` both need it), so a server polling the base path sees the
  version only once all of it is there. A push killed half-way leaves a numeric folder
  without `saved_model.pb`; the next push removes it before writing.
* Idempotent: a fingerprint (SHA-256 over every file of the SavedModel) is written to
  `assets.extra/push.json`; when the newest version already holds the same model, nothing
  is copied and the push artifact points at that version. Re-running a pipeline with nothing
  new (or a re-blessing of the same model) therefore creates no duplicate version.
* Versions are UNIX timestamps (as TFX's Pusher), bumped past the newest existing version.

Every file access goes through TFX's `fileio`, so the base directory may be local or on any
filesystem TensorFlow has registered.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import time
from typing import Any

from tfx.components.pusher import executor as tfx_pusher_executor
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from movierec import contract   # the version-folder layout servers read

PUSH_RECORD = "assets.extra/push.json"
GRAPH_FILES = contract.GRAPH_FILES
# Seconds to sleep after each file copied; lets a test kill a push half-way. Unset: no sleep.
ENV_FILE_DELAY = "MOVIEREC_PUSH_FILE_DELAY_SECONDS"


def has_atomic_rename(path: str) -> bool:
    """Local paths rename atomically; object stores (`scheme://...`) copy on rename."""
    return "://" not in path


def _join(base: str, *parts: str) -> str:
    return posixpath.join(base, *parts)


def _model_files(model_dir: str) -> list[str]:
    """Relative paths ('/'-separated) of every file under `model_dir`, sorted by folder then name."""
    top = model_dir.rstrip("/")
    found = []
    for folder, _dirs, files in fileio.walk(top):
        folder = folder.rstrip("/")
        rel_folder = folder[len(top):].lstrip("/")
        found.append((folder, rel_folder, sorted(f.rstrip("/") for f in files)))
    rels = []
    for _folder, rel_folder, files in sorted(found):
        rels.extend(posixpath.join(rel_folder, name) if rel_folder else name for name in files)
    return rels


def model_fingerprint(model_dir: str) -> str:
    digest = hashlib.sha256()
    for rel in _model_files(model_dir):
        if rel == PUSH_RECORD:
            continue
        digest.update(rel.encode() + b"\0")
        with fileio.open(_join(model_dir, rel), "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _copy_file(src: str, dst: str, delay: float) -> None:
    fileio.makedirs(posixpath.dirname(dst))
    fileio.copy(src, dst, overwrite=True)
    if delay:
        time.sleep(delay)


def _write_record(path: str, record: dict) -> None:
    fileio.makedirs(posixpath.dirname(path))
    with fileio.open(path, "w") as f:
        f.write(json.dumps(record, indent=2))


def push(model_dir: str, base_dir: str, model_id: int | None = None,
         atomic_rename: bool | None = None) -> tuple[int, bool]:
    """Pushes `model_dir` under `base_dir`; returns (version, newly_written).

    `atomic_rename` chooses how the version appears: True copies to a hidden folder and
    renames it (local disks), False writes in place with `saved_model.pb` last (object
    stores). None decides from `base_dir` (see `has_atomic_rename`).
    """
    if not fileio.isdir(model_dir):
        raise FileNotFoundError(f"model directory {model_dir!r} does not exist")
    if atomic_rename is None:
        atomic_rename = has_atomic_rename(base_dir)
    fingerprint = model_fingerprint(model_dir)
    fileio.makedirs(base_dir)
    latest = contract.latest_version(base_dir)
    if latest is not None:
        record = _join(contract.version_dir(base_dir, latest), PUSH_RECORD)
        if fileio.exists(record):
            with fileio.open(record, "r") as f:
                if json.loads(f.read()).get("fingerprint") == fingerprint:
                    return latest, False
    # An object store has no empty folders: `base_dir` may still not exist here.
    names = [n.rstrip("/") for n in fileio.listdir(base_dir)] if fileio.isdir(base_dir) else []
    existing = [int(n) for n in names if n.isdigit()]
    version = max(int(time.time()), max([latest or 0, *existing]) + 1)
    delay = float(os.environ.get(ENV_FILE_DELAY) or 0)
    files = [rel for rel in _model_files(model_dir) if rel != PUSH_RECORD]
    graphs = [rel for rel in files if rel in GRAPH_FILES]
    if not graphs:
        raise FileNotFoundError(f"{model_dir!r} holds no saved_model.pb: not a SavedModel")
    record = {"fingerprint": fingerprint, "model_artifact_id": model_id, "version": version,
              "pushed_at": time.time()}
    final = _join(base_dir, str(version))
    target = _join(base_dir, f".tmp-{version}-{os.getpid()}") if atomic_rename else final
    if fileio.exists(target):
        fileio.rmtree(target)
    # The graph goes last: until it is there the folder is not a loadable SavedModel.
    for rel in [rel for rel in files if rel not in GRAPH_FILES]:
        _copy_file(_join(model_dir, rel), _join(target, rel), delay)
    _write_record(_join(target, PUSH_RECORD), record)
    for rel in graphs:
        _copy_file(_join(model_dir, rel), _join(target, rel), delay)
    if atomic_rename:
        fileio.rename(target, final)
    return version, True


def _is_unfinished_version(path: str) -> bool:
    return not any(fileio.exists(_join(path, name)) for name in GRAPH_FILES)


def remove_stale_temporaries(base_dir: str, older_than_seconds: float = 3600) -> list[str]:
    """Removes what killed pushes left; returns the paths removed.

    Hidden `.tmp-*` folders (rename pushes) older than `older_than_seconds`, and numeric
    version folders without `saved_model.pb` (in-place pushes killed before the graph was
    written: never loadable, and in the way of a later push). Pushes to one base path are
    expected to run one at a time, as the pipeline runs them.
    """
    if not fileio.isdir(base_dir):
        return []
    removed = []
    for entry in fileio.listdir(base_dir):
        name = entry.rstrip("/")
        path = _join(base_dir, name)
        if name.startswith(".tmp-"):
            stale = time.time() - fileio.stat(path).mtime_nsec / 1e9 > older_than_seconds
        else:
            stale = name.isdigit() and fileio.isdir(path) and _is_unfinished_version(path)
        if stale:
            fileio.rmtree(path)
            removed.append(path)
    return removed


class Executor(tfx_pusher_executor.Executor):
    def Do(self, input_dict, output_dict, exec_properties: dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            logging.info("AtomicPusher: model not blessed, nothing pushed")
            return
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        if destination.WhichOneof("destination") != "filesystem":
            raise NotImplementedError("AtomicPusher pushes to a filesystem destination only")
        base = destination.filesystem.base_directory
        model = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_KEY])
        for path in remove_stale_temporaries(base):
            logging.warning("AtomicPusher: removed %s, left by an interrupted push", path)
        version, written = push(self.GetModelPath(input_dict), base, model.id)
        logging.info("AtomicPusher: %s version %d under %s", "pushed" if written else "already serving",
                     version, base)
        io_utils.copy_dir(self.GetModelPath(input_dict), model_push.uri)
        self._MarkPushed(model_push, pushed_destination=_join(base, str(version)),
                         pushed_version=str(version))
        model_push.set_int_custom_property("newly_written", int(written))
