"""ExampleGen, StatisticsGen and Transform alone: wall and CPU seconds per component.

    .venv/bin/python benchmarks/data_components.py --data-dir DIR [--work DIR]
        [--only statistics transform] [--profile] [--beam-arg=--direct_num_workers=1 ...]
        [--materialize]

Runs the three executors of the pipeline's data stage one after the other in this process,
configured exactly as `pipeline.create_pipeline` configures them (executor classes and
execution properties are read from the components it builds; Beam options from
`PipelineConfig`), on one dataset folder. For each it prints the wall seconds, the CPU
seconds of this process (user + system: on a shared machine the CPU seconds say what the
component costs, the wall seconds also say what the other jobs took from it) and both per
rating. `--only` reuses the examples a previous run left in `--work` (ExampleGen is then not
run). `--profile` writes a cProfile of each component to `<work>/<component>.prof` and prints
its 25 most expensive functions (cumulative), to see where the seconds go.

ExampleGen writes Parquet examples, which StatisticsGen and Transform read through tfx_bsl's
ParquetTFXIO; Transform writes the transform graph only, as the pipeline's does
(`materialize=False`). `--materialize` also has it write the transformed examples (as
Parquet, one Python dict per row), to see what materializing costs.
"""
from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import resource
import shutil
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

COMPONENTS = ("examples", "statistics", "transform")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _exec_properties(component) -> dict:
    """A component's execution properties as its executor receives them (protos and dicts
    serialized to JSON, as TFX's launcher does)."""
    from google.protobuf import message  # noqa: PLC0415
    from tfx.utils import proto_utils  # noqa: PLC0415

    props = {}
    for key, value in component.exec_properties.items():
        if isinstance(value, message.Message):
            value = proto_utils.proto_to_json(value)
        elif isinstance(value, (dict, list)):
            value = json.dumps(value)
        props[key] = value
    return props


def _artifact(kind, uri: str, **props):
    artifact = kind()
    artifact.uri = uri
    for key, value in props.items():
        setattr(artifact, key, value)
    return artifact


def _examples_artifact(uri: str):
    """ExampleGen's output as the executor describes it: Parquet payload and files."""
    from tfx.components.util import examples_utils  # noqa: PLC0415
    from tfx.proto import example_gen_pb2  # noqa: PLC0415
    from tfx.types import artifact_utils, standard_artifacts  # noqa: PLC0415

    from movierec.components.movielens_example_gen import executor  # noqa: PLC0415

    splits = sorted(name[len("Split-"):] for name in os.listdir(uri) if name.startswith("Split-"))
    examples = _artifact(standard_artifacts.Examples, uri,
                         split_names=artifact_utils.encode_split_names(splits), span=0)
    examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_PARQUET)
    examples_utils.set_file_format(examples, executor.PARQUET_FILE_FORMAT)
    return examples


