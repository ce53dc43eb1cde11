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


@pytest.mark.parametrize("data", [b"", b"a", b"a\n", b"a\nb", b"a\n\nb\r\n", b"x" * 5 + b"\n" + b"y" * 7 + b"\n"])
def test_chunked_line_splitting_matches_local_file_iteration(data):
    """Lines are read through tf.io.gfile in chunks; chunk edges must not move line edges."""
    import io

    assert list(readers._byte_lines(io.BytesIO(data), chunk_size=3)) == list(io.BytesIO(data))


# --- every MovieLens layout, detected from its files, each with its quirks ---------------------

def dat_dir(tmp_path, name: str, ratings: bytes | str, movies: bytes | str, extra: dict = None) -> str:
    d = str(tmp_path / name)
    write(os.path.join(d, "ratings.dat"), ratings)
    write(os.path.join(d, "movies.dat"), movies)
    for file_name, text in (extra or {}).items():
        write(os.path.join(d, file_name), text)
    return d


ML1M_USERS = "1::F::1::10::48067\n2::M::56::16::70072\n"
ML1M_MOVIES = ("1::Toy Story (1995)::Animation|Children's|Comedy\n"
               "2::Misérables, Les (1995)::Drama|Musical\n"
               "3::Star Wars: Episode IV - A New Hope (1977)::Action|Sci-Fi\n"
               "4::Maltese Falcon, The (1941)::Film-Noir|Mystery\n").encode("latin-1")


def test_ml1m_dat_latin1_whole_stars_and_old_genre_spelling(tmp_path):
    d = dat_dir(tmp_path, "ml-1m", "1::1::5::978300760\n1::2::3::978302109\n2::3::4::978301968\n2::4::1::0\n",
                ML1M_MOVIES, {"users.dat": ML1M_USERS})
    assert readers.detect_format(d) == "ml-1m"
    records = list(readers.read_ratings(d))
    assert [(r.user_id, r.movie_id, r.rating, r.timestamp) for r in records] == [
        ("1", "1", 5.0, 978300760), ("1", "2", 3.0, 978302109), ("2", "3", 4.0, 978301968), ("2", "4", 1.0, 0)]
    assert records[0].genres == ("Animation", "Children", "Comedy")   # "Children's" read as "Children"
    assert records[1].title == "Misérables, Les (1995)"                # latin-1 byte 0xe9
    assert records[2].title == "Star Wars: Episode IV - A New Hope (1977)"   # ':' inside a '::' file
    assert records[3].genres == ("Film-Noir", "Mystery")


@pytest.mark.parametrize("ratings,message", [
    ("1::1::4.5::5\n", r"ratings.dat:1: rating 4.5 is not a multiple of 1"),   # ml-1m: whole stars only
    ("1::1::5\n", r"ratings.dat:1: expected 4 fields"),
    ("1,1,5,5\n", r"ratings.dat:1: expected 4 fields .* got 1"),               # CSV is not this layout
    ("1::9::5::5\n", r"ratings.dat:1: movie id '9' is not in the movie file"),
    ("1::1::5::yesterday\n", r"ratings.dat:1: timestamp 'yesterday' is not an integer"),
])
def test_ml1m_bad_ratings_are_named_by_file_and_line(tmp_path, ratings, message):
    d = dat_dir(tmp_path, "ml-1m", ratings, ML1M_MOVIES, {"users.dat": ML1M_USERS})
    with pytest.raises(readers.DataError, match=message):
        list(readers.read_ratings(d))


@pytest.mark.parametrize("movies,message", [
    (b"1::Toy Story (1995)\n", r"movies.dat:1: expected 3 '::'-separated fields \(MovieID::Title::Genres\), got 2"),
    (b"1::Toy Story (1995)::Comedy\n1::Again::Drama\n", r"movies.dat:2: duplicate movie id '1'"),
    (b"1:Toy Story (1995):Comedy\n", r"movies.dat:1: expected 3 '::'-separated fields"),   # single colons
])
def test_ml1m_bad_movie_lines(tmp_path, movies, message):
    d = dat_dir(tmp_path, "ml-1m", "1::1::5::1\n", movies, {"users.dat": ML1M_USERS})
    with pytest.raises(readers.DataError, match=message):
        next(readers.read_ratings(d))


