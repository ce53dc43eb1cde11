"""A Beam cluster on this machine: Beam's job service and an external SDK worker pool, each
its own process, talking over loopback.

This is how Beam runs Python on Flink or Spark on Kubernetes, scaled down to one host:
- the **job service** (`apache_beam.runners.portability.local_job_service_main`) accepts
  pipelines over Beam's Job API (gRPC), stages their artifacts and runs them; it plays the
  Flink JobManager / Spark driver. Its runner is Beam's portable FnApiRunner, which sends
  every bundle to SDK workers over the Fn API (gRPC data, control, state and logging
  channels) and never executes user code itself.
- the **worker pool** (Beam's `BeamFnExternalWorkerPoolServicer`, the service of
  `apache_beam.runners.worker.worker_pool_main`) starts one SDK harness *process* per worker
  the runner asks for (`--environment_type=EXTERNAL`); on Kubernetes this is the
  `--worker_pool` sidecar container next to each Flink TaskManager.

A pipeline reaches it with the options of `LocalBeamCluster.beam_args()`:

    --runner=PortableRunner --job_endpoint=localhost:<job port>
    --environment_type=EXTERNAL --environment_config=127.0.0.1:<pool port>
    --direct_num_workers=<workers> --requirements_file=<empty file> --requirements_cache=skip
    --job_server_timeout=86400

`--direct_num_workers` is read by the job service's runner: that many SDK worker processes
per pipeline, bundles spread over them. Both services pick a free port themselves (port 0)
and report it through a port file, so two clusters never race for a port.

The pool is served by `python -m movierec.pipeline.beam_cluster worker-pool`, not by
`worker_pool_main` itself: that one binds every interface (`[::]`), and anyone who can reach
the pool can make it start a worker that runs code sent by any controller. Here it binds
127.0.0.1 only; the servicer, its worker command and its process handling are Beam's.

Command line (starts both, prints the options, runs until interrupted):

    python -m movierec.pipeline.beam_cluster --workers 2 --log-dir /tmp/beam-cluster

Local-only by nature (processes, port files and logs on this machine), so plain `os`/`open`
are right here.
"""
from __future__ import annotations

import argparse
import atexit
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

MODULE = "movierec.pipeline.beam_cluster"
STARTUP_TIMEOUT_S = 120.0
STDERR_TAIL_LINES = 30
# PortableRunner's --job_server_timeout (Beam's default: 300 s) is also the deadline of the
# job state and message streams it watches a running job with, so a pipeline running longer
# than that fails with DEADLINE_EXCEEDED although the job is fine (1M ratings' Transform
# does). A day: no component runs that long here.
JOB_SERVER_TIMEOUT_S = 86_400


class ClusterStartError(RuntimeError):
    """A cluster process exited or did not report its port in time."""


@dataclass(frozen=True)
class BeamJob:
    """One pipeline the job service has run: Beam's job id, name and final state name
    (`DONE`, `FAILED`, `RUNNING`, ... of `beam_job_api_pb2.JobState`)."""

    job_id: str
    name: str
    state: str


def _tail(path: str, lines: int = STDERR_TAIL_LINES) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as e:
        return f"(no log: {e})"