def run(data_dir: str, work: str, only: list[str], profile: bool, beam_args: list[str],
        materialize: bool = False) -> dict:
    from tfx.dsl.components.base import base_beam_executor  # noqa: PLC0415
    from tfx.types import standard_artifacts, standard_component_specs as sc  # noqa: PLC0415

    from movierec.components.data import arrow_reader  # noqa: F401,PLC0415 (import cost outside the timings)
    from movierec.config import PipelineConfig  # noqa: PLC0415
    from movierec.pipeline import pipeline as pipeline_module  # noqa: PLC0415

    config = PipelineConfig.from_output_dir(data_dir, os.path.join(work, "run"),
                                            **({"beam_pipeline_args": tuple(beam_args)} if beam_args else {}))
    nodes = {c.id: c for c in pipeline_module.create_pipeline(config).components}
    examples_uri = os.path.join(work, "examples")
    schema_uri = os.path.join(work, "schema")
    shutil.rmtree(schema_uri, ignore_errors=True)
    os.makedirs(schema_uri)
    shutil.copy(pipeline_module.schema_file(config), os.path.join(schema_uri, "schema.pbtxt"))
    schema = _artifact(standard_artifacts.Schema, schema_uri)

    def execute(name: str, component, inputs: dict, outputs: dict) -> None:
        for artifacts in outputs.values():
            for a in artifacts:
                shutil.rmtree(a.uri, ignore_errors=True)
        context = base_beam_executor.BaseBeamExecutor.Context(
            beam_pipeline_args=list(config.beam_pipeline_args), tmp_dir=os.path.join(work, "tmp", name) + "/",
            unique_id=name)
        executor = component.executor_spec.executor_class(context)
        props = _exec_properties(component)
        timed(name, lambda: executor.Do(inputs, outputs, props))

    def timed(name: str, call) -> None:
        profiler = cProfile.Profile() if profile else None
        wall, cpu = time.perf_counter(), _cpu_seconds()
        if profiler:
            profiler.enable()
        call()
        if profiler:
            profiler.disable()
        wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
        results[name] = {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}
        print(f"{name}: {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
        if profiler:
            path = os.path.join(work, f"{name}.prof")
            profiler.dump_stats(path)
            pstats.Stats(path).sort_stats("cumulative").print_stats(25)

    results: dict = {}
    load_before = os.getloadavg()[0]
    if "examples" in only:
        examples = _artifact(standard_artifacts.Examples, examples_uri)
        execute("examples", nodes["MovieLensExampleGen"], {}, {sc.EXAMPLES_KEY: [examples]})
    examples = _examples_artifact(examples_uri)
    ratings = _count_records(examples_uri)
    if "statistics" in only:
        stats = _artifact(standard_artifacts.ExampleStatistics, os.path.join(work, "statistics"))
        execute("statistics", nodes["StatisticsGen"], {sc.EXAMPLES_KEY: [examples]}, {sc.STATISTICS_KEY: [stats]})
    if "transform" in only:
        outputs = {sc.TRANSFORM_GRAPH_KEY: [_artifact(standard_artifacts.TransformGraph, os.path.join(work, "transform_graph"))],
                   sc.UPDATED_ANALYZER_CACHE_KEY: [_artifact(standard_artifacts.TransformCache, os.path.join(work, "cache"))]}
        if materialize:
            outputs[sc.TRANSFORMED_EXAMPLES_KEY] = [_artifact(standard_artifacts.Examples, os.path.join(work, "transformed"))]
        execute("transform", nodes["Transform"], {sc.EXAMPLES_KEY: [examples], sc.SCHEMA_KEY: [schema]}, outputs)
    for name, rec in results.items():
        rec["wall_us_per_rating"] = round(rec["wall_s"] / ratings * 1e6, 1)
        rec["cpu_us_per_rating"] = round(rec["cpu_s"] / ratings * 1e6, 1)
    return {"ratings": ratings, "load_before": load_before, "load_after": os.getloadavg()[0],
            "beam_pipeline_args": list(config.beam_pipeline_args), "materialize": materialize,
            "components": results}


def _count_records(examples_uri: str) -> int:
    import pyarrow.parquet as pq  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415

    files = tf.io.gfile.glob(os.path.join(examples_uri, "Split-*", "*.parquet"))
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--work", default=None, help="output folder (default: <data-dir>.components)")
    p.add_argument("--only", nargs="+", choices=COMPONENTS, default=list(COMPONENTS))
    p.add_argument("--profile", action="store_true")
    p.add_argument("--beam-arg", action="append", default=[], help="replaces the default Beam options")
    p.add_argument("--materialize", action="store_true",
                   help="Transform also writes the transformed examples (the pipeline's does not)")
    args = p.parse_args()
    work = os.path.abspath(args.work or args.data_dir.rstrip("/") + ".components")
    os.makedirs(work, exist_ok=True)
    result = run(os.path.abspath(args.data_dir), work, args.only, args.profile, args.beam_arg, args.materialize)
    for name, rec in result["components"].items():
        print(f"{name:12s} {rec['wall_s']:8.1f} s wall {rec['wall_us_per_rating']:8.1f} us/rating   "
              f"{rec['cpu_s']:8.1f} s CPU {rec['cpu_us_per_rating']:8.1f} us/rating")
    print(f"ratings {result['ratings']:,}; 1-min load {result['load_before']:.1f} before, "
          f"{result['load_after']:.1f} after")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
