"""What runs recorded in ML Metadata (MLMD), read back: the component executions of a
pipeline run, and the newest outputs of a component.

TFX records each component's run as one MLMD execution associated with three contexts
(type names from `tfx.dsl.compiler.constants`):
  pipeline      named after the pipeline ("movierec")
  pipeline_run  named by the run id LocalDagRunner gives the run (its start time, ISO 8601);
                its parent context is the pipeline's
  node          "<pipeline>.<node id>", e.g. "movierec.Trainer.mf"
An execution is registered RUNNING when its component starts and ends COMPLETE, CACHED
(outputs reused from an earlier identical execution) or FAILED; a process killed mid-way
leaves it RUNNING. Each output artifact is linked to its execution by an OUTPUT event whose
path starts with the output key ("evaluation", "blessing", "pushed_model", "model_run"); a
CACHED execution has OUTPUT events to the artifacts it reuses.

Used by the run's progress lines (`movierec.progress`), the run summary and `movierec
report` (`movierec.summary`) and the retrain demo. Stores are opened read-only: the SQLite
file is written by the running pipeline at the same time, and MLMD's SQLite driver waits
out a writer's lock for a while before it reports "database is locked" (an
`ml_metadata.errors.AbortedError`), which callers that poll treat as "try the next poll".
"""
from __future__ import annotations

import dataclasses
import os

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.dsl.compiler import constants

Execution = metadata_store_pb2.Execution
PIPELINE_CONTEXT = constants.PIPELINE_CONTEXT_TYPE_NAME
RUN_CONTEXT = constants.PIPELINE_RUN_CONTEXT_TYPE_NAME
NODE_CONTEXT = constants.NODE_CONTEXT_TYPE_NAME
SUCCEEDED = (Execution.COMPLETE, Execution.CACHED)
FINISHED = (Execution.COMPLETE, Execution.CACHED, Execution.FAILED, Execution.CANCELED)


@dataclasses.dataclass(frozen=True)
class ComponentExecution:
    """One component's execution in a run. Times are seconds since the epoch, from MLMD's
    create_time_since_epoch (registered: the component started) and
    last_update_time_since_epoch (its last state change: for a finished execution, when it
    finished)."""
    node_id: str          # e.g. "Trainer.mf"
    execution_id: int
    state: str            # RUNNING, COMPLETE, CACHED, FAILED, ... (Execution.State names)
    started: float
    updated: float

    @property
    def finished(self) -> bool:
        return self.state in {Execution.State.Name(s) for s in FINISHED}

    @property
    def cached(self) -> bool:
        return self.state == "CACHED"

    @property
    def seconds(self) -> float:
        """Wall time from the start to the last state change (for a finished execution: its end)."""
        return self.updated - self.started


def connection_config(path: str, readonly: bool = True,
                      attempts: int | None = None) -> metadata_store_pb2.ConnectionConfig:
    """The SQLite connection of the store at the local file `path`. `attempts`: how often
    the client tries a call that found the database locked (default: MLMD's, 5 with
    seconds between them; 1 fails at once, for a caller that polls)."""
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = (metadata_store_pb2.SqliteMetadataSourceConfig.READONLY if readonly
                                     else metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE)
    if attempts is not None:
        config.retry_options.max_num_retries = attempts
    return config


def open_store(path: str, attempts: int | None = None) -> metadata_store.MetadataStore | None:
    """The store at the local SQLite file `path`, read-only; None when there is no such file
    (no run has written there yet). ML Metadata's SQLite file is always local
    (`movierec.config.metadata_path_for`). `attempts`: see `connection_config`."""
    if not os.path.isfile(path):   # local-only (see above)
        return None
    return metadata_store.MetadataStore(connection_config(path, attempts=attempts))


def run_contexts(store, pipeline_name: str) -> list:
    """The `pipeline_run` contexts of `pipeline_name` in `store` (name: the run id), oldest first."""
    runs = [c for c in store.get_contexts_by_type(RUN_CONTEXT)
            if any(p.type == PIPELINE_CONTEXT and p.name == pipeline_name
                   for p in store.get_parent_contexts_by_context(c.id))]
    return sorted(runs, key=lambda c: (c.create_time_since_epoch, c.id))


