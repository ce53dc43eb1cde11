"""The one typed, frozen configuration of a movierec run.

Everything a pipeline run depends on lives here, validated once when the object is built.
Nothing reads the environment at import time: the CLI turns flags (and the few documented
environment variables) into a `PipelineConfig`, and `create_pipeline(config)` consumes it.
Trainer settings cross the TFX process boundary as plain dicts (`to_dict` / `from_dict`).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from movierec.components.ranking_evaluator.eval_config import EvalConfig
from movierec.contract import DEFAULT_MAX_K, MAX_K_LIMIT
from movierec.settings_dict import from_dict


def _check(condition: bool, name: str, value: Any, expectation: str) -> None:
    if not condition:
        raise ValueError(f"config: {name}={value!r} is invalid: {expectation}")


LOCAL_BEAM_ARGS = ("--runner=FnApiRunner", "--direct_running_mode=in_memory", "--direct_num_workers=1",
                   "--requirements_file=/dev/null")
MF_OBJECTIVES = ("ials+bayes", "mse", "ials", "bayes")   # the first is the default
IALS_ALPHA0 = 0.1
IALS_REG = 0.03
IALS_FEATURE_REG = 100.0
RANKING_WIDTHS = {"mse": 32, "ials": 64, "ials+bayes": 64}   # embedding_dim's default per objective
# The Bayesian rater's sweep rule (`MFConfig.bayes_schedule`): Gibbs sweeps x ratings allowed,
# and the fewest sweeps a large dataset still gets.
BAYES_SWEEP_BUDGET = 50_000_000
BAYES_MIN_SWEEPS = 30


@dataclass(frozen=True)
class MFConfig:
    """Matrix factorization (seed article 002, example 3) hyper-parameters.

    objective "ials+bayes" (the default, `components/mf/model.py` RankAndRate): an "ials"
    model ranks (`serving_default`) and a "bayes" model rates (`predict_rating`), side by
    side in one SavedModel; every ials_* and bayes_* setting below applies to its half.

    objective "mse" (the article): `l2` is applied per example to the embedding rows and
    biases a batch looks up (classic biased-MF regularisation, so updates stay sparse),
    added to the batch mean squared error; `epochs`, `batch_size`, `learning_rate` apply.
    Defaults were chosen on ML-100k (80/20 random split, by held-out RMSE).

    objective "ials" (ranking, `components/mf/ials.py`): `ials_alpha0` weights every
    unobserved (user, movie) pair, `ials_reg` the frequency-scaled L2, `ials_iterations`
    alternating sweeps. embedding_dim None: RANKING_WIDTHS[objective].

    objective "bayes" (the rating model, `components/mf/bayes.py`): Bayesian biased MF by
    Gibbs sampling of width `bayes_dim` with SVD++-style implicit features
    (`bayes_implicit`); `bayes_burn_in` sweeps are discarded, then every `bayes_thin`-th of
    the next sweeps is kept until `bayes_samples` are, on datasets up to 111k ratings; larger
    ones get fewer sweeps (`bayes_schedule`). The served model is the average of
    the kept samples, re-factored into `bayes_export_rank` columns at most
    (`low_rank.refactor`, exact when the average's rank is lower).

    hybrid: each movie vector is its own embedding plus a learned genre part
    (`components/mf/model.py`); for ials `ials_feature_reg` is the genre part's L2; for bayes
    the genres set each movie's prior mean.

    Defaults of ials_*, bayes_* and hybrid come from validation splits carved from the
    train part on ML-100k and on an ml-latest-format dataset (`benchmarks/tune_mf.py`),
    never from test.
    """

    embedding_dim: int | None = None
    objective: str = MF_OBJECTIVES[0]
    ials_alpha0: float = IALS_ALPHA0
    ials_reg: float = IALS_REG
    ials_iterations: int = 10
    ials_feature_reg: float = IALS_FEATURE_REG
    hybrid: bool = True
    bayes_dim: int = 16
    bayes_samples: int = 100
    bayes_burn_in: int = 50
    bayes_thin: int = 4
    bayes_implicit: str = "both"
    bayes_export_rank: int = 128
    epochs: int = 25
    batch_size: int = 4096
    learning_rate: float = 0.01
    l2: float = 0.1
    seed: int = 42

    def bayes_schedule(self, num_ratings: int) -> tuple[int, int, int]:
        """(burn_in, samples, thin) of the Bayesian rater fitted on `num_ratings` ratings.

        A Gibbs sweep costs time linear in the ratings, so the configured schedule
        (bayes_burn_in + bayes_samples * bayes_thin sweeps: 450 by default) is run while
        sweeps x ratings stays within BAYES_SWEEP_BUDGET (50M: every dataset up to 111k
        ratings, ML-100k included, gets exactly the configured schedule). Above, the sweeps
        are BAYES_SWEEP_BUDGET // num_ratings, at least BAYES_MIN_SWEEPS: a third of them
        (at most bayes_burn_in) are burn-in, the rest are kept with the thinning that leaves
        at most bayes_samples samples (at most bayes_thin). Why fewer sweeps do on large data:
        an average of S samples adds (posterior variance of a prediction) / S to its squared
        error, and that posterior variance falls as each user and movie has more ratings
        (the rule is a cost budget, not tuned per dataset: ML-100k is the only dataset
        whose quality was measured with it, and it runs the full schedule). Examples
        (defaults): 100,000
        ratings -> (50, 100, 4); 1,000,000 -> 50 sweeps -> (16, 34, 1); 25,000,000 -> 30
        sweeps -> (10, 20, 1).
        """
        if isinstance(num_ratings, bool) or not isinstance(num_ratings, int) or num_ratings < 1:
            raise ValueError(f"num_ratings must be an integer >= 1, got {num_ratings!r}")
        configured = (self.bayes_burn_in, self.bayes_samples, self.bayes_thin)
        full = self.bayes_burn_in + self.bayes_samples * self.bayes_thin
        sweeps = max(BAYES_SWEEP_BUDGET // num_ratings, BAYES_MIN_SWEEPS)
        if sweeps >= full:
            return configured
        burn_in = min(self.bayes_burn_in, sweeps // 3)
        thin = max(1, min(self.bayes_thin, (sweeps - burn_in) // self.bayes_samples))
        return burn_in, max(1, min(self.bayes_samples, (sweeps - burn_in) // thin)), thin

    def __post_init__(self) -> None:
        _check(self.objective in MF_OBJECTIVES, "mf.objective", self.objective, " or ".join(map(repr, MF_OBJECTIVES)))
        if self.embedding_dim is None:   # the width of the factors the objective ranks with
            width = RANKING_WIDTHS.get(self.objective, self.bayes_dim)
            object.__setattr__(self, "embedding_dim", width)
        _check(self.objective != "bayes" or self.embedding_dim == self.bayes_dim, "mf.embedding_dim",
               self.embedding_dim, f"the Bayesian model's width is bayes_dim ({self.bayes_dim}); set that")
        _check(1 <= self.bayes_dim <= 1024, "mf.bayes_dim", self.bayes_dim, "1..1024")
        _check(1 <= self.bayes_samples <= 10_000, "mf.bayes_samples", self.bayes_samples, "1..10000")
        _check(0 <= self.bayes_burn_in <= 100_000, "mf.bayes_burn_in", self.bayes_burn_in, "0..100000")
        _check(1 <= self.bayes_thin <= 1000, "mf.bayes_thin", self.bayes_thin, "1..1000")
        _check(self.bayes_implicit in ("none", "user", "both"), "mf.bayes_implicit", self.bayes_implicit,
               "'none', 'user' or 'both'")
        _check(1 <= self.bayes_export_rank <= 1 << 16, "mf.bayes_export_rank", self.bayes_export_rank, "1..65536")
        _check(0 < self.ials_alpha0 < 1000, "mf.ials_alpha0", self.ials_alpha0, "in (0, 1000)")
        _check(0 < self.ials_reg < 1000, "mf.ials_reg", self.ials_reg, "in (0, 1000)")
        _check(0 < self.ials_feature_reg < 1e6, "mf.ials_feature_reg", self.ials_feature_reg, "in (0, 1e6)")
        _check(isinstance(self.hybrid, bool), "mf.hybrid", self.hybrid, "true or false")
        _check(1 <= self.ials_iterations <= 1000, "mf.ials_iterations", self.ials_iterations, "1..1000")
        _check(1 <= self.embedding_dim <= 1024, "mf.embedding_dim", self.embedding_dim, "1..1024")
        _check(1 <= self.epochs <= 10_000, "mf.epochs", self.epochs, "1..10000")
        _check(1 <= self.batch_size <= 1 << 20, "mf.batch_size", self.batch_size, "1..1048576")
        _check(0 < self.learning_rate < 10, "mf.learning_rate", self.learning_rate, "in (0, 10)")
        _check(0 <= self.l2 < 100, "mf.l2", self.l2, "in [0, 100)")


# The standard layout of an output folder (`PipelineConfig.from_output_dir`).
PIPELINE_DIR, METADATA_FILE, SERVING_DIR = "pipeline", "metadata.sqlite", "serving"

# The pipeline's models, one Trainer -> Evaluator -> Pusher branch each (pipeline/pipeline.py).
MODEL_NAMES = ("mf", "content")


CONTENT_PROFILES = ("lift", "share")


@dataclass(frozen=True)
class ContentConfig:
    """Content model settings (`components/content/profiles.py`); the defaults are
    `benchmarks/tune_content.py`'s choice.

    profile: "lift" or "share" (see the module doc). smoothing (lift: pseudo ratings of
    average taste, > 0), deviation_weight (lift: how much a rating above / below the user's
    mean adds / removes, 0..1), popularity_weight (the prior's weight, >= 0), decades
    (release decades as item features next to genres).
    """

    profile: str = "lift"
    smoothing: float = 100.0
    deviation_weight: float = 0.75
    popularity_weight: float = 1.5
    decades: bool = True

    def __post_init__(self) -> None:
        _check(self.profile in CONTENT_PROFILES, "content.profile", self.profile, " or ".join(map(repr, CONTENT_PROFILES)))
        _check(0 < self.smoothing < 1e6, "content.smoothing", self.smoothing, "in (0, 1e6)")
        _check(0 <= self.deviation_weight <= 1, "content.deviation_weight", self.deviation_weight, "in [0, 1]")
        _check(0 <= self.popularity_weight < 1000, "content.popularity_weight", self.popularity_weight, "in [0, 1000)")
        _check(isinstance(self.decades, bool), "content.decades", self.decades, "true or false")

    @classmethod
    def seed_article(cls) -> "ContentConfig":
        """Seed article 000 exactly: rating-weighted genre shares, no prior, no decades."""
        return cls(profile="share", deviation_weight=0.0, popularity_weight=0.0, decades=False)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "ContentConfig":
        return from_dict(cls, values, "content")


@dataclass(frozen=True)
class PipelineConfig:
    """Every path and setting of one pipeline run.

    Local paths are made absolute so that a config means the same thing in every TFX
    component process, whatever its working directory; URIs (gs://, s3://, ...) are kept.
    `check_local_files=False` skips checking that the schema exists on this machine (a
    pipeline compiled here to run in the pipeline image).
    """

    data_dir: str
    pipeline_root: str
    metadata_path: str
    serving_root: str
    pipeline_name: str = "movierec"
    schema_path: str = ""
    eval_percent: int = 20
    max_bad_records: int = 0
    max_k: int = DEFAULT_MAX_K
    enable_cache: bool = True
    # Beam's FnApiRunner, named: the DirectRunner would first try to download and start the
    # Prism runner. `--requirements_file=/dev/null`: the workers need nothing installed (they
    # run in this environment), which also stops TFX from re-packaging its whole
    # installation as an sdist before every Beam component (seconds each).
    beam_pipeline_args: tuple[str, ...] = LOCAL_BEAM_ARGS
    mf: MFConfig = field(default_factory=MFConfig)
    content: ContentConfig = field(default_factory=ContentConfig)
    # ks, blessing rules (per model), max_regression: components/ranking_evaluator/eval_config.py
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    check_local_files: bool = True
    # None: `data_dir` is one MovieLens folder. 0: `data_dir` holds span-<N>/ folders and a
    # run reads all of them; W >= 1: the last W spans (see components/data/spans.py).
    span_window: int | None = None
    # Start MF from the last blessed MF model (rows remapped through both vocabularies).
    warm_start: bool = False

    def __post_init__(self) -> None:
        for name in ("data_dir", "pipeline_root", "metadata_path", "serving_root"):
            value = getattr(self, name)
            _check(bool(value), name, value, "a non-empty path")
            object.__setattr__(self, name, _absolute(value))
        if not self.schema_path:
            object.__setattr__(self, "schema_path", default_schema_path())
        if self.check_local_files:   # the curated schema ships with the package: a local file
            _check(os.path.isfile(self.schema_path), "schema_path", self.schema_path, "an existing file")
        _check(bool(self.pipeline_name.replace("-", "").replace("_", "").isalnum()),
               "pipeline_name", self.pipeline_name, "letters, digits, '-' and '_'")
        _check(1 <= self.eval_percent <= 50, "eval_percent", self.eval_percent, "1..50")
        _check(self.max_bad_records >= 0, "max_bad_records", self.max_bad_records, ">= 0")
        _check(1 <= self.max_k <= MAX_K_LIMIT, "max_k", self.max_k, f"1..{MAX_K_LIMIT}")
        object.__setattr__(self, "beam_pipeline_args", tuple(self.beam_pipeline_args))
        _check(isinstance(self.mf, MFConfig), "mf", self.mf, "an MFConfig")
        _check(isinstance(self.content, ContentConfig), "content", self.content, "a ContentConfig")
        _check(isinstance(self.evaluation, EvalConfig), "evaluation", self.evaluation, "an EvalConfig")
        unknown = sorted({m for m, _ in self.evaluation.overrides} - set(MODEL_NAMES))
        _check(not unknown, "evaluation.overrides", unknown, f"rules are for the models {list(MODEL_NAMES)}")
        _check(self.span_window is None or 0 <= self.span_window <= 100_000, "span_window",
               self.span_window, "None (one folder), 0 (all spans) or a number of spans")

    @classmethod
    def from_output_dir(cls, data_dir: str, output_dir: str, **overrides: Any) -> "PipelineConfig":
        """The standard layout: everything a run writes lives under `output_dir`, except
        ML Metadata's SQLite file when `output_dir` is on an object store
        (`metadata_path_for`)."""
        output_dir = _absolute(output_dir).rstrip("/")
        return cls(
            data_dir=data_dir,
            pipeline_root=f"{output_dir}/{PIPELINE_DIR}",
            metadata_path=metadata_path_for(output_dir),
            serving_root=f"{output_dir}/{SERVING_DIR}",
            **overrides,
        )

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> "PipelineConfig":
        """The config of nested plain settings: `data_dir`, `output_dir` (the standard
        layout), any other field of this class by name, and the sections "mf", "content"
        and "evaluation" as dicts of their dataclass's fields (`movierec.config_file` reads
        them from a file and flags). Unknown keys are refused, naming them."""
        values = dict(settings)
        sections = {"mf": MFConfig, "content": ContentConfig, "evaluation": EvalConfig}
        built = {name: from_dict(kind, values.pop(name) or {}, name) for name, kind in sections.items()
                 if name in values}
        data_dir, output_dir = values.pop("data_dir", None), values.pop("output_dir", None)
        layout = {"pipeline_root", "metadata_path", "serving_root"}
        allowed = {f.name for f in dataclasses.fields(cls)} - layout - {"data_dir"}
        unknown = sorted(set(values) - allowed)
        if unknown:
            raise ValueError(f"unknown settings {unknown}; known: {sorted(allowed | {'data_dir', 'output_dir'})}")
        _check(bool(output_dir), "output_dir", output_dir, "a non-empty path")
        return cls.from_output_dir(data_dir or "", output_dir, **values, **built)

    @property
    def output_dir(self) -> str:
        """The folder holding `pipeline_root`, `metadata_path` and `serving_root` in the
        standard layout (`from_output_dir`); a ValueError for any other layout."""
        parent = self.pipeline_root.rstrip("/").rpartition("/")[0]
        if (self.pipeline_root, self.metadata_path, self.serving_root) != (
                f"{parent}/{PIPELINE_DIR}", metadata_path_for(parent), f"{parent}/{SERVING_DIR}"):
            raise ValueError(f"config: {self.pipeline_root}, {self.metadata_path} and {self.serving_root} "
                             "are not one output folder's pipeline/, metadata.sqlite and serving/")
        return parent

    def serving_model_dir(self, model_name: str) -> str:
        """TF Serving model base path of one model: `<serving_root>/<model_name>`."""
        return f"{self.serving_root.rstrip('/')}/{model_name}"

    def trainer_config(self) -> dict[str, Any]:
        """What the MF Trainer needs, as a JSON-serialisable dict (TFX custom_config)."""
        return {"mf": dataclasses.asdict(self.mf), "max_k": self.max_k, "warm_start": self.warm_start}

    def content_trainer_config(self) -> dict[str, Any]:
        """What the content Trainer needs, as a JSON-serialisable dict (TFX custom_config)."""
        return {"content": dataclasses.asdict(self.content), "max_k": self.max_k}


def metadata_path_for(output_dir: str) -> str:
    """ML Metadata's SQLite file of an output folder: `<output_dir>/metadata.sqlite`.

    SQLite opens local files only. For an output folder on an object store
    (`scheme://...`) it is the local `<cache>/metadata/<sha256 of the URL>/metadata.sqlite`
    ($MOVIEREC_CACHE when local, else ~/.cache/movierec), the same place on every run from this machine,
    as the run lock and the logs are (`movierec.runs`). Runs of one object-store output
    folder from different machines therefore keep separate metadata (and TFX caches).
    """
    output_dir = _absolute(output_dir).rstrip("/")
    if "://" not in output_dir:
        return f"{output_dir}/{METADATA_FILE}"
    import hashlib  # noqa: PLC0415

    from movierec.components.data import download  # noqa: PLC0415 (no TensorFlow at import)
    cache = download.default_cache_dir()
    if "://" in cache:   # a cache on an object store: SQLite still needs a local file
        cache = download.default_cache_dir({})
    digest = hashlib.sha256(output_dir.encode()).hexdigest()
    return os.path.join(os.path.abspath(cache), "metadata", digest, METADATA_FILE)


def _absolute(path: str) -> str:
    return path if "://" in path else os.path.abspath(path)


def mf_config_from_dict(values: Mapping[str, Any]) -> MFConfig:
    """Rebuilds (and re-validates) an MFConfig inside a Trainer process."""
    return from_dict(MFConfig, values, "MF")


def default_schema_path() -> str:
    """The curated schema committed with the package."""
    from movierec import components  # noqa: PLC0415 (light package, no TF import)

    return os.path.join(os.path.dirname(components.__file__), "schema", "schema.pbtxt")
