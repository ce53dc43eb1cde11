"""Your own data: an interactions file (CSV or Parquet) and an optional items file, declared
by a `movierec-data.yaml` in the dataset's folder.

The declaration travels with the data, so every runner (local, Beam workers, Kubeflow
containers) that can read the folder also reads how to interpret it; no flag or config
field has to follow the data around. Its form (every key not marked optional is required;
unknown keys are refused, named as `section.key`):

    interactions:
      path: events.csv            # relative to this folder; .parquet for Parquet
      delimiter: ","              # optional (CSV): one character, e.g. "\\t" or ";"
      encoding: utf-8             # optional (CSV)
      columns:                    # your column names
        user: customer_id
        item: product_id
        rating: stars             # optional: without it the events are implicit
        timestamp: ts             # optional: integer seconds since the epoch or ISO 8601
        weight: clicks            # optional, implicit events only: a positive number
      rating_scale: {min: 1, max: 10, step: 1}   # required with a rating column
    items:                        # optional: without it an item's title is its ID
      path: products.csv
      delimiter: ","              # optional, as above
      encoding: utf-8             # optional
      columns: {item: product_id, title: name, genres: categories}   # title, genres optional
      genre_separator: "|"        # optional
      features: [brand, country]  # optional: free-form columns, each value the tag "brand=Acme"

Explicit data (a rating column): one record per event, every rating on the declared scale;
a second rating of the same (user, item) is a problem, as in MovieLens. Implicit data (no
rating column): repeated (user, item) events are one interaction whose weight is the sum of
the events' weights (1 each unless a weight column is declared) and whose timestamp is the
latest; records carry `rating=None` and that weight. Items' genres and free-form feature tags become the
record's `genres` (what the content model's features are built from).

Every problem names the file and the line (CSV: the line of the file, header = 1; Parquet:
the row number, first row = 1).
"""
from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import math
import posixpath
from typing import Callable, Iterator

from movierec.components.data import readers
from movierec.components.data.readers import DataError, Movie, Problem, RatingRecord, RatingScale, ReadReport

_ITEM_TAG_SEPARATOR = "="


@dataclasses.dataclass(frozen=True)
class TableSpec:
    """One declared file: its path (absolute, joined with the dataset folder) and columns."""

    path: str
    columns: dict            # role -> column name in the file
    delimiter: str = ","
    encoding: str = "utf-8"

    @property
    def parquet(self) -> bool:
        return self.path.lower().endswith((".parquet", ".pq"))


@dataclasses.dataclass(frozen=True)
class Declaration:
    """A parsed `movierec-data.yaml`."""

    path: str
    interactions: TableSpec
    rating_scale: RatingScale | None      # None: implicit events
    items: TableSpec | None = None
    genre_separator: str = "|"
    item_features: tuple[str, ...] = ()

    @property
    def implicit(self) -> bool:
        return self.rating_scale is None


_INTERACTION_ROLES = {"user": True, "item": True, "rating": False, "timestamp": False, "weight": False}
_ITEM_ROLES = {"item": True, "title": False, "genres": False}


def _mapping(value, where: str, path: str, allowed: dict, required: tuple = ()) -> dict:
    if not isinstance(value, dict):
        raise DataError([Problem(path, 0, f"{where} must be a mapping, got {type(value).__name__}")])
    unknown = sorted(set(value) - set(allowed))
    missing = [k for k in required if k not in value]
    problems = [Problem(path, 0, f"unknown key {where}.{k} (known: {', '.join(allowed)})") for k in unknown]
    problems += [Problem(path, 0, f"missing key {where}.{k}") for k in missing]
    for key, kind in allowed.items():
        if key in value and kind is not None and not isinstance(value[key], kind):
            problems.append(Problem(path, 0, f"{where}.{key} must be {_kind_name(kind)}, got {value[key]!r}"))
    if problems:
        raise DataError(problems, context=f"dataset declaration {path}")
    return value


