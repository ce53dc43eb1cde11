"""RankingEvaluator pieces on hand-worked values; AtomicPusher on real folders."""
import json
import os

import numpy as np
import pytest

from movierec.components.atomic_pusher import executor as pusher
from movierec.components.ranking_evaluator import executor as ev
from movierec.components.ranking_evaluator.eval_config import EvalConfig, Rule
from movierec.components.training_data import Interactions, MovieRows
from movierec.serving import versions


def interactions(users, movies, ratings, titles=None):
    n = len(users)
    titles = [t.encode() for t in titles] if titles else [b""] * n
    return Interactions(np.array(users), np.array(movies), np.array(ratings, np.float32), np.zeros(n, np.int64),
                        movies=MovieRows.first_of(np.array(movies), np.array(titles, object),
                                                  np.zeros(n + 1, np.int64), np.zeros(0, np.int64)))


def test_rules_and_settings_are_checked_when_built():
    with pytest.raises(ValueError, match="the bias baseline predicts ratings: judge it on rmse or mae"):
        Rule("ndcg@10", "bias_baseline")
    with pytest.raises(ValueError, match="popularity ranks movies: judge it on a ranking metric"):
        Rule("rmse", "popularity")
    with pytest.raises(ValueError, match="metric 'ndcg@x' must be rmse, mae or one of"):
        Rule("ndcg@x")
    with pytest.raises(ValueError, match="baseline 'popular' must be one of"):
        Rule("ndcg@10", "popular")
    with pytest.raises(ValueError, match=r"rules: ndcg@10 needs k=10 among the eval ks \[5\]"):
        EvalConfig(ks=(5,))      # the default rules judge ndcg@10
    with pytest.raises(ValueError, match="more than one rule for mf=rmse"):
        EvalConfig(overrides=(("mf", Rule("rmse")), ("mf", Rule("rmse", "bias_baseline"))))
    with pytest.raises(ValueError, match=r"unknown evaluation settings \['kk'\]"):
        EvalConfig.from_dict({"kk": 1})
    assert EvalConfig(ks=(10, 5, 10)).ks == (5, 10)


def test_default_rules_are_the_same_for_every_model_and_overrides_are_per_model():
    assert EvalConfig().rules_for("mf") == EvalConfig().rules_for("content") == (
        Rule("ndcg@10", "popularity"), Rule("rmse", "bias_baseline"))
    cfg = EvalConfig(overrides=(("content", Rule("ndcg@10")), ("mf", Rule("precision@10", "popularity"))))
    assert cfg.rules_for("content") == (Rule("ndcg@10"), Rule("rmse", "bias_baseline"))   # replaced
    assert cfg.rules_for("mf") == (Rule("ndcg@10", "popularity"), Rule("rmse", "bias_baseline"),
                                   Rule("precision@10", "popularity"))                    # added
    # what one evaluator receives crosses the process boundary as JSON and comes back the same
    received = EvalConfig.from_dict(json.loads(json.dumps(cfg.evaluator_config("content"))))
    assert received.rules == cfg.rules_for("content") and received.overrides == ()
    assert received.ks == cfg.ks and received.max_regression == cfg.max_regression


BASELINES = {"popularity": {"ndcg@10": 0.25}, "bias_baseline": {"rmse": 0.95}}


def test_gate_refuses_a_model_that_ranks_below_popularity_even_when_its_rmse_beats_the_bias_baseline():
    ok, why = ev.decide(EvalConfig(), {"ndcg@10": 0.20, "rmse": 0.90}, BASELINES, None)
    assert not ok
    assert why == ["ndcg@10 0.2000 does not beat popularity 0.2500", "rmse 0.9000 beats bias_baseline 0.9500",
                   "no previously blessed model to compare with"]


