"""User feature profiles and their scores: the content model's math, in one place.

Shapes: U users, N catalog movies, G genres, D release decades, F = G + D item features.

Item features X float32 [N, F]: the genre multi-hot (the Catalog's genre matrix) followed by
a one-hot of the release decade read from the title's trailing "(1995)" (a movie without a
year has no decade feature). Decades are on by default because on MovieLens what people
watch depends on how old a film is about as much as on its genre.

What a user's ratings leave behind is four sums, all linear in the ratings, so folding in
new ratings (cold start) is an exact update, not an approximation:

    rating_sums[u]  = sum_m r[u,m] X[m]      float32 [U, F]   (the seed article's R @ X)
    counts[u]       = sum_m X[m]             float32 [U, F]   (over the movies u rated)
    num_rated[u]    = number of ratings      float32 [U]
    rating_total[u] = sum_m r[u,m]           float32 [U]

Two profiles (`ContentConfig.profile`), both [U, F], both what `user_profile` reports:

  "share" (seed article 000): profile[u] = rating_sums[u] / sum(rating_sums[u]); a genre's
      weight is its share of the user's rating mass.
  "lift" (the default): how much more (or less) often than the average rating a user's
      ratings carry feature f, in log space, with ratings above the user's mean counting more
      and ratings below it less (a disliked genre counts against):
          w[u,m]   = 1 + deviation_weight * (r[u,m] - mean_u)
          n[u,f]   = max(0, sum_m w[u,m] X[m,f])
                   = max(0, counts[u,f] (1 - deviation_weight mean_u) + deviation_weight rating_sums[u,f])
          p[f]     = share of all training ratings whose movie has f                  [F]
          lift[u,f]= log((n[u,f] + a p[f]) / ((num_rated[u] + a) p[f]))               (a = smoothing)
      A user with few ratings is pulled towards lift 0 (the average taste) by `a` pseudo
      ratings; a feature nobody rated has lift 0.

Score of user u for movie m, float32 [B, N]:

    score[u,m] = profile[u] . X[m] + popularity_weight * log(1 + count[m])

count[m] is the movie's number of training ratings: the learned popularity prior, which a
user's tastes then re-rank (in "lift", score is a log-probability: the prior times the
user's lift of each feature of the movie). A user whose profile is all zero (no rated movie
has a feature, or nothing rated) is scored by popularity instead: count[m] / max(count).

The seed article's math is `ContentConfig.seed_article()`: share profiles over genres
only, no prior. The defaults were chosen on validation splits carved from the training part
of ML-100k and of a synthetic ml-latest-format dataset: `benchmarks/tune_content.py`.

The profile and score functions are TensorFlow ops so that training, offline evaluation
and the exported SavedModel (`export.py`) run the same code on the same numbers.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import scipy.sparse as sp
import tensorflow as tf

from movierec.components.training_data import Catalog
from movierec.config import ContentConfig


# a trailing "(1995)", optionally followed by spaces; RE2 and Python read it alike
YEAR_PATTERN = r"^.*\((\d{4})\)\s*$"


# -- item features --------------------------------------------------------------------------
def release_years(titles) -> tf.Tensor:
    """Title strings [M] -> the year of a trailing "(YYYY)", int64 [M]; -1 without one."""
    titles = tf.convert_to_tensor(titles, tf.string)
    has_year = tf.strings.regex_full_match(titles, YEAR_PATTERN)
    digits = tf.strings.regex_replace(titles, YEAR_PATTERN, r"\1")
    return tf.where(has_year, tf.strings.to_number(tf.where(has_year, digits, "0"), tf.int64), -1)


def decade_one_hot(titles, decades) -> tf.Tensor:
    """Title strings [M], decade start years int64 [D] -> float32 [M, D] (no year, or a
    decade not in `decades`: an all-zero row)."""
    years = release_years(titles)
    decade = tf.where(years >= 0, years // 10 * 10, -1)
    return tf.cast(tf.equal(decade[:, tf.newaxis], tf.convert_to_tensor(decades, tf.int64)[tf.newaxis, :]), tf.float32)


def item_features(catalog: Catalog, use_decades: bool) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(X float32 [N, F], feature names [F], decade start years int64 [D]); the decades are
    those of the catalog's titles, oldest first, named "1990s"."""
    genres = np.asarray(catalog.genre_matrix, np.float32)
    if not use_decades:
        return genres, list(catalog.genre_names), np.zeros(0, np.int64)
    years = release_years(list(catalog.titles)).numpy() if len(catalog) else np.zeros(0, np.int64)
    decades = np.unique(years[years >= 0] // 10 * 10).astype(np.int64)
    one_hot = decade_one_hot(list(catalog.titles), decades).numpy() if len(catalog) else np.zeros((0, len(decades)))
    return (np.hstack([genres, one_hot]).astype(np.float32),
            list(catalog.genre_names) + [f"{d}s" for d in decades], decades)


# -- the model --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ContentModel:
    """A fitted content model: everything `export.py` serves (shapes in the module doc)."""

    config: ContentConfig
    feature_names: list          # [F]: genre names, then decades ("1990s")
    num_genres: int              # G: the first G features are genres
    decades: np.ndarray          # int64 [D]
    item_features: np.ndarray    # float32 [N, F]
    rating_sums: np.ndarray      # float32 [U, F]
    counts: np.ndarray           # float32 [U, F]
    num_rated: np.ndarray        # float32 [U]
    rating_total: np.ndarray     # float32 [U]
    feature_share: np.ndarray    # float32 [F]
    movie_counts: np.ndarray     # float32 [N], training ratings per movie
    fit_seconds: float = 0.0

    @property
    def num_users(self) -> int:
        return self.rating_sums.shape[0]

    def profiles(self, user_idx=None) -> np.ndarray:
        """Profile weights float32 [B, F] of the given user indices (default: all users)."""
        idx = np.arange(self.num_users) if user_idx is None else np.asarray(user_idx)
        return profile_weights(self.config, self.rating_sums[idx], self.counts[idx], self.num_rated[idx],
                               self.rating_total[idx], self.feature_share).numpy()

    def scores(self, user_idx) -> np.ndarray:
        """score[u, m] float32 [B, N] for user indices [B], exactly what serving ranks by."""
        return score(self.profiles(user_idx), self.item_features, prior(self.config, self.movie_counts),
                     popularity_score(self.movie_counts)).numpy()


def accumulate(user_idx: np.ndarray, movie_idx: np.ndarray, rating: np.ndarray, features: np.ndarray,
               num_users: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(rating_sums [U, F], counts [U, F], num_rated [U], rating_total [U]) of the given
    ratings, out-of-vocabulary users or movies ignored. Sparse (CSR) products: memory grows
    with the number of ratings, never with users x movies."""
    features = np.asarray(features, np.float32)
    n_movies = features.shape[0]
    user_idx, movie_idx = np.asarray(user_idx), np.asarray(movie_idx)
    keep = (user_idx >= 0) & (user_idx < num_users) & (movie_idx >= 0) & (movie_idx < n_movies)
    u, m, r = user_idx[keep], movie_idx[keep], np.asarray(rating, np.float32)[keep]
    rated = sp.csr_matrix((r, (u, m)), shape=(num_users, n_movies))
    seen = sp.csr_matrix((np.ones_like(r), (u, m)), shape=(num_users, n_movies))
    return (np.asarray(rated @ features, np.float32), np.asarray(seen @ features, np.float32),
            np.bincount(u, minlength=num_users).astype(np.float32),
            np.bincount(u, weights=r, minlength=num_users).astype(np.float32))


def fit(user_idx: np.ndarray, movie_idx: np.ndarray, rating: np.ndarray, catalog: Catalog, num_users: int,
        config: ContentConfig | None = None) -> ContentModel:
    """The content model of these training ratings (user/movie indices into the vocabularies
    of `num_users` users and the catalog's movies); `config` None: the tuned defaults."""
    config = ContentConfig() if config is None else config
    started = time.perf_counter()
    features, names, decades = item_features(catalog, config.decades)
    sums, counts, num_rated, total = accumulate(user_idx, movie_idx, rating, features, num_users)
    movie_idx = np.asarray(movie_idx)
    known = movie_idx[(movie_idx >= 0) & (movie_idx < len(catalog))]
    movie_counts = np.bincount(known, minlength=len(catalog)).astype(np.float32)
    share = (movie_counts @ features / max(float(movie_counts.sum()), 1.0)).astype(np.float32)
    return ContentModel(config=config, feature_names=names, num_genres=len(catalog.genre_names), decades=decades,
                        item_features=features, rating_sums=sums, counts=counts, num_rated=num_rated,
                        rating_total=total, feature_share=share, movie_counts=movie_counts,
                        fit_seconds=time.perf_counter() - started)


# -- profile and score: TensorFlow ops, shared with the SavedModel ----------------------------------
def profile_weights(config: ContentConfig, rating_sums, counts, num_rated, rating_total,
                    feature_share) -> tf.Tensor:
    """Profile weights float32 [B, F] from a batch of the four sums (see the module doc)."""
    rating_sums = tf.convert_to_tensor(rating_sums, tf.float32)
    if config.profile == "share":
        return tf.math.divide_no_nan(rating_sums, tf.reduce_sum(rating_sums, axis=1, keepdims=True))
    counts = tf.convert_to_tensor(counts, tf.float32)
    num_rated = tf.convert_to_tensor(num_rated, tf.float32)[:, tf.newaxis]
    mean = tf.math.divide_no_nan(tf.convert_to_tensor(rating_total, tf.float32)[:, tf.newaxis], num_rated)
    share = tf.convert_to_tensor(feature_share, tf.float32)[tf.newaxis, :]
    gamma, a = config.deviation_weight, config.smoothing
    weighted = tf.maximum(counts * (1.0 - gamma * mean) + gamma * rating_sums, 0.0)
    lift = tf.math.log(tf.math.divide_no_nan(weighted + a * share, (num_rated + a) * share))
    return tf.where(share > 0, lift, tf.zeros_like(lift))


def prior(config: ContentConfig, movie_counts) -> np.ndarray:
    """popularity_weight * log(1 + count), float32 [N]."""
    return (config.popularity_weight * np.log1p(np.asarray(movie_counts, np.float64))).astype(np.float32)


def popularity_score(movie_counts) -> np.ndarray:
    """count / max(count), float32 [N]: the score of a user with an all-zero profile."""
    counts = np.asarray(movie_counts, np.float32)
    return counts / max(float(counts.max()) if counts.size else 0.0, 1.0)


def score(profiles, item_features, prior_scores, popularity) -> tf.Tensor:
    """profiles [B, F], item features [C, F], prior [C], popularity [C] -> scores [B, C]."""
    profiles = tf.convert_to_tensor(profiles, tf.float32)
    scores = (tf.matmul(profiles, tf.convert_to_tensor(item_features, tf.float32), transpose_b=True)
              + tf.convert_to_tensor(prior_scores, tf.float32)[tf.newaxis, :])
    has_profile = tf.reduce_any(tf.not_equal(profiles, 0.0), axis=1, keepdims=True)
    return tf.where(has_profile, scores, tf.convert_to_tensor(popularity, tf.float32)[tf.newaxis, :])


def ranked_features(profile: np.ndarray, names: list[str]) -> list[list[tuple[str, float]]]:
    """Each user's features by weight, highest first (ties: vocabulary order)."""
    order = np.argsort(-profile, axis=1, kind="stable")
    return [[(names[g], float(profile[u, g])) for g in order[u]] for u in range(profile.shape[0])]