def _kind_name(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", dict: "a mapping", list: "a list", int: "a number", float: "a number"}
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in kinds))


def _table(value, where: str, path: str, folder: str, roles: dict) -> TableSpec:
    extra = {"features": list} if where == "items" else {}
    extra.update({"genre_separator": str} if where == "items" else {})
    if where == "interactions":
        extra["rating_scale"] = dict
    spec = _mapping(value, where, path, {"path": str, "columns": dict, "delimiter": str, "encoding": str, **extra},
                    ("path", "columns"))
    columns = _mapping(spec["columns"], f"{where}.columns", path, {k: str for k in roles},
                       tuple(k for k, needed in roles.items() if needed))
    delimiter = spec.get("delimiter", ",")
    if len(delimiter) != 1:
        raise DataError([Problem(path, 0, f"{where}.delimiter must be one character, got {delimiter!r}")])
    encoding = spec.get("encoding", "utf-8")
    try:
        "".encode(encoding)
    except LookupError:
        raise DataError([Problem(path, 0, f"{where}.encoding {encoding!r} is not a known encoding")]) from None
    file_path = spec["path"] if "://" in spec["path"] or spec["path"].startswith("/") else posixpath.join(
        folder, spec["path"])
    return TableSpec(file_path, dict(columns), delimiter, encoding)


def load_declaration(data_dir: str) -> Declaration:
    """Reads and checks `<data_dir>/movierec-data.yaml`; DataError names every problem."""
    import yaml  # noqa: PLC0415

    path = posixpath.join(data_dir, readers.DECLARATION)
    with readers._gfile().GFile(path, "rb") as f:
        text = f.read()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise DataError([Problem(path, mark.line + 1 if mark else 0, f"not valid YAML: {e}")]) from None
    top = _mapping(raw if raw is not None else {}, "<top>", path, {"interactions": dict, "items": dict},
                   ("interactions",))
    interactions = _table(top["interactions"], "interactions", path, data_dir, _INTERACTION_ROLES)
    scale_spec = top["interactions"].get("rating_scale")
    has_rating = "rating" in interactions.columns
    if has_rating and scale_spec is None:
        raise DataError([Problem(path, 0, "interactions.columns.rating is set: declare interactions.rating_scale "
                                          "{min: ..., max: ..., step: ...}")])
    if not has_rating and scale_spec is not None:
        raise DataError([Problem(path, 0, "interactions.rating_scale is declared without a rating column "
                                          "(interactions.columns.rating)")])
    if has_rating and "weight" in interactions.columns:
        raise DataError([Problem(path, 0, "interactions.columns.weight applies to implicit events only: "
                                          "with ratings, each rating already says how much a user liked an item")])
    scale = None
    if scale_spec is not None:
        _mapping(scale_spec, "interactions.rating_scale", path, {"min": (int, float), "max": (int, float),
                                                               "step": (int, float)}, ("min", "max", "step"))
        low, high, step = (float(scale_spec[k]) for k in ("min", "max", "step"))
        if not (math.isfinite(low) and math.isfinite(high) and low < high and 0 < step <= high - low):
            raise DataError([Problem(path, 0, f"interactions.rating_scale {low:g}..{high:g} step {step:g}: "
                                              "expected min < max and 0 < step <= max - min")])
        scale = RatingScale(low, high, step)
    items, separator, item_features = None, "|", ()
    if "items" in top:
        items = _table(top["items"], "items", path, data_dir, _ITEM_ROLES)
        separator = top["items"].get("genre_separator", "|")
        item_features = tuple(top["items"].get("features", ()))
        bad = [c for c in item_features if not isinstance(c, str) or not c]
        if bad:
            raise DataError([Problem(path, 0, f"items.features must be column names, got {bad}")])
    return Declaration(path, interactions, scale, items, separator, item_features)


