"""Implicit-feedback MF (iALS) for top-k ranking: who rated what, not how much.

Rendle et al., "Revisiting the Performance of iALS on Item Recommendation Benchmarks"
(RecSys 2022). With S the observed (user, movie) pairs and y = <w_u, h_i>:

    L = sum_{(u,i) in S} (y_ui - 1)^2  +  alpha0 * sum_{u,i} y_ui^2
        + reg * ( sum_u (|I_u| + alpha0 |I|)^nu |w_u|^2 + sum_i (|U_i| + alpha0 |U|)^nu |h_i|^2 )

Every unobserved pair is a weak negative (weight alpha0) without ever being materialised:
the sum over all pairs is folded into the Gram matrix G = H^T H [d, d]. Alternating exact
solves: for each user, (H_u^T H_u + alpha0 G + reg_u I) w_u = H_u^T 1, with H_u [|I_u|, d]
the rows of the movies u rated; then the same for movies. Each sweep costs
O(nnz d^2 + (U + N) d^3).

Hybrid (`movie_features` F [N, G] given): each movie's vector is shrunk toward a genre
prior F_i B instead of toward zero, i.e. its L2 term becomes reg_i |h_i - F_i B|^2, with
B [G, d] the genre embedding, itself fitted after each movie sweep by weighted ridge
regression of H on F (weights reg_i, L2 `feature_reg`). The movie solve keeps its shape:
(H_u^T H_u + alpha0 G + reg_i I) h_i = W_i^T 1 + reg_i F_i B; a movie with no observations
gets h_i = F_i B. This is `h_i = v_i + F_i B` with the L2 on v_i, the model's hybrid form.

Shapes: user_idx, movie_idx int [n] (indices < num_users / num_movies);
returns W float32 [num_users, d], H float32 [num_movies, d] (the whole movie vectors),
and with movie_features B float32 [G, d].
"""
from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
import scipy.sparse as sp

from movierec.components.mf import parallel


@dataclasses.dataclass(frozen=True)
class IALSResult:
    user_factors: np.ndarray   # float32 [U, d]
    movie_factors: np.ndarray  # float32 [N, d] (hybrid: the whole vector, genre part included)
    iterations: int
    fit_seconds: float
    loss_history: list
    genre_factors: np.ndarray | None = None   # float32 [G, d], hybrid only


def _row_regs(R: sp.csr_matrix, alpha0: float, reg: float, nu: float, n_other: int) -> np.ndarray:
    """Frequency-scaled L2 of each row of R: reg (|row| + alpha0 n_other)^nu, [rows]."""
    return reg * (np.diff(R.indptr) + alpha0 * n_other) ** nu


_GROUP_RATINGS = 1 << 15   # padded ratings per batched group: [E, n, d] float64, 16 MB at d = 64
_GROUP_SLACK = 1.25        # a group's padded length is at most this many times its shortest row
_GROUP_MATRICES = 1 << 22  # values of the group's stacked [E, d, d] systems: 32 MB of float64


@dataclasses.dataclass(frozen=True)
class _Group:
    rows: np.ndarray   # int [E]      rows of R in this group (each with at least one entry)
    cols: np.ndarray   # int [E, n]   their column indices, padded with n_other (a zero row)


