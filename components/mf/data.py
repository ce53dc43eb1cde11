"""Training input for MF: ratings held as in-memory tensors, batches drawn by index.

After the one read of the Transform output, an epoch is a numpy permutation of row
indices, cut into batches inside the graph (`train.make_epoch`); each step gathers its
batch from these tensors. No TFRecord parsing and no per-element tf.data work per epoch
(a tf.data shuffle buffer over individual ratings costs more per batch than the step
itself).
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from movierec.components.training_data import Interactions


@dataclasses.dataclass(frozen=True)
class RatingTensors:
    user_idx: tf.Tensor  # int64 [n]
    movie_idx: tf.Tensor  # int64 [n]
    rating: tf.Tensor    # float32 [n]

    @classmethod
    def from_interactions(cls, data: Interactions) -> "RatingTensors":
        if len(data) == 0:
            raise ValueError("no training ratings")
        return cls(tf.constant(data.user_idx, tf.int64), tf.constant(data.movie_idx, tf.int64),
                   tf.constant(data.rating, tf.float32))
