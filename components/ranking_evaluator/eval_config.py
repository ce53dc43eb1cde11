"""The evaluation settings and blessing rules, validated without importing TensorFlow.

One `EvalConfig` is the pipeline's evaluation configuration (`PipelineConfig.evaluation`,
checked by the CLI before a run starts); each RankingEvaluator receives its model's part as
a JSON execution property (`evaluator_config(model_name)`: the model's rules resolved, no
overrides left) and rebuilds it with `from_dict`.

Blessing rules: every pushed model serves top-k, so by default every model must beat
popularity on ndcg@10; a model that also serves `predict_rating` must beat the bias
baseline on rmse. A rating rule (rmse, mae) applies only to a candidate that has rating
metrics, i.e. a `predict_rating` signature: a model trained on implicit events (a dataset
without ratings, see docs/data.md) is exported without one, so on such data only the
ranking rules gate, with no setting to change. `rating_threshold` needs ratings too. Every gated metric must also stay within
`max_regression` (relative) of the last blessed model's value. `overrides` change the rules
of one model: a (model, rule) pair replaces that model's rule on the same metric, or adds one.
"""
from __future__ import annotations

import dataclasses

from movierec.components.mf.biases import BIAS_L2
from movierec.settings_dict import from_dict

RATING_METRICS = ("rmse", "mae")   # lower is better; measured only with predict_rating
LOWER_IS_BETTER = set(RATING_METRICS)
RANKING_METRICS = ("precision", "recall", "ndcg", "map", "hit_rate", "coverage")
BASELINES = {"popularity": "ranking", "bias_baseline": "rating"}   # baseline -> what it can be beaten on


@dataclasses.dataclass(frozen=True)
class Rule:
    """The candidate's `metric` must beat `baseline` (None: no baseline to beat) and must not
    regress against the last blessed model. `metric`: "rmse", "mae" or "<ranking metric>@<k>"."""

    metric: str
    baseline: str | None = None

    def __post_init__(self):
        name, at, k = self.metric.partition("@")
        ranking = bool(at) and name in RANKING_METRICS and k.isdigit() and int(k) >= 1
        if not (ranking or self.metric in RATING_METRICS):
            raise ValueError(f"metric {self.metric!r} must be rmse, mae or one of "
                             f"{'/'.join(RANKING_METRICS)} at k, e.g. ndcg@10")
        if self.baseline is not None and self.baseline not in BASELINES:
            raise ValueError(f"baseline {self.baseline!r} must be one of {sorted(BASELINES)} or none")
        if self.baseline is not None and BASELINES[self.baseline] != ("ranking" if ranking else "rating"):
            raise ValueError(f"{self.metric}:{self.baseline}: " + (
                "popularity ranks movies: judge it on a ranking metric" if self.baseline == "popularity"
                else "the bias baseline predicts ratings: judge it on rmse or mae"))

    @property
    def rating(self) -> bool:
        """A rating-metric rule: it applies only to a model with predict_rating."""
        return self.metric in RATING_METRICS

    @property
    def k(self) -> int | None:
        return int(self.metric.partition("@")[2]) if not self.rating else None


DEFAULT_RULES = (Rule("ndcg@10", "popularity"), Rule("rmse", "bias_baseline"))


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    ks: tuple[int, ...] = (10,)             # ranking metrics at each k
    rating_threshold: float | None = None   # None: every eval rating (or implicit event) is relevant
    max_regression: float = 0.01            # relative, vs the last blessed model, per gated metric
    rules: tuple[Rule, ...] = DEFAULT_RULES  # every model's rules
    overrides: tuple[tuple[str, Rule], ...] = ()   # (model name, rule)
    batch_users: int = 2048
    bias_l2: float = BIAS_L2
    sample_users: int = 3                   # users whose lists the report shows

    def __post_init__(self):
        object.__setattr__(self, "ks", tuple(sorted(set(int(k) for k in self.ks))))
        if not self.ks or self.ks[0] < 1 or self.ks[-1] > 1000:
            raise ValueError(f"eval ks must be integers in 1..1000, got {self.ks}")
        object.__setattr__(self, "rules", tuple(_rule(r) for r in self.rules))
        object.__setattr__(self, "overrides", tuple((str(m), _rule(r)) for m, r in self.overrides))
        for what, rules in [("rules", self.rules), *((f"rules of {m}", self.rules_for(m)) for m, _ in self.overrides)]:
            metrics = [r.metric for r in rules]
            if len(set(metrics)) != len(metrics):
                raise ValueError(f"{what}: one rule per metric, got {metrics}")
            for r in rules:
                if r.k is not None and r.k not in self.ks:
                    raise ValueError(f"{what}: {r.metric} needs k={r.k} among the eval ks {list(self.ks)}")
        seen = [(m, r.metric) for m, r in self.overrides]
        twice = sorted({f"{m}={metric}" for m, metric in seen if seen.count((m, metric)) > 1})
        if twice:
            raise ValueError(f"more than one rule for {', '.join(twice)}")
        if not 0 <= self.max_regression < 1:
            raise ValueError(f"max_regression={self.max_regression} must be in [0, 1)")
        if self.batch_users < 1:
            raise ValueError(f"batch_users must be >= 1, got {self.batch_users}")
        if not 0 <= self.sample_users <= 100:
            raise ValueError(f"sample_users must be in 0..100, got {self.sample_users}")

    def rules_for(self, model_name: str) -> tuple[Rule, ...]:
        """`rules` with the model's overrides applied (same metric: replaced; new: appended)."""
        rules = {r.metric: r for r in self.rules}
        for model, rule in self.overrides:
            if model == model_name:
                rules[rule.metric] = rule
        return tuple(rules.values())

    def evaluator_config(self, model_name: str) -> dict:
        """What one model's RankingEvaluator receives (JSON-serialisable)."""
        return dataclasses.asdict(dataclasses.replace(self, rules=self.rules_for(model_name), overrides=()))

    @classmethod
    def from_dict(cls, values: dict) -> "EvalConfig":
        return from_dict(cls, values, "evaluation")


def _rule(value) -> Rule:
    """A Rule from itself or its JSON form ({"metric": ..., "baseline": ...})."""
    if isinstance(value, Rule):
        return value
    if isinstance(value, dict) and set(value) <= {"metric", "baseline"} and "metric" in value:
        return Rule(**value)
    raise ValueError(f"a rule is {{'metric': ..., 'baseline': ...}}, got {value!r}")
