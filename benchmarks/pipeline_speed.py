"""Wall time of a full `movierec run`, per component (from ML Metadata) and in total.

    .venv/bin/python benchmarks/pipeline_speed.py [--data-dir ../shared/data/ml-100k] [--runs 1] [-- RUN FLAGS]

Each run starts a fresh `movierec run` process in an empty output folder (cold TFX cache,
warm OS file cache) and reads every execution's start and end from ML Metadata, so the
figures are TFX's own. "start-up" is the process time outside any component (imports,
pipeline compilation, the preflight data check).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from movierec import metadata

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def component_times(metadata_path: str, pipeline_name: str = "movierec") -> dict[str, float]:
    """{node id: wall seconds} of the store's newest run, from ML Metadata."""
    store = metadata.open_store(metadata_path)
    if store is None:
        raise FileNotFoundError(f"no ML Metadata store at {metadata_path}")
    return {e.node_id: e.seconds for e in metadata.component_executions(store, pipeline_name)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.path.join(os.path.dirname(REPO), "shared", "data", "ml-100k"))
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("run_args", nargs=argparse.REMAINDER,
                   help="extra `movierec run` flags after --, e.g. -- --beam-pipeline-args '...'")
    args = p.parse_args()
    extra = [a for a in args.run_args if a != "--"]
    results = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "movierec.cli", "run", "--data-dir", args.data_dir,
                                   "--output-dir", out, *extra], capture_output=True, text=True,
                                  env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
            total = time.perf_counter() - start
            if proc.returncode != 0:
                print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
                return proc.returncode
            times = component_times(os.path.join(out, "metadata.sqlite"))
            results.append((total, times))
            print(f"run {run + 1}: {total:.1f} s", flush=True)
    names = sorted(results[0][1], key=lambda n: -results[0][1][n])
    print("\n| component | " + " | ".join(f"run {i + 1} s" for i in range(len(results))) + " |")
    print("| --- |" + " --- |" * len(results))
    for n in names:
        print(f"| {n} | " + " | ".join(f"{r[1].get(n, 0):.1f}" for r in results) + " |")
    print("| start-up and other (outside components) | "
          + " | ".join(f"{r[0] - sum(r[1].values()):.1f}" for r in results) + " |")
    print("| **total** | " + " | ".join(f"**{r[0]:.1f}**" for r in results) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