def _rows(spec: TableSpec, roles: list[str], problems: list[Problem]) -> Iterator[tuple[int, dict]]:
    """(line or row number, {role or column: text value}) of a declared file; `roles` are the
    keys to return (declared roles, then free-form column names mapped to themselves)."""
    wanted = {role: spec.columns.get(role, role) for role in roles}
    if spec.parquet:
        yield from _parquet_rows(spec, wanted, problems)
        return
    with readers._gfile().GFile(spec.path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8-sig" if spec.encoding.lower().replace("_", "-") in ("utf-8", "utf8")
                          else spec.encoding, errors="surrogateescape")
    except UnicodeDecodeError as e:  # codecs without surrogateescape support
        problems.append(Problem(spec.path, 0, f"not valid {spec.encoding}: {e.reason}"))
        return
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=spec.delimiter, strict=True)
    try:
        header = next(reader, None)
    except csv.Error as e:
        problems.append(Problem(spec.path, 1, f"malformed CSV header: {e}"))
        return
    if header is None:
        problems.append(Problem(spec.path, 1, f"empty file: expected a header with {', '.join(wanted.values())}"))
        return
    header = [h.strip() for h in header]
    missing = [c for c in wanted.values() if c not in header]
    if missing:
        problems.append(Problem(spec.path, 1, f"header has no column {', '.join(map(repr, missing))} "
                                              f"(columns: {', '.join(header)})"))
        return
    index = {key: header.index(column) for key, column in wanted.items()}
    for _, row in readers.csv_rows(reader, spec.path, problems):
        if len(row) != len(header):
            problems.append(Problem(spec.path, reader.line_num, f"expected {len(header)} fields, got {len(row)}"))
            continue
        if any(readers._SURROGATE_RE.search(field) for field in row):
            problems.append(Problem(spec.path, reader.line_num, f"not valid {spec.encoding}"))
            continue
        yield reader.line_num, {key: row[i].strip() for key, i in index.items()}


def _parquet_rows(spec: TableSpec, wanted: dict, problems: list[Problem]) -> Iterator[tuple[int, dict]]:
    """Parquet rows, read batch by batch from the file's bytes (read whole through tf.io.gfile:
    GFile objects lack the file API pyarrow's reader needs)."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    with readers._gfile().GFile(spec.path, "rb") as f:
        data = f.read()
    try:
        parquet = pq.ParquetFile(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as e:
        problems.append(Problem(spec.path, 0, f"not a Parquet file: {e}"))
        return
    names = parquet.schema_arrow.names
    missing = [c for c in wanted.values() if c not in names]
    if missing:
        problems.append(Problem(spec.path, 0, f"no column {', '.join(map(repr, missing))} "
                                              f"(columns: {', '.join(names)})"))
        return
    row_number = 0
    for batch in parquet.iter_batches(columns=list(dict.fromkeys(wanted.values()))):
        columns = {key: batch.column(batch.schema.get_field_index(col)).to_pylist() for key, col in wanted.items()}
        for i in range(batch.num_rows):
            row_number += 1
            yield row_number, {key: _text(values[i]) for key, values in columns.items()}


def _text(value) -> str | list | None:
    """A Parquet cell as the CSV reader would give it: text, a list of texts, or None."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [_text(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 2 ** 53 else repr(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


def read_items(data_dir: str, declaration: Declaration | None = None) -> tuple[dict[str, Movie] | None, list[Problem]]:
    """{item id: Movie} of the declared items file (None when none is declared)."""
    decl = declaration or load_declaration(data_dir)
    if decl.items is None:
        return None, []
    spec = decl.items
    problems: list[Problem] = []
    roles = [r for r in _ITEM_ROLES if r in spec.columns]
    items: dict[str, Movie] = {}
    for number, row in _rows(spec, roles + list(decl.item_features), problems):
        item_id = row["item"] or ""
        why = readers._check_id("item id", item_id)
        if why is None and item_id in items:
            why = f"duplicate item id {item_id!r}"
        if why:
            problems.append(Problem(spec.path, number, why))
            continue
        title = row.get("title") or item_id
        genres = row.get("genres") or []
        if isinstance(genres, str):
            genres = genres.split(decl.genre_separator)
        tags = []
        for column in decl.item_features:
            values = row[column] if isinstance(row[column], list) else [row[column]]
            tags += [f"{column}{_ITEM_TAG_SEPARATOR}{v}" for v in values if v not in (None, "")]
        items[item_id] = Movie(item_id, title, readers._genre_tuple([*genres, *tags]))
    return items, problems


