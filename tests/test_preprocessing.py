"""preprocessing_fn on a hand-made batch, run by real tf.Transform (Beam, in memory)."""
import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import schema_utils
from tfx.utils import io_utils
from tensorflow_metadata.proto.v0 import schema_pb2

from movierec.components import features, preprocessing
from movierec.config import default_schema_path

ROWS = [  # user, movie, rating, genres
    ("a", "m1", 4.0, ["Drama"]),
    ("a", "m2", 3.0, ["Comedy", "Drama"]),
    ("a", "m3", 5.0, []),
    ("b", "m1", 2.0, ["Drama"]),
    ("b", "m2", 1.0, ["Comedy", "Drama"]),
    ("c", "m1", 5.0, ["Drama"]),
]


def analyze(rows, tmp: str) -> tft.TFTransformOutput:
    """preprocessing_fn's analysis of `rows` (user, movie, rating, genres) by tf.Transform in Beam."""
    schema = io_utils.parse_pbtxt_file(default_schema_path(), schema_pb2.Schema())
    metadata = tft.DatasetMetadata(schema)
    raw = [{features.USER_ID: [u.encode()], features.MOVIE_ID: [m.encode()], features.RATING: [r],
            features.TIMESTAMP: [i], features.TITLE: [f"T {m}".encode()],
            features.GENRES: [g.encode() for g in gs], features.WEIGHT: []} for i, (u, m, r, gs) in enumerate(rows)]
    with beam.Pipeline() as p, tft_beam.Context(temp_dir=tmp + "/tmp"):
        data = p | beam.Create(raw)
        transform_fn = (data, metadata) | tft_beam.AnalyzeDataset(preprocessing.preprocessing_fn)
        _ = transform_fn | tft_beam.WriteTransformFn(tmp + "/tf")
    return tft.TFTransformOutput(tmp + "/tf")


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    out = analyze(ROWS, str(tmp_path_factory.mktemp("tft")))
    batch = {features.USER_ID: tf.constant([[u] for u, _, _, _ in ROWS]),
             features.MOVIE_ID: tf.constant([[m] for _, m, _, _ in ROWS]),
             features.RATING: tf.constant([[r] for _, _, r, _ in ROWS]),
             features.TIMESTAMP: tf.constant([[i] for i in range(len(ROWS))], tf.int64),
             features.TITLE: tf.constant([[f"T {m}"] for _, m, _, _ in ROWS]),
             features.GENRES: tf.ragged.constant([g for _, _, _, g in ROWS], dtype=tf.string).to_sparse(),
             features.WEIGHT: tf.ragged.constant([[]] * len(ROWS), dtype=tf.float32).to_sparse()}
    return out, out.transform_features_layer()(batch)


def test_vocabularies_are_by_frequency(transformed):
    out, _ = transformed
    assert out.vocabulary_by_name(features.USER_VOCAB) == [b"a", b"b", b"c"]
    assert out.vocabulary_by_name(features.MOVIE_VOCAB) == [b"m1", b"m2", b"m3"]
    assert out.vocabulary_by_name(features.GENRE_VOCAB) == [b"Drama", b"Comedy"]


def test_equal_counts_are_ordered_by_value_larger_first(tmp_path):
    # users: q 2, r 2, p 1; movies: m2 2, m1 1, m3 1; genres: B 3, A 2, C 2 (counted per token)
    rows = [("q", "m1", 1.0, ["A", "B"]), ("r", "m2", 2.0, ["C"]), ("p", "m2", 3.0, ["B", "C"]),
            ("r", "m3", 4.0, ["A", "B"]), ("q", "m2", 5.0, [])]
    out = analyze(rows, str(tmp_path))
    assert out.vocabulary_by_name(features.USER_VOCAB) == [b"r", b"q", b"p"]
    assert out.vocabulary_by_name(features.MOVIE_VOCAB) == [b"m2", b"m3", b"m1"]
    assert out.vocabulary_by_name(features.GENRE_VOCAB) == [b"B", b"C", b"A"]


def test_rows_are_indexed_and_genres_multi_hot(transformed):
    _, t = transformed
    assert t[features.USER_IDX].numpy().tolist() == [0, 0, 0, 1, 1, 2]
    assert t[features.MOVIE_IDX].numpy().tolist() == [0, 1, 2, 0, 1, 0]
    assert t[features.RATING].numpy().tolist() == [4.0, 3.0, 5.0, 2.0, 1.0, 5.0]
    assert t[features.WEIGHT].numpy().tolist() == [1.0] * 6   # no weight: 1
    genre_ids = tf.RaggedTensor.from_sparse(t[features.GENRE_IDS])
    assert genre_ids.to_list() == [[0], [1, 0], [], [0], [1, 0], [0]]
    multi_hot = preprocessing.genre_multi_hot(genre_ids, 2).numpy()
    np.testing.assert_array_equal(multi_hot, [[1, 0], [1, 1], [0, 0], [1, 0], [1, 1], [1, 0]])


def test_unseen_ids_map_to_the_oov_index(transformed):
    out, _ = transformed
    layer = out.transform_features_layer()
    raw = {features.USER_ID: tf.constant([["zz"], ["a"]]), features.MOVIE_ID: tf.constant([["m9"], ["m3"]]),
           features.RATING: tf.constant([[1.0], [2.0]]), features.TIMESTAMP: tf.constant([[1], [2]], tf.int64),
           features.TITLE: tf.constant([["x"], ["y"]]),
           features.GENRES: tf.sparse.from_dense(tf.constant([["Horror"], ["Comedy"]]))}
    t = layer(raw)
    assert t[features.USER_IDX].numpy().tolist() == [3, 0]   # vocab size 3 -> OOV index 3
    assert t[features.MOVIE_IDX].numpy().tolist() == [3, 2]
    assert tf.sparse.to_dense(t[features.GENRE_IDS], default_value=-9).numpy().tolist() == [[-1], [1]]


