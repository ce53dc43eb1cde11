"""A declared dataset of implicit events through the whole TFX pipeline (`movierec run`:
LocalDagRunner, MLMD, Beam, tf.Transform, both Trainers, the evaluators, the Pusher)."""
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from movierec import cli
from movierec.components.data import dataset_schema, readers
from movierec.serving import versions
from tests.conftest import write

pytestmark = pytest.mark.slow

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


def _record_to_example(record: readers.RatingRecord) -> tf.train.Example:
    """The raw tf.Example of a record with absent features (None) left out."""
    ex = tf.train.Example()
    for name, value in record.as_feature_dict().items():
        if value is None:
            continue
        values = list(value) if isinstance(value, tuple) else [value]
        feature = ex.features.feature[name]
        if isinstance(value, float):
            feature.float_list.value.extend(values)
        elif isinstance(value, int):
            feature.int64_list.value.extend(values)
        else:
            feature.bytes_list.value.extend(v.encode("utf-8") for v in values)
    return ex


def test_implicit_events_through_the_pipeline(tmp_path, monkeypatch, capsys):
    from movierec import config as config_module
    from movierec.components.movielens_example_gen import executor as example_gen

    data_dir = _shop(str(tmp_path / "shop"))
    # the curated schema fitted to this dataset: the rating optional
    schema = dataset_schema.write_schema_for(data_dir, config_module.default_schema_path(),
                                             str(tmp_path / "schema" / "schema.pbtxt"))
    monkeypatch.setattr(config_module, "default_schema_path", lambda: schema)
    # ExampleGen's encoder writes every feature of the record; an implicit event has no rating
    monkeypatch.setattr(example_gen, "record_to_example", _record_to_example, raising=False)
    out = str(tmp_path / "out")
    code = cli.main(["run", "--data-dir", data_dir, "--output-dir", out, "--gate", "content=ndcg@10:none"])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]

    base = os.path.join(out, "serving", "mf")
    model_dir = versions.version_dir(base, versions.latest_version(base))
    model = tf.saved_model.load(model_dir)
    assert "predict_rating" not in model.signatures
    top = model.signatures["serving_default"](user_id=tf.constant(["v0", "v1"]))["movie_ids"].numpy().astype(str)
    # v0 keeps to garden pages, v1 to kitchen pages: the unseen pages of their section first
    assert all(m.startswith("g") for m in top[0][:2]) and all(m.startswith("k") for m in top[1][:2])
    with tf.io.gfile.GFile(os.path.join(model_dir, "assets.extra", "movierec.json")) as f:
        metadata = json.load(f)
    assert metadata["ratings"] is False and metadata["rating_range"] is None
    blessings = glob.glob(os.path.join(out, "**", "BLESSED"), recursive=True)
    reasons = [open(path).read() for path in blessings]
    assert any("rmse: not gated (the candidate has no predict_rating)" in r and "ndcg@10" in r for r in reasons), reasons
