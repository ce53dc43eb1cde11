"""MovieLensExampleGen over Arrow record batches: the vectorised CSV checks agree with the
readers line for line, and the examples tfx_bsl encodes parse to the readers' records."""
import glob
import json
import os

import pytest
import tensorflow as tf

from movierec.components import features
from movierec.components.data import arrow_reader, readers, synth
from movierec.components.movielens_example_gen import component, executor
from tests.conftest import write

MOVIES = 'movieId,title,genres\n1,One (1990),Drama|Comedy\n2,Two (1991),(no genres listed)\n3,"Three, The (1992)",Action\n'
# line: what is wrong (the header is line 1, after a UTF-8 byte order mark)
RATINGS = (b"\xef\xbb\xbfuserId,movieId,rating,timestamp\n"
           b"1,1,4.0,100\n"        # 2
           b"1,2,3.5,101\n"        # 3
           b"\n"                   # 4 blank: skipped, not a problem
           b"1,3,4.5\n"            # 5 three fields
           b"2,1,abc,5\n"          # 6 not a number
           b"2,2,7.0,5\n"          # 7 off the scale
           b"2,3,3.25,5\n"         # 8 not a half star
           b"3,1,nan,5\n"          # 9 not finite
           b"3,2,4.0,-5\n"         # 10 negative time
           b"3,3,4.0,x\n"          # 11 not an integer
           b"4,9,4.0,5\n"          # 12 unknown movie
           b"bad id,1,4.0,5\n"     # 13 bad user id
           b"1,1,2.0,200\n"        # 14 (1, 1) again
           b"5,1,+4,7\r\n"         # 15 valid: Python reads +4; CRLF
           b"5,2, 3.0 ,8\n"        # 16 valid: spaces around the rating
           b"5,3,4.,9\n"           # 17 valid: 4.
           b'"6",1,4.0,10\n'       # 18 valid: a quoted field
           b"6,2,4.0,1\xff\n"      # 19 not UTF-8
           b"7,1,4.0,11\n"         # 20
           b"7,1,1.0,12\n")        # 21 (7, 1) again
EXPECTED_PROBLEMS = [
    "5: expected 4 fields (user, movie, rating, timestamp), got 3",
    "6: rating 'abc' is not a number",
    "7: rating 7 is outside the scale 0.5..5",
    "8: rating 3.25 is not a multiple of 0.5 from 0.5",
    "9: rating nan is not a finite number",
    "10: timestamp -5 is negative",
    "11: timestamp 'x' is not an integer",
    "12: movie id '9' is not in the movie file",
    "13: user id 'bad id' is not a valid ID (1-64 characters from letters, digits, '_', '.', ':' and '-')",
    "14: duplicate rating of movie '1' by user '1'",
    "19: not valid UTF-8",
    "21: duplicate rating of movie '1' by user '7'",
]
EXPECTED_RECORDS = [   # (user, movie, rating, timestamp, title, genres)
    ("1", "1", 4.0, 100, "One (1990)", ("Drama", "Comedy")),
    ("1", "2", 3.5, 101, "Two (1991)", ()),
    ("5", "1", 4.0, 7, "One (1990)", ("Drama", "Comedy")),
    ("5", "2", 3.0, 8, "Two (1991)", ()),
    ("5", "3", 4.0, 9, "Three, The (1992)", ("Action",)),
    ("6", "1", 4.0, 10, "One (1990)", ("Drama", "Comedy")),
    ("7", "1", 4.0, 11, "One (1990)", ("Drama", "Comedy")),
]


def bad_dataset(tmp_path) -> str:
    d = str(tmp_path / "bad")
    write(os.path.join(d, "movies.csv"), MOVIES)
    with open(os.path.join(d, "ratings.csv"), "wb") as f:
        f.write(RATINGS)
    return d


