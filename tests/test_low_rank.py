"""Re-factoring wide factors: exact at full rank, Eckart-Young when truncated."""
import numpy as np
import pytest

from movierec.components.mf.low_rank import refactor


def test_exact_and_narrower_than_the_samples_side_by_side():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 12)), rng.normal(size=(7, 12))   # k = 12 > rank(P) <= 5
    a2, b2 = refactor(a, b)
    assert a2.shape == (5, 5) and b2.shape == (7, 5)
    np.testing.assert_allclose(a2 @ b2.T, a @ b.T, atol=1e-10)


def test_low_rank_product_is_found():
    a = np.array([[1.0, 2.0], [2.0, 4.0], [0.0, 0.0]])   # rank 1
    b = np.array([[1.0, 1.0], [3.0, 3.0]])
    a2, b2 = refactor(a, b)
    assert a2.shape == (3, 1)
    np.testing.assert_allclose(a2 @ b2.T, [[3, 9], [6, 18], [0, 0]], atol=1e-10)


def test_truncation_is_the_best_rank_r_approximation():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(6, 8)), rng.normal(size=(9, 8))
    p = a @ b.T
    s = np.linalg.svd(p, compute_uv=False)
    a2, b2 = refactor(a, b, rank=2)
    # Eckart-Young: the Frobenius error of the best rank-2 approximation is the tail's norm
    np.testing.assert_allclose(np.linalg.norm(p - a2 @ b2.T), np.sqrt(np.sum(s[2:] ** 2)), rtol=1e-8)


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="same k"):
        refactor(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="rank must be >= 1, got 0"):
        refactor(np.ones((2, 3)), np.ones((2, 3)), rank=0)
