"""Warm start across vocabulary growth: rows move by ID, new rows stay fresh, old ones go."""
import numpy as np
import pytest
import tensorflow as tf

from movierec.components.mf import export, warm_start
from movierec.components.recommend import RatedItems
from movierec.components.training_data import Catalog
from movierec.config import MFConfig
from movierec.components.mf import train


def test_remap_rows_hand_worked():
    old_ids = ["u1", "u2", "u3"]
    old = np.array([[1, 1], [2, 2], [3, 3], [9, 9]], np.float32)      # last row: OOV
    new_ids = ["u3", "u4", "u1"]                                       # u2 left, u4 is new
    fresh = np.array([[-1, -1], [-2, -2], [-3, -3], [-4, -4]], np.float32)
    rows, kept = warm_start.remap_rows(old_ids, old, new_ids, fresh)
    assert kept == 2
    np.testing.assert_array_equal(rows, [[3, 3], [-2, -2], [1, 1], [-4, -4]])
    np.testing.assert_array_equal(fresh[0], [-1, -1])  # the fresh matrix is not modified


def test_remap_rows_rejects_mismatched_shapes():
    with pytest.raises(warm_start.WarmStartError, match="row counts"):
        warm_start.remap_rows(["a"], np.zeros((3, 2)), ["a"], np.zeros((2, 2)))
    with pytest.raises(warm_start.WarmStartError, match="row shape"):
        warm_start.remap_rows(["a"], np.zeros((2, 4)), ["a"], np.zeros((2, 2)))


def _model(users, movies, dim=2, seed=1):
    model = train.build(MFConfig(objective="mse", hybrid=False, embedding_dim=dim, seed=seed), len(users), len(movies), 3.5)
    return model


def _export(model, users, movies, tmp_path):
    (tmp_path / "users").write_text("\n".join(users) + "\n")
    (tmp_path / "movies").write_text("\n".join(movies) + "\n")
    catalog = Catalog(movie_ids=movies, titles=[m.upper() for m in movies], genre_names=["Drama"],
                      genre_matrix=np.ones((len(movies), 1), np.float32))
    out = str(tmp_path / "export")
    export.export(model, out, user_vocab_path=str(tmp_path / "users"),
                  movie_vocab_path=str(tmp_path / "movies"), user_ids=users, catalog=catalog,
                  rated=RatedItems.from_pairs(np.array([0]), np.array([0]), len(users), len(movies)),
                  popularity=np.ones(len(movies), np.float32), rating_range=(1.0, 5.0), max_k=5)
    return out


def test_warm_start_through_an_exported_model(tmp_path):
    old_users, old_movies = ["u1", "u2"], ["m1", "m2", "m3"]
    old = _model(old_users, old_movies)
    old.user_embedding.embeddings.assign([[1, 2], [3, 4], [0, 0]])
    old.user_bias.embeddings.assign([[0.5], [-0.5], [0]])
    old.movie_embedding.embeddings.assign([[1, 0], [0, 1], [1, 1], [0, 0]])
    old.movie_bias.embeddings.assign([[0.1], [0.2], [0.3], [0]])
    base = warm_start.load_weights(_export(old, old_users, old_movies, tmp_path))
    assert base.user_ids == old_users and base.movie_ids == old_movies

    # the vocabulary grew (u3, m4), shrank (m1 left) and reordered
    new_users, new_movies = ["u3", "u2", "u1"], ["m3", "m4", "m2"]
    new = _model(new_users, new_movies, seed=7)
    fresh_u3 = new.user_embedding.embeddings.numpy()[0].copy()
    fresh_m4 = new.movie_embedding.embeddings.numpy()[1].copy()
    summary = warm_start.apply(new, base, new_users, new_movies)
    assert summary == {"users_kept": 2, "users_new": 1, "users_dropped": 0,
                       "movies_kept": 2, "movies_new": 1, "movies_dropped": 1}
    u = new.user_embedding.embeddings.numpy()
    np.testing.assert_array_equal(u[1], [3, 4])                 # u2 kept its row
    np.testing.assert_array_equal(u[2], [1, 2])                 # u1 kept its row
    np.testing.assert_array_equal(u[0], fresh_u3)               # u3 freshly initialised
    assert np.abs(fresh_u3).sum() > 0                           # (random, not zero)
    np.testing.assert_allclose(new.user_bias.embeddings.numpy()[:, 0], [0, -0.5, 0.5, 0])  # +OOV
    m = new.movie_embedding.embeddings.numpy()
    np.testing.assert_array_equal(m[0], [1, 1])                 # m3
    np.testing.assert_array_equal(m[2], [0, 1])                 # m2
    np.testing.assert_array_equal(m[1], fresh_m4)               # m4 fresh
    np.testing.assert_allclose(new.movie_bias.embeddings.numpy()[:, 0], [0.3, 0.0, 0.2, 0])
    # a known pair now predicts exactly what the old model predicted (same global mean)
    pair = {"user_idx": tf.constant([2], tf.int64), "movie_idx": tf.constant([0], tf.int64)}
    np.testing.assert_allclose(new(pair).numpy(), [3.5 + 0.5 + 0.3 + (1 * 1 + 2 * 1)], rtol=1e-6)


def test_other_embedding_size_is_refused_before_any_change(tmp_path):
    base = warm_start.load_weights(_export(_model(["u1"], ["m1"], dim=2), ["u1"], ["m1"], tmp_path))
    new = _model(["u1"], ["m1"], dim=3)
    before = new.user_embedding.embeddings.numpy().copy()
    with pytest.raises(warm_start.WarmStartError, match="row shape"):
        warm_start.apply(new, base, ["u1"], ["m1"])
    np.testing.assert_array_equal(new.user_embedding.embeddings.numpy(), before)


def test_a_model_without_factors_is_refused(tmp_path):
    module = tf.Module()
    module.v = tf.Variable(1.0)
    tf.saved_model.save(module, str(tmp_path / "plain"))
    with pytest.raises(warm_start.WarmStartError, match="no MF factors"):
        warm_start.load_weights(str(tmp_path / "plain"))
