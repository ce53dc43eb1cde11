"""Downloads MovieLens archives from GroupLens into a local cache, verified by SHA-256.

`fetch(name, cache_dir)` returns the directory holding the dataset's files
(`<cache_dir>/<name>/`). An archive whose size or SHA-256 differs from the pinned values is
rejected and deleted; nothing is extracted from it. Extraction goes to a temporary folder
that is renamed into place, so an interrupted download never leaves a half dataset that a
later run would take as complete.

The cache folder goes through `tf.io.gfile` (imported on first use), so it may be local or
on any filesystem TensorFlow has registered (gs://, s3://, ...). The archive is downloaded
and extracted in a local scratch folder; a remote cache receives the extracted files with
the `.verified` marker written last, so a half-uploaded copy is never taken as cached.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import posixpath
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from typing import Callable

GROUPLENS_BASE_URL = "https://files.grouplens.org/datasets/movielens/"


@dataclasses.dataclass(frozen=True)
class Archive:
    name: str       # dataset name and the folder inside the zip
    size: int       # bytes
    sha256: str


# Sizes and digests of these archives as TensorFlow Datasets pins them
# (tensorflow_datasets/url_checksums/movielens.txt). GroupLens updates ml-latest-small
# occasionally; a mismatch is reported, not ignored. ml-10m (folder ml-10M100K) and ml-32m
# have no independently pinned digest here: download them from GroupLens and pass the
# folder as the data directory (the readers detect their layouts).
ARCHIVES = {
    "ml-100k": Archive("ml-100k", 4924029,
                       "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229"),
    "ml-latest-small": Archive("ml-latest-small", 978202,
                               "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436"),
    "ml-1m": Archive("ml-1m", 5917549,
                     "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20"),
    "ml-20m": Archive("ml-20m", 198702078,
                      "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3"),
    "ml-25m": Archive("ml-25m", 261978986,
                      "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa"),
}


class DownloadError(RuntimeError):
    """The archive could not be fetched or failed verification."""


def default_cache_dir(environ: dict | None = None) -> str:
    env = os.environ if environ is None else environ
    if env.get("MOVIEREC_CACHE"):
        return env["MOVIEREC_CACHE"]
    return os.path.join(os.path.expanduser("~"), ".cache", "movierec")


def _gfile():
    import tensorflow as tf  # noqa: PLC0415  (lazy: `movierec data` commands start without TF)
    return tf.io.gfile


def cached_dataset(name: str, cache_dir: str) -> str | None:
    """The dataset folder if a verified copy is already in the cache, else None."""
    path = posixpath.join(cache_dir, name)
    return path if _gfile().exists(posixpath.join(path, ".verified")) else None


def fetch(
    name: str,
    cache_dir: str,
    base_url: str = GROUPLENS_BASE_URL,
    archives: dict[str, Archive] | None = None,
    timeout: float = 30.0,
    progress: Callable[[int, int], None] | None = None,
) -> str:
    """Downloads (unless cached), verifies and extracts dataset `name`; returns its folder."""
    archives = ARCHIVES if archives is None else archives
    if name not in archives:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(archives)}")
    archive = archives[name]
    found = cached_dataset(name, cache_dir)
    if found:
        return found
    gfile = _gfile()
    gfile.makedirs(cache_dir)
    remote = "://" in cache_dir
    url = base_url.rstrip("/") + f"/{name}.zip"
    progress = progress or _print_progress
    # Local-only scratch (urlopen, zipfile and the escape check need a local disk): inside a
    # local cache, so that the final rename stays on one filesystem.
    with tempfile.TemporaryDirectory(dir=None if remote else cache_dir, prefix=f".{name}-") as tmp:
        zip_path = os.path.join(tmp, f"{name}.zip")  # local scratch, as below
        digest = hashlib.sha256()
        received = 0
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(zip_path, "wb") as out:
                while True:
                    chunk = response.read(1 << 16)
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    progress(received, archive.size)
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            raise DownloadError(f"could not download {url}: {e}") from e
        if received != archive.size or digest.hexdigest() != archive.sha256:
            raise DownloadError(
                f"{url}: checksum mismatch (got {received} bytes, sha256 {digest.hexdigest()}; "
                f"expected {archive.size} bytes, sha256 {archive.sha256}); archive discarded")
        extract_dir = os.path.join(tmp, "extract")
        with zipfile.ZipFile(zip_path) as z:
            for member in z.namelist():
                target = os.path.realpath(os.path.join(extract_dir, member))
                if not target.startswith(os.path.realpath(extract_dir) + os.sep):
                    raise DownloadError(f"{url}: archive member {member!r} escapes the folder")
            z.extractall(extract_dir)
        src = os.path.join(extract_dir, archive.name)
        if not os.path.isdir(src):  # local scratch
            raise DownloadError(f"{url}: archive has no top-level folder {archive.name!r}")
        marker = f"{url}\nsha256 {archive.sha256}\n"
        final = posixpath.join(cache_dir, name)
        if gfile.isdir(final):  # an unverified leftover of an interrupted download
            gfile.rmtree(final)
        if remote:
            for folder, _dirs, files in os.walk(src):  # local scratch
                rel = os.path.relpath(folder, src)
                for file_name in files:
                    dst = posixpath.join(final, file_name) if rel == "." else posixpath.join(final, rel, file_name)
                    gfile.copy(os.path.join(folder, file_name), dst, overwrite=True)
            with gfile.GFile(posixpath.join(final, ".verified"), "w") as f:
                f.write(marker)
        else:
            with gfile.GFile(os.path.join(src, ".verified"), "w") as f:
                f.write(marker)
            gfile.rename(src, final)
    return final


def _print_progress(received: int, total: int) -> None:
    if sys.stderr.isatty() or received >= total:
        pct = 100.0 * received / total if total else 0.0
        end = "\n" if received >= total else "\r"
        print(f"  downloaded {received / 1e6:.1f} / {total / 1e6:.1f} MB ({pct:.0f}%)",
              end=end, file=sys.stderr)
