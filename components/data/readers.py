"""Readers for MovieLens files and declared datasets, with checks that name the file and
line of every problem.

Layouts (detected from the file names in a directory, `detect_format`):

* `ml-100k`: `u.data` (tab separated `user item rating timestamp`), `u.item` (latin-1,
  `id|title|release|video release|url|<19 genre flags>`) and `u.genre` (`name|index`).
  Whole stars, 1 to 5.
* `ml-1m`: `ratings.dat` (`UserID::MovieID::Rating::Timestamp`), `movies.dat`
  (`MovieID::Title::Genres`, latin-1, genres separated by `|`) and `users.dat` (demographics,
  not used; its presence is what tells ml-1m from ml-10m). Whole stars, 1 to 5.
* `ml-10m` (the `ml-10M100K` archive): `ratings.dat` and `movies.dat` as in ml-1m but UTF-8,
  half stars 0.5 to 5, `tags.dat` (not used) and no `users.dat`.
* `ml-latest`: the CSV layout of ml-20m, ml-25m, ml-32m, ml-latest and ml-latest-small (and
  of the synthetic generator): `ratings.csv` (`userId,movieId,rating,timestamp`) and
  `movies.csv` (`movieId,title,genres`, UTF-8, titles quoted when they hold commas or quotes).
  Half stars, 0.5 to 5. `links.csv`, `tags.csv` and `genome-*.csv` are not used.
* `interactions`: any dataset described by a `movierec-data.yaml` in its folder (CSV or
  Parquet events with or without ratings, see `components/data/interactions.py`). The
  declaration wins over file-name detection.

Genre names are read in one spelling across versions (`features.GENRE_SPELLINGS`:
ml-100k/ml-1m's "Children's" is today's "Children") and "no genre" labels ("unknown",
"(no genres listed)") become an empty genre list.

`read_ratings(data_dir)` yields one joined `RatingRecord` per valid rating (or implicit
event). Every invalid line (malformed, rating outside the declared scale, unknown movie,
duplicate (user, movie), bad ID) becomes a `Problem`; when more than `max_bad_records`
problems are found a `DataError` is raised listing them. Problems within the tolerance are
still reported (logged, and counted in `ReadReport`): nothing is dropped silently.

Files are read through `tf.io.gfile`, so `data_dir` may be local or on any filesystem
TensorFlow has registered (gs://, s3://, ...); TensorFlow is imported on first read.
"""
from __future__ import annotations

import csv
import dataclasses
import logging
import math
import os
import posixpath
import re
from typing import Callable, Iterator

from movierec.components import features

ML_100K = "ml-100k"
ML_1M = "ml-1m"
ML_10M = "ml-10m"
ML_LATEST = "ml-latest"          # ml-20m, ml-25m, ml-32m, ml-latest, ml-latest-small
INTERACTIONS = "interactions"    # a folder with a movierec-data.yaml declaration
FORMATS = (ML_100K, ML_1M, ML_10M, ML_LATEST, INTERACTIONS)
DECLARATION = "movierec-data.yaml"

# The `::`-separated layouts: their encoding (movie titles) and the file that tells them apart.
_DAT_ENCODING = {ML_1M: "latin-1", ML_10M: "utf-8"}

_ID_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
_MAX_PROBLEMS_IN_MESSAGE = 20
_SURROGATE_RE = re.compile("[\udc80-\udcff]")


class _LocalFiles:
    """The part of `tf.io.gfile` the readers use, for local paths, where TensorFlow is not
    installed (the peers benchmark's environment reads MovieLens through these readers)."""

    GFile = staticmethod(open)
    isdir = staticmethod(os.path.isdir)
    exists = staticmethod(os.path.exists)
    listdir = staticmethod(os.listdir)


def _gfile():
    """tf.io.gfile, so that gs:// and s3:// folders read like local ones; without TensorFlow,
    local paths only."""
    try:
        import tensorflow as tf  # noqa: PLC0415  (lazy: `movierec data` commands start without TF)
    except ImportError:
        return _LocalFiles
    return tf.io.gfile


def _join(folder: str, name: str) -> str:
    return posixpath.join(folder, name)


