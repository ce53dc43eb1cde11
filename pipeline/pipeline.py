"""The whole movierec TFX graph, built from one `PipelineConfig`.

    MovieLensExampleGen -> StatisticsGen -> StrictExampleValidator (curated schema, fitted to
    a declared dataset, via ImportSchemaGen: see `schema_file`; any anomaly stops the run)
    -> Transform
        -> Trainer.mf      -> Evaluator.mf      -> Pusher.mf       (<serving_root>/mf/<version>/)
        -> Trainer.content -> Evaluator.content -> Pusher.content  (<serving_root>/content/<version>/)
    Each Evaluator gets the last blessed model of its name (LatestBlessed.<name> Resolver) as
    the relative baseline; a Pusher pushes only a blessed model. With `warm_start`, the same
    Resolver hands the last blessed MF model to Trainer.mf as its `base_model`. "Last
    blessed" means trained on an earlier span (`resolvers.LatestBlessedBeforeSpanStrategy`),
    so repeating a run on the same data resolves the same model and hits TFX's cache.
    With `span_window` set, ExampleGen reads `span-<N>/` folders: the latest, or a window.

`statistics_options()` says what StatisticsGen computes.

Runners (`local_runner.py`, ...) only build a config and call `create_pipeline`.
"""
from __future__ import annotations

import hashlib
import os
import posixpath

import tensorflow_data_validation as tfdv
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.components.statistics_gen.component import StatisticsGen
from tfx.components.trainer.component import Trainer
from tfx.components.transform.component import Transform
from tfx.dsl.components.common.resolver import Resolver
from tfx.dsl.io import fileio
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import LatestBlessedModelStrategy
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.proto import pusher_pb2, trainer_pb2
from tfx.types import Channel, standard_artifacts

from movierec.components.data import dataset_schema
from movierec.config import PipelineConfig
from movierec.pipeline.resolvers import LatestBlessedBeforeSpanStrategy
from movierec.components.atomic_pusher.component import AtomicPusher
from movierec.components.movielens_example_gen.component import MovieLensExampleGen
from movierec.components.ranking_evaluator.component import RankingEvaluator
from movierec.components.strict_example_validator.component import StrictExampleValidator

PREPROCESSING_FN = "movierec.components.preprocessing.preprocessing_fn"
MF_RUN_FN = "movierec.components.mf.trainer.run_fn"
CONTENT_RUN_FN = "movierec.components.content.trainer.run_fn"

# Component ids, in run order (their count is the N of the progress lines).
COMPONENT_IDS = ("MovieLensExampleGen", "StatisticsGen", "ImportSchemaGen",
                 "StrictExampleValidator", "Transform",
                 "Trainer.mf", "Trainer.content", "LatestBlessed.mf", "LatestBlessed.content",
                 "Evaluator.mf", "Evaluator.content", "Pusher.mf", "Pusher.content")


def code_fingerprint() -> str:
    """SHA-256 over the package's Python sources.

    Transform and Trainer run functions by import path, so TFX would not notice a code
    change; passing this fingerprint in their custom_config makes TFX's cache miss
    whenever the code they run changes.

    Local-only by nature: it reads the installed package's own source files (next to the
    imported modules), never data or artifacts, so plain `os`/`open` are right here.
    """
    import movierec  # noqa: PLC0415
    from movierec import components  # noqa: PLC0415

    digest = hashlib.sha256()
    roots = [os.path.dirname(os.path.realpath(m.__file__)) for m in (movierec, components)]
    for top in roots:
        for folder, dirs, files in sorted(os.walk(top)):
            dirs.sort()
            for name in sorted(files):
                if name.endswith((".py", ".pbtxt")):
                    path = os.path.join(folder, name)
                    digest.update(os.path.relpath(path, top).encode())
                    with open(path, "rb") as f:
                        digest.update(f.read())
    return digest.hexdigest()[:16]


def statistics_options() -> tfdv.StatsOptions:
    """StatisticsGen's TFDV options: every example counted (no sampling), so the min, max,
    presence and value counts that the schema checks are exact; the top values and the
    number of unique values of string features (user, movie, title, genres) come from TFDV's
    sketches (Misra-Gries with 1,024 buckets, K-minimum-values with 16,384, merged per record
    batch in C++) instead of one Beam element per distinct value and batch. The schema has no
    string domain, so no check reads them; they are exact up to that many distinct values of
    a feature, and estimates above."""
    return tfdv.StatsOptions(use_sketch_based_topk_uniques=True)


