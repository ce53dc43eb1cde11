"""The hybrid MF: movie vector = own embedding + genre part, for both objectives.

Hand-worked cases: the iALS movie solve with a genre prior is the exact minimiser, a movie
nobody rated inherits its genre's direction, the Keras model scores with v + f W, and
warm start carries the genre rows by genre name.
"""
import numpy as np
import pytest
import scipy.sparse as sp
import tensorflow as tf

from movierec.components.mf import export, ials, train, warm_start
from movierec.components.mf.model import genre_features
from movierec.components.recommend import RatedItems
from movierec.components.training_data import Catalog
from movierec.config import MFConfig
from tests.mf_fixtures import GROUPS, interactions


# GROUPS: users 0-3 watch movies 0-3 (genre 0), users 4-7 watch movies 4-7 (genre 1);
# movie 8 is of genre 0 and nobody has rated it yet
GENRES = np.array([[1, 0]] * 4 + [[0, 1]] * 4 + [[1, 0]], np.float32)


def test_genre_features_divide_by_the_genre_count():
    f = genre_features(np.array([[1, 1, 0], [0, 0, 0], [0, 0, 1]]))
    np.testing.assert_allclose(f, [[0.5, 0.5, 0], [0, 0, 0], [0, 0, 1]])
    with pytest.raises(ValueError, match="genre_matrix must be"):
        genre_features(np.zeros(3))


def test_movie_solve_with_a_prior_is_the_exact_minimiser():
    rng = np.random.default_rng(0)
    Rt = sp.csr_matrix(np.array([[1, 0, 1], [0, 1, 1], [0, 0, 0]], float))   # movies x users
    W = rng.normal(size=(3, 2))
    prior = rng.normal(size=(3, 2))
    alpha0, reg, nu = 0.5, 0.1, 1.0
    H = ials._solve_side(Rt, W, alpha0, reg, nu, n_other=3, prior=prior)
    for i in range(2):
        users = Rt[i].indices
        reg_i = reg * (len(users) + alpha0 * 3) ** nu
        grad = (2 * W[users].T @ (W[users] @ H[i] - 1) + 2 * alpha0 * W.T @ (W @ H[i])
                + 2 * reg_i * (H[i] - prior[i]))
        np.testing.assert_allclose(grad, 0, atol=1e-10)
    np.testing.assert_array_equal(H[2], prior[2])   # nobody rated it: its prior


def test_genre_prior_is_weighted_ridge():
    F = np.array([[1.0, 0], [0, 1], [1, 0]])
    H = np.array([[2.0], [4.0], [4.0]])
    B = ials.fit_genre_prior(F, H, np.array([1.0, 1.0, 3.0]), feature_reg=1.0)
    # genre 0: (1*2 + 3*4) / (1 + 3 + 1) = 2.8 ; genre 1: 4 / (1 + 1) = 2
    np.testing.assert_allclose(B, [[2.8], [2.0]])


def test_hybrid_ials_gives_an_unrated_movie_its_genre_direction():
    u = np.array([p[0] for p in GROUPS])
    m = np.array([p[1] for p in GROUPS])
    plain = ials.fit(u, m, 8, 9, dim=4, alpha0=0.1, reg=0.01, iterations=8)
    hybrid = ials.fit(u, m, 8, 9, dim=4, alpha0=0.1, reg=0.01, iterations=8,
                      movie_features=genre_features(GENRES), feature_reg=0.1)
    assert np.all(plain.movie_factors[8] == 0)        # no ratings, no genre: nothing
    losses = hybrid.loss_history
    assert all(b <= a + 1e-9 for a, b in zip(losses, losses[1:])), losses
    scores = hybrid.user_factors @ hybrid.movie_factors.T
    # the unrated genre-0 movie scores higher for the genre-0 users than for the genre-1 users
    assert scores[:4, 8].min() > scores[4:, 8].max()
    np.testing.assert_allclose(hybrid.movie_factors[8], genre_features(GENRES)[8] @ hybrid.genre_factors,
                               rtol=1e-5)
    with pytest.raises(ValueError, match="movie_features must be"):
        ials.fit(u, m, 8, 9, dim=2, alpha0=0.1, reg=0.1, movie_features=np.zeros((3, 2)))


