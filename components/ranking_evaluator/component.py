"""RankingEvaluator: a custom TFX component that gates the Pusher.

Inputs:  examples (raw Parquet or transformed TFRecords; train + eval splits), transform_graph,
         model (the candidate; its `Format-TFMA` SavedModel masks the train split only),
         baseline_model (optional: the last blessed model of the same name, from a Resolver).
Outputs: blessing (ModelBlessing, `blessed` 1/0 with `current_model_id`, read by the
         Pusher and by LatestBlessedModelStrategy), evaluation (ModelEvaluation:
         metrics.json, report.html, PNG plots).
Parameters: model_name, eval_config (JSON: `EvalConfig.evaluator_config(model_name)`, eval_config.py).
"""
from __future__ import annotations

import json

from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import channel, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from movierec.components.ranking_evaluator import executor
from movierec.components.ranking_evaluator.eval_config import EvalConfig


class RankingEvaluatorSpec(ComponentSpec):
    PARAMETERS = {
        "model_name": ExecutionParameter(type=str),
        "eval_config": ExecutionParameter(type=str),
    }
    INPUTS = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "transform_graph": ChannelParameter(type=standard_artifacts.TransformGraph),
        "model": ChannelParameter(type=standard_artifacts.Model),
        "baseline_model": ChannelParameter(type=standard_artifacts.Model, optional=True),
    }
    OUTPUTS = {
        "blessing": ChannelParameter(type=standard_artifacts.ModelBlessing),
        "evaluation": ChannelParameter(type=standard_artifacts.ModelEvaluation),
    }


class RankingEvaluator(base_component.BaseComponent):
    SPEC_CLASS = RankingEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, examples, transform_graph, model, model_name: str, eval_config: dict,
                 baseline_model=None):
        EvalConfig.from_dict(eval_config)  # validate early, at pipeline build time
        spec = RankingEvaluatorSpec(
            examples=examples, transform_graph=transform_graph, model=model,
            baseline_model=baseline_model, model_name=model_name,
            eval_config=json.dumps(eval_config, sort_keys=True),
            blessing=channel.Channel(type=standard_artifacts.ModelBlessing),
            evaluation=channel.Channel(type=standard_artifacts.ModelEvaluation))
        super().__init__(spec=spec)
