"""The evaluator's settings, validated without importing TensorFlow (the CLI checks them
before a run starts)."""
from __future__ import annotations

import dataclasses

from movierec.components.mf.biases import BIAS_L2

LOWER_IS_BETTER = {"rmse", "mae"}


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    ks: tuple[int, ...] = (10,)           # ranking metrics at each k
    rating_threshold: float | None = None
    judged_on: str = "ndcg@10"          # "rmse" or a ranking metric name, e.g. "ndcg@10"
    must_beat: str | None = "popularity"  # "popularity", "bias_baseline" or None
    max_regression: float = 0.01        # relative, vs the last blessed model
    batch_users: int = 2048
    bias_l2: float = BIAS_L2

    def __post_init__(self):
        object.__setattr__(self, "ks", tuple(sorted(set(int(k) for k in self.ks))))
        if not self.ks or self.ks[0] < 1:
            raise ValueError(f"eval ks must be integers >= 1, got {self.ks}")
        ranking = {f"{m}@{k}" for k in self.ks
                   for m in ("precision", "recall", "ndcg", "map", "hit_rate", "coverage")}
        if self.judged_on not in LOWER_IS_BETTER | ranking:
            raise ValueError(f"judged_on={self.judged_on!r} must be one of {sorted(LOWER_IS_BETTER | ranking)}")
        if self.must_beat not in (None, "popularity", "bias_baseline"):
            raise ValueError(f"must_beat={self.must_beat!r} must be popularity, bias_baseline or null")
        if self.must_beat == "bias_baseline" and self.judged_on not in LOWER_IS_BETTER:
            raise ValueError("the bias baseline predicts ratings: judge on rmse or mae to beat it")
        if self.must_beat == "popularity" and self.judged_on in LOWER_IS_BETTER:
            raise ValueError("popularity ranks movies: judge on a ranking metric to beat it")
        if not 0 <= self.max_regression < 1:
            raise ValueError(f"max_regression={self.max_regression} must be in [0, 1)")
        if self.batch_users < 1:
            raise ValueError(f"batch_users must be >= 1, got {self.batch_users}")

    @classmethod
    def from_dict(cls, values: dict) -> "EvalConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown evaluation settings {unknown}; known: {sorted(known)}")
        return cls(**values)
