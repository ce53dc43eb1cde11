"""`movierec`: thin commands over the package's functions.

  movierec run            run the TFX pipeline (LocalDagRunner) and show what it pushed
  movierec retrain        one idempotent scheduled retrain over span-<N>/ folders (warm start)
  movierec data download  fetch ml-100k / ml-latest-small into the cache (SHA-256 checked)
  movierec data synth     write a deterministic synthetic MovieLens-shaped dataset
  movierec data split-spans  cut a MovieLens folder into span-<N>/ folders by time
  movierec data check     read and check a MovieLens folder, report problems by file:line
  movierec report         the latest evaluation of each model and the latest run's settings
  movierec compile-kfp    compile the same pipeline for Kubeflow Pipelines V2 / Vertex AI
  movierec serve          serve pushed models over TF Serving's gRPC and REST APIs
  movierec recommend      ask a running server (this one or TF Serving) for recommendations

`run`, `retrain` and `compile-kfp` take their settings from `--config movierec.yaml`
(`movierec.config_file`) and flags, flags winning; `movierec --version` prints the
installed version. The work is done by library modules: `movierec.runs` (inputs, lock,
pipeline run), `movierec.config_file`, `movierec.summary` (what a run produced, from ML
Metadata), `movierec.serving.served_models` (which models to serve), `movierec.serving.client`.

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
import traceback

from movierec import config_file, filesystems, runs
from movierec.config import CONTENT_PROFILES, MF_OBJECTIVES, MODEL_NAMES, RANKING_WIDTHS, PipelineConfig
from movierec.config_file import DEFAULT_OUTPUT_DIR, parse_gate
from movierec.contract import DEFAULT_K, MAX_K_LIMIT, check_k
from movierec.runs import ENV_DATA_DIR, SYNTH_DEFAULT, lock_output_dir, resolve_data_dir  # noqa: F401 (public)

EXIT_DATA_ERROR = 2
EXIT_PIPELINE_ERROR = 3
EXIT_BUSY = 4

# run / retrain / compile-kfp flag (argparse dest) -> the setting it sets (movierec.yaml key)
FLAG_KEYS = {
    "data_dir": "data_dir", "output_dir": "output_dir", "span_window": "span_window", "warm_start": "warm_start",
    "beam_pipeline_args": "beam_pipeline_args", "eval_percent": "eval_percent",
    "max_bad_records": "max_bad_records", "max_k": "max_k", "enable_cache": "enable_cache",
    "eval_k": "evaluation.ks", "rating_threshold": "evaluation.rating_threshold",
    "max_regression": "evaluation.max_regression", "gate": "evaluation.overrides",
    "mf_objective": "mf.objective", "embedding_dim": "mf.embedding_dim", "bayes_dim": "mf.bayes_dim",
    "ials_alpha0": "mf.ials_alpha0", "ials_reg": "mf.ials_reg", "ials_iterations": "mf.ials_iterations",
    "bayes_samples": "mf.bayes_samples", "bayes_burn_in": "mf.bayes_burn_in", "bayes_thin": "mf.bayes_thin",
    "bayes_implicit": "mf.bayes_implicit", "mf_hybrid": "mf.hybrid", "ials_feature_reg": "mf.ials_feature_reg",
    "epochs": "mf.epochs", "batch_size": "mf.batch_size", "learning_rate": "mf.learning_rate", "l2": "mf.l2",
    "seed": "mf.seed",
    "content_profile": "content.profile", "content_smoothing": "content.smoothing",
    "content_deviation_weight": "content.deviation_weight",
    "content_popularity_weight": "content.popularity_weight", "content_decades": "content.decades",
}
# flags whose text becomes the setting's value
_FLAG_VALUES = {"eval_k": tuple, "gate": lambda specs: tuple(parse_gate(s) for s in specs),
                "beam_pipeline_args": lambda text: tuple(shlex.split(text))}


def _d(key: str) -> str:
    """A setting's default for help texts (from the dataclasses: one place)."""
    value = config_file.default_value(key)
    if isinstance(value, bool):
        return "on" if value else "off"
    return " ".join(value) if isinstance(value, list) and all(isinstance(v, str) for v in value) else str(value)


