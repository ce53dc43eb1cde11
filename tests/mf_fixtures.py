"""Small hand-made MF training sets shared by the iALS and hybrid tests."""
import numpy as np

from movierec.components.training_data import Interactions

# two taste groups: users 0-3 watch movies 0-3, users 4-7 watch movies 4-7; each user
# skipped one movie of their group
GROUPS = [(u, m) for u in range(8) for m in range(8) if (u < 4) == (m < 4) and m % 4 != u % 4]


def interactions(pairs, ratings=None) -> Interactions:
    """(user, movie) index pairs (and ratings, default 4.0) -> Interactions."""
    u = np.array([p[0] for p in pairs], np.int64)
    m = np.array([p[1] for p in pairs], np.int64)
    r = np.array(ratings if ratings is not None else [4.0] * len(pairs), np.float32)
    return Interactions(u, m, r, np.zeros(len(pairs), np.int64))