ML10M_MOVIES = ("1::Toy Story (1995)::Adventure|Animation|Children|Comedy|Fantasy\n"
                "8606::Pull My Daisy (1958)::(no genres listed)\n"
                "4973::Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)::Comedy|Romance\n"
                "5::Batman (1989)::Action|IMAX\n")


def test_ml10m_dat_utf8_half_stars_no_genres_and_imax(tmp_path):
    d = dat_dir(tmp_path, "ml-10m", "1::1::4.5::838985046\n1::8606::0.5::838983525\n2::4973::5::1\n3::5::3::2\n",
                ML10M_MOVIES.encode("utf-8"), {"tags.dat": "15::4973::excellent!::1215184630\n"})
    assert readers.detect_format(d) == "ml-10m"   # ratings.dat + movies.dat, no users.dat
    records = list(readers.read_ratings(d))
    assert [r.rating for r in records] == [4.5, 0.5, 5.0, 3.0]
    assert records[0].genres == ("Adventure", "Animation", "Children", "Comedy", "Fantasy")
    assert records[1].genres == ()                     # "(no genres listed)"
    assert records[2].title == "Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)"
    assert records[3].genres == ("Action", "IMAX")


@pytest.mark.parametrize("ratings,movies,message", [
    ("1::1::5.5::1\n", ML10M_MOVIES.encode(), r"ratings.dat:1: rating 5.5 is outside the scale 0.5..5"),
    ("1::1::0::1\n", ML10M_MOVIES.encode(), r"ratings.dat:1: rating 0 is outside the scale 0.5..5"),
    ("1::1::4.25::1\n", ML10M_MOVIES.encode(), r"ratings.dat:1: rating 4.25 is not a multiple of 0.5"),
    ("1::1::4::1\n", "1::Amélie (2001)::Comedy\n".encode("latin-1"), r"movies.dat:1: not valid utf-8"),  # ml-1m bytes
])
def test_ml10m_bad_input(tmp_path, ratings, movies, message):
    d = dat_dir(tmp_path, "ml-10m", ratings, movies)
    with pytest.raises(readers.DataError, match=message):
        list(readers.read_ratings(d))


ML25M_MOVIES = ('movieId,title,genres\n'
                '1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n'
                '11,"American President, The (1995)",Comedy|Drama|Romance\n'
                '1000,"""Great Performances"" Cats (1998)",Musical\n'
                '2000,Sweet Charity (1969),Comedy|Drama|Musical|Romance\n'
                '3000,Zazie dans le métro (1960),Comedy\n'
                '209171,Women of Devil\'s Island (1962),Action|Adventure|Drama\n'
                '131260,Rentun Ruusu (2001),(no genres listed)\n')


