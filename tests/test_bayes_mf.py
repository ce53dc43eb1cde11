"""Bayesian MF by Gibbs sampling (components/mf/bayes.py): it learns low-rank structure, the
side information moves the prior where it should, runs are reproducible, the concatenated
export equals the sample average, and bad arguments are refused by name."""
import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

from movierec.components.mf import bayes


def low_rank(seed=0, users=80, movies=60, rank=3, noise=0.3, observed=0.5):
    """mu + b_u + b_m + <p_u, q_m> + noise on a random half of the cells: (train, test)."""
    rng = np.random.default_rng(seed)
    P, Q = rng.normal(0, 0.8, (users, rank)), rng.normal(0, 0.8, (movies, rank))
    full = 3.5 + rng.normal(0, 0.3, (users, 1)) + rng.normal(0, 0.3, (1, movies)) + P @ Q.T
    full += rng.normal(0, noise, full.shape)
    uu, mm = np.meshgrid(np.arange(users), np.arange(movies), indexing="ij")
    uu, mm, rr = uu.ravel(), mm.ravel(), full.ravel()
    train = rng.random(rr.size) < observed
    return (uu[train], mm[train], rr[train]), (uu[~train], mm[~train], rr[~train]), users, movies


def bias_only(u, m, r, users, movies, l2=5.0):
    mu, bu, bm = r.mean(), np.zeros(users), np.zeros(movies)
    for _ in range(20):
        bm = np.bincount(m, r - mu - bu[u], movies) / (np.bincount(m, minlength=movies) + l2)
        bu = np.bincount(u, r - mu - bm[m], users) / (np.bincount(u, minlength=users) + l2)
    return mu, bu, bm


def rmse(a, b):
    return float(np.sqrt(np.mean((a - b) ** 2)))


@pytest.fixture(scope="module")
def synthetic():
    return low_rank()


@pytest.fixture(scope="module")
def fitted(synthetic):
    (u, m, r), _, users, movies = synthetic
    return bayes.fit(u, m, r, users, movies, dim=3, samples=60, burn_in=30, thin=1, seed=5)


def test_beats_the_mean_and_bias_baselines_on_held_out_cells(synthetic, fitted):
    (u, m, r), (tu, tm, tr), users, movies = synthetic
    mu, bu, bm = bias_only(u, m, r, users, movies)
    mean_rmse = rmse(np.full(tr.shape, r.mean()), tr)
    bias_rmse = rmse(mu + bu[tu] + bm[tm], tr)
    model_rmse = rmse(fitted.predict(tu, tm), tr)
    assert bias_rmse < mean_rmse
    # the planted rank-3 part has std ~1.1, the noise 0.3: the factors must recover most of it
    assert model_rmse < 0.5 * bias_rmse, (model_rmse, bias_rmse, mean_rmse)
    assert model_rmse < 0.45                      # noise floor 0.3
    # the sampled noise precision finds the planted noise level (1 / 0.3^2 ~ 11)
    assert 6 < np.median(fitted.noise_precision) < 16


def test_result_shapes_and_sample_schedule(synthetic):
    (u, m, r), _, users, movies = synthetic
    # two users and three movies without any rating: drawn from the prior, still finite
    res = bayes.fit(u, m, r, users + 2, movies + 3, dim=4, samples=5, burn_in=3, thin=2, seed=0, implicit="both")
    assert res.user_factors.shape == (5, users + 2, 4) and res.movie_factors.shape == (5, movies + 3, 4)
    assert res.user_bias.shape == (5, users + 2) and res.movie_bias.shape == (5, movies + 3)
    assert np.all(np.isfinite(res.predict([users + 1, 0], [movies + 2, movies + 2])))
    assert res.train_rmse.shape == (3 + 5 * 2,) and res.noise_precision.shape == (5,)
    assert res.global_mean == pytest.approx(r.mean()) and res.fit_seconds > 0


