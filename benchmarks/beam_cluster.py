"""The pipeline's Beam components in-process vs on a local Beam cluster (job service + SDK
worker pool on loopback, `movierec.pipeline.beam_cluster`).

    .venv/bin/python benchmarks/beam_cluster.py [--ratings 1000000 --users 7000 --movies 10000]
                                                [--workers 2] [--out ~/.cache/movierec/beam_cluster]
                                                [--engines in-process cluster] [--keep]

1. The dataset is written by the project's generator (`movierec data synth`, seed 42) into
   `<out>/data/synth-r<R>-u<U>-m<M>-s42/` and reused by later runs.
2. For each engine, in a fresh Python process (so both pay the same imports): ExampleGen,
   StatisticsGen, ImportSchemaGen, StrictExampleValidator and Transform of
   `create_pipeline` (`beam_cluster.run_data_components`, TFX's LocalDagRunner, cold cache).
   in-process: the default Beam options (`LOCAL_BEAM_ARGS`, FnApiRunner in memory).
   cluster: `LocalBeamCluster(workers)` started first (its start-up is timed apart), then
   its `beam_args()`.
3. Seconds per component from ML Metadata (execution create -> last update), and the wall
   time of the run call. A markdown table at the end; JSON in `<out>/beam_cluster-<time>.json`.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.pipeline_speed import component_times  # noqa: E402

DEFAULT_OUT = os.path.join("~", ".cache", "movierec", "beam_cluster")
SEED = 42
ENGINES = ("in-process", "cluster")
COMPONENTS = ("MovieLensExampleGen", "StatisticsGen", "ImportSchemaGen", "StrictExampleValidator", "Transform")


def dataset(out: str, ratings: int, users: int, movies: int) -> tuple[str, float | None]:
    """The synthetic dataset folder (generated if missing) and the seconds it took (None: cached)."""
    from movierec.components.data import synth

    path = os.path.join(out, "data", f"synth-r{ratings}-u{users}-m{movies}-s{SEED}")
    if os.path.isfile(os.path.join(path, "ratings.csv")):
        return path, None
    start = time.perf_counter()
    synth.generate(synth.SynthSpec(users=users, movies=movies, ratings=ratings, seed=SEED), path + ".tmp")
    os.rename(path + ".tmp", path)
    return path, time.perf_counter() - start


def run_engine(engine: str, data_dir: str, output_dir: str, workers: int, log_dir: str) -> dict:
    """One engine's run, in this process; returns wall seconds and per-component seconds."""
    from movierec.config import PipelineConfig
    from movierec.pipeline.beam_cluster import LocalBeamCluster, run_data_components

    result: dict = {"engine": engine}
    if engine == "in-process":
        config = PipelineConfig.from_output_dir(data_dir, output_dir)
        start = time.perf_counter()
        run_data_components(config)
        result["wall_s"] = time.perf_counter() - start
    else:
        start = time.perf_counter()
        with LocalBeamCluster(workers=workers, log_dir=log_dir) as cluster:
            result["cluster_start_s"] = time.perf_counter() - start
            config = PipelineConfig.from_output_dir(data_dir, output_dir, beam_pipeline_args=cluster.beam_args())
            start = time.perf_counter()
            run_data_components(config)
            result["wall_s"] = time.perf_counter() - start
            result["jobs"] = [j.state for j in cluster.jobs()]
            result["sdk_workers_started"] = cluster.started_workers()
    result["beam_args"] = list(config.beam_pipeline_args)
    result["components_s"] = component_times(config.metadata_path)
    return result


def table(results: list[dict]) -> str:
    head = "| engine | " + " | ".join(COMPONENTS) + " | sum of components s | run wall s | cluster start s |"
    lines = [head, "|---|" + "---:|" * (len(COMPONENTS) + 3)]
    for r in results:
        c = r["components_s"]
        cells = [f"{c.get(name, float('nan')):.1f}" for name in COMPONENTS]
        start = f"{r['cluster_start_s']:.1f}" if "cluster_start_s" in r else "-"
        lines.append(f"| {r['engine']} | " + " | ".join(cells)
                     + f" | {sum(c.get(n, 0.0) for n in COMPONENTS):.1f} | {r['wall_s']:.1f} | {start} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ratings", type=int, default=1_000_000)
    p.add_argument("--users", type=int, default=7_000)
    p.add_argument("--movies", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=2, help="SDK worker processes per pipeline on the cluster")
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    p.add_argument("--keep", action="store_true", help="keep the runs' output folders")
    p.add_argument("--one", choices=ENGINES, help=argparse.SUPPRESS)   # internal: run one engine, print JSON
    p.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = p.parse_args()
    out = os.path.abspath(os.path.expanduser(args.out))
    if args.one:
        run_dir = os.path.join(out, "runs", args.one)
        print("RESULT " + json.dumps(run_engine(args.one, args.data_dir, run_dir, args.workers,
                                                 os.path.join(out, "runs", "cluster-logs"))))
        return 0

    data_dir, gen_s = dataset(out, args.ratings, args.users, args.movies)
    print(f"dataset {data_dir}: " + ("cached" if gen_s is None else f"generated in {gen_s:.1f} s"), flush=True)
    results, failed = [], False
    os.makedirs(os.path.join(out, "runs"), exist_ok=True)
    for engine in args.engines:
        run_dir = os.path.join(out, "runs", engine)
        shutil.rmtree(run_dir, ignore_errors=True)
        log = os.path.join(out, "runs", f"{engine}.log")
        print(f"{engine}: running (log {log})", flush=True)
        with open(log, "w") as f:
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", engine, "--data-dir", data_dir,
                                   "--workers", str(args.workers), "--out", out],
                                  stdout=subprocess.PIPE, stderr=f, text=True, check=False)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            with open(log, errors="replace") as f:
                tail = "".join(f.readlines()[-30:])
            print(f"{engine}: failed (exit {proc.returncode}); the last lines of {log}:\n{tail}", file=sys.stderr)
            failed = True
            metadata = os.path.join(run_dir, "metadata.sqlite")   # kept: what ran before the failure
            if os.path.isfile(metadata):
                print(f"{engine}: components before the failure (s): {component_times(metadata)}", file=sys.stderr)
            continue
        result = json.loads(lines[-1][len("RESULT "):])
        print(f"{engine}: {result['wall_s']:.1f} s", flush=True)
        results.append(result)
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    summary = dict(date_utc=stamp, ratings=args.ratings, users=args.users, movies=args.movies,
                   workers=args.workers, load_avg=os.getloadavg(), cpus=os.cpu_count(), results=results)
    with open(os.path.join(out, f"beam_cluster-{stamp}.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"\n{args.ratings:,} ratings / {args.users:,} users / {args.movies:,} movies; {os.cpu_count()} CPUs, "
          f"load average at the end {os.getloadavg()[0]:.1f}; cluster: {args.workers} SDK workers per pipeline\n")
    print(table(results))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
