"""What a local pipeline run needs around `pipeline.local_runner.run`: its input folders, the
output-folder lock, the run log, and the cause of a failure.

  resolve_data_dir   the MovieLens folder when none is given: $MOVIEREC_DATA_DIR, a cached
                     ml-100k, a download, else a generated synthetic dataset
  input_folders      the folders a config reads (one folder, or a window of span folders)
  check_inputs       read and check each input folder before TFX starts (file:line errors)
  lock_output_dir    one run at a time per output folder
  run_pipeline       the LocalDagRunner run with per-component progress lines (from ML Metadata)
  run_once           all of it for one `run` / `retrain`: inputs checked, folder locked,
                     effective config saved, log opened, pipeline run
  data_problem       the DataError / AnomaliesFoundError behind a pipeline failure

TensorFlow and TFX are imported inside the functions that run the pipeline.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from typing import Callable

from movierec.config import PipelineConfig

ENV_DATA_DIR = "MOVIEREC_DATA_DIR"
SYNTH_DEFAULT = dict(users=600, movies=1200, ratings=60_000, seed=42)


def resolve_data_dir(arg: str | None, cache_dir: str | None, environ=os.environ,
                     download_timeout: float = 15.0, note: Callable[[str], None] | None = None) -> tuple[str, str]:
    """(folder, how it was chosen). Order: `arg`, $MOVIEREC_DATA_DIR, cache, download, synthetic.
    `note` receives why a download failed (default: printed to stderr)."""
    from movierec.components.data import download, synth  # noqa: PLC0415

    if arg:
        return arg, "--data-dir"
    if environ.get(ENV_DATA_DIR):
        return environ[ENV_DATA_DIR], f"${ENV_DATA_DIR}"
    cache_dir = cache_dir or download.default_cache_dir(environ)
    cached = download.cached_dataset("ml-100k", cache_dir)
    if cached:
        return cached, "cached ml-100k"
    try:
        return download.fetch("ml-100k", cache_dir, timeout=download_timeout), "downloaded ml-100k"
    except download.DownloadError as e:
        (note or (lambda text: print(f"note: {text}", file=sys.stderr)))(str(e))
    spec = synth.SynthSpec(**SYNTH_DEFAULT)
    if "://" in cache_dir:  # the generator writes local files: the fallback goes to the local cache
        cache_dir = download.default_cache_dir({})
    # Local-only from here: a generated folder, renamed into place once complete.
    out = os.path.join(cache_dir, f"synthetic-u{spec.users}-m{spec.movies}-r{spec.ratings}-s{spec.seed}")
    if not os.path.isfile(os.path.join(out, "movies.csv")):
        tmp = out + ".tmp"
        synth.generate(spec, tmp)
        os.replace(tmp, out)
    return out, "synthetic fallback (no data given, no cached ml-100k, no network)"


def input_folders(config: PipelineConfig) -> list[str]:
    """The MovieLens folders a run reads: `data_dir`, or the span window's folders."""
    from movierec.components.data import spans  # noqa: PLC0415

    if config.span_window is None:
        return [config.data_dir]
    available = spans.list_spans(config.data_dir)
    if not available:
        raise FileNotFoundError(f"{config.data_dir} has no span-<N>/ folders "
                                "(make some with `movierec data split-spans`)")
    return spans.window_dirs(config.data_dir, available[-1], config.span_window)


def check_inputs(config: PipelineConfig) -> list[tuple[str, object]]:
    """(folder, readers.DatasetReport) of every input folder, read and checked against
    `max_bad_records`; the first folder beyond it raises readers.DataError (file:line)."""
    from movierec.components.data import arrow_reader  # noqa: PLC0415 (vectorised; same report and errors)

    return [(folder, arrow_reader.check_dataset(folder, config.max_bad_records)) for folder in input_folders(config)]


def data_problem(exc: BaseException) -> BaseException | None:
    """The DataError or AnomaliesFoundError behind a pipeline failure, if that is its cause."""
    from movierec.components.data.readers import DataError  # noqa: PLC0415
    from movierec.components.strict_example_validator.executor import AnomaliesFoundError  # noqa: PLC0415

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (DataError, AnomaliesFoundError)):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class OutputLock:
    """The held lock of `lock_output_dir`; leaving the `with` block releases it."""

    def __init__(self, handle):
        self.handle = handle

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()   # closing the file releases the lock


def lock_output_dir(output_dir: str) -> OutputLock:
    """An exclusive lock on `<output_dir>/.lock` for the length of one run.

    Two runs on one output folder would share one SQLite ML Metadata store and one serving
    folder; the second is refused (BlockingIOError naming the holder) instead of queued.
    The kernel drops the lock when the process dies, so a killed run never leaves it behind.

    The lock is a local file by nature (an flock). For an output folder on an object store
    (`scheme://...`, no locks there) it is `<local cache>/locks/<sha256 of the URL>.lock`,
    which keeps runs on one machine apart; runs from different machines are not.
    """
    import fcntl  # noqa: PLC0415

    lock_path = _lock_path(output_dir)
    os.makedirs(os.path.dirname(lock_path), exist_ok=True)  # local-only (see above)
    handle = open(lock_path, "a+")  # local-only (see above)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise BlockingIOError(f"{output_dir} is in use by a running movierec ({holder}); "
                              "try again when it has finished") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    handle.flush()
    return OutputLock(handle)