@dataclasses.dataclass(frozen=True)
class RatingScale:
    """The declared rating scale of a dataset: min..max in steps of `step`."""

    low: float
    high: float
    step: float

    def check(self, value: float) -> str | None:
        """Returns why `value` is not on this scale, or None when it is."""
        if math.isnan(value) or math.isinf(value):
            return f"rating {value} is not a finite number"
        if not self.low <= value <= self.high:
            return f"rating {value:g} is outside the scale {self.low:g}..{self.high:g}"
        steps = (value - self.low) / self.step
        if abs(steps - round(steps)) > 1e-6:
            return f"rating {value:g} is not a multiple of {self.step:g} from {self.low:g}"
        return None


SCALES = {
    ML_100K: RatingScale(1.0, 5.0, 1.0),
    ML_1M: RatingScale(1.0, 5.0, 1.0),
    ML_10M: RatingScale(0.5, 5.0, 0.5),
    ML_LATEST: RatingScale(0.5, 5.0, 0.5),
}


@dataclasses.dataclass(frozen=True)
class Problem:
    """One invalid input line."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


class DataError(ValueError):
    """Input data that cannot be used; the message lists the problems by file and line."""

    def __init__(self, problems: list[Problem], total: int | None = None, context: str = ""):
        self.problems = list(problems)
        self.total = len(self.problems) if total is None else total
        shown = "\n".join(f"  {p}" for p in self.problems[:_MAX_PROBLEMS_IN_MESSAGE])
        more = self.total - min(len(self.problems), _MAX_PROBLEMS_IN_MESSAGE)
        tail = f"\n  ... and {more} more" if more > 0 else ""
        head = f"{context}: " if context else ""
        super().__init__(f"{head}{self.total} invalid input record(s):\n{shown}{tail}")


@dataclasses.dataclass(frozen=True)
class Movie:
    movie_id: str
    title: str
    genres: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class RatingRecord:
    """One rating (or implicit event) joined with its movie's metadata: the pipeline's input
    record. `rating` is None for implicit events; `weight` is None unless the dataset
    declares per-event weights (read as 1)."""

    user_id: str
    movie_id: str
    rating: float | None
    timestamp: int
    title: str
    genres: tuple[str, ...]
    weight: float | None = None

    def as_feature_dict(self) -> dict:
        """{raw feature name: value}; a None value means the feature is absent from the
        example (rating of an implicit event, weight of a dataset without weights)."""
        return {
            features.USER_ID: self.user_id,
            features.MOVIE_ID: self.movie_id,
            features.RATING: self.rating,
            features.TIMESTAMP: self.timestamp,
            features.TITLE: self.title,
            features.GENRES: self.genres,
            features.WEIGHT: self.weight,
        }


@dataclasses.dataclass
class ReadReport:
    """What a read saw: counts and every problem (kept within the tolerance)."""

    data_format: str = ""
    ratings: int = 0               # records yielded (ratings, or implicit (user, item) pairs)
    movies: int = 0
    users: int = 0
    problems: list[Problem] = dataclasses.field(default_factory=list)


def detect_format(data_dir: str) -> str:
    """The layout of `data_dir` (one of `FORMATS`) from the files present in it."""
    gfile = _gfile()
    if not gfile.isdir(data_dir):
        raise FileNotFoundError(f"data directory {data_dir!r} does not exist")
    names = {name.rstrip("/") for name in gfile.listdir(data_dir)}
    if DECLARATION in names:
        return INTERACTIONS
    if {"u.data", "u.item"} <= names:
        return ML_100K
    if {"ratings.dat", "movies.dat"} <= names:
        return ML_1M if "users.dat" in names else ML_10M
    if {"ratings.csv", "movies.csv"} <= names:
        return ML_LATEST
    found = sorted(names & {"u.data", "u.item", "ratings.dat", "movies.dat", "ratings.csv", "movies.csv"})
    seen = f"; found only {', '.join(found)}" if found else ""
    raise DataError(
        [Problem(data_dir, 0, "no MovieLens files: expected u.data + u.item (ml-100k), "
                              "ratings.dat + movies.dat (+ users.dat: ml-1m; without: ml-10m), "
                              f"ratings.csv + movies.csv (ml-20m/25m/32m/latest) or {DECLARATION}{seen}")])


def rating_scale(data_dir: str, data_format: str | None = None) -> RatingScale | None:
    """The declared rating scale of the dataset in `data_dir`; None for implicit events."""
    data_format = data_format or detect_format(data_dir)
    if data_format == INTERACTIONS:
        from movierec.components.data import interactions  # noqa: PLC0415  (imports this module)
        return interactions.load_declaration(data_dir).rating_scale
    return SCALES[data_format]


def _check_id(kind: str, value: str) -> str | None:
    if not _ID_RE.match(value):
        return (f"{kind} {value!r} is not a valid ID (1-64 characters from "
                "letters, digits, '_', '.', ':' and '-')")
    return None


def _lines(path: str, encoding: str, problems: list[Problem]) -> Iterator[tuple[int, str]]:
    """Yields (line number, line without its newline); undecodable bytes become a Problem."""
    with _gfile().GFile(path, "rb") as f:
        for number, raw in enumerate(_byte_lines(f), start=1):
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError as e:
                problems.append(Problem(path, number, f"not valid {encoding}: {e.reason} "
                                                      f"at byte {e.start}"))
                continue
            yield number, text.rstrip("\r\n")


def _byte_lines(f, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """The lines of binary file `f` split on b"\\n", as iterating a local file gives them;
    read in large chunks (GFile's own line iteration makes a Python call per line)."""
    rest = b""
    while True:
        chunk = f.read(chunk_size)
        if not chunk:
            break
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        for line in lines:
            yield line + b"\n"
    if rest:
        yield rest


def read_movies(data_dir: str, data_format: str | None = None) -> tuple[dict[str, Movie], list[Problem]]:
    """Reads the movie file of `data_dir`: {movie_id: Movie} and the problems found."""
    data_format = data_format or detect_format(data_dir)
    if data_format == ML_100K:
        return _read_movies_100k(data_dir)
    if data_format in _DAT_ENCODING:
        return _read_movies_dat(_join(data_dir, "movies.dat"), _DAT_ENCODING[data_format])
    if data_format == ML_LATEST:
        return _read_movies_csv(_join(data_dir, "movies.csv"))
    if data_format == INTERACTIONS:
        from movierec.components.data import interactions  # noqa: PLC0415  (imports this module)
        return interactions.read_items(data_dir)
    raise ValueError(f"unknown data format {data_format!r}; expected one of {FORMATS}")


def _read_genre_names_100k(data_dir: str, problems: list[Problem]) -> list[str]:
    path = _join(data_dir, "u.genre")
    if not _gfile().exists(path):
        # u.genre is part of every ml-100k release; these are its contents in order.
        return ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                "Romance", "Sci-Fi", "Thriller", "War", "Western"]
    names: dict[int, str] = {}
    for number, line in _lines(path, "latin-1", problems):
        if not line.strip():
            continue
        parts = line.split("|")
        if len(parts) != 2 or not parts[1].isdigit():
            problems.append(Problem(path, number, f"expected 'name|index', got {line!r}"))
            continue
        names[int(parts[1])] = parts[0]
    if sorted(names) != list(range(len(names))):
        problems.append(Problem(path, 0, f"genre indices {sorted(names)} are not 0..{len(names) - 1}"))
    return [names[i] for i in sorted(names)]