def _add_run_args(p: argparse.ArgumentParser, retrain: bool = False) -> None:
    """The settings flags of run / retrain / compile-kfp; each defaults to None ("not
    given"), so that a --config file's value stands unless the flag is given."""
    p.add_argument("--config", default=None, metavar="FILE",
                   help="settings file (see movierec.yaml); flags override it")
    if retrain:
        p.add_argument("--data-dir", default=None,
                       help="folder of span-<N>/ MovieLens folders (see `movierec data split-spans`); "
                            "required here or as data_dir in --config")
        p.add_argument("--span-window", type=int, default=None,
                       help="train on the last W spans; 0: every span (default: 0)")
    else:
        p.add_argument("--data-dir", default=None,
                       help=f"MovieLens folder (ml-100k or ml-latest layout). Default: ${ENV_DATA_DIR}; "
                            "else a cached ml-100k; else download ml-100k; else (no network) the "
                            "synthetic dataset")
        p.add_argument("--span-window", type=int, default=None,
                       help="read --data-dir as span-<N>/ folders: the last W spans, 0 for all "
                            "(default: --data-dir is one MovieLens folder)")
    p.add_argument("--warm-start", action=argparse.BooleanOptionalAction, default=None,
                   help="start MF from the last blessed MF model, rows remapped by ID "
                        f"(default: {'on' if retrain else 'off'})")
    p.add_argument("--beam-pipeline-args", default=None,
                   help="Beam options for the Beam-based components, one string, e.g. "
                        "'--runner=FnApiRunner --direct_running_mode=multi_processing --direct_num_workers=2 "
                        f"--requirements_file=/dev/null' (default: {_d('beam_pipeline_args')})")
    p.add_argument("--output-dir", default=None,
                   help="where the run writes: pipeline/ (artifacts), metadata.sqlite (ML Metadata), "
                        "serving/<model>/<version>/ (pushed models), logs/; on an object store (s3://...) "
                        "metadata.sqlite and logs/ stay local, under the cache's metadata/ and logs/ "
                        f"(default: {_d('output_dir')})")
    p.add_argument("--cache-dir", default=None,
                   help="dataset cache (default: $MOVIEREC_CACHE or ~/.cache/movierec)")
    p.add_argument("--eval-percent", type=int, default=None,
                   help=f"eval split size in %% (default: {_d('eval_percent')})")
    p.add_argument("--max-bad-records", type=int, default=None,
                   help="invalid input lines tolerated (each is reported); 0: any stops the run "
                        f"(default: {_d('max_bad_records')})")
    p.add_argument("--max-k", type=int, default=None,
                   help=f"largest k a request may ask (default: {_d('max_k')})")
    p.add_argument("--no-cache", dest="enable_cache", action="store_const", const=False, default=None,
                   help="disable TFX's execution cache")
    p.add_argument("--eval-k", type=int, action="append", default=None,
                   help=f"k of the ranking metrics; repeat for several (default: {_d('evaluation.ks')})")
    p.add_argument("--rating-threshold", type=float, default=None,
                   help="eval ratings at least this count as relevant (default: every eval rating)")
    p.add_argument("--max-regression", type=float, default=None,
                   help="a candidate may be this much (relative) worse than the last blessed model "
                        f"(default: {_d('evaluation.max_regression')})")
    p.add_argument("--gate", action="append", default=None, metavar="MODEL=METRIC:BASELINE",
                   help="a blessing rule for one model (repeatable): METRIC must beat BASELINE "
                        "(popularity for a ranking metric, bias_baseline for rmse/mae; none: no "
                        "baseline, only the no-regression rule); it replaces the model's rule on "
                        "that metric or adds one. Every model's defaults: ndcg@10:popularity, and "
                        "rmse:bias_baseline when it has predict_rating. E.g. --gate content=ndcg@10:none")
    p.add_argument("--mf-objective", choices=list(MF_OBJECTIVES), default=None,
                   help=f"{MF_OBJECTIVES[0]} (default): top-k from implicit-ALS factors and predict_rating from "
                        "Bayesian MF, side by side in one model; mse: the article's model (Adam on "
                        "squared error); ials: the ranking half alone (ratings from a bias head); "
                        "bayes: the rating half alone")
    p.add_argument("--embedding-dim", type=int, default=None,
                   help="width of the ranking factors (default: "
                        + ", ".join(f"{w} for {o}" for o, w in RANKING_WIDTHS.items()) + ")")
    p.add_argument("--bayes-dim", type=int, default=None,
                   help=f"width of the Bayesian rating factors (default: {_d('mf.bayes_dim')})")
    p.add_argument("--ials-alpha0", type=float, default=None,
                   help=f"ials: weight of every unobserved (user, movie) pair (default: {_d('mf.ials_alpha0')})")
    p.add_argument("--ials-reg", type=float, default=None,
                   help=f"ials: frequency-scaled L2 (default: {_d('mf.ials_reg')})")
    p.add_argument("--ials-iterations", type=int, default=None,
                   help=f"ials: alternating sweeps (default: {_d('mf.ials_iterations')})")
    p.add_argument("--bayes-samples", type=int, default=None,
                   help=f"bayes: posterior samples averaged (default: {_d('mf.bayes_samples')})")
    p.add_argument("--bayes-burn-in", type=int, default=None,
                   help=f"bayes: sweeps discarded first (default: {_d('mf.bayes_burn_in')})")
    p.add_argument("--bayes-thin", type=int, default=None,
                   help=f"bayes: keep every N-th sweep (default: {_d('mf.bayes_thin')})")
    p.add_argument("--bayes-implicit", choices=["none", "user", "both"], default=None,
                   help=f"bayes: SVD++-style implicit features (default: {_d('mf.bayes_implicit')})")
    p.add_argument("--mf-hybrid", action=argparse.BooleanOptionalAction, default=None,
                   help="hybrid MF: each movie vector is its own embedding plus a learned genre part "
                        f"(default: {_d('mf.hybrid')})")
    p.add_argument("--ials-feature-reg", type=float, default=None,
                   help=f"ials with --mf-hybrid: L2 of the genre part (default: {_d('mf.ials_feature_reg')})")
    p.add_argument("--content-profile", choices=list(CONTENT_PROFILES), default=None,
                   help="content: lift (log-lift of each genre and decade over the average user, from "
                        "rating deviations) or share (the seed article's rating-weighted shares) "
                        f"(default: {_d('content.profile')})")
    p.add_argument("--content-smoothing", type=float, default=None,
                   help=f"content lift: pseudo ratings of average taste per user (default: {_d('content.smoothing')})")
    p.add_argument("--content-deviation-weight", type=float, default=None,
                   help="content lift: how much a rating above/below the user's mean counts "
                        f"(default: {_d('content.deviation_weight')})")
    p.add_argument("--content-popularity-weight", type=float, default=None,
                   help="content: weight of the log-popularity prior in the score; 0 for the seed's "
                        f"pure genre score (default: {_d('content.popularity_weight')})")
    p.add_argument("--content-decades", action=argparse.BooleanOptionalAction, default=None,
                   help="content: release decades (from titles) as features next to genres "
                        f"(default: {_d('content.decades')})")
    p.add_argument("--epochs", type=int, default=None, help=f"mse: epochs (default: {_d('mf.epochs')})")
    p.add_argument("--batch-size", type=int, default=None, help=f"mse: batch size (default: {_d('mf.batch_size')})")
    p.add_argument("--learning-rate", type=float, default=None,
                   help=f"mse: Adam's learning rate (default: {_d('mf.learning_rate')})")
    p.add_argument("--l2", type=float, default=None, help=f"mse: L2 per example (default: {_d('mf.l2')})")
    p.add_argument("--seed", type=int, default=None, help=f"MF random seed (default: {_d('mf.seed')})")


