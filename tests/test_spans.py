"""Spans: selection (latest, window), cutting a dataset by time, reading a window."""
import os

import pytest

from movierec.components.data import readers, spans
from movierec.components.movielens_example_gen import component, executor
from tests.conftest import REPO, write
from tests.test_readers import ML1M_MOVIES, ML1M_USERS, ML10M_MOVIES, dat_dir, mllatest, ml100k

MOVIES = 'movieId,title,genres\n10,Heat (1995),Action\n20,Up (2009),Comedy\n'
HEADER = "userId,movieId,rating,timestamp\n"
DAY = 86400


def make_spans(base, contents: dict) -> str:
    for span, ratings in contents.items():
        write(os.path.join(base, f"span-{span}", "movies.csv"), MOVIES)
        write(os.path.join(base, f"span-{span}", "ratings.csv"), HEADER + ratings)
    return str(base)


def test_window_selection():
    assert spans.window([1, 2, 3], latest=3, size=1) == [3]             # latest only
    assert spans.window([3, 1, 2], latest=3, size=2) == [2, 3]
    assert spans.window([1, 2, 3], latest=3, size=0) == [1, 2, 3]       # all
    assert spans.window([1, 2, 4, 5], latest=5, size=3) == [2, 4, 5]    # gaps: last W that exist
    assert spans.window([1, 2, 3, 4], latest=2, size=5) == [1, 2]       # never past `latest`
    with pytest.raises(ValueError, match="latest span 7"):
        spans.window([1, 2], latest=7, size=1)
    with pytest.raises(ValueError, match=">= 0"):
        spans.window([1], latest=1, size=-1)


def test_list_spans_ignores_other_entries(tmp_path):
    base = make_spans(tmp_path / "in", {1: "1,10,4,5\n", 10: "1,20,4,6\n", 2: "2,10,3,7\n"})
    os.makedirs(tmp_path / "in" / "span-x")
    os.makedirs(tmp_path / "in" / "notes")
    write(str(tmp_path / "in" / "span-3"), "a file, not a folder")
    assert spans.list_spans(base) == [1, 2, 10]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        spans.list_spans(str(tmp_path / "missing"))


def test_read_window_newest_rating_wins_and_is_counted(tmp_path, caplog):
    base = make_spans(tmp_path / "in", {1: "1,10,2,5\n1,20,3,6\n", 2: "1,10,5,9\n2,20,4,9\n"})
    caplog.set_level("INFO")
    got = sorted((r.user_id, r.movie_id, r.rating) for r in executor.read_window(
        spans.window_dirs(base, 2, 0), max_bad_records=0))
    assert got == [("1", "10", 5.0), ("1", "20", 3.0), ("2", "20", 4.0)]  # (1,10) re-rated in span 2
    assert "1 rating(s) superseded by a newer span" in caplog.text
    # window 1: span 2 only
    assert len(list(executor.read_window(spans.window_dirs(base, 2, 1), 0))) == 2


def test_read_window_sums_implicit_events_over_spans(tmp_path):
    """Declared implicit data (views, a weight column): a (user, item) viewed in two spans
    is one interaction weighing both spans' sums, with the newest span's timestamp, as
    repeated views within one file are read."""
    base = tmp_path / "in"
    decl = ("interactions:\n  path: views.csv\n"
            "  columns: {user: visitor, item: sku, timestamp: seen_at, weight: seconds}\n")
    views = {1: "ana,K-1,100,1\nbob,K-1,110,4\n",
             2: "ana,K-1,200,2\nana,K-2,210,5\n"}
    for span, rows in views.items():
        write(os.path.join(base, f"span-{span}", "movierec-data.yaml"), decl)
        write(os.path.join(base, f"span-{span}", "views.csv"), "visitor,sku,seen_at,seconds\n" + rows)
    got = sorted((r.user_id, r.movie_id, r.rating, r.weight, r.timestamp) for r in executor.read_window(
        spans.window_dirs(str(base), 2, 0), max_bad_records=0))
    # (ana, K-1): 1 in span 1 + 2 in span 2 = 3, at span 2's time 200
    assert got == [("ana", "K-1", None, 3.0, 200), ("ana", "K-2", None, 5.0, 210),
                   ("bob", "K-1", None, 4.0, 110)]
    # window 1: span 2 alone
    assert sorted((r.user_id, r.movie_id, r.weight) for r in executor.read_window(
        spans.window_dirs(str(base), 2, 1), 0)) == [("ana", "K-1", 2.0), ("ana", "K-2", 5.0)]