def _genre_tuple(names) -> tuple[str, ...]:
    """Genre names in their one spelling, "no genre" labels and repeats left out."""
    out: list[str] = []
    for name in names:
        name = features.GENRE_SPELLINGS.get(name.strip(), name.strip())
        if name and name not in features.NO_GENRE_LABELS and name not in out:
            out.append(name)
    return tuple(out)


def _read_movies_dat(path: str, encoding: str) -> tuple[dict[str, Movie], list[Problem]]:
    """`MovieID::Title::Genres` lines (ml-1m: latin-1; ml-10m: UTF-8)."""
    problems: list[Problem] = []
    movies: dict[str, Movie] = {}
    for number, line in _lines(path, encoding, problems):
        if not line.strip():
            continue
        parts = line.split("::")
        if len(parts) != 3:
            problems.append(Problem(path, number, f"expected 3 '::'-separated fields (MovieID::Title::Genres), "
                                                  f"got {len(parts)}"))
            continue
        movie_id, title, genres = (p.strip() for p in parts)
        _add_movie(movies, problems, path, number, movie_id, title, genres, title_required=True)
    return movies, problems


def _add_movie(movies: dict[str, Movie], problems: list[Problem], path: str, number: int, movie_id: str,
               title: str, genres: str, title_required: bool = False) -> None:
    """Adds line `number`'s movie (genres `|`-separated) to `movies`, or its problem (a bad or
    repeated ID, an empty title where one is required) to `problems`."""
    why = _check_id("movie id", movie_id)
    if why is None and title_required and not title:
        why = "empty title"
    if why is None and movie_id in movies:
        why = f"duplicate movie id {movie_id!r}"
    if why:
        problems.append(Problem(path, number, why))
    else:
        movies[movie_id] = Movie(movie_id, title, _genre_tuple(genres.split("|")))


