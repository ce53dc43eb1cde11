"""TFX Trainer entry point for MF: `run_fn` hands off to data, model, train, export."""
from __future__ import annotations

import dataclasses
import logging

import numpy as np

from movierec.components import features, training_data
from movierec.contract import DEFAULT_MAX_K
from movierec.components.mf import export, train, warm_start
from movierec.config import mf_config_from_dict


def warm_start_init(base_model_dir: str | None, user_ids: list[str], movie_ids: list[str], report: dict,
                    genre_names: list[str] = ()):
    """The `init` for `train.fit` that seeds the model from the base model, or None.

    A base model that cannot seed this one (none yet, older export, other embedding size)
    means a cold start; `report` says which happened and why.
    """
    if not base_model_dir:
        report.update(used=False, reason="no blessed MF model yet")
        return None
    try:
        base = warm_start.load_weights(base_model_dir)
    except (warm_start.WarmStartError, OSError) as e:
        report.update(used=False, reason=str(e))
        logging.warning("MF warm start skipped: %s", e)
        return None

    def init(model) -> None:
        try:
            report.update(used=True, base_model=base_model_dir,
                          **warm_start.apply(model, base, user_ids, movie_ids, genre_names))
        except warm_start.WarmStartError as e:
            report.update(used=False, reason=str(e))
            logging.warning("MF warm start skipped: %s", e)

    return init


def run_fn(fn_args) -> None:
    """Called by the TFX Trainer (GenericExecutor) with `fn_args`.

    custom_config: {"mf": MFConfig fields, "max_k": int, "warm_start": bool}; with warm
    start, `fn_args.base_model` is the last blessed MF model (from the pipeline's Resolver).
    """
    custom = fn_args.custom_config or {}
    config = mf_config_from_dict(custom.get("mf", {}))
    max_k = int(custom.get("max_k", DEFAULT_MAX_K))
    data = training_data.load_trainer_inputs(fn_args)
    sizes = (data.num_users, data.num_movies)
    logging.info("MF: %d train / %d eval ratings, %d users, %d movies", len(data.train), len(data.eval), *sizes)
    config, fit_data, scale = implicit_or_rated(config, data.train)

    warm_report: dict = {"used": False, "reason": "off"}
    init = None
    if custom.get("warm_start") and config.objective == "bayes":
        warm_report["reason"] = "objective bayes: each chain starts from its prior"
    elif custom.get("warm_start"):   # ials+bayes: seeds the ranking half; the rater starts from its prior
        init = warm_start_init(fn_args.base_model, data.user_ids, data.catalog.movie_ids, warm_report,
                               data.catalog.genre_names)
    model, result = train.fit(config, fit_data, *sizes, data.eval if scale else None, scale or (1.0, 1.0),
                              init=init, genre_matrix=data.catalog.genre_matrix)
    metrics = {
        "model": "mf", "ratings": scale is not None, "eval_examples": len(data.eval),
        "train_examples": len(data.train), "epochs": result.epochs,
        "fit_seconds": result.fit_seconds, "examples_per_second": result.examples_per_second,
        "steady_examples_per_second": result.steady_examples_per_second, "part_seconds": result.part_seconds,
        "loss_history": result.loss_history, "eval_rmse_history": result.eval_rmse_history,
        "num_users": data.num_users, "num_movies": data.num_movies,
        "num_genres": len(data.catalog.genre_names), "rating_range": list(scale) if scale else None,
        "config": custom,
        "warm_start": warm_report,
    }
    if scale:   # rating metrics only for a model that predicts ratings
        errors = train.rating_errors(model, data.eval, sizes, scale)
        metrics.update(eval_rmse=errors["rmse"], eval_mae=errors["mae"], eval_examples=errors["examples"])
    common = dict(user_vocab_path=data.vocab_paths[features.USER_VOCAB],
                  movie_vocab_path=data.vocab_paths[features.MOVIE_VOCAB], user_ids=data.user_ids,
                  catalog=data.catalog,
                  popularity=data.popularity, rating_range=scale, max_k=max_k)
    export.export(model, fn_args.serving_model_dir, rated=data.rated_all, metadata=metrics, **common)
    # the evaluation export: same model, only the train split masked (see RankingEvaluator)
    export.export(model, fn_args.eval_model_dir, rated=data.rated_train, **common)
    data.write_run_metrics(fn_args.model_run_dir, metrics)
    if scale:
        logging.info("MF: eval RMSE %.4f, MAE %.4f; %.0f examples/s; exported to %s",
                     errors["rmse"], errors["mae"], result.examples_per_second, fn_args.serving_model_dir)
    else:
        logging.info("MF (implicit events, iALS ranker only, no predict_rating): %.0f examples/s; exported to %s",
                     result.examples_per_second, fn_args.serving_model_dir)


IMPLICIT_OBJECTIVES = ("ials", "ials+bayes")


def implicit_or_rated(config, interactions: training_data.Interactions):
    """(config, training interactions, rating range or None) for this data.

    With ratings: unchanged, and the range (min, max) of the training ratings. Implicit events
    (`features.has_ratings` false): the iALS ranker alone ("ials+bayes" loses its rater,
    which needs ratings; "mse" and "bayes" are refused), fitted on who interacted with what;
    the ranker's unused bias head is fitted on a constant 1 per event, and the range is None
    (the export then has no `predict_rating`)."""
    if features.has_ratings(interactions.rating):
        return config, interactions, (float(interactions.rating.min()), float(interactions.rating.max()))
    if config.objective not in IMPLICIT_OBJECTIVES:
        raise ValueError(f"mf.objective {config.objective!r} learns from ratings, and this dataset has none "
                         f"(implicit events): use {' or '.join(map(repr, IMPLICIT_OBJECTIVES))}")
    if config.objective != "ials":
        logging.info("MF: implicit events: objective %r trains its iALS ranker only", config.objective)
    constant = dataclasses.replace(interactions, rating=np.ones_like(interactions.rating))
    return dataclasses.replace(config, objective="ials"), constant, None