def _version() -> str:
    """The installed distribution's version (package metadata)."""
    from importlib import metadata  # noqa: PLC0415

    try:
        return metadata.version("movierec")
    except metadata.PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="movierec", description="MovieLens recommender as a TFX pipeline.")
    parser.add_argument("--version", action="version", version=f"movierec {_version()}")
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

    rp = sub.add_parser("report", help="print the latest evaluation of each model and the latest run's config")
    rp.add_argument("--output-dir", default=DEFAULT_OUTPUT_DIR, help="the run's output folder (default: %(default)s)")

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

    rc = sub.add_parser("recommend", help="top-k recommendations from a running server",
                        description="Asks a running server (movierec serve or TF Serving) for each user's "
                                    "top k: movie ID, title, genres and score. A user the model does not "
                                    "know gets the most-rated movies, shown with their training rating "
                                    "counts instead of scores.")
    rc.add_argument("--user", action="append", required=True, help="user id (repeat for several)")
    rc.add_argument("-k", type=_list_length, default=None, metavar="K",
                    help=f"list length, 1..{MAX_K_LIMIT} and at most the model's max_k "
                         f"(default: the model's serving_default list, {DEFAULT_K})")
    rc.add_argument("--model", default="mf", help="model name (default: %(default)s)")
    rc.add_argument("--exclude", action="append", default=[], help="movie id to exclude (repeatable)")
    rc.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
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
            from movierec.components.data import arrow_reader  # noqa: PLC0415

            report = arrow_reader.check_dataset(args.data_dir, args.max_bad_records)
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
def parse_gates(specs: list[str]) -> tuple:
    """`--gate` flags -> (model, Rule) overrides (see `config_file.parse_gate`)."""
    return tuple(parse_gate(spec) for spec in specs)


