"""Run the pipeline in this process with TFX's LocalDagRunner (ML Metadata in SQLite)."""
from __future__ import annotations

import os

from tfx.orchestration import metadata
from tfx.orchestration.local.local_dag_runner import LocalDagRunner

from movierec.config import PipelineConfig
from movierec.pipeline.pipeline import create_pipeline


def run(config: PipelineConfig) -> None:
    os.makedirs(os.path.dirname(config.metadata_path), exist_ok=True)  # ML Metadata's SQLite: always local
    LocalDagRunner().run(create_pipeline(
        config, metadata.sqlite_metadata_connection_config(config.metadata_path)))
