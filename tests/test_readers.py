"""Readers: both MovieLens layouts, and every kind of bad line named by file and line."""
import os

import pytest

from movierec.components.data import readers
from tests.conftest import write

GENRES_100K = "unknown|0\nAction|1\nComedy|2\n"


def ml100k(tmp_path, data: str, items: str = None) -> str:
    d = str(tmp_path / "ml")
    write(os.path.join(d, "u.genre"), GENRES_100K)
    write(os.path.join(d, "u.item"), items if items is not None else
          "1|Toy Story (1995)|01-Jan-1995||url|0|0|1\n"
          "2|GoldenEye (1995)|01-Jan-1995||url|0|1|0\n"
          "3|Mystery Film|01-Jan-1995||url|1|0|0\n")
    write(os.path.join(d, "u.data"), data)
    return d


def mllatest(tmp_path, ratings: str, movies: str = None) -> str:
    d = str(tmp_path / "mll")
    write(os.path.join(d, "movies.csv"), movies if movies is not None else
          'movieId,title,genres\n10,"Heat, The (1995)",Action|Crime\n20,Nothing (2000),(no genres listed)\n')
    write(os.path.join(d, "ratings.csv"), ratings)
    return d


def test_ml100k_records_are_joined_with_movies(tmp_path):
    d = ml100k(tmp_path, "7\t1\t4\t881250949\n7\t2\t5\t881250950\n8\t3\t1\t1\n")
    records = list(readers.read_ratings(d))
    assert [(r.user_id, r.movie_id, r.rating, r.timestamp) for r in records] == [
        ("7", "1", 4.0, 881250949), ("7", "2", 5.0, 881250950), ("8", "3", 1.0, 1)]
    assert records[0].title == "Toy Story (1995)" and records[0].genres == ("Comedy",)
    assert records[1].genres == ("Action",)
    assert records[2].genres == ()  # "unknown" is read as no genre


def test_ml100k_titles_are_latin1(tmp_path):
    d = ml100k(tmp_path, "1\t1\t3\t5\n", items="1|Misérables, Les (1995)|x||u|0|1|0\n".encode("latin-1"))
    assert list(readers.read_ratings(d))[0].title == "Misérables, Les (1995)"


def test_ml_latest_csv_with_quoted_title_and_half_stars(tmp_path):
    d = mllatest(tmp_path, "userId,movieId,rating,timestamp\n1,10,4.5,100\n1,20,0.5,101\n")
    records = list(readers.read_ratings(d))
    assert records[0].title == "Heat, The (1995)" and records[0].genres == ("Action", "Crime")
    assert records[0].rating == 4.5
    assert records[1].genres == ()  # "(no genres listed)"


@pytest.mark.parametrize("line,message", [
    ("1\t1\t4\n", "expected 4 fields"),
    ("1\t1\tfour\t5\n", "rating 'four' is not a number"),
    ("1\t1\t6\t5\n", "rating 6 is outside the scale 1..5"),
    ("1\t1\t3.5\t5\n", "not a multiple of 1"),
    ("1\t1\tnan\t5\n", "not a finite number"),
    ("1\t99\t3\t5\n", "movie id '99' is not in the movie file"),
    ("1\t1\t3\t-5\n", "timestamp -5 is negative"),
    ("u s\t1\t3\t5\n", "is not a valid ID"),
])
def test_bad_rating_line_is_named_by_file_and_line(tmp_path, line, message):
    d = ml100k(tmp_path, "1\t2\t3\t4\n" + line)
    with pytest.raises(readers.DataError) as e:
        list(readers.read_ratings(d))
    assert f"{os.path.join(d, 'u.data')}:2: " in str(e.value)
    assert message in str(e.value)


def test_duplicate_user_movie_is_reported_with_its_line(tmp_path):
    d = mllatest(tmp_path, "userId,movieId,rating,timestamp\n1,10,4,1\n2,10,4,1\n1,10,3,2\n")
    with pytest.raises(readers.DataError, match=r"ratings.csv:4: duplicate rating of movie '10' by user '1'"):
        list(readers.read_ratings(d))