def batch_rows(batches) -> list[tuple]:
    rows = []
    for b in batches:
        d = b.to_pydict()
        for i in range(b.num_rows):
            rows.append((d[features.USER_ID][i][0].decode(), d[features.MOVIE_ID][i][0].decode(),
                         d[features.RATING][i][0], d[features.TIMESTAMP][i][0], d[features.TITLE][i][0].decode(),
                         tuple(g.decode() for g in d[features.GENRES][i])))
    return rows


@pytest.mark.parametrize("chunk_bytes", [40, 1 << 20])   # 40: a chunk of a line or two, pairs across chunks
def test_vectorised_csv_checks_name_the_same_lines_as_the_readers(tmp_path, chunk_bytes):
    d = bad_dataset(tmp_path)
    path = os.path.join(d, "ratings.csv")
    report = readers.ReadReport()
    got = batch_rows(arrow_reader.read_batches(d, 12, report, on_problem=lambda p: None, rows=3,
                                               chunk_bytes=chunk_bytes))
    assert got == EXPECTED_RECORDS
    assert [str(p) for p in report.problems] == [f"{path}:{p}" for p in EXPECTED_PROBLEMS]
    assert (report.ratings, report.users, report.movies, report.data_format) == (7, 4, 3, "ml-latest")
    # the readers say the same, record for record and problem for problem
    by_readers = readers.ReadReport()
    records = [(r.user_id, r.movie_id, r.rating, r.timestamp, r.title, r.genres)
               for r in readers.read_ratings(d, 12, by_readers, on_problem=lambda p: None)]
    assert records == EXPECTED_RECORDS
    assert [str(p) for p in by_readers.problems] == [str(p) for p in report.problems]


def test_past_the_tolerance_the_error_lists_every_line(tmp_path):
    d = bad_dataset(tmp_path)
    with pytest.raises(readers.DataError, match=r"12 invalid input record\(s\):\n.*ratings.csv:5: expected 4 fields"):
        list(arrow_reader.read_batches(d, 11))


@pytest.mark.parametrize("ratings, message", [
    ("userId,movieId,rating\n1,1,4.0\n", r"ratings.csv:1: expected header 'userId,movieId,rating,timestamp'"),
    ("", r"ratings.csv:1: empty file"),
    ("userId,movieId,rating,timestamp\n", r"ratings.csv:0: no ratings"),
])
def test_bad_or_empty_ratings_file(tmp_path, ratings, message):
    d = str(tmp_path / "d")
    write(os.path.join(d, "movies.csv"), MOVIES)
    write(os.path.join(d, "ratings.csv"), ratings)
    with pytest.raises(readers.DataError, match=message):
        list(arrow_reader.read_batches(d))


def test_records_without_ratings_or_weights_leave_those_features_out():
    rec = readers.RatingRecord
    implicit = arrow_reader.records_to_batch([rec("1", "2", None, 5, "T", ("a", "b")), rec("3", "4", None, 0, "U", ())])
    assert features.RATING not in implicit.schema.names and features.WEIGHT not in implicit.schema.names
    assert implicit.column(features.GENRES).to_pylist() == [[b"a", b"b"], []]
    weighted = arrow_reader.records_to_batch([rec("1", "2", None, 5, "T", (), 2.5), rec("3", "4", None, 0, "U", ())])
    assert weighted.column(features.WEIGHT).to_pylist() == [[2.5], None]
    # in the Parquet examples: every raw feature a large-list column; a row without the
    # feature (or a dataset without it) holds null, which TFXIO reads as an absent feature
    table = executor.conform(implicit, features.raw_arrow_schema())
    assert table.schema == features.raw_arrow_schema()
    assert table.column(features.RATING).to_pylist() == [None, None]
    assert table.column(features.WEIGHT).to_pylist() == [None, None]
    assert table.column(features.GENRES).to_pylist() == [[b"a", b"b"], []]
    assert executor.conform(weighted, features.raw_arrow_schema()).column(features.WEIGHT).to_pylist() == [[2.5], None]


