"""Hand-made ML Metadata stores: a real SQLite store filled the way TFX fills it, with the
states, times and artifacts a test chooses.

TFX records each component run as an execution associated with the pipeline's context,
the run's `pipeline_run` context (a child of the pipeline's) and the node's context
"<pipeline>.<node id>"; outputs are artifacts linked by OUTPUT events keyed by the output
name. MLMD sets an execution's create/last-update times itself when it is written, so
`HandMadeStore.set_times` writes the chosen times into the store's own Execution table.
"""
from __future__ import annotations

import os
import sqlite3  # the Execution table's times (see above)

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb

from movierec import metadata

STATES = {name: pb.Execution.State.Value(name) for name in ("NEW", "RUNNING", "COMPLETE", "CACHED", "FAILED")}


class HandMadeStore:
    def __init__(self, path: str, pipeline_name: str = "movierec"):
        self.path, self.pipeline_name = path, pipeline_name
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.store = metadata_store.MetadataStore(metadata.connection_config(path, readonly=False))
        self._context_types = {name: self.store.put_context_type(pb.ContextType(name=name))
                               for name in (metadata.PIPELINE_CONTEXT, metadata.RUN_CONTEXT, metadata.NODE_CONTEXT)}
        self.pipeline = self._context(metadata.PIPELINE_CONTEXT, pipeline_name)
        self._runs: dict[str, int] = {}
        self._nodes: dict[str, int] = {}

    def _context(self, type_name: str, name: str) -> int:
        [context_id] = self.store.put_contexts([pb.Context(type_id=self._context_types[type_name], name=name)])
        return context_id

    def run(self, run_id: str) -> int:
        """The `pipeline_run` context of `run_id` (made on first use, child of the pipeline's)."""
        if run_id not in self._runs:
            self._runs[run_id] = self._context(metadata.RUN_CONTEXT, run_id)
            self.store.put_parent_contexts([pb.ParentContext(child_id=self._runs[run_id], parent_id=self.pipeline)])
        return self._runs[run_id]

    def _node(self, node_id: str) -> int:
        if node_id not in self._nodes:
            self._nodes[node_id] = self._context(metadata.NODE_CONTEXT, f"{self.pipeline_name}.{node_id}")
        return self._nodes[node_id]

    def artifact(self, type_name: str, uri: str, **custom) -> int:
        """A new artifact of `type_name` at `uri`; `custom`: int or string custom properties."""
        type_id = self.store.put_artifact_type(pb.ArtifactType(name=type_name))
        artifact = pb.Artifact(type_id=type_id, uri=uri, state=pb.Artifact.LIVE)
        for key, value in custom.items():
            if isinstance(value, int):
                artifact.custom_properties[key].int_value = value
            else:
                artifact.custom_properties[key].string_value = value
        [artifact_id] = self.store.put_artifacts([artifact])
        return artifact_id

    def execution(self, run_id: str, node_id: str, state: str, started_ms: int, updated_ms: int | None = None,
                  outputs: dict[str, list[int]] | None = None, type_name: str = "tfx.Component") -> int:
        """A new execution of `node_id` in run `run_id`, in `state`, with its times (ms since
        the epoch) and `outputs` (output key -> artifact ids, linked by OUTPUT events)."""
        type_id = self.store.put_execution_type(pb.ExecutionType(name=type_name))
        [execution_id] = self.store.put_executions([pb.Execution(type_id=type_id, last_known_state=STATES[state])])
        self.store.put_attributions_and_associations([], [
            pb.Association(execution_id=execution_id, context_id=c)
            for c in (self.pipeline, self.run(run_id), self._node(node_id))])
        for key, artifact_ids in (outputs or {}).items():
            events = []
            for index, artifact_id in enumerate(artifact_ids):
                event = pb.Event(execution_id=execution_id, artifact_id=artifact_id, type=pb.Event.OUTPUT)
                event.path.steps.add().key = key
                event.path.steps.add().index = index
                events.append(event)
            self.store.put_events(events)
        self.set_times(execution_id, started_ms, started_ms if updated_ms is None else updated_ms)
        return execution_id

    def update(self, execution_id: int, state: str, updated_ms: int) -> None:
        """The execution moves to `state` at `updated_ms`."""
        [execution] = self.store.get_executions_by_id([execution_id])
        execution.last_known_state = STATES[state]
        self.store.put_executions([execution])
        self.set_times(execution_id, execution.create_time_since_epoch, updated_ms)

    def set_times(self, execution_id: int, started_ms: int, updated_ms: int) -> None:
        connection = sqlite3.connect(self.path)
        try:
            with connection:   # one committed transaction
                connection.execute("UPDATE Execution SET create_time_since_epoch = ?, last_update_time_since_epoch = ? "
                                   "WHERE id = ?", (started_ms, updated_ms, execution_id))
        finally:
            connection.close()