def test_same_seed_same_result_other_seed_other_result(synthetic):
    (u, m, r), _, users, movies = synthetic
    genres = (np.arange(movies)[:, None] % 3 == np.arange(3)).astype(float)
    kwargs = dict(dim=2, samples=4, burn_in=2, thin=1, movie_genres=genres, implicit="both")
    a = bayes.fit(u, m, r, users, movies, seed=11, **kwargs)
    b = bayes.fit(u, m, r, users, movies, seed=11, **kwargs)
    c = bayes.fit(u, m, r, users, movies, seed=12, **kwargs)
    for field in ("user_factors", "movie_factors", "user_bias", "movie_bias", "noise_precision"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.allclose(a.user_factors, c.user_factors)


def test_concatenated_reproduces_predict(fitted):
    user_emb, movie_emb, bu, bm = fitted.concatenated()
    S, d = fitted.num_samples, fitted.dim
    assert user_emb.shape == (fitted.num_users, S * d) and movie_emb.shape == (fitted.num_movies, S * d)
    rng = np.random.default_rng(3)
    u = rng.integers(0, fitted.num_users, 500)
    m = rng.integers(0, fitted.num_movies, 500)
    flat = fitted.global_mean + bu[u] + bm[m] + np.einsum("bk,bk->b", user_emb[u], movie_emb[m])
    np.testing.assert_allclose(flat, fitted.predict(u, m), atol=1e-5)
    # the float32 export the SavedModel holds is still within 1e-5 of the average (well, 1e-4)
    flat32 = (np.float32(fitted.global_mean) + bu[u].astype(np.float32) + bm[m].astype(np.float32)
              + np.einsum("bk,bk->b", user_emb[u].astype(np.float32), movie_emb[m].astype(np.float32)))
    np.testing.assert_allclose(flat32, fitted.predict(u, m), atol=1e-4)


def test_hand_checkable_average_and_concatenation():
    # S = 2 samples, 1 user, 2 movies, d = 1
    res = bayes.BayesResult(
        global_mean=3.0,
        user_factors=np.array([[[1.0]], [[3.0]]]), movie_factors=np.array([[[2.0], [0.0]], [[4.0], [1.0]]]),
        user_bias=np.array([[0.5], [0.1]]), movie_bias=np.array([[-1.0, 0.2], [-0.6, 0.4]]),
        noise_precision=np.ones(2), train_rmse=np.zeros(2), fit_seconds=0.0)
    # movie 0: 3 + 0.3 + (-0.8) + (1*2 + 3*4) / 2 = 9.5 ; movie 1: 3 + 0.3 + 0.3 + (0 + 3) / 2 = 5.1
    np.testing.assert_allclose(res.predict([0, 0], [0, 1]), [9.5, 5.1])
    np.testing.assert_allclose(res.predict([0, 0], [0, 1], clip=(1, 5)), [5.0, 5.0])
    user_emb, movie_emb, bu, bm = res.concatenated()
    s = 1 / np.sqrt(2)
    np.testing.assert_allclose(user_emb, [[1 * s, 3 * s]])
    np.testing.assert_allclose(movie_emb, [[2 * s, 4 * s], [0, 1 * s]])
    np.testing.assert_allclose(bu, [0.3]) and np.testing.assert_allclose(bm, [-0.8, 0.3])
    # OOV index (= num_users / num_movies): no vector, no bias from that side
    np.testing.assert_allclose(res.predict([1, 0, 1], [0, 2, 2]), [3.0 - 0.8, 3.3, 3.0])


def test_genres_give_an_unrated_movie_its_genre_level():
    # genre 0 movies are rated 5 by everyone, genre 1 movies 1; movie 20 (genre 0) and movie
    # 21 (genre 1) have no ratings at all
    rng = np.random.default_rng(0)
    users, movies = 30, 22
    genres = np.zeros((movies, 2))
    genres[np.r_[0:10, 20], 0] = 1
    genres[np.r_[10:20, 21], 1] = 1
    u, m = np.meshgrid(np.arange(users), np.arange(20), indexing="ij")
    u, m = u.ravel(), m.ravel()
    r = np.where(m < 10, 5.0, 1.0) + rng.normal(0, 0.2, u.size)
    kwargs = dict(dim=2, samples=40, burn_in=20, thin=1, seed=0, implicit=False)
    with_genres = bayes.fit(u, m, r, users, movies, movie_genres=genres, **kwargs)
    without = bayes.fit(u, m, r, users, movies, **kwargs)
    high, low = with_genres.predict([0, 0], [20, 21])
    assert high > 4.3 and low < 1.7, (high, low)
    high, low = without.predict([0, 0], [20, 21])   # without genres the two look alike
    assert abs(high - low) < 1.5 and 1.5 < high < 4.5 and 1.5 < low < 4.5, (high, low)


def test_implicit_features_transfer_taste_through_which_movies_were_rated():
    # group A (users 0-29) rates movies 0-9 around 3 (std 1, no taste in it), movies 20-29
    # with 3 + s and 30-39 with 3 - s (s from 0.5 to 2 per user, mean 1.25); group B (users
    # 30-59) rates movies 10-19 around 3 and the others the other way round. User 60 rated
    # only movies 0-9, all with a flat 3: mostly *which* movies it rated says it is an A.
    # (The explicit model still leaks a little through the factors of movies 0-9.)
    rng = np.random.default_rng(1)
    rows, n, strength = [], 30, np.linspace(0.5, 2.0, 30)
    for user in range(2 * n + 1):
        group_a = user < n or user == 2 * n
        own = range(0, 10) if group_a else range(10, 20)
        rows += [(user, movie, 3.0 if user == 2 * n else 3.0 + rng.normal()) for movie in own]
        if user < 2 * n:
            s = strength[user % n] * (1 if group_a else -1)
            rows += [(user, movie, 3 + s) for movie in range(20, 30)]
            rows += [(user, movie, 3 - s) for movie in range(30, 40)]
    u, m, r = (np.array(c) for c in zip(*rows))
    r = r + rng.normal(0, 0.2, r.size)
    kwargs = dict(dim=1, samples=100, burn_in=40, thin=1, seed=0)
    liked, disliked, user = np.arange(20, 30), np.arange(30, 40), np.full(10, 2 * n)
    gap = {}
    for implicit in (True, False):
        res = bayes.fit(u, m, r, 2 * n + 1, 40, implicit=implicit, **kwargs)
        gap[implicit] = res.predict(user, liked).mean() - res.predict(user, disliked).mean()
    assert gap[True] > 1.5, gap                   # an average A user's gap is 2 * 1.25
    assert gap[False] < gap[True] - 0.8, gap


def test_predict_checks_its_arguments(fitted):
    with pytest.raises(ValueError, match="user_idx.*got -1"):
        fitted.predict([-1], [0])
    with pytest.raises(ValueError, match=f"movie_idx.*got {fitted.num_movies + 1}"):
        fitted.predict([0], [fitted.num_movies + 1])
    with pytest.raises(ValueError, match="same length, got 2 and 1"):
        fitted.predict([0, 1], [0])
    with pytest.raises(ValueError, match="float64"):
        fitted.predict([0.5], [0])


GOOD = dict(user_idx=[0, 1, 2], movie_idx=[0, 1, 1], rating=[4.0, 3.0, 5.0], num_users=3, num_movies=2)


@pytest.mark.parametrize("change, message", [
    (dict(dim=0), "dim must be an integer >= 1, got 0"),
    (dict(samples=-3), "samples must be an integer >= 1, got -3"),
    (dict(burn_in=-1), "burn_in must be an integer >= 0, got -1"),
    (dict(thin=2.5), "thin must be an integer >= 1, got 2.5"),
    (dict(num_users=0), "num_users must be an integer >= 1, got 0"),
    (dict(seed="x"), "seed must be an integer, got 'x'"),
    (dict(user_idx=[0, 1, 3]), r"user_idx values must be in \[0, 3\), got 3"),
    (dict(movie_idx=[0, -2, 1]), r"movie_idx values must be in \[0, 2\), got -2"),
    (dict(rating=[4.0, 3.0]), "one length, got 3, 3 and shape"),
    (dict(rating=[4.0, np.nan, 5.0]), "rating must be finite, got nan"),
    (dict(user_idx=[], movie_idx=[], rating=[]), "at least one rating"),
    (dict(movie_genres=np.ones((3, 4))), r"movie_genres must have shape \[num_movies=2, G\], got \(3, 4\)"),
    (dict(implicit="items"), "implicit must be one of .* got 'items'"),
    (dict(init_stddev=-1.0), "init_stddev must be finite and >= 0, got -1.0"),
])
def test_fit_refuses_bad_arguments_by_name(change, message):
    args = {**GOOD, "dim": 2, "samples": 2, "burn_in": 1, "seed": 0, **change}
    positional = [args.pop(k) for k in ("user_idx", "movie_idx", "rating", "num_users", "num_movies")]
    with pytest.raises(ValueError, match=message):
        bayes.fit(*positional, **args)


def test_progress_reports_every_sweep():
    calls = []
    res = bayes.fit(**GOOD, dim=1, samples=3, burn_in=2, thin=1, seed=0, progress=lambda *a: calls.append(a))
    assert [c[:2] for c in calls] == [(i, 5) for i in range(1, 6)]
    assert all(set(c[2]) == {"train_rmse", "noise_precision"} for c in calls)
    assert dataclasses.is_dataclass(res)


def test_bayes_objective_serves_the_sample_average_as_one_mf(synthetic):
    """`MFConfig(objective="bayes")` through `train.fit`: the Keras model (what is exported)
    predicts what the sampler's posterior mean predicts, OOV sides included, and a rank cap
    below the average's rank narrows the embeddings."""
    import tensorflow as tf
    from movierec.components.mf import train
    from movierec.config import MFConfig
    from tests.mf_fixtures import interactions

    (u, m, r), (tu, tm, _), users, movies = synthetic
    data = interactions(list(zip(u, m)), r)
    config = MFConfig(objective="bayes", bayes_dim=3, bayes_samples=6, bayes_burn_in=4, bayes_thin=2,
                      bayes_implicit="user", hybrid=False, seed=3)
    model, result = train.fit(config, data, users, movies)
    expected = bayes.fit(u, m, r, users, movies, dim=3, samples=6, burn_in=4, thin=2, implicit="user", seed=3)
    pu = np.concatenate([tu[:50], [users, 0]])          # an OOV user and an OOV movie too
    pm = np.concatenate([tm[:50], [0, movies]])
    got = model.predict_known(tf.constant(pu), tf.constant(pm), tf.constant(pu < users), tf.constant(pm < movies))
    np.testing.assert_allclose(got.numpy(), expected.predict(pu, pm), rtol=1e-4, atol=1e-4)
    assert result.epochs == 4 + 6 * 2 and len(result.loss_history) == 16
    assert model.user_embedding.embeddings.shape[1] <= 18          # <= samples x d columns
    narrow, _ = train.fit(dataclasses.replace(config, bayes_export_rank=2), data, users, movies)
    assert narrow.user_embedding.embeddings.shape[1] == 2


@pytest.mark.parametrize("num_ratings, expected", [
    (100_000, (50, 100, 4)),       # 50M // 100k = 500 sweeps >= 450: the configured schedule
    (111_111, (50, 100, 4)),       # 450 sweeps: still all of it
    (111_112, (50, 100, 3)),       # 449: burn-in 50, then 399 // 100 = every 3rd of 300 sweeps
    (1_000_000, (16, 34, 1)),      # 50 sweeps: 50 // 3 = 16 burn-in, 34 kept
    (25_000_000, (10, 20, 1)),     # 2 by the budget, raised to 30: 10 burn-in, 20 kept
])
def test_sweep_schedule_falls_with_the_ratings_count(num_ratings, expected):
    from movierec.config import MFConfig
    assert MFConfig().bayes_schedule(num_ratings) == expected


def test_sweep_schedule_keeps_a_short_configured_schedule_and_checks_its_argument():
    from movierec.config import MFConfig
    short = MFConfig(bayes_burn_in=5, bayes_samples=10, bayes_thin=2)    # 25 sweeps < the 30 minimum
    assert short.bayes_schedule(25_000_000) == (5, 10, 2)
    with pytest.raises(ValueError, match="num_ratings must be an integer >= 1, got 0"):
        short.bayes_schedule(0)


def test_batched_row_draws_equal_the_per_row_reference():
    """`_sample_rows` (rows grouped by rating count, one batched Cholesky) draws exactly what
    the textbook per-row update draws with the same standard normals: for row e,
    A = Lambda + alpha sum x x^T, b = Lambda m_e + alpha sum x (r - mu - other bias),
    row = A^-1 b + L^-T z_e with A = L L^T."""
    from scipy.linalg import cholesky, solve_triangular
    rng = np.random.default_rng(4)
    counts = [0, 1, 2, 5, 9]               # groups {0, 1, 2} and {5, 9} (4 apart: one group)
    entity = np.repeat(np.arange(5), counts)
    n_other, D = 12, 3
    other = rng.integers(0, n_other, entity.size)
    centred = rng.normal(size=entity.size)
    groups = bayes._groups(entity, other, centred, 5, n_other)
    assert [g.rows.tolist() for g in groups] == [[0, 1, 2], [3, 4]]
    other_rows = rng.normal(size=(n_other, D))
    prior_mean = rng.normal(size=(5, D))
    M = rng.normal(size=(D, D))
    prior_prec = M @ M.T + D * np.eye(D)
    alpha = 1.7
    out = np.zeros((5, D))
    sse = bayes._sample_rows(np.random.default_rng(9), groups, other_rows, prior_mean, prior_prec, alpha, out)
    z = np.random.default_rng(9).standard_normal((5, D))
    expected_sse = 0.0
    for e in range(5):
        mine = entity == e
        X = np.column_stack([other_rows[other[mine], :-1], np.ones(mine.sum())])
        y = centred[mine] - other_rows[other[mine], -1]
        A = prior_prec + alpha * X.T @ X
        b = prior_prec @ prior_mean[e] + alpha * X.T @ y
        L = cholesky(A, lower=True)
        expected = np.linalg.solve(A, b) + solve_triangular(L.T, z[e], lower=False)
        np.testing.assert_allclose(out[e], expected, rtol=1e-10, atol=1e-12)
        expected_sse += np.sum((y - X @ out[e]) ** 2)
    # the returned squared error: the ratings' residuals under the new rows
    assert sse == pytest.approx(expected_sse, rel=1e-10)


def test_link_keeps_every_feature_up_to_the_cap_and_the_most_frequent_above():
    """B B^T = X X^T for the features kept (B = X P, P an orthonormal basis of X's row space):
    all of them while min(N, F) <= max_features, else the most frequent columns."""
    X = sp.csr_matrix(np.array([[1, 0, 1, 0],
                                [1, 1, 1, 0],
                                [0, 0, 1, 1],
                                [1, 0, 1, 1],
                                [0, 0, 0, 0]], float))          # column counts 3, 1, 4, 2
    full = bayes._Link.build(X, 2, max_features=4)
    np.testing.assert_allclose(full.B @ full.B.T, (X @ X.T).toarray(), atol=1e-12)
    capped = bayes._Link.build(X, 2, max_features=2)            # keeps columns 0 and 2
    kept = X[:, [0, 2]]
    np.testing.assert_allclose(capped.B @ capped.B.T, (kept @ kept.T).toarray(), atol=1e-12)
    assert capped.B.shape == (5, 2) and capped.coef.shape == (2, 2)
    # the chunked Gram of the capped route: chunks of 2 rows give the same eigenvalues
    chunked = bayes._Link._build_tall(sp.csr_matrix(kept), 2, chunk=2)
    np.testing.assert_allclose(np.sort(chunked.eigval), np.linalg.eigvalsh((kept.T @ kept).toarray()), atol=1e-12)


def test_cap_on_implicit_features_changes_nothing_when_it_is_not_reached(synthetic):
    (u, m, r), _, users, movies = synthetic        # 80 users x 60 movies: min(N, F) = 60
    kwargs = dict(dim=2, samples=3, burn_in=2, thin=1, seed=1, implicit="both")
    a = bayes.fit(u, m, r, users, movies, max_implicit_features=60, **kwargs)
    b = bayes.fit(u, m, r, users, movies, max_implicit_features=10_000, **kwargs)
    c = bayes.fit(u, m, r, users, movies, max_implicit_features=20, **kwargs)
    np.testing.assert_array_equal(a.user_factors, b.user_factors)
    assert not np.allclose(a.user_factors, c.user_factors)
    assert np.all(np.isfinite(c.predict(u[:20], m[:20])))
