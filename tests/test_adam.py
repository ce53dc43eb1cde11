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


def test_matches_keras_adam_with_sparse_gradients():
    rng = np.random.default_rng(0)
    init = rng.normal(size=(6, 3)).astype(np.float32)
    ours, theirs = tf.Variable(init), tf.Variable(init)
    mine = Adam([ours], learning_rate=0.05)
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
        mine.apply(grads[0])
        keras_adam.apply_gradients(zip(grads[1], [theirs]))
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-6)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="learning_rate must be > 0, got 0"):
        Adam([tf.Variable(1.0)], learning_rate=0)
    with pytest.raises(ValueError, match="beta_1 must be in"):
        Adam([tf.Variable(1.0)], learning_rate=0.1, beta_1=1.0)
    with pytest.raises(ValueError, match="2 gradients for 1 variables"):
        Adam([tf.Variable(1.0)], learning_rate=0.1).apply([1.0, 2.0])