@pytest.mark.parametrize("name,extra", [
    ("ml-20m", {"links.csv": "movieId,imdbId,tmdbId\n1,0114709,862\n11,0112346,\n",
                "genome-scores.csv": "movieId,tagId,relevance\n1,1,0.025\n"}),
    ("ml-25m", {"links.csv": "movieId,imdbId,tmdbId\n1,0114709,862\n", "tags.csv": "userId,movieId,tag,timestamp\n"}),
    ("ml-32m", {"links.csv": "movieId,imdbId,tmdbId\n1,0114709,862\n"}),
    ("ml-latest-small", {}),
])
def test_csv_layouts_quoted_titles_half_stars_and_no_genres(tmp_path, name, extra):
    d = str(tmp_path / name)
    write(os.path.join(d, "movies.csv"), ML25M_MOVIES)
    write(os.path.join(d, "ratings.csv"), "userId,movieId,rating,timestamp\r\n1,11,3.5,1112486027\r\n"
                                         "1,1000,5.0,1112484676\r\n2,3000,0.5,964982703\r\n2,131260,4,1\r\n")
    for file_name, text in extra.items():
        write(os.path.join(d, file_name), text)
    assert readers.detect_format(d) == "ml-latest"
    records = list(readers.read_ratings(d))
    assert [(r.user_id, r.movie_id, r.rating) for r in records] == [
        ("1", "11", 3.5), ("1", "1000", 5.0), ("2", "3000", 0.5), ("2", "131260", 4.0)]   # CRLF line ends
    assert records[0].title == "American President, The (1995)"        # comma inside quotes
    assert records[1].title == '"Great Performances" Cats (1998)'      # doubled quotes
    assert records[2].title == "Zazie dans le métro (1960)"
    assert records[3].genres == ()


@pytest.mark.parametrize("ratings,message", [
    ("userId,movieId,rating,timestamp\n1,11,3.5,1112486027.5\n", r"ratings.csv:2: timestamp '1112486027.5' is not"),
    ("userId,movieId,rating,timestamp\n1,11,3.5\n", r"ratings.csv:2: expected 4 fields"),
    ("userId::movieId::rating::timestamp\n1::11::3.5::1\n", r"ratings.csv:1: expected header"),
    ('userId,movieId,rating,timestamp\n1,"11,3.5,1\n', r"ratings.csv:2: "),   # unclosed quote
])
def test_csv_layout_bad_ratings(tmp_path, ratings, message):
    d = mllatest(tmp_path, ratings, ML25M_MOVIES)
    with pytest.raises(readers.DataError, match=message):
        list(readers.read_ratings(d))


def test_csv_movie_with_unquoted_comma_title_is_named(tmp_path):
    d = mllatest(tmp_path, "userId,movieId,rating,timestamp\n1,11,3.5,1\n",
                 "movieId,title,genres\n11,American President, The (1995),Comedy\n")
    with pytest.raises(readers.DataError, match=r"movies.csv:2: expected 3 fields, got 4"):
        next(readers.read_ratings(d))


def test_genre_spellings_are_one_across_layouts(tmp_path):
    """ml-100k's "Children's" and the CSV layouts' "Children" are the same genre."""
    d = ml100k(tmp_path, "1\t1\t4\t1\n", items="1|Toy Story (1995)|x||u|0|0|1\n")
    write(os.path.join(d, "u.genre"), "unknown|0\nAction|1\nChildren's|2\n")
    assert list(readers.read_ratings(d))[0].genres == ("Children",)


def test_partial_layout_names_what_was_found(tmp_path):
    d = str(tmp_path / "half")
    write(os.path.join(d, "ratings.dat"), "1::1::5::1\n")
    with pytest.raises(readers.DataError, match=r"found only ratings.dat"):
        readers.detect_format(d)


def test_byte_order_mark_and_windows_line_ends(tmp_path):
    """A CSV saved with a UTF-8 BOM and .dat files with CRLF line ends read like the originals."""
    d = mllatest(tmp_path, "\ufeffuserId,movieId,rating,timestamp\r\n1,10,4.5,1\r\n",
                 "\ufeffmovieId,title,genres\r\n10,Heat (1995),Action|Crime\r\n")
    assert [(r.movie_id, r.rating, r.genres) for r in readers.read_ratings(d)] == [("10", 4.5, ("Action", "Crime"))]
    d = dat_dir(tmp_path, "ml-10m-crlf", "1::1::4.5::838985046\r\n", "1::Toy Story (1995)::Comedy\r\n")
    assert [(r.title, r.genres, r.timestamp) for r in readers.read_ratings(d)] == [
        ("Toy Story (1995)", ("Comedy",), 838985046)]
