"""The in-graph Adam matches tf_keras' Adam step for step, and the epoch loop uses it."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from movierec.components.mf.adam import Adam


def test_one_step_by_hand():
    w = tf.Variable([1.0, -2.0])
    opt = Adam([w], learning_rate=0.1)
    opt.apply([tf.constant([0.5, -4.0])])
    # t=1: m = 0.1 g, v = 0.001 g^2, lr_t = 0.1 sqrt(0.001) / 0.1 -> step = 0.1 * sign(g) (up to eps)
    np.testing.assert_allclose(w.numpy(), [0.9, -1.9], rtol=1e-5)


@pytest.mark.parametrize("dense", [True, False])
def test_matches_keras_adam(dense):
    """Dense gradients: step for step; sparse ones in the non-lazy mode too."""
    rng = np.random.default_rng(0)
    init = rng.normal(size=(6, 3)).astype(np.float32)
    ours, theirs = tf.Variable(init), tf.Variable(init)
    mine = Adam([ours], learning_rate=0.05, lazy=False)
    keras_adam = keras.optimizers.Adam(0.05)
    for step in range(5):
        idx = tf.constant(rng.integers(0, 6, size=4))
        target = tf.constant(rng.normal(size=(4, 3)).astype(np.float32))
        grads = []
        for var in (ours, theirs):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.square(tf.gather(var, idx) - target))
            grads.append(tape.gradient(loss, [var]))
        assert isinstance(grads[0][0], tf.IndexedSlices)
        if dense:
            grads = [[tf.convert_to_tensor(g) for g in gs] for gs in grads]
        mine.apply(grads[0])
        keras_adam.apply_gradients(zip(grads[1], [theirs]))
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-6)


def test_lazy_rows_by_hand():
    """Sparse gradient on rows 0 (twice) and 2 of a 3-row table: row 1 is not touched at all;
    the duplicate's gradients are summed before the update."""
    w = tf.Variable([[1.0], [1.0], [1.0]])
    opt = Adam([w], learning_rate=0.1)
    opt.apply([tf.IndexedSlices(tf.constant([[1.0], [2.0], [-1.0]]), tf.constant([0, 0, 2]))])
    # t=1: every touched row moves by lr * sign(g) (g = 3 for row 0, -1 for row 2)
    np.testing.assert_allclose(w.numpy(), [[0.9], [1.0], [1.1]], rtol=1e-5)
    np.testing.assert_allclose(opt.m[0].numpy(), [[0.3], [0.0], [-0.1]], rtol=1e-6)
    opt.apply([tf.IndexedSlices(tf.constant([[1.0]]), tf.constant([2]))])
    assert opt.m[0].numpy()[0, 0] == pytest.approx(0.3)    # row 0 untouched: no decay (lazy)
    assert opt.m[0].numpy()[2, 0] == pytest.approx(0.9 * -0.1 + 0.1 * 1.0)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="learning_rate must be > 0, got 0"):
        Adam([tf.Variable(1.0)], learning_rate=0)
    with pytest.raises(ValueError, match="beta_1 must be in"):
        Adam([tf.Variable(1.0)], learning_rate=0.1, beta_1=1.0)
    with pytest.raises(ValueError, match="2 gradients for 1 variables"):
        Adam([tf.Variable(1.0)], learning_rate=0.1).apply([1.0, 2.0])
