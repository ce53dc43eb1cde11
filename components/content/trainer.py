"""TFX Trainer entry point for the content model: data -> `profiles.fit` -> two exports."""
from __future__ import annotations

import dataclasses
import logging

import numpy as np

from movierec.components import features, training_data
from movierec.contract import DEFAULT_MAX_K
from movierec.components.content import export, profiles
from movierec.config import ContentConfig


def run_fn(fn_args) -> None:
    """custom_config: {"max_k": int, "content": {ContentConfig fields}} (missing settings:
    the tuned defaults). Profiles come from the train split only (ratings, or implicit
    events by their weight: `event_strength`); the pushed model masks movies rated in both
    splits, the evaluation export the train split only."""
    custom = fn_args.custom_config or {}
    max_k = int(custom.get("max_k", DEFAULT_MAX_K))
    config = ContentConfig.from_dict(custom.get("content") or {})
    data = training_data.load_trainer_inputs(fn_args)
    train, catalog = data.train, data.catalog

    rated = features.has_ratings(train.rating)
    model = profiles.fit(train.user_idx, train.movie_idx, event_strength(train, rated), catalog, data.num_users,
                         config)
    seconds = model.fit_seconds
    zero_users = int((model.profiles() == 0).all(axis=1).sum())
    metrics = {
        "model": "content", "ratings": rated, "train_examples": len(train), "fit_seconds": seconds,
        "examples_per_second": len(train) / seconds if seconds > 0 else float("inf"),
        "num_users": data.num_users, "num_movies": data.num_movies, "num_genres": len(catalog.genre_names),
        "num_features": len(model.feature_names),
        "users_without_profile": zero_users,
        "movies_without_genres": int((catalog.genre_matrix.sum(axis=1) == 0).sum()),
        "config": {"max_k": max_k, "content": dataclasses.asdict(config)},
    }
    common = dict(model=model, catalog=catalog, popularity=data.popularity, max_k=max_k,
                  user_vocab_path=data.vocab_paths[features.USER_VOCAB],
                  movie_vocab_path=data.vocab_paths[features.MOVIE_VOCAB],
                  genre_vocab_path=data.vocab_paths[features.GENRE_VOCAB])
    export.export(fn_args.serving_model_dir, rated=data.rated_all, metadata=metrics, **common)
    # the evaluation export: only the train split masked (see RankingEvaluator)
    export.export(fn_args.eval_model_dir, rated=data.rated_train, **common)
    data.write_run_metrics(fn_args.model_run_dir, metrics)
    logging.info("content (%s profiles, %d features): %d users from %d ratings in %.2f s (%d without a profile); "
                 "exported to %s", config.profile, len(model.feature_names), data.num_users, len(train), seconds,
                 zero_users, fn_args.serving_model_dir)


def event_strength(train: training_data.Interactions, rated: bool) -> np.ndarray:
    """What each training event says of its user's taste, float32 [n]: the rating (rated
    data), or the event's weight (implicit events: 1 each, or the declared weight, which
    Transform outputs as `weight`). The profiles are sums linear in it, so an implicit
    event counts like a rating of its weight."""
    if rated:
        return train.rating
    return train.weight
