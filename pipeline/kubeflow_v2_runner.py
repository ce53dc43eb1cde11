"""Kubeflow Pipelines V2 / Vertex AI Pipelines: compile the pipeline offline, and the
command every component's container runs.

    movierec compile-kfp --data-dir gs://BUCKET/ml-100k --output-dir gs://BUCKET/movierec \\
        --image REGION-docker.pkg.dev/PROJECT/REPO/movierec:TAG --out movierec_pipeline.json

The same `create_pipeline(config)` as the local runner; every component runs in the
pipeline image built from the top-level Dockerfile, whose package carries the curated
schema at IMAGE_SCHEMA_PATH. Submit the JSON with the Vertex AI SDK
(`aiplatform.PipelineJob(template_path=...)`, a schedule with `PipelineJob.create_schedule
(cron="0 3 * * *")`) or the KFP client. docs/kubeflow.md has the whole path.

The spec uses pipeline spec schema 2.1: each container gets its parameters' types
(`--json_serialized_inputs_spec_args`) and TFX's entry point reads the typed
`parameterValues` of the executor input, which both the KFP 2 launcher and Vertex AI fill.

Container command: `python -m movierec.pipeline.kubeflow_v2_runner` followed by the
arguments TFX's compiler writes (`--executor_class_path`, `--json_serialized_invocation_args
{{$}}`, the inputs spec, the Beam arguments). `main` registers the object-store schemes the
executor input names (`movierec.filesystems.ensure`: `s3://` needs tensorflow-io), runs
TFX's own entry point module (`tfx.orchestration.kubeflow.v2.container.
kubeflow_v2_run_executor`) exactly as `python -m` would, and exits with its status
through `movierec.filesystems.finish`, so a step that used S3 reports 0 when it succeeded
instead of tensorflow-io's exit-time abort (134).
"""
from __future__ import annotations

import os
import re
import runpy
import sys
import traceback

from movierec import filesystems

IMAGE_SCHEMA_PATH = "/opt/movierec/components/schema/schema.pbtxt"  # see /Dockerfile
TFX_ENTRYPOINT = "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"
CONTAINER_COMMAND = ("python", "-m", "movierec.pipeline.kubeflow_v2_runner")
_INVOCATION_FLAG = "--json_serialized_invocation_args"
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'\\]+")


def compile_pipeline(config, image: str, output_file: str) -> str:
    """Writes the KFP V2 pipeline spec JSON for `config` (a movierec.config.PipelineConfig)
    and returns its path; needs no cluster and no network."""
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner  # noqa: PLC0415

    from movierec.pipeline.pipeline import create_pipeline  # noqa: PLC0415

    if not image:
        raise ValueError("image must name the pipeline image (built from the top-level Dockerfile)")
    output_dir, filename = os.path.split(os.path.abspath(output_file))
    runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
        config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(
            default_image=image, default_commands=list(CONTAINER_COMMAND), use_pipeline_spec_2_1=True),
        output_dir=output_dir, output_filename=filename)
    runner.run(create_pipeline(config, builtin_resolvers_only=True), write_out=True)
    return os.path.join(output_dir, filename)


def invocation_urls(argv: list[str]) -> list[str]:
    """Every scheme://... string in the executor input (artifact URIs, the output file,
    parameters such as ExampleGen's input_base or a Pusher's base directory)."""
    for i, arg in enumerate(argv):
        if arg == _INVOCATION_FLAG and i + 1 < len(argv):
            return _URL.findall(argv[i + 1])
        if arg.startswith(_INVOCATION_FLAG + "="):
            return _URL.findall(arg[len(_INVOCATION_FLAG) + 1:])
    return []


def main(argv: list[str] | None = None) -> int:
    """The container entry point: TFX's Kubeflow V2 executor entry point with `argv`
    (default: this process's arguments), the object-store schemes it needs registered
    first; returns its exit status, or ends the process with it after an object store
    was used (see movierec.filesystems)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        schemes = filesystems.ensure(*invocation_urls(argv))
        if schemes:
            print(f"movierec: file systems registered for {', '.join(s + '://' for s in schemes)}",
                  file=sys.stderr, flush=True)
        sys.argv = [TFX_ENTRYPOINT, *argv]
        runpy.run_module(TFX_ENTRYPOINT, run_name="__main__", alter_sys=True)
        code = 0  # absl's app.run always raises SystemExit; kept for a module that returns
    except SystemExit as e:
        code = filesystems.exit_code(e)
    except BaseException:  # noqa: BLE001 (reported as the interpreter would: traceback, status 1)
        traceback.print_exc()
        code = 1
    return filesystems.finish(code)


if __name__ == "__main__":
    sys.exit(main())