def _read_movies_100k(data_dir: str) -> tuple[dict[str, Movie], list[Problem]]:
    problems: list[Problem] = []
    genre_names = _read_genre_names_100k(data_dir, problems)
    path = _join(data_dir, "u.item")
    movies: dict[str, Movie] = {}
    expected = 5 + len(genre_names)
    for number, line in _lines(path, "latin-1", problems):
        if not line.strip():
            continue
        parts = line.split("|")
        if len(parts) != expected:
            problems.append(Problem(path, number, f"expected {expected} '|'-separated fields, "
                                                  f"got {len(parts)}"))
            continue
        movie_id, title, flags = parts[0], parts[1], parts[5:]
        why = _check_id("movie id", movie_id)
        if why is None and any(f not in ("0", "1") for f in flags):
            why = f"genre flags must be 0 or 1, got {flags}"
        if why is None and movie_id in movies:
            why = f"duplicate movie id {movie_id!r}"
        if why:
            problems.append(Problem(path, number, why))
            continue
        genres = _genre_tuple(name for name, flag in zip(genre_names, flags) if flag == "1")
        movies[movie_id] = Movie(movie_id, title, genres)
    return movies, problems


def _read_csv_rows(path: str, header: list[str], problems: list[Problem]) -> Iterator[tuple[int, list[str]]]:
    """Yields (line number, fields) of a UTF-8 CSV file after checking its header."""
    with _gfile().GFile(path, "rb") as f:
        # surrogateescape keeps undecodable bytes visible so each bad line is reported.
        text = f.read().decode("utf-8-sig", errors="surrogateescape")
    reader = csv.reader(text.splitlines(keepends=True), strict=True)
    try:
        first = next(reader, None)
    except csv.Error as e:
        problems.append(Problem(path, 1, f"malformed CSV header: {e}"))
        return
    if first is None:
        problems.append(Problem(path, 1, "empty file: expected a header " + ",".join(header)))
        return
    if [h.strip() for h in first] != header:
        problems.append(Problem(path, 1, f"expected header {','.join(header)!r}, got {','.join(first)!r}"))
        return
    for number, row in csv_rows(reader, path, problems):
        if any(_SURROGATE_RE.search(field) for field in row):
            problems.append(Problem(path, number, "not valid UTF-8"))
            continue
        yield number, row


def csv_rows(reader, path: str, problems: list[Problem]) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each non-empty row a csv.reader gives; a malformed row is a
    problem on its line, and reading goes on."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            problems.append(Problem(path, reader.line_num, f"malformed CSV: {e}"))
            continue
        if row and row != [""]:
            yield reader.line_num, row


def _read_movies_csv(path: str) -> tuple[dict[str, Movie], list[Problem]]:
    problems: list[Problem] = []
    movies: dict[str, Movie] = {}
    for number, row in _read_csv_rows(path, ["movieId", "title", "genres"], problems):
        if len(row) != 3:
            problems.append(Problem(path, number, f"expected 3 fields, got {len(row)}"))
            continue
        movie_id, title, genres = row
        _add_movie(movies, problems, path, number, movie_id, title, genres)
    return movies, problems


def _parse_rating_fields(fields: list[str], scale: RatingScale) -> tuple[tuple | None, str | None]:
    """(user_id, movie_id, rating, timestamp) or why the fields are invalid."""
    if len(fields) != 4:
        return None, f"expected 4 fields (user, movie, rating, timestamp), got {len(fields)}"
    user_id, movie_id, rating_text, ts_text = (f.strip() for f in fields)
    why = _check_id("user id", user_id) or _check_id("movie id", movie_id)
    if why:
        return None, why
    try:
        rating = float(rating_text)
    except ValueError:
        return None, f"rating {rating_text!r} is not a number"
    why = scale.check(rating)
    if why:
        return None, why
    try:
        timestamp = int(ts_text)
    except ValueError:
        return None, f"timestamp {ts_text!r} is not an integer"
    if timestamp < 0:
        return None, f"timestamp {timestamp} is negative"
    return (user_id, movie_id, rating, timestamp), None


