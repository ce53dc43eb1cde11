"""Adam as a handful of plain TF ops, for a training loop that runs a whole epoch in-graph.

For dense gradients the update is tf_keras' `Adam` exactly (same defaults, same bias
correction, epsilon outside the square root):

    t      <- t + 1
    m      <- beta_1 m + (1 - beta_1) g
    v      <- beta_2 v + (1 - beta_2) g^2
    lr_t   =  lr sqrt(1 - beta_2^t) / (1 - beta_1^t)
    w      <- w - lr_t m / (sqrt(v) + epsilon)

(tested against `keras.optimizers.Adam`). What it saves is overhead: Keras' optimizer
runs a lot of Python when a `tf.function` is traced and adds dozens of small ops per step;
here a step is a few ops per variable and traces quickly, which lets `train.fit` put an
epoch's steps in one `tf.while_loop`.

Sparse gradients (`tf.IndexedSlices`, from embedding lookups) are applied lazily, as in
TF Addons' LazyAdam: only the rows the batch touched (duplicates summed) update their
moments and weights. Keras' Adam decays m and v of every row of the table at every step,
so its step costs O(table rows x dim), which makes training super-linear in the dataset
(benchmarks/scale.py); lazily a step is O(batch x dim), and the held-out RMSE on ML-100k
is the same either way (tests/test_adam.py compares the updates with Keras' Adam).
"""
from __future__ import annotations

import tensorflow as tf


class Adam(tf.Module):
    def __init__(self, variables: list[tf.Variable], learning_rate: float, beta_1: float = 0.9,
                 beta_2: float = 0.999, epsilon: float = 1e-7, lazy: bool = True):
        super().__init__(name="adam")
        if not variables:
            raise ValueError("Adam needs at least one variable to train")
        if not 0 < learning_rate:
            raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
        for name, beta in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not 0 <= beta < 1:
                raise ValueError(f"{name} must be in [0, 1), got {beta}")
        self.variables_ = list(variables)
        self.learning_rate, self.beta_1, self.beta_2, self.epsilon = learning_rate, beta_1, beta_2, epsilon
        self.lazy = lazy
        self.iterations = tf.Variable(0.0, trainable=False, name="iterations")
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False, name="m") for v in self.variables_]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False, name="v") for v in self.variables_]

    def apply(self, gradients: list) -> None:
        """One update; gradients[i] (a Tensor or IndexedSlices) belongs to variables[i]."""
        if len(gradients) != len(self.variables_):
            raise ValueError(f"{len(gradients)} gradients for {len(self.variables_)} variables")
        t = self.iterations.assign_add(1.0)
        lr_t = self.learning_rate * tf.sqrt(1.0 - tf.pow(self.beta_2, t)) / (1.0 - tf.pow(self.beta_1, t))
        for var, m, v, g in zip(self.variables_, self.m, self.v, gradients):
            if self.lazy and isinstance(g, tf.IndexedSlices):
                self._apply_rows(var, m, v, g, lr_t)
                continue
            g = tf.convert_to_tensor(g)
            m_t = m.assign(self.beta_1 * m + (1.0 - self.beta_1) * g)
            v_t = v.assign(self.beta_2 * v + (1.0 - self.beta_2) * tf.square(g))
            var.assign_sub(lr_t * m_t / (tf.sqrt(v_t) + self.epsilon))

    def _apply_rows(self, var, m, v, g: tf.IndexedSlices, lr_t) -> None:
        """The same update on the rows the batch touched only (duplicates summed first)."""
        rows, pos = tf.unique(g.indices)
        g_rows = tf.math.unsorted_segment_sum(g.values, pos, tf.shape(rows)[0])
        m_rows = self.beta_1 * tf.gather(m, rows) + (1.0 - self.beta_1) * g_rows
        v_rows = self.beta_2 * tf.gather(v, rows) + (1.0 - self.beta_2) * tf.square(g_rows)
        m.scatter_update(tf.IndexedSlices(m_rows, rows))
        v.scatter_update(tf.IndexedSlices(v_rows, rows))
        var.scatter_sub(tf.IndexedSlices(lr_t * m_rows / (tf.sqrt(v_rows) + self.epsilon), rows))
