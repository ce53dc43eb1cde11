"""The single list of feature names, raw and transformed.

Imported by the readers (raw record keys), the ExampleGen, the curated schema's tests,
the Transform `preprocessing_fn`, both Trainers and the exporters. Change a name here and
nowhere else.
"""

# Raw features: one tf.Example per rating, as written by MovieLensExampleGen.
USER_ID = "user_id"      # bytes, exactly one
MOVIE_ID = "movie_id"    # bytes, exactly one
RATING = "rating"        # float, exactly one, within the dataset's rating scale; absent for
                         # implicit events (a dataset without ratings)
TIMESTAMP = "timestamp"  # int64 seconds since the epoch, exactly one (0 when not recorded)
TITLE = "title"          # bytes (UTF-8), exactly one
GENRES = "genres"        # bytes, zero or more genre names (or item tags, "column=value")
WEIGHT = "weight"        # float > 0, at most one: an event's declared weight (absent: 1)

RAW_FEATURES = (USER_ID, MOVIE_ID, RATING, TIMESTAMP, TITLE, GENRES, WEIGHT)

# Transformed features (outputs of preprocessing_fn).
USER_IDX = "user_idx"    # int64 [B]: index in the user vocabulary; OOV = vocabulary size
MOVIE_IDX = "movie_idx"  # int64 [B]: index in the movie vocabulary; OOV = vocabulary size
GENRE_IDS = "genre_ids"  # int64 ragged [B, None]: indices in the genre vocabulary
# RATING, TIMESTAMP and TITLE pass through Transform under their raw names; RATING is NaN
# for an implicit event, and WEIGHT (float32 [B]) is 1 where the example has none.

# tf.Transform vocabulary names (files in the transform graph's assets).
USER_VOCAB = "user_id"
MOVIE_VOCAB = "movie_id"
GENRE_VOCAB = "genre"

# Genre labels the MovieLens files use for "no genre"; read as an empty genre list.
NO_GENRE_LABELS = frozenset({"unknown", "(no genres listed)"})

# One spelling per genre across MovieLens versions (old spelling -> today's GroupLens one), so
# that models trained on different layouts share genre names.
GENRE_SPELLINGS = {"Children's": "Children"}


def has_ratings(rating) -> bool:
    """Whether a set of transformed examples carries ratings (explicit data) or not
    (implicit events: every rating NaN): the one test every Trainer and export uses.

    rating: float [n]. Raises ValueError for a mix, which the readers never produce.
    """
    import numpy as np  # noqa: PLC0415  (this module stays importable without numpy)

    missing = np.isnan(np.asarray(rating, np.float64))
    if missing.all() and missing.size:
        return False
    if missing.any():
        raise ValueError(f"{int(missing.sum())} of {missing.size} examples have no rating: a dataset is "
                         "either rated (every event has a rating) or implicit (none has)")
    return True
