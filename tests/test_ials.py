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