def test_gate_blesses_a_model_that_beats_both_baselines():
    ok, why = ev.decide(EvalConfig(), {"ndcg@10": 0.30, "rmse": 0.90}, BASELINES, None)
    assert ok and why[:2] == ["ndcg@10 0.3000 beats popularity 0.2500", "rmse 0.9000 beats bias_baseline 0.9500"]
    ok, why = ev.decide(EvalConfig(), {"ndcg@10": 0.30, "rmse": 0.96}, BASELINES, None)
    assert not ok and why[1] == "rmse 0.9600 does not beat bias_baseline 0.9500"


def test_a_model_equal_to_a_baseline_up_to_float_noise_does_not_beat_it():
    """An MF whose rating head is the bias model reproduces the baseline's RMSE to ~1e-10:
    a tie, not a win; a real difference of 1e-4 still counts."""
    ok, why = ev.decide(EvalConfig(), {"ndcg@10": 0.30, "rmse": 0.6449306138}, {
        "popularity": {"ndcg@10": 0.25}, "bias_baseline": {"rmse": 0.6449306140}}, None)
    assert not ok and why[1] == "rmse 0.6449 does not beat bias_baseline 0.6449"
    assert ev.beats(0.6448, 0.6449, lower_is_better=True) and not ev.beats(0.25 + 1e-9, 0.25, lower_is_better=False)


def test_rating_rule_applies_only_to_a_model_with_predict_rating():
    ok, why = ev.decide(EvalConfig(), {"ndcg@10": 0.30}, BASELINES, None)   # no rmse: no predict_rating
    assert ok and why[1] == "rmse: not gated (the candidate has no predict_rating)"
    ok, why = ev.decide(EvalConfig(), {"rmse": 0.90}, BASELINES, None)      # a ranking metric is always due
    assert not ok and why[0] == "ndcg@10: the candidate does not produce it"


def test_no_regression_applies_to_every_gated_metric_relative_to_the_last_blessed_model():
    previous = {"ndcg@10": 0.30, "rmse": 0.90}   # limits at 1%: ndcg@10 >= 0.297, rmse <= 0.909
    ok, why = ev.decide(EvalConfig(), {"ndcg@10": 0.2975, "rmse": 0.905}, BASELINES, previous)
    assert ok and why == ["ndcg@10 0.2975 beats popularity 0.2500",
                          "ndcg@10 0.2975 within 1% of the last blessed model's 0.3000",
                          "rmse 0.9050 beats bias_baseline 0.9500",
                          "rmse 0.9050 within 1% of the last blessed model's 0.9000"]
    ok, why = ev.decide(EvalConfig(), {"ndcg@10": 0.31, "rmse": 0.90}, BASELINES, previous)
    assert ok and why[1] == "ndcg@10 0.3100 better than the last blessed model's 0.3000"
    assert why[3] == "rmse 0.9000 within 1% of the last blessed model's 0.9000"   # equal
    ok, why = ev.decide(EvalConfig(), {"ndcg@10": 0.296, "rmse": 0.905}, BASELINES, previous)
    assert not ok and why[1] == "ndcg@10 0.2960 worse than 1% of the last blessed model's 0.3000"
    ok, why = ev.decide(EvalConfig(), {"ndcg@10": 0.2975, "rmse": 0.91}, BASELINES, previous)
    assert not ok and why[3] == "rmse 0.9100 worse than 1% of the last blessed model's 0.9000"
    # a metric without a baseline is still held to the last blessed model; one the last
    # blessed model lacks cannot be compared
    cfg = EvalConfig(rules=(Rule("ndcg@10"), Rule("rmse", "bias_baseline")), max_regression=0.1)
    ok, why = ev.decide(cfg, {"ndcg@10": 0.26, "rmse": 0.90}, BASELINES, {"ndcg@10": 0.30})
    assert not ok and why == ["ndcg@10 0.2600: no baseline to beat",
                              "ndcg@10 0.2600 worse than 10% of the last blessed model's 0.3000",
                              "rmse 0.9000 beats bias_baseline 0.9500",
                              "rmse: the last blessed model has none to compare with"]


