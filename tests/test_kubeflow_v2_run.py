"""The compiled Kubeflow V2 spec runs: its container commands, against an S3 bucket.

`movierec compile-kfp` writes the spec with the data and the output folder in a bucket of
moto's S3 server (started on loopback, see tests/test_object_store.py). For
MovieLensExampleGen, Transform and Trainer.mf, the test builds the executor input the KFP
launcher hands the container (`{{$}}`), with the KFP SDK's own local-runner helpers
(`kfp.local`): output artifacts at `<pipeline_root>/<job>/<task>/<output key>`, the
output metadata file `executor_output.json` beside them (in the bucket, as on Vertex AI),
parameters from the task's constants, input artifacts as the producer task reported them
in its output metadata file. It then runs the container's command and arguments from the
spec, placeholders filled by `kfp.local.placeholder_utils`, in a subprocess whose `python`
is this virtualenv's (the pipeline image's environment: the same lock). ImportSchemaGen's
output is put in place beforehand: its schema file is a path inside the image.

Checked: every command exits 0; the examples in the bucket are the input's ratings split
into train and eval; the output metadata files carry the artifacts' URIs and split names;
the Trainer's SavedModel loads from the bucket and recommends unrated movies. Exit
status: a failing step exits 1 through the spec's command, where TFX's own entry point is
killed by SIGABRT, status 134 (tensorflow-io's exit-time abort after S3 access, see
movierec/filesystems.py).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.test_object_store import BUCKET, pytestmark, run_on_s3, s3_endpoint, s3_env, write_ml100k  # noqa: F401

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = f"s3://{BUCKET}/kfp"
DATA = f"{ROOT}/ml-100k"
OUTPUT = f"{ROOT}/out"
JOB = "movierec-test-job"
SCHEMA_FILE = os.path.join(REPO, "components", "schema", "schema.pbtxt")


def bucket_client(endpoint: str):
    import boto3  # noqa: PLC0415

    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                        region_name="us-east-1")


def keys(client, prefix: str) -> list[str]:
    """Object keys under s3://BUCKET/prefix, relative to it."""
    found = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        found += [o["Key"][len(prefix):] for o in page.get("Contents", [])]
    return sorted(found)


def key_of(url: str) -> str:
    assert url.startswith(f"s3://{BUCKET}/"), url
    return url[len(f"s3://{BUCKET}/"):]


def container_env(endpoint: str, tmp_path) -> dict:
    """The container's environment: the AWS settings for TensorFlow's S3 plug-in (S3_*) and
    for Beam's boto3 S3 file system (AWS_ENDPOINT_URL_S3), and `python` from this
    virtualenv first on PATH."""
    env = s3_env(endpoint)
    env.update(AWS_ENDPOINT_URL_S3=endpoint, PATH=os.path.dirname(sys.executable) + os.pathsep + env["PATH"],
               HOME=str(tmp_path), PYTHONWARNINGS="ignore")
    env.pop("PYTHONPATH", None)
    return env