def test_tolerance_skips_bad_lines_but_reports_every_one(tmp_path):
    d = ml100k(tmp_path, "1\t1\t4\t1\n1\t1\t9\t1\n2\t77\t4\t1\n2\t2\t4\t1\n")
    seen = []
    report = readers.ReadReport()
    records = list(readers.read_ratings(d, max_bad_records=2, report=report, on_problem=seen.append))
    assert [(r.user_id, r.movie_id) for r in records] == [("1", "1"), ("2", "2")]
    assert [p.line for p in seen] == [2, 3]
    assert report.ratings == 2 and len(report.problems) == 2
    with pytest.raises(readers.DataError, match="2 invalid input record"):
        list(readers.read_ratings(d, max_bad_records=1))


def test_wrong_encoding_and_malformed_csv(tmp_path):
    d = mllatest(tmp_path, b"userId,movieId,rating,timestamp\n1,10,4,1\n1,2\xff0,4,1\n")
    with pytest.raises(readers.DataError, match=r"ratings.csv:3: not valid UTF-8"):
        list(readers.read_ratings(d))
    d = mllatest(tmp_path, "user,movie,rating,timestamp\n1,10,4,1\n")
    with pytest.raises(readers.DataError, match=r"ratings.csv:1: expected header"):
        list(readers.read_ratings(d))


def test_bad_movie_file_fails_before_any_rating(tmp_path):
    d = ml100k(tmp_path, "1\t1\t4\t1\n", items="1|Toy Story|x||u|0|1\n")
    with pytest.raises(readers.DataError, match=r"u.item:1: expected 8 '\|'-separated fields, got 7"):
        next(readers.read_ratings(d))


def test_empty_or_unknown_folder(tmp_path):
    d = mllatest(tmp_path, "userId,movieId,rating,timestamp\n")
    with pytest.raises(readers.DataError, match="no ratings"):
        list(readers.read_ratings(d))
    os.makedirs(tmp_path / "empty")
    with pytest.raises(readers.DataError, match="no MovieLens files"):
        readers.detect_format(str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        readers.detect_format(str(tmp_path / "missing"))


def test_real_ml100k_reads_cleanly(ml100k_dir):
    report = readers.check_dataset(ml100k_dir)
    assert (report.data_format, report.ratings, report.users, report.movies) == ("ml-100k", 100000, 943, 1682)
    assert report.problems == []


CSV_HEADER = "userId,movieId,rating,timestamp\n"


@pytest.mark.parametrize("ratings,movies,message", [
    (CSV_HEADER + "1,10,4,100\n1,20,4", None, r"ratings.csv:3: expected 4 fields .* got 3"),      # truncated
    (CSV_HEADER + "1,10,,100\n", None, r"ratings.csv:2: rating '' is not a number"),               # empty
    (CSV_HEADER + "1,10,NaN,100\n", None, r"ratings.csv:2: rating nan is not a finite number"),
    (CSV_HEADER + "1/../x,10,4,100\n", None, r"ratings.csv:2: user id '1/../x' is not a valid ID"),
    (CSV_HEADER + "1,10,4,100\n", "movieId,title\n10,Heat\n", r"movies.csv:1: expected header"),
    (CSV_HEADER + "1,10,4,100\n", "movieId,title,genres\n10,Heat\n", r"movies.csv:2: expected 3 fields, got 2"),
])
def test_data_faults_are_named_by_file_line_and_problem(tmp_path, ratings, movies, message):
    d = mllatest(tmp_path, ratings, movies)
    with pytest.raises(readers.DataError, match=message):
        list(readers.read_ratings(d))


def test_example_gen_skips_the_reshuffle_only_in_process():
    from movierec.components.movielens_example_gen.executor import runs_in_process
    assert runs_in_process(["--runner=FnApiRunner", "--direct_running_mode=in_memory", "--direct_num_workers=1",
                            "--requirements_file=/dev/null"])
    assert runs_in_process([])   # Beam's default: DirectRunner, one in-memory worker
    assert not runs_in_process(["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    assert not runs_in_process(["--runner=DataflowRunner", "--project=p"])
    assert not runs_in_process(["--direct_num_workers=0"])   # 0: as many workers as cores


@pytest.mark.parametrize("data", [b"", b"a", b"a\n", b"a\nb", b"a\n\nb\r\n", b"x" * 5 + b"\n" + b"y" * 7 + b"\n"])
def test_chunked_line_splitting_matches_local_file_iteration(data):
    """Lines are read through tf.io.gfile in chunks; chunk edges must not move line edges."""
    import io

    assert list(readers._byte_lines(io.BytesIO(data), chunk_size=3)) == list(io.BytesIO(data))
