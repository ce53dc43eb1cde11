"""The default MF (objective "ials+bayes"): one SavedModel, each signature from its own half."""
import numpy as np
import pytest
import tensorflow as tf

from movierec.components.mf import export, train
from movierec.components.mf.model import MatrixFactorization, RankAndRate
from movierec.components.recommend import RatedItems
from movierec.components.training_data import Catalog, Interactions
from movierec.config import MFConfig


def _set(model: MatrixFactorization, users, movies, user_bias, movie_bias):
    model.user_embedding.embeddings.assign(np.array(users, np.float32))
    model.movie_embedding.embeddings.assign(np.array(movies, np.float32))
    model.user_bias.embeddings.assign(np.array(user_bias, np.float32)[:, None])
    model.movie_bias.embeddings.assign(np.array(movie_bias, np.float32)[:, None])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """users u1, u2; movies a, b, c (row 3 of every matrix is the OOV row).

    ranker (ials: ranks by <p, q> alone): p_u1 = (1, 0), p_u2 = (0, 1);
        q_a = (3, 0), q_b = (1, 1), q_c = (2, 2); its biases (a bias head) must not rank.
    rater (bayes: mu + b_u + b_m + <p, q>): mu = 3, b_u1 = 0.5, b_u2 = -0.5,
        b_a = 0, b_b = 1, b_c = -1; p_u1 = (1, 0), p_u2 = (0, 1); q_a = (0.5, 0), q_b = (0, 0),
        q_c = (0, 2).
    """
    tmp = tmp_path_factory.mktemp("rank_and_rate")
    (tmp / "users").write_text("u1\nu2\n")
    (tmp / "movies").write_text("a\nb\nc\n")
    ranker = MatrixFactorization(2, 3, embedding_dim=2, l2=0.0, global_mean=9.0, objective="ials")
    rater = MatrixFactorization(2, 3, embedding_dim=2, l2=0.0, global_mean=3.0, objective="bayes")
    for m in (ranker, rater):
        m({"user_idx": tf.constant([0], tf.int64), "movie_idx": tf.constant([0], tf.int64)})
    _set(ranker, [[1, 0], [0, 1], [0, 0]], [[3, 0], [1, 1], [2, 2], [0, 0]], [5, 5, 0], [9, -9, 0, 0])
    _set(rater, [[1, 0], [0, 1], [0, 0]], [[0.5, 0], [0, 0], [0, 2], [0, 0]], [0.5, -0.5, 0], [0, 1, -1, 0])
    catalog = Catalog(movie_ids=["a", "b", "c"], titles=["A", "B", "C"], genre_names=["Drama"],
                      genre_matrix=np.ones((3, 1), np.float32))
    out = str(tmp / "export")
    export.export(RankAndRate(ranker, rater), out, user_vocab_path=str(tmp / "users"),
                  movie_vocab_path=str(tmp / "movies"), user_ids=["u1", "u2"], catalog=catalog,
                  rated=RatedItems.from_pairs(np.array([1]), np.array([2]), 2, 3),   # u2 rated c
                  popularity=np.array([1, 2, 3], np.float32), rating_range=(1.0, 5.0), max_k=10)
    return tf.saved_model.load(out)


def test_serving_default_ranks_by_the_rankers_dot_product(exported):
    out = exported.signatures["recommend"](user_id=tf.constant(["u1", "u2"]), k=tf.constant([3, 3]),
                                           exclude_movie_ids=tf.constant([[""], [""]]))
    # u1: a = 3, b = 1, c = 2 -> a, c, b (the ranker's biases would have put b last by far,
    #     the rater's scores would say b = 4.5, c = 2.5, a = 4.0);
    # u2: a = 0, b = 1, c = 2 but c is rated -> b, a, padding
    assert out["movie_ids"].numpy().astype(str).tolist() == [["a", "c", "b"], ["b", "a", ""]]
    np.testing.assert_allclose(out["scores"].numpy(), [[3, 2, 1], [1, 0, 0]])


def test_predict_rating_is_the_raters_biased_mf(exported):
    out = exported.signatures["predict_rating"](user_id=tf.constant(["u1", "u1", "u2", "u2", "zz"]),
                                                movie_id=tf.constant(["a", "b", "a", "c", "b"]))
    # u1 a: 3 + 0.5 + 0 + 0.5 = 4.0;  u1 b: 3 + 0.5 + 1 + 0 = 4.5
    # u2 a: 3 - 0.5 + 0 + 0 = 2.5;    u2 c: 3 - 0.5 - 1 + 2 = 3.5
    # zz (unknown) b: 3 + 1 = 4.0 (no user bias, no factors)
    np.testing.assert_allclose(out["rating"].numpy(), [4.0, 4.5, 2.5, 3.5, 4.0])
    assert out["user_known"].numpy().tolist() == [True, True, True, True, False]


