"""The ranking objective (iALS): exact solves, a falling objective, sensible top-k, and the
model semantics (rank by factors, rate by biases)."""
import numpy as np
import pytest
import scipy.sparse as sp
import tensorflow as tf

from movierec.components.mf import ials, train
from movierec.components.mf.biases import fit_bias_baseline
from movierec.config import MFConfig
from tests.mf_fixtures import GROUPS, interactions


def test_user_solve_is_the_exact_minimiser():
    rng = np.random.default_rng(0)
    R = sp.csr_matrix(np.array([[1, 0, 1, 0], [0, 1, 1, 1]], float))
    H = rng.normal(size=(4, 3))
    alpha0, reg, nu = 0.5, 0.1, 1.0
    W = ials._solve_side(R, H, alpha0, reg, nu, n_other=4)
    # gradient of the objective in w_u, by hand, must vanish at the solution
    for u in range(2):
        rated = R[u].indices
        reg_u = reg * (len(rated) + alpha0 * 4) ** nu
        grad = (2 * H[rated].T @ (H[rated] @ W[u] - 1) + 2 * alpha0 * H.T @ (H @ W[u]) + 2 * reg_u * W[u])
        np.testing.assert_allclose(grad, 0, atol=1e-10)


def test_objective_never_increases_and_taste_groups_are_recovered():
    u = np.array([p[0] for p in GROUPS])
    m = np.array([p[1] for p in GROUPS])
    result = ials.fit(u, m, 8, 8, dim=4, alpha0=0.1, reg=0.01, iterations=8)
    losses = result.loss_history
    assert all(b <= a + 1e-9 for a, b in zip(losses, losses[1:])), losses
    scores = result.user_factors @ result.movie_factors.T
    seen = sp.csr_matrix((np.ones(len(u)), (u, m)), shape=(8, 8)).toarray() > 0
    scores[seen] = -np.inf
    # each user's best unseen movie is the one they skipped in their own group
    assert np.argmax(scores, axis=1).tolist() == [0, 1, 2, 3, 4, 5, 6, 7]


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="alpha0 and reg must be > 0"):
        ials.fit(np.array([0]), np.array([0]), 1, 1, dim=2, alpha0=0, reg=0.1)
    with pytest.raises(ValueError, match="initial user factors have shape"):
        ials.fit(np.array([0]), np.array([0]), 1, 1, dim=2, alpha0=0.1, reg=0.1,
                 init_user_factors=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="mf.objective='bpr' is invalid"):
        MFConfig(objective="bpr")


def test_ranking_model_ranks_by_factors_and_rates_by_biases():
    data = interactions(GROUPS, ratings=[1.0 + (m % 4) for _, m in GROUPS])
    config = MFConfig(objective="ials", embedding_dim=4, ials_alpha0=0.1, ials_reg=0.01, ials_iterations=5,
                      hybrid=False)
    model, result = train.fit(config, data, 8, 8)
    assert result.epochs == 5 and len(result.loss_history) == 5
    user = tf.constant([0, 5], tf.int64)
    W = model.user_embedding.embeddings.numpy()
    H = model.movie_embedding.embeddings.numpy()
    np.testing.assert_allclose(model.score_all_movies(user).numpy(), W[[0, 5]] @ H[:8].T, rtol=1e-5, atol=1e-6)
    mu, bu, bm = fit_bias_baseline(data, 8, 8, 10.0)
    pred = model.predict_known(user, tf.constant([3, 1], tf.int64), tf.constant([True, True]), tf.constant([True, True]))
    np.testing.assert_allclose(pred.numpy(), [mu + bu[0] + bm[3], mu + bu[5] + bm[1]], rtol=1e-5)
    assert np.all(W[8] == 0) and np.all(H[8] == 0)   # OOV rows: no factors