def _settings(args) -> dict:
    """The command's settings: its defaults < --config file < flags given."""
    flags = {}
    for dest, key in FLAG_KEYS.items():
        value = getattr(args, dest, None)
        if value is not None:
            flags[key] = _FLAG_VALUES.get(dest, lambda v: v)(value)
    from_file = config_file.load(args.config) if args.config else {}
    return config_file.resolve(from_file, config_file.nest(flags), retrain=args.command == "retrain")


def _build_config(args, **fixed) -> tuple[PipelineConfig, str]:
    """(the validated config, how the data folder was chosen); ValueError / OSError when
    the settings or the inputs are wrong."""
    settings = _settings(args)
    settings.setdefault("output_dir", DEFAULT_OUTPUT_DIR)
    if args.command == "run":
        data_dir, how = resolve_data_dir(settings.get("data_dir"), args.cache_dir)
    else:
        data_dir, how = settings.get("data_dir"), "--data-dir"
        if not data_dir:
            where = "where the cluster reads the data, e.g. gs://..." if args.command == "compile-kfp" \
                else "the folder of span-<N>/ folders"
            raise ValueError(f"--data-dir (or data_dir in --config) is required: {where}")
    return PipelineConfig.from_settings({**settings, "data_dir": data_dir, **fixed}), how


def config_from_flags(argv: list[str]) -> PipelineConfig:
    """The validated config `movierec <argv>` (run, retrain or compile-kfp and its flags,
    --config included) would use; for tools that take the commands' flags."""
    return _build_config(_build_parser().parse_args(argv))[0]


def settings_from_argv(argv: list[str]) -> dict:
    """The settings (movierec.yaml's keys) `movierec <argv>` (run, retrain or compile-kfp
    and its flags, --config included) resolves to: the command's defaults < the file < the
    flags; for tools that take the commands' flags and choose some settings themselves."""
    return _settings(_build_parser().parse_args(argv))


