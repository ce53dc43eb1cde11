"""A deterministic, MovieLens-shaped synthetic dataset whose users have genre tastes.

Used when no real data is at hand (no `--data-dir`, no cache, no network) and by tests and
scale benchmarks. The output is the `ml-latest` layout (`ratings.csv`, `movies.csv`), so it
goes through exactly the same reader and checks as real MovieLens files.

The generative story (all draws from one seeded numpy Generator, consumed in a fixed order,
so the same arguments always give byte-identical files):

* each movie has 1-3 of the 18 MovieLens genres, a quality offset q ~ N(0, 0.4) and a
  power-law popularity: the movie of popularity rank r (a random permutation) has weight
  (r + r0)^-2 with r0 = max(10, movies / 225), so a few movies are rated by about half the
  users and the median movie by a few, as in MovieLens-25M;
* each user has a genre taste vector t ~ Dirichlet(0.3) (a few favourite genres), a rating
  bias b ~ N(0, 0.3) and a log-normal activity: at least `min_per_user` ratings
  (MovieLens-25M keeps users with >= 20), mean `ratings / users`, median about half the mean,
  at most half the catalog;
* affinity(user, movie) = mean of t over the movie's genres, divided by the user's largest
  affinity over the catalog's genre combinations (a favourite-genre movie has affinity 1);
* a user picks which movies to rate, without replacement, with probability proportional to
  popularity x (0.2 + affinity), so tastes show in what is watched as well as in ratings;
* rating = 3.9 + b + q + 1.6 (affinity - 0.5) + N(0, 0.45), rounded to half stars in 0.5..5;
* timestamps: each user starts at a uniform time in MovieLens-25M's range (1995-2019) and
  rates over a log-normal period (median 3 days); a user's lines are in time order.

Cost is linear in the number of ratings (no users x movies matrix): popularity x (0.2 +
affinity) is an exact mixture of one popularity component and one component per genre
(weight t_g x the genre's popularity mass / the user's largest affinity; inside genre g a
movie is drawn with weight popularity / its number of genres), so each rating is one
categorical draw (a binary search in a cumulative table). Draws are made for a block of
users at once, repeated draws of a (user, movie) pair are dropped and topped up; a user who
needs more than 1/20 of the catalog, or is not filled after a few rounds, is drawn exactly
over the whole catalog (Gumbel top-k), which costs at most 20 x that user's ratings.
Lines are formatted by Arrow compute kernels, not per line in Python.
"""
from __future__ import annotations

import dataclasses
import os
import posixpath

import numpy as np

GENRES = ("Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary",
          "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
          "Sci-Fi", "Thriller", "War", "Western")

POPULARITY_EXPONENT = 2.0   # popularity of rank r: (r + offset)^-exponent ...
POPULARITY_OFFSET = 1 / 225  # ... offset = this share of the catalog (at least 10): MovieLens-25M's
                             # head (the top movie rated by about half the users) and tail (median movie
                             # rated a few times) at 59k movies
ACTIVITY_SIGMA = 1.2        # log-normal sigma of ratings per user (MovieLens-25M: median ~ mean / 2.2)
BLOCK_USERS = 2048          # users drawn together (fixed: part of what the seed determines)
EXACT_SHARE = 20            # users needing more than movies / EXACT_SHARE ratings are drawn exactly
EXACT_BATCH_KEYS = 1 << 22  # most keys (users x movies) of one exact draw
TOP_UP_ROUNDS = 6           # rounds of topping up repeated draws before drawing exactly
TIME_START, TIME_END = 789_652_009, 1_574_327_703   # MovieLens-25M's first and last rating