def test_warm_start_handles_are_the_rankers(exported):
    np.testing.assert_allclose(exported.factors["movie_embedding"].numpy(), [[3, 0], [1, 1], [2, 2], [0, 0]])


def test_fit_trains_each_half_as_its_own_objective_would():
    """train.fit with "ials+bayes" gives exactly the factors of "ials" and "bayes" alone."""
    rng = np.random.default_rng(0)
    n = 300
    users, movies = rng.integers(0, 12, n), rng.integers(0, 15, n)
    data = Interactions(user_idx=users.astype(np.int64), movie_idx=movies.astype(np.int64),
                        rating=rng.integers(1, 6, n).astype(np.float32), timestamp=np.zeros(n, np.int64))
    genres = (rng.random((15, 3)) < 0.4).astype(np.float32)
    small = dict(embedding_dim=4, bayes_dim=2, ials_iterations=3, bayes_samples=3, bayes_burn_in=2, bayes_thin=1)
    both, result = train.fit(MFConfig(**small), data, 12, 15, genre_matrix=genres)
    ranker, _ = train.fit(MFConfig(objective="ials", **small), data, 12, 15, genre_matrix=genres)
    rater, _ = train.fit(MFConfig(objective="bayes", **{**small, "embedding_dim": 2}), data, 12, 15,
                         genre_matrix=genres)
    assert isinstance(both, RankAndRate)
    users_t = tf.constant(np.arange(12), tf.int64)
    np.testing.assert_allclose(both.score_all_movies(users_t), ranker.score_all_movies(users_t), rtol=1e-5)
    known = tf.ones([n], tf.bool)
    np.testing.assert_allclose(both.predict_known(tf.constant(users), tf.constant(movies), known, known),
                               rater.predict_known(tf.constant(users), tf.constant(movies), known, known),
                               rtol=1e-5)
    assert set(result.part_seconds) == {"ials", "bayes"}
    assert result.fit_seconds == pytest.approx(sum(result.part_seconds.values()))


def test_bayes_width_is_bayes_dim():
    assert MFConfig(objective="bayes").embedding_dim == MFConfig().bayes_dim
    with pytest.raises(ValueError, match="bayes_dim"):
        MFConfig(objective="bayes", embedding_dim=7)


@pytest.mark.parametrize("batch_size", [1 << 16, 2])
def test_rating_errors_clip_and_fall_back_for_unknown_sides_in_any_batching(batch_size):
    """mu = 3, b_u = (0.5, -0.5), b_m = (0.25, 0), p = ((1, 0), (0, 1)), q = ((1, 1), (2, 0));
    index 2 is the OOV user / movie. Predictions (clipped to [1, 5]) and errors:
    (0, 0) 4.75 vs 5: -0.25; (0, 1) 5.5 -> 5 vs 5: 0; (1, 0) 3.75 vs 3: 0.75;
    (1, 1) 2.5 vs 2: 0.5; (OOV, 0) 3 + 0.25 vs 3: 0.25; (1, OOV) 3 - 0.5 vs 3: -0.5.
    RMSE sqrt(1.1875 / 6), MAE 2.25 / 6."""
    model = MatrixFactorization(2, 2, embedding_dim=2, l2=0.0, global_mean=3.0, objective="bayes")
    model({"user_idx": tf.constant([0], tf.int64), "movie_idx": tf.constant([0], tf.int64)})
    _set(model, [[1, 0], [0, 1], [0, 0]], [[1, 1], [2, 0], [0, 0]], [0.5, -0.5, 0], [0.25, 0, 0])
    data = Interactions(np.array([0, 0, 1, 1, 2, 1]), np.array([0, 1, 0, 1, 0, 2]),
                        np.array([5, 5, 3, 2, 3, 3], np.float32), np.zeros(6, np.int64))
    errors = train.rating_errors(model, data, (2, 2), (1.0, 5.0), batch_size=batch_size)
    assert errors["examples"] == 6
    assert errors["rmse"] == pytest.approx(np.sqrt(1.1875 / 6), rel=1e-6)
    assert errors["mae"] == pytest.approx(2.25 / 6, rel=1e-6)
