"""MovieLens ratings as Arrow record batches: the ExampleGen's input, checked a chunk at a time.

`read_batches(data_dir)` yields `pa.RecordBatch`es of joined ratings with one column per raw
feature (`features.RAW_FEATURES` that the dataset has), each a list column as tfx_bsl's
tf.Example encoder takes it: user_id, movie_id, title list<binary> [1]; rating list<float32>
[1] (null: an implicit event, no rating); timestamp list<int64> [1]; genres list<binary>
[0..]; weight list<float32> [1] only when the dataset declares weights.

The ml-latest CSV layout (ml-20m/25m/32m/latest, and the synthetic generator's output) is read
vectorised: `ratings.csv` in chunks of about `CHUNK_BYTES`, each chunk split into lines and
fields by Arrow compute kernels, and every check of `readers.read_ratings` applied to whole
columns (field count, ID syntax, rating a number on the scale, timestamp a non-negative
integer, movie known, (user, movie) not seen before in the file). A line that fails a
vectorised check is checked again in Python, line by line, so the `Problem` names the file,
the line and the same reason `readers` gives; a chunk with quotes or bytes that are not
UTF-8 is split into fields by Python's csv module, line by line, for the same reason. The
tolerance (`max_bad_records`), the report and the DataError are those of `readers`.
Every other layout is read by `readers.read_ratings` and its records packed into batches.
"""
from __future__ import annotations

import csv
import logging
from typing import Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from movierec.components import features
from movierec.components.data import readers

CHUNK_BYTES = 64 << 20       # bytes of ratings.csv checked together
BATCH_ROWS = 65536           # ratings per yielded record batch
RATINGS_HEADER = ["userId", "movieId", "rating", "timestamp"]
_ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,64}$"                 # readers' ID rule, for RE2
_NUMBER_PATTERN = r"^-?\d{1,15}(\.\d{1,15})?$"              # what Arrow's cast parses; others: Python
_INT_PATTERN = r"^\d{1,18}$"                               # non-negative, fits int64


def _lists(values: pa.Array) -> pa.Array:
    """One value per row as a list column [n] of single-value lists."""
    return pa.ListArray.from_arrays(pa.array(np.arange(len(values) + 1, dtype=np.int32)), values)


def _optional_lists(values: list, arrow_type: pa.DataType) -> pa.Array | None:
    """Single-value lists where the value is not None, null lists (an example without the
    feature's values) where it is; None when every value is None (no column at all)."""
    present = [v is not None for v in values]
    if not any(present):
        return None
    if all(present):
        return _lists(pa.array(values, arrow_type))
    return pa.array([None if v is None else [v] for v in values], pa.list_(arrow_type))


def _genre_lists(genres: Iterable[tuple[str, ...]]) -> pa.Array:
    genres = list(genres)
    offsets = np.zeros(len(genres) + 1, np.int32)
    np.cumsum([len(g) for g in genres], out=offsets[1:])
    flat = pa.array([g for gs in genres for g in gs], pa.string()).cast(pa.binary())
    return pa.ListArray.from_arrays(pa.array(offsets), flat)


def records_to_batch(records: list[readers.RatingRecord]) -> pa.RecordBatch:
    """The record batch of `records` (see the module docstring for the columns; rating and
    weight columns only when some record has one)."""
    def binary(values: list[str]) -> pa.Array:
        return _lists(pa.array(values, pa.string()).cast(pa.binary()))

    columns = {
        features.USER_ID: binary([r.user_id for r in records]),
        features.MOVIE_ID: binary([r.movie_id for r in records]),
        features.RATING: _optional_lists([r.rating for r in records], pa.float32()),
        features.TIMESTAMP: _lists(pa.array(np.array([r.timestamp for r in records], np.int64))),
        features.TITLE: binary([r.title for r in records]),
        features.GENRES: _genre_lists(r.genres for r in records),
        features.WEIGHT: _optional_lists([r.weight for r in records], pa.float32()),
    }
    return pa.RecordBatch.from_pydict({k: v for k, v in columns.items() if v is not None})