def test_bias_baseline_by_hand():
    # one user, two movies, no regularisation: mu = 3; movie biases +1 / -1, user bias 0
    train = interactions([0, 0], [0, 1], [4.0, 2.0])
    mu, bu, bm = ev.fit_bias_baseline(train, 1, 2, l2=0.0)
    assert mu == 3.0
    np.testing.assert_allclose(bm[:2], [1.0, -1.0])
    np.testing.assert_allclose(bu[:1], [0.0], atol=1e-12)
    assert bu[1] == 0 and bm[2] == 0  # OOV rows


def test_bias_baseline_only_for_rated_data_and_no_threshold_for_implicit_events():
    # rated: the bias model by hand (l2 = 0): mu = 3, movie biases +1 / -1; eval (0, 0) rated 5 -> error 1
    train = interactions([0, 0], [0, 1], [4.0, 2.0])
    rated = ev.eval_data(train, interactions([0], [0], [5.0]), ["u0"], ["m0", "m1"])
    errors = ev.rating_baselines(rated, EvalConfig(bias_l2=0.0))["bias_baseline"]
    assert errors["rmse"] == pytest.approx(1.0) and errors["mae"] == pytest.approx(1.0)
    # implicit events (NaN ratings): no bias baseline, and a rating threshold is refused by name
    nan = float("nan")
    events, held_out = interactions([0, 0], [0, 1], [nan, nan]), interactions([0], [0], [nan])
    assert ev.rating_baselines(ev.eval_data(events, held_out, ["u0"], ["m0", "m1"]), EvalConfig()) == {}
    with pytest.raises(ValueError, match=r"evaluation.rating_threshold=4.0 selects relevant eval ratings, and "
                                         r"this dataset has none \(implicit events\)"):
        ev.eval_data(events, held_out, ["u0"], ["m0", "m1"], rating_threshold=4.0)


def test_popularity_baseline_masks_train_movies():
    train = interactions([0, 1, 1, 2], [0, 0, 1, 2], [5, 5, 5, 5])
    data = ev.EvalData(train, train, ["u0", "u1", "u2"], ["a", "b", "c", "d"], np.array([0, 2]),
                       [{1}, {0}], [np.array([0]), np.array([2])])
    top = ev.popularity_top_k(data, 2)
    assert top.tolist() == [[1, 2], [0, 1]]  # counts a=2, b=1, c=1, d=0; seen movies skipped


def small_eval_data():
    """3 users, 4 movies. Train: u0 rates a 5, b 3, c 5; u1 a 4; u2 a 2, b 5 (movie counts
    a 3, b 2, c 1, d 0; user counts 3, 1, 2). Eval: u0 d; u1 b, c; u2 c, d."""
    titles = {0: "Alpha", 1: "Beta & Co", 2: "Gamma", 3: "Delta"}
    train = interactions([0, 0, 0, 1, 2, 2], [0, 1, 2, 0, 0, 1], [5, 3, 5, 4, 2, 5],
                         [titles[m] for m in [0, 1, 2, 0, 0, 1]])
    evaluation = interactions([0, 1, 1, 2, 2], [3, 1, 2, 2, 3], [4, 5, 3, 4, 1], [titles[m] for m in [3, 1, 2, 2, 3]])
    return ev.eval_data(train, evaluation, ["u0", "u1", "u2"], ["a", "b", "c", "d"])


TOP = np.array([[3, -1], [1, 3], [3, 2]])   # u0: d (hit); u1: b (hit), d; u2: d (hit), c (hit)


