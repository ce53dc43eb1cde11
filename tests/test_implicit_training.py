"""Implicit events (a declared dataset without ratings) through the real stages after
ExampleGen: the fitted schema, tf.Transform (Beam, in memory) with `preprocessing_fn`, both
Trainers' `run_fn`, and the evaluator's metrics and gate."""
import dataclasses
import glob
import os
import types

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam

from movierec.components import features, preprocessing, training_data
from movierec.components.data import dataset_schema, readers
from movierec.components.ranking_evaluator import executor as evaluator
from movierec.components.ranking_evaluator.eval_config import EvalConfig
from movierec.config import default_schema_path, mf_config_from_dict
from tests.conftest import write

# Two taste groups of 10 users and 6 items. User u of group g viewed every item of its group
# but one, item (u % 6), which is its held-out (eval) event; viewed items are seen twice when
# (u + i) % 3 == 0 (weight 2 after the reader's aggregation).
GROUPS = {"A": [f"a{i}" for i in range(6)], "B": [f"b{i}" for i in range(6)]}
USERS = {f"u{g}{n}": g for g in GROUPS for n in range(10)}


def _events() -> tuple[str, dict]:
    lines, held_out = ["visitor,page,when"], {}
    t = 0
    for user, group in USERS.items():
        n = int(user[2:])
        for i, item in enumerate(GROUPS[group]):
            t += 1
            if i == n % 6:
                held_out[user] = item
                continue
            lines += [f"{user},{item},{t}"] * (2 if (n + i) % 3 == 0 else 1)
    for user, item in held_out.items():
        t += 1
        lines.append(f"{user},{item},{t}")
    return "\n".join(lines) + "\n", held_out


def _example(record: readers.RatingRecord) -> dict:
    """A raw instance dict as tf.Transform's instance-dict coder takes it: every feature a
    list, an absent one (None in the record) empty."""
    out = {}
    for name, value in record.as_feature_dict().items():
        values = [] if value is None else list(value) if isinstance(value, tuple) else [value]
        out[name] = [v.encode() if isinstance(v, str) else v for v in values]
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("implicit"))
    data_dir = os.path.join(tmp, "data")
    events, held_out = _events()
    write(os.path.join(data_dir, "views.csv"), events)
    write(os.path.join(data_dir, "pages.csv"), "page,title,section\n" + "".join(
        f"{item},Page {item},{group}\n" for group, items in GROUPS.items() for item in items))
    write(os.path.join(data_dir, readers.DECLARATION),
          "interactions:\n  path: views.csv\n  columns: {user: visitor, item: page, timestamp: when}\n"
          "items:\n  path: pages.csv\n  columns: {item: page, title: title, genres: section}\n")
    records = list(readers.read_ratings(data_dir))
    is_eval = [held_out[r.user_id] == r.movie_id for r in records]
    train = [_example(r) for r, e in zip(records, is_eval) if not e]
    evaluation = [_example(r) for r, e in zip(records, is_eval) if e]

    schema = dataset_schema.schema_for(data_dir, dataset_schema.read_schema(default_schema_path()))
    metadata = tft.DatasetMetadata(schema)
    transform_dir = os.path.join(tmp, "transform")
    with beam.Pipeline() as p, tft_beam.Context(temp_dir=os.path.join(tmp, "tft-tmp")):
        (out_train, out_meta), transform_fn = (
            (p | "Train" >> beam.Create(train), metadata)
            | tft_beam.AnalyzeAndTransformDataset(preprocessing.preprocessing_fn))
        out_eval, _ = ((p | "Eval" >> beam.Create(evaluation), metadata), transform_fn) | tft_beam.TransformDataset()
        coder = tft.coders.ExampleProtoCoder(out_meta.schema)
        for name, data in (("train", out_train), ("eval", out_eval)):
            _ = (data | f"Encode{name}" >> beam.Map(coder.encode)
                 | f"Write{name}" >> beam.io.WriteToTFRecord(os.path.join(tmp, "examples", name, "part"),
                                                             file_name_suffix=".gz"))
        _ = transform_fn | tft_beam.WriteTransformFn(transform_dir)

    def fn_args(model: str, custom: dict):
        root = os.path.join(tmp, "models", model)
        return types.SimpleNamespace(
            transform_output=transform_dir, custom_config=custom, base_model=None,
            train_files=[os.path.join(tmp, "examples", "train", "*")],
            eval_files=[os.path.join(tmp, "examples", "eval", "*")],
            serving_model_dir=os.path.join(root, "Format-Serving"), eval_model_dir=os.path.join(root, "Format-TFMA"),
            model_run_dir=os.path.join(root, "run"))

    from movierec.components.content import trainer as content_trainer
    from movierec.components.mf import trainer as mf_trainer

    mf_trainer.run_fn(fn_args("mf", {"max_k": 10, "mf": {"embedding_dim": 4, "ials_iterations": 8}}))
    # few events per user: a light prior (smoothing) so that the profiles, not popularity, decide
    content_trainer.run_fn(fn_args("content", {"max_k": 10, "content": {"smoothing": 1.0}}))
    return types.SimpleNamespace(tmp=tmp, transform_dir=transform_dir, records=records, held_out=held_out,
                                 models=os.path.join(tmp, "models"))


def test_reader_aggregates_repeated_views_into_weights(run):
    weights = {(r.user_id, r.movie_id): r.weight for r in run.records}
    assert weights[("uA0", "a3")] == 2.0 and weights[("uA0", "a1")] == 1.0   # (0 + 3) % 3 == 0: seen twice
    assert all(r.rating is None for r in run.records)
    assert len(run.records) == 20 * 6