def run_ids(store, pipeline_name: str) -> list[str]:
    """The ids of `pipeline_name`'s runs in `store`, oldest first."""
    return [c.name for c in run_contexts(store, pipeline_name)]


def node_id_of(store, execution_id: int, pipeline_name: str) -> str | None:
    """The node id ("Trainer.mf") of an execution, from its node context; None if it has none."""
    prefix = f"{pipeline_name}."
    for context in store.get_contexts_by_execution(execution_id):
        if context.type == NODE_CONTEXT and context.name.startswith(prefix):
            return context.name[len(prefix):]
    return None


def component_execution(execution, node_id: str) -> ComponentExecution:
    """`execution` (an MLMD Execution proto) as a ComponentExecution of `node_id`."""
    return ComponentExecution(node_id, execution.id, Execution.State.Name(execution.last_known_state),
                              execution.create_time_since_epoch / 1000,
                              execution.last_update_time_since_epoch / 1000)


def run_executions(store, run_id: str) -> list:
    """The MLMD executions of run `run_id`, in the order they started (empty: no such run)."""
    run = store.get_context_by_type_and_name(RUN_CONTEXT, run_id)
    if run is None:
        return []
    return sorted(store.get_executions_by_context(run.id), key=lambda e: (e.create_time_since_epoch, e.id))


def component_executions(store, pipeline_name: str, run_id: str | None = None) -> list[ComponentExecution]:
    """The executions of one run of `pipeline_name` (default: its newest run), in the order
    they started, each with its node id."""
    if run_id is None:
        ids = run_ids(store, pipeline_name)
        if not ids:
            return []
        run_id = ids[-1]
    found = []
    for execution in run_executions(store, run_id):
        node_id = node_id_of(store, execution.id, pipeline_name)
        if node_id is not None:
            found.append(component_execution(execution, node_id))
    return found


def latest_execution(store, pipeline_name: str, node_id: str, states=SUCCEEDED):
    """The newest execution of node `node_id` (e.g. "Evaluator.mf") in one of `states`
    (default: COMPLETE or CACHED), over every run; None when there is none."""
    node = store.get_context_by_type_and_name(NODE_CONTEXT, f"{pipeline_name}.{node_id}")
    if node is None:
        return None
    executions = [e for e in store.get_executions_by_context(node.id) if e.last_known_state in states]
    return max(executions, key=lambda e: (e.create_time_since_epoch, e.id), default=None)


def output_artifacts(store, execution_id: int, output_key: str) -> list:
    """The artifacts execution `execution_id` output under `output_key`, in output order."""
    events = [e for e in store.get_events_by_execution_ids([execution_id])
              if e.type == metadata_store_pb2.Event.OUTPUT and e.path.steps and e.path.steps[0].key == output_key]
    events.sort(key=lambda e: e.path.steps[1].index if len(e.path.steps) > 1 else 0)
    by_id = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    return [by_id[e.artifact_id] for e in events if e.artifact_id in by_id]


def latest_output(store, pipeline_name: str, node_id: str, output_key: str):
    """The artifact under `output_key` of node `node_id`'s newest successful execution
    (`latest_execution`); None when the node has not succeeded yet."""
    execution = latest_execution(store, pipeline_name, node_id)
    if execution is None:
        return None
    artifacts = output_artifacts(store, execution.id, output_key)
    return artifacts[0] if artifacts else None


def latest_outputs(store, pipeline_name: str, node_id: str, output_key: str, states=SUCCEEDED) -> list:
    """Every artifact node `node_id` output under `output_key`, newest execution first (one
    per execution; a CACHED execution repeats the artifact it reused)."""
    node = store.get_context_by_type_and_name(NODE_CONTEXT, f"{pipeline_name}.{node_id}")
    if node is None:
        return []
    executions = sorted((e for e in store.get_executions_by_context(node.id) if e.last_known_state in states),
                        key=lambda e: (e.create_time_since_epoch, e.id), reverse=True)
    found = []
    for execution in executions:
        found += output_artifacts(store, execution.id, output_key)[:1]
    return found


def custom_property(artifact, name: str, default=None):
    """The value of an artifact's custom property `name` (int, double or string), or `default`."""
    if name not in artifact.custom_properties:
        return default
    value = artifact.custom_properties[name]
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind in ("int_value", "double_value", "string_value") else default