def row_groups(R: sp.csr_matrix, d: int) -> list[_Group]:
    """The non-empty rows of R in groups of similar length, each padded to its longest row.

    A group's rows have at most max(1.25 x, x + 4) entries for x its shortest row's, at most
    `_GROUP_RATINGS` padded entries in all and at most `_GROUP_MATRICES / d^2` rows (one row
    always fits), so the padding wastes at most a quarter and the batched arrays stay small.
    Built once per fit: the pattern of R does not change between sweeps."""
    counts = np.diff(R.indptr)
    order = np.argsort(counts, kind="stable")
    order = order[counts[order] > 0]
    sorted_counts = counts[order]
    max_rows = max(1, _GROUP_MATRICES // (d * d))
    groups, i = [], 0
    while i < len(order):
        shortest = int(sorted_counts[i])
        limit = max(_GROUP_SLACK * shortest, shortest + 4)
        width = min(max_rows, max(1, _GROUP_RATINGS // shortest))
        window = sorted_counts[i:i + width]
        fits = (window <= limit) & (np.arange(1, len(window) + 1) * window <= _GROUP_RATINGS)
        j = i + max(1, int(np.argmin(fits)) if not fits.all() else len(window))
        rows = order[i:j]
        n = int(counts[rows].max())
        take = np.arange(n)
        inside = take[None, :] < counts[rows][:, None]
        idx = np.minimum(R.indptr[rows][:, None] + take[None, :], len(R.indices) - 1)
        groups.append(_Group(rows, np.where(inside, R.indices[idx], R.shape[1])))
        i = j
    return groups


def _solve_side(R: sp.csr_matrix, other: np.ndarray, alpha0: float, reg: float, nu: float,
                n_other: int, prior: np.ndarray | None = None,
                groups: list[_Group] | None = None) -> np.ndarray:
    """New factors for the rows of R ([rows, n_other] binary CSR) given the other side's.

    prior [rows, d]: the L2 pulls each row toward it instead of toward zero (hybrid). A row
    with no entries keeps its prior (zero without one). Rows are solved a group at a time
    (`row_groups`): the group's H_u gathered into [E, n, d] (padding gathers a zero row),
    E Gram matrices by one batched matmul, E systems by one batched `np.linalg.solve`;
    groups run on every core (`parallel.run_all`)."""
    d = other.shape[1]
    gram = alpha0 * (other.T @ other)                       # [d, d]
    regs = _row_regs(R, alpha0, reg, nu, n_other)           # [rows]
    out = np.zeros((R.shape[0], d), np.float64) if prior is None else np.array(prior, np.float64)
    padded = np.vstack([other, np.zeros((1, d))])           # [n_other + 1, d]
    eye = np.eye(d)

    def solve(g: _Group) -> None:
        Hu = padded[g.cols]                                                      # [E, n, d]
        A = gram + np.matmul(Hu.transpose(0, 2, 1), Hu) + regs[g.rows, None, None] * eye   # [E, d, d]
        rhs = Hu.sum(axis=1)                                                     # [E, d]
        if prior is not None:
            rhs += regs[g.rows, None] * prior[g.rows]
        out[g.rows] = np.linalg.solve(A, rhs[:, :, None])[:, :, 0]

    parallel.run_all(solve, row_groups(R, d) if groups is None else groups)   # groups: disjoint rows
    return out


def fit_genre_prior(F: np.ndarray, H: np.ndarray, weights: np.ndarray, feature_reg: float) -> np.ndarray:
    """B [G, d] minimising sum_i weights_i |H_i - F_i B|^2 + feature_reg |B|^2."""
    FtD = F.T * weights                                     # [G, N]
    return np.linalg.solve(FtD @ F + feature_reg * np.eye(F.shape[1]), FtD @ H)


def loss(R: sp.csr_matrix, W: np.ndarray, H: np.ndarray, alpha0: float, reg: float, nu: float,
         prior: np.ndarray | None = None, chunk: int = 1 << 20) -> float:
    """The objective (module docstring) at W [U, d], H [N, d]; the observed pairs' predictions
    are formed `chunk` pairs at a time ([chunk, d] gathers, not [nnz, d])."""
    rows = np.repeat(np.arange(R.shape[0]), np.diff(R.indptr))
    cols = R.indices
    observed = 0.0
    for start in range(0, len(cols), chunk):
        r, c = rows[start:start + chunk], cols[start:start + chunk]
        observed += float(np.sum((np.einsum("ij,ij->i", W[r], H[c]) - 1.0) ** 2))
    everything = alpha0 * np.sum((W.T @ W) * (H.T @ H))
    ru = reg * (np.diff(R.indptr) + alpha0 * H.shape[0]) ** nu
    ri = reg * (np.bincount(cols, minlength=H.shape[0]) + alpha0 * W.shape[0]) ** nu
    free = H if prior is None else H - prior
    return float(observed + everything + ru @ np.sum(W ** 2, 1) + ri @ np.sum(free ** 2, 1))


def fit(user_idx: np.ndarray, movie_idx: np.ndarray, num_users: int, num_movies: int, *,
        dim: int, alpha0: float, reg: float, nu: float = 1.0, iterations: int = 15,
        init_stddev: float = 0.1, seed: int = 42, init_user_factors: np.ndarray | None = None,
        init_movie_factors: np.ndarray | None = None, movie_features: np.ndarray | None = None,
        feature_reg: float = 100.0) -> IALSResult:
    """init_*_factors [U, d] / [N, d]: start from these (warm start) instead of random rows.
    movie_features [N, G]: the hybrid (see the module docstring), `feature_reg` its L2."""
    if dim < 1 or iterations < 1:
        raise ValueError(f"dim and iterations must be >= 1, got dim={dim}, iterations={iterations}")
    if alpha0 <= 0 or reg <= 0:
        raise ValueError(f"alpha0 and reg must be > 0, got alpha0={alpha0}, reg={reg}")
    if movie_features is not None:
        movie_features = np.asarray(movie_features, np.float64)
        if movie_features.ndim != 2 or movie_features.shape[0] != num_movies:
            raise ValueError(f"movie_features must be [num_movies={num_movies}, G], got shape "
                             f"{movie_features.shape}")
        if feature_reg <= 0:
            raise ValueError(f"feature_reg must be > 0, got {feature_reg}")
    keep = (user_idx < num_users) & (movie_idx < num_movies)
    R = sp.csr_matrix((np.ones(int(keep.sum())), (user_idx[keep], movie_idx[keep])),
                      shape=(num_users, num_movies))
    R.data[:] = 1.0          # a pair rated twice is still one observation
    Rt = R.T.tocsr()
    rng = np.random.default_rng(seed)
    W = rng.normal(0, init_stddev / np.sqrt(dim), (num_users, dim))
    H = rng.normal(0, init_stddev / np.sqrt(dim), (num_movies, dim))
    for name, given, shape in (("user", init_user_factors, W.shape), ("movie", init_movie_factors, H.shape)):
        if given is not None and given.shape != shape:
            raise ValueError(f"initial {name} factors have shape {given.shape}, expected {shape}")
    W = W if init_user_factors is None else np.asarray(init_user_factors, np.float64)
    H = H if init_movie_factors is None else np.asarray(init_movie_factors, np.float64)
    history = []
    B = prior = None
    if movie_features is not None:
        B = np.zeros((movie_features.shape[1], dim))
        prior = movie_features @ B
        unrated = np.diff(Rt.indptr) == 0
    start = time.perf_counter()
    user_groups, movie_groups = row_groups(R, dim), row_groups(Rt, dim)
    for it in range(iterations):
        W = _solve_side(R, H, alpha0, reg, nu, num_movies, groups=user_groups)
        H = _solve_side(Rt, W, alpha0, reg, nu, num_users, prior, groups=movie_groups)
        if movie_features is not None:
            B = fit_genre_prior(movie_features, H, _row_regs(Rt, alpha0, reg, nu, num_users), feature_reg)
            prior = movie_features @ B
            H[unrated] = prior[unrated]   # their exact minimiser under the new B
        history.append(loss(R, W, H, alpha0, reg, nu, prior)
                       + (0.0 if B is None else feature_reg * float(np.sum(B ** 2))))
        logging.info("iALS sweep %d/%d: loss %.2f", it + 1, iterations, history[-1])
    return IALSResult(W.astype(np.float32), H.astype(np.float32), iterations,
                      time.perf_counter() - start, history,
                      None if B is None else B.astype(np.float32))
