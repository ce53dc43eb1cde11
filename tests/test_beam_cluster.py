"""The pipeline's Beam components on a real Beam cluster started by the test, against the
in-process run.

`LocalBeamCluster` starts Beam's job service and an external SDK worker pool as their own
processes on loopback; ExampleGen, StatisticsGen, the schema check and Transform of
`create_pipeline` run there through TFX's LocalDagRunner (ML Metadata in SQLite) with
`--runner=PortableRunner --environment_type=EXTERNAL` and 2 SDK workers per pipeline, the
same way Flink or Spark run Python workers on Kubernetes. The same components then run on
the default in-process runner, and the outputs must match: the same example rows in each
split, the same rows through the transform graph (as the Trainers read them), byte-identical
vocabulary files, the same statistics counts. Expected values are also worked out from the examples themselves (the
user vocabulary is the train split's user IDs by descending count, ties by descending ID).

That the work ran in the cluster's worker processes, not in this one: the job service lists
one finished job per Beam component (ExampleGen, StatisticsGen, Transform), the worker pool
started two SDK worker processes for each, and the in-process run adds no job.
"""
from __future__ import annotations

import collections
import os

import numpy as np
import pytest

from tests.conftest import mlmd_store

BEAM_COMPONENTS = 3     # MovieLensExampleGen, StatisticsGen, Transform: one Beam job each
WORKERS = 2
SPLITS = ("train", "eval")


def _artifact_uri(output_dir: str, type_name: str, producer: str) -> str:
    """The one artifact of this type that component `producer` wrote (<root>/<producer>/...)."""
    [uri] = [a.uri for a in mlmd_store(output_dir).get_artifacts_by_type(type_name)
             if f"{os.sep}{producer}{os.sep}" in a.uri]
    return uri


def _records(examples_uri: str, split: str) -> collections.Counter:
    """The Parquet rows of one split as a multiset of (feature, values) tuples: file and row
    order depend on the runner's bundles, the rows do not."""
    import pyarrow.parquet as pq
    import tensorflow as tf

    files = tf.io.gfile.glob(os.path.join(examples_uri, f"Split-{split}", "*.parquet"))
    assert files, f"no Parquet files in {examples_uri}/Split-{split}"
    return collections.Counter(
        tuple((name, None if values is None else tuple(values)) for name, values in sorted(row.items()))
        for f in files for row in pq.read_table(f).to_pylist())


def _transformed(examples_uri: str, transform_graph_uri: str, split: str) -> tuple[list, list]:
    """One split through the run's transform graph, as the Trainers read it: sorted rows of
    (user_idx, movie_idx, rating, timestamp), and of (movie_idx, title, genre ids)."""
    from movierec.components import training_data

    data = training_data.read_interactions([os.path.join(examples_uri, f"Split-{split}", "*")], transform_graph_uri)
    movies = data.movies
    genres = np.split(movies.genre_values, movies.genre_row_splits[1:-1])
    return (sorted(zip(data.user_idx.tolist(), data.movie_idx.tolist(), data.rating.tolist(), data.timestamp.tolist())),
            sorted(zip(movies.movie_idx.tolist(), movies.title.tolist(), (tuple(g.tolist()) for g in genres))))


def _vocabularies(transform_graph_uri: str) -> dict[str, bytes]:
    import tensorflow as tf

    assets = os.path.join(transform_graph_uri, "transform_fn", "assets")
    out = {}
    for name in tf.io.gfile.listdir(assets):
        with tf.io.gfile.GFile(os.path.join(assets, name), "rb") as f:
            out[name] = f.read()
    return out


def _stat_counts(statistics_uri: str, split: str) -> dict:
    """num_examples and, per feature, the counts TFDV computes exactly."""
    import tensorflow_data_validation as tfdv

    [stats] = tfdv.load_stats_binary(os.path.join(statistics_uri, f"Split-{split}", "FeatureStats.pb")).datasets
    counts = {"num_examples": stats.num_examples}
    for feature in stats.features:
        kind = feature.WhichOneof("stats")
        common = getattr(feature, kind).common_stats
        counts[feature.path.step[0]] = dict(
            non_missing=common.num_non_missing, missing=common.num_missing, values=common.tot_num_values,
            unique=feature.string_stats.unique if kind == "string_stats" else None)
    return counts


def _outputs(output_dir: str) -> dict:
    examples = _artifact_uri(output_dir, "Examples", "MovieLensExampleGen")
    graph = _artifact_uri(output_dir, "TransformGraph", "Transform")
    return dict(
        examples={s: _records(examples, s) for s in SPLITS},
        transformed={s: _transformed(examples, graph, s) for s in SPLITS},
        vocabularies=_vocabularies(graph),
        statistics={s: _stat_counts(_artifact_uri(output_dir, "ExampleStatistics", "StatisticsGen"), s)
                    for s in SPLITS},
        states=_execution_states(output_dir))


def _execution_states(output_dir: str) -> dict[str, str]:
    from ml_metadata.proto import metadata_store_pb2

    store = mlmd_store(output_dir)
    types = {t.id: t.name.split(".")[-1] for t in store.get_execution_types()}
    return {types[e.type_id]: metadata_store_pb2.Execution.State.Name(e.last_known_state)
            for e in store.get_executions()}


