"""Which earlier model a run builds on: the latest blessed model trained before this span.

`LatestBlessedModelStrategy` returns the newest blessed model, which after a run is the
model that run just blessed. Fed to the Trainer (warm start) and the Evaluator (baseline),
that makes every repeat of a retrain different from the last: the Trainer's input changed,
so TFX's cache misses and the same span is trained and pushed again.

`LatestBlessedBeforeSpanStrategy` keys the choice on the data instead: for a run whose
examples have span N, it returns the newest blessed model whose Trainer read examples of a
span < N. A repeat of span N (no new data, or a re-run after a crash) resolves the same
model as the first attempt, so every component hits the cache and nothing is pushed again.
Without spans (every span is 0), it is `LatestBlessedModelStrategy`.

The Kubeflow V2 compiler accepts only TFX's two built-in strategies; that runner uses
`LatestBlessedModelStrategy` (see `pipeline.create_pipeline`).
"""
from __future__ import annotations

from typing import Dict, List, Optional

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2
from tfx import types
from tfx.dsl.components.common import resolver

MODEL_KEY = "model"
BLESSING_KEY = "model_blessing"
EXAMPLES_KEY = "examples"
_BLESSED = "blessed"
_CURRENT_MODEL_ID = "current_model_id"


def _producers(store: mlmd.MetadataStore, artifact_ids: list[int]) -> list[int]:
    return [e.execution_id for e in store.get_events_by_artifact_ids(artifact_ids)
            if e.type == metadata_store_pb2.Event.OUTPUT]


def _example_inputs(store: mlmd.MetadataStore, execution_ids: list[int]) -> list[metadata_store_pb2.Artifact]:
    ids = [e.artifact_id for e in store.get_events_by_execution_ids(execution_ids)
           if e.type == metadata_store_pb2.Event.INPUT]
    if not ids:
        return []
    artifacts = store.get_artifacts_by_id(ids)
    names = {t.id: t.name for t in store.get_artifact_types_by_id(list({a.type_id for a in artifacts}))}
    return [a for a in artifacts if names[a.type_id] == "Examples"]


def training_span(store: mlmd.MetadataStore, model_id: int, max_hops: int = 4) -> Optional[int]:
    """Largest span of the examples a model was trained on, following lineage upstream
    through Examples artifacts only: model <- Trainer <- transformed examples <- Transform
    <- examples (ExampleGen sets `span`; Transform's output does not carry it)."""
    frontier = [model_id]
    for _ in range(max_hops):
        examples = _example_inputs(store, _producers(store, frontier))
        spans = [a.custom_properties["span"].int_value for a in examples
                 if a.custom_properties["span"].int_value > 0]
        if spans:
            return max(spans)
        frontier = [a.id for a in examples]
        if not frontier:
            return None
    return None


class LatestBlessedBeforeSpanStrategy(resolver.ResolverStrategy):
    """Inputs: `model`, `model_blessing` (all of them), `examples` (this run's).
    Output: `model` and `model_blessing` of the newest blessed model trained on a span
    before this run's span (none: empty lists); `examples` passed through."""

    def resolve_artifacts(self, store: mlmd.MetadataStore,
                          input_dict: Dict[str, List[types.Artifact]]) -> Optional[Dict[str, List[types.Artifact]]]:
        examples = input_dict.get(EXAMPLES_KEY) or []
        empty = {MODEL_KEY: [], BLESSING_KEY: [], EXAMPLES_KEY: examples}
        current_span = max((a.get_int_custom_property("span") for a in examples), default=0)
        blessings = {b.get_int_custom_property(_CURRENT_MODEL_ID): b
                     for b in input_dict.get(BLESSING_KEY) or []
                     if b.get_int_custom_property(_BLESSED) == 1}
        for model in sorted(input_dict.get(MODEL_KEY) or [], key=lambda a: a.id, reverse=True):
            if model.id not in blessings:
                continue
            if current_span > 0:
                span = training_span(store, model.id)
                if span is None or span >= current_span:
                    continue
            return {MODEL_KEY: [model], BLESSING_KEY: [blessings[model.id]], EXAMPLES_KEY: examples}
        return empty