class SpecRunner:
    """Runs tasks of a compiled spec the way the KFP launcher runs their containers."""

    def __init__(self, spec: dict, endpoint: str, workdir):
        self.pipeline = spec["pipelineSpec"]
        self.pipeline_root = spec["runtimeConfig"]["gcsOutputDirectory"]
        self.env = container_env(endpoint, workdir)
        self.workdir = workdir
        self.outputs: dict[tuple[str, str], dict] = {}   # (task, key) -> RuntimeArtifact JSON

    def task_root(self, task: str) -> str:
        from kfp.local import executor_input_utils  # noqa: PLC0415

        return executor_input_utils.construct_local_task_root(self.pipeline_root, JOB, task)

    def executor_input(self, task: str, parameters: dict | None = None) -> dict:
        """ExecutorInput JSON of `task`: its constants (or `parameters` in their place),
        the producers' reported artifacts, fresh output artifacts under the task root."""
        from google.protobuf import json_format  # noqa: PLC0415
        from kfp.local import executor_input_utils  # noqa: PLC0415
        from kfp.pipeline_spec import pipeline_spec_pb2  # noqa: PLC0415

        node = self.pipeline["root"]["dag"]["tasks"][task]
        component = self.pipeline["components"][node["componentRef"]["name"]]
        root = self.task_root(task)
        values = {name: p["runtimeValue"]["constant"] for name, p in node["inputs"].get("parameters", {}).items()}
        values.update(parameters or {})
        artifacts = {}
        for name, source in node["inputs"].get("artifacts", {}).items():
            producer = source["taskOutputArtifact"]
            reported = self.outputs[(producer["producerTask"], producer["outputArtifactKey"])]
            artifacts[name] = {"artifacts": [{
                "name": reported["name"], "uri": reported["uri"], "metadata": reported.get("metadata", {}),
                "type": component["inputDefinitions"]["artifacts"][name]["artifactType"]}]}
        component_spec = json_format.ParseDict(component, pipeline_spec_pb2.ComponentSpec())
        outputs = {name: json_format.MessageToDict(executor_input_utils.make_artifact_list(name, spec.artifact_type, root))
                   for name, spec in component_spec.output_definitions.artifacts.items()}
        message = json_format.ParseDict(
            {"inputs": {"parameterValues": values, "artifacts": artifacts},
             "outputs": {"artifacts": outputs, "outputFile": f"{root}/executor_output.json"}},
            pipeline_spec_pb2.ExecutorInput())
        return executor_input_utils.executor_input_to_dict(message, component_spec)

    def command(self, task: str, executor_input: dict, command: list[str] | None = None) -> list[str]:
        """The container's command + args from the spec, placeholders filled as KFP does."""
        from kfp.local import placeholder_utils  # noqa: PLC0415

        component = self.pipeline["components"][self.pipeline["root"]["dag"]["tasks"][task]["componentRef"]["name"]]
        container = self.pipeline["deploymentSpec"]["executors"][component["executorLabel"]]["container"]
        return placeholder_utils.replace_placeholders(
            list(command or container["command"]) + container["args"], executor_input,
            pipeline_resource_name=JOB, task_resource_name=task, pipeline_root=self.pipeline_root)

    def run(self, task: str, parameters: dict | None = None, command: list[str] | None = None,
            timeout: float = 900) -> subprocess.CompletedProcess:
        args = self.command(task, self.executor_input(task, parameters), command)
        log = self.workdir / f"{task}.log"
        started = time.time()
        with open(log, "wb") as out:
            proc = subprocess.run(args, cwd=self.workdir, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=timeout)
        proc.seconds = time.time() - started
        proc.log = log.read_text(errors="replace")
        return proc

    def record_outputs(self, task: str, reported: dict) -> None:
        for name, artifact_list in reported["artifacts"].items():
            self.outputs[(task, name)] = artifact_list["artifacts"][0]


def read_output_metadata(client, runner: SpecRunner, task: str) -> dict:
    body = client.get_object(Bucket=BUCKET, Key=key_of(runner.task_root(task) + "/executor_output.json"))["Body"]
    return json.loads(body.read())


@pytest.fixture(scope="module")
def compiled(tmp_path_factory, s3_endpoint):
    """The ml-100k folder uploaded to the bucket and the spec compiled for it: (spec, local data)."""
    from movierec import cli

    work = tmp_path_factory.mktemp("kfp")
    local = write_ml100k(str(work / "ml-100k"))
    client = bucket_client(s3_endpoint)
    for name in sorted(os.listdir(local)):
        client.upload_file(os.path.join(local, name), BUCKET, f"{key_of(DATA)}/{name}")
    out = work / "spec.json"
    code = cli.main(["compile-kfp", "--data-dir", DATA, "--output-dir", OUTPUT, "--image", "movierec:test",
                     "--out", str(out), "--mf-objective", "mse", "--epochs", "2", "--no-cache"])
    assert code == 0
    return json.loads(out.read_text()), local


@pytest.fixture(scope="module")
def ran(compiled, s3_endpoint, tmp_path_factory):
    """ExampleGen, Transform and Trainer.mf run from the spec, in that order."""
    spec, local = compiled
    client = bucket_client(s3_endpoint)
    runner = SpecRunner(spec, s3_endpoint, tmp_path_factory.mktemp("containers"))
    # ImportSchemaGen's output, put in place: its schema_file is the schema's path in the image
    schema_uri = f"{runner.task_root('ImportSchemaGen')}/schema"
    client.upload_file(SCHEMA_FILE, BUCKET, key_of(schema_uri) + "/schema.pbtxt")
    runner.outputs[("ImportSchemaGen", "schema")] = {"name": "schema", "uri": schema_uri, "metadata": {}}
    procs, reported = {}, {}
    for task in ("MovieLensExampleGen", "Transform", "Trainer.mf"):
        proc = procs[task] = runner.run(task)
        assert proc.returncode == 0, f"{task}: exit {proc.returncode}\n{' '.join(proc.args[:6])} ...\n{proc.log[-6000:]}"
        reported[task] = read_output_metadata(client, runner, task)
        runner.record_outputs(task, reported[task])
    for task, proc in procs.items():
        print(f"{task}: {proc.seconds:.1f} s")
    return {"runner": runner, "procs": procs, "reported": reported, "local": local, "client": client}


def test_spec_commands_are_the_movierec_entry_point_with_tfx_arguments(compiled):
    spec, _ = compiled
    assert spec["pipelineSpec"]["schemaVersion"] == "2.1.0"
    assert spec["runtimeConfig"]["gcsOutputDirectory"] == f"{OUTPUT}/pipeline"
    for label, executor in spec["pipelineSpec"]["deploymentSpec"]["executors"].items():
        if "container" not in executor:
            continue  # the LatestBlessed resolvers run in the orchestrator
        container = executor["container"]
        assert container["command"] == ["python", "-m", "movierec.pipeline.kubeflow_v2_runner"], label
        assert container["image"] == "movierec:test"
        args = container["args"]
        assert args[0] == "--executor_class_path" and args[2:4] == ["--json_serialized_invocation_args", "{{$}}"]
        assert args[4] == "--json_serialized_inputs_spec_args"


