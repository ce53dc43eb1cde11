"""Batched StatisticsGen and Transform: the same outputs as TFX's own executors, really run
(in-process Beam, tf.Transform, TFDV) on hand-made examples."""
from __future__ import annotations

import glob
import json
import os
import shutil

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from apache_beam.testing.util import assert_that
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.components.statistics_gen import executor as tfx_statistics_executor
from tfx.components.transform import executor as tfx_transform_executor
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs as sc
from tfx.utils import io_utils
from tfx_bsl.coders import example_coder
from tfx_bsl.tfxio import tf_example_record

from movierec.components import batched_components, batched_tfxio, features
from movierec.config import LOCAL_BEAM_ARGS, default_schema_path
from movierec.pipeline import pipeline

GENRES = ["Drama", "Comedy", "Action", "Horror"]


def make_examples(n: int, seed: int) -> list[bytes]:
    """n rating examples over 20 users and 30 movies; a movie's genres (0-3 of them) and
    title are fixed per movie, as ExampleGen writes them."""
    rng = np.random.default_rng(seed)
    movie_genres = [list(rng.choice(GENRES, size=int(rng.integers(0, 4)), replace=False)) for _ in range(30)]
    out = []
    for i in range(n):
        user, movie = int(rng.integers(0, 20)), int(rng.integers(0, 30))
        f = {features.USER_ID: tf.train.Feature(bytes_list=tf.train.BytesList(value=[f"u{user}".encode()])),
             features.MOVIE_ID: tf.train.Feature(bytes_list=tf.train.BytesList(value=[f"m{movie}".encode()])),
             features.RATING: tf.train.Feature(float_list=tf.train.FloatList(value=[0.5 * int(rng.integers(1, 11))])),
             features.TIMESTAMP: tf.train.Feature(int64_list=tf.train.Int64List(value=[1_000_000 + i])),
             features.TITLE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[f"Movie {movie} (1999)".encode()])),
             features.GENRES: tf.train.Feature(bytes_list=tf.train.BytesList(value=[g.encode() for g in movie_genres[movie]]))}
        out.append(tf.train.Example(features=tf.train.Features(feature=f)).SerializeToString())
    return out


def write_records(path: str, records: list[bytes]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    options = tf.io.TFRecordOptions(compression_type="GZIP" if path.endswith(".gz") else "")
    with tf.io.TFRecordWriter(path, options) as w:
        for r in records:
            w.write(r)


@pytest.fixture(scope="module")
def examples_dir(tmp_path_factory) -> str:
    """Split-train in two files (150 + 100 examples), Split-eval in one (60), Split-empty: an
    empty file (a split without examples)."""
    d = str(tmp_path_factory.mktemp("examples"))
    write_records(os.path.join(d, "Split-train", "data-0.gz"), make_examples(150, 1))
    write_records(os.path.join(d, "Split-train", "data-1.gz"), make_examples(100, 2))
    write_records(os.path.join(d, "Split-eval", "data-0.gz"), make_examples(60, 3))
    write_records(os.path.join(d, "Split-empty", "data-0.gz"), [])
    return d


def examples_artifact(uri: str, splits=("train", "eval", "empty")):
    a = standard_artifacts.Examples()
    a.uri = uri
    a.split_names = artifact_utils.encode_split_names(list(splits))
    a.span = 0
    examples_utils.set_payload_format(a, example_gen_pb2.FORMAT_TF_EXAMPLE)
    examples_utils.set_file_format(a, "tfrecords_gzip")
    return a


def artifact(kind, uri: str):
    a = kind()
    a.uri = uri
    return a


def context(tmp: str, beam_args=LOCAL_BEAM_ARGS):
    return base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=list(beam_args), tmp_dir=tmp + "/",
                                                      unique_id="test")


def schema() -> schema_pb2.Schema:
    return io_utils.parse_pbtxt_file(default_schema_path(), schema_pb2.Schema())


def rows_of(batches) -> list[tuple]:
    rows = []
    for b in batches:
        d = b.to_pydict()
        rows += [tuple(json.dumps(d[name][i], default=repr) for name in sorted(d)) for i in range(b.num_rows)]
    return sorted(rows)


