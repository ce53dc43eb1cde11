"""Declared datasets through the whole TFX pipeline (`movierec run`: LocalDagRunner, MLMD,
Beam, tf.Transform, both Trainers, the evaluators, the Pusher): implicit events, and ratings
on a 1..10 scale; and the schema file the pipeline imports for each kind of folder."""
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from movierec import cli
from movierec.components import features
from movierec.components.data import dataset_schema, readers
from movierec.config import PipelineConfig, default_schema_path
from movierec.pipeline.pipeline import schema_file
from movierec.serving import versions
from tests.conftest import write
from tests.test_readers import mllatest

SECTIONS = {"garden": 10, "kitchen": 10, "toys": 10}


def _shop(folder: str, users: int = 150, seed: int = 5) -> str:
    """Page views of a shop: each visitor keeps to one section (8 of its 10 pages, a few
    seen twice) plus one page elsewhere; no ratings."""
    rng = np.random.default_rng(seed)
    pages = {s: [f"{s[0]}{i}" for i in range(n)] for s, n in SECTIONS.items()}
    everything = [p for ps in pages.values() for p in ps]
    lines, t = ["visitor,page,seen_at"], 1_700_000_000
    for v in range(users):
        section = list(SECTIONS)[v % len(SECTIONS)]
        viewed = list(rng.choice(pages[section], 8, replace=False)) + [str(rng.choice(everything))]
        for page in viewed:
            for _ in range(1 + int(rng.random() < 0.2)):
                t += 60
                lines.append(f"v{v},{page},{t}")
    write(os.path.join(folder, "views.csv"), "\n".join(lines) + "\n")
    write(os.path.join(folder, "pages.csv"), "page,name,section\n" + "".join(
        f"{p},{s.title()} page {p},{s}\n" for s, ps in pages.items() for p in ps))
    write(os.path.join(folder, readers.DECLARATION),
          "interactions:\n  path: views.csv\n  columns: {user: visitor, item: page, timestamp: seen_at}\n"
          "items:\n  path: pages.csv\n  columns: {item: page, title: name, genres: section}\n")
    return folder


@pytest.mark.slow
def test_implicit_events_through_the_pipeline(tmp_path, capsys):
    data_dir = _shop(str(tmp_path / "shop"))
    out = str(tmp_path / "out")
    code = cli.main(["run", "--data-dir", data_dir, "--output-dir", out, "--embedding-dim", "3",
                     "--gate", "content=ndcg@10:none"])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]

    base = os.path.join(out, "serving", "mf")
    model_dir = versions.version_dir(base, versions.latest_version(base))
    model = tf.saved_model.load(model_dir)
    assert "predict_rating" not in model.signatures
    visitors = ["v0", "v1", "v2"]   # garden, kitchen and toys visitors
    top = model.signatures["serving_default"](user_id=tf.constant(visitors))["movie_ids"].numpy().astype(str)
    with open(os.path.join(data_dir, "views.csv")) as f:
        viewed = {(line.split(",")[0], line.split(",")[1]) for line in f.read().splitlines()[1:]}
    for row, (visitor, section) in zip(top, zip(visitors, SECTIONS)):
        # the pages of the visitor's own section that it has not seen come first
        unseen = {f"{section[0]}{i}" for i in range(SECTIONS[section])} - {p for v, p in viewed if v == visitor}
        assert unseen and set(row[:len(unseen)]) == unseen, (visitor, row, unseen)
    with tf.io.gfile.GFile(os.path.join(model_dir, "assets.extra", "movierec.json")) as f:
        metadata = json.load(f)
    assert metadata["ratings"] is False and metadata["rating_range"] is None
    blessings = glob.glob(os.path.join(out, "**", "BLESSED"), recursive=True)
    reasons = [open(path).read() for path in blessings]
    assert any("rmse: not gated (the candidate has no predict_rating)" in r and "ndcg@10" in r for r in reasons), reasons


# -- ratings on a 1..10 scale --------------------------------------------------------------------
GENRES = ("drama", "horror", "western")
FILMS_PER_GENRE = 8


def _reviews(folder: str, users: int = 120, seed: int = 7) -> str:
    """Reviews on a 1..10 scale: each reviewer gives 8..10 to 5 films of one genre and 1..3
    to 2 films of the others."""
    rng = np.random.default_rng(seed)
    films = {g: [f"{g[0]}{i}" for i in range(FILMS_PER_GENRE)] for g in GENRES}
    lines, t = ["reviewer,film,score,at"], 1_600_000_000
    for r in range(users):
        own = GENRES[r % len(GENRES)]
        others = [f for g in GENRES if g != own for f in films[g]]
        liked = rng.choice(films[own], 5, replace=False)
        disliked = rng.choice(others, 2, replace=False)
        for film, score in [*((f, rng.integers(8, 11)) for f in liked), *((f, rng.integers(1, 4)) for f in disliked)]:
            t += 60
            lines.append(f"r{r},{film},{score},{t}")
    write(os.path.join(folder, "reviews.csv"), "\n".join(lines) + "\n")
    write(os.path.join(folder, "films.csv"), "film,title,genre\n" + "".join(
        f"{f},{g.title()} film {f},{g}\n" for g, fs in films.items() for f in fs))
    write(os.path.join(folder, readers.DECLARATION),
          "interactions:\n  path: reviews.csv\n  columns: {user: reviewer, item: film, rating: score, timestamp: at}\n"
          "  rating_scale: {min: 1, max: 10, step: 1}\n"
          "items:\n  path: films.csv\n  columns: {item: film, title: title, genres: genre}\n")
    return folder


