"""Scale: pipeline wall time and peak memory, and top-10 serving latency, vs dataset size.

    .venv/bin/python benchmarks/scale.py [--sizes 100k 1m 5m] [--out ~/.cache/movierec/scale] [--keep]
                                         [--seconds 5] [--concurrency 1 8] [--no-serving]
                                         [-- RUN FLAGS]

Sizes (MovieLens-like: ~100-145 ratings per user on average, long-tailed):

    100k   100,000 ratings,  1,000 users,  2,000 movies
    1m    1,000,000 ratings,   7,000 users, 10,000 movies
    5m    5,000,000 ratings,  35,000 users, 60,000 movies
    25m  25,000,000 ratings, 162,541 users, 59,047 movies (MovieLens-25M's shape)
    RATINGS:USERS:MOVIES   any other size, e.g. 20k:200:500

For each size, one after the other:

1. The dataset is written by the project's generator (`movierec data synth`, seed 42)
   into `<out>/data/synth-r<R>-u<U>-m<M>-s<seed>/` and reused by later runs (generation
   time and the generator's peak memory are reported, and marked cached when reused).
2. A full `movierec run --data-dir D --output-dir <out>/runs/<size>` runs in a fresh
   process (cold TFX cache), its console output goes to `<out>/runs/<size>.log`. Recorded:
   wall time; per-component seconds from ML Metadata (`pipeline_speed.component_times`),
   microseconds per rating and peak RSS while the component ran (the RSS samples that fall
   between its execution's start and end in ML Metadata);
   the start-up split (pre-flight data check, TFX import + compile, time after the last
   component); peak resident memory of the run process (its VmHWM, sampled from /proc every
   0.5 s; wait4's ru_maxrss is kept in the JSON only, as Linux counts the parent's RSS at
   fork time in it) and of its whole process tree (Beam runs in-process here, so the tree is
   one process unless the Beam flags say otherwise); seconds per million ratings, and the
   marginal seconds per million between consecutive sizes (a fixed cost plus a constant
   marginal cost is linear growth; a rising marginal cost is not); the MF Trainer's
   training examples/s (from the model's `assets.extra/movierec.json`).
3. Serving: the pushed mf model (`serving.newest_pushed_model`), or, if the evaluator did
   not bless it, the Trainer's own export (`Trainer.mf/model/<id>/Format-Serving`; marked in
   the table). Top-10 for one random known user: the in-process `serving_default` call
   (p50/p99 of 2000 calls), then `movierec serve` in its own process under closed-loop gRPC
   and REST load at each `--concurrency` for `--seconds` (`serving.run_load`). A
   micro-benchmark splits the in-process call into its pieces (score matmul, popularity
   fallback, mask gather + scatter, top_k, string gathers) using the model's own variables.

A failed run prints its size and the tail of its log and the benchmark goes on with the
next size. The run output folders are deleted after each size unless `--keep` (the run's
full TFX/Beam/TF log is kept as `<out>/runs/<size>.pipeline.log`); the datasets stay. Results are also written to `<out>/scale-<timestamp>.json`. Markdown tables
at the end: datasets, pipeline per size, components per size (with growth factors against
the growth of the ratings), serving vs catalog size, and the top-k breakdown.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import benchmarks.serving as serving_bench  # noqa: E402
from benchmarks.pipeline_speed import component_times  # noqa: E402
from movierec import metadata, summary  # noqa: E402
from movierec.config import PipelineConfig  # noqa: E402

PIPELINE_NAME = PipelineConfig.pipeline_name   # the default the runs use
from benchmarks.serving import newest_pushed_model, percentiles, start_server  # noqa: E402

DEFAULT_OUT = os.path.join("~", ".cache", "movierec", "scale")
SEED = 42
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass(frozen=True)
class Size:
    label: str
    ratings: int
    users: int
    movies: int

    @property
    def dataset_name(self) -> str:
        return f"synth{GENERATOR_VERSION}-r{self.ratings}-u{self.users}-m{self.movies}-s{SEED}"


PRESETS = {
    "100k": Size("100k", 100_000, 1_000, 2_000),
    "1m": Size("1m", 1_000_000, 7_000, 10_000),
    "5m": Size("5m", 5_000_000, 35_000, 60_000),
    "25m": Size("25m", 25_000_000, 162_541, 59_047),   # MovieLens-25M's users and rated movies
}
GENERATOR_VERSION = 2      # in the dataset folder's name: a new generator does not reuse old files
LINEAR_TOLERANCE = 0.2     # us per rating of a component may differ by this much from the smallest size


def parse_count(text: str) -> int:
    """'100k' -> 100000, '1.5m' -> 1500000, '2500' -> 2500."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", text)
    if not m:
        raise ValueError(f"not a count: {text!r} (e.g. 5000, 100k, 1m)")
    value = float(m.group(1)) * {"": 1, "k": 1_000, "m": 1_000_000}[m.group(2).lower()]
    if value != int(value) or value < 1:
        raise ValueError(f"not a whole positive count: {text!r}")
    return int(value)


def parse_size(text: str) -> Size:
    """A preset name (100k, 1m, 5m) or RATINGS:USERS:MOVIES (each like 20k or 20000)."""
    if text.lower() in PRESETS:
        return PRESETS[text.lower()]
    parts = text.split(":")
    if len(parts) != 3:
        raise ValueError(f"size {text!r}: one of {', '.join(PRESETS)} or RATINGS:USERS:MOVIES")
    ratings, users, movies = (parse_count(p) for p in parts)
    return Size(text, ratings, users, movies)


def marginal_per_million(ratings: list[int], values: list[float | None]) -> list[float | None]:
    """(v[i] - v[i-1]) per million more ratings, for i >= 1 (None where a value is missing)."""
    out = []
    for i in range(1, len(values)):
        a, b = values[i - 1], values[i]
        out.append(None if a is None or b is None else (b - a) / ((ratings[i] - ratings[i - 1]) / 1e6))
    return out


