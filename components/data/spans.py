"""Spans: ratings that arrive in batches, one MovieLens folder per batch.

Layout (TFX's `{SPAN}` convention):

    <input>/span-1/   any one dataset folder `readers` reads: u.data + u.item (+ u.genre),
                      ratings.dat + movies.dat (+ users.dat), ratings.csv + movies.csv, or a
                      declared dataset (movierec-data.yaml and its files)
    <input>/span-2/   ...

Each span folder is a complete dataset folder: the ratings that arrived in that batch and
the movie file as it stood then. A run reads the latest span, or a rolling window of the
last W spans (`window`): the last W span folders that exist, by span number. When a
(user, movie) pair is rated in more than one span of a window, the rating of the newest
span wins (a re-rating supersedes the old one); the superseded ratings are counted and
logged, never silently merged. Implicit events (a declared dataset without ratings) of one
pair in several spans add up: one interaction whose weight is the sum over the spans, with
the newest span's timestamp, as repeated events within one file are read.

`split_spans` cuts one MovieLens folder (any release's layout) into spans by calendar month or
into N equal parts by time, keeping the source format byte for byte (for the retrain demo and
tests). A declared dataset is refused: its periods are the owner's to write, one span folder
each with its own declaration.

Every path goes through `tf.io.gfile` (imported on first use), so span folders may be local
or on any filesystem TensorFlow has registered (gs://, s3://, ...).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import io
import os
import posixpath
import re
import uuid
from typing import Iterable

from movierec.components.data import readers

SPAN_PREFIX = "span-"
SPLIT_PATTERN = SPAN_PREFIX + "{SPAN}/*"   # TFX ExampleGen input pattern
_SPAN_DIR = re.compile(r"^span-(\d+)$")


@dataclasses.dataclass(frozen=True)
class RatingsFile:
    """How `split_spans` cuts one MovieLens layout: its ratings file (`name`, lines of fields
    separated by `separator`, timestamp the 4th field, a header line or not, decoded and
    re-encoded with `encoding` so every byte is kept) and the files copied whole into
    every span (those of them present in the source)."""

    name: str
    separator: str
    header: bool
    encoding: str
    copied: tuple[str, ...]


# The encodings are those the readers decode with (`readers._DAT_ENCODING` for the `::` layouts).
RATINGS_FILES = {
    readers.ML_100K: RatingsFile("u.data", "\t", False, "latin-1", ("u.item", "u.genre")),
    readers.ML_1M: RatingsFile("ratings.dat", "::", False, readers._DAT_ENCODING[readers.ML_1M],
                               ("movies.dat", "users.dat")),
    readers.ML_10M: RatingsFile("ratings.dat", "::", False, readers._DAT_ENCODING[readers.ML_10M], ("movies.dat",)),
    readers.ML_LATEST: RatingsFile("ratings.csv", ",", True, "utf-8", ("movies.csv",)),
}


def _gfile():
    import tensorflow as tf  # noqa: PLC0415  (lazy: `movierec data` commands start without TF)
    return tf.io.gfile


def _is_remote(path: str) -> bool:
    return "://" in path


def span_dir(input_base: str, span: int) -> str:
    return posixpath.join(input_base, f"{SPAN_PREFIX}{span}")


def list_spans(input_base: str) -> list[int]:
    """Span numbers of the `span-<N>` folders under `input_base`, ascending."""
    gfile = _gfile()
    if not gfile.isdir(input_base):
        raise FileNotFoundError(f"span input folder {input_base!r} does not exist")
    found = []
    for name in (n.rstrip("/") for n in gfile.listdir(input_base)):
        match = _SPAN_DIR.match(name)
        if match and gfile.isdir(posixpath.join(input_base, name)):
            found.append(int(match.group(1)))
    return sorted(found)


def window(spans: Iterable[int], latest: int, size: int) -> list[int]:
    """The last `size` spans up to and including `latest` (size 0: every span), ascending.

    >>> window([1, 2, 4, 5], latest=5, size=3)
    [2, 4, 5]
    """
    if size < 0:
        raise ValueError(f"span window must be >= 0 (0: all spans), got {size}")
    upto = sorted(s for s in set(spans) if s <= latest)
    if latest not in upto:
        raise ValueError(f"latest span {latest} is not among the spans {upto}")
    return upto if size == 0 else upto[-size:]


def window_dirs(input_base: str, latest: int, size: int) -> list[str]:
    """Folders of `window(...)` over the spans present in `input_base`, oldest first."""
    return [span_dir(input_base, s) for s in window(list_spans(input_base), latest, size)]


def files_fingerprint(folders: Iterable[str]) -> str:
    """Name, size and modification time of every file in `folders` (a cache key)."""
    gfile = _gfile()
    parts = []
    for folder in folders:
        for name in sorted(n.rstrip("/") for n in gfile.listdir(folder)):
            path = posixpath.join(folder, name)
            if _is_remote(path):
                st = gfile.stat(path)
                size, mtime_ns = st.length, st.mtime_nsec
            else:
                # Local-only: os.stat keeps nanoseconds (gfile's local stat rounds to seconds).
                st = os.stat(path)
                size, mtime_ns = st.st_size, st.st_mtime_ns
            parts.append(f"{folder}/{name}:{size}:{mtime_ns}")
    return "|".join(parts)


# -- splitting one dataset into spans ---------------------------------------------------------
def _timestamp_of(fields: list[str]) -> int:
    return int(fields[3])


def split_spans(data_dir: str, out_dir: str, by: str = "count", count: int = 3) -> list[dict]:
    """Cuts the MovieLens folder `data_dir` (any layout of `RATINGS_FILES`) into
    `out_dir/span-1 ... span-N` by time.

    by="month": one span per calendar month (UTC) that has ratings; by="count": `count`
    spans of (nearly) equal size in timestamp order. The dataset is checked first (any
    invalid line stops the split, naming file and line); each span gets its ratings in
    the source's own format and encoding, and a copy of the movie file(s) (ml-1m: and
    users.dat). A declared dataset (`movierec-data.yaml`) is refused with a ValueError.
    Written to a temporary folder and renamed into place, so a local `out_dir` is either
    complete or absent; on an object store (no atomic rename) the spans are written in
    place, each span's ratings before its movie file(s).
    Returns one summary dict per span: span, ratings, first and last timestamp.
    """
    if by not in ("month", "count"):
        raise ValueError(f"split by {by!r}: expected 'month' or 'count'")
    if by == "count" and count < 1:
        raise ValueError(f"span count must be >= 1, got {count}")
    gfile = _gfile()
    if gfile.exists(out_dir) and gfile.listdir(out_dir):
        raise FileExistsError(f"{out_dir} exists and is not empty; choose a new folder")
    data_format = readers.detect_format(data_dir)
    if data_format not in RATINGS_FILES:
        raise ValueError(
            f"{data_dir} is a declared dataset ({readers.DECLARATION}); split-spans cuts MovieLens folders "
            f"only: write one {SPAN_PREFIX}<N>/ folder per period, each with its {readers.DECLARATION}")
    readers.check_dataset(data_dir)  # raises DataError naming every bad line
    layout = RATINGS_FILES[data_format]
    path, encoding = posixpath.join(data_dir, layout.name), layout.encoding
    with io.StringIO(_read_text(path, encoding), newline="") as f:
        lines = [line for line in f if line.strip()]
    header, lines = (lines[0], lines[1:]) if layout.header else ("", lines)
    fields = [line.split(layout.separator) for line in lines]
    if not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    stamps = [_timestamp_of(f) for f in fields]
    order = sorted(range(len(lines)), key=lambda i: (stamps[i], i))
    if by == "month":
        months = [dt.datetime.fromtimestamp(stamps[i], dt.timezone.utc).strftime("%Y-%m") for i in order]
        labels = sorted(set(months))
        span_of = {i: labels.index(m) + 1 for i, m in zip(order, months)}
        n_spans = len(labels)
    else:
        if count > len(lines):
            raise ValueError(f"cannot cut {len(lines)} ratings into {count} spans")
        span_of = {i: rank * count // len(order) + 1 for rank, i in enumerate(order)}
        n_spans = count
    if _is_remote(out_dir):
        target = out_dir
    else:
        parent = os.path.dirname(os.path.abspath(out_dir))  # local-only: a sibling to rename from
        target = posixpath.join(parent, f".spans-{uuid.uuid4().hex}")
    gfile.makedirs(target)
    summaries = []
    try:
        for span in range(1, n_spans + 1):
            members = [i for i in order if span_of[i] == span]
            folder = span_dir(target, span)
            gfile.makedirs(folder)
            text = header + "".join(lines[i] for i in members)
            with gfile.GFile(posixpath.join(folder, posixpath.basename(path)), "wb") as f:
                f.write(text.encode(encoding))
            for name in layout.copied:
                source = posixpath.join(data_dir, name)
                if gfile.exists(source):
                    gfile.copy(source, posixpath.join(folder, name), overwrite=True)
            summaries.append({"span": span, "ratings": len(members),
                              "first": stamps[members[0]], "last": stamps[members[-1]]})
        if target != out_dir:
            if gfile.exists(out_dir):
                gfile.rmtree(out_dir)  # empty (checked above)
            gfile.rename(target, out_dir)
    except BaseException:
        if target != out_dir and gfile.exists(target):
            gfile.rmtree(target)
        raise
    return summaries


def _read_text(path: str, encoding: str) -> str:
    with _gfile().GFile(path, "rb") as f:
        return f.read().decode(encoding)