def test_multi_hot_accepts_int32_row_splits():
    ids = tf.RaggedTensor.from_row_splits(tf.constant([1, 0], tf.int64), tf.constant([0, 1, 2], tf.int32))
    np.testing.assert_array_equal(preprocessing.genre_multi_hot(ids, 2).numpy(), [[0, 1], [1, 0]])


def test_multi_hot_ignores_out_of_range_and_repeats():
    ids = tf.ragged.constant([[0, 0, 2], [-1, 5], []], dtype=tf.int64)
    np.testing.assert_array_equal(preprocessing.genre_multi_hot(ids, 3).numpy(),
                                  [[1, 0, 1], [0, 0, 0], [0, 0, 0]])


def test_schema_names_match_features_module():
    schema = io_utils.parse_pbtxt_file(default_schema_path(), schema_pb2.Schema())
    assert sorted(f.name for f in schema.feature) == sorted(features.RAW_FEATURES)
    spec = schema_utils.schema_as_feature_spec(schema).feature_spec
    assert isinstance(spec[features.GENRES], tf.io.VarLenFeature)
    rating = next(f for f in schema.feature if f.name == features.RATING)
    assert (rating.float_domain.min, rating.float_domain.max) == (0.5, 5.0)


def test_transform_in_process_analyzes_train_only_and_transforms_both(tmp_path, monkeypatch):
    from movierec.components import training_data
    from movierec.components.data.readers import RatingRecord

    def record(user, movie, rating, genres, timestamp):
        return RatingRecord(user, movie, rating, timestamp, f"T {movie}", tuple(genres))

    train = [record(u, m, r, gs, i) for i, (u, m, r, gs) in enumerate(ROWS)]
    # eval: a known pair, an unseen user, an unseen movie (whose genre "Horror" is unseen too)
    evaluation = [record("c", "m2", 3.0, ["Comedy"], 10), record("z", "m1", 1.0, ["Drama"], 11),
                  record("a", "m9", 2.0, ["Horror", "Drama"], 12)]
    schema = io_utils.parse_pbtxt_file(default_schema_path(), schema_pb2.Schema())
    out = preprocessing.transform_in_process(train, evaluation, schema, str(tmp_path))
    tft_out = tft.TFTransformOutput(out.transform_output)
    # by frequency in train only: users a 3, b 2, c 1; movies m1 3, m2 2, m3 1; Drama 5, Comedy 2
    assert tft_out.vocabulary_by_name(features.USER_VOCAB) == [b"a", b"b", b"c"]
    assert tft_out.vocabulary_by_name(features.MOVIE_VOCAB) == [b"m1", b"m2", b"m3"]
    with tf.io.gfile.GFile(tft_out.vocabulary_file_by_name(features.GENRE_VOCAB)) as f:
        assert f.read().split() == ["Drama", "Comedy"]
    tr = training_data.read_interactions([out.train_files])
    order = np.argsort(tr.timestamp)   # Beam need not keep the input order
    assert tr.user_idx[order].tolist() == [0, 0, 0, 1, 1, 2]
    assert tr.movie_idx[order].tolist() == [0, 1, 2, 0, 1, 0]
    assert tr.rating[order].tolist() == [4.0, 3.0, 5.0, 2.0, 1.0, 5.0]
    # title and genre ids once per movie, also when a movie's ratings span read batches
    monkeypatch.setattr(training_data, "_READ_BATCH", 2)
    small = training_data.read_interactions([out.train_files])
    np.testing.assert_array_equal(small.movie_idx, tr.movie_idx)
    for data in (tr, small):
        genres = tf.RaggedTensor.from_row_splits(data.movies.genre_values, data.movies.genre_row_splits).to_list()
        assert sorted(zip(data.movies.movie_idx.tolist(), data.movies.title.tolist(), genres)) == [
            (0, b"T m1", [0]), (1, b"T m2", [1, 0]), (2, b"T m3", [])]
    ev = training_data.read_interactions([out.eval_files])
    order = np.argsort(ev.timestamp)
    assert ev.timestamp[order].tolist() == [10, 11, 12]
    assert ev.user_idx[order].tolist() == [2, 3, 0]      # "z" unseen: OOV index 3
    assert ev.movie_idx[order].tolist() == [1, 0, 3]     # "m9" unseen: OOV index 3
    # title and genre ids once per movie index: "Horror" unseen: -1
    genres = tf.RaggedTensor.from_row_splits(ev.movies.genre_values, ev.movies.genre_row_splits).to_list()
    assert sorted(zip(ev.movies.movie_idx.tolist(), ev.movies.title.tolist(), genres)) == [
        (0, b"T m1", [0]), (1, b"T m2", [1]), (3, b"T m9", [-1, 0])]


def test_transform_in_process_refuses_an_empty_train_part(tmp_path):
    """No train records: nothing to build vocabularies from, refused before Beam starts."""
    schema = io_utils.parse_pbtxt_file(default_schema_path(), schema_pb2.Schema())
    with pytest.raises(ValueError, match="no train records to analyze"):
        preprocessing.transform_in_process([], [], schema, str(tmp_path))
    assert not (tmp_path / "transform_graph").exists()