@pytest.mark.parametrize("objective", ["mse", "ials"])
def test_hybrid_model_scores_with_the_genre_part(objective):
    data = interactions(GROUPS + [(0, 8)], ratings=[4.0] * len(GROUPS) + [5.0])
    config = MFConfig(objective=objective, embedding_dim=4, hybrid=True, epochs=30, batch_size=16,
                      ials_iterations=4, ials_alpha0=0.1, ials_reg=0.01, ials_feature_reg=0.1)
    model, _ = train.fit(config, data, 8, 9, genre_matrix=GENRES)
    assert model.hybrid
    W = model.genre_embedding.kernel.numpy()
    assert np.abs(W).sum() > 0                        # the genre part was learned
    v = model.movie_embedding.embeddings.numpy()[:9]
    q = v + genre_features(GENRES) @ W
    p = model.user_embedding.embeddings.numpy()[[1, 6]]
    scores = model.score_all_movies(tf.constant([1, 6], tf.int64)).numpy()
    expected = p @ q.T
    if objective == "mse":
        mu = model.global_mean.numpy()
        bu = model.user_bias.embeddings.numpy()[[1, 6], 0]
        bm = model.movie_bias.embeddings.numpy()[:9, 0]
        expected = expected + mu + bu[:, None] + bm[None, :]
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="no genre matrix"):
        train.fit(config, data, 8, 9)


def _export(model, users, movies, genres, tmp_path):
    (tmp_path / "users").write_text("\n".join(users) + "\n")
    (tmp_path / "movies").write_text("\n".join(movies) + "\n")
    catalog = Catalog(movie_ids=movies, titles=movies, genre_names=genres,
                      genre_matrix=np.eye(len(movies), len(genres), dtype=np.float32))
    out = str(tmp_path / "export")
    export.export(model, out, user_vocab_path=str(tmp_path / "users"), movie_vocab_path=str(tmp_path / "movies"),
                  user_ids=users, catalog=catalog,
                  rated=RatedItems.from_pairs(np.array([0]), np.array([0]), len(users), len(movies)),
                  popularity=np.ones(len(movies), np.float32), rating_range=(1.0, 5.0), max_k=5)
    return out, catalog


def test_warm_start_moves_genre_rows_by_name(tmp_path):
    users, movies = ["u1", "u2"], ["m1", "m2"]
    config = MFConfig(objective="mse", embedding_dim=2, hybrid=True)
    old = train.build(config, 2, 2, 3.5, np.eye(2, 2, dtype=np.float32))
    old.genre_embedding.kernel.assign([[1, 2], [3, 4]])
    out, catalog = _export(old, users, movies, ["Drama", "Comedy"], tmp_path)
    loaded = tf.saved_model.load(out)   # the served scores include the genre part
    expected = old.score_all_movies(tf.constant([0], tf.int64)).numpy()[0]
    got = loaded.signatures["recommend"](user_id=tf.constant(["u1"]), k=tf.constant([2]),
                                         exclude_movie_ids=tf.constant([[""]]))
    assert sorted(got["scores"].numpy()[0][got["valid"].numpy()[0]].tolist()) == pytest.approx(
        sorted(expected[1:].tolist()), rel=1e-5)   # m1 is rated (masked)

    base = warm_start.load_weights(out)
    assert base.genre_names == ["Drama", "Comedy"]
    new = train.build(config, 2, 2, 3.5, np.eye(2, 3, dtype=np.float32))   # a third genre
    report = warm_start.apply(new, base, users, movies, ["Comedy", "Horror", "Drama"])
    np.testing.assert_array_equal(new.genre_embedding.kernel.numpy(), [[3, 4], [0, 0], [1, 2]])
    assert report["genres_kept"] == 2