def _rating_domain(path: str) -> tuple[float, float]:
    rating = next(f for f in dataset_schema.read_schema(path).feature if f.name == features.RATING)
    return rating.float_domain.min, rating.float_domain.max


def _declare_scale(folder: str, low: int, high: int) -> None:
    path = os.path.join(folder, readers.DECLARATION)
    with open(path) as f:
        text = f.read()
    write(path, text.replace("{min: 1, max: 10, step: 1}", f"{{min: {low}, max: {high}, step: 1}}"))


def test_schema_file_per_folder_kind(tmp_path):
    """The curated file for MovieLens; a fitted copy, one path per content, for a declared
    dataset (the newest span's declaration with spans); the configured file untouched for a
    pipeline compiled to run elsewhere."""
    curated = default_schema_path()
    assert _rating_domain(curated) == (0.5, 5.0)
    movielens = mllatest(tmp_path, "userId,movieId,rating,timestamp\n1,10,4,5\n",
                         "movieId,title,genres\n10,Heat (1995),Action\n")
    config = PipelineConfig.from_output_dir(movielens, str(tmp_path / "out-ml"))
    assert schema_file(config) == curated
    assert not os.path.exists(os.path.join(config.pipeline_root, "schema"))

    reviews = _reviews(str(tmp_path / "reviews"), users=3)
    config = PipelineConfig.from_output_dir(reviews, str(tmp_path / "out"))
    ten = schema_file(config)
    assert ten.startswith(os.path.join(config.pipeline_root, "schema") + "/") and ten.endswith("/schema.pbtxt")
    assert _rating_domain(ten) == (1.0, 10.0)
    assert schema_file(config) == ten                       # same declaration: same path (cache hit)
    _declare_scale(reviews, 1, 5)
    five = schema_file(config)
    assert five != ten and _rating_domain(five) == (1.0, 5.0)   # re-declared: a new path (cache miss)
    assert _rating_domain(ten) == (1.0, 10.0)               # the earlier run's file is left as it was

    spans_dir = tmp_path / "spans"
    os.makedirs(spans_dir)
    os.rename(reviews, spans_dir / "span-1")                # declares 1..5
    _reviews(str(spans_dir / "span-2"), users=3)           # the newest span declares 1..10
    config = PipelineConfig.from_output_dir(str(spans_dir), str(tmp_path / "out-spans"), span_window=0)
    assert _rating_domain(schema_file(config)) == (1.0, 10.0)

    compiled = PipelineConfig.from_output_dir("gs://no-such-bucket/reviews", "gs://no-such-bucket/out",
                                              schema_path="/opt/image/schema.pbtxt", check_local_files=False)
    assert schema_file(compiled) == "/opt/image/schema.pbtxt"   # data_dir is not read


@pytest.mark.slow
def test_ratings_on_a_1_to_10_scale_through_the_pipeline(tmp_path, capsys):
    import tensorflow_data_validation as tfdv
    from movierec.components.strict_example_validator.executor import describe_anomalies

    data_dir = _reviews(str(tmp_path / "reviews"))
    out = str(tmp_path / "out")
    code = cli.main(["run", "--data-dir", data_dir, "--output-dir", out, "--embedding-dim", "3",
                     "--gate", "mf=ndcg@10:none", "--gate", "content=ndcg@10:none"])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]

    # the imported schema holds the declared scale; the curated one would have stopped the run
    imported = glob.glob(os.path.join(out, "pipeline", "ImportSchemaGen", "schema", "*", "schema.pbtxt"))
    assert [_rating_domain(p) for p in imported] == [(1.0, 10.0)]
    stats = glob.glob(os.path.join(out, "pipeline", "StatisticsGen", "statistics", "*", "Split-train",
                                   "FeatureStats.pb"))
    assert len(stats) == 1
    train_stats = tfdv.load_stats_binary(stats[0])
    assert describe_anomalies(tfdv.validate_statistics(train_stats, dataset_schema.read_schema(imported[0]))) == []
    curated = describe_anomalies(tfdv.validate_statistics(train_stats, dataset_schema.read_schema(default_schema_path())))
    assert [line.split(":")[0] for line in curated] == [features.RATING], curated

    base = os.path.join(out, "serving", "mf")
    model_dir = versions.version_dir(base, versions.latest_version(base))
    with tf.io.gfile.GFile(os.path.join(model_dir, "assets.extra", "movierec.json")) as f:
        metadata = json.load(f)
    assert metadata["ratings"] is True and metadata["rating_range"] == [1.0, 10.0]
    model = tf.saved_model.load(model_dir)
    with open(os.path.join(data_dir, "reviews.csv")) as f:
        rated = {tuple(line.split(",")[:2]) for line in f.read().splitlines()[1:]}
    for r, own in enumerate(GENRES):   # r0 likes drama, r1 horror, r2 westerns
        reviewer = f"r{r}"
        unseen = [f"{g[0]}{i}" for g in GENRES for i in range(FILMS_PER_GENRE) if (reviewer, f"{g[0]}{i}") not in rated]
        predicted = model.signatures["predict_rating"](
            user_id=tf.constant([reviewer] * len(unseen)), movie_id=tf.constant(unseen))["rating"].numpy()
        mine = [p for film, p in zip(unseen, predicted) if film[0] == own[0]]
        theirs = [p for film, p in zip(unseen, predicted) if film[0] != own[0]]
        assert mine and np.mean(mine) > np.mean(theirs) + 3, (reviewer, unseen, predicted)
        assert all(1.0 <= p <= 10.0 for p in predicted)
