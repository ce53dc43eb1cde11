"""Content model: the seed article's toy example by hand (with its settings), lift profiles
with a popularity prior by hand, decades from titles, edge cases, cold start, settings."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from movierec.components.content import export, profiles
from movierec.config import ContentConfig
from movierec.components.recommend import RatedItems
from movierec.components.training_data import Catalog
from movierec.serving.servability import check_servable

USERS = ["Juan", "Daniel", "Ana", "Christian"]
MOVIES = ["Star Wars", "The Dark Knight", "Shrek", "The Incredibles", "Bleu", "Memento"]
GENRES = ["Action", "Sci-Fi", "Comedy", "Cartoon", "Drama"]
RATINGS = np.array([[4, 6, 8, 0, 0, 0],
                    [0, 0, 10, 0, 8, 3],
                    [0, 6, 0, 0, 3, 7],
                    [10, 9, 0, 5, 0, 2]], np.float32)
FEATS = np.array([[1, 1, 0, 0, 1],
                  [1, 1, 0, 0, 0],
                  [0, 0, 1, 1, 0],
                  [1, 0, 1, 1, 0],
                  [0, 0, 0, 0, 1],
                  [1, 0, 0, 0, 1]], np.float32)


def seed_pairs():
    u, m = np.nonzero(RATINGS)
    return u, m, RATINGS[u, m]


def test_profiles_match_the_article_by_hand():
    u, m, r = seed_pairs()
    catalog = Catalog(MOVIES, MOVIES, GENRES, FEATS)
    model = profiles.fit(u, m, r, catalog, 4, ContentConfig.seed_article())
    profile = model.profiles()
    # Juan: SW 4*(A,S,D) + DK 6*(A,S) + Shrek 8*(C,Ca) = (10,10,8,8,4)/40
    np.testing.assert_allclose(profile[0], [0.25, 0.25, 0.2, 0.2, 0.1])
    np.testing.assert_allclose(profile.sum(axis=1), 1.0, rtol=1e-6)
    assert model.feature_names == GENRES
    ranked = [[g for g, _ in row] for row in profiles.ranked_features(profile, model.feature_names)]
    # the article's printed lists (stable order for equal weights)
    assert ranked == [
        ["Action", "Sci-Fi", "Comedy", "Cartoon", "Drama"],
        ["Drama", "Comedy", "Cartoon", "Action", "Sci-Fi"],
        ["Action", "Drama", "Sci-Fi", "Comedy", "Cartoon"],
        ["Action", "Sci-Fi", "Drama", "Comedy", "Cartoon"],
    ]


@pytest.fixture(scope="module")
def seed_model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("content")
    (tmp / "users").write_text("\n".join(USERS) + "\n")
    (tmp / "movies").write_text("\n".join(MOVIES) + "\n")
    (tmp / "genres").write_text("\n".join(GENRES) + "\n")
    u, m, r = seed_pairs()
    catalog = Catalog(movie_ids=MOVIES, titles=[t.upper() for t in MOVIES], genre_names=GENRES, genre_matrix=FEATS)
    out = str(tmp / "export")
    export.export(out, model=profiles.fit(u, m, r, catalog, 4, ContentConfig.seed_article()), catalog=catalog,
                  user_vocab_path=str(tmp / "users"), movie_vocab_path=str(tmp / "movies"),
                  genre_vocab_path=str(tmp / "genres"), rated=RatedItems.from_pairs(u, m, 4, 6),
                  popularity=np.array([2, 3, 2, 1, 2, 3], np.float32), max_k=6)
    return out, tf.saved_model.load(out)


def top(model, users, k=2):
    out = model.signatures["recommend"](user_id=tf.constant(users), k=tf.constant([k] * len(users)),
                                        exclude_movie_ids=tf.constant([[""]] * len(users)))
    return out["movie_ids"].numpy().astype(str).tolist(), out


def test_top2_unseen_movies_by_hand(seed_model):
    _, model = seed_model
    ids, out = top(model, USERS)
    # Juan    (.25,.25,.2,.2,.1):  Incredibles .65, Memento .35, Bleu .1
    # Daniel  (C 10, Ca 10, D 11, A 3, S 0)/34: SW (3+0+11)/34, DK 3/34, Incredibles 23/34
    # Ana     raw (13,6,0,0,10)/29: SW 29/29=1, Shrek 0, Incredibles 13/29
    # Christian raw (26,19,5,5,12)/67: Shrek 10/67, Bleu 12/67
    assert ids == [["The Incredibles", "Memento"], ["The Incredibles", "Star Wars"],
                   ["Star Wars", "The Incredibles"], ["Bleu", "Shrek"]]
    np.testing.assert_allclose(out["scores"].numpy()[0], [0.65, 0.35], rtol=1e-6)
    np.testing.assert_allclose(out["scores"].numpy()[1], [23 / 34, 14 / 34], rtol=1e-6)
    np.testing.assert_allclose(out["scores"].numpy()[3], [12 / 67, 10 / 67], rtol=1e-6)
    for user, row in zip(range(4), ids):  # never a rated movie
        assert not any(RATINGS[user, MOVIES.index(m)] > 0 for m in row)


def test_serving_default_needs_only_user_id(seed_model):
    _, model = seed_model
    out = model.signatures["serving_default"](user_id=tf.constant(["Juan"]))
    ids = out["movie_ids"].numpy().astype(str).tolist()[0]
    # width min(10, max_k = 6); Juan's three unseen movies as in the top-2 case, then padding
    assert ids == ["The Incredibles", "Memento", "Bleu", "", "", ""]
    np.testing.assert_allclose(out["scores"].numpy()[0], [0.65, 0.35, 0.1, 0, 0, 0], rtol=1e-6)
    assert out["valid"].numpy().tolist() == [[True] * 3 + [False] * 3]


def test_user_profile_signature_is_the_articles_explanation(seed_model):
    _, model = seed_model
    out = model.signatures["user_profile"](user_id=tf.constant(["Juan", "stranger"]))
    assert out["genres"].numpy().astype(str)[0].tolist() == ["Action", "Sci-Fi", "Comedy", "Cartoon", "Drama"]
    np.testing.assert_allclose(out["weights"].numpy()[0], [0.25, 0.25, 0.2, 0.2, 0.1])
    np.testing.assert_allclose(out["weights"].numpy()[1], [0, 0, 0, 0, 0])
    assert out["decades"].shape == (2, 0) and out["decade_weights"].shape == (2, 0)  # the seed has none
    assert out["user_known"].numpy().tolist() == [True, False]


def cold(model, users, rated=None, ratings=None, new_ids=(), new_titles=(), new_genres=None, k=3):
    """recommend_cold_start with the same new movies (new_ids [M], new_titles [M],
    new_genres [M, H]) in every row."""
    b, n = len(users), len(new_ids)
    genres = (np.array([new_genres] * b, dtype=object) if new_genres is not None
              else np.zeros((b, n, 0), object))
    return model.signatures["recommend_cold_start"](
        user_id=tf.constant(users), k=tf.constant([k] * b),
        rated_movie_ids=tf.constant(rated if rated is not None else np.zeros((0, 0), object), tf.string),
        ratings=tf.constant(ratings if ratings is not None else np.zeros((0, 0)), tf.float32),
        new_movie_ids=tf.constant([list(new_ids)] * b, tf.string, shape=[b, n]),
        new_movie_titles=tf.constant([list(new_titles)] * b, tf.string, shape=[b, n]),
        new_movie_genres=tf.constant(genres, tf.string))


def test_cold_start_new_movie_with_genres_is_recommended(seed_model):
    _, model = seed_model
    # a new Action+Sci-Fi+Comedy+Cartoon movie scores .25+.25+.2+.2 = .9 for Juan: first
    out = cold(model, ["Juan"], new_ids=["new1"], new_titles=["Brand New"],
               new_genres=[["Action", "Sci-Fi", "Comedy", "Cartoon"]])
    assert out["movie_ids"].numpy().astype(str).tolist() == [["new1", "The Incredibles", "Memento"]]
    assert out["titles"].numpy().astype(str)[0][0] == "Brand New"
    assert out["genres"].numpy().astype(str)[0][0] == "Action|Sci-Fi|Comedy|Cartoon"
    np.testing.assert_allclose(out["scores"].numpy()[0], [0.9, 0.65, 0.35], rtol=1e-6)


def test_cold_start_new_movies_are_per_row_and_padding_adds_nothing(seed_model):
    """Each row has its own new movies ([B, M]), as TF Serving's batching merges requests;
    rows begin with a "" pad and are widened with "" (what TF Serving's padding adds then)."""
    _, model = seed_model
    out = model.signatures["recommend_cold_start"](
        user_id=tf.constant(["Juan", "Daniel"]), k=tf.constant([3, 3]),
        rated_movie_ids=tf.constant([[""], [""]]), ratings=tf.constant([[0.0], [0.0]]),
        new_movie_ids=tf.constant([["", "n1", ""], ["", "n2", "n3"]]),
        new_movie_titles=tf.constant([["", "N1", ""], ["", "N2", "N3"]]),
        new_movie_genres=tf.constant([[["", ""], ["Action", "Sci-Fi"], ["", ""]],
                                      [["", ""], ["Drama", "Comedy"], ["Action", ""]]]))
    # Juan (.25,.25,.2,.2,.1): Incredibles .65, n1 = A + S = .5, Memento .35
    # Daniel (A 3, S 0, C 10, Ca 10, D 11)/34: Incredibles 23/34, n2 = D + C = 21/34, SW 14/34 (n3 = 3/34)
    assert out["movie_ids"].numpy().astype(str).tolist() == [["The Incredibles", "n1", "Memento"],
                                                             ["The Incredibles", "n2", "Star Wars"]]
    np.testing.assert_allclose(out["scores"].numpy(), [[0.65, 0.5, 0.35], [23 / 34, 21 / 34, 14 / 34]], rtol=1e-6)
    assert out["titles"].numpy().astype(str)[:, 1].tolist() == ["N1", "N2"]
    assert out["genres"].numpy().astype(str)[:, 1].tolist() == ["Action|Sci-Fi", "Drama|Comedy"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="new_movie_ids must have one row per user_id"):
        model.signatures["recommend_cold_start"](
            user_id=tf.constant(["Juan", "Daniel"]), k=tf.constant([3, 3]),
            rated_movie_ids=tf.constant([[""], [""]]), ratings=tf.constant([[0.0], [0.0]]),
            new_movie_ids=tf.constant([["n1"]] * 3), new_movie_titles=tf.constant([["N1"]] * 3),
            new_movie_genres=tf.constant([[["Action"]]] * 3))


def test_fold_in_new_user_from_a_few_ratings(seed_model):
    _, model = seed_model
    # a stranger who rated Bleu 5 (Drama) and Shrek 5 (Comedy, Cartoon): profile (0,0,5,5,5)/15
    out = cold(model, ["stranger"], rated=[["Bleu", "Shrek"]], ratings=[[5.0, 5.0]], k=2)
    # Incredibles (A,C,Ca) = 10/15; SW (A,S,D) = 5/15 = Memento (A,D): tie -> lower index (SW)
    assert out["movie_ids"].numpy().astype(str).tolist() == [["The Incredibles", "Star Wars"]]
    np.testing.assert_allclose(out["scores"].numpy()[0], [10 / 15, 5 / 15], rtol=1e-6)
    assert out["user_known"].numpy().tolist() == [True]


def test_unknown_user_without_pairs_gets_popularity_and_errors_are_named(seed_model):
    _, model = seed_model
    ids, out = top(model, ["stranger"], k=3)
    assert ids == [["The Dark Knight", "Memento", "Star Wars"]]  # popularity 3, 3, 2 (lower index first)
    with pytest.raises(tf.errors.InvalidArgumentError, match="genre names of the vocabulary"):
        cold(model, ["Juan"], new_ids=["n"], new_titles=["N"], new_genres=[["Western"]])
    with pytest.raises(tf.errors.InvalidArgumentError, match="must be catalog movies"):
        cold(model, ["Juan"], rated=[["nope"]], ratings=[[3.0]])


def test_no_genre_user_and_no_genre_movie(tmp_path):
    """A user whose rated movies have no genre is served popularity; a no-genre movie scores 0."""
    feats = np.array([[0, 0], [1, 0], [0, 1]], np.float32)  # movie a has no genre
    (tmp_path / "u").write_text("plain\nfan\n")
    (tmp_path / "m").write_text("a\nb\nc\n")
    (tmp_path / "g").write_text("X\nY\n")
    u, m, r = np.array([0, 1]), np.array([0, 1]), np.array([5.0, 5.0], np.float32)
    catalog = Catalog(["a", "b", "c"], ["A", "B", "C"], ["X", "Y"], feats)
    model = profiles.fit(u, m, r, catalog, 2, ContentConfig.seed_article())
    np.testing.assert_array_equal(model.profiles()[0], [0, 0])
    out_dir = str(tmp_path / "e")
    export.export(out_dir, model=model, catalog=catalog,
                  user_vocab_path=str(tmp_path / "u"), movie_vocab_path=str(tmp_path / "m"),
                  genre_vocab_path=str(tmp_path / "g"), rated=RatedItems.from_pairs(u, m, 2, 3),
                  popularity=np.array([1, 4, 2], np.float32), max_k=3)
    model = tf.saved_model.load(out_dir)
    ids, out = top(model, ["plain", "fan"], k=2)
    assert ids[0] == ["b", "c"]                      # popularity 4/4, 2/4 (a is rated)
    np.testing.assert_allclose(out["scores"].numpy()[0], [1.0, 0.5])
    assert ids[1] == ["a", "c"]                      # fan likes X only (b rated): a and c score 0, lower index first
    np.testing.assert_allclose(out["scores"].numpy()[1], [0.0, 0.0])
    assert check_servable(out_dir)["signatures"] == ["recommend", "recommend_cold_start", "serving_default",
                                                  "user_profile"]


def test_profiles_scale_without_dense_matrix():
    rng = np.random.default_rng(0)
    n, users, movies = 200_000, 50_000, 30_000
    feats = (rng.random((movies, 20)) < 0.1).astype(np.float32)
    sums, counts, num_rated, total = profiles.accumulate(rng.integers(0, users, n), rng.integers(0, movies, n),
                                                         rng.random(n).astype(np.float32), feats, users)
    assert sums.shape == counts.shape == (users, 20) and sums.dtype == np.float32
    assert num_rated.sum() == n and num_rated.shape == total.shape == (users,)


# -- lift profiles with the popularity prior, by hand ------------------------------------------
# genres X, Y; a (X, 1995), b (Y, 1995), c (X+Y, 1987); u0 rated a 5 and b 1, u1 rated c 4.
# Every movie has one rating: share of ratings with X = with Y = 2/3, 1980s 1/3, 1990s 2/3;
# prior = log(1 + 1) = log 2 for every movie.
SMALL_FEATS = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
SMALL = Catalog(["a", "b", "c"], ["A (1995)", "B (1995)", "C (1987)"], ["X", "Y"], SMALL_FEATS)
SMALL_PAIRS = (np.array([0, 0, 1]), np.array([0, 1, 2]), np.array([5.0, 1.0, 4.0], np.float32))
LIFT = ContentConfig(profile="lift", smoothing=1.0, deviation_weight=0.5, popularity_weight=1.0, decades=False)


def export_small(tmp_path, config):
    (tmp_path / "u").write_text("u0\nu1\n")
    (tmp_path / "m").write_text("a\nb\nc\n")
    (tmp_path / "g").write_text("X\nY\n")
    u, m, _ = SMALL_PAIRS
    model = profiles.fit(*SMALL_PAIRS, SMALL, 2, config)
    out_dir = str(tmp_path / "e")
    export.export(out_dir, model=model, catalog=SMALL, user_vocab_path=str(tmp_path / "u"),
                  movie_vocab_path=str(tmp_path / "m"), genre_vocab_path=str(tmp_path / "g"),
                  rated=RatedItems.from_pairs(u, m, 2, 3), popularity=np.ones(3, np.float32), max_k=6)
    return model, tf.saved_model.load(out_dir)


def test_lift_profile_counts_a_disliked_genre_against(tmp_path):
    model, served = export_small(tmp_path, LIFT)
    # u0: mean 3, weights 1 + .5 (r - 3): a 2, b 0 -> n = (X 2, Y 0) over 2 ratings, a = 1 pseudo rating
    #     lift X = log((2 + 2/3) / (3 * 2/3)) = log(4/3), lift Y = log((0 + 2/3) / 2) = log(1/3)
    # u1: mean 4, c weighs 1 -> lift X = lift Y = log((1 + 2/3) / (2 * 2/3)) = log(5/4)
    np.testing.assert_allclose(model.profiles(), np.log([[4 / 3, 1 / 3], [5 / 4, 5 / 4]]), rtol=1e-6)
    out = served.signatures["user_profile"](user_id=tf.constant(["u0"]))
    assert out["genres"].numpy().astype(str).tolist() == [["X", "Y"]]
    np.testing.assert_allclose(out["weights"].numpy(), np.log([[4 / 3, 1 / 3]]), rtol=1e-6)
    # u0's only unseen movie c: log(4/3) + log(1/3) + log 2 = log(8/9); u1: a = b = log(5/4) + log 2
    ids, out = top(served, ["u0", "u1"], k=2)
    assert ids == [["c", ""], ["a", "b"]]
    np.testing.assert_allclose(out["scores"].numpy(), [[np.log(8 / 9), 0], [np.log(5 / 2), np.log(5 / 2)]],
                               rtol=1e-6)
    np.testing.assert_allclose(model.scores([0])[0, 2], np.log(8 / 9), rtol=1e-6)  # offline = served


def test_lift_fold_in_is_exact_and_new_movies_have_no_prior(tmp_path):
    _, served = export_small(tmp_path, LIFT)
    # folding in u1's own rating reproduces u1's scores exactly
    folded = cold(served, ["stranger"], rated=[["c"]], ratings=[[4.0]], k=2)
    _, known = top(served, ["u1"], k=2)
    np.testing.assert_allclose(folded["scores"].numpy(), known["scores"].numpy(), rtol=1e-6)
    # a stranger who rated a 5: n X = 1 of 1 rating -> lift X = log(5/4), lift Y = log((2/3) / (4/3)) = log(1/2)
    # c: log(5/4) + log(1/2) + log 2 = log(5/4); new X movie: log(5/4), no prior; b: log(1/2) + log 2 = 0
    out = cold(served, ["stranger"], rated=[["a"]], ratings=[[5.0]], new_ids=["n"], new_titles=["N (2001)"],
               new_genres=[["X"]], k=3)
    assert out["movie_ids"].numpy().astype(str).tolist() == [["c", "n", "b"]]
    np.testing.assert_allclose(out["scores"].numpy()[0], np.log([5 / 4, 5 / 4, 1]), atol=1e-6)
    assert out["user_known"].numpy().tolist() == [True]


def test_decades_come_from_titles_and_score_new_movies(tmp_path):
    years = profiles.release_years(["Toy Story (1995)", "Babylon 5 (1994) ", "unknown", "Film (1995) (cut)",
                                    "(2003)"]).numpy()
    assert years.tolist() == [1995, 1994, -1, -1, 2003]
    features, names, decades = profiles.item_features(SMALL, use_decades=True)
    assert names == ["X", "Y", "1980s", "1990s"] and decades.tolist() == [1980, 1990]
    np.testing.assert_array_equal(features, [[1, 0, 0, 1], [0, 1, 0, 1], [1, 1, 1, 0]])
    _, served = export_small(tmp_path, dataclasses.replace(LIFT, decades=True))
    # stranger rated a (X, 1990s) 5: lift X = lift 1990s = log(5/4); Y = log(1/2); 1980s = log((1/3) / (2/3))
    out = served.signatures["user_profile"](user_id=tf.constant(["u0"]))
    assert out["decades"].numpy().astype(str).tolist() == [["1990s", "1980s"]]
    out = cold(served, ["stranger"], rated=[["a"]], ratings=[[5.0]], new_ids=["n", "m", "q", "old"],
               new_titles=["N (1995)", "M (1982)", "Q", "Old (1950)"], new_genres=[["X"]] * 4, k=6)
    # b: Y + 1990s + prior = log(1/2) + log(5/4) + log 2; c: X + Y + 1980s + prior = log(5/8);
    # n: X + 1990s = 2 log(5/4); m: X + 1980s = log(5/8); q (no year), old (no catalog decade): log(5/4)
    assert out["movie_ids"].numpy().astype(str).tolist() == [["n", "b", "q", "old", "c", "m"]]
    np.testing.assert_allclose(out["scores"].numpy()[0], np.log([25 / 16, 5 / 4, 5 / 4, 5 / 4, 5 / 8, 5 / 8]),
                               atol=1e-6)
    assert check_servable(str(tmp_path / "e"))["signatures"] == [
        "recommend", "recommend_cold_start", "serving_default", "user_profile"]


def test_settings_are_checked_by_name():
    with pytest.raises(ValueError, match="profile='cosine'"):
        ContentConfig(profile="cosine")
    with pytest.raises(ValueError, match=r"smoothing=0\.0"):
        ContentConfig(smoothing=0.0)
    with pytest.raises(ValueError, match="deviation_weight=1.5"):
        ContentConfig(deviation_weight=1.5)
    with pytest.raises(ValueError, match="popularity_weight=-1"):
        ContentConfig(popularity_weight=-1)
    with pytest.raises(ValueError, match=r"unknown content settings \['beta'\]"):
        ContentConfig.from_dict({"beta": 1.0})
    assert ContentConfig.from_dict({}) == ContentConfig()