def _timestamp(text: str) -> tuple[int | None, str | None]:
    """Integer seconds since the epoch, or an ISO 8601 date-time (UTC when no offset is given)."""
    try:
        value = int(text)
    except ValueError:
        try:
            when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None, f"timestamp {text!r} is neither integer seconds since the epoch nor ISO 8601"
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        value = int(when.timestamp())
    if value < 0:
        return None, f"timestamp {value} is negative"
    return value, None


def _number(kind: str, text: str) -> tuple[float | None, str | None]:
    try:
        value = float(text)
    except ValueError:
        return None, f"{kind} {text!r} is not a number"
    return value, None


def read_interactions(data_dir: str, max_bad_records: int, report: ReadReport,
                      on_problem: Callable[[Problem], None]) -> Iterator[RatingRecord]:
    """The records of a declared dataset (see the module docstring); called by
    `readers.read_ratings`, which owns the tolerance semantics."""
    decl = load_declaration(data_dir)
    items, problems = read_items(data_dir, decl)
    if len(problems) > max_bad_records:
        raise DataError(problems, context=f"items file of {data_dir}")
    report.movies = len(items) if items is not None else 0
    spec = decl.interactions
    roles = [r for r in _INTERACTION_ROLES if r in spec.columns]
    users: set[str] = set()
    seen: set[tuple[str, str]] = set()
    implicit: dict[tuple[str, str], list] = {}   # (user, item) -> [weight sum, latest timestamp]
    for number, row in _rows(spec, roles, problems):
        user_id, item_id = row["user"] or "", row["item"] or ""
        why = readers._check_id("user id", user_id) or readers._check_id("item id", item_id)
        rating = timestamp = weight = None
        if why is None and decl.rating_scale is not None:
            rating, why = _number("rating", row["rating"] or "")
            why = why or decl.rating_scale.check(rating)
        if why is None and "timestamp" in row:
            timestamp, why = _timestamp(row["timestamp"] or "")
        if why is None and "weight" in row:
            weight, why = _number("weight", row["weight"] or "")
            if why is None and not (math.isfinite(weight) and weight > 0):
                why = f"weight {weight:g} is not a positive finite number"
        if why is None and items is not None and item_id not in items:
            why = f"item id {item_id!r} is not in the items file"
        if why is None and decl.rating_scale is not None and (user_id, item_id) in seen:
            why = f"duplicate rating of item {item_id!r} by user {user_id!r}"
        if why:
            problems.append(Problem(spec.path, number, why))
            continue
        timestamp = timestamp or 0
        if decl.rating_scale is None:
            entry = implicit.setdefault((user_id, item_id), [0.0, 0])
            entry[0] += 1.0 if weight is None else weight
            entry[1] = max(entry[1], timestamp)
            continue
        seen.add((user_id, item_id))
        users.add(user_id)
        report.ratings += 1
        yield _record(user_id, item_id, rating, timestamp, items, None)
    for (user_id, item_id), (total, timestamp) in implicit.items():
        users.add(user_id)
        report.ratings += 1
        yield _record(user_id, item_id, None, timestamp, items, total)
    report.users = len(users)
    readers.finish_read(data_dir, spec.path, report, problems, max_bad_records, on_problem)


def _record(user_id, item_id, rating, timestamp, items, weight) -> RatingRecord:
    item = items.get(item_id) if items is not None else None
    title, genres = (item.title, item.genres) if item is not None else (item_id, ())
    return RatingRecord(user_id, item_id, rating, timestamp, title, genres, weight)
