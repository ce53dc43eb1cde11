"""The Kubeflow Pipelines V2 runner compiles the same graph offline, parameters wired; every
container runs movierec's entry point around TFX's; movierec.filesystems' checks and exit.

(The spec's commands running against an object store: tests/test_kubeflow_v2_run.py.)"""
import json
import subprocess
import sys

import pytest

from movierec import cli
from movierec.pipeline.pipeline import COMPONENT_IDS


def test_compile_kfp_v2_spec(tmp_path, capsys):
    out = tmp_path / "spec.json"
    code = cli.main(["compile-kfp", "--data-dir", "gs://bucket/ml-100k", "--output-dir", "gs://bucket/movierec",
                     "--image", "example.com/movierec:1", "--out", str(out), "--epochs", "7"])
    assert code == 0 and capsys.readouterr().out.strip() == str(out)
    spec = json.loads(out.read_text())
    tasks = spec["pipelineSpec"]["root"]["dag"]["tasks"]
    for component in COMPONENT_IDS:
        assert any(t == component or t.startswith(component + "-") for t in tasks), component
    text = out.read_text()
    assert "example.com/movierec:1" in text
    assert "gs://bucket/ml-100k" in text                         # ExampleGen input
    assert "gs://bucket/movierec/serving/mf" in text             # Pusher destination
    assert '\\"epochs\\": 7' in text or '"epochs": 7' in text    # Trainer custom_config
    assert "/opt/movierec/components/schema/schema.pbtxt" in text
    assert spec["runtimeConfig"]["gcsOutputDirectory"] == "gs://bucket/movierec/pipeline"


def test_every_container_runs_the_movierec_entry_point_with_tfx_arguments(tmp_path):
    from movierec.pipeline import kubeflow_v2_runner

    out = tmp_path / "spec.json"
    assert cli.main(["compile-kfp", "--data-dir", "s3://bucket/ml-100k", "--output-dir", "s3://bucket/movierec",
                     "--image", "example.com/movierec:1", "--out", str(out)]) == 0
    spec = json.loads(out.read_text())["pipelineSpec"]
    assert spec["schemaVersion"] == "2.1.0"
    containers = {label: e["container"] for label, e in spec["deploymentSpec"]["executors"].items() if "container" in e}
    assert len(containers) == len(COMPONENT_IDS) - 2  # the two LatestBlessed resolvers run in the orchestrator
    for label, container in containers.items():
        assert container["command"] == list(kubeflow_v2_runner.CONTAINER_COMMAND) == [
            "python", "-m", "movierec.pipeline.kubeflow_v2_runner"], label
        args = container["args"]
        assert args[0] == "--executor_class_path" and args[2:5] == [
            "--json_serialized_invocation_args", "{{$}}", "--json_serialized_inputs_spec_args"], label
        assert json.loads(args[5])  # the component's typed inputs


def test_the_entry_point_finds_every_url_in_the_executor_input():
    from movierec.pipeline.kubeflow_v2_runner import invocation_urls

    invocation = json.dumps({
        "inputs": {"parameterValues": {"input_base": "s3://b/data", "push_destination": json.dumps(
            {"filesystem": {"base_directory": "gs://c/serving/mf"}}), "eval_percent": 20},
            "artifacts": {"examples": {"artifacts": [{"uri": "s3://b/root/t/examples", "name": "examples"}]}}},
        "outputs": {"outputFile": "/tmp/kfp_outputs/output_metadata.json"}})
    expected = ["s3://b/data", "gs://c/serving/mf", "s3://b/root/t/examples"]
    assert invocation_urls(["--executor_class_path", "x.Y", "--json_serialized_invocation_args", invocation,
                            "--runner=FnApiRunner"]) == expected
    assert invocation_urls(["--json_serialized_invocation_args=" + invocation]) == expected
    assert invocation_urls(["--executor_class_path", "x.Y"]) == []


def test_filesystems_refuse_a_scheme_without_its_package_naming_path_and_package(monkeypatch):
    from movierec import filesystems

    assert filesystems.scheme("S3://b/k") == "s3" and filesystems.scheme("/data/x") == ""
    assert filesystems.ensure(None, "", "/local/folder", "gs://bucket/x") == []  # built into TensorFlow
    monkeypatch.setitem(filesystems.PLUGIN_SCHEMES, "zz", ("movierec_no_such_module", "zz-filesystem==1.0"))
    with pytest.raises(RuntimeError, match=r"zz://bucket/data: TensorFlow has no zz:// file system; "
                                           r"install zz-filesystem==1\.0"):
        filesystems.ensure("/local", "zz://bucket/data")
    monkeypatch.setitem(filesystems.PLUGIN_SCHEMES, "zz", ("json", "zz-filesystem==1.0"))
    with pytest.raises(RuntimeError, match=r"zz://bucket/data: importing json did not register zz://"):
        filesystems.ensure("zz://bucket/data")
    assert filesystems.used_plugin_schemes() == []


def test_exit_now_runs_the_interpreters_exit_work_then_exits_with_the_code(tmp_path):
    program = ("import atexit, sys, threading, time\n"
               "from movierec import filesystems\n"
               "atexit.register(lambda: print('atexit ran', flush=True))\n"
               "threading.Thread(target=lambda: (time.sleep(0.5), print('thread done'))).start()\n"
               "sys.stdout.write('buffered line')\n"
               "filesystems.exit_now(7)\n"
               "print('not reached')\n")
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 7, proc.stderr
    # in time order through one buffer: the write, the joined thread, the atexit function
    assert proc.stdout == "buffered linethread done\natexit ran\n", proc.stdout
