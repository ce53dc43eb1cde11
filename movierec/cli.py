"""`movierec`: thin commands over the package's functions.

  movierec run            run the TFX pipeline (LocalDagRunner) and show what it pushed
  movierec retrain        one idempotent scheduled retrain over span-<N>/ folders (warm start)
  movierec data download  fetch ml-100k / ml-latest-small into the cache (SHA-256 checked)
  movierec data synth     write a deterministic synthetic MovieLens-shaped dataset
  movierec data split-spans  cut a MovieLens folder into span-<N>/ folders by time
  movierec data check     read and check a MovieLens folder, report problems by file:line
  movierec report         where the latest evaluation reports are, with their verdicts
  movierec compile-kfp    compile the same pipeline for Kubeflow Pipelines V2 / Vertex AI
  movierec serve          serve pushed models over TF Serving's gRPC and REST APIs
  movierec recommend      ask a running server (this one or TF Serving) for recommendations

Heavy modules (TensorFlow, TFX) are imported inside the commands that need them, so
`movierec --help` and the data commands start fast.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import time

from movierec.components.ranking_evaluator.eval_config import EvalConfig, Rule
from movierec.config import (CONTENT_PROFILES, MF_OBJECTIVES, MODEL_NAMES, RANKING_WIDTHS, ContentConfig, MFConfig,
                             PipelineConfig)

EXIT_DATA_ERROR = 2
EXIT_PIPELINE_ERROR = 3
EXIT_BUSY = 4

ENV_DATA_DIR = "MOVIEREC_DATA_DIR"
DEFAULT_OUTPUT_DIR = "outputs"
SYNTH_DEFAULT = dict(users=600, movies=1200, ratings=60_000, seed=42)


def _add_run_args(p: argparse.ArgumentParser, retrain: bool = False) -> None:
    d = MFConfig()
    if retrain:
        p.add_argument("--data-dir", required=True,
                       help="folder of span-<N>/ MovieLens folders (see `movierec data split-spans`)")
        p.add_argument("--span-window", type=int, default=0,
                       help="train on the last W spans; 0: every span (default: %(default)s)")
        p.add_argument("--no-warm-start", dest="warm_start", action="store_false",
                       help="train MF from scratch instead of from the last blessed MF model")
    else:
        p.add_argument("--data-dir", default=None,
                       help=f"MovieLens folder (ml-100k or ml-latest layout). Default: ${ENV_DATA_DIR}; "
                            "else a cached ml-100k; else download ml-100k; else (no network) the "
                            "synthetic dataset")
        p.add_argument("--span-window", type=int, default=None,
                       help="read --data-dir as span-<N>/ folders: the last W spans, 0 for all "
                            "(default: --data-dir is one MovieLens folder)")
        p.add_argument("--warm-start", action="store_true",
                       help="start MF from the last blessed MF model (rows remapped by ID)")
    p.add_argument("--beam-pipeline-args", default=None,
                   help="Beam options for the Beam-based components, one string, e.g. "
                        "'--runner=FnApiRunner --direct_running_mode=multi_processing --direct_num_workers=2 "
                        "--requirements_file=/dev/null' "
                        f"(default: {' '.join(PipelineConfig.__dataclass_fields__['beam_pipeline_args'].default)})")
    p.add_argument("--output-dir", default=DEFAULT_OUTPUT_DIR,
                   help="where the run writes: pipeline/ (artifacts), metadata.sqlite (ML Metadata), "
                        "serving/<model>/<version>/ (pushed models), logs/ (default: %(default)s)")
    p.add_argument("--cache-dir", default=None,
                   help="dataset cache (default: $MOVIEREC_CACHE or ~/.cache/movierec)")
    p.add_argument("--eval-percent", type=int, default=20, help="eval split size in %% (default: 20)")
    p.add_argument("--max-bad-records", type=int, default=0,
                   help="invalid input lines tolerated (each is reported); default 0: any stops the run")
    p.add_argument("--max-k", type=int, default=100, help="largest k a request may ask (default: 100)")
    p.add_argument("--no-cache", action="store_true", help="disable TFX's execution cache")
    e = EvalConfig()
    p.add_argument("--eval-k", type=int, action="append", default=None,
                   help=f"k of the ranking metrics; repeat for several (default: {list(e.ks)})")
    p.add_argument("--rating-threshold", type=float, default=None,
                   help="eval ratings at least this count as relevant (default: every eval rating)")
    p.add_argument("--max-regression", type=float, default=e.max_regression,
                   help="a candidate may be this much (relative) worse than the last blessed model "
                        "(default: %(default)s)")
    p.add_argument("--gate", action="append", default=[], metavar="MODEL=METRIC:BASELINE",
                   help="a blessing rule for one model (repeatable): METRIC must beat BASELINE "
                        "(popularity for a ranking metric, bias_baseline for rmse/mae; none: no "
                        "baseline, only the no-regression rule); it replaces the model's rule on "
                        "that metric or adds one. Every model's defaults: ndcg@10:popularity, and "
                        "rmse:bias_baseline when it has predict_rating. E.g. --gate content=ndcg@10:none")
    p.add_argument("--mf-objective", choices=list(MF_OBJECTIVES), default=d.objective,
                   help="ials+bayes (default): top-k from implicit-ALS factors and predict_rating from "
                        "Bayesian MF, side by side in one model; mse: the article's model (Adam on "
                        "squared error); ials: the ranking half alone (ratings from a bias head); "
                        "bayes: the rating half alone")
    p.add_argument("--embedding-dim", type=int, default=None,
                   help="width of the ranking factors (default: "
                        + ", ".join(f"{w} for {o}" for o, w in RANKING_WIDTHS.items()) + ")")
    p.add_argument("--bayes-dim", type=int, default=d.bayes_dim,
                   help="width of the Bayesian rating factors (default: %(default)s)")
    p.add_argument("--ials-alpha0", type=float, default=d.ials_alpha0,
                   help="ials: weight of every unobserved (user, movie) pair (default: %(default)s)")
    p.add_argument("--ials-reg", type=float, default=d.ials_reg,
                   help="ials: frequency-scaled L2 (default: %(default)s)")
    p.add_argument("--ials-iterations", type=int, default=d.ials_iterations,
                   help="ials: alternating sweeps (default: %(default)s)")
    p.add_argument("--bayes-samples", type=int, default=d.bayes_samples,
                   help="bayes: posterior samples averaged (default: %(default)s)")
    p.add_argument("--bayes-burn-in", type=int, default=d.bayes_burn_in,
                   help="bayes: sweeps discarded first (default: %(default)s)")
    p.add_argument("--bayes-thin", type=int, default=d.bayes_thin,
                   help="bayes: keep every N-th sweep (default: %(default)s)")
    p.add_argument("--bayes-implicit", choices=["none", "user", "both"], default=d.bayes_implicit,
                   help="bayes: SVD++-style implicit features (default: %(default)s)")
    p.add_argument("--mf-hybrid", action=argparse.BooleanOptionalAction, default=d.hybrid,
                   help="hybrid MF: each movie vector is its own embedding plus a learned genre part "
                        "(default: on)")
    p.add_argument("--ials-feature-reg", type=float, default=d.ials_feature_reg,
                   help="ials with --mf-hybrid: L2 of the genre part (default: %(default)s)")
    c = ContentConfig()
    p.add_argument("--content-profile", choices=list(CONTENT_PROFILES), default=c.profile,
                   help="content: lift (default: log-lift of each genre and decade over the average "
                        "user, from rating deviations) or share (the seed article's rating-weighted shares)")
    p.add_argument("--content-smoothing", type=float, default=c.smoothing,
                   help="content lift: pseudo ratings of average taste per user (default: %(default)s)")
    p.add_argument("--content-deviation-weight", type=float, default=c.deviation_weight,
                   help="content lift: how much a rating above/below the user's mean counts (default: %(default)s)")
    p.add_argument("--content-popularity-weight", type=float, default=c.popularity_weight,
                   help="content: weight of the log-popularity prior in the score; 0 for the seed's "
                        "pure genre score (default: %(default)s)")
    p.add_argument("--content-decades", action=argparse.BooleanOptionalAction, default=c.decades,
                   help="content: release decades (from titles) as features next to genres (default: on)")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--learning-rate", type=float, default=d.learning_rate)
    p.add_argument("--l2", type=float, default=d.l2)
    p.add_argument("--seed", type=int, default=d.seed)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="movierec", description="MovieLens recommender as a TFX pipeline.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the pipeline end to end and show the pushed model")
    _add_run_args(run)
    rt = sub.add_parser("retrain", help="one idempotent batch retrain over span folders (for cron)",
                        description="Runs the pipeline on the latest span(s) of --data-dir with MF "
                                    "warm-started from the last blessed model. Safe to repeat: with "
                                    "no new span nothing is trained or pushed again; a run killed "
                                    "at any point completes when run again.")
    _add_run_args(rt, retrain=True)

    data = sub.add_parser("data", help="datasets: download, synthesise, check")
    dsub = data.add_subparsers(dest="data_command", required=True)
    dl = dsub.add_parser("download", help="download a MovieLens archive into the cache")
    dl.add_argument("name", choices=["ml-100k", "ml-latest-small"])
    dl.add_argument("--cache-dir", default=None)
    dl.add_argument("--base-url", default=None, help="mirror to download from (default: GroupLens)")
    sy = dsub.add_parser("synth", help="write a synthetic MovieLens-shaped dataset (ml-latest layout)")
    sy.add_argument("--users", type=int, default=SYNTH_DEFAULT["users"])
    sy.add_argument("--movies", type=int, default=SYNTH_DEFAULT["movies"])
    sy.add_argument("--ratings", type=int, default=SYNTH_DEFAULT["ratings"])
    sy.add_argument("--seed", type=int, default=SYNTH_DEFAULT["seed"])
    sy.add_argument("--out", required=True, help="output folder")
    sp = dsub.add_parser("split-spans", help="cut a MovieLens folder into span-<N>/ folders by time")
    sp.add_argument("data_dir")
    sp.add_argument("--out", required=True, help="new folder to write span-1/, span-2/, ... into")
    sp.add_argument("--by", choices=["month", "count"], default="count",
                    help="one span per calendar month, or --count equal parts (default: %(default)s)")
    sp.add_argument("--count", type=int, default=3, help="with --by count: how many spans (default: %(default)s)")
    kf = sub.add_parser("compile-kfp", help="compile the pipeline to a KFP V2 / Vertex AI JSON spec (offline)")
    _add_run_args(kf)
    kf.add_argument("--image", required=True, help="the pipeline image (built from ./Dockerfile)")
    kf.add_argument("--out", default="movierec_pipeline.json", help="JSON file to write (default: %(default)s)")

    rp = sub.add_parser("report", help="print the latest evaluation report of each model")
    rp.add_argument("--output-dir", default=DEFAULT_OUTPUT_DIR)

    sv = sub.add_parser("serve", help="serve models over TF Serving's gRPC (8500) and REST (8501) APIs",
                        description="Flags shared with tensorflow_model_server have its names and meanings; "
                                    "the others are movierec's own (marked 'movierec:').")
    # tensorflow_model_server's flags
    sv.add_argument("--port", type=int, default=8500, help="gRPC port (default: %(default)s)")
    sv.add_argument("--rest_api_port", type=int, default=8501,
                    help="REST port (default: %(default)s, as TF Serving's Docker image; 0 picks a free port "
                         "here, where tensorflow_model_server turns REST off)")
    sv.add_argument("--model_config_file", default=None, help="TF Serving's text ModelServerConfig (models.config)")
    sv.add_argument("--model_config_file_poll_wait_seconds", type=int, default=0,
                    help="re-read --model_config_file this often and serve its models; 0: read once "
                         "(default: %(default)s)")
    sv.add_argument("--model_name", default=None, help="with --model_base_path: serve one model")
    sv.add_argument("--model_base_path", default=None, help="folder of the model's numeric version folders")
    sv.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0,
                    help="how often to look for new versions; 0: only at start (default: %(default)s)")
    sv.add_argument("--enable_batching", type=_flag_bool, nargs="?", const=True, default=False,
                    help="merge concurrent requests into one signature call (server-side batching)")
    sv.add_argument("--batching_parameters_file", default=None,
                    help="TF Serving's text BatchingParameters: max_batch_size and batch_timeout_micros are "
                         "used, its thread and queue settings accepted and ignored")
    sv.add_argument("--monitoring_config_file", default=None,
                    help="TF Serving's text MonitoringConfig: prometheus_config { enable path } sets the "
                         "metrics page (without the flag: on, at /monitoring/prometheus/metrics)")
    sv.add_argument("--enable_model_warmup", type=_flag_bool, nargs="?", const=True, default=True,
                    help="replay assets.extra/tf_serving_warmup_requests when loading (default: true)")
    sv.add_argument("--rest_api_timeout_in_ms", type=int, default=30_000,
                    help="REST: a request not started on the model this long after it arrived gets "
                         "504 DEADLINE_EXCEEDED (gRPC uses the client's deadline) (default: %(default)s)")
    sv.add_argument("--rest_api_num_threads", type=int, default=None,
                    help="accepted for compatibility and ignored: REST runs on the serving loop "
                         "(see --model_threads, --workers)")
    # movierec's own
    sv.add_argument("--host", default="127.0.0.1", help="movierec: address to bind (default: %(default)s)")
    sv.add_argument("--serving_root", "--serving-root", default=os.path.join(DEFAULT_OUTPUT_DIR, "serving"),
                    help="movierec: with no model flags, serve every <serving_root>/<model>/ (default: %(default)s)")
    sv.add_argument("--no-warmup", action="store_true", help="movierec: same as --enable_model_warmup=false")
    sv.add_argument("--batch_timeout_micros", type=int, default=None,
                    help="movierec: with --enable_batching, how long a batch waits for company; 0 merges the "
                         "requests already read (default: the batching parameters file's, else 0)")
    sv.add_argument("--model_threads", "--model-threads", type=int, default=2,
                    help="movierec: threads for model calls too big to run on the serving loop (default: %(default)s)")
    sv.add_argument("--inline_max_rows", "--inline-max-rows", type=int, default=64,
                    help="movierec: model calls of at most this many rows run on the serving loop, bigger "
                         "ones on a model thread (default: %(default)s)")
    sv.add_argument("--workers", type=int, default=1,
                    help="movierec: server processes sharing the two ports (SO_REUSEPORT: the kernel spreads "
                         "connections); each loads every model, so memory grows with N. For latency under "
                         "load: --workers 2 --enable_batching on 2 cores (default: %(default)s)")
    sv.add_argument("--max_concurrent_requests", "--max-concurrent-requests", type=int, default=64,
                    help="movierec: beyond this, RESOURCE_EXHAUSTED / HTTP 429 (default: %(default)s)")
    sv.add_argument("--max_request_rows", "--max-batch-size", type=int, default=10_000,
                    help="movierec: most rows in one request's inputs (default: %(default)s)")
    sv.add_argument("--max_body_bytes", "--max-body-bytes", type=int, default=16 << 20,
                    help="movierec: largest REST body / gRPC message (default: %(default)s)")
    sv.add_argument("--max_requests_per_connection", type=int, default=32,
                    help="movierec: most of the --max_concurrent_requests one connection may hold at once; "
                         "beyond, RESOURCE_EXHAUSTED / HTTP 429 (default: %(default)s)")
    sv.add_argument("--max_response_values", type=int, default=200_000,
                    help="movierec: most values in one answer (rows x k); beyond, INVALID_ARGUMENT / HTTP 400 "
                         "(default: %(default)s)")
    sv.add_argument("--max_json_values", type=int, default=1_000_000,
                    help="movierec: most JSON values in a REST body, counted before parsing (its ',' and ':'); "
                         "beyond, HTTP 400 (default: %(default)s)")
    sv.add_argument("--idle_timeout_seconds", type=float, default=60.0,
                    help="movierec: close a connection idle this long (REST keep-alive or headers not yet "
                         "complete, gRPC without calls) (default: %(default)s)")
    sv.add_argument("--read_timeout_seconds", type=float, default=10.0,
                    help="movierec: a REST body must arrive, and a gRPC connection finish its HTTP/2 "
                         "handshake, within this (default: %(default)s)")

    rc = sub.add_parser("recommend", help="top-k recommendations from a running server")
    rc.add_argument("--user", action="append", required=True, help="user id (repeat for several)")
    rc.add_argument("-k", type=int, default=None,
                    help="list length (default: the model's serving_default list, 10)")
    rc.add_argument("--model", default="mf", help="model name (default: %(default)s)")
    rc.add_argument("--exclude", action="append", default=[], help="movie id to exclude (repeatable)")
    proto = rc.add_mutually_exclusive_group()
    proto.add_argument("--grpc", dest="protocol", action="store_const", const="grpc")
    proto.add_argument("--rest", dest="protocol", action="store_const", const="rest")
    rc.set_defaults(protocol="grpc")
    rc.add_argument("--host", default="127.0.0.1")
    rc.add_argument("--port", type=int, default=None, help="default: 8500 (gRPC) or 8501 (REST)")

    ck = dsub.add_parser("check", help="read a MovieLens folder and report every problem")
    ck.add_argument("data_dir")
    ck.add_argument("--max-bad-records", type=int, default=0)
    return parser


# -- data ---------------------------------------------------------------------------------
def resolve_data_dir(arg: str | None, cache_dir: str | None, environ=os.environ,
                     download_timeout: float = 15.0) -> tuple[str, str]:
    """(folder, how it was chosen). Order: flag, $MOVIEREC_DATA_DIR, cache, download, synthetic."""
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
        print(f"note: {e}", file=sys.stderr)
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


def _cmd_data(args) -> int:
    from movierec.components.data import download, readers, synth  # noqa: PLC0415

    if args.data_command == "download":
        cache = args.cache_dir or download.default_cache_dir()
        kwargs = {"base_url": args.base_url} if args.base_url else {}
        try:
            path = download.fetch(args.name, cache, **kwargs)
        except download.DownloadError as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_DATA_ERROR
        print(path)
        return 0
    if args.data_command == "synth":
        try:
            summary = synth.generate(synth.SynthSpec(args.users, args.movies, args.ratings, args.seed), args.out)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_DATA_ERROR
        print(json.dumps(summary))
        return 0
    if args.data_command == "split-spans":
        from movierec.components.data import spans  # noqa: PLC0415
        try:
            made = spans.split_spans(args.data_dir, args.out, by=args.by, count=args.count)
        except (readers.DataError, ValueError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_DATA_ERROR
        for row in made:
            first, last = (time.strftime("%Y-%m-%d", time.gmtime(row[k])) for k in ("first", "last"))
            print(f"{os.path.join(args.out, 'span-' + str(row['span']))}: {row['ratings']} ratings, {first} .. {last}")
        return 0
    if args.data_command == "check":
        try:
            report = readers.check_dataset(args.data_dir, args.max_bad_records)
        except (readers.DataError, FileNotFoundError) as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_DATA_ERROR
        print(f"{args.data_dir}: {report.data_format}, {report.ratings} ratings, {report.users} users, "
              f"{report.movies} movies, {len(report.problems)} problem(s) within tolerance")
        for p in report.problems:
            print(f"  {p}")
        return 0
    raise AssertionError(args.data_command)


# -- run ----------------------------------------------------------------------------------
def parse_gates(specs: list[str]) -> tuple[tuple[str, Rule], ...]:
    """`--gate MODEL=METRIC:BASELINE` flags -> (model, rule) overrides of the default rules
    (the rules and model names are checked by EvalConfig and PipelineConfig)."""
    overrides = []
    for spec in specs:
        model, sep, rule = spec.partition("=")
        metric, sep2, baseline = rule.partition(":")
        if not (sep and sep2 and model and metric and baseline):
            raise ValueError(f"--gate {spec!r}: expected MODEL=METRIC:BASELINE, e.g. mf=ndcg@10:popularity")
        try:
            overrides.append((model, Rule(metric, None if baseline == "none" else baseline)))
        except ValueError as e:
            raise ValueError(f"--gate {spec!r}: {e}") from None
    return tuple(overrides)


def _config_from_args(args, data_dir: str) -> PipelineConfig:
    mf = MFConfig(objective=args.mf_objective, embedding_dim=args.embedding_dim,
                  ials_alpha0=args.ials_alpha0, ials_reg=args.ials_reg, ials_iterations=args.ials_iterations,
                  hybrid=args.mf_hybrid, ials_feature_reg=args.ials_feature_reg,
                  bayes_dim=args.bayes_dim, bayes_samples=args.bayes_samples, bayes_burn_in=args.bayes_burn_in, bayes_thin=args.bayes_thin,
                  bayes_implicit=args.bayes_implicit, epochs=args.epochs, batch_size=args.batch_size,
                  learning_rate=args.learning_rate, l2=args.l2, seed=args.seed)
    content = ContentConfig(profile=args.content_profile, smoothing=args.content_smoothing,
                            deviation_weight=args.content_deviation_weight,
                            popularity_weight=args.content_popularity_weight, decades=args.content_decades)
    evaluation = EvalConfig(ks=tuple(args.eval_k or EvalConfig().ks), rating_threshold=args.rating_threshold,
                            max_regression=args.max_regression, overrides=parse_gates(args.gate))
    beam = {} if args.beam_pipeline_args is None else {"beam_pipeline_args": tuple(shlex.split(args.beam_pipeline_args))}
    return PipelineConfig.from_output_dir(
        data_dir, args.output_dir, eval_percent=args.eval_percent,
        max_bad_records=args.max_bad_records, max_k=args.max_k,
        enable_cache=not args.no_cache, mf=mf, content=content, evaluation=evaluation,
        span_window=args.span_window, warm_start=args.warm_start, **beam)


def _setup_logging(log_dir: str) -> str:
    # Local-only: logging.FileHandler writes a local file.
    os.makedirs(log_dir, exist_ok=True)
    path = os.path.join(log_dir, time.strftime("run-%Y%m%d-%H%M%S.log"))
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    return path


def _data_problem(exc: BaseException) -> BaseException | None:
    """The DataError or AnomaliesFoundError behind a pipeline failure, if that is its cause."""
    from movierec.components.data.readers import DataError  # noqa: PLC0415
    from movierec.components.strict_example_validator.executor import AnomaliesFoundError  # noqa: PLC0415

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (DataError, AnomaliesFoundError)):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


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


def _cmd_run(args) -> int:
    from movierec.components.data import readers  # noqa: PLC0415

    started = time.perf_counter()
    try:
        data_dir, how = resolve_data_dir(args.data_dir, args.cache_dir)
        config = _config_from_args(args, data_dir)
        folders = input_folders(config)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_DATA_ERROR
    print(f"movierec {args.command}: data {config.data_dir} ({how})")
    if config.span_window is not None:
        print(f"  spans: {', '.join(os.path.basename(f) for f in folders)} "
              f"(window {config.span_window or 'all'}); MF warm start {'on' if config.warm_start else 'off'}")
    for folder in folders:
        try:
            report = readers.check_dataset(folder, config.max_bad_records)
        except (readers.DataError, FileNotFoundError) as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_DATA_ERROR
        where = f"{os.path.basename(folder)} " if config.span_window is not None else ""
        print(f"  {where}{report.data_format}: {report.ratings} ratings, {report.users} users, "
              f"{report.movies} movies; {len(report.problems)} invalid line(s) skipped within tolerance")
        for p in report.problems:
            print(f"  skipped {p}")

    try:
        lock = lock_output_dir(args.output_dir)
    except BlockingIOError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BUSY
    with lock:
        return _run_pipeline(args, config, started)


class _OutputLock:
    def __init__(self, handle):
        self.handle = handle

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()   # closing the file releases the lock


def lock_output_dir(output_dir: str) -> _OutputLock:
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
    return _OutputLock(handle)


def _lock_path(output_dir: str) -> str:
    """The local lock file of `output_dir` (see `lock_output_dir`)."""
    if "://" not in output_dir:
        return os.path.join(os.path.abspath(output_dir), ".lock")
    import hashlib  # noqa: PLC0415

    from movierec.components.data import download  # noqa: PLC0415
    digest = hashlib.sha256(output_dir.rstrip("/").encode()).hexdigest()
    return os.path.join(download.default_cache_dir(), "locks", f"{digest}.lock")


def _run_pipeline(args, config: PipelineConfig, started: float) -> int:
    from movierec import summary  # noqa: PLC0415
    before = summary.served_versions(config, MODEL_NAMES)
    log_path = _setup_logging(os.path.join(os.path.abspath(args.output_dir), "logs"))
    print(f"  log: {log_path}")
    print("  loading TFX ...", flush=True)
    import absl.logging  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415
    absl.logging.set_verbosity(absl.logging.INFO)
    # TensorFlow gives its logger a stderr handler of its own; its records belong in the run log
    tf.get_logger().handlers.clear()
    from movierec.pipeline import local_runner  # noqa: PLC0415
    from movierec.pipeline.pipeline import COMPONENT_IDS  # noqa: PLC0415
    from movierec.progress import ComponentProgress  # noqa: PLC0415

    progress = ComponentProgress(COMPONENT_IDS)
    logging.getLogger().addHandler(progress)
    try:
        local_runner.run(config)
    except Exception as e:  # noqa: BLE001 - reported with its root cause, then exit non-zero
        cause = _data_problem(e)
        print(f"\nerror in {progress.failed_component() or 'pipeline'}: {cause or e}", file=sys.stderr)
        print(f"(full log: {log_path})", file=sys.stderr)
        return EXIT_DATA_ERROR if cause is not None else EXIT_PIPELINE_ERROR
    finally:
        logging.getLogger().removeHandler(progress)
    total = time.perf_counter() - started
    print(summary.render(config, progress.timings, total, MODEL_NAMES, before=before))
    return 0


# -- serve / recommend ---------------------------------------------------------------------
def _flag_bool(text: str) -> bool:
    """A boolean flag's value as tensorflow_model_server reads it: --flag, --flag=true|false|1|0."""
    value = text.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _model_specs(args):
    from movierec.serving import model_config  # noqa: PLC0415

    if args.model_config_file:
        return model_config.load_model_config(args.model_config_file)
    if args.model_name or args.model_base_path:
        if not (args.model_name and args.model_base_path):
            raise ValueError("--model_name and --model_base_path go together")
        return model_config.from_flags(args.model_name, args.model_base_path)
    import tensorflow as tf  # noqa: PLC0415  (the serving root may be on an object store)

    root = args.serving_root if "://" in args.serving_root else os.path.abspath(args.serving_root)
    gfile = tf.io.gfile
    children = [d.rstrip("/") for d in gfile.listdir(root)] if gfile.isdir(root) else []
    names = sorted(d for d in children if gfile.isdir(os.path.join(root, d)))
    if not names:
        raise ValueError(f"no models to serve: {root} has no model folders (run `movierec run` first, "
                         "or pass --model_config_file / --model_name and --model_base_path)")
    return [model_config.ModelSpec(name=n, base_path=os.path.join(root, n)) for n in names]


