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


def test_implicit_events_through_the_pipeline(tmp_path, monkeypatch, capsys):
    from movierec import config as config_module

    data_dir = _shop(str(tmp_path / "shop"))
    # the curated schema fitted to this dataset: the rating optional
    schema = dataset_schema.write_schema_for(data_dir, config_module.default_schema_path(),
                                             str(tmp_path / "schema" / "schema.pbtxt"))
    monkeypatch.setattr(config_module, "default_schema_path", lambda: schema)
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