def test_transform_gives_nan_ratings_and_the_weights(run):
    train = training_data.read_interactions([os.path.join(run.tmp, "examples", "train", "*")])
    assert len(train) == 20 * 5 and np.isnan(train.rating).all()
    assert not features.has_ratings(train.rating)
    raw = [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(
        glob.glob(os.path.join(run.tmp, "examples", "train", "*")), compression_type="GZIP")]
    weights = sorted(e.features.feature[features.WEIGHT].float_list.value[0] for e in raw)
    # 20 users x 5 train views; a view is doubled when (n + i) % 3 == 0, i != n % 6
    doubled = sum(1 for n in range(10) for i in range(6) if i != n % 6 and (n + i) % 3 == 0) * 2
    assert weights.count(2.0) == doubled and weights.count(1.0) == 100 - doubled
    # the trainers read them: Interactions.weight, what the content profiles sum
    assert sorted(train.weight.tolist()) == sorted(weights)
    from movierec.components.content.trainer import event_strength
    np.testing.assert_array_equal(event_strength(train, rated=False), train.weight)


def test_mf_of_implicit_events_has_no_rating_signature(run):
    loaded = tf.saved_model.load(os.path.join(run.models, "mf", "Format-Serving"))
    assert "predict_rating" not in loaded.signatures
    assert {"serving_default", "recommend"} <= set(loaded.signatures)
    out = loaded.signatures["serving_default"](user_id=tf.constant(["uA0", "uB1"]))
    top = [[m.decode() for m in row] for row in out["movie_ids"].numpy()]
    # everything viewed is masked (train and eval, the pushed model); what is left of each
    # user's own group comes first: nothing of group A is left for uA0, so the 6 B pages
    assert sorted(top[0][:6]) == GROUPS["B"] and sorted(top[1][:6]) == GROUPS["A"]
    import json
    with open(os.path.join(run.models, "mf", "run", "training_metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["ratings"] is False and "eval_rmse" not in metrics and metrics["rating_range"] is None


def test_evaluation_export_ranks_the_held_out_view_first_and_passes_the_gate(run):
    train = training_data.read_interactions([os.path.join(run.tmp, "examples", "train", "*")])
    evaluation = training_data.read_interactions([os.path.join(run.tmp, "examples", "eval", "*")])
    out = tft.TFTransformOutput(run.transform_dir)
    vocab = [training_data.decode_vocabulary(out.vocabulary_by_name(n))
             for n in (features.USER_VOCAB, features.MOVIE_VOCAB)]
    data = evaluator.eval_data(train, evaluation, *vocab)
    config = EvalConfig(ks=(1, 10))
    segs = evaluator.segments(data)
    assert evaluator.rating_baselines(data, config) == {}     # no ratings: no bias baseline
    pop = evaluator.list_metrics(evaluator.popularity_top_k(data, 10), data, config.ks, segs)
    for model in ("mf", "content"):
        candidate, top = evaluator.evaluate_model(os.path.join(run.models, model), data, config, segs)
        # the one unviewed page of the user's own group is the held-out one: hit at 1 for all
        assert candidate["hit_rate@1"] == 1.0, model
        assert "rmse" not in candidate
        blessed, reasons = evaluator.decide(config, candidate, {"popularity": pop}, None)
        assert blessed, reasons
        assert "rmse: not gated (the candidate has no predict_rating)" in reasons


def test_content_of_implicit_events(run):
    loaded = tf.saved_model.load(os.path.join(run.models, "content", "Format-Serving"))
    assert "predict_rating" not in loaded.signatures
    import json
    with open(os.path.join(run.models, "content", "run", "training_metrics.json")) as f:
        assert json.load(f)["ratings"] is False


def test_rating_objectives_are_refused_for_implicit_events():
    from movierec.components.mf.trainer import implicit_or_rated
    from tests.mf_fixtures import GROUPS as PAIRS, interactions

    events = interactions(PAIRS, [float("nan")] * len(PAIRS))
    for objective in ("mse", "bayes"):
        with pytest.raises(ValueError, match=f"mf.objective '{objective}' learns from ratings, and this dataset "
                                             "has none"):
            implicit_or_rated(mf_config_from_dict({"objective": objective}), events)
    config, fitted, scale = implicit_or_rated(mf_config_from_dict({"objective": "ials+bayes"}), events)
    assert (config.objective, scale) == ("ials", None) and (fitted.rating == 1.0).all()
    rated = interactions(PAIRS, [3.0] * (len(PAIRS) - 1) + [5.0])
    assert implicit_or_rated(mf_config_from_dict({}), rated)[2] == (3.0, 5.0)


def test_interactions_weight_defaults_to_one_and_is_concatenated():
    from movierec.components.content.trainer import event_strength
    from tests.mf_fixtures import interactions

    plain = interactions([(0, 0), (0, 1)], [4.0, 2.0])
    np.testing.assert_array_equal(plain.weight, [1.0, 1.0])
    weighted = dataclasses.replace(plain, weight=np.array([3.0, 0.5]))
    assert weighted.weight.dtype == np.float32
    both = training_data.Interactions.concat([plain, weighted])
    np.testing.assert_array_equal(both.weight, [1.0, 1.0, 3.0, 0.5])
    np.testing.assert_array_equal(event_strength(weighted, rated=False), [3.0, 0.5])
    np.testing.assert_array_equal(event_strength(weighted, rated=True), [4.0, 2.0])
    with pytest.raises(ValueError, match=r"weight must have one value per interaction \(2\), got shape \(3,\)"):
        dataclasses.replace(plain, weight=np.ones(3))