def _cmd_serve(args) -> int:
    import signal  # noqa: PLC0415
    import threading  # noqa: PLC0415

    try:
        specs = _model_specs(args)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_DATA_ERROR
    from movierec.serving.options import BatchingOptions, Limits, ServerOptions  # noqa: PLC0415

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())   # before starting: a worker pool is never orphaned
    try:
        from movierec.serving import config_files  # noqa: PLC0415

        batching = (config_files.load_batching_parameters(args.batching_parameters_file)
                    if args.batching_parameters_file else BatchingOptions())
        metrics_path = (config_files.load_monitoring_config(args.monitoring_config_file)
                        if args.monitoring_config_file else config_files.METRICS_PATH)
        options = ServerOptions(host=args.host, grpc_port=args.port, rest_port=args.rest_api_port,
                                poll_seconds=args.file_system_poll_wait_seconds,
                                warmup=args.enable_model_warmup and not args.no_warmup,
                                limits=Limits(args.max_request_rows, args.max_concurrent_requests, args.max_body_bytes,
                                              args.rest_api_timeout_in_ms / 1000,
                                              max_requests_per_connection=args.max_requests_per_connection,
                                              max_response_values=args.max_response_values,
                                              max_json_values=args.max_json_values,
                                              idle_timeout_seconds=args.idle_timeout_seconds,
                                              read_timeout_seconds=args.read_timeout_seconds),
                                enable_batching=args.enable_batching, max_batch_rows=batching.max_batch_rows,
                                batch_timeout_micros=(args.batch_timeout_micros if args.batch_timeout_micros is not None
                                                      else batching.timeout_micros),
                                model_threads=args.model_threads, inline_max_rows=args.inline_max_rows,
                                workers=args.workers, metrics_path=metrics_path,
                                model_config_file=args.model_config_file,
                                model_config_poll_seconds=args.model_config_file_poll_wait_seconds)
        if options.workers > 1:   # a supervisor (no TensorFlow here) and N serving processes
            from movierec.serving.workers import WorkerPool  # noqa: PLC0415
            running = WorkerPool(specs, options).start()
            wait, how = running.supervise, f" with {options.workers} worker processes"
        else:
            from movierec.serving.server import ModelServer  # noqa: PLC0415
            running = ModelServer(specs, options).start()
            wait, how = (lambda stopped: stop.wait()), ""
            for spec in specs:
                rows = running.manager.version_entries(spec.name)
                states = ", ".join(f"v{e.version} {e.state}" + (f" ({e.error.message})" if e.error else "")
                                   for e in rows)
                print(f"model {spec.name} <- {spec.base_path}: {states or 'no versions yet'}", flush=True)
    except (ValueError, OSError, RuntimeError) as e:
        print(f"error: serve: {e}", file=sys.stderr)
        return EXIT_DATA_ERROR
    print(f"serving gRPC on {args.host}:{running.grpc_port}, REST on http://{args.host}:{running.rest_port}"
          f"{how} (Ctrl-C stops)", flush=True)
    try:
        wait(stop.is_set)
    except KeyboardInterrupt:
        pass
    running.stop()
    return 0


