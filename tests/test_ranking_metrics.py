"""Ranking metrics on hand-worked cases."""
import math

import pytest

from movierec.components.ranking_metrics import (
    by_movie_segment, by_user_segment, movie_popularity_segments, novelty, ranking_metrics,
    user_activity_segments)


def test_hand_worked_two_users():
    # user 0: relevant {1, 3}; list [1, 2, 3] -> hits 1,0,1
    # user 1: relevant {5} (fewer relevant than k); list [4, 5, -1] -> hit at rank 2, padded
    m = ranking_metrics([[1, 2, 3], [4, 5, -1]], [{1, 3}, {5}], k=3, catalog_size=10)
    d = [1 / math.log2(i + 2) for i in range(3)]
    ndcg0 = (d[0] + d[2]) / (d[0] + d[1])
    ndcg1 = d[1] / d[0]
    assert m["precision@3"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert m["recall@3"] == pytest.approx((1.0 + 1.0) / 2)
    assert m["ndcg@3"] == pytest.approx((ndcg0 + ndcg1) / 2)
    ap0 = (1 / 1 + 2 / 3) / 2          # precision@1 = 1, precision@3 = 2/3, / min(2, 3)
    ap1 = (1 / 2) / 1                  # precision@2 = 1/2, / min(1, 3)
    assert m["map@3"] == pytest.approx((ap0 + ap1) / 2)
    assert m["hit_rate@3"] == 1.0
    assert m["coverage@3"] == pytest.approx(5 / 10)   # items 1, 2, 3, 4, 5
    assert m["users"] == 2 and m["users_without_relevant"] == 0


def test_user_without_relevant_items_is_left_out_and_counted():
    m = ranking_metrics([[1, 2], [3, 4]], [{9}, set()], k=2, catalog_size=4)
    assert m["users"] == 1 and m["users_without_relevant"] == 1
    assert m["ndcg@2"] == 0.0 and m["hit_rate@2"] == 0.0
    assert m["coverage@2"] == 1.0


def test_perfect_list_and_k_shorter_than_list():
    m = ranking_metrics([[7, 8, 9]], [{7, 8, 9}], k=2, catalog_size=100)
    assert m["ndcg@2"] == pytest.approx(1.0) and m["precision@2"] == 1.0
    assert m["recall@2"] == pytest.approx(2 / 3) and m["map@2"] == pytest.approx(1.0)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="k=4 must be in 1..3"):
        ranking_metrics([[1, 2, 3]], [{1}], k=4, catalog_size=3)
    with pytest.raises(ValueError, match="2 ranked lists but 1 relevance sets"):
        ranking_metrics([[1], [2]], [{1}], k=1, catalog_size=3)


def test_novelty_is_mean_self_information_with_add_one_counts():
    # counts [3, 1, 0, 0]: C = 4, N = 4 -> p = 4/8, 2/8, 1/8, 1/8 -> 1, 2, 3, 3 bits
    counts = [3, 1, 0, 0]
    top = [[0, 1, -1], [2, 0, 3]]
    assert novelty(top, 3, counts) == pytest.approx((1 + 2 + 3 + 1 + 3) / 5)   # padding skipped
    assert novelty(top, 2, counts) == pytest.approx((1 + 2 + 3 + 1) / 4)
    assert novelty([[-1]], 1, counts) == 0.0


def test_user_activity_terciles_keep_ties_together():
    # sorted counts 1..6: q1 = 2 (rank 2), q2 = 4 (rank 4)
    segment, described = user_activity_segments([5, 1, 3, 6, 2, 4])
    assert segment.tolist() == [2, 0, 1, 2, 0, 1]
    assert described[0] == {"name": "light", "users": 2, "min_count": 1, "max_count": 2}
    assert described[2] == {"name": "heavy", "users": 2, "min_count": 5, "max_count": 6}
    # [2, 2, 2, 5]: q1 = q2 = 2, so every 2 is light and the medium tercile is empty
    segment, described = user_activity_segments([2, 2, 2, 5])
    assert segment.tolist() == [0, 0, 0, 2]
    assert described[1] == {"name": "medium", "users": 0, "min_count": None, "max_count": None}


def test_movie_popularity_thirds_of_the_train_ratings():
    # by count: item 1 (6), 3 (3), 4 (2), 0 (1), 2 (0); C = 12; ratings before each: 0, 6, 9, 11, 12
    # head: before < 4 -> item 1; torso: before < 8 -> item 3; tail: items 4, 0, 2
    segment, described = movie_popularity_segments([1, 6, 0, 3, 2])
    assert segment.tolist() == [2, 0, 2, 1, 2]
    assert described == [
        {"name": "head", "movies": 1, "min_count": 6, "max_count": 6, "share_of_ratings": 0.5},
        {"name": "torso", "movies": 1, "min_count": 3, "max_count": 3, "share_of_ratings": 0.25},
        {"name": "tail", "movies": 3, "min_count": 0, "max_count": 2, "share_of_ratings": 0.25}]


def test_by_movie_segment_shares_precision_and_recall():
    segment = [2, 0, 2, 1, 2]      # items: 1 head, 3 torso, 0 / 2 / 4 tail
    # user 0: recommends 1 (head), 3 (torso, hit), 0 (tail, hit); relevant 3, 0 and -5 (outside
    #         the catalog: tail). user 1: 1 (head), 4 (tail, hit), padding; relevant 4, 2 (tail)
    m = by_movie_segment([[1, 3, 0], [1, 4, -1]], [{3, 0, -5}, {4, 2}], 3, segment)
    # slots head 2, torso 1, tail 2 (of 5); hits 0, 1, 2; relevant 0, 1, 4
    assert m["head"] == {"share_of_recommendations": 0.4, "precision": 0.0, "recall": None}
    assert m["torso"] == {"share_of_recommendations": 0.2, "precision": 1.0, "recall": 1.0}
    assert m["tail"] == {"share_of_recommendations": 0.4, "precision": 1.0, "recall": 0.5}


def test_by_user_segment_is_ranking_metrics_on_each_segment():
    # light: users 0 (hit at rank 1: NDCG 1) and 2 (hit at rank 2: NDCG 1/log2(3)); heavy: user 1 (no hit)
    m = by_user_segment([[1, 2], [3, 4], [5, 6]], [{1}, {9}, {6}], 2, 10, [0, 2, 0])
    assert m["light"] == {"users": 2, "ndcg@2": pytest.approx((1 + 1 / math.log2(3)) / 2), "precision@2": 0.5}
    assert m["medium"] == {"users": 0, "ndcg@2": None, "precision@2": None}
    assert m["heavy"] == {"users": 1, "ndcg@2": 0.0, "precision@2": 0.0}
