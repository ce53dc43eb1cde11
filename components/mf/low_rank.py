"""Re-factor a product of two wide factor matrices into narrower ones (exactly, or the best
rank-r approximation).

    P = A B^T,   A [U, k], B [M, k]   ->   A' [U, r], B' [M, r] with A' B'^T = P (r = rank P)
                                           or the best rank-r approximation of P (Eckart-Young)

Used to export a Bayesian MF model: the average of S posterior samples is exactly one
embedding model of width S*d (the samples side by side), which is wider than the matrix it
represents can be (rank P <= min(U, M)). Thin QR of both sides, then an SVD of the small
core R_A R_B^T: O((U + M) k^2) time, never the U x M matrix. The singular values are split
evenly (A' = Q_A X sqrt(s), B' = Q_B Y sqrt(s)) so both sides have the same scale.
"""
from __future__ import annotations

import numpy as np


def refactor(a: np.ndarray, b: np.ndarray, rank: int | None = None, tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """a [U, k], b [M, k] -> (a2 [U, r], b2 [M, r]), a2 @ b2.T ~= a @ b.T.

    rank None: r = the numerical rank of a @ b.T (singular values above tol * the largest),
    so the product is reproduced to float precision; rank r: the best rank-r approximation.
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need a [U, k] and b [M, k] with the same k, got {a.shape} and {b.shape}")
    if rank is not None and rank < 1:
        raise ValueError(f"rank must be >= 1, got {rank}")
    qa, ra = np.linalg.qr(a)          # [U, ka], [ka, k], ka = min(U, k)
    qb, rb = np.linalg.qr(b)          # [M, kb], [kb, k]
    x, s, yt = np.linalg.svd(ra @ rb.T, full_matrices=False)   # core [ka, kb]
    keep = int(np.sum(s > tol * s[0])) if s.size and s[0] > 0 else 1
    r = max(1, keep if rank is None else min(rank, len(s)))
    root = np.sqrt(s[:r])
    return (qa @ x[:, :r]) * root, (qb @ yt[:r].T) * root