def test_segments_and_sample_lists_of_a_small_evaluation():
    data = small_eval_data()
    segs = ev.segments(data)
    # user terciles of counts [3, 1, 2]: q1 = 1, q2 = 2; movies: a holds half the ratings (head),
    # b is the next third (torso), c and d the tail
    assert segs.user_segment.tolist() == [2, 0, 1] and segs.movie_segment.tolist() == [0, 1, 2, 2]
    m = ev.list_metrics(TOP, data, (2,), segs)
    by_users = m["segments"]["user_activity"]
    assert by_users["heavy"]["ndcg@2"] == 1.0 and by_users["medium"]["ndcg@2"] == 1.0
    assert by_users["light"]["ndcg@2"] == pytest.approx(1 / (1 + 1 / np.log2(3)))   # 2 relevant, hit at 1
    # slots: torso 1 (b, a hit), tail 4 (d, d, d, c; 3 hits); eval movies: torso 1, tail 4
    assert m["segments"]["movie_popularity"] == {
        "head": {"share_of_recommendations": 0.0, "precision": None, "recall": None},
        "torso": {"share_of_recommendations": 0.2, "precision": 1.0, "recall": 1.0},
        "tail": {"share_of_recommendations": 0.8, "precision": 0.75, "recall": 0.75}}
    # novelty: p = (count + 1) / (6 + 4): d 1/10 (x3), b 3/10, c 2/10
    assert m["novelty@2"] == pytest.approx((3 * np.log2(10) + np.log2(10 / 3) + np.log2(5)) / 5)
    samples = ev.sample_lists(data, {"mf": TOP}, 3)
    assert [s["user"] for s in samples] == ["u0", "u1", "u2"]
    # u0's best rated: a and c (5; a is rated more in train), then b (3); Delta's title comes from eval
    assert samples[0] == {"user": "u0", "train_ratings": 3, "relevant": 1,
                          "liked": [{"title": "Alpha", "rating": 5.0}, {"title": "Gamma", "rating": 5.0},
                                    {"title": "Beta & Co", "rating": 3.0}],
                          "lists": {"mf": [{"title": "Delta", "hit": True}]}}
    assert samples[1]["lists"]["mf"] == [{"title": "Beta & Co", "hit": True}, {"title": "Delta", "hit": False}]
    assert len(ev.sample_lists(data, {"mf": TOP}, 2)) == 2


def test_report_is_self_contained_html_with_segments_samples_and_plots(tmp_path):
    data = small_eval_data()
    segs = ev.segments(data)
    cand = ev._strip(ev.list_metrics(TOP, data, (2,), segs))
    pop = ev._strip(ev.list_metrics(ev.popularity_top_k(data, 2), data, (2,), segs))
    result = {"model": "mf", "blessed": False, "reasons": ["rmse 1.0000 does not beat bias_baseline 0.9000"],
              "config": {"ks": [2], "rating_threshold": None}, "candidate": {**cand, "rmse": 1.0},
              "previous_blessed": {**cand, "ndcg@2": 0.5},
              "baselines": {"popularity": pop, "bias_baseline": {"rmse": 0.9}}, "eval_users": 3,
              "segments": segs.described, "samples": ev.sample_lists(data, {"mf": TOP}, 1),
              "training": {"loss_history": [2.0, 1.0], "eval_rmse_history": [1.2, 1.0]}}
    path = ev.write_report(str(tmp_path), result, [0.0, 0.5, 1.0], [0.2, 0.3, 0.4])
    html = open(path).read()
    assert "NOT BLESSED" in html and "data:image/png;base64," in html and "src=\"http" not in html
    assert "<th>mf</th><th>last blessed</th><th>popularity</th><th>bias_baseline</th>" in html
    assert f"<tr><th>ndcg@2</th><td>{cand['ndcg@2']:.4f}</td><td>0.5000</td>" in html
    assert "<th>novelty@2</th>" in html and "<th>coverage@2</th>" in html
    assert "By user activity" in html and "<th>heavy</th><td>1</td><td>3</td>" in html   # 1 user, 3 ratings
    assert "<th>tail</th><td>2</td><td>0–1</td><td>16.7%</td><td>80.0%</td>" in html     # c, d; 1 of 6 ratings
    assert "Beta &amp; Co" in html and "<li class=hit>✓ Delta</li>" in html
    assert os.path.getsize(tmp_path / "ndcg_distribution.png") > 1000
    assert os.path.getsize(tmp_path / "training_curves.png") > 1000


def make_model(folder, content=b"graph"):
    os.makedirs(os.path.join(folder, "variables"), exist_ok=True)
    with open(os.path.join(folder, "saved_model.pb"), "wb") as f:
        f.write(content)
    with open(os.path.join(folder, "variables", "variables.index"), "wb") as f:
        f.write(b"index")
    return folder