def growth_notes(labels: list[str], ratings: list[int], values: list[float | None], what: str,
                 unit: str = "s", tolerance: float = 0.3, min_abs: float = 5.0) -> list[str]:
    """Where growth is not linear (a fixed cost + a constant cost per rating): for each size
    from the third on, the value is compared with the straight line through the two sizes
    before it. A note when it is off by more than `tolerance` of the predicted increase and
    by more than `min_abs` (noise). With two sizes there is no line to test against."""
    notes = []
    marginal = marginal_per_million(ratings, values)
    for i in range(2, len(values)):
        before, m_prev, m_now = values[i - 1], marginal[i - 2], marginal[i - 1]
        if before is None or values[i] is None or m_prev is None:
            continue
        step = (ratings[i] - ratings[i - 1]) / 1e6
        predicted = before + m_prev * step
        deviation = values[i] - predicted
        if abs(deviation) <= max(tolerance * abs(m_prev * step), min_abs):
            continue
        kind = "super-linear" if deviation > 0 else "sub-linear"
        notes.append(f"{what}: {kind} from {labels[i - 1]} to {labels[i]}: {before:,.1f} -> {values[i]:,.1f} {unit} "
                     f"(x{values[i] / before:.1f} for x{ratings[i] / ratings[i - 1]:g} ratings); the cost per "
                     f"million more ratings went from {m_prev:,.1f} to {m_now:,.1f} {unit} (linear from "
                     f"{labels[i - 2]}->{labels[i - 1]} predicts {predicted:,.1f} {unit})")
    return notes


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def fmt(value, spec: str = ".1f", missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


# -- processes and memory -----------------------------------------------------------------
def _ppid_and_rss(pid: int) -> tuple[int, int, str, float] | None:
    """(parent pid, RSS in KB, command name, CPU seconds) from /proc, or None if it is gone.
    CPU seconds: user + system time of the process and of its children it has reaped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        with open(f"/proc/{pid}/statm") as f:
            rss_pages = int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    name = stat[stat.index("(") + 1:stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2:].split()   # fields[0] is field 3 (state) of proc(5)
    ppid = int(fields[1])
    cpu = sum(int(v) for v in fields[11:15]) / CLOCK_TICKS   # utime, stime, cutime, cstime
    return ppid, rss_pages * PAGE_KB, name, cpu


def process_tree(root: int) -> dict[int, tuple[int, str, float]]:
    """{pid: (RSS KB, name, CPU seconds)} of `root` and all its descendants."""
    info = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            got = _ppid_and_rss(int(entry))
            if got is not None:
                info[int(entry)] = got
    children = collections.defaultdict(list)
    for pid, (ppid, *_) in info.items():
        children[ppid].append(pid)
    tree, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in info:
            tree[pid] = info[pid][1:]
            todo.extend(children[pid])
    return tree


def vm_hwm_kb(pid: int) -> int:
    """The kernel's peak resident set (VmHWM) of `pid` since its exec, 0 if unknown. Unlike
    wait4's ru_maxrss it does not include the parent's RSS inherited at fork time."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclasses.dataclass
class ChildResult:
    returncode: int
    seconds: float
    peak_mb: float              # the child's VmHWM (peak RSS since exec), last sample before it exited
    wait4_maxrss_mb: float      # wait4 ru_maxrss: also counts the parent's RSS at fork time
    tree_peak_mb: float         # sampled peak of the summed RSS of the process tree
    max_descendants: int        # most processes seen below the child at one sample
    descendant_names: list[str]
    lines: list[tuple[float, str]]   # (seconds since start, line) of the child's output
    load_mean: float            # mean 1-minute load average while it ran (2 cores: above 2 = contention)
    cpu_s: float                # user + system CPU seconds of the child and its reaped descendants (wait4)
    start_epoch: float
    rss_samples: list[tuple[float, float]] = dataclasses.field(default_factory=list)  # (epoch s, tree RSS MB)
    cpu_samples: list[tuple[float, float]] = dataclasses.field(default_factory=list)  # (epoch s, tree CPU s)


def run_child(cmd: list[str], log_path: str, label: str, echo=lambda line: False,
              heartbeat: float = 60.0, timeout: float | None = None) -> ChildResult:
    """Runs `cmd` with its output to `log_path` (and the lines `echo` accepts to the console,
    prefixed), sampling the RSS of its process tree; reaps it with wait4 for its own peak RSS."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    env.setdefault("PYTHONWARNINGS", "ignore")
    start_epoch, start = time.time(), time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    lines: list[tuple[float, str]] = []
    partial = [""]

    def reader():
        buf = b""
        with open(log_path, "w", encoding="utf-8") as log:
            while chunk := os.read(proc.stdout.fileno(), 65536):
                buf += chunk
                *done, rest = buf.split(b"\n")
                buf = rest
                now = time.perf_counter() - start
                for raw in done:
                    line = raw.decode("utf-8", "replace")
                    lines.append((now, line))
                    log.write(line + "\n")
                    if echo(line):
                        print(f"  [{label}] {line.strip()}", flush=True)
                partial[0] = buf.decode("utf-8", "replace")
                log.flush()
            if buf:
                line = buf.decode("utf-8", "replace")
                lines.append((time.perf_counter() - start, line))
                log.write(line + "\n")

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    tree_peak_kb, hwm_kb, max_desc, names, loads, samples, cpu_samples = 0, 0, 0, set(), [], [], []
    next_beat = heartbeat
    killed = False
    while thread.is_alive():
        tree = process_tree(proc.pid)
        hwm_kb = max(hwm_kb, vm_hwm_kb(proc.pid))
        loads.append(os.getloadavg()[0])
        tree_peak_kb = max(tree_peak_kb, sum(rss for rss, *_ in tree.values()))
        now_epoch = time.time()
        samples.append((now_epoch, sum(rss for rss, *_ in tree.values()) / 1024))
        cpu_samples.append((now_epoch, sum(cpu for *_, cpu in tree.values())))
        if len(tree) - 1 > max_desc:
            max_desc = len(tree) - 1
        names.update(name for pid, (_, name, _) in tree.items() if pid != proc.pid)
        elapsed = time.perf_counter() - start
        if elapsed >= next_beat:
            now_mb = sum(rss for rss, *_ in tree.values()) / 1024
            doing = partial[0].strip() or (lines[-1][1].strip() if lines else "")
            print(f"  [{label}] {elapsed:5.0f} s, RSS {now_mb:,.0f} MB (peak {tree_peak_kb / 1024:,.0f} MB)"
                  f"{': ' + doing[-80:] if doing else ''}", flush=True)
            next_beat += heartbeat
        if timeout is not None and elapsed > timeout and not killed:
            print(f"  [{label}] over the {timeout:.0f} s limit: stopping pid {proc.pid}", flush=True)
            os.killpg(proc.pid, 15)   # its own session, started above
            killed = True
        thread.join(timeout=0.5)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    return ChildResult(returncode=proc.returncode, seconds=seconds, peak_mb=max(hwm_kb, tree_peak_kb) / 1024,
                       wait4_maxrss_mb=usage.ru_maxrss / 1024, tree_peak_mb=tree_peak_kb / 1024,
                       max_descendants=max_desc, descendant_names=sorted(names), lines=lines,
                       load_mean=sum(loads) / max(len(loads), 1), cpu_s=usage.ru_utime + usage.ru_stime,
                       start_epoch=start_epoch, rss_samples=samples,
                       cpu_samples=cpu_samples)


# -- datasets -------------------------------------------------------------------------------
def ensure_dataset(size: Size, out: str) -> dict:
    """The dataset folder of `size` under `<out>/data`, generated (via a temporary folder)
    unless present; returns {dir, seconds, peak_mb, cached}."""
    data_root = os.path.join(out, "data")
    folder = os.path.join(data_root, size.dataset_name)
    meta_path = folder + ".json"
    if os.path.isfile(os.path.join(folder, "ratings.csv")) and os.path.isfile(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
        print(f"[{size.label}] dataset cached: {folder} (generated in {meta['seconds']:.1f} s)", flush=True)
        return dict(meta, dir=folder, cached=True)
    os.makedirs(data_root, exist_ok=True)
    tmp = os.path.join(data_root, f".tmp-{size.dataset_name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"[{size.label}] generating {size.ratings:,} ratings, {size.users:,} users, {size.movies:,} movies "
          f"-> {folder}", flush=True)
    result = run_child([sys.executable, "-m", "movierec.cli", "data", "synth", "--users", str(size.users),
                        "--movies", str(size.movies), "--ratings", str(size.ratings), "--seed", str(SEED),
                        "--out", tmp], tmp + ".log", size.label)
    if result.returncode != 0:
        tail = "\n".join(line for _, line in result.lines[-20:])
        raise RuntimeError(f"`movierec data synth` failed (exit {result.returncode}):\n{tail}")
    shutil.rmtree(folder, ignore_errors=True)
    os.rename(tmp, folder)
    os.remove(tmp + ".log")
    meta = {"seconds": result.seconds, "peak_mb": result.peak_mb, "ratings": size.ratings,
            "users": size.users, "movies": size.movies, "seed": SEED}
    with open(meta_path, "w") as f:
        json.dump(meta, f, indent=2)
    print(f"[{size.label}] generated in {result.seconds:.1f} s (peak RSS {result.peak_mb:,.0f} MB)", flush=True)
    return dict(meta, dir=folder, cached=False)


# -- the pipeline run -----------------------------------------------------------------------
def _executions(metadata_path: str) -> list:
    """The newest run's component executions (`movierec.metadata`); [] without a store."""
    store = metadata.open_store(metadata_path)
    return [] if store is None else metadata.component_executions(store, PIPELINE_NAME)


def execution_span(metadata_path: str) -> tuple[float, float] | None:
    """(first execution start, last execution end) in epoch seconds, from ML Metadata."""
    executions = _executions(metadata_path)
    if not executions:
        return None
    return min(e.started for e in executions), max(e.updated for e in executions)


def component_spans(metadata_path: str) -> dict[str, tuple[float, float]]:
    """{component id: (start, end)} in epoch seconds of its execution, from ML Metadata."""
    return {e.node_id: (e.started, e.updated) for e in _executions(metadata_path)}


def peak_between(samples: list[tuple[float, float]], start: float, end: float) -> float | None:
    """The largest sampled value with start <= time <= end (None if no sample fell inside)."""
    inside = [v for t, v in samples if start <= t <= end]
    return max(inside) if inside else None


def cpu_between(samples: list[tuple[float, float]], start: float, end: float) -> float | None:
    """CPU seconds used from `start` to `end`, from cumulative (time, CPU s) samples: the
    first sample at or after `end` minus the last at or before `start` (so up to one sampling
    interval more on each side); None unless samples bracket the interval."""
    before = [v for t, v in samples if t <= start]
    after = [v for t, v in samples if t >= end]
    return max(0.0, after[0] - before[-1]) if before and after else None


def per_rating_notes(labels: list[str], ratings: list[int], values: list[float | None], what: str,
                     tolerance: float = LINEAR_TOLERANCE, min_abs: float = 5.0) -> list[str]:
    """Where the seconds per rating of a size differ from the smallest size's by more than
    `tolerance` (and the seconds by more than `min_abs`): the +-20% linearity test."""
    notes = []
    base = next(((l, r, v) for l, r, v in zip(labels, ratings, values) if v), None)
    if base is None:
        return notes
    label0, ratings0, value0 = base
    for label, n, value in zip(labels, ratings, values):
        if value is None or label == label0:
            continue
        ratio = (value / n) / (value0 / ratings0)
        if abs(ratio - 1) > tolerance and abs(value - value0 * n / ratings0) > min_abs:
            notes.append(f"{what}: {value / n * 1e6:,.1f} us per rating at {label} vs {value0 / ratings0 * 1e6:,.1f} "
                         f"at {label0} (x{ratio:.2f}; {'more' if ratio > 1 else 'less'} than +-{tolerance:.0%})")
    return notes


def code_state() -> str:
    """HEAD and a hash of the uncommitted changes: the project is edited while this runs."""
    import hashlib

    def git(*a):
        return subprocess.run(["git", "-C", REPO, *a], capture_output=True).stdout

    head = git("rev-parse", "--short", "HEAD").decode().strip()
    diff = git("diff", "HEAD")
    return f"{head}+{hashlib.sha1(diff).hexdigest()[:10]}" if diff else head


def _echo_run_line(line: str) -> bool:
    s = line.strip()
    return bool(re.match(r"\[\d+/\d+\]", s) or s.startswith(("error", "movierec run", "ml-latest"))
                or "BLESSED" in s or "trained on" in s or s.startswith(("Model ", "total (incl")))


def first_line_time(lines: list[tuple[float, str]], prefix: str) -> float | None:
    for t, line in lines:
        if line.strip().startswith(prefix):
            return t
    return None


def mf_model_for_serving(run_dir: str) -> dict | None:
    """{dir, users, source, base_path} of the pushed mf model, else of the Trainer's export."""
    from movierec.serving import versions

    found = None
    if versions.latest_version(os.path.join(run_dir, "serving", "mf")) is not None:
        found = newest_pushed_model(os.path.join(run_dir, "serving"), "mf")
    if found is not None:
        model_dir, version, users = found
        return {"dir": model_dir, "users": users, "source": f"pushed v{version}",
                "base_path": os.path.join(run_dir, "serving", "mf")}
    store = metadata.open_store(PipelineConfig.from_output_dir("-", run_dir).metadata_path)
    model = None if store is None else metadata.latest_output(store, PIPELINE_NAME, "Trainer.mf", "model")
    if model is None:
        return None
    model_dir = os.path.join(model.uri, "Format-Serving")   # TFX's serving-model folder
    with open(os.path.join(model_dir, "assets", "user_id"), encoding="utf-8") as f:
        users = [line.rstrip("\n") for line in f]
    # a TF Serving base path for it: <run>/scale-serving/mf/1 -> Format-Serving
    base = os.path.join(run_dir, "scale-serving", "mf")
    os.makedirs(base, exist_ok=True)
    link = os.path.join(base, "1")
    if not os.path.islink(link):
        os.symlink(model_dir, link)
    return {"dir": model_dir, "users": users, "source": "Trainer output (not pushed)", "base_path": base}


def mf_evaluation(run_dir: str) -> dict | None:
    """Verdict, reasons, NDCG@10 and RMSE of the run's newest mf evaluation (ML Metadata)."""
    found = summary.latest_evaluation(PipelineConfig.from_output_dir("-", run_dir), "mf")
    if found is None:
        return None
    candidate = found.metrics.get("candidate", {})
    return {"blessed": found.blessed, "reasons": found.metrics.get("reasons", []),
            "ndcg@10": candidate.get("ndcg@10"), "rmse": candidate.get("rmse")}


def run_pipeline(size: Size, data_dir: str, out: str, extra: list[str], timeout: float | None) -> dict:
    run_dir = os.path.join(out, "runs", size.label)
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(os.path.dirname(run_dir), exist_ok=True)
    log_path = run_dir + ".log"
    print(f"[{size.label}] movierec run -> {run_dir} (console log {log_path})", flush=True)
    result = run_child([sys.executable, "-m", "movierec.cli", "run", "--data-dir", data_dir,
                        "--output-dir", run_dir, *extra], log_path, size.label, echo=_echo_run_line,
                       timeout=timeout)
    rec = {"run_dir": run_dir, "log": log_path, "returncode": result.returncode, "wall_s": result.seconds,
           "peak_rss_mb": result.peak_mb, "wait4_maxrss_mb": result.wait4_maxrss_mb, "tree_peak_mb": result.tree_peak_mb,
           "max_descendants": result.max_descendants, "descendant_names": result.descendant_names,
           "load_mean": result.load_mean, "cpu_s": result.cpu_s, "code": code_state()}
    pipeline_logs = sorted(glob.glob(os.path.join(run_dir, "logs", "run-*.log")))
    rec["pipeline_log"] = pipeline_logs[-1] if pipeline_logs else None
    if result.returncode != 0:
        rec["tail"] = [line for _, line in result.lines[-40:]]
        print(f"[{size.label}] FAILED: movierec run exited {result.returncode} after {result.seconds:.0f} s "
              f"(peak RSS {result.peak_mb:,.0f} MB); last lines of {log_path}:", flush=True)
        for line in rec["tail"]:
            print(f"    {line}", flush=True)
        if rec["pipeline_log"]:
            with open(rec["pipeline_log"], errors="replace") as f:
                tail = f.readlines()[-30:]
            rec["pipeline_log_tail"] = [t.rstrip("\n") for t in tail]
            print(f"  last lines of the pipeline log {rec['pipeline_log']}:", flush=True)
            for line in rec["pipeline_log_tail"]:
                print(f"    {line[:300]}", flush=True)
    metadata = os.path.join(run_dir, "metadata.sqlite")
    if os.path.isfile(metadata):
        rec["components"] = component_times(metadata)
        spans = component_spans(metadata)
        rec["component_peak_mb"] = {name: peak_between(result.rss_samples, a, b) for name, (a, b) in spans.items()}
        rec["component_cpu_s"] = {name: cpu_between(result.cpu_samples, a, b) for name, (a, b) in spans.items()}
        span = execution_span(metadata)
        logged = first_line_time(result.lines, "log:")
        if span is not None and logged is not None:
            first_start, last_end = span
            rec["preflight_s"] = logged   # process start -> data checked (imports + the reader check)
            rec["tfx_start_s"] = first_start - result.start_epoch - logged
            rec["after_s"] = result.start_epoch + result.seconds - last_end
    if result.returncode == 0:
        model = mf_model_for_serving(run_dir)
        rec["mf_model"] = model and {"dir": model["dir"], "source": model["source"], "users": len(model["users"])}
        if model:
            meta_path = os.path.join(model["dir"], "assets.extra", "movierec.json")
            if os.path.isfile(meta_path):
                with open(meta_path) as f:
                    meta = json.load(f)
                rec["mf_train"] = {k: meta.get(k) for k in (
                    "train_examples", "epochs", "fit_seconds", "examples_per_second",
                    "steady_examples_per_second", "eval_rmse", "num_users", "num_movies")}
                rec["mf_train"]["code_fingerprint"] = (meta.get("config") or {}).get("code")
        rec["mf_eval"] = mf_evaluation(run_dir)
        total_c = sum(rec.get("components", {}).values())
        print(f"[{size.label}] run done in {result.seconds:.1f} s ({result.seconds / size.ratings * 1e6:.1f} s per "
              f"M ratings; components {total_c:.1f} s); peak RSS {result.peak_mb:,.0f} MB; "
              f"{result.max_descendants} child process(es) seen", flush=True)
    return rec


# -- serving --------------------------------------------------------------------------------
SIGNATURE_CALL = "TF2 signature function"


def topk_breakdown(model_dir: str, users: list[str], reps: int = 500) -> dict[str, float]:
    """Median ms of the pieces of the masked top-10, rebuilt from the SavedModel's variables
    (read from its checkpoint, so the model code is not needed), for one user per call."""
    import numpy as np
    import tensorflow as tf

    from movierec.components.recommend import gather_mask

    reader = tf.train.load_checkpoint(os.path.join(model_dir, "variables", "variables"))
    shapes = reader.get_variable_to_shape_map()
    value = {k.split("/.ATTRIBUTES")[0]: k for k in shapes if k.endswith("VARIABLE_VALUE")}

    def get(name):
        return reader.get_tensor(value[name])

    movie_ids, titles, genres = get("movie_ids"), get("titles"), get("genres")
    popularity, row_splits, rated_idx = get("popularity"), get("rated_row_splits"), get("rated_movie_idx")
    n, u = len(movie_ids), len(row_splits) - 2
    matrices = {k: shapes[v] for k, v in value.items() if len(shapes[v]) == 2}
    user_emb = next(get(k) for k, s in matrices.items() if s[0] == u + 1 and s[1] > 1)
    movie_emb = next(get(k) for k, s in matrices.items() if s[0] == n + 1 and s[1] > 1)
    user_bias = next(get(k) for k, s in matrices.items() if s[0] == u + 1 and s[1] == 1)
    movie_bias = next(get(k) for k, s in matrices.items() if s[0] == n + 1 and s[1] == 1)

    P, Q = tf.constant(user_emb), tf.constant(movie_emb[:n])
    bu, bm = tf.constant(user_bias[:, 0]), tf.constant(movie_bias[:n, 0])
    pop = tf.constant(popularity)
    splits, rated = tf.constant(row_splits), tf.constant(rated_idx)
    ids, tit, gen = tf.constant(movie_ids), tf.constant(titles), tf.constant(genres)
    k = tf.constant(10)

    @tf.function(autograph=False)
    def noop(x):
        return x

    @tf.function(autograph=False)
    def score(user):
        p = tf.gather(P, user)
        return 3.5 + tf.gather(bu, user)[:, None] + bm[None, :] + tf.matmul(p, Q, transpose_b=True)

    @tf.function(autograph=False)
    def fallback(scores):
        full = tf.broadcast_to(pop[None, :], tf.shape(scores))
        return tf.where(tf.constant([True])[:, None], scores, full)

    @tf.function(autograph=False)
    def mask(scores, user):
        rows, cols = gather_mask(splits, rated, user)
        idx = tf.stack([rows, cols], axis=1)
        return tf.tensor_scatter_nd_update(scores, idx, tf.fill(tf.shape(idx)[:1], float("-inf")))

    @tf.function(autograph=False)
    def top_k(scores):
        return tf.math.top_k(scores, k=k, sorted=True)

    @tf.function(autograph=False)
    def strings(top_idx):
        empty = tf.fill(tf.shape(top_idx), "")
        ok = top_idx >= 0
        return [tf.where(ok, tf.gather(t, tf.maximum(top_idx, 0)), empty) for t in (ids, tit, gen)]

    rng = np.random.default_rng(0)
    user_idx = [tf.constant([int(i)], tf.int64) for i in rng.integers(0, u, size=64)]
    s0 = score(user_idx[0])
    top0 = top_k(s0).indices

    full_fn = tf.saved_model.load(model_dir).signatures["serving_default"]   # user_id [B] -> top 10
    pieces = {
        "tf.function call, no work": (noop, [(s0,)]),
        "score: gather p_u, matmul [1,d]x[d,N] + biases": (score, [(x,) for x in user_idx]),
        "popularity fallback: broadcast + where [1,N]": (fallback, [(s0,)]),
        "mask: CSR gather + tensor_scatter_nd_update [1,N]": (mask, [(s0, x) for x in user_idx]),
        "top_k(10) over [1,N]": (top_k, [(s0,)]),
        "3 string gathers of 10 + where": (strings, [(top0,)]),
        "whole serving_default (signature call)": (
            lambda uid: full_fn(user_id=uid),
            [(tf.constant([users[i % len(users)]]),) for i in range(64)]),
    }
    # round robin, so that load from elsewhere on the machine hits every piece alike
    times = {name: [] for name in pieces}
    for i in range(reps + 20):
        for name, (fn, arg_list) in pieces.items():
            start = time.perf_counter()
            out = fn(*arg_list[i % len(arg_list)])
            tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, out)
            if i >= 20:
                times[name].append(time.perf_counter() - start)
    result = {name: float(np.median(t) * 1000) for name, t in times.items()}
    return {
        **result,
        "catalog N": n,
        "embedding dim": int(movie_emb.shape[1]),
    }