def test_mse_model_is_unchanged_by_the_switches():
    model = train.build(MFConfig(objective="mse", hybrid=False, embedding_dim=2), 2, 2, 3.0)
    model.user_bias.embeddings.assign([[0.5], [0.0], [0.0]])
    p = model.user_embedding.embeddings.numpy()
    q = model.movie_embedding.embeddings.numpy()
    np.testing.assert_allclose(model.score_all_movies(tf.constant([0], tf.int64)).numpy()[0],
                               3.0 + 0.5 + p[0] @ q[:2].T, rtol=1e-6)


def test_defaults_follow_the_objective():
    assert MFConfig(objective="mse").embedding_dim == 32 and MFConfig(objective="ials").embedding_dim == 64
    assert MFConfig().embedding_dim == 64   # ials+bayes: the ranking half's width
    assert MFConfig(objective="ials", embedding_dim=16).embedding_dim == 16


def _per_row_reference(R, other, alpha0, reg, nu, n_other, prior=None):
    """The textbook per-row solve: (alpha0 H^T H + H_u^T H_u + reg_u I) w_u = H_u^T 1 (+ reg_u prior_u)."""
    d = other.shape[1]
    out = np.zeros((R.shape[0], d)) if prior is None else np.array(prior, float)
    for r in range(R.shape[0]):
        cols = R.indices[R.indptr[r]:R.indptr[r + 1]]
        if len(cols) == 0:
            continue
        reg_r = reg * (len(cols) + alpha0 * n_other) ** nu
        A = alpha0 * other.T @ other + other[cols].T @ other[cols] + reg_r * np.eye(d)
        rhs = other[cols].sum(0) + (0 if prior is None else reg_r * prior[r])
        out[r] = np.linalg.solve(A, rhs)
    return out


def test_row_groups_by_hand():
    # rows of 0, 3, 1, 2 and 10 entries over 10 columns
    dense = np.zeros((5, 10))
    dense[1, [0, 4, 7]] = dense[2, 5] = dense[3, [1, 2]] = dense[4, :] = 1
    groups = ials.row_groups(sp.csr_matrix(dense), d=2)
    # the empty row is left out; 1, 2 and 3 entries are within 1 + 4 of the shortest; 10 is not
    assert [g.rows.tolist() for g in groups] == [[2, 3, 1], [4]]
    assert groups[0].cols.tolist() == [[5, 10, 10], [1, 2, 10], [0, 4, 7]]   # padded with n_other = 10
    assert groups[1].cols.tolist() == [list(range(10))]


@pytest.mark.parametrize("hybrid", [False, True])
def test_batched_solve_equals_the_per_row_reference(hybrid):
    rng = np.random.default_rng(1)
    dense = (rng.random((30, 17)) < np.linspace(0.02, 0.9, 30)[:, None]).astype(float)
    dense[[0, 7]] = 0                                  # rows with no entries
    R = sp.csr_matrix(dense)
    assert len(ials.row_groups(R, d=5)) > 2
    H = rng.normal(size=(17, 5))
    prior = rng.normal(size=(30, 5)) if hybrid else None
    got = ials._solve_side(R, H, 0.3, 0.05, 1.0, 17, prior)
    np.testing.assert_allclose(got, _per_row_reference(R, H, 0.3, 0.05, 1.0, 17, prior), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(got[[0, 7]], 0 if prior is None else prior[[0, 7]])


def test_loss_in_chunks_equals_the_loss_in_one_piece():
    rng = np.random.default_rng(2)
    R = sp.csr_matrix((rng.random((9, 11)) < 0.4).astype(float))
    W, H = rng.normal(size=(9, 3)), rng.normal(size=(11, 3))
    rows, cols = R.nonzero()
    by_hand = (np.sum((np.sum(W[rows] * H[cols], 1) - 1) ** 2) + 0.2 * np.sum((W @ H.T) ** 2)
               + 0.1 * (np.diff(R.indptr) + 0.2 * 11) @ np.sum(W ** 2, 1)
               + 0.1 * (np.asarray(R.sum(0)).ravel() + 0.2 * 9) @ np.sum(H ** 2, 1))
    for chunk in (1, 5, 1 << 20):
        assert ials.loss(R, W, H, 0.2, 0.1, 1.0, chunk=chunk) == pytest.approx(by_hand, rel=1e-12)