def test_an_empty_span_is_an_error_naming_the_file(tmp_path):
    base = make_spans(tmp_path / "in", {1: "1,10,2,5\n", 2: ""})
    with pytest.raises(readers.DataError, match=r"span-2/ratings.csv.*no ratings"):
        list(executor.read_window(spans.window_dirs(base, 2, 0), 0))


def test_driver_resolves_latest_span_and_fingerprints_the_window(tmp_path):
    base = make_spans(tmp_path / "in", {1: "1,10,2,5\n", 2: "1,20,4,6\n", 3: "2,10,3,7\n"})
    gen = component.MovieLensExampleGen(input_base=base, span_window=2)
    driver = component.MovieLensDriver(None)

    def resolve():
        props = {k: v for k, v in gen.exec_properties.items()}
        from tfx.utils import proto_utils
        props = {k: proto_utils.proto_to_json(v) if hasattr(v, "DESCRIPTOR") else v for k, v in props.items()}
        return driver.resolve_exec_properties(props, None, None)

    first = resolve()
    assert first["span"] == 3 and "span-3/*" in first["input_config"]
    assert "span-2/" in first["input_fingerprint"] and "span-1/" not in first["input_fingerprint"]
    assert resolve()["input_fingerprint"] == first["input_fingerprint"]          # nothing new: cache hit
    write(os.path.join(base, "span-2", "ratings.csv"), HEADER + "1,20,5,6\n9,10,1,8\n")
    assert resolve()["input_fingerprint"] != first["input_fingerprint"]          # an older span changed
    make_spans(tmp_path / "in", {4: "3,10,3,7\n"})
    assert resolve()["span"] == 4                                    # a new span arrived


def test_split_spans_by_count_keeps_every_rating_in_time_order(tmp_path):
    ratings = "".join(f"{u},{10 if u % 2 else 20},{1 + u % 5},{1000 - u}\n" for u in range(1, 11))
    src = mllatest(tmp_path, HEADER + ratings, MOVIES)
    out = str(tmp_path / "spans")
    made = spans.split_spans(src, out, by="count", count=3)
    assert [m["ratings"] for m in made] == [4, 3, 3]
    assert spans.list_spans(out) == [1, 2, 3]
    stamps = []
    for s in (1, 2, 3):
        records = list(readers.read_ratings(spans.span_dir(out, s)))
        stamps.append([r.timestamp for r in records])
    assert max(stamps[0]) <= min(stamps[1]) and max(stamps[1]) <= min(stamps[2])
    assert sorted(sum(stamps, [])) == sorted(1000 - u for u in range(1, 11))
    with pytest.raises(FileExistsError, match="not empty"):
        spans.split_spans(src, out)


def test_split_spans_by_month_100k_format(tmp_path):
    jan, mar = 1_704_067_200, 1_709_251_200   # 2024-01-01 and 2024-03-01 UTC; no February
    data = f"1\t1\t4\t{mar + DAY}\n1\t2\t5\t{jan + DAY}\n2\t1\t3\t{jan + 2 * DAY}\n2\t3\t2\t{mar}\n"
    src = ml100k(tmp_path, data)
    out = str(tmp_path / "spans")
    made = spans.split_spans(src, out, by="month")
    assert [(m["span"], m["ratings"]) for m in made] == [(1, 2), (2, 2)]   # Feb has no ratings
    assert sorted(os.listdir(spans.span_dir(out, 1))) == ["u.data", "u.genre", "u.item"]
    with open(os.path.join(spans.span_dir(out, 2), "u.data")) as f:
        assert f.read() == f"2\t3\t2\t{mar}\n1\t1\t4\t{mar + DAY}\n"