def batches_of_records(records: Iterable[readers.RatingRecord], rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """`records` packed into record batches of at most `rows`."""
    pending: list[readers.RatingRecord] = []
    for record in records:
        pending.append(record)
        if len(pending) == rows:
            yield records_to_batch(pending)
            pending = []
    if pending:
        yield records_to_batch(pending)


class _MovieTable:
    """The movie file as Arrow columns, to join ratings to by index."""

    def __init__(self, movies: dict[str, readers.Movie]):
        self.ids = pa.array(list(movies), pa.string())
        self.titles = pa.array([m.title for m in movies.values()], pa.string()).cast(pa.binary())
        self.genres = _genre_lists(m.genres for m in movies.values())


def _why(fields: list[str], scale: readers.RatingScale) -> str | None:
    """Why one ratings line's fields are invalid (None if they are not), in readers' words."""
    if len(fields) != 4:
        return f"expected 4 fields (user, movie, rating, timestamp), got {len(fields)}"
    user_id, movie_id, rating_text, ts_text = (f.strip() for f in fields)
    why = readers._check_id("user id", user_id) or readers._check_id("movie id", movie_id)  # noqa: SLF001
    if why:
        return why
    try:
        rating = float(rating_text)
    except ValueError:
        return f"rating {rating_text!r} is not a number"
    why = scale.check(rating)
    if why:
        return why
    try:
        timestamp = int(ts_text)
    except ValueError:
        return f"timestamp {ts_text!r} is not an integer"
    if timestamp < 0:
        return f"timestamp {timestamp} is negative"
    if timestamp >= 1 << 63:
        return f"timestamp {timestamp} does not fit in 64 bits"
    return None


class _CsvChecker:
    """The state of one ratings.csv read: movies, IDs seen, (user, movie) pairs seen."""

    def __init__(self, path: str, movies: _MovieTable, scale: readers.RatingScale, problems: list[readers.Problem]):
        self.path, self.movies, self.scale, self.problems = path, movies, scale, problems
        self.user_codes: dict[str, int] = {}
        self.seen: list[np.ndarray] = []       # sorted pair keys of earlier chunks
        self.ratings = 0

    def lines_fast(self, chunk: bytes) -> tuple[pa.Array, np.ndarray] | None:
        """(lines without their newline, 0-based line index within the chunk), or None when
        the chunk needs the line-by-line path (quotes, or not UTF-8)."""
        if b'"' in chunk:
            return None
        try:
            chunk.decode("utf-8")
        except UnicodeDecodeError:
            return None
        ends = np.flatnonzero(np.frombuffer(chunk, np.uint8) == 10) + 1
        offsets = np.concatenate([[0], ends, [len(chunk)] if not len(ends) or ends[-1] != len(chunk) else []])
        lines = pa.StringArray.from_buffers(len(offsets) - 1, pa.py_buffer(offsets.astype(np.int32)),
                                            pa.py_buffer(chunk))
        lines = pc.utf8_rtrim(lines, characters="\r\n")
        return lines, np.arange(len(lines))

    def check(self, first_line: int, chunk: bytes) -> pa.RecordBatch | None:
        """The valid ratings of `chunk` (whole lines; its first is line `first_line`)."""
        fast = self.lines_fast(chunk)
        if fast is not None:
            lines, index = fast
            keep = pc.not_equal(pc.utf8_length(lines), 0)
            lines, index = lines.filter(keep), index[keep.to_numpy(zero_copy_only=False)]
            parts = pc.split_pattern(lines, ",")
            counts = pc.list_value_length(parts).to_numpy(zero_copy_only=False)
            four = counts == 4
            flat = pc.list_flatten(parts.filter(pa.array(four)))
            columns = [pc.utf8_trim_whitespace(flat.take(pa.array(np.arange(i, len(flat), 4)))) for i in range(4)]
            bad_rows = [(first_line + i, parts[int(j)].as_py()) for j, i in zip(np.flatnonzero(~four), index[~four])]
            numbers = first_line + index[four]
        else:
            numbers_list, fields_list, bad_rows = [], [], []
            for i, raw in enumerate(chunk.split(b"\n")):
                number = first_line + i
                text = raw.decode("utf-8", errors="surrogateescape").rstrip("\r\n")
                if not text:
                    continue
                try:
                    row = next(csv.reader([text], strict=True))
                except csv.Error as e:
                    self.problems.append(readers.Problem(self.path, number, f"malformed CSV: {e}"))
                    continue
                if any(readers._SURROGATE_RE.search(f) for f in row):  # noqa: SLF001
                    self.problems.append(readers.Problem(self.path, number, "not valid UTF-8"))
                elif len(row) != 4:
                    bad_rows.append((number, row))
                elif row:
                    numbers_list.append(number)
                    fields_list.append([f.strip() for f in row])
            numbers = np.array(numbers_list, np.int64)
            columns = [pa.array([f[i] for f in fields_list], pa.string()) for i in range(4)]
        for number, row in bad_rows:
            self.problems.append(readers.Problem(self.path, number, _why(row, self.scale)))
        return self._check_columns(numbers, *columns)

    def _check_columns(self, numbers: np.ndarray, users: pa.Array, movies: pa.Array, ratings: pa.Array,
                       stamps: pa.Array) -> pa.RecordBatch | None:
        """The valid rows of one chunk's 4-field lines (fields trimmed), as a record batch."""
        def ok(mask) -> np.ndarray:
            return pc.fill_null(mask, False).to_numpy(zero_copy_only=False).astype(bool)

        good = (ok(pc.match_substring_regex(users, _ID_PATTERN)) & ok(pc.match_substring_regex(movies, _ID_PATTERN))
                & ok(pc.match_substring_regex(ratings, _NUMBER_PATTERN)) & ok(pc.match_substring_regex(stamps, _INT_PATTERN)))
        value = np.full(len(numbers), np.nan)
        stamp = np.zeros(len(numbers), np.int64)
        mask = pa.array(good)
        value[good] = pc.cast(ratings.filter(mask), pa.float64()).to_numpy(zero_copy_only=False)
        stamp[good] = pc.cast(stamps.filter(mask), pa.int64()).to_numpy(zero_copy_only=False)
        s = self.scale
        steps = (value - s.low) / s.step
        good &= (value >= s.low) & (value <= s.high) & (np.abs(steps - np.round(steps)) <= 1e-6)
        # a line failing a vectorised check is checked again in Python, in readers' words
        for j in np.flatnonzero(~good):
            fields = [users[j].as_py(), movies[j].as_py(), ratings[j].as_py(), stamps[j].as_py()]
            why = _why(fields, s)
            if why is None:          # valid after all (e.g. "+4", "4.", " 1e0"): Python's parse
                good[j], value[j], stamp[j] = True, float(fields[2]), int(fields[3])
            else:
                self.problems.append(readers.Problem(self.path, int(numbers[j]), why))
        found = pc.index_in(movies, value_set=self.movies.ids)
        known = ok(found.is_valid())
        movie_index = pc.fill_null(found, 0).to_numpy(zero_copy_only=False).astype(np.int64)
        for j in np.flatnonzero(good & ~known):
            self.problems.append(readers.Problem(self.path, int(numbers[j]),
                                                 f"movie id {movies[j].as_py()!r} is not in the movie file"))
        good &= known
        rows = np.flatnonzero(good)
        user_col = users.take(pa.array(rows))
        encoded = pc.dictionary_encode(user_col)
        codes = np.array([self.user_codes.setdefault(u, len(self.user_codes))
                          for u in encoded.dictionary.to_pylist()], np.int64)
        user_idx = codes[encoded.indices.to_numpy(zero_copy_only=False)] if len(rows) else np.zeros(0, np.int64)
        keys = user_idx * (len(self.movies.ids) + 1) + movie_index[rows]
        _, first = np.unique(keys, return_index=True)
        repeat = np.ones(len(keys), bool)
        repeat[first] = False                       # a later line of a pair seen earlier in this chunk
        for earlier in self.seen:                   # or in an earlier chunk
            if len(earlier):
                pos = np.minimum(np.searchsorted(earlier, keys), len(earlier) - 1)
                repeat |= earlier[pos] == keys
        for j in np.flatnonzero(repeat):
            self.problems.append(readers.Problem(
                self.path, int(numbers[rows[j]]),
                f"duplicate rating of movie {movies[int(rows[j])].as_py()!r} by user {user_col[int(j)].as_py()!r}"))
        rows = rows[~repeat]
        self.seen.append(np.sort(keys[~repeat]))
        self.ratings += len(rows)
        if not len(rows):
            return None
        take, movie_take = pa.array(rows), pa.array(movie_index[rows])
        return pa.RecordBatch.from_pydict({
            features.USER_ID: _lists(users.take(take).cast(pa.binary())),
            features.MOVIE_ID: _lists(movies.take(take).cast(pa.binary())),
            features.RATING: _lists(pa.array(value[rows].astype(np.float32))),
            features.TIMESTAMP: _lists(pa.array(stamp[rows])),
            features.TITLE: _lists(self.movies.titles.take(movie_take)),
            features.GENRES: self.movies.genres.take(movie_take),
        })


def _chunks(path: str, chunk_bytes: int) -> Iterator[tuple[int, bytes]]:
    """(number of the chunk's first line, whole lines of the file) in about `chunk_bytes`."""
    line, rest = 1, b""
    with readers._gfile().GFile(path, "rb") as f:  # noqa: SLF001
        while True:
            data = f.read(chunk_bytes)
            if not data:
                break
            data = rest + data
            cut = data.rfind(b"\n")
            if cut < 0:
                rest = data
                continue
            body, rest = data[:cut + 1], data[cut + 1:]
            yield line, body
            line += body.count(b"\n")
    if rest:
        yield line, rest


def _read_csv_layout(data_dir: str, max_bad_records: int, report: readers.ReadReport,
                     on_problem: Callable[[readers.Problem], None], rows: int, chunk_bytes: int) -> Iterator[pa.RecordBatch]:
    scale = readers.SCALES[readers.ML_LATEST]
    movies, problems = readers.read_movies(data_dir, readers.ML_LATEST)
    if len(problems) > max_bad_records:
        raise readers.DataError(problems, context=f"movie file of {data_dir}")
    report.movies = len(movies)
    path = readers._join(data_dir, "ratings.csv")  # noqa: SLF001
    checker = _CsvChecker(path, _MovieTable(movies), scale, problems)
    header_done = False
    for first_line, chunk in _chunks(path, chunk_bytes):
        if not header_done:
            header_done = True
            end = chunk.find(b"\n")
            head = chunk[:end if end >= 0 else len(chunk)]
            if head.startswith(b"\xef\xbb\xbf"):
                head = head[3:]
            text = head.decode("utf-8", errors="replace").rstrip("\r")
            try:
                fields = next(csv.reader([text]), [])
            except csv.Error as e:
                problems.append(readers.Problem(path, 1, f"malformed CSV header: {e}"))
                break
            if [h.strip() for h in fields] != RATINGS_HEADER:
                problems.append(readers.Problem(path, 1, f"expected header {','.join(RATINGS_HEADER)!r}, "
                                                         f"got {','.join(fields)!r}"))
                break
            if end < 0:
                break
            chunk, first_line = chunk[end + 1:], 2
        batch = checker.check(first_line, chunk)
        if batch is not None:
            for start in range(0, batch.num_rows, rows):
                yield batch.slice(start, rows)
    if not header_done:
        problems.append(readers.Problem(path, 1, "empty file: expected a header " + ",".join(RATINGS_HEADER)))
    problems.sort(key=lambda p: p.line)
    report.ratings = checker.ratings
    report.users = len(checker.user_codes)
    readers.finish_read(data_dir, path, report, problems, max_bad_records, on_problem)


def read_batches(data_dir: str, max_bad_records: int = 0, report: readers.ReadReport | None = None,
                 on_problem: Callable[[readers.Problem], None] | None = None, rows: int = BATCH_ROWS,
                 chunk_bytes: int = CHUNK_BYTES) -> Iterator[pa.RecordBatch]:
    """Every valid rating of `data_dir` joined with its movie, as record batches of at most
    `rows` ratings; problems, tolerance, report and DataError as in `readers.read_ratings`."""
    if max_bad_records < 0:
        raise ValueError(f"max_bad_records must be >= 0, got {max_bad_records}")
    report = report if report is not None else readers.ReadReport()
    on_problem = on_problem or (lambda p: logging.warning("skipping invalid record: %s", p))
    data_format = readers.detect_format(data_dir)
    if data_format != readers.ML_LATEST:
        yield from batches_of_records(readers.read_ratings(data_dir, max_bad_records, report, on_problem), rows)
        return
    report.data_format = data_format
    yield from _read_csv_layout(data_dir, max_bad_records, report, on_problem, rows, chunk_bytes)


def check_dataset(data_dir: str, max_bad_records: int = 0) -> readers.ReadReport:
    """`readers.check_dataset` over the vectorised read: the whole dataset read once, its
    report returned, or DataError raised."""
    report = readers.ReadReport()
    for _ in read_batches(data_dir, max_bad_records, report, on_problem=lambda p: None):
        pass
    return report