def test_batched_source_reads_the_rows_tfx_reads_in_batches_of_the_size_asked(examples_dir):
    pattern = os.path.join(examples_dir, "Split-train", "*")
    stock = tf_example_record.TFExampleRecord(pattern, schema=schema())
    batched = batched_tfxio.batched(stock)
    assert type(batched) is batched_tfxio.BatchedTFExampleRecord
    assert batched.ArrowSchema().equals(stock.ArrowSchema())
    assert batched.TensorRepresentations() == stock.TensorRepresentations()
    assert batched.files() == sorted(glob.glob(pattern))
    projected = batched.Project([features.USER_ID, features.GENRES])
    assert type(projected.projected) is batched_tfxio.BatchedTFExampleRecord   # what its BeamSource uses
    assert set(projected.ArrowSchema().names) == {features.USER_ID, features.GENRES}

    records = [r.numpy() for r in tf.data.TFRecordDataset(batched.files(), compression_type="GZIP")]
    expected = rows_of([example_coder.ExamplesToRecordBatchDecoder(schema().SerializeToString()).DecodeBatch(records)])
    assert len(expected) == 250

    def same_rows(max_rows):
        def check(batches):
            assert all(b.num_rows <= max_rows for b in batches), [b.num_rows for b in batches]
            assert rows_of(batches) == expected
        return check

    with beam.Pipeline() as p:
        assert_that(p | "Stock" >> stock.BeamSource(), same_rows(1000), label="CheckStock")
        assert_that(p | "Batched" >> batched.BeamSource(batch_size=40), same_rows(40), label="CheckBatched")
    # each file in order, 40 rows a batch: 150 = 3 x 40 + 30, 100 = 2 x 40 + 20
    sizes = [[b.num_rows for b in batched.read_file(path, 40)] for path in batched.files()]
    assert sizes == [[40, 40, 40, 30], [40, 40, 20]]


def parsed_records(folder: str) -> list[bytes]:
    files = sorted(glob.glob(os.path.join(folder, "*")))
    assert files, f"no files in {folder}"
    return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


# -- StatisticsGen -----------------------------------------------------------------------------
def run_statistics(executor_class, examples_dir: str, out: str) -> dict:
    import tensorflow_data_validation as tfdv  # noqa: PLC0415

    stats = artifact(standard_artifacts.ExampleStatistics, out)
    props = {sc.STATS_OPTIONS_JSON_KEY: pipeline.statistics_options().to_json(), sc.EXCLUDE_SPLITS_KEY: "[]"}
    executor_class(context(out + "-tmp")).Do({sc.EXAMPLES_KEY: [examples_artifact(examples_dir, ("train", "eval"))]},
                                             {sc.STATISTICS_KEY: [stats]}, props)
    return {split: tfdv.load_stats_binary(os.path.join(out, f"Split-{split}", "FeatureStats.pb")).datasets[0]
            for split in ("train", "eval")}


def summary(dataset) -> dict:
    """What the schema checks and what the sketches give, per feature (exact fields only)."""
    out = {"num_examples": dataset.num_examples}
    for f in dataset.features:
        stats = f.num_stats if f.HasField("num_stats") else f.string_stats
        common = stats.common_stats
        entry = {"non_missing": common.num_non_missing, "missing": common.num_missing,
                 "min_values": common.min_num_values, "max_values": common.max_num_values,
                 "total_values": common.tot_num_values}
        if f.HasField("num_stats"):
            entry.update(min=f.num_stats.min, max=f.num_stats.max, mean=round(f.num_stats.mean, 6))
        else:
            entry.update(unique=f.string_stats.unique,
                         top=sorted((v.frequency, v.value) for v in f.string_stats.top_values))
        out[f.path.step[0]] = entry
    return out


def test_statistics_gen_batched_gives_tfx_statistics(examples_dir, tmp_path):
    ours = run_statistics(batched_components.StatisticsGenExecutor, examples_dir, str(tmp_path / "ours"))
    tfx = run_statistics(tfx_statistics_executor.Executor, examples_dir, str(tmp_path / "tfx"))
    for split in ("train", "eval"):
        assert summary(ours[split]) == summary(tfx[split]), split
    # hand-checked against the examples themselves
    records = [tf.train.Example.FromString(r) for r in parsed_records(os.path.join(examples_dir, "Split-train"))]
    users = {e.features.feature[features.USER_ID].bytes_list.value[0] for e in records}
    ratings = [e.features.feature[features.RATING].float_list.value[0] for e in records]
    train = summary(ours["train"])
    assert train["num_examples"] == 250 and summary(ours["eval"])["num_examples"] == 60
    assert train[features.USER_ID]["unique"] == len(users)
    assert (train[features.RATING]["min"], train[features.RATING]["max"]) == (min(ratings), max(ratings))
    assert train[features.GENRES]["total_values"] == sum(
        len(e.features.feature[features.GENRES].bytes_list.value) for e in records)


