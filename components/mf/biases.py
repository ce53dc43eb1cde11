"""Rating biases: global mean + user bias + movie bias, ridge-regularised.

    rating(u, m) ~ mu + b_u + b_m,   b fitted by alternating closed-form updates
    b_m = sum_u (r - mu - b_u) / (n_m + l2),  b_u = sum_m (r - mu - b_m) / (n_u + l2)

The evaluator's "bias baseline" and the rating head of the ranking (iALS) MF model.
Shapes: returns mu (float), b_u [U + 1], b_m [N + 1] (the OOV rows are 0).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # keeps this module free of TensorFlow (the CLI reads BIAS_L2)
    from movierec.components.training_data import Interactions

BIAS_L2 = 10.0   # ridge strength of the biases: the evaluator's baseline and the iALS rating head


def fit_bias_baseline(train: "Interactions", num_users: int, num_movies: int,
                      l2: float, iterations: int = 10):
    """Global mean + user and movie biases, ridge-regularised, by alternating updates."""
    mu = float(train.rating.mean())
    bu, bm = np.zeros(num_users + 1), np.zeros(num_movies + 1)
    nu = np.bincount(train.user_idx, minlength=num_users + 1)
    nm = np.bincount(train.movie_idx, minlength=num_movies + 1)

    def ratio(total, count):
        return np.divide(total, count + l2, out=np.zeros_like(total), where=(count + l2) > 0)

    for _ in range(iterations):
        bm = ratio(np.bincount(train.movie_idx, train.rating - mu - bu[train.user_idx], num_movies + 1), nm)
        bu = ratio(np.bincount(train.user_idx, train.rating - mu - bm[train.movie_idx], num_users + 1), nu)
    bu[num_users] = bm[num_movies] = 0.0  # OOV: no bias
    return mu, bu, bm