@dataclasses.dataclass(frozen=True)
class SynthSpec:
    users: int = 600
    movies: int = 1200
    ratings: int = 60_000
    seed: int = 42

    def __post_init__(self) -> None:
        if self.users < 1:
            raise ValueError(f"users must be >= 1, got {self.users}")
        if self.movies < 5:
            raise ValueError(f"movies must be >= 5, got {self.movies}")
        if self.ratings < self.users * 5:
            raise ValueError(f"ratings={self.ratings} is too few: every user rates at least 5 "
                             f"movies, so at least users*5={self.users * 5} are needed")
        if self.ratings > self.users * self.movies // 2:
            raise ValueError(f"ratings={self.ratings} is too many for {self.users} users x "
                             f"{self.movies} movies (at most half the matrix, "
                             f"{self.users * self.movies // 2})")

    @property
    def min_per_user(self) -> int:
        """Fewest ratings of a user: a fifth of the mean, within 5..20 (MovieLens-25M: 20)."""
        return int(min(20, max(5, self.ratings // self.users // 5)))

    @property
    def max_per_user(self) -> int:
        """Most ratings of a user: half the catalog, rounded up."""
        return (self.movies + 1) // 2


def ratings_per_user(spec: SynthSpec, activity: np.ndarray) -> np.ndarray:
    """int64 [users]: within min_per_user..max_per_user, summing exactly to `spec.ratings`,
    the ratings above the minimum shared in proportion to `activity`."""
    low = min(spec.min_per_user, spec.ratings // spec.users)
    counts = np.full(spec.users, low, np.int64)
    while (left := spec.ratings - counts.sum()) > 0:
        room = spec.max_per_user - counts
        weights = np.where(room > 0, activity, 0.0)
        add = np.minimum(np.floor(left * weights / weights.sum()).astype(np.int64), room)
        if add.sum() == 0:  # fewer left than users with room: one each, most active first
            order = np.argsort(-weights, kind="stable")[:left]
            add = np.zeros_like(counts)
            add[order[room[order] > 0]] = 1
        counts += add
    return counts


@dataclasses.dataclass(frozen=True)
class _Catalog:
    """The movies' side of the story. M movies, G = 18 genres, C genre combinations."""

    genres: np.ndarray        # int64 [M, 3], -1 padded
    n_genres: np.ndarray      # int64 [M]
    quality: np.ndarray       # float64 [M]
    popularity: np.ndarray    # float64 [M]
    membership: np.ndarray    # float64 [M, G], rows sum to 1
    combos: np.ndarray        # float64 [C, G], the distinct rows of membership
    genre_mass: np.ndarray    # float64 [G]: sum of popularity / n_genres over the genre's movies
    global_cdf: np.ndarray    # float64 [M]: cumulative popularity, last = 1
    genre_cdf: np.ndarray     # float64 [sum n_genres]: genre g's movies at g + (0, 1]
    genre_movie: np.ndarray   # int64, the movie of each genre_cdf entry


def _catalog(rng: np.random.Generator, movies: int) -> _Catalog:
    g = len(GENRES)
    n_genres = rng.choice([1, 2, 3], size=movies, p=[0.45, 0.4, 0.15]).astype(np.int64)
    order = np.argsort(rng.random((movies, g)), axis=1)[:, :3]
    genres = np.where(np.arange(3) < n_genres[:, None], np.sort(np.where(
        np.arange(3) < n_genres[:, None], order, g), axis=1), -1)
    genres[genres == g] = -1
    quality = rng.normal(0.0, 0.4, size=movies)
    rank = rng.permutation(movies)
    popularity = (rank + max(10.0, movies * POPULARITY_OFFSET)) ** -POPULARITY_EXPONENT
    membership = np.zeros((movies, g))
    rows = np.repeat(np.arange(movies), n_genres)
    cols = genres[genres >= 0]
    membership[rows, cols] = 1.0 / n_genres[rows]
    share = popularity[rows] / n_genres[rows]
    by_genre = np.lexsort((rows, cols))
    genre_of, movie_of, w = cols[by_genre], rows[by_genre], share[by_genre]
    genre_mass = np.bincount(genre_of, weights=w, minlength=g)
    cum = np.cumsum(w)
    start = np.concatenate([[0.0], np.cumsum(genre_mass)])[genre_of]
    genre_cdf = genre_of + (cum - start) / genre_mass[genre_of]
    genre_cdf[np.r_[genre_of[1:] != genre_of[:-1], True]] = genre_of[np.r_[genre_of[1:] != genre_of[:-1], True]] + 1.0
    global_cdf = np.cumsum(popularity)
    global_cdf /= global_cdf[-1]
    return _Catalog(genres, n_genres, quality, popularity, membership, np.unique(membership, axis=0),
                    genre_mass, global_cdf, genre_cdf, movie_of)


def _draw(rng: np.random.Generator, cat: _Catalog, mixture_cdf: np.ndarray, user_rows: np.ndarray) -> np.ndarray:
    """One movie per entry of `user_rows` (row of the block's users), from each user's
    mixture [block, 1 + G] (column 0 the popularity component, then one per genre)."""
    u = rng.random(len(user_rows))
    comp = (mixture_cdf[user_rows] < u[:, None]).sum(axis=1)
    comp = np.minimum(comp, mixture_cdf.shape[1] - 1)
    x = rng.random(len(user_rows))
    movie = np.empty(len(user_rows), np.int64)
    pop = comp == 0
    movie[pop] = np.searchsorted(cat.global_cdf, x[pop], side="right")
    genre = comp[~pop] - 1
    idx = np.searchsorted(cat.genre_cdf, genre + x[~pop], side="right")
    movie[~pop] = cat.genre_movie[np.minimum(idx, len(cat.genre_movie) - 1)]
    return np.minimum(movie, len(cat.popularity) - 1)


def _exact(rng: np.random.Generator, cat: _Catalog, tastes: np.ndarray, tops: np.ndarray, need: np.ndarray,
           taken_rows: np.ndarray, taken_movies: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, movie): need[i] movies for row i, none of them a (taken_rows, taken_movies)
    pair, drawn without replacement with weight popularity x (0.2 + affinity) over the
    whole catalog (Gumbel top-k over a [rows, M] key matrix)."""
    weight = cat.popularity * (0.2 + (tastes @ cat.membership.T) / tops[:, None])
    keys = np.log(weight) + rng.gumbel(size=weight.shape)
    keys[taken_rows, taken_movies] = -np.inf
    order = np.argsort(-keys, axis=1, kind="stable")
    keep = np.arange(keys.shape[1]) < need[:, None]
    return np.nonzero(keep)[0], order[keep]


def _choose(rng: np.random.Generator, cat: _Catalog, tastes: np.ndarray, tops: np.ndarray,
            need: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(user row, movie) of a block: `need[i]` distinct movies for user row i, rows grouped."""
    movies = len(cat.popularity)
    mixture = np.concatenate([np.full((len(need), 1), 0.2), tastes * cat.genre_mass / tops[:, None]], axis=1)
    mixture_cdf = np.cumsum(mixture, axis=1)
    mixture_cdf /= mixture_cdf[:, -1:]
    exact = need * EXACT_SHARE > movies
    have_rows, have_movies = np.zeros(0, np.int64), np.zeros(0, np.int64)
    short = np.where(exact, 0, need)
    for _ in range(TOP_UP_ROUNDS):
        if not short.any():
            break
        draws = np.repeat(np.arange(len(need)), short + short // 4 + 2)
        cand = _draw(rng, cat, mixture_cdf, draws)
        rows = np.concatenate([have_rows, draws])
        picked = np.concatenate([have_movies, cand])
        _, first = np.unique(rows * movies + picked, return_index=True)
        first.sort()                                  # kept pairs first, then new ones in draw order
        rows, picked = rows[first], picked[first]
        order = np.argsort(rows, kind="stable")
        rows, picked = rows[order], picked[order]
        starts = np.searchsorted(rows, np.arange(len(need)))
        rank = np.arange(len(rows)) - starts[rows]
        keep = rank < need[rows]
        have_rows, have_movies = rows[keep], picked[keep]
        short = np.where(exact, 0, need - np.bincount(have_rows, minlength=len(need)))
    got = np.bincount(have_rows, minlength=len(need))
    rows, picked = have_rows, have_movies
    rest = np.flatnonzero(got < need)
    for part in np.array_split(rest, max(1, -(-len(rest) * len(cat.popularity) // EXACT_BATCH_KEYS))):
        if not len(part):
            continue
        slot = np.full(len(need), -1, np.int64)
        slot[part] = np.arange(len(part))
        taken = slot[have_rows] >= 0
        r, m = _exact(rng, cat, tastes[part], tops[part], need[part] - got[part],
                      slot[have_rows[taken]], have_movies[taken])
        rows, picked = np.concatenate([rows, part[r]]), np.concatenate([picked, m])
    order = np.argsort(rows, kind="stable")
    return rows[order], picked[order]


def _lines(users: np.ndarray, movies: np.ndarray, halves: np.ndarray, times: np.ndarray) -> bytes:
    """`user,movie,rating,timestamp\\n` lines as one bytes buffer, formatted by Arrow kernels
    (ids 1-based; rating from its count of half stars)."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.compute as pc  # noqa: PLC0415

    stars = pa.array([f"{h / 2:.1f}" for h in range(11)])
    line = pc.binary_join_element_wise(
        pc.cast(pa.array(users), pa.string()), pc.cast(pa.array(movies), pa.string()),
        stars.take(pa.array(halves)), pc.cast(pa.array(times), pa.string()), ",")
    line = pc.binary_join_element_wise(line, "", "\n")
    offsets = np.frombuffer(line.buffers()[1], np.int32)
    return line.buffers()[2][offsets[line.offset]:offsets[line.offset + len(line)]].to_pybytes()


def _open(path: str):
    """tf.io.gfile when TensorFlow is installed (gs://, s3:// outputs), else local files."""
    try:
        import tensorflow as tf  # noqa: PLC0415
    except ImportError:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        return open(path, "wb")
    tf.io.gfile.makedirs(posixpath.dirname(path))
    return tf.io.gfile.GFile(path, "wb")


def generate(spec: SynthSpec, out_dir: str) -> dict:
    """Writes `ratings.csv` and `movies.csv` under `out_dir`; returns a summary dict."""
    rng = np.random.default_rng(spec.seed)
    cat = _catalog(rng, spec.movies)
    tastes = rng.dirichlet(np.full(len(GENRES), 0.3), size=spec.users)
    user_bias = rng.normal(0.0, 0.3, size=spec.users)
    activity = rng.lognormal(0.0, ACTIVITY_SIGMA, size=spec.users)
    counts = ratings_per_user(spec, activity)
    first = rng.integers(TIME_START, TIME_END, size=spec.users)
    period = np.minimum(np.exp(rng.normal(np.log(3 * 86400), 2.5, size=spec.users)), TIME_END - first)

    written = 0
    with _open(posixpath.join(out_dir, "ratings.csv")) as f:
        f.write(b"userId,movieId,rating,timestamp\n")
        for lo in range(0, spec.users, BLOCK_USERS):
            hi = min(lo + BLOCK_USERS, spec.users)
            taste = tastes[lo:hi]
            tops = (cat.combos @ taste.T).max(axis=0)          # [block] largest affinity
            rows, movie = _choose(rng, cat, taste, tops, counts[lo:hi])
            user = lo + rows
            affinity = (cat.membership[movie] * tastes[user]).sum(axis=1) / tops[rows]
            raw = (3.9 + user_bias[user] + cat.quality[movie] + 1.6 * (affinity - 0.5)
                   + rng.normal(0.0, 0.45, size=len(movie)))
            halves = np.clip(np.round(raw * 2.0), 1, 10).astype(np.int64)
            offset = (rng.random(len(movie)) * period[user]).astype(np.int64)
            times = np.sort(first[user] + offset + user * (TIME_END * 4))  # grouped by user, in time order
            times -= user * (TIME_END * 4)
            f.write(_lines(user + 1, movie + 1, halves, times))
            written += len(movie)
    with _open(posixpath.join(out_dir, "movies.csv")) as f:
        years = 1950 + rng.integers(0, 70, size=spec.movies)
        lines = ["movieId,title,genres\n"]
        for m in range(spec.movies):
            names = "|".join(GENRES[g] for g in cat.genres[m] if g >= 0)
            lines.append(f"{m + 1},Synthetic Movie {m + 1} ({years[m]}),{names}\n")
        f.write("".join(lines).encode("utf-8"))
    return {"users": spec.users, "movies": spec.movies, "ratings": int(written),
            "seed": spec.seed, "out_dir": out_dir if "://" in out_dir else os.path.abspath(out_dir)}