def _cmd_run(args) -> int:
    _quiet_tensorflow(keep_users_level=True)   # the console shows progress; TFX and Beam log to the run's log
    from movierec import summary  # noqa: PLC0415
    from movierec.components.data import readers  # noqa: PLC0415

    started = time.perf_counter()
    try:
        config, how = _build_config(args)
        filesystems.ensure(config.data_dir, config.pipeline_root, config.serving_root)
        print(f"movierec {args.command}: data {config.data_dir} ({how})")
        result = runs.run_once(config, args.command, say=lambda line: print(line, flush=True))
    except BlockingIOError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BUSY
    except runs.PipelineFailed as e:   # before RuntimeError, which it is
        print(f"\n{e}", file=sys.stderr)
        print(f"(full log: {e.log_path})", file=sys.stderr)
        return EXIT_DATA_ERROR if e.cause is not None else EXIT_PIPELINE_ERROR
    except (ValueError, OSError, RuntimeError, readers.DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_DATA_ERROR
    total = time.perf_counter() - started
    print(summary.render(config, result.timings, total, MODEL_NAMES, before=result.served_before))
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


def _cmd_serve(args) -> int:
    import signal  # noqa: PLC0415
    import threading  # noqa: PLC0415

    from movierec.serving.served_models import model_specs  # noqa: PLC0415

    try:
        specs = model_specs(args.model_config_file, args.model_name, args.model_base_path, args.serving_root)
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


def _list_length(text: str) -> int:
    """-k: an integer from 1 to MAX_K_LIMIT, refused before any call."""
    try:
        return check_k(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list length: an integer from 1 to {MAX_K_LIMIT} "
                                         "(and at most the model's max_k)") from None


def _quiet_tensorflow(keep_users_level: bool = False) -> None:
    """Before TensorFlow loads: its C++ messages (CUDA, cuFFT/cuDNN/cuBLAS registration,
    oneDNN and TF-TRT notices at start-up, tf.data's end-of-input warnings) and the
    FutureWarnings of the Google libraries it pulls in stay off the console. They bypass
    Python logging, so they would land between the lines a command prints; a TensorFlow
    failure still reaches the user as the Python exception it raises.
    keep_users_level: a TF_CPP_MIN_LOG_LEVEL the user set wins (`run`, where one may want
    TensorFlow's messages while debugging); otherwise it is overridden (`recommend`)."""
    import warnings  # noqa: PLC0415

    if "tensorflow" not in sys.modules:
        if keep_users_level:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        else:
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    warnings.filterwarnings("ignore", category=FutureWarning)


def recommendations_json(rows, model: str) -> list[dict]:
    """`recommend --json`: per user, whether the model knew them and the list; an unknown
    user's movies carry `training_ratings` (the popularity fallback) instead of a score."""
    out = []
    for row in rows:
        items = []
        for rank, r in enumerate(row.items, 1):
            item = {"rank": rank, "movie_id": r.movie_id, "title": r.title, "genres": r.genres.split("|") if r.genres else []}
            item.update({"score": r.score} if row.known else {"training_ratings": int(round(r.score))})
            items.append(item)
        out.append({"user_id": row.user_id, "model": model, "known_user": row.known, "recommendations": items})
    return out


def recommendations_text(rows, model: str, protocol: str) -> str:
    lines = []
    for row in rows:
        if row.known:
            lines.append(f"user {row.user_id} ({model}, {protocol}):")
        else:
            lines.append(f"user {row.user_id} ({model}, {protocol}): unknown to the model - the most-rated "
                         "movies instead; the last column is their number of training ratings, not a score")
        if not row.items:
            lines.append("  (no recommendations)")
        id_width = max((len(r.movie_id) for r in row.items), default=2)
        width = max((len(r.title) for r in row.items), default=5)
        genre_width = max((len(r.genres) for r in row.items), default=6)
        for rank, r in enumerate(row.items, 1):
            value = f"{r.score:7.3f}" if row.known else f"{int(round(r.score)):>7d}"
            lines.append(f"  {rank:>2}. {r.movie_id:<{id_width}}  {r.title:<{width}}  {r.genres:<{genre_width}}  {value}")
    return "\n".join(lines)


def _cmd_recommend(args) -> int:
    from movierec.serving.client import ClientError, GrpcClient, RestClient  # noqa: PLC0415

    if args.protocol == "rest":
        client = RestClient(args.host, args.port or 8501)
    else:
        _quiet_tensorflow()
        client = GrpcClient(args.host, args.port or 8500)
    # without -k and --exclude: serving_default with user_id alone; else the `recommend` signature
    exclude = [list(args.exclude) for _ in args.user] if args.exclude else None
    try:
        rows = client.recommendations(args.user, k=args.k, model=args.model, exclude=exclude)
    except ClientError as e:
        print(f"error from server: {e}", file=sys.stderr)
        return EXIT_PIPELINE_ERROR
    except OSError as e:
        print(f"error: cannot reach {args.host}: {e}", file=sys.stderr)
        return EXIT_PIPELINE_ERROR
    finally:
        if args.protocol == "grpc":
            client.close()
    if args.json:
        print(json.dumps(recommendations_json(rows, args.model), indent=2))
    else:
        print(recommendations_text(rows, args.model, args.protocol))
    return 0


def _cmd_report(args) -> int:
    from movierec import summary  # noqa: PLC0415

    config = PipelineConfig.from_output_dir(".", args.output_dir)
    try:
        evaluations = [e for e in (summary.latest_evaluation(config, name) for name in MODEL_NAMES) if e]
    except OSError as e:   # an evaluation recorded in ML Metadata whose files are gone
        print(f"error: {e}", file=sys.stderr)
        return EXIT_DATA_ERROR
    if not evaluations:
        print(f"no evaluation in {config.metadata_path}: run `movierec run` first", file=sys.stderr)
        return EXIT_DATA_ERROR
    for evaluation in evaluations:
        print("\n".join(line[2:] for line in summary.verdict_lines(evaluation)))
    effective = config_file.latest_effective(config.pipeline_root)
    if effective is not None:
        path, text = effective
        print(f"\nconfig of the latest run ({path}):")
        print("\n".join(f"  {line}" for line in text.rstrip().splitlines() if not line.startswith("#")))
    return 0


def _cmd_compile_kfp(args) -> int:
    from movierec.pipeline import kubeflow_v2_runner  # noqa: PLC0415

    try:
        config, _ = _build_config(args, schema_path=kubeflow_v2_runner.IMAGE_SCHEMA_PATH, check_local_files=False)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_DATA_ERROR
    print(kubeflow_v2_runner.compile_pipeline(config, args.image, args.out))
    print(f"config: {config_file.save_next_to(config, args.out, 'compile-kfp')}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    commands = {"run": _cmd_run, "retrain": _cmd_run, "data": _cmd_data, "serve": _cmd_serve, "recommend": _cmd_recommend,
                "report": _cmd_report, "compile-kfp": _cmd_compile_kfp}
    if argv is not None:   # called in-process (tests): the status comes back, the process goes on
        return commands[args.command](args)
    # s3:// paths need tensorflow-io, whose S3 plug-in aborts the interpreter's own exit:
    # `filesystems.finish` ends the process with the command's status instead
    try:
        filesystems.ensure(*(v for v in vars(args).values() if isinstance(v, str)))
        code = commands[args.command](args)
    except RuntimeError as e:   # an object store's file system missing: named by `ensure`
        print(f"error: {e}", file=sys.stderr)
        code = EXIT_DATA_ERROR
    except SystemExit as e:
        code = filesystems.exit_code(e)
    except BaseException:   # printed as the interpreter would, status 1
        traceback.print_exc()
        code = 1
    return filesystems.finish(code)


if __name__ == "__main__":
    sys.exit(main())
