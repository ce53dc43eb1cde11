"""Bayesian biased matrix factorization by Gibbs sampling (BPMF with side information).

    rating(u, m) = mu + b_u + b_m + <v_u, w_m> + noise,     noise ~ N(0, 1 / alpha)

Salakhutdinov & Mnih, "Bayesian Probabilistic Matrix Factorization using MCMC" (ICML 2008),
with the biases folded into the latent rows and the side information of Macau / BPMF with
side information (Simm et al. 2015; Porteous et al. 2010) as a linear prior mean:

    [v_u, b_u] ~ N(mu_U + beta_U^T x_u, Lambda_U^-1)      x_u: the user's features [F_U]
    [w_m, b_m] ~ N(mu_M + beta_M^T g_m, Lambda_M^-1)      g_m: the movie's features [F_M]
    (mu_U, Lambda_U), (mu_M, Lambda_M) ~ Normal-Wishart(0, beta0 = 2, I, nu0 = d + 1)
    every link matrix beta [F, d + 1] ~ N(0, 1 / lambda_beta), lambda_beta ~ Gamma(1, 1)
    alpha ~ Gamma(1, 1)   (shape, rate)

Features (each block has its own link matrix and lambda_beta):
  implicit "user"   x_u = |N(u)|^-1/2 * indicator(N(u)), N(u) = the movies u rated in the data
                    passed to `fit` (the train ratings). This is SVD++'s implicit user vector
                    written as a prior mean: with p_u ~ N(mu, Lambda^-1), v_u = p_u +
                    |N(u)|^-1/2 sum_j y_j is the same model with y_j = row j of beta_U
                    (Bayesian FM's implicit features, Rendle 2013 / myFM). The column of
                    beta_U for the bias dimension is the implicit features' linear weight.
  implicit "both"   also the mirror image for movies: |N(m)|^-1/2 * indicator(users who rated m).
  genres            g_m = the movie's genre flags / sqrt(number of genres), if `movie_genres`
                    is given (a genre-dependent prior mean for the movie's vector and bias).
  On large data (more users and more movies than `max_implicit_features`, 1024) the implicit
  features are those of the 1024 most-rated movies (for users) and most active users (for
  movies): the link's Gram matrix stays 1024 x 1024 and B [N, <= 1024], where every feature
  would need a [min(U, M)]^2 eigendecomposition and a dense [N, min(U, M)] B (59k^2 and
  162k x 59k on MovieLens-25M).

Because the implicit part lives in the prior mean, v_u is already the *effective* user vector:
`BayesResult.user_factors` needs no folding at prediction time, and the sampler keeps the
standard conjugate block updates:

  1. (mu, Lambda) | rows, links      Normal-Wishart posterior of the rows minus their link means
  2. links | rows, mu, Lambda        Gaussian; with K = X^T X = P S P^T (fixed, decomposed once,
                                     through the smaller of X^T X and X X^T) and
                                     Lambda = Q L Q^T the posterior precision
                                     Lambda (x) K + lambda_beta I is diagonal in Q (x) P
  3. lambda_beta | link              Gamma
  4. every row [w_m, b_m] | users    Gaussian of dimension d + 1, all rows of a side at once:
                                     rows grouped by rating count and padded for the batched
                                     X^T X, then one batched Cholesky and two triangular
                                     solves (vectorised over rows) for the whole side
  5. the same for users, 6. alpha | residuals (Gamma): the squared error comes from the
     users' X^T X, X^T y and y^T y (no extra pass over the ratings).

Predictions average mu + b_u + b_m + <v_u, w_m> over the kept samples (after `burn_in`
sweeps, every `thin`-th sweep). `BayesResult.concatenated()` turns the S samples into one
embedding-plus-bias model of width S * d that reproduces that average exactly.

Shapes: user_idx, movie_idx int [n] with values in [0, num_users) / [0, num_movies);
rating float [n]; movie_genres float/bool [num_movies, G]. `BayesResult` stores
user_factors [S, U, d], movie_factors [S, M, d], user_bias [S, U], movie_bias [S, M] (float64).
Pure numpy + scipy.sparse; no TensorFlow.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable

import numpy as np
import scipy.sparse as sp

from movierec.components.mf import parallel

IMPLICIT_CHOICES = ("none", "user", "both")
_GROUP_BUDGET = 1 << 15        # padded ratings per batched group: [E, n, d + 1] float64, ~8 MB at d = 32
_GROUP_SLACK = 1.25            # a group's padded length is at most this many times its shortest row


@dataclasses.dataclass(frozen=True)
class BayesResult:
    """Kept Gibbs samples of a Bayesian biased MF model.

    global_mean      float        mu (the mean training rating; fixed, not sampled)
    user_factors     [S, U, d]    effective user vectors v_u (implicit part already included)
    movie_factors    [S, M, d]    movie vectors w_m
    user_bias        [S, U]       b_u
    movie_bias       [S, M]       b_m
    noise_precision  [S]          alpha per kept sample (1 / sqrt(alpha) ~ the noise std)
    train_rmse       [sweeps]     RMSE of the current sample on the training ratings, per sweep
    fit_seconds      float        wall time of `fit`
    """

    global_mean: float
    user_factors: np.ndarray
    movie_factors: np.ndarray
    user_bias: np.ndarray
    movie_bias: np.ndarray
    noise_precision: np.ndarray
    train_rmse: np.ndarray
    fit_seconds: float

    @property
    def num_samples(self) -> int:
        return int(self.user_factors.shape[0])

    @property
    def num_users(self) -> int:
        return int(self.user_factors.shape[1])

    @property
    def num_movies(self) -> int:
        return int(self.movie_factors.shape[1])

    @property
    def dim(self) -> int:
        return int(self.user_factors.shape[2])

    def predict(self, user_idx, movie_idx, *, clip: tuple[float, float] | None = None,
                batch_size: int | None = None) -> np.ndarray:
        """Posterior-mean rating for pairs: user_idx, movie_idx int [B] -> float64 [B].

        Indices are in [0, num_users] / [0, num_movies]; the value num_users (num_movies) is
        the project's OOV index: an unknown side contributes neither vector nor bias, so the
        prediction falls back to mu + the known side's bias (as `MatrixFactorization
        .predict_known`). `clip` = (low, high) clips the result. Pairs are scored `batch_size`
        at a time (default: about 4M gathered factor values, [S, batch, d], per batch).
        """
        u = _index_array(user_idx, "user_idx", self.num_users + 1)
        m = _index_array(movie_idx, "movie_idx", self.num_movies + 1)
        if u.shape != m.shape:
            raise ValueError(f"user_idx and movie_idx must have the same length, got {u.shape[0]} and {m.shape[0]}")
        if batch_size is None:
            batch_size = max(1, (1 << 22) // (self.num_samples * self.dim))
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        uk, mk = u < self.num_users, m < self.num_movies
        uu, mm = np.where(uk, u, 0), np.where(mk, m, 0)
        bu = np.where(uk, self.user_bias.mean(0)[uu], 0.0)
        bm = np.where(mk, self.movie_bias.mean(0)[mm], 0.0)
        dot = np.zeros(u.shape[0])
        both = np.flatnonzero(uk & mk)
        for start in range(0, both.size, batch_size):
            rows = both[start:start + batch_size]
            # [S, B, d] -> mean over samples of the row-wise dot products
            dot[rows] = np.einsum("sbd,sbd->b", self.user_factors[:, uu[rows]],
                                  self.movie_factors[:, mm[rows]]) / self.num_samples
        out = self.global_mean + bu + bm + dot
        if clip is not None:
            out = np.clip(out, clip[0], clip[1])
        return out

    def concatenated(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One embedding model equal to the sample average.

        Returns user_emb [U, S*d], movie_emb [M, S*d], user_bias [U], movie_bias [M] (float64)
        with mu + user_bias[u] + movie_bias[m] + <user_emb[u], movie_emb[m]> equal to
        `predict([u], [m])` up to rounding: the S sample vectors are laid side by side and
        each side is scaled by 1 / sqrt(S), so the dot product is the mean of the S dot
        products. Columns [s*d, (s+1)*d) hold sample s. No OOV row (exporters add a zero row).
        """
        scale = 1.0 / np.sqrt(self.num_samples)

        def side(factors):   # [S, N, d] -> [N, S*d]
            return np.ascontiguousarray(factors.transpose(1, 0, 2)).reshape(factors.shape[1], -1) * scale

        return (side(self.user_factors), side(self.movie_factors),
                self.user_bias.mean(0), self.movie_bias.mean(0))


# -- argument checks ------------------------------------------------------------------------
def _index_array(values, name: str, upper: int) -> np.ndarray:
    a = np.asarray(values)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        if not np.issubdtype(a.dtype, np.floating) or not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise ValueError(f"{name} must hold integers, got dtype {a.dtype}")
    a = a.astype(np.int64)
    if a.size and (a.min() < 0 or a.max() >= upper):
        bad = a[(a < 0) | (a >= upper)][0]
        raise ValueError(f"{name} values must be in [0, {upper}), got {bad}")
    return a


def _positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


# -- the batched row sampler -----------------------------------------------------------------
@dataclasses.dataclass
class _Group:
    rows: np.ndarray     # int [E]       the entities of this group
    other: np.ndarray    # int [E, n]    the other side's index per rating, padded with n_other
    target: np.ndarray   # float [E, n]  rating - mu, padded with 0


def _groups(entity: np.ndarray, other: np.ndarray, centred: np.ndarray, n_entities: int,
            n_other: int) -> list[_Group]:
    """Ratings grouped by entity; entities of similar rating counts share one padded group."""
    order = np.argsort(entity, kind="stable")
    counts = np.bincount(entity, minlength=n_entities)
    starts = np.concatenate([[0], np.cumsum(counts)])
    by_count = np.argsort(counts, kind="stable")
    groups, i = [], 0
    while i < n_entities:
        shortest = counts[by_count[i]]
        j = i + 1
        while (j < n_entities and counts[by_count[j]] <= max(_GROUP_SLACK * shortest, shortest + 4)
               and (j - i + 1) * counts[by_count[j]] <= _GROUP_BUDGET):
            j += 1
        rows = by_count[i:j]
        n = int(counts[rows].max())
        o = np.full((len(rows), n), n_other, np.int64)
        t = np.zeros((len(rows), n))
        for k, e in enumerate(rows):
            idx = order[starts[e]:starts[e + 1]]
            o[k, :len(idx)] = other[idx]
            t[k, :len(idx)] = centred[idx]
        groups.append(_Group(rows, o, t))
        i = j
    return groups


def _batched_lower_solve(L: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x with L x = b for lower-triangular L [E, D, D], b [E, D] (forward substitution over D)."""
    x = np.empty_like(b)
    for i in range(b.shape[1]):
        x[:, i] = (b[:, i] - np.einsum("ej,ej->e", L[:, i, :i], x[:, :i])) / L[:, i, i]
    return x


def _batched_upper_solve(L: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x with L^T x = b for lower-triangular L [E, D, D], b [E, D] (back substitution)."""
    D = b.shape[1]
    x = np.empty_like(b)
    for i in range(D - 1, -1, -1):
        x[:, i] = (b[:, i] - np.einsum("ej,ej->e", L[:, i + 1:, i], x[:, i + 1:])) / L[:, i, i]
    return x


def _sample_rows(rng: np.random.Generator, groups: list[_Group], other_rows: np.ndarray,
                 prior_mean: np.ndarray, prior_prec: np.ndarray, alpha: float, out: np.ndarray) -> float:
    """Draws every row of one side given the other side; returns the new rows' squared error.

    other_rows [n_other, d + 1]: the other side's [vector, bias]. The design row of a rating
    is [other vector, 1] and its target rating - mu - other bias. prior_mean [E_all, d + 1],
    prior_prec [d + 1, d + 1]. Writes the new rows into out [E_all, d + 1].

    The groups' X^T X [E, D, D], X^T y [E, D] and y^T y [E] are laid end to end in group
    order (the groups hold every row once), so the posterior precisions are one
    [E_all, D, D] stack without a scatter; batched Cholesky and two vectorised triangular
    solves draw all rows. Groups, then slices of rows, run on every core (`parallel`). The same sums give the sum of squared residuals of the side's
    ratings under the new rows, sum_e y^T y - 2 x^T X^T y + x^T X^T X x, without
    revisiting the ratings.
    """
    D = other_rows.shape[1]
    design = np.zeros((other_rows.shape[0] + 1, D))      # last row: the padding (all zero)
    design[:-1, :-1] = other_rows[:, :-1]
    design[:-1, -1] = 1.0
    bias = np.append(other_rows[:, -1], 0.0)
    order = np.concatenate([g.rows for g in groups])
    gram = np.empty((len(order), D, D))                  # X^T X per row, in group order
    xty = np.empty((len(order), D))
    yy = np.empty(len(order))
    starts = np.cumsum([0] + [len(g.rows) for g in groups])

    def accumulate(k: int) -> None:                       # group k -> its slice (disjoint)
        g, rows = groups[k], slice(starts[k], starts[k + 1])
        X = design[g.other]                               # [E, n, D]
        y = g.target - bias[g.other]                      # [E, n]
        Xt = X.transpose(0, 2, 1)
        np.matmul(Xt, X, out=gram[rows])
        xty[rows] = np.matmul(Xt, y[:, :, None])[:, :, 0]
        yy[rows] = np.einsum("en,en->e", y, y)

    parallel.run_all(accumulate, range(len(groups)))
    b = prior_mean[order] @ prior_prec + alpha * xty      # [E_all, D]
    z = rng.standard_normal((out.shape[0], D))[order]
    x = np.empty_like(b)

    def draw(rows: slice) -> None:
        L = np.linalg.cholesky(prior_prec + alpha * gram[rows])   # posterior precisions [E, D, D]
        # mean A^-1 b = L^-T L^-1 b; noise L^-T z has covariance A^-1
        x[rows] = _batched_upper_solve(L, _batched_lower_solve(L, b[rows]) + z[rows])

    parallel.run_all(draw, parallel.chunks(len(order)))
    out[order] = x
    return float(yy.sum() - 2.0 * np.sum(x * xty) + np.sum(x * np.matmul(gram, x[:, :, None])[:, :, 0]))


# -- hyperparameters ---------------------------------------------------------------------------
def _wishart(rng: np.random.Generator, scale: np.ndarray, df: float) -> np.ndarray:
    """One draw of Wishart(scale [D, D], df) by the Bartlett decomposition."""
    D = scale.shape[0]
    C = np.linalg.cholesky(scale)
    A = np.tril(rng.standard_normal((D, D)), -1)
    A[np.diag_indices(D)] = np.sqrt(rng.chisquare(df - np.arange(D)))
    CA = C @ A
    return CA @ CA.T


def _sample_normal_wishart(rng: np.random.Generator, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mu [D], Lambda [D, D]) | rows [N, D] under Normal-Wishart(mu0 = 0, beta0 = 2, W0 = I, nu0 = D)."""
    N, D = rows.shape
    beta0, nu0 = 2.0, float(D)
    mean = rows.mean(0)
    centred = rows - mean
    W_inv = np.eye(D) + centred.T @ centred + (beta0 * N / (beta0 + N)) * np.outer(mean, mean)
    W = np.linalg.inv(W_inv)
    Lam = _wishart(rng, (W + W.T) / 2, nu0 + N)
    mu_post = N * mean / (beta0 + N)
    Lc = np.linalg.cholesky((beta0 + N) * Lam)
    mu = mu_post + _batched_upper_solve(Lc[None], rng.standard_normal((1, D)))[0]
    return mu, Lam


@dataclasses.dataclass
class _Link:
    """A feature block X [N, F] with link matrix beta [F, D]: prior mean of row n += X[n] @ beta.

    With K = X^T X = P diag(s) P^T (P [F, r]: the eigenvectors of the r non-zero eigenvalues)
    beta is kept as coefficients C [r, D], beta = P C, and the prior mean is B C with
    B = X P [N, r]. The part of beta in the null space of K (e.g. when N < F: 943 users x
    1682 implicit movie features) moves no prediction; it is integrated out, which leaves
    lambda_beta | C ~ Gamma(1 + r D / 2, 1 + |C|^2 / 2).
    """

    B: np.ndarray          # [N, r]   X P
    eigval: np.ndarray     # [r]      the non-zero eigenvalues s of K
    coef: np.ndarray       # [r, D]   C
    lam: float = 1.0
    _mean: np.ndarray | None = None   # B C, kept until C changes

    @classmethod
    def build(cls, X: sp.spmatrix, D: int, max_features: int | None = None) -> "_Link":
        """The link of features X [N, F] for rows of width D.

        max_features: when both N and F exceed it, only the `max_features` columns of X with
        the most non-zeros (ties: the lower column) are kept as features, so that the Gram
        matrix decomposed is at most [max_features, max_features] and B is [N, max_features]
        (the whole Gram would be [min(N, F)]^2: 59k^2 for MovieLens-25M's movies). For the
        implicit features these are the most-rated movies (most active users), which hold
        most of the pairs (the long tail's columns each touch few rows)."""
        X = sp.csr_matrix(X)
        N, F = X.shape
        if max_features is not None and min(N, F) > max_features:
            counts = np.diff(X.tocsc().indptr)
            X = X[:, np.sort(np.argsort(-counts, kind="stable")[:max_features])]
            return cls._build_tall(X, D)
        if N <= F:   # the smaller Gram: X X^T = A diag(s) A^T, P = X^T A / sqrt(s), X P = A sqrt(s)
            s, A = np.linalg.eigh((X @ X.T).toarray())
            keep = s > 1e-9 * max(s.max(initial=0.0), 1.0)
            s, B = s[keep], A[:, keep] * np.sqrt(s[keep])
        else:
            s, P = np.linalg.eigh((X.T @ X).toarray())
            keep = s > 1e-9 * max(s.max(initial=0.0), 1.0)
            s, B = s[keep], np.asarray(X @ P[:, keep])
        return cls(np.ascontiguousarray(B), s, np.zeros((len(s), D)))

    @classmethod
    def _build_tall(cls, X: sp.csr_matrix, D: int, chunk: int = 1 << 14) -> "_Link":
        """N > F (F small): K = X^T X accumulated over row chunks of X (sparse^T @ dense
        [chunk, F], never an [N, F] dense copy nor a sparse-sparse product), B = X P."""
        N, F = X.shape
        K = np.zeros((F, F))
        for start in range(0, N, chunk):
            part = X[start:start + chunk]
            K += np.asarray(part.T @ part.toarray())
        s, P = np.linalg.eigh(K)
        keep = s > 1e-9 * max(s.max(initial=0.0), 1.0)
        return cls(np.ascontiguousarray(X @ P[:, keep]), s[keep], np.zeros((int(keep.sum()), D)))

    def mean(self) -> np.ndarray:
        if self._mean is None:
            self._mean = self.B @ self.coef
        return self._mean

    def sample(self, rng: np.random.Generator, residual: np.ndarray, Lam: np.ndarray) -> None:
        """C | residual [N, D] (rows - mu - other blocks' means), Lambda; then lambda_beta.

        Posterior precision of vec(beta): Lambda (x) K + lam I, diagonal in the basis Q (x) P
        with Lambda = Q diag(l) Q^T: omega[i, j] = s_i l_j + lam.
        """
        ell, Q = np.linalg.eigh(Lam)
        omega = self.eigval[:, None] * np.maximum(ell, 0.0)[None, :] + self.lam    # [r, D]
        rhs = self.B.T @ (residual @ (Lam @ Q))                                     # [r, D]
        self.coef = (rhs / omega + rng.standard_normal(omega.shape) / np.sqrt(omega)) @ Q.T
        self._mean = None
        self.lam = rng.gamma(1.0 + self.coef.size / 2.0, 1.0 / (1.0 + 0.5 * np.sum(self.coef ** 2)))


class _Side:
    """One side's rows [N, d + 1] (vector, bias), hyperparameters and feature links."""

    def __init__(self, rows: np.ndarray, links: list[_Link], groups: list[_Group]):
        self.rows, self.links, self.groups = rows, links, groups
        self.mu = np.zeros(rows.shape[1])
        self.Lam = np.eye(rows.shape[1])

    def sample_hyper(self, rng: np.random.Generator) -> np.ndarray:
        """(mu, Lambda), then each link; returns the prior mean of every row [N, D]."""
        means = [link.mean() for link in self.links]
        self.mu, self.Lam = _sample_normal_wishart(rng, self.rows - sum(means, np.zeros_like(self.rows)))
        for i, link in enumerate(self.links):
            others = sum((m for j, m in enumerate(means) if j != i), np.zeros_like(self.rows))
            link.sample(rng, self.rows - self.mu - others, self.Lam)
            means[i] = link.mean()
        return self.mu + sum(means, np.zeros_like(self.rows))


def implicit_features(user_idx: np.ndarray, movie_idx: np.ndarray, num_users: int, num_movies: int) -> sp.csr_matrix:
    """x_u = |N(u)|^-1/2 indicator(N(u)): [num_users, num_movies] CSR (a pair counted once)."""
    R = sp.csr_matrix((np.ones(len(user_idx)), (user_idx, movie_idx)), shape=(num_users, num_movies))
    R.data[:] = 1.0
    n = np.diff(R.indptr)
    return sp.diags(np.where(n > 0, 1.0 / np.sqrt(np.maximum(n, 1)), 0.0)) @ R


def genre_features(movie_genres: np.ndarray) -> sp.csr_matrix:
    """g_m = flags / sqrt(number of genres of m) (a movie with no genre: all zero)."""
    G = np.asarray(movie_genres, np.float64)
    n = G.sum(1, keepdims=True)
    return sp.csr_matrix(np.divide(G, np.sqrt(n), out=np.zeros_like(G), where=n > 0))


def fit(user_idx, movie_idx, rating, num_users: int, num_movies: int, *, dim: int = 10,
        samples: int = 100, burn_in: int = 50, thin: int = 4, seed: int = 42,
        movie_genres=None, implicit: str | bool = "both", init_stddev: float = 0.1,
        max_implicit_features: int = 1024,
        progress: Callable[[int, int, dict], None] | None = None) -> BayesResult:
    """Gibbs-samples Bayesian biased MF on the ratings (user_idx[i], movie_idx[i], rating[i]).

    user_idx, movie_idx  int [n], in [0, num_users) / [0, num_movies) (no OOV index here)
    rating               float [n]
    dim                  d, the factor dimension (the rows sampled have d + 1 values: + bias)
    samples              S, the number of kept samples; burn_in sweeps are discarded first and
                         then every `thin`-th sweep is kept (burn_in + samples * thin sweeps)
    movie_genres         optional [num_movies, G] 0/1 genre flags: a genre-dependent prior mean
                         for [w_m, b_m] (helps movies with few ratings)
    implicit             "user" (or True): SVD++-style implicit user features, the movies each
                         user rated in these (train) ratings; "both": also the users who rated
                         each movie as movie features; "none" (or False): no implicit features
    max_implicit_features  when there are more users and more movies than this, the implicit
                         features are those of the this many most-rated movies (for users)
                         and most active users (for movies) (`_Link.build`): exact below,
                         [N, 1024] per side and a 1024^2 Gram above (the default keeps every
                         feature of ML-100k's 943 users x 1682 movies)
    progress             optional callback(sweep, total_sweeps, {"train_rmse", "noise_precision"})
                         after every sweep
    Same arguments and seed -> the same result. Memory: the kept samples, S * (U + M) * (d + 1)
    float64 (~23 MB per 100 samples at d = 10 on ML-100k).

    The defaults (d = 10, 100 samples from 450 sweeps, implicit "both"; pass movie_genres) were
    chosen on validation splits carved from the ML-100k train parts (80/20 and u1.base):
    implicit "both" lowered the validation RMSE most, genres a little more; d from 8 to 24
    made little difference; keeping every 4th sweep matched keeping all of them at a quarter
    of the export width (S * d = 1000). `benchmarks/tune_mf.py` re-runs the sweep.
    """
    started = time.perf_counter()
    dim = _positive_int(dim, "dim")
    samples = _positive_int(samples, "samples")
    burn_in = _positive_int(burn_in, "burn_in", 0)
    thin = _positive_int(thin, "thin")
    num_users = _positive_int(num_users, "num_users")
    num_movies = _positive_int(num_movies, "num_movies")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if implicit is True or implicit is False:
        implicit = "user" if implicit else "none"
    if not isinstance(implicit, str) or implicit not in IMPLICIT_CHOICES:
        raise ValueError(f"implicit must be one of {IMPLICIT_CHOICES} (or a bool), got {implicit!r}")
    if not np.isfinite(init_stddev) or init_stddev < 0:
        raise ValueError(f"init_stddev must be finite and >= 0, got {init_stddev!r}")
    u = _index_array(user_idx, "user_idx", num_users)
    m = _index_array(movie_idx, "movie_idx", num_movies)
    r = np.asarray(rating, np.float64)
    if r.ndim != 1 or not (len(u) == len(m) == len(r)):
        raise ValueError(f"user_idx, movie_idx and rating must be 1-D of one length, got "
                         f"{len(u)}, {len(m)} and shape {r.shape}")
    if len(r) == 0:
        raise ValueError("need at least one rating, got 0")
    if not np.all(np.isfinite(r)):
        raise ValueError(f"rating must be finite, got {r[~np.isfinite(r)][0]}")
    genres = None
    if movie_genres is not None:
        genres = np.asarray(movie_genres, np.float64)
        if genres.ndim != 2 or genres.shape[0] != num_movies:
            raise ValueError(f"movie_genres must have shape [num_movies={num_movies}, G], got {genres.shape}")
        if not np.all(np.isfinite(genres)) or np.any(genres < 0):
            raise ValueError("movie_genres must be finite and >= 0")

    rng = np.random.default_rng(seed)
    D = dim + 1
    mu = float(r.mean())
    centred = r - mu
    cap = _positive_int(max_implicit_features, "max_implicit_features")
    user_links = ([_Link.build(implicit_features(u, m, num_users, num_movies), D, cap)]
                  if implicit != "none" else [])
    movie_links = [_Link.build(genre_features(genres), D)] if genres is not None else []
    if implicit == "both":
        movie_links.append(_Link.build(implicit_features(m, u, num_movies, num_users), D, cap))
    users = _Side(np.zeros((num_users, D)), user_links, _groups(u, m, centred, num_users, num_movies))
    movies = _Side(np.zeros((num_movies, D)), movie_links, _groups(m, u, centred, num_movies, num_users))
    users.rows[:, :dim] = init_stddev * rng.standard_normal((num_users, dim))
    movies.rows[:, :dim] = init_stddev * rng.standard_normal((num_movies, dim))

    total = burn_in + samples * thin
    kept = {"U": [], "M": [], "alpha": []}
    alpha, history = 2.0, np.zeros(total)
    for sweep in range(total):
        prior = movies.sample_hyper(rng)
        _sample_rows(rng, movies.groups, users.rows, prior, movies.Lam, alpha, movies.rows)
        prior = users.sample_hyper(rng)
        sse = max(_sample_rows(rng, users.groups, movies.rows, prior, users.Lam, alpha, users.rows), 0.0)
        alpha = rng.gamma(1.0 + len(r) / 2.0, 1.0 / (1.0 + sse / 2.0))
        history[sweep] = np.sqrt(sse / len(r))
        if sweep >= burn_in and (sweep - burn_in) % thin == thin - 1:
            kept["U"].append(users.rows.copy())
            kept["M"].append(movies.rows.copy())
            kept["alpha"].append(alpha)
        if progress is not None:
            progress(sweep + 1, total, {"train_rmse": float(history[sweep]), "noise_precision": float(alpha)})
    U, M = np.stack(kept["U"]), np.stack(kept["M"])
    return BayesResult(global_mean=mu, user_factors=np.ascontiguousarray(U[:, :, :dim]),
                       movie_factors=np.ascontiguousarray(M[:, :, :dim]),
                       user_bias=np.ascontiguousarray(U[:, :, dim]), movie_bias=np.ascontiguousarray(M[:, :, dim]),
                       noise_precision=np.asarray(kept["alpha"]), train_rmse=history,
                       fit_seconds=time.perf_counter() - started)