# -- Transform ---------------------------------------------------------------------------------
def run_transform(executor_class, examples_dir: str, out: str) -> tuple[str, str]:
    schema_dir = os.path.join(out, "schema")
    os.makedirs(schema_dir)
    shutil.copy(default_schema_path(), os.path.join(schema_dir, "schema.pbtxt"))
    graph = artifact(standard_artifacts.TransformGraph, os.path.join(out, "graph"))
    transformed = artifact(standard_artifacts.Examples, os.path.join(out, "transformed"))
    props = {sc.PREPROCESSING_FN_KEY: pipeline.PREPROCESSING_FN, sc.CUSTOM_CONFIG_KEY: json.dumps({"code": "test"}),
             sc.FORCE_TF_COMPAT_V1_KEY: 0, sc.DISABLE_STATISTICS_KEY: 1}
    executor_class(context(os.path.join(out, "tmp"))).Do(
        {sc.EXAMPLES_KEY: [examples_artifact(examples_dir)],
         sc.SCHEMA_KEY: [artifact(standard_artifacts.Schema, schema_dir)]},
        {sc.TRANSFORM_GRAPH_KEY: [graph], sc.TRANSFORMED_EXAMPLES_KEY: [transformed]}, props)
    assert sorted(artifact_utils.decode_split_names(transformed.split_names)) == ["empty", "eval", "train"]
    return graph.uri, transformed.uri


def transformed_rows(folder: str) -> list[tuple]:
    spec = {features.USER_IDX: tf.io.FixedLenFeature([], tf.int64),
            features.MOVIE_IDX: tf.io.FixedLenFeature([], tf.int64),
            features.RATING: tf.io.FixedLenFeature([], tf.float32),
            features.WEIGHT: tf.io.FixedLenFeature([], tf.float32),
            features.TIMESTAMP: tf.io.FixedLenFeature([], tf.int64),
            features.TITLE: tf.io.FixedLenFeature([], tf.string),
            features.GENRE_IDS: tf.io.VarLenFeature(tf.int64)}
    rows = []
    for record in parsed_records(folder):
        x = tf.io.parse_single_example(record, spec)
        rows.append((int(x[features.USER_IDX]), int(x[features.MOVIE_IDX]), float(x[features.RATING]),
                     float(x[features.WEIGHT]), int(x[features.TIMESTAMP]), x[features.TITLE].numpy(),
                     tuple(x[features.GENRE_IDS].values.numpy().tolist())))
    return sorted(rows)


def test_transform_batched_gives_tfx_outputs_and_writes_a_file_per_bundle(examples_dir, tmp_path):
    ours_graph, ours = run_transform(batched_components.TransformExecutor, examples_dir, str(tmp_path / "ours"))
    tfx_graph, tfx = run_transform(tfx_transform_executor.Executor, examples_dir, str(tmp_path / "tfx"))
    ours_out, tfx_out = tft.TFTransformOutput(ours_graph), tft.TFTransformOutput(tfx_graph)
    for vocab in (features.USER_VOCAB, features.MOVIE_VOCAB, features.GENRE_VOCAB):
        assert ours_out.vocabulary_by_name(vocab) == tfx_out.vocabulary_by_name(vocab), vocab
    # the user vocabulary by hand: train users by count, ties by id (larger first)
    counts: dict[bytes, int] = {}
    for r in parsed_records(os.path.join(examples_dir, "Split-train")):
        user = tf.train.Example.FromString(r).features.feature[features.USER_ID].bytes_list.value[0]
        counts[user] = counts.get(user, 0) + 1
    assert ours_out.vocabulary_by_name(features.USER_VOCAB) == sorted(counts, key=lambda u: (counts[u], u), reverse=True)
    for split, n in (("train", 250), ("eval", 60), ("empty", 0)):
        rows = transformed_rows(os.path.join(ours, f"Split-{split}"))
        assert rows == transformed_rows(os.path.join(tfx, f"Split-{split}")), split
        assert len(rows) == n
    # written a record batch at a time (one file per bundle), not by Beam's sharded sink
    assert [os.path.basename(p).startswith("transformed_examples-") and not p.endswith("-of-00001.gz")
            for p in glob.glob(os.path.join(ours, "Split-train", "*"))] == [True]
    assert [os.path.basename(p) for p in glob.glob(os.path.join(ours, "Split-empty", "*"))] == [
        "transformed_examples-empty.gz"]
    assert [os.path.basename(p) for p in glob.glob(os.path.join(tfx, "Split-train", "*"))] == [
        "transformed_examples-00000-of-00001.gz"]