def test_atomic_push_is_idempotent_and_versions_increase(tmp_path):
    model = make_model(str(tmp_path / "model"))
    base = str(tmp_path / "serving" / "mf")
    v1, written = pusher.push(model, base, model_id=7)
    assert written and versions.list_versions(base) == [v1]
    assert pusher.push(model, base)[0] == v1 and not pusher.push(model, base)[1]  # same model: nothing new
    record = json.load(open(os.path.join(base, str(v1), pusher.PUSH_RECORD)))
    assert record["model_artifact_id"] == 7 and len(record["fingerprint"]) == 64
    other = make_model(str(tmp_path / "model2"), b"another graph")
    v2, written = pusher.push(other, base)
    assert written and v2 > v1 and versions.list_versions(base) == [v1, v2]
    assert not [n for n in os.listdir(base) if n.startswith(".tmp-")]


def test_stale_temporary_push_folders_are_invisible_then_cleaned(tmp_path):
    base = tmp_path / "serving"
    make_model(str(base / ".tmp-123-99"))          # a push killed after copying
    assert versions.list_versions(str(base)) == []  # never a version to a server
    old = os.path.getmtime(base / ".tmp-123-99") - 7200
    os.utime(base / ".tmp-123-99", (old, old))
    pusher.remove_stale_temporaries(str(base))
    assert not (base / ".tmp-123-99").exists()


def test_sample_mean_ci_hand_worked():
    from movierec.components.ranking_metrics import sample_mean_ci

    # 4 of 8 users, values 0, 1, 0, 1: s = sqrt(1/3), s / sqrt(4) = 0.288675, finite-population
    # factor sqrt(4 / 7) = 0.755929, times 1.959964 = 0.427700
    assert sample_mean_ci([0, 1, 0, 1], 8) == pytest.approx(0.4277, abs=1e-4)
    assert sample_mean_ci([0, 1, 0, 1], 4) == 0.0                 # every user: exact
    assert np.isnan(sample_mean_ci([1.0], 8))
    with pytest.raises(ValueError, match="population of 3"):
        sample_mean_ci([0, 1, 0, 1], 3)


def test_sampled_intervals_cover_the_population_mean_about_95_percent_of_the_time():
    from movierec.components.ranking_metrics import sample_mean_ci

    rng = np.random.default_rng(0)
    population = rng.binomial(1, 0.3, size=20_000).astype(float) * rng.random(20_000)   # ndcg-like, skewed
    truth = population.mean()
    covered = 0
    for _ in range(400):
        sample = population[rng.choice(len(population), 500, replace=False)]
        covered += abs(sample.mean() - truth) <= sample_mean_ci(sample, len(population))
    assert 0.92 <= covered / 400 <= 0.98


def test_large_evaluations_rank_a_seeded_sample_and_report_intervals():
    data = small_eval_data()                                     # 3 eval users
    assert ev.sample_users(data, exact_max=3) is data and not data.sampled
    a = ev.sample_users(data, exact_max=2, size=2, seed=1)
    b = ev.sample_users(data, exact_max=2, size=2, seed=1)
    assert a.sampled and a.population == 3 and len(a.users) == 2
    assert a.users.tolist() == b.users.tolist() and a.users.tolist() == sorted(a.users.tolist())
    rows = [data.users.tolist().index(u) for u in a.users]
    assert a.relevant == [data.relevant[r] for r in rows]
    exact = ev.ranking_at(TOP, data, (2,))
    assert "ndcg@2_ci95" not in exact and "per_user" not in exact
    sampled = ev.ranking_at(TOP[rows], a, (2,))
    assert sampled["users"] == 2 and sampled["ndcg@2_ci95"] > 0 and "per_user" not in sampled
    assert set(sampled) - set(exact) == {f"{m}@2_ci95" for m in ("precision", "recall", "ndcg", "map", "hit_rate")}
