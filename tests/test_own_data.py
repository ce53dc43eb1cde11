"""Your own data: a declared interactions file (CSV or Parquet), explicit and implicit, with
every kind of bad input named by file, line and problem."""
import os

import pytest

from movierec.components import features
from movierec.components.data import dataset_schema, interactions, readers
from tests.conftest import write

EXPLICIT_YAML = """\
interactions:
  path: events.csv
  columns: {user: customer, item: sku, rating: stars, timestamp: when}
  rating_scale: {min: 1, max: 10, step: 1}
items:
  path: products.csv
  columns: {item: sku, title: name, genres: categories}
  genre_separator: ";"
  features: [brand]
"""

PRODUCTS = ("sku,name,categories,brand,price\n"
            "A-1,\"Kettle, steel\",kitchen;home,Acme,20\n"
            "B-2,Lamp,home,,35\n"
            "C-3,Mystery box,,Zed,5\n")


def declared(tmp_path, yaml_text: str, events: str | bytes, products: str | bytes | None = PRODUCTS,
             events_name: str = "events.csv") -> str:
    d = str(tmp_path / "own")
    write(os.path.join(d, readers.DECLARATION), yaml_text)
    write(os.path.join(d, events_name), events)
    if products is not None:
        write(os.path.join(d, "products.csv"), products)
    return d


def test_explicit_csv_with_mapped_columns_scale_items_and_tags(tmp_path):
    d = declared(tmp_path, EXPLICIT_YAML,
                 "customer,sku,stars,when\nu1,A-1,10,1700000000\nu1,B-2,1,2023-11-14T22:13:21Z\nu2,C-3,7,5\n")
    assert readers.detect_format(d) == "interactions"
    assert readers.rating_scale(d) == readers.RatingScale(1.0, 10.0, 1.0)
    report = readers.ReadReport()
    records = list(readers.read_ratings(d, report=report))
    assert [(r.user_id, r.movie_id, r.rating, r.timestamp, r.weight) for r in records] == [
        ("u1", "A-1", 10.0, 1700000000, None),
        ("u1", "B-2", 1.0, 1700000001, None),     # 2023-11-14T22:13:21Z = 1700000001 s
        ("u2", "C-3", 7.0, 5, None)]
    assert records[0].title == "Kettle, steel"
    assert records[0].genres == ("kitchen", "home", "brand=Acme")   # genres then free-form tags
    assert records[1].genres == ("home",)                          # empty brand: no tag
    assert records[2].genres == ("brand=Zed",)
    assert (report.ratings, report.users, report.movies) == (3, 2, 3)
    assert records[0].as_feature_dict()[features.WEIGHT] is None   # explicit: no weight feature


@pytest.mark.parametrize("events,message", [
    ("customer,sku,stars,when\nu1,A-1,11,1\n", r"events.csv:2: rating 11 is outside the scale 1..10"),
    ("customer,sku,stars,when\nu1,A-1,2.5,1\n", r"events.csv:2: rating 2.5 is not a multiple of 1 from 1"),
    ("customer,sku,stars,when\nu1,A-1,,1\n", r"events.csv:2: rating '' is not a number"),
    ("customer,sku,stars,when\nu1,Z-9,3,1\n", r"events.csv:2: item id 'Z-9' is not in the items file"),
    ("customer,sku,stars,when\nu1,A-1,3,1\nu1,A-1,4,2\n", r"events.csv:3: duplicate rating of item 'A-1' by user 'u1'"),
    ("customer,sku,stars,when\nu1,A-1,3,last tuesday\n", r"events.csv:2: timestamp 'last tuesday' is neither"),
    ("customer,sku,stars,when\nu1,A-1,3,-4\n", r"events.csv:2: timestamp -4 is negative"),
    ("customer,sku,stars,when\nu 1,A-1,3,1\n", r"events.csv:2: user id 'u 1' is not a valid ID"),
    ("customer,sku,stars,when\nu1,A-1,3\n", r"events.csv:2: expected 4 fields, got 3"),
    ("customer,item,stars,when\nu1,A-1,3,1\n", r"events.csv:1: header has no column 'sku'"),
    (b"customer,sku,stars,when\nu\xff,A-1,3,1\n", r"events.csv:2: not valid utf-8"),
])
def test_explicit_bad_events_are_named_by_file_and_line(tmp_path, events, message):
    d = declared(tmp_path, EXPLICIT_YAML, events)
    with pytest.raises(readers.DataError, match=message):
        list(readers.read_ratings(d))


