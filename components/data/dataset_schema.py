"""The curated schema made to fit the dataset in a folder.

The MovieLens layouts use the curated `components/schema/schema.pbtxt` as it is (its rating
domain 0.5..5 holds both whole- and half-star scales). A declared dataset
(`movierec-data.yaml`) keeps every other feature's rules and changes only the rating:

* explicit (a rating column): `rating` required, its float domain the declared scale's
  min..max (a 1..10 scale would otherwise be an out-of-range anomaly);
* implicit (no rating column): `rating` optional (no presence required, no fixed shape),
  so Transform parses it as a possibly-absent value and `preprocessing_fn` gives NaN.

So the fact "this dataset has ratings" starts at the declaration, flows through this schema
into the Transform output (`rating` NaN or not), and every Trainer reads it from there with
`features.has_ratings`.
"""
from __future__ import annotations

from tensorflow_metadata.proto.v0 import schema_pb2

from movierec.components import features
from movierec.components.data import readers


def read_schema(path: str) -> schema_pb2.Schema:
    from google.protobuf import text_format  # noqa: PLC0415

    with readers._gfile().GFile(path, "rb") as f:
        return text_format.Parse(f.read().decode("utf-8"), schema_pb2.Schema())


def schema_for(data_dir: str, base: schema_pb2.Schema) -> schema_pb2.Schema:
    """`base` (the curated schema) fitted to the dataset in `data_dir` (see module docstring)."""
    schema = schema_pb2.Schema()
    schema.CopyFrom(base)
    if readers.detect_format(data_dir) != readers.INTERACTIONS:
        return schema
    scale = readers.rating_scale(data_dir, readers.INTERACTIONS)
    rating = next(f for f in schema.feature if f.name == features.RATING)
    if scale is None:
        rating.presence.min_fraction = 0.0
        rating.presence.min_count = 0
        rating.ClearField("shape")
        rating.value_count.min = 1
        rating.value_count.max = 1
    else:
        rating.float_domain.min = scale.low
        rating.float_domain.max = scale.high
    return schema


def write_schema_for(data_dir: str, base_path: str, out_path: str) -> str:
    """Writes `schema_for(data_dir, <base_path's schema>)` as text to `out_path`; returns it."""
    from google.protobuf import text_format  # noqa: PLC0415

    schema = schema_for(data_dir, read_schema(base_path))
    gfile = readers._gfile()
    folder = out_path.rsplit("/", 1)[0]
    if folder and folder != out_path:
        gfile.makedirs(folder)
    with gfile.GFile(out_path, "w") as f:
        f.write(text_format.MessageToString(schema))
    return out_path


def fitted_schema_file(data_dir: str, base_path: str, out_dir: str, span_window: int | None = None) -> str:
    """The schema file a pipeline over `data_dir` should import: `base_path` itself for the
    MovieLens layouts, else `<out_dir>/schema.pbtxt` written by `write_schema_for`. With
    spans (`span_window` not None), the newest span folder's declaration decides."""
    from movierec.components.data import spans  # noqa: PLC0415

    folder = data_dir
    if span_window is not None:
        found = spans.list_spans(data_dir)
        if not found:
            return base_path   # the run itself reports the missing spans
        folder = spans.span_dir(data_dir, found[-1])
    if readers.detect_format(folder) != readers.INTERACTIONS:
        return base_path
    return write_schema_for(folder, base_path, f"{out_dir.rstrip('/')}/schema.pbtxt")
