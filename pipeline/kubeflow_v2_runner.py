"""Compile the pipeline for Kubeflow Pipelines V2 / Vertex AI Pipelines (offline).

    movierec compile-kfp --data-dir gs://BUCKET/ml-100k --output-dir gs://BUCKET/movierec \\
        --image REGION-docker.pkg.dev/PROJECT/REPO/movierec:TAG --out movierec_pipeline.json

The same `create_pipeline(config)` as the local runner; every component runs in the
pipeline image built from the top-level Dockerfile, whose package carries the curated
schema at IMAGE_SCHEMA_PATH. Submit the JSON with the Vertex AI SDK
(`aiplatform.PipelineJob(template_path=...)`, a schedule with `PipelineJob.create_schedule
(cron="0 3 * * *")`) or the KFP client.
"""
from __future__ import annotations

import os

from movierec.config import PipelineConfig
from movierec.pipeline.pipeline import create_pipeline

IMAGE_SCHEMA_PATH = "/opt/movierec/components/schema/schema.pbtxt"  # see /Dockerfile


def compile_pipeline(config: PipelineConfig, image: str, output_file: str) -> str:
    """Writes the KFP V2 pipeline spec JSON; needs no cluster and no network."""
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner  # noqa: PLC0415

    if not image:
        raise ValueError("image must name the pipeline image (built from the top-level Dockerfile)")
    output_dir, filename = os.path.split(os.path.abspath(output_file))
    runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
        config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=output_dir, output_filename=filename)
    runner.run(create_pipeline(config, builtin_resolvers_only=True), write_out=True)
    return os.path.join(output_dir, filename)