@pytest.mark.parametrize("products,message", [
    ("sku,name,categories,brand\nA-1,K,x,y\nA-1,L,x,y\n", r"products.csv:3: duplicate item id 'A-1'"),
    ("sku,name,categories\nA-1,K,x\n", r"products.csv:1: header has no column 'brand'"),
    ("sku,name,categories,brand\n,K,x,y\n", r"products.csv:2: item id '' is not a valid ID"),
])
def test_bad_items_file_fails_before_any_event(tmp_path, products, message):
    d = declared(tmp_path, EXPLICIT_YAML, "customer,sku,stars,when\nu1,A-1,3,1\n", products)
    with pytest.raises(readers.DataError, match=message):
        next(readers.read_ratings(d))


IMPLICIT_YAML = """\
interactions:
  path: clicks.tsv
  delimiter: "\\t"
  columns: {user: visitor, item: page, timestamp: t, weight: seconds}
"""


def test_implicit_events_repeat_into_one_weighted_interaction(tmp_path):
    d = declared(tmp_path, IMPLICIT_YAML,
                 "visitor\tpage\tt\tseconds\nv1\tp1\t10\t2.5\nv1\tp1\t30\t1\nv2\tp1\t20\t4\nv1\tp2\t5\t1\n",
                 products=None, events_name="clicks.tsv")
    assert readers.rating_scale(d) is None
    report = readers.ReadReport()
    records = list(readers.read_ratings(d, report=report))
    assert [(r.user_id, r.movie_id, r.rating, r.timestamp, r.weight) for r in records] == [
        ("v1", "p1", None, 30, 3.5),   # two events: weights 2.5 + 1, the latest time
        ("v2", "p1", None, 20, 4.0),
        ("v1", "p2", None, 5, 1.0)]
    assert records[0].title == "p1" and records[0].genres == ()   # no items file: titles are the IDs
    assert (report.ratings, report.users, report.movies) == (3, 2, 0)
    feature_dict = records[0].as_feature_dict()
    assert feature_dict[features.RATING] is None and feature_dict[features.WEIGHT] == 3.5


def test_implicit_without_weights_counts_events(tmp_path):
    yaml_text = "interactions:\n  path: views.csv\n  columns: {user: u, item: i}\n"
    d = declared(tmp_path, yaml_text, "u,i\na,x\na,x\na,x\nb,x\n", products=None, events_name="views.csv")
    records = list(readers.read_ratings(d))
    assert [(r.user_id, r.movie_id, r.weight, r.timestamp) for r in records] == [("a", "x", 3.0, 0), ("b", "x", 1.0, 0)]


@pytest.mark.parametrize("events,message", [
    ("visitor\tpage\tt\tseconds\nv1\tp1\t10\t0\n", r"clicks.tsv:2: weight 0 is not a positive finite number"),
    ("visitor\tpage\tt\tseconds\nv1\tp1\t10\tinf\n", r"clicks.tsv:2: weight inf is not a positive finite number"),
    ("visitor\tpage\tt\tseconds\nv1\tp1\t10\tlots\n", r"clicks.tsv:2: weight 'lots' is not a number"),
    ("visitor\tpage\tt\tseconds\n", r"clicks.tsv:0: no ratings"),
])
def test_implicit_bad_events(tmp_path, events, message):
    d = declared(tmp_path, IMPLICIT_YAML, events, products=None, events_name="clicks.tsv")
    with pytest.raises(readers.DataError, match=message):
        list(readers.read_ratings(d))