def measure_serving(size: Size, model: dict, seconds: float, concurrency: list[int]) -> dict:
    users = model["users"]
    with open(os.path.join(model["dir"], "assets", "movie_id"), encoding="utf-8") as f:
        catalog = sum(1 for _ in f)
    rec: dict = {"source": model["source"], "catalog": catalog}
    rec["load_at_start"] = os.getloadavg()[0]
    rec["in_process_all"] = {}
    for name, times in serving_bench.in_process(model["dir"], users, n=2000).items():
        p50, p95, p99 = percentiles(times)
        rec["in_process_all"][name] = {"p50": p50, "p95": p95, "p99": p99}
        print(f"[{size.label}] in-process {name}: p50 {p50:.2f} ms, p99 {p99:.2f} ms", flush=True)
    rec["in_process"] = rec["in_process_all"].get(SIGNATURE_CALL) or next(iter(rec["in_process_all"].values()))
    try:
        rec["breakdown"] = topk_breakdown(model["dir"], users)
    except Exception as e:  # noqa: BLE001 - the breakdown is extra; report and go on
        print(f"[{size.label}] top-k breakdown failed: {e!r}", flush=True)
    started = start_server(["--model_name", "mf", "--model_base_path", model["base_path"],
                            "--file_system_poll_wait_seconds", "0"])
    if started is None:
        rec["server_error"] = "server did not start"
        return rec
    server, grpc_port, rest_port = started
    rec["load"] = {}
    try:
        for protocol, port in (("gRPC", grpc_port), ("REST", rest_port)):
            for c in concurrency:
                samples, errors, elapsed = serving_bench.run_load(protocol, port, "mf", users, c, seconds)
                p50, p95, p99 = percentiles(samples) if samples else (float("nan"),) * 3
                rec["load"][f"{protocol} c={c}"] = {"requests": len(samples), "errors": len(errors), "p50": p50,
                                                    "p95": p95, "p99": p99, "qps": len(samples) / elapsed}
                print(f"[{size.label}] {protocol} c={c}: {len(samples)} requests, {len(errors)} errors, "
                      f"p50 {p50:.2f} ms, p99 {p99:.2f} ms", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return rec


# -- report ---------------------------------------------------------------------------------
def project_value(ratings: list[int], values: list[float | None], target: int) -> float | None:
    """`values` at `target` ratings on the line through the two largest sizes (a fixed cost
    plus their marginal cost per rating); None if either is missing."""
    (r1, v1), (r2, v2) = list(zip(ratings, values))[-2:]
    if v1 is None or v2 is None:
        return None
    return v2 + (v2 - v1) / (r2 - r1) * (target - r2)


def projection(ran: list[Size], results: dict, targets: list[Size]) -> str:
    """Projected seconds and peak RSS at sizes not run, from the two largest sizes run."""
    ratings = [s.ratings for s in ran]
    runs = [results[s.label]["run"] for s in ran]
    names = sorted({n for r in runs for n in r["components"]}, key=lambda n: -runs[-1]["components"].get(n, 0.0))
    rows = []
    for n in names:
        rows.append([n] + [fmt(project_value(ratings, [r["components"].get(n) for r in runs], t.ratings))
                           for t in targets])
    rows.append(["**total wall s**"] + [fmt(project_value(ratings, [r["wall_s"] for r in runs], t.ratings))
                                        for t in targets])
    rows.append(["**peak RSS MB**"] + [fmt(project_value(ratings, [r["peak_rss_mb"] for r in runs], t.ratings), ",.0f")
                                       for t in targets])
    return (f"\n## Projected (line through {ran[-2].label} and {ran[-1].label}: fixed cost + marginal cost per "
            f"rating; not measured)\n\n" + md_table(["component"] + [f"{t.label} s" for t in targets], rows))


def report(sizes: list[Size], results: dict, concurrency: list[int], project: list[Size] = ()) -> str:
    out = []
    done = [s for s in sizes if s.label in results]
    out.append("\n## Datasets\n")
    rows = []
    for s in done:
        d = results[s.label].get("dataset") or {}
        rows.append([s.label, f"{s.ratings:,}", f"{s.users:,}", f"{s.movies:,}", f"{s.ratings / s.users:.0f}",
                     fmt(d.get("seconds")) + (" (cached)" if d.get("cached") else ""), fmt(d.get("peak_mb"), ",.0f")])
    out.append(md_table(["size", "ratings", "users", "movies", "ratings/user", "generation s", "generator peak MB"],
                        rows))

    out.append("\n## Pipeline (`movierec run`, fresh process, cold cache)\n")
    rows = []
    for s in done:
        r = results[s.label].get("run") or {}
        if not r:
            rows.append([s.label, results[s.label].get("error", "not run")] + ["-"] * 12)
            continue
        ok = r["returncode"] == 0
        comps = sum(r.get("components", {}).values())
        train = r.get("mf_train") or {}
        ev = r.get("mf_eval") or {}
        rows.append([
            s.label, "ok" if ok else f"FAILED (exit {r['returncode']})", fmt(r["wall_s"]),
            fmt(r["wall_s"] / s.ratings * 1e6), fmt(comps), fmt(comps / s.ratings * 1e6),
            fmt(r.get("preflight_s")), fmt(r.get("tfx_start_s")), fmt(r.get("after_s")),
            f"{r['peak_rss_mb']:,.0f}" + (f" (tree {r['tree_peak_mb']:,.0f})" if r.get("max_descendants") else ""),
            fmt(r["peak_rss_mb"] / s.ratings * 1e6, ",.0f"),
            (f"{train['examples_per_second']:,.0f} / {train['steady_examples_per_second']:,.0f}"
             if train.get("examples_per_second") else "-"),
            ("pushed" if ev.get("blessed") else "not pushed") + (f", RMSE {train['eval_rmse']:.4f}"
                                                                 if train.get("eval_rmse") else "") if ok else "-",
            fmt(r.get("load_mean")),
        ])
    out.append(md_table(["size", "status", "wall s", "wall s / M ratings", "components s", "components s / M",
                         "pre-flight s", "TFX import + compile s", "after last component s", "peak RSS MB",
                         "peak MB / M ratings", "mf train ex/s (all / after epoch 1)", "mf",
                         "load avg (2 cores)"], rows))

    ran = [s for s in done if (results[s.label].get("run") or {}).get("components")]
    if ran:
        out.append("\n## Components (seconds from ML Metadata; us / rating; CPU seconds of the run's processes "
                   "while the component ran (sampled every 0.5 s: what it cost, whatever else ran on the "
                   "machine); peak RSS MB of the run while the component ran; marginal = extra seconds per "
                   "million extra ratings)\n")
        component_names = sorted({n for s in ran for n in results[s.label]["run"]["components"]},
                       key=lambda n: -results[ran[-1].label]["run"]["components"].get(n, 0.0))
        header = (["component"] + [f"{s.label} {what}" for s in ran
                                   for what in ("s", "us/rating", "CPU s", "CPU us/rating", "peak MB")]
                  + [f"marginal s / M {ran[i - 1].label}->{ran[i].label}" for i in range(1, len(ran))])
        rows = []

        def row(label, vals, peaks=None, cpus=None):
            marginal = marginal_per_million([s.ratings for s in ran], vals)
            peaks = peaks or [None] * len(ran)
            cpus = cpus or [None] * len(ran)
            cells = []
            for s, v, cpu, pk in zip(ran, vals, cpus, peaks):
                cells += [fmt(v), fmt(None if v is None else v / s.ratings * 1e6, ".2f"),
                          fmt(cpu), fmt(None if cpu is None else cpu / s.ratings * 1e6, ".2f"), fmt(pk, ",.0f")]
            return [label] + cells + [fmt(m) for m in marginal]

        for n in component_names:
            rows.append(row(n, [results[s.label]["run"]["components"].get(n) for s in ran],
                            [(results[s.label]["run"].get("component_peak_mb") or {}).get(n) for s in ran],
                            [(results[s.label]["run"].get("component_cpu_s") or {}).get(n) for s in ran]))
        for key, label in (("preflight_s", "pre-flight (imports + data check)"),
                           ("tfx_start_s", "TFX import + compile"), ("after_s", "after last component (summary)")):
            rows.append(row(label, [results[s.label]["run"].get(key) for s in ran]))
        rows.append(row("**total wall**", [results[s.label]["run"]["wall_s"] for s in ran],
                        [results[s.label]["run"]["peak_rss_mb"] for s in ran],
                        [results[s.label]["run"].get("cpu_s") for s in ran]))
        out.append(md_table(header, rows))

    served = [s for s in done if (results[s.label].get("serving") or {}).get("in_process")]
    if served:
        out.append("\n## Serving: top-10 latency vs catalog size (ms; target p99 <= 5 ms at concurrency 8)\n")
        high = max(concurrency)
        rows = []
        for s in served:
            v = results[s.label]["serving"]
            load = v.get("load", {})
            g, r = load.get(f"gRPC c={high}", {}), load.get(f"REST c={high}", {})
            rows.append([s.label, fmt(v.get("catalog"), ","), v["source"], fmt(v["in_process"]["p50"], ".2f"),
                         fmt(v["in_process"]["p99"], ".2f"), fmt(g.get("p50"), ".2f"), fmt(g.get("p99"), ".2f"),
                         fmt(g.get("qps"), ".0f"), fmt(r.get("p50"), ".2f"), fmt(r.get("p99"), ".2f"),
                         fmt(r.get("qps"), ".0f")])
        out.append(md_table(["size", "catalog", "model", "in-process p50", "in-process p99",
                             f"gRPC c={high} p50", f"gRPC c={high} p99", f"gRPC c={high} QPS",
                             f"REST c={high} p50", f"REST c={high} p99", f"REST c={high} QPS"], rows))
        others = [c for c in concurrency if c != high]
        if others:
            out.append("")
            rows = []
            for s in served:
                load = results[s.label]["serving"].get("load", {})
                for c in others:
                    g, r = load.get(f"gRPC c={c}", {}), load.get(f"REST c={c}", {})
                    rows.append([s.label, c, fmt(g.get("p50"), ".2f"), fmt(g.get("p99"), ".2f"), fmt(g.get("qps"), ".0f"),
                                 fmt(r.get("p50"), ".2f"), fmt(r.get("p99"), ".2f"), fmt(r.get("qps"), ".0f")])
            out.append(md_table(["size", "concurrency", "gRPC p50", "gRPC p99", "gRPC QPS", "REST p50", "REST p99",
                                 "REST QPS"], rows))
        names = list(dict.fromkeys(n for s in served for n in results[s.label]["serving"].get("in_process_all", {})))
        if len(names) > 1:
            out.append("\nIn-process baselines (1 user, k=10, ms):\n")
            rows = []
            for s in served:
                got = results[s.label]["serving"]["in_process_all"]
                rows.append([s.label] + [f"{fmt(got.get(n, {}).get('p50'), '.2f')} / {fmt(got.get(n, {}).get('p99'), '.2f')}"
                                         for n in names])
            out.append(md_table(["size"] + [f"{n} p50 / p99" for n in names], rows))
        errors = [(s.label, k, v["errors"]) for s in served
                  for k, v in results[s.label]["serving"].get("load", {}).items() if v["errors"]]
        if errors:
            out.append("\nrequest errors: " + ", ".join(f"{a} {b}: {c}" for a, b, c in errors))
        broke = [s for s in served if results[s.label]["serving"].get("breakdown")]
        if broke:
            out.append("\n## Where the in-process top-10 time goes (median ms per call, 1 user; in brackets: minus an empty "
                       "tf.function call)\n")
            keys = [k for k in results[broke[0].label]["serving"]["breakdown"] if k not in ("catalog N",
                                                                                            "embedding dim")]
            def cell(b, key):   # raw ms, and over the empty tf.function call in brackets
                empty = b["tf.function call, no work"]
                return f"{b[key]:.3f}" + ("" if key == "tf.function call, no work" else f" ({b[key] - empty:+.3f})")

            rows = [[k] + [cell(results[s.label]["serving"]["breakdown"], k) for s in broke] for k in keys]
            out.append(md_table(["piece"] + [f"{s.label} (N={results[s.label]['serving']['breakdown']['catalog N']:,}, "
                                             f"d={results[s.label]['serving']['breakdown']['embedding dim']})"
                                             for s in broke], rows))

    notes, linear, component_names = [], [], sorted({n for s in ran for n in results[s.label]["run"]["components"]})
    if ran:
        labels, ratings = [s.label for s in ran], [s.ratings for s in ran]
        notes += growth_notes(labels, ratings, [results[s.label]["run"]["wall_s"] for s in ran], "wall time")
        notes += growth_notes(labels, ratings, [results[s.label]["run"]["peak_rss_mb"] for s in ran], "peak RSS",
                              unit="MB", min_abs=200)
        for n in component_names:
            notes += growth_notes(labels, ratings, [results[s.label]["run"]["components"].get(n) for s in ran], n)
        linear = per_rating_notes(labels, ratings, [results[s.label]["run"]["wall_s"] for s in ran], "wall time")
        for n in component_names:
            linear += per_rating_notes(labels, ratings, [results[s.label]["run"]["components"].get(n) for s in ran], n)
    failed = [s.label for s in done if (results[s.label].get("run") or {}).get("returncode", 0) != 0
              or results[s.label].get("error")]
    if failed:
        notes.append("failed sizes: " + ", ".join(failed) + " (see the log tails above)")
    if notes:
        out.append("\n## Not linear (more than 30% off the line through the two sizes before)\n")
        out += [f"- {n}" for n in notes]
    if project and len(ran) >= 2:
        out.append(projection(ran, results, project))
    if ran and len(ran) > 1:
        out.append(f"\n## Cost per rating against {ran[0].label} (target: within +-{LINEAR_TOLERANCE:.0%})\n")
        out += [f"- {n}" for n in linear] or ["- every component and the wall time within the target"]
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=["100k", "1m", "5m"],
                   help="sizes to run, in order (default: 100k 1m 5m)")
    p.add_argument("--out", default=os.path.expanduser(os.environ.get("MOVIEREC_SCALE_DIR") or DEFAULT_OUT),
                   help=f"folder for datasets, run outputs and results (default: $MOVIEREC_SCALE_DIR or {DEFAULT_OUT})")
    p.add_argument("--keep", action="store_true", help="keep each size's run output folder")
    p.add_argument("--seconds", type=float, default=5.0, help="load per protocol and concurrency (default: 5)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    p.add_argument("--no-serving", action="store_true", help="skip the serving measurements")
    p.add_argument("--run-timeout", type=float, default=4 * 3600,
                   help="stop a `movierec run` after this many seconds (default: 4 h)")
    p.add_argument("run_args", nargs=argparse.REMAINDER,
                   help="extra `movierec run` flags after --, e.g. -- --epochs 10")
    p.add_argument("--from-json", metavar="FILE", help="only print the tables of a saved results file")
    p.add_argument("--project", nargs="*", default=[], metavar="SIZE",
                   help="also print the seconds and peak RSS projected at these sizes from the two largest run")
    args = p.parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            saved = json.load(f)
        print(report([Size(**r["size"]) for r in saved.values()], saved, args.concurrency,
                     [parse_size(t) for t in args.project]))
        return 0
    try:
        sizes = [parse_size(s) for s in args.sizes]
    except ValueError as e:
        p.error(str(e))
    extra = list(args.run_args)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    out = os.path.abspath(args.out)
    if out == REPO or out.startswith(REPO + os.sep):
        p.error(f"--out {out} is inside the repository; generated data must live outside it")
    os.makedirs(out, exist_ok=True)

    started = time.perf_counter()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results_path = os.path.join(out, f"scale-{stamp}.json")
    results: dict = {}
    print(f"scale benchmark: sizes {', '.join(s.label for s in sizes)}; out {out}; "
          f"run flags {' '.join(extra) or '(defaults)'}", flush=True)
    for size in sizes:
        res = results[size.label] = {"size": dataclasses.asdict(size)}
        try:
            res["dataset"] = ensure_dataset(size, out)
            res["run"] = run_pipeline(size, res["dataset"]["dir"], out, extra, args.run_timeout)
            model = None
            if res["run"]["returncode"] == 0:
                model = mf_model_for_serving(res["run"]["run_dir"])
                if model is None:
                    print(f"[{size.label}] no mf model found to serve", flush=True)
            if model is not None and not args.no_serving:
                res["serving"] = measure_serving(size, model, args.seconds, args.concurrency)
        except Exception as e:  # noqa: BLE001 - report the size as failed and go on
            res["error"] = f"{type(e).__name__}: {e}"
            print(f"[{size.label}] FAILED: {res['error']}", flush=True)
        finally:
            run_dir = (res.get("run") or {}).get("run_dir")
            if run_dir and not args.keep:
                pipeline_log = res["run"].get("pipeline_log")
                if pipeline_log and os.path.isfile(pipeline_log):   # the TFX/Beam/TF log outlives the folder
                    res["run"]["pipeline_log"] = shutil.copy(pipeline_log, run_dir + ".pipeline.log")
                shutil.rmtree(run_dir, ignore_errors=True)
            with open(results_path, "w") as f:
                json.dump(results, f, indent=2, default=str)
    total = time.perf_counter() - started
    print(report(sizes, results, args.concurrency, [parse_size(t) for t in args.project]))
    print(f"\nwhole benchmark: {total:.0f} s ({total / 60:.1f} min); results {results_path}; "
          f"benchmark process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")
    return 0 if all(r.get("run", {}).get("returncode") == 0 and "error" not in r for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