class _Service:
    """One service process started in its own process group (so stopping it also stops the
    SDK workers it started), its output in `log_path`, its port read from `port_file`."""

    def __init__(self, name: str, argv: list[str], port_file: str, log_path: str, env: dict[str, str]):
        self.name, self.port_file, self.log_path = name, port_file, log_path
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         stdin=subprocess.DEVNULL, start_new_session=True)

    def wait_for_port(self, deadline: float) -> int:
        while True:
            if os.path.exists(self.port_file):
                with open(self.port_file) as f:
                    text = f.read().strip()
                if text:
                    return int(text)
            code = self.proc.poll()
            if code is not None or time.monotonic() > deadline:
                why = f"exited with code {code}" if code is not None else "did not report its port in time"
                raise ClusterStartError(
                    f"Beam {self.name} (pid {self.proc.pid}) {why}; the last lines of {self.log_path}:\n"
                    f"{_tail(self.log_path)}")
            time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        # SDK workers left behind in the group (the service's own handler normally stops them)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class LocalBeamCluster:
    """Beam's job service + an external SDK worker pool on loopback; a context manager.

    workers: SDK worker processes per pipeline (`--direct_num_workers`).
    log_dir: where `job_service.log` and `worker_pool.log` go (the worker pool's log also
    gets each SDK worker's stderr); a temporary folder when None.
    job_port, pool_port: fixed ports; 0 (the default) lets each service pick a free one.
    """

    def __init__(self, workers: int = 2, log_dir: str | None = None, job_port: int = 0, pool_port: int = 0):
        if workers < 1:
            raise ValueError(f"LocalBeamCluster: workers={workers!r} is invalid: at least 1")
        for name, port in (("job_port", job_port), ("pool_port", pool_port)):
            if not 0 <= port <= 65535:
                raise ValueError(f"LocalBeamCluster: {name}={port!r} is invalid: 0 (any free port) or 1..65535")
        self.workers = workers
        self.log_dir = log_dir or tempfile.mkdtemp(prefix="movierec-beam-cluster-")
        self._ports = (job_port, pool_port)
        self.job_port: int | None = None
        self.pool_port: int | None = None
        self._services: list[_Service] = []

    @property
    def requirements_file(self) -> str:
        """An empty requirements file: the workers share this machine's installation."""
        return os.path.join(self.log_dir, "requirements.txt")

    @property
    def job_service_log(self) -> str:
        return os.path.join(self.log_dir, "job_service.log")

    @property
    def worker_pool_log(self) -> str:
        return os.path.join(self.log_dir, "worker_pool.log")

    def start(self, timeout: float = STARTUP_TIMEOUT_S) -> "LocalBeamCluster":
        os.makedirs(self.log_dir, exist_ok=True)
        env = dict(os.environ)
        # Beam's pool starts each worker as `python -c ...`: make that this interpreter
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        job_port_file = os.path.join(self.log_dir, "job_service.port")
        pool_port_file = os.path.join(self.log_dir, "worker_pool.port")
        for stale in (job_port_file, pool_port_file):
            if os.path.exists(stale):
                os.unlink(stale)
        open(self.requirements_file, "w").close()
        atexit.register(self.stop)
        try:
            self._services.append(_Service(
                "job service", [sys.executable, "-m", MODULE, "job-service", f"--port-file={job_port_file}",
                                f"--port={self._ports[0]}",
                                f"--staging-dir={os.path.join(self.log_dir, 'staging')}"],
                job_port_file, self.job_service_log, env))
            self._services.append(_Service(
                "worker pool", [sys.executable, "-m", MODULE, "worker-pool", f"--port-file={pool_port_file}",
                                f"--port={self._ports[1]}"],
                pool_port_file, self.worker_pool_log, env))
            deadline = time.monotonic() + timeout
            self.job_port = self._services[0].wait_for_port(deadline)
            self.pool_port = self._services[1].wait_for_port(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stops both services and every SDK worker they started; safe to call twice."""
        while self._services:
            self._services.pop().stop()
        atexit.unregister(self.stop)

    def __enter__(self) -> "LocalBeamCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def beam_args(self) -> list[str]:
        """The Beam options that run a pipeline on this cluster (`movierec run
        --beam-pipeline-args "<these, space-separated>"`)."""
        if self.job_port is None:
            raise RuntimeError("LocalBeamCluster: start() it first")
        return ["--runner=PortableRunner", f"--job_endpoint=localhost:{self.job_port}",
                "--environment_type=EXTERNAL", f"--environment_config=127.0.0.1:{self.pool_port}",
                f"--direct_num_workers={self.workers}", f"--requirements_file={self.requirements_file}",
                "--requirements_cache=skip", f"--job_server_timeout={JOB_SERVER_TIMEOUT_S}"]

    def jobs(self) -> list[BeamJob]:
        """Every pipeline the job service has been given, from its Job API (`GetJobs`)."""
        import grpc  # noqa: PLC0415
        from apache_beam.portability.api import beam_job_api_pb2, beam_job_api_pb2_grpc  # noqa: PLC0415

        with grpc.insecure_channel(f"localhost:{self.job_port}") as channel:
            reply = beam_job_api_pb2_grpc.JobServiceStub(channel).GetJobs(
                beam_job_api_pb2.GetJobsRequest(), timeout=30)
        return [BeamJob(j.job_id, j.job_name, beam_job_api_pb2.JobState.Enum.Name(j.state))
                for j in reply.job_info]

    def started_workers(self) -> int:
        """How many SDK worker processes the pool has started (from its log)."""
        try:
            with open(self.worker_pool_log, errors="replace") as f:
                return sum("Starting worker with command" in line for line in f)
        except FileNotFoundError:
            return 0


# The Beam-based head of the pipeline: what a Beam cluster runs (the Trainers and Evaluators
# after it are TensorFlow programs of their own).
DATA_COMPONENTS = ("MovieLensExampleGen", "StatisticsGen", "ImportSchemaGen", "StrictExampleValidator", "Transform")


def run_data_components(config) -> None:
    """Runs `create_pipeline(config)` from ExampleGen through Transform, nothing after, with
    TFX's LocalDagRunner (a partial run; ML Metadata in SQLite at `config.metadata_path`).
    config: a `movierec.config.PipelineConfig`; its `beam_pipeline_args` pick the engine."""
    from tfx.orchestration import metadata  # noqa: PLC0415
    from tfx.orchestration import pipeline as tfx_pipeline  # noqa: PLC0415
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner  # noqa: PLC0415

    from movierec.pipeline.pipeline import create_pipeline  # noqa: PLC0415

    if "://" not in config.metadata_path:
        os.makedirs(os.path.dirname(config.metadata_path), exist_ok=True)
    LocalDagRunner().run(
        create_pipeline(config, metadata.sqlite_metadata_connection_config(config.metadata_path)),
        run_options=tfx_pipeline.RunOptions(to_nodes=[DATA_COMPONENTS[-1]]))


def _write_port(port_file: str, port: int) -> None:
    with open(port_file + ".tmp", "w") as f:
        f.write(str(port))
    os.rename(port_file + ".tmp", port_file)


def _serve_until_terminated(stop) -> None:
    """Serves until SIGTERM/SIGINT or until the process that started this one is gone (a
    killed test or CLI leaves no services behind), then calls `stop`."""
    def _shutdown(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _shutdown)
    signal.signal(signal.SIGINT, _shutdown)
    parent = os.getppid()
    try:
        while os.getppid() == parent:
            time.sleep(1.0)
        logging.info("parent process %d is gone; stopping", parent)
    finally:
        stop()


def _log_config() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")


def serve_job_service(port_file: str, staging_dir: str, port: int = 0) -> None:
    """Beam's local job service (`LocalJobServicer`) on localhost; writes the bound port to
    `port_file` and serves until SIGTERM/SIGINT.

    Its jobs run on Beam's portable FnApiRunner with `--direct_num_workers` SDK workers
    (Beam's stock `local_job_service_main` ignores that option there and uses one worker per
    pipeline; FnApiRunner takes the count only through its `_num_workers` attribute)."""
    from apache_beam.options.pipeline_options import DirectOptions  # noqa: PLC0415
    from apache_beam.portability.api import beam_job_api_pb2  # noqa: PLC0415
    from apache_beam.runners.portability import local_job_service  # noqa: PLC0415
    from apache_beam.runners.portability.fn_api_runner import fn_runner  # noqa: PLC0415

    class _Job(local_job_service.BeamJob):
        def _invoke_runner(self):
            self.set_state(beam_job_api_pb2.JobState.RUNNING)
            options = self.pipeline_options()
            runner = fn_runner.FnApiRunner(provision_info=self._provision_info)
            runner._num_workers = max(1, int(options.view_as(DirectOptions).direct_num_workers or 1))
            logging.info("job %s: %d SDK worker(s)", self._job_id, runner._num_workers)
            return runner.run_via_runner_api(self._pipeline_proto, options)

    _log_config()
    servicer = local_job_service.LocalJobServicer(staging_dir, beam_job_type=_Job)
    bound = servicer.start_grpc_server(port)
    _write_port(port_file, bound)
    logging.info("Beam job service serving on localhost:%d", bound)
    _serve_until_terminated(servicer.stop)


def serve_worker_pool(port_file: str, port: int = 0) -> None:
    """Beam's external worker pool (process mode) on 127.0.0.1; writes the bound port to
    `port_file` and serves until SIGTERM/SIGINT, then stops the workers it started."""
    import grpc  # noqa: PLC0415
    from apache_beam.portability.api import beam_fn_api_pb2_grpc  # noqa: PLC0415
    from apache_beam.runners.worker import worker_pool_main  # noqa: PLC0415
    from apache_beam.utils import thread_pool_executor  # noqa: PLC0415

    _log_config()
    pool = worker_pool_main.BeamFnExternalWorkerPoolServicer(use_process=True)
    server = grpc.server(thread_pool_executor.shared_unbounded_instance(),
                         options=[("grpc.http2.max_pings_without_data", 0), ("grpc.http2.max_ping_strikes", 0)])
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(pool, server)
    server.start()
    _write_port(port_file, bound)
    logging.info("Beam worker pool serving on 127.0.0.1:%d", bound)

    def stop():
        server.stop(0)
        for proc in list(pool._worker_processes.values()):
            worker_pool_main.kill_process_gracefully(proc, timeout=5)

    _serve_until_terminated(stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m movierec.pipeline.beam_cluster",
                                     description="Start a Beam job service and SDK worker pool on loopback "
                                                 "and print the --beam-pipeline-args that reach them.")
    sub = parser.add_subparsers(dest="command")
    pool = sub.add_parser("worker-pool", help="(internal) serve the SDK worker pool on 127.0.0.1")
    pool.add_argument("--port-file", required=True)
    pool.add_argument("--port", type=int, default=0)
    jobs = sub.add_parser("job-service", help="(internal) serve the job service on localhost")
    jobs.add_argument("--port-file", required=True)
    jobs.add_argument("--staging-dir", required=True)
    jobs.add_argument("--port", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="SDK worker processes per pipeline (default: 2)")
    parser.add_argument("--log-dir", default=None, help="logs and port files (default: a temporary folder)")
    parser.add_argument("--job-port", type=int, default=0, help="job service port (default: any free port)")
    parser.add_argument("--pool-port", type=int, default=0, help="worker pool port (default: any free port)")
    args = parser.parse_args(argv)
    if args.command == "worker-pool":
        serve_worker_pool(args.port_file, args.port)
        return 0
    if args.command == "job-service":
        serve_job_service(args.port_file, args.staging_dir, args.port)
        return 0
    cluster = LocalBeamCluster(args.workers, args.log_dir, args.job_port, args.pool_port)
    try:
        cluster.start()
    except ClusterStartError as e:
        print(e, file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"job service: localhost:{cluster.job_port}   worker pool: 127.0.0.1:{cluster.pool_port}   "
          f"logs: {cluster.log_dir}")
    print("movierec run --beam-pipeline-args '" + " ".join(cluster.beam_args()) + "'", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
