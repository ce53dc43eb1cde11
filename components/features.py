"""The single list of feature names, raw and transformed.

Imported by the readers (raw record keys), the ExampleGen, the curated schema's tests,
the Transform `preprocessing_fn`, both Trainers and the exporters. Change a name here and
nowhere else.
"""

# Raw features: one example (a Parquet row) per rating, as written by MovieLensExampleGen.
USER_ID = "user_id"      # bytes, exactly one
MOVIE_ID = "movie_id"    # bytes, exactly one
RATING = "rating"        # float, exactly one, within the dataset's rating scale; absent for
                         # implicit events (a dataset without ratings)
TIMESTAMP = "timestamp"  # int64 seconds since the epoch, exactly one (0 when not recorded)
TITLE = "title"          # bytes (UTF-8), exactly one
GENRES = "genres"        # bytes, zero or more genre names (or item tags, "column=value")
WEIGHT = "weight"        # float > 0, at most one: an event's declared weight (absent: 1)

RAW_FEATURES = (USER_ID, MOVIE_ID, RATING, TIMESTAMP, TITLE, GENRES, WEIGHT)

# Value type of each raw feature's column in MovieLensExampleGen's Parquet examples. Every
# column is a list per row, as in a tf.Example (zero values: the feature is absent), in
# the large-list form tfx_bsl's TFXIO gives these features (`raw_arrow_schema`).
RAW_VALUE_TYPES = {USER_ID: "bytes", MOVIE_ID: "bytes", RATING: "float", TIMESTAMP: "int",
                   TITLE: "bytes", GENRES: "bytes", WEIGHT: "float"}


def raw_arrow_schema():
    """pyarrow.Schema of the raw examples: large_list<large_binary | float | int64> per raw
    feature, in RAW_FEATURES order."""
    import pyarrow as pa  # noqa: PLC0415 - only the data components need Arrow

    values = {"bytes": pa.large_binary(), "float": pa.float32(), "int": pa.int64()}
    return pa.schema([pa.field(name, pa.large_list(values[RAW_VALUE_TYPES[name]])) for name in RAW_FEATURES])

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
