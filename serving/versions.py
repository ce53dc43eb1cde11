"""Model versions under a TF Serving model base path: `<base>/<numeric version>/`.

A version counts only when it is complete: a numeric directory holding `saved_model.pb`
(or `saved_model.pbtxt`) and a `variables/` folder, or no variables at all. Temporary
folders (names starting with '.' or not numeric) are ignored, so a writer that copies to a
temporary name and renames never exposes a half-written version; on object stores, where
a rename is a copy, writers write `saved_model.pb` last instead (see the AtomicPusher).

Paths go through `tf.io.gfile`, so the base path may be local or on any filesystem
TensorFlow has registered (gs://, s3://, ...). TensorFlow is imported on first use.
"""
from __future__ import annotations

import posixpath


def _gfile():
    import tensorflow as tf  # noqa: PLC0415  (lazy: importers may not need TensorFlow)
    return tf.io.gfile


def _children(gfile, base_path: str) -> list[str]:
    # Object stores list sub-folders with a trailing '/'.
    return [name.rstrip("/") for name in gfile.listdir(base_path)]


def is_complete(version_dir: str) -> bool:
    gfile = _gfile()
    has_graph = any(gfile.exists(posixpath.join(version_dir, n)) and not gfile.isdir(posixpath.join(version_dir, n))
                    for n in ("saved_model.pb", "saved_model.pbtxt"))
    variables = posixpath.join(version_dir, "variables")
    has_vars = (not gfile.exists(variables)
                or gfile.exists(posixpath.join(variables, "variables.index")))
    return has_graph and has_vars


def list_versions(base_path: str) -> list[int]:
    """Complete numeric versions under `base_path`, ascending; [] if none or no folder."""
    gfile = _gfile()
    if not gfile.isdir(base_path):
        return []
    versions = []
    for name in _children(gfile, base_path):
        if name.isdigit() and is_complete(posixpath.join(base_path, name)):
            versions.append(int(name))
    return sorted(versions)


def version_dir(base_path: str, version: int) -> str:
    """The folder of `version`; TF Serving accepts zero-padded names (00000123)."""
    gfile = _gfile()
    if gfile.isdir(base_path):
        for name in _children(gfile, base_path):
            if name.isdigit() and int(name) == version:
                return posixpath.join(base_path, name)
    raise FileNotFoundError(f"no version {version} under {base_path}")


def latest_version(base_path: str) -> int | None:
    versions = list_versions(base_path)
    return versions[-1] if versions else None