def test_split_spans_refuses_bad_input_and_leaves_nothing(tmp_path):
    src = mllatest(tmp_path, HEADER + "1,10,9,5\n", MOVIES)
    out = str(tmp_path / "spans")
    with pytest.raises(readers.DataError, match=r"ratings.csv:2.*outside the scale"):
        spans.split_spans(src, out)
    assert not os.path.exists(out)
    src2 = mllatest(tmp_path / "b", HEADER + "1,10,4,5\n", MOVIES)
    with pytest.raises(ValueError, match="cannot cut 1 ratings into 3 spans"):
        spans.split_spans(src2, out, count=3)
    assert [n for n in os.listdir(tmp_path) if n.startswith(".spans-")] == []


def test_split_spans_by_month_ml1m_copies_movies_and_users(tmp_path):
    jan, mar = 1_704_067_200, 1_709_251_200   # 2024-01-01 and 2024-03-01 UTC
    src = dat_dir(tmp_path, "ml-1m", f"1::1::5::{mar + DAY}\n1::2::3::{jan + DAY}\n2::3::4::{jan + 2 * DAY}\n2::4::1::{mar}\n",
                  ML1M_MOVIES, {"users.dat": ML1M_USERS})
    out = str(tmp_path / "spans")
    made = spans.split_spans(src, out, by="month")
    assert [(m["span"], m["ratings"], m["first"], m["last"]) for m in made] == [
        (1, 2, jan + DAY, jan + 2 * DAY), (2, 2, mar, mar + DAY)]
    for span, ratings in ((1, f"1::2::3::{jan + DAY}\n2::3::4::{jan + 2 * DAY}\n"),
                          (2, f"2::4::1::{mar}\n1::1::5::{mar + DAY}\n")):
        folder = spans.span_dir(out, span)
        assert sorted(os.listdir(folder)) == ["movies.dat", "ratings.dat", "users.dat"]
        with open(os.path.join(folder, "ratings.dat"), "rb") as f:
            assert f.read() == ratings.encode()
        with open(os.path.join(folder, "movies.dat"), "rb") as f:
            assert f.read() == ML1M_MOVIES                      # latin-1 bytes, copied as they are
        assert readers.detect_format(folder) == "ml-1m"
    titles = [r.title for r in readers.read_ratings(spans.span_dir(out, 1))]
    assert titles == ["Misérables, Les (1995)", "Star Wars: Episode IV - A New Hope (1977)"]


def test_split_spans_by_count_ml10m_utf8_half_stars(tmp_path):
    src = dat_dir(tmp_path, "ml-10m", "1::1::4.5::30\n1::8606::0.5::10\n2::4973::5::20\n3::5::3::40",  # no final newline
                  ML10M_MOVIES.encode("utf-8"), {"tags.dat": "15::4973::excellent!::1215184630\n"})
    out = str(tmp_path / "spans")
    made = spans.split_spans(src, out, by="count", count=2)
    assert [(m["ratings"], m["first"], m["last"]) for m in made] == [(2, 10, 20), (2, 30, 40)]
    for span, ratings in ((1, b"1::8606::0.5::10\n2::4973::5::20\n"), (2, b"1::1::4.5::30\n3::5::3::40\n")):
        folder = spans.span_dir(out, span)
        assert sorted(os.listdir(folder)) == ["movies.dat", "ratings.dat"]   # tags.dat is not read: not copied
        with open(os.path.join(folder, "ratings.dat"), "rb") as f:
            assert f.read() == ratings
        assert readers.detect_format(folder) == "ml-10m"
    records = list(readers.read_ratings(spans.span_dir(out, 1)))
    assert [(r.movie_id, r.rating, r.title) for r in records] == [
        ("8606", 0.5, "Pull My Daisy (1958)"), ("4973", 5.0, "Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)")]


def test_split_spans_refuses_a_declared_dataset(tmp_path):
    out = str(tmp_path / "spans")
    with pytest.raises(ValueError, match=r"shop is a declared dataset \(movierec-data.yaml\).*"
                                         r"write one span-<N>/ folder per period, each with its movierec-data.yaml"):
        spans.split_spans(os.path.join(REPO, "tests", "data", "shop"), out)
    assert not os.path.exists(out)