def _user_vocabulary_expected(train_records) -> bytes:
    """TFT's vocabulary order: descending count, ties by descending value; one per line."""
    counts = collections.Counter()
    for record, n in train_records.items():
        (user,) = dict(record)["user_id"]
        counts[user] += n
    ordered = sorted(counts.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
    return b"".join(user + b"\n" for user, _ in ordered)


@pytest.fixture(scope="module")
def runs(small_synthetic, tmp_path_factory):
    from movierec.config import PipelineConfig
    from movierec.pipeline.beam_cluster import LocalBeamCluster, run_data_components

    root = tmp_path_factory.mktemp("beam_cluster")
    with LocalBeamCluster(workers=WORKERS, log_dir=str(root / "cluster-logs")) as cluster:
        assert cluster.jobs() == []
        run_data_components(PipelineConfig.from_output_dir(
            small_synthetic, str(root / "cluster"), beam_pipeline_args=cluster.beam_args()))
        cluster_jobs = cluster.jobs()
        workers_started = cluster.started_workers()
        run_data_components(PipelineConfig.from_output_dir(small_synthetic, str(root / "in-process")))
        jobs_after_in_process = cluster.jobs()
    return dict(cluster=_outputs(str(root / "cluster")), in_process=_outputs(str(root / "in-process")),
                jobs=cluster_jobs, jobs_after_in_process=jobs_after_in_process, workers=workers_started)


def test_beam_work_ran_in_the_clusters_worker_processes(runs):
    assert [j.state for j in runs["jobs"]] == ["DONE"] * BEAM_COMPONENTS, runs["jobs"]
    assert runs["workers"] == WORKERS * BEAM_COMPONENTS
    assert runs["jobs_after_in_process"] == runs["jobs"]   # the in-process run never reached it


def test_every_component_completed_on_both_engines(runs):
    expected = {"MovieLensExampleGen": "COMPLETE", "StatisticsGen": "COMPLETE", "ImportSchemaGen": "COMPLETE",
                "StrictExampleValidator": "COMPLETE", "Transform": "COMPLETE"}
    assert runs["cluster"]["states"] == expected
    assert runs["in_process"]["states"] == expected


def test_same_examples_in_each_split(runs):
    cluster, local = runs["cluster"]["examples"], runs["in_process"]["examples"]
    assert sum(sum(cluster[s].values()) for s in SPLITS) == 4000      # every synthetic rating
    assert 0.1 < sum(cluster["eval"].values()) / 4000 < 0.3            # eval_percent 20
    for split in SPLITS:
        assert cluster[split] == local[split], split
    assert runs["cluster"]["transformed"] == runs["in_process"]["transformed"]


def test_same_vocabularies(runs):
    cluster, local = runs["cluster"]["vocabularies"], runs["in_process"]["vocabularies"]
    assert sorted(cluster) == ["genre", "movie_id", "user_id"]
    assert cluster == local
    assert cluster["user_id"] == _user_vocabulary_expected(runs["cluster"]["examples"]["train"])


def test_same_statistics_counts(runs):
    cluster, local = runs["cluster"]["statistics"], runs["in_process"]["statistics"]
    assert cluster == local
    for split in SPLITS:
        n = sum(runs["cluster"]["examples"][split].values())
        assert cluster[split]["num_examples"] == n
        assert cluster[split]["rating"]["non_missing"] == n


def test_a_service_that_cannot_start_is_named_with_the_tail_of_its_log(tmp_path):
    """The worker pool's port is taken: start() fails naming the service, its exit and why."""
    import socket

    from movierec.pipeline.beam_cluster import ClusterStartError, LocalBeamCluster

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cluster = LocalBeamCluster(log_dir=str(tmp_path), pool_port=port)
        with pytest.raises(ClusterStartError) as error:
            cluster.start()
    message = str(error.value)
    assert "Beam worker pool" in message and "exited with code" in message, message
    assert f"127.0.0.1:{port}" in message and str(tmp_path / "worker_pool.log") in message, message


def test_bad_settings_are_refused_by_name():
    from movierec.pipeline.beam_cluster import LocalBeamCluster

    with pytest.raises(ValueError, match="workers=0"):
        LocalBeamCluster(workers=0)
    with pytest.raises(ValueError, match="pool_port=70000"):
        LocalBeamCluster(pool_port=70000)


def test_the_command_prints_the_run_flags_and_stops_its_services_on_sigterm(tmp_path):
    """`python -m movierec.pipeline.beam_cluster`: the printed `movierec run` line reaches a
    live job service; SIGTERM stops the command and both service processes."""
    import shlex
    import signal
    import subprocess
    import sys

    import grpc
    import psutil
    from apache_beam.portability.api import beam_job_api_pb2, beam_job_api_pb2_grpc

    proc = subprocess.Popen([sys.executable, "-m", "movierec.pipeline.beam_cluster", "--workers", "3",
                             "--log-dir", str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        assert lines[1].startswith("movierec run --beam-pipeline-args "), lines
        options = dict(a.lstrip("-").split("=", 1) for a in shlex.split(shlex.split(lines[1])[-1]))
        assert options["runner"] == "PortableRunner" and options["environment_type"] == "EXTERNAL"
        assert options["direct_num_workers"] == "3"
        assert int(options["job_server_timeout"]) >= 3600   # Beam's 300 s would end long jobs
        assert options["environment_config"].startswith("127.0.0.1:")
        with grpc.insecure_channel(options["job_endpoint"]) as channel:
            reply = beam_job_api_pb2_grpc.JobServiceStub(channel).GetJobs(beam_job_api_pb2.GetJobsRequest(), timeout=30)
        assert list(reply.job_info) == []
        services = psutil.Process(proc.pid).children()
        assert len(services) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    gone, alive = psutil.wait_procs(services, timeout=30)
    assert alive == []