def _cmd_recommend(args) -> int:
    from movierec.serving.client import ClientError, GrpcClient, RestClient  # noqa: PLC0415

    if args.protocol == "rest":
        client = RestClient(args.host, args.port or 8501)
    else:
        client = GrpcClient(args.host, args.port or 8500)
    # without -k and --exclude: serving_default with user_id alone; else the `recommend` signature
    exclude = [list(args.exclude) for _ in args.user] if args.exclude else None
    try:
        rows = client.recommend(args.user, k=args.k, model=args.model, exclude=exclude)
    except ClientError as e:
        print(f"error from server: {e}", file=sys.stderr)
        return EXIT_PIPELINE_ERROR
    except OSError as e:
        print(f"error: cannot reach {args.host}: {e}", file=sys.stderr)
        return EXIT_PIPELINE_ERROR
    for user, recs in zip(args.user, rows):
        print(f"user {user} ({args.model}, {args.protocol}):")
        if not recs:
            print("  (no recommendations)")
        width = max((len(r.title) for r in recs), default=5)
        for rank, r in enumerate(recs, 1):
            print(f"  {rank:>2}. {r.title:<{width}}  {r.genres:<30} {r.score:7.3f}")
    return 0


def _cmd_report(args) -> int:
    from movierec import summary  # noqa: PLC0415

    config = PipelineConfig.from_output_dir(".", args.output_dir)
    found = False
    for name in MODEL_NAMES:
        latest = summary.latest_evaluation(config, name)
        if latest is None:
            continue
        found = True
        folder, result = latest
        verdict = "BLESSED" if result["blessed"] else "NOT BLESSED"
        print(f"{name}: {verdict} - {'; '.join(result['reasons'])}")
        print(f"  {os.path.join(folder, 'report.html')}")
    if not found:
        print(f"no evaluation under {config.pipeline_root}: run `movierec run` first", file=sys.stderr)
        return EXIT_DATA_ERROR
    return 0


def _cmd_compile_kfp(args) -> int:
    import dataclasses  # noqa: PLC0415

    from movierec.pipeline import kubeflow_v2_runner  # noqa: PLC0415

    if not args.data_dir:
        print("error: --data-dir is required (where the cluster reads the data, e.g. gs://...)", file=sys.stderr)
        return EXIT_DATA_ERROR
    try:
        config = dataclasses.replace(_config_from_args(args, args.data_dir),
                                     schema_path=kubeflow_v2_runner.IMAGE_SCHEMA_PATH, check_local_files=False)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_DATA_ERROR
    print(kubeflow_v2_runner.compile_pipeline(config, args.image, args.out))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    commands = {"run": _cmd_run, "retrain": _cmd_run, "data": _cmd_data, "serve": _cmd_serve, "recommend": _cmd_recommend,
                "report": _cmd_report, "compile-kfp": _cmd_compile_kfp}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