def _rating_rows(data_dir: str, data_format: str, problems: list[Problem]) -> tuple[str, Iterator[tuple[int, list[str]]]]:
    if data_format == ML_100K:
        path = _join(data_dir, "u.data")
        return path, ((n, line.split("\t")) for n, line in _lines(path, "latin-1", problems) if line.strip())
    if data_format in _DAT_ENCODING:
        path = _join(data_dir, "ratings.dat")
        return path, ((n, line.split("::")) for n, line in _lines(path, _DAT_ENCODING[data_format], problems)
                      if line.strip())
    path = _join(data_dir, "ratings.csv")
    return path, _read_csv_rows(path, ["userId", "movieId", "rating", "timestamp"], problems)


def read_ratings(
    data_dir: str,
    max_bad_records: int = 0,
    report: ReadReport | None = None,
    on_problem: Callable[[Problem], None] | None = None,
) -> Iterator[RatingRecord]:
    """Yields every valid rating of `data_dir` joined with its movie.

    Raises DataError (before the first record when the movie file is bad, otherwise when
    the ratings end) if more than `max_bad_records` problems were found. Problems within
    the tolerance are passed to `on_problem` (default: logged as warnings) and kept in
    `report.problems`.
    """
    if max_bad_records < 0:
        raise ValueError(f"max_bad_records must be >= 0, got {max_bad_records}")
    report = report if report is not None else ReadReport()
    on_problem = on_problem or (lambda p: logging.warning("skipping invalid record: %s", p))
    data_format = detect_format(data_dir)
    report.data_format = data_format
    if data_format == INTERACTIONS:
        from movierec.components.data import interactions  # noqa: PLC0415  (imports this module)
        yield from interactions.read_interactions(data_dir, max_bad_records, report, on_problem)
        return
    scale = SCALES[data_format]
    movies, problems = read_movies(data_dir, data_format)
    if len(problems) > max_bad_records:
        raise DataError(problems, context=f"movie file of {data_dir}")
    report.movies = len(movies)

    path, rows = _rating_rows(data_dir, data_format, problems)
    seen: set[tuple[str, str]] = set()
    users: set[str] = set()
    for number, fields in rows:
        parsed, why = _parse_rating_fields(fields, scale)
        if parsed is not None:
            user_id, movie_id, rating, timestamp = parsed
            movie = movies.get(movie_id)
            if movie is None:
                why = f"movie id {movie_id!r} is not in the movie file"
            elif (user_id, movie_id) in seen:
                why = f"duplicate rating of movie {movie_id!r} by user {user_id!r}"
        if why:
            # Keep reading past the tolerance so the error reports the full count.
            problems.append(Problem(path, number, why))
            continue
        seen.add((user_id, movie_id))
        users.add(user_id)
        report.ratings += 1
        yield RatingRecord(user_id, movie_id, rating, timestamp, movie.title, movie.genres)

    report.users = len(users)
    finish_read(data_dir, path, report, problems, max_bad_records, on_problem)


def finish_read(data_dir: str, path: str, report: ReadReport, problems: list[Problem], max_bad_records: int,
                on_problem: Callable[[Problem], None]) -> None:
    """The end of every read: raises DataError past the tolerance (or with nothing read),
    else hands each problem to `on_problem` and keeps them in `report.problems`."""
    report.problems = problems
    if report.ratings == 0 and not problems:
        problems.append(Problem(path, 0, "no ratings"))
    if len(problems) > max_bad_records or report.ratings == 0:
        raise DataError(problems, context=f"{data_dir} (tolerance --max-bad-records={max_bad_records})")
    for problem in problems:
        on_problem(problem)


def check_dataset(data_dir: str, max_bad_records: int = 0) -> ReadReport:
    """Reads the whole dataset once; returns its report or raises DataError."""
    report = ReadReport()
    for _ in read_ratings(data_dir, max_bad_records, report, on_problem=lambda p: None):
        pass
    return report