def test_split_depends_on_the_user_movie_pair_only():
    def batch(users, movies, titles):
        recs = [readers.RatingRecord(u, m, 3.0, 1, t, ()) for u, m, t in zip(users, movies, titles)]
        return arrow_reader.records_to_batch(recs)

    users = [str(i % 97) for i in range(4000)]
    movies = [str(i // 97) for i in range(4000)]
    a = executor.split_of_rows(batch(users, movies, ["x"] * 4000), [80, 100])
    b = executor.split_of_rows(batch(users, movies, ["other title"] * 4000), [80, 100])
    assert (a == b).all() and set(a.tolist()) == {0, 1}
    assert abs(a.mean() - 0.2) < 0.03                    # 20 of 100 buckets go to split 1
    assert executor.split_of_rows(batch(["1"], ["2"], ["t"]), [100]).tolist() == [0]
    # the separator keeps ("1", "23") and ("12", "3") apart: the keys differ
    keys = [b"1\x1f23", b"12\x1f3"]
    assert len(set(tf.strings.to_hash_bucket_fast(keys, 1 << 30).numpy().tolist())) == 2


def run_example_gen(data_dir: str, out: str, max_bad_records: int = 0, beam_args=None,
                    payload_format=None, file_format=None) -> dict:
    """Runs the executor's Do with a real Beam pipeline; {split: [row dict]} read back from
    its Parquet files."""
    import pyarrow.parquet as pq
    from tfx.components.util import examples_utils
    from tfx.dsl.components.base import base_beam_executor
    from tfx.proto import example_gen_pb2
    from tfx.types import standard_artifacts, standard_component_specs as sc
    from tfx.utils import proto_utils

    examples = standard_artifacts.Examples()
    examples.uri = out
    props = {
        sc.INPUT_BASE_KEY: data_dir,
        sc.INPUT_CONFIG_KEY: proto_utils.proto_to_json(example_gen_pb2.Input(splits=[
            example_gen_pb2.Input.Split(name="single_split", pattern=component.PATTERN)])),
        sc.OUTPUT_CONFIG_KEY: proto_utils.proto_to_json(component.split_config(20)),
        sc.OUTPUT_DATA_FORMAT_KEY: payload_format or example_gen_pb2.FORMAT_PARQUET,
        sc.OUTPUT_FILE_FORMAT_KEY: file_format or example_gen_pb2.FILE_FORMAT_PARQUET,
        executor.MAX_BAD_RECORDS_KEY: max_bad_records,
        executor.SPAN_WINDOW_KEY: None,
    }
    context = base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=beam_args or ["--runner=DirectRunner"],
                                                        tmp_dir=os.path.join(out, ".tmp"))
    executor.Executor(context).Do({}, {sc.EXAMPLES_KEY: [examples]}, props)
    got = {}
    for split in ("train", "eval"):
        files = sorted(glob.glob(os.path.join(out, f"Split-{split}", "*.parquet")))
        assert files, f"no Parquet file in Split-{split}"
        tables = [pq.read_table(f) for f in files]
        assert all(t.schema == features.raw_arrow_schema() for t in tables)
        got[split] = [row for t in tables for row in t.to_pylist()]
    assert json.loads(examples.split_names) == ["train", "eval"]
    assert examples_utils.get_payload_format(examples) == example_gen_pb2.FORMAT_PARQUET
    assert examples_utils.get_file_format(examples) == "FILE_FORMAT_PARQUET"
    return got


def as_record(row: dict) -> tuple:
    """A Parquet row of a rated dataset -> (user, movie, rating, timestamp, title, genres);
    its weight is absent (null), every other feature has one value (genres: any number)."""
    assert row[features.WEIGHT] is None
    return (row[features.USER_ID][0].decode(), row[features.MOVIE_ID][0].decode(), row[features.RATING][0],
            row[features.TIMESTAMP][0], row[features.TITLE][0].decode(),
            tuple(g.decode() for g in row[features.GENRES]))


def test_example_gen_writes_the_readers_records_split_by_pair(tmp_path):
    d = bad_dataset(tmp_path)
    got = run_example_gen(d, str(tmp_path / "out"), max_bad_records=12)
    records = sorted(as_record(e) for split in got.values() for e in split)
    assert records == sorted(EXPECTED_RECORDS)
    # and with two Beam workers: the same examples in the same splits
    again = run_example_gen(d, str(tmp_path / "out2"), max_bad_records=12,
                            beam_args=["--direct_running_mode=in_memory", "--direct_num_workers=2"])
    for split in ("train", "eval"):
        assert sorted(map(as_record, again[split])) == sorted(map(as_record, got[split]))


def test_example_gen_on_synthetic_data_matches_the_readers(tmp_path):
    d = str(tmp_path / "s")
    synth.generate(synth.SynthSpec(users=60, movies=100, ratings=3000, seed=2), d)
    got = run_example_gen(d, str(tmp_path / "out"))
    expected = sorted((r.user_id, r.movie_id, r.rating, r.timestamp, r.title, r.genres) for r in readers.read_ratings(d))
    assert sorted(as_record(e) for split in got.values() for e in split) == expected
    assert 0.15 < len(got["eval"]) / len(expected) < 0.25


def test_check_dataset_reports_like_the_readers(tmp_path):
    d = bad_dataset(tmp_path)
    fast, slow = arrow_reader.check_dataset(d, 12), readers.check_dataset(d, 12)
    assert (fast.ratings, fast.users, fast.movies, fast.data_format) == (slow.ratings, slow.users, slow.movies,
                                                                          slow.data_format) == (7, 4, 3, "ml-latest")
    assert [str(p) for p in fast.problems] == [str(p) for p in slow.problems]
    with pytest.raises(readers.DataError, match="12 invalid"):
        arrow_reader.check_dataset(d, 11)


def test_a_split_without_examples_still_gets_a_readable_file(tmp_path):
    """One rating: one split gets it, the other an empty Parquet file with the schema."""
    d = str(tmp_path / "one")
    write(os.path.join(d, "movies.csv"), MOVIES)
    write(os.path.join(d, "ratings.csv"), "userId,movieId,rating,timestamp\n1,1,4.0,100\n")
    got = run_example_gen(d, str(tmp_path / "out"))
    assert sorted(len(rows) for rows in got.values()) == [0, 1]
    assert [as_record(r) for rows in got.values() for r in rows] == [("1", "1", 4.0, 100, "One (1990)",
                                                                     ("Drama", "Comedy"))]


def test_example_gen_refuses_another_output_format_by_name(tmp_path):
    from tfx.proto import example_gen_pb2

    d = str(tmp_path / "one")
    write(os.path.join(d, "movies.csv"), MOVIES)
    write(os.path.join(d, "ratings.csv"), "userId,movieId,rating,timestamp\n1,1,4.0,100\n")
    with pytest.raises(ValueError, match="writes Parquet examples .*; got FORMAT_TF_EXAMPLE, FORMAT_TFRECORDS_GZIP"):
        run_example_gen(d, str(tmp_path / "out"), payload_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
                        file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP)


def test_reading_raw_examples_needs_the_transform_graph_and_one_format(tmp_path):
    from movierec.components import training_data

    d = str(tmp_path / "one")
    write(os.path.join(d, "movies.csv"), MOVIES)
    write(os.path.join(d, "ratings.csv"), "userId,movieId,rating,timestamp\n1,1,4.0,100\n2,3,2.5,7\n")
    out = str(tmp_path / "out")
    run_example_gen(d, out)
    pattern = os.path.join(out, "Split-*", "*")
    with pytest.raises(ValueError, match="raw examples .*parquet.* need the transform graph"):
        training_data.read_interactions([pattern])
    write(os.path.join(out, "Split-train", "part-0.gz"), "")
    with pytest.raises(ValueError, match="examples mix Parquet and TFRecord files"):
        training_data.read_interactions([pattern], "/unused")