def test_parquet_interactions_and_items(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = str(tmp_path / "pq")
    os.makedirs(d)
    pq.write_table(pa.table({"user": ["u1", "u2", "u2"], "item": [1, 2, 2], "score": [4.5, 3.0, 9.0],
                             "ts": [100, 200, 300]}), os.path.join(d, "ratings.parquet"))
    pq.write_table(pa.table({"item": [1, 2], "name": ["One", "Two"], "tags": [["a", "b"], []]}),
                   os.path.join(d, "items.parquet"))
    write(os.path.join(d, readers.DECLARATION),
          "interactions:\n  path: ratings.parquet\n  columns: {user: user, item: item, rating: score, timestamp: ts}\n"
          "  rating_scale: {min: 0.5, max: 5, step: 0.5}\n"
          "items:\n  path: items.parquet\n  columns: {item: item, title: name, genres: tags}\n")
    with pytest.raises(readers.DataError, match=r"ratings.parquet:3: rating 9 is outside the scale 0.5..5") as e:
        list(readers.read_ratings(d))
    assert "1 invalid input record" in str(e.value)
    records = list(readers.read_ratings(d, max_bad_records=1, on_problem=lambda p: None))
    assert [(r.user_id, r.movie_id, r.rating, r.timestamp, r.title, r.genres) for r in records] == [
        ("u1", "1", 4.5, 100, "One", ("a", "b")), ("u2", "2", 3.0, 200, "Two", ())]


@pytest.mark.parametrize("yaml_text,message", [
    ("interactions:\n  path: e.csv\n  columns: {user: u, item: i, rating: r}\n",
     r"columns.rating is set: declare interactions.rating_scale"),
    ("interactions:\n  path: e.csv\n  columns: {user: u, item: i}\n  rating_scale: {min: 1, max: 5, step: 1}\n",
     r"rating_scale is declared without a rating column"),
    ("interactions:\n  path: e.csv\n  columns: {user: u, item: i, rating: r, weight: w}\n"
     "  rating_scale: {min: 1, max: 5, step: 1}\n", r"columns.weight applies to implicit events only"),
    ("interactions:\n  path: e.csv\n  columns: {user: u, item: i, rating: r}\n  rating_scale: {min: 5, max: 1, step: 1}\n",
     r"rating_scale 5..1 step 1: expected min < max"),
    ("interactions:\n  path: e.csv\n  columns: {user: u, item: i, rating: r}\n  rating_scale: {min: 1, max: 5}\n",
     r"missing key interactions.rating_scale.step"),
    ("interactions:\n  path: e.csv\n  columns: {user: u}\n", r"missing key interactions.columns.item"),
    ("interactions:\n  path: e.csv\n  columns: {user: u, item: i, stars: s}\n",
     r"unknown key interactions.columns.stars \(known: user, item, rating, timestamp, weight\)"),
    ("interactions:\n  path: e.csv\n  columns: {user: u, item: i}\nitem:\n  path: x.csv\n", r"unknown key <top>.item"),
    ("interactions:\n  path: e.csv\n  delimiter: '::'\n  columns: {user: u, item: i}\n", r"delimiter must be one character"),
    ("interactions:\n  path: e.csv\n  encoding: klingon\n  columns: {user: u, item: i}\n", r"'klingon' is not a known"),
    ("interactions:\n  path: [e.csv]\n  columns: {user: u, item: i}\n", r"interactions.path must be a string"),
    ("interactions: {path: e.csv\n", r"movierec-data.yaml:\d+: not valid YAML"),
    ("", r"missing key <top>.interactions"),
])
def test_bad_declaration_is_named(tmp_path, yaml_text, message):
    d = declared(tmp_path, yaml_text, "u,i\na,b\n", products=None, events_name="e.csv")
    with pytest.raises(readers.DataError, match=message):
        list(readers.read_ratings(d))


def test_declared_latin1_semicolon_csv(tmp_path):
    yaml_text = ("interactions:\n  path: e.csv\n  delimiter: ';'\n  encoding: latin-1\n"
                 "  columns: {user: u, item: i, rating: r}\n  rating_scale: {min: 0, max: 1, step: 1}\n"
                 "items:\n  path: products.csv\n  delimiter: ';'\n  encoding: latin-1\n  columns: {item: i, title: t}\n")
    d = declared(tmp_path, yaml_text, "u;i;r\na;x;0\nb;x;1\n", products="i;t\nx;Café\n".encode("latin-1"),
                 events_name="e.csv")
    records = list(readers.read_ratings(d))
    assert [(r.user_id, r.rating, r.title) for r in records] == [("a", 0.0, "Café"), ("b", 1.0, "Café")]


def test_schema_fits_the_declared_dataset(tmp_path):
    from movierec.config import default_schema_path

    base = dataset_schema.read_schema(default_schema_path())
    explicit = declared(tmp_path / "e", EXPLICIT_YAML, "customer,sku,stars,when\nu1,A-1,10,1\n")
    rating = next(f for f in dataset_schema.schema_for(explicit, base).feature if f.name == features.RATING)
    assert (rating.float_domain.min, rating.float_domain.max) == (1.0, 10.0)
    assert rating.presence.min_fraction == 1.0
    implicit = declared(tmp_path / "i", IMPLICIT_YAML, "visitor\tpage\tt\tseconds\nv\tp\t1\t1\n", products=None,
                        events_name="clicks.tsv")
    rating = next(f for f in dataset_schema.schema_for(implicit, base).feature if f.name == features.RATING)
    assert rating.presence.min_fraction == 0.0 and not rating.HasField("shape")
    movielens = str(tmp_path / "ml")
    write(os.path.join(movielens, "ratings.csv"), "userId,movieId,rating,timestamp\n1,1,4,1\n")
    write(os.path.join(movielens, "movies.csv"), "movieId,title,genres\n1,T,Drama\n")
    assert dataset_schema.schema_for(movielens, base) == base
    out = dataset_schema.write_schema_for(implicit, default_schema_path(), str(tmp_path / "out" / "schema.pbtxt"))
    assert dataset_schema.read_schema(out) == dataset_schema.schema_for(implicit, base)


def test_has_ratings_is_one_test_for_every_trainer():
    import numpy as np

    assert features.has_ratings(np.array([4.0, 1.0], np.float32))
    assert not features.has_ratings(np.array([np.nan, np.nan], np.float32))
    with pytest.raises(ValueError, match="1 of 3 examples have no rating"):
        features.has_ratings(np.array([4.0, np.nan, 2.0]))


def test_load_declaration_resolves_paths(tmp_path):
    d = declared(tmp_path, EXPLICIT_YAML, "customer,sku,stars,when\n")
    decl = interactions.load_declaration(d)
    assert decl.interactions.path == os.path.join(d, "events.csv")
    assert decl.items.path == os.path.join(d, "products.csv") and decl.item_features == ("brand",)
    assert not decl.implicit and decl.rating_scale.high == 10.0


def test_bad_parquet_input_is_named(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    yaml_text = "interactions:\n  path: e.parquet\n  columns: {user: u, item: i}\n"
    d = declared(tmp_path, yaml_text, b"PAR1 not really", products=None, events_name="e.parquet")
    with pytest.raises(readers.DataError, match=r"e.parquet:0: not a Parquet file"):
        list(readers.read_ratings(d))
    pq.write_table(pa.table({"u": ["a"], "item": ["x"]}), os.path.join(d, "e.parquet"))
    with pytest.raises(readers.DataError, match=r"e.parquet:0: no column 'i' \(columns: u, item\)"):
        list(readers.read_ratings(d))
    pq.write_table(pa.table({"u": ["a", None], "i": ["x", "y"]}), os.path.join(d, "e.parquet"))
    with pytest.raises(readers.DataError, match=r"e.parquet:2: user id '' is not a valid ID"):
        list(readers.read_ratings(d))


def test_the_documented_shop_example():
    """tests/data/shop, the worked example of docs/data.md: values worked by hand."""
    d = os.path.join(os.path.dirname(__file__), "data", "shop")
    records = {(r.user_id, r.movie_id): r for r in readers.read_ratings(d)}
    assert len(records) == 10                       # 11 views, ana's two K-100 views are one
    kettle = records[("ana", "K-100")]
    assert kettle.weight == 30 + 45 and kettle.rating is None
    assert kettle.timestamp == 1709337600 + 18 * 3600 + 30 * 60   # 2024-03-02T18:30:00Z, the later view
    assert kettle.title == "Kettle, 1.7 l steel"
    assert kettle.genres == ("kitchen", "appliances", "brand=Acme")
    assert records[("ben", "G-310")].genres == ("garden",)          # no brand
    report = readers.check_dataset(d)
    assert (report.data_format, report.ratings, report.users, report.movies) == ("interactions", 10, 4, 5)


def test_fitted_schema_file_is_the_curated_one_for_movielens(tmp_path):
    from movierec.config import default_schema_path

    movielens = str(tmp_path / "ml")
    write(os.path.join(movielens, "ratings.dat"), "1::1::5::1\n")
    write(os.path.join(movielens, "movies.dat"), "1::T::Drama\n")
    out = str(tmp_path / "schema")
    assert dataset_schema.fitted_schema_file(movielens, default_schema_path(), out) == default_schema_path()
    assert not os.path.exists(out)
    own = declared(tmp_path, EXPLICIT_YAML, "customer,sku,stars,when\nu1,A-1,10,1\n")
    path = dataset_schema.fitted_schema_file(own, default_schema_path(), out)
    assert path == os.path.join(out, "schema.pbtxt")
    rating = next(f for f in dataset_schema.read_schema(path).feature if f.name == features.RATING)
    assert rating.float_domain.max == 10.0
    spans_root = str(tmp_path / "spans")
    for span in (1, 2):
        for name in (readers.DECLARATION, "events.csv", "products.csv"):
            write(os.path.join(spans_root, f"span-{span}", name), open(os.path.join(own, name)).read())
    assert dataset_schema.fitted_schema_file(spans_root, default_schema_path(), out, span_window=0) == path
