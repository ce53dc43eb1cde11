"""Warm start of MF from the last blessed model, across vocabulary growth.

Between two retrains the user and movie vocabularies change: new users and movies appear,
some leave the window. Rows are matched by ID, not by index:

  * an ID in both vocabularies keeps its learned embedding row and bias;
  * a new ID keeps the fresh initial row of the new model (random embedding, zero bias);
  * an ID only in the old vocabulary is dropped;
  * the OOV row (last row, index = vocabulary size) is fresh.

Shapes: old matrix [len(old_ids) + 1, d] -> new matrix [len(new_ids) + 1, d].
Hybrid models also carry the genre embedding [G, d], matched by genre name; a genre new to
the vocabulary starts at zero. A base model without one (not a hybrid) leaves it fresh.
Optimizer state is not carried over (Adam starts afresh on the warm weights).
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np

from movierec.components.mf.model import MatrixFactorization

FACTOR_NAMES = ("user_embedding", "movie_embedding", "user_bias", "movie_bias")


class WarmStartError(ValueError):
    """The base model cannot seed this model (missing weights, other embedding size)."""


@dataclasses.dataclass(frozen=True)
class MFWeights:
    """Learned MF weights with the IDs their rows belong to (OOV row last)."""

    user_ids: list[str]
    movie_ids: list[str]
    user_embedding: np.ndarray   # float32 [U + 1, d]
    movie_embedding: np.ndarray  # float32 [N + 1, d]
    user_bias: np.ndarray        # float32 [U + 1, 1]
    movie_bias: np.ndarray       # float32 [N + 1, 1]
    genre_names: list[str] = ()
    genre_embedding: np.ndarray | None = None   # float32 [G, d], hybrid models only

    def __post_init__(self) -> None:
        for name, ids in (("user", self.user_ids), ("movie", self.movie_ids)):
            for kind in ("embedding", "bias"):
                rows = getattr(self, f"{name}_{kind}").shape[0]
                if rows != len(ids) + 1:
                    raise WarmStartError(f"{name}_{kind} has {rows} rows, expected {len(ids)} "
                                         f"{name} ids + 1 OOV row")


def remap_rows(old_ids: list[str], old_rows: np.ndarray, new_ids: list[str],
               fresh_rows: np.ndarray) -> tuple[np.ndarray, int]:
    """Rows of the new vocabulary: old_rows [len(old_ids)+1, d], fresh_rows [len(new_ids)+1, d]
    -> ([len(new_ids)+1, d], number of rows kept). See the module docstring for the rules."""
    if old_rows.shape[0] != len(old_ids) + 1 or fresh_rows.shape[0] != len(new_ids) + 1:
        raise WarmStartError(f"row counts {old_rows.shape[0]} / {fresh_rows.shape[0]} do not match "
                             f"vocabularies of {len(old_ids)} / {len(new_ids)} ids (+1 OOV row)")
    if old_rows.shape[1:] != fresh_rows.shape[1:]:
        raise WarmStartError(f"row shape {old_rows.shape[1:]} of the base model differs from "
                             f"{fresh_rows.shape[1:]} of the new model")
    old_index = {id_: i for i, id_ in enumerate(old_ids)}
    new_pos, old_pos = [], []
    for i, id_ in enumerate(new_ids):
        j = old_index.get(id_)
        if j is not None:
            new_pos.append(i)
            old_pos.append(j)
    rows = np.array(fresh_rows, copy=True)
    rows[new_pos] = old_rows[old_pos]
    return rows, len(new_pos)


def load_weights(saved_model_dir: str) -> MFWeights:
    """The MF weights and vocabularies stored in an exported MF SavedModel."""
    import tensorflow as tf  # noqa: PLC0415

    loaded = tf.saved_model.load(saved_model_dir)
    factors = getattr(loaded, "factors", None)
    if factors is None or not hasattr(loaded, "user_ids"):
        raise WarmStartError(f"{saved_model_dir} has no MF factors to warm-start from "
                             "(exported by an older movierec?)")

    def ids(var) -> list[str]:
        return [v.decode("utf-8") for v in var.numpy()]

    hybrid = "genre_embedding" in factors and hasattr(loaded, "genre_names")
    return MFWeights(user_ids=ids(loaded.user_ids), movie_ids=ids(loaded.movie_ids),
                     genre_names=ids(loaded.genre_names) if hybrid else (),
                     genre_embedding=factors["genre_embedding"].numpy() if hybrid else None,
                     **{name: factors[name].numpy() for name in FACTOR_NAMES})


def apply(model: MatrixFactorization, base: MFWeights, user_ids: list[str],
          movie_ids: list[str], genre_names: list[str] = ()) -> dict:
    """Overwrites the (built) model's rows of known IDs with the base model's; returns counts.

    genre_names: the new model's genre vocabulary (hybrid models)."""
    if len(user_ids) != model.num_users or len(movie_ids) != model.num_movies:
        raise WarmStartError(f"vocabularies of {len(user_ids)} users / {len(movie_ids)} movies do not "
                             f"match the model's {model.num_users} / {model.num_movies}")
    layers = {"user_embedding": model.user_embedding, "movie_embedding": model.movie_embedding,
              "user_bias": model.user_bias, "movie_bias": model.movie_bias}
    kept = {}
    new_rows = {}
    for name in FACTOR_NAMES:   # check every matrix before changing any
        side = name.split("_")[0]
        old_ids, new_ids = (base.user_ids, user_ids) if side == "user" else (base.movie_ids, movie_ids)
        new_rows[name], kept[side] = remap_rows(old_ids, getattr(base, name), new_ids,
                                                layers[name].embeddings.numpy())
    genres_kept = 0
    if model.hybrid and base.genre_embedding is not None:
        kernel = model.genre_embedding.kernel
        if len(genre_names) != kernel.shape[0]:
            raise WarmStartError(f"{len(genre_names)} genre names for a genre embedding of "
                                 f"{kernel.shape[0]} rows")
        def with_oov(m):   # remap_rows expects an OOV row last
            return np.vstack([m, np.zeros((1, m.shape[1]), m.dtype)])
        genre_rows, genres_kept = remap_rows(list(base.genre_names), with_oov(base.genre_embedding),
                                             list(genre_names), with_oov(kernel.numpy()))
        model.genre_embedding.kernel.assign(genre_rows[:-1])
    for name, rows in new_rows.items():
        layers[name].embeddings.assign(rows)
    summary = {
        "users_kept": kept["user"], "users_new": len(user_ids) - kept["user"],
        "users_dropped": len(base.user_ids) - kept["user"],
        "movies_kept": kept["movie"], "movies_new": len(movie_ids) - kept["movie"],
        "movies_dropped": len(base.movie_ids) - kept["movie"],
    }
    if model.hybrid:
        summary["genres_kept"] = genres_kept
    logging.info("MF warm start: %s", summary)
    return summary