def schema_file(config: PipelineConfig) -> str:
    """The schema file ImportSchemaGen imports for `config`.

    MovieLens layouts: `config.schema_path` itself (the curated schema). A declared dataset
    (`movierec-data.yaml` in `data_dir`, or in its newest span with `span_window`): the
    curated schema fitted to its rating scale, or made rating-optional for implicit events
    (`dataset_schema.fitted_schema_file`), written under `<pipeline_root>/schema/<digest>/`
    where <digest> is the SHA-256 of its text (16 hex digits). TFX's cache key holds
    ImportSchemaGen's `schema_file` path, not the file's contents, so a fixed path would let
    a run over a re-declared dataset (another scale, ratings dropped) reuse the old schema;
    one path per content keeps the cache right.

    A config compiled to run elsewhere (`check_local_files=False`, Kubeflow) imports
    `config.schema_path` (the image's curated schema) unchanged: `data_dir` need not be
    readable where the pipeline is compiled.
    """
    if not config.check_local_files:
        return config.schema_path
    folder = posixpath.join(config.pipeline_root, "schema")
    fitted = dataset_schema.fitted_schema_file(config.data_dir, config.schema_path, folder, config.span_window)
    if fitted == config.schema_path:
        return fitted
    with fileio.open(fitted, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    final = posixpath.join(folder, digest, "schema.pbtxt")
    fileio.makedirs(posixpath.dirname(final))
    fileio.rename(fitted, final, overwrite=True)
    return final


def create_pipeline(config: PipelineConfig, metadata_connection_config=None,
                    builtin_resolvers_only: bool = False) -> tfx_pipeline.Pipeline:
    """The graph; `metadata_connection_config` comes from the runner (SQLite for the local
    runner; none for Kubeflow, whose cluster provides ML Metadata).

    builtin_resolvers_only: use TFX's LatestBlessedModelStrategy instead of the span-aware
    strategy (the Kubeflow V2 compiler accepts no other); a repeat on the same span then
    re-evaluates against the model it blessed last time."""
    fingerprint = code_fingerprint()
    example_gen = MovieLensExampleGen(
        input_base=config.data_dir, eval_percent=config.eval_percent,
        max_bad_records=config.max_bad_records, span_window=config.span_window)
    statistics_gen = StatisticsGen(
        examples=example_gen.outputs["examples"], stats_options=statistics_options())
    schema_gen = ImportSchemaGen(schema_file=schema_file(config))
    example_validator = StrictExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    transform = Transform(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN, custom_config={"code": fingerprint},
        # the raw data is profiled and validated once, by StatisticsGen + StrictExampleValidator;
        # Transform's own pre/post-transform TFDV passes would only repeat that work
        disable_statistics=True,
        # the graph only: the Trainers and Evaluators apply it to the raw examples as they
        # read them (training_data.read_interactions), instead of Transform writing a
        # transformed copy of every example, one Python dict per row
        materialize=False)
    transform.add_upstream_node(example_validator)  # no Transform on data that failed checks
    trainers, gates, pushers = [], [], []
    for name, run_fn, custom in (("mf", MF_RUN_FN, config.trainer_config()),
                                 ("content", CONTENT_RUN_FN, config.content_trainer_config())):
        history = dict(
            model=Channel(type=standard_artifacts.Model, producer_component_id=f"Trainer.{name}"),
            model_blessing=Channel(type=standard_artifacts.ModelBlessing,
                                   producer_component_id=f"Evaluator.{name}"))
        if builtin_resolvers_only:
            latest_blessed = Resolver(strategy_class=LatestBlessedModelStrategy, **history)
        else:
            latest_blessed = Resolver(strategy_class=LatestBlessedBeforeSpanStrategy,
                                      examples=example_gen.outputs["examples"], **history)
        latest_blessed = latest_blessed.with_id(f"LatestBlessed.{name}")
        warm = name == "mf" and config.warm_start
        trainer = Trainer(
            run_fn=run_fn,
            base_model=latest_blessed.outputs["model"] if warm else None,
            examples=example_gen.outputs["examples"],
            transform_graph=transform.outputs["transform_graph"],
            schema=schema_gen.outputs["schema"],
            train_args=trainer_pb2.TrainArgs(),
            eval_args=trainer_pb2.EvalArgs(),
            custom_config={**custom, "code": fingerprint}).with_id(f"Trainer.{name}")
        evaluator = RankingEvaluator(
            examples=example_gen.outputs["examples"],
            transform_graph=transform.outputs["transform_graph"],
            model=trainer.outputs["model"],
            baseline_model=latest_blessed.outputs["model"],
            model_name=name,
            eval_config=config.evaluation.evaluator_config(name)).with_id(f"Evaluator.{name}")
        pusher = AtomicPusher(
            model=trainer.outputs["model"],
            model_blessing=evaluator.outputs["blessing"],
            push_destination=pusher_pb2.PushDestination(
                filesystem=pusher_pb2.PushDestination.Filesystem(
                    base_directory=config.serving_model_dir(name)))).with_id(f"Pusher.{name}")
        trainers.append(trainer)
        gates += [latest_blessed, evaluator]
        pushers.append(pusher)
    components = [example_gen, statistics_gen, schema_gen, example_validator, transform,
                  *trainers, *gates[0::2], *gates[1::2], *pushers]
    assert tuple(c.id for c in components) == COMPONENT_IDS
    return tfx_pipeline.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=components,
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(config.beam_pipeline_args),
    )