def _lock_path(output_dir: str) -> str:
    """The local lock file of `output_dir` (see `lock_output_dir`)."""
    if "://" not in output_dir:
        return os.path.join(os.path.abspath(output_dir), ".lock")
    import hashlib  # noqa: PLC0415

    from movierec.components.data import download  # noqa: PLC0415
    digest = hashlib.sha256(output_dir.rstrip("/").encode()).hexdigest()
    return os.path.join(download.default_cache_dir(), "locks", f"{digest}.lock")


def log_dir(output_dir: str) -> str:
    """The local folder of a run's logs: `<output_dir>/logs`, or for an output folder on an
    object store `<local cache>/logs/<sha256 of the URL>` (a log file is written locally)."""
    if "://" not in output_dir:
        return os.path.join(os.path.abspath(output_dir), "logs")
    import hashlib  # noqa: PLC0415

    from movierec.components.data import download  # noqa: PLC0415
    digest = hashlib.sha256(output_dir.rstrip("/").encode()).hexdigest()
    return os.path.join(download.default_cache_dir(), "logs", digest)


def setup_logging(log_dir: str) -> str:
    """Sends every log record of this process to a new `<log_dir>/run-<time>.log`; returns
    its path. Local-only: logging.FileHandler writes a local file."""
    os.makedirs(log_dir, exist_ok=True)
    path = os.path.join(log_dir, time.strftime("run-%Y%m%d-%H%M%S.log"))
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    return path


class PipelineFailed(RuntimeError):
    """A run that stopped: `component` (None: before any), `cause` (the data problem, if
    that was it) and the original exception as __cause__."""

    def __init__(self, component: str | None, error: BaseException):
        self.component, self.cause = component, data_problem(error)
        self.log_path: str | None = None   # set by run_once
        super().__init__(f"error in {component or 'pipeline'}: {self.cause or error}")


def run_pipeline(config: PipelineConfig, stream=None) -> tuple[str | None, list]:
    """Runs the pipeline with LocalDagRunner; prints one progress line per component to
    `stream` (default stdout), read from the run's ML Metadata (`progress.RunProgress`).
    Returns (the run id, each component's `progress.ComponentTiming` in the order they
    started). TFX's, Beam's and TensorFlow's own log records go to the root logger
    (`setup_logging`). A failure is a PipelineFailed naming the component."""
    import absl.logging  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415

    absl.logging.set_verbosity(absl.logging.INFO)
    # TensorFlow gives its logger a stderr handler of its own; its records belong in the run log
    tf.get_logger().handlers.clear()
    from movierec.pipeline import local_runner  # noqa: PLC0415
    from movierec.pipeline.pipeline import COMPONENT_IDS  # noqa: PLC0415
    from movierec.progress import RunProgress  # noqa: PLC0415

    progress = RunProgress(config.metadata_path, config.pipeline_name, len(COMPONENT_IDS), stream)
    try:
        with progress:
            local_runner.run(config)
    except Exception as e:  # noqa: BLE001 - re-raised with the component and the root cause
        raise PipelineFailed(progress.failed_component(), e) from e
    return progress.run_id, progress.timings


@dataclasses.dataclass
class RunResult:
    run_id: str | None                 # the run's id in ML Metadata (its pipeline_run context)
    timings: list                      # progress.ComponentTiming per component, in run order
    served_before: dict                # model -> newest pushed version before the run (None: none)
    config_path: str                   # the saved effective config
    log_path: str                      # the run's log file


def run_once(config: PipelineConfig, command: str = "run", say: Callable[[str], None] = print) -> RunResult:
    """One local run of `config`: the input folders read and checked (a line each through
    `say`), the output folder locked, the effective config saved under the pipeline root,
    the log opened, the pipeline run. Raises ValueError / OSError / readers.DataError for
    inputs that cannot be used, BlockingIOError when another run holds the folder, and
    PipelineFailed when a component fails."""
    from movierec import config_file, summary  # noqa: PLC0415
    from movierec.config import MODEL_NAMES  # noqa: PLC0415

    folders = input_folders(config)
    if config.span_window is not None:
        say(f"  spans: {', '.join(posix_basename(f) for f in folders)} "
            f"(window {config.span_window or 'all'}); MF warm start {'on' if config.warm_start else 'off'}")
    for folder, report in check_inputs(config):
        where = f"{posix_basename(folder)} " if config.span_window is not None else ""
        say(f"  {where}{report.data_format}: {report.ratings} ratings, {report.users} users, "
            f"{report.movies} movies; {len(report.problems)} invalid line(s) skipped within tolerance")
        for problem in report.problems:
            say(f"  skipped {problem}")
    with lock_output_dir(config.output_dir):
        before = summary.served_versions(config, MODEL_NAMES)
        config_path = config_file.save_effective(config, command)
        say(f"  config: {config_path}")
        log_path = setup_logging(log_dir(config.output_dir))
        say(f"  log: {log_path}")
        say("  loading TFX ...")
        try:
            run_id, timings = run_pipeline(config)
        except PipelineFailed as e:
            e.log_path = log_path
            raise
    return RunResult(run_id, timings, before, config_path, log_path)


def posix_basename(path: str) -> str:
    return path.rstrip("/").rpartition("/")[2]