def test_example_gen_writes_the_ratings_into_the_bucket(ran, s3_endpoint):
    reported = ran["reported"]["MovieLensExampleGen"]["artifacts"]["examples"]["artifacts"][0]
    root = ran["runner"].task_root("MovieLensExampleGen")
    assert reported["uri"] == f"{root}/examples" and reported["uri"].startswith(f"{OUTPUT}/pipeline/")
    assert json.loads(reported["metadata"]["split_names"]) == ["train", "eval"]
    files = keys(ran["client"], key_of(reported["uri"]) + "/")
    assert {f.split("/")[0] for f in files} == {"Split-train", "Split-eval"}, files
    counted = run_on_s3(s3_endpoint, """
uri = sys.argv[1]
import pyarrow as pa, pyarrow.parquet as pq
def count(split):
    files = tf.io.gfile.glob(f"{uri}/Split-{split}/*.parquet")
    assert files, split
    return sum(pq.ParquetFile(pa.BufferReader(tf.io.gfile.GFile(f, "rb").read())).metadata.num_rows for f in files)
result = {"train": count("train"), "eval": count("eval")}
""", reported["uri"])
    from tests.test_object_store import local_records

    ratings = len(local_records(ran["local"]))
    assert counted["train"] + counted["eval"] == ratings > 1000
    # hash buckets 80:20: the eval share of 1500 ratings is binomial, sd about 1 point
    assert 0.14 < counted["eval"] / ratings < 0.26, counted


def test_transform_and_trainer_write_their_artifacts_and_metadata(ran, s3_endpoint):
    runner, client = ran["runner"], ran["client"]
    transform = ran["reported"]["Transform"]["artifacts"]
    assert transform["transform_graph"]["artifacts"][0]["uri"] == f"{runner.task_root('Transform')}/transform_graph"
    graph_files = keys(client, key_of(transform["transform_graph"]["artifacts"][0]["uri"]) + "/")
    assert "transform_fn/saved_model.pb" in graph_files and "transformed_metadata/schema.pbtxt" in graph_files
    assert "transformed_examples" not in transform   # the Trainers apply the graph themselves

    model = ran["reported"]["Trainer.mf"]["artifacts"]["model"]["artifacts"][0]
    assert model["uri"] == f"{runner.task_root('Trainer.mf')}/model"
    serving = model["uri"] + "/Format-Serving"
    model_files = keys(client, key_of(serving) + "/")
    assert "saved_model.pb" in model_files and "variables/variables.index" in model_files, model_files

    from tests.test_object_store import local_records

    records = local_records(ran["local"])
    user = records[0][0]
    got = run_on_s3(s3_endpoint, """
model = tf.saved_model.load(sys.argv[1])
out = model.signatures["serving_default"](user_id=tf.constant([sys.argv[2]]))
result = {"movie_ids": [m.decode() for m in out["movie_ids"].numpy()[0]], "outputs": sorted(out)}
""", serving, str(user))
    catalog = {str(r[1]) for r in records}
    rated = {str(r[1]) for r in records if r[0] == user}
    movies = [m for m in got["movie_ids"] if m]
    assert {"movie_ids", "titles", "scores"} <= set(got["outputs"])
    assert movies and len(set(movies)) == len(movies) and set(movies) <= catalog - rated, (movies, rated)


def test_a_failing_step_exits_1_where_tfx_entry_point_exits_134(compiled, s3_endpoint, tmp_path):
    """Missing input folder in the bucket: the spec's command reports the failure as the
    interpreter would (1); TFX's own entry point, same arguments, aborts with 134 (SIGABRT
    from tensorflow-io's S3 plug-in at exit), whatever the step's outcome."""
    from tfx.orchestration.kubeflow.v2.kubeflow_v2_dag_runner import KUBEFLOW_TFX_CMD

    spec, _ = compiled
    runner = SpecRunner(spec, s3_endpoint, tmp_path)
    missing = {"input_base": f"{ROOT}/no-such-folder"}
    ours = runner.run("MovieLensExampleGen", parameters=missing)
    assert ours.returncode == 1, ours.log[-4000:]
    assert f"{ROOT}/no-such-folder" in ours.log and "Traceback" in ours.log
    stock = runner.run("MovieLensExampleGen", parameters=missing, command=list(KUBEFLOW_TFX_CMD))
    assert stock.returncode == -signal.SIGABRT, stock.log[-4000:]  # 134 in a shell and in KFP
    assert "pure virtual method called" in stock.log
