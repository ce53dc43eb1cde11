"""Synthetic data, download with checksum (against a local HTTP server), CLI data commands."""
import functools
import hashlib
import http.server
import io
import os
import threading
import zipfile

import numpy as np
import pytest

from movierec import cli
from movierec.components.data import download, readers, synth


def test_synth_is_deterministic_and_readable(tmp_path):
    spec = synth.SynthSpec(users=50, movies=80, ratings=1500, seed=7)
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    synth.generate(spec, a)
    synth.generate(spec, b)
    for name in ("ratings.csv", "movies.csv"):
        assert open(os.path.join(a, name), "rb").read() == open(os.path.join(b, name), "rb").read()
    report = readers.check_dataset(a)
    assert report.data_format == "ml-latest"
    assert report.users == 50 and report.ratings == 1500 and report.movies == 80


def test_synth_users_prefer_their_genres(tmp_path):
    """Ratings of a user's favourite genre are higher than of other genres, on average."""
    d = str(tmp_path / "s")
    synth.generate(synth.SynthSpec(users=200, movies=300, ratings=12000, seed=1), d)
    records = list(readers.read_ratings(d))
    by_user: dict = {}
    for r in records:
        by_user.setdefault(r.user_id, []).append(r)
    gaps = []
    for rs in by_user.values():
        genre_mean = {}
        for g in synth.GENRES:
            vals = [r.rating for r in rs if g in r.genres]
            if len(vals) >= 5:
                genre_mean[g] = np.mean(vals)
        if len(genre_mean) >= 2:
            gaps.append(max(genre_mean.values()) - min(genre_mean.values()))
    assert np.mean(gaps) > 0.8


def test_synth_ratings_per_user_hand_worked():
    """3 users, 20 movies (at most 10 each), 24 ratings, activity 1:1:2: every user starts at
    5; the 9 left are shared 2.25/2.25/4.5 -> floors 2/2/4; the last one goes to the most
    active user: 7, 7, 10."""
    spec = synth.SynthSpec(users=3, movies=20, ratings=24)
    assert (spec.min_per_user, spec.max_per_user) == (5, 10)
    assert synth.ratings_per_user(spec, np.array([1.0, 1.0, 2.0])).tolist() == [7, 7, 10]
    # MovieLens-25M's floor of 20 ratings per user once the mean is >= 100
    assert synth.SynthSpec(users=10, movies=1000, ratings=1000).min_per_user == 20
    assert synth.SynthSpec(users=10, movies=1000, ratings=300).min_per_user == 6


def test_synth_has_movielens_shape(tmp_path):
    """Users in blocks, each user's lines together and in time order; no (user, movie) twice;
    half stars; 2019's last MovieLens-25M timestamp at most; popularity long-tailed: the most
    rated movie is rated by most users, the median movie by few."""
    import pandas as pd

    d = str(tmp_path / "s")
    spec = synth.SynthSpec(users=3000, movies=2000, ratings=300_000, seed=4)
    synth.generate(spec, d)
    r = pd.read_csv(os.path.join(d, "ratings.csv"))
    assert len(r) == 300_000 and r.userId.nunique() == 3000
    assert (np.diff(r.userId) >= 0).all()                         # grouped by user, in user order
    same_user = np.diff(r.userId) == 0
    assert (np.diff(r.timestamp)[same_user] >= 0).all()           # each user's lines in time order
    assert not r.duplicated(["userId", "movieId"]).any()
    assert set(r.rating.unique()) <= {h / 2 for h in range(1, 11)}
    assert r.timestamp.min() >= synth.TIME_START and r.timestamp.max() <= synth.TIME_END
    per_user = r.groupby("userId").size()
    assert per_user.min() == 20 and per_user.max() <= 1000
    assert per_user.median() < 0.75 * per_user.mean()            # long-tailed activity
    per_movie = r.groupby("movieId").size()
    assert per_movie.max() > 0.4 * 3000                           # the head: rated by most users
    assert per_movie.median() < 0.25 * per_movie.mean()           # the tail: most movies rated a little


def test_synth_rejects_impossible_sizes():
    with pytest.raises(ValueError, match="ratings=10 is too few"):
        synth.SynthSpec(users=5, movies=10, ratings=10)
    with pytest.raises(ValueError, match="too many"):
        synth.SynthSpec(users=5, movies=10, ratings=40)


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("ml-tiny/ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,1\n")
        z.writestr("ml-tiny/movies.csv", "movieId,title,genres\n1,One,Drama\n")
    return buf.getvalue()


@pytest.fixture()
def http_dir(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_download_verifies_and_caches(tmp_path, http_dir):
    root, url = http_dir
    payload = _zip_bytes()
    (root / "ml-tiny.zip").write_bytes(payload)
    archives = {"ml-tiny": download.Archive("ml-tiny", len(payload), hashlib.sha256(payload).hexdigest())}
    cache = str(tmp_path / "cache")
    path = download.fetch("ml-tiny", cache, base_url=url, archives=archives, progress=lambda *a: None)
    assert path == os.path.join(cache, "ml-tiny")
    assert readers.check_dataset(path).ratings == 1
    (root / "ml-tiny.zip").unlink()  # second call is served from the cache
    assert download.fetch("ml-tiny", cache, base_url=url, archives=archives) == path


def test_download_rejects_checksum_mismatch_and_keeps_nothing(tmp_path, http_dir):
    root, url = http_dir
    payload = _zip_bytes()
    (root / "ml-tiny.zip").write_bytes(payload)
    archives = {"ml-tiny": download.Archive("ml-tiny", len(payload), "0" * 64)}
    cache = str(tmp_path / "cache")
    with pytest.raises(download.DownloadError, match="checksum mismatch"):
        download.fetch("ml-tiny", cache, base_url=url, archives=archives, progress=lambda *a: None)
    assert download.cached_dataset("ml-tiny", cache) is None
    assert os.listdir(cache) == []


def test_download_unreachable_is_a_clear_error(tmp_path, http_dir):
    _, url = http_dir
    with pytest.raises(download.DownloadError, match="could not download"):
        download.fetch("ml-100k", str(tmp_path / "c"), base_url=url, progress=lambda *a: None)


def test_data_dir_falls_back_to_synthetic_without_network(tmp_path, http_dir, monkeypatch):
    _, url = http_dir  # nothing there: the download fails like an offline machine
    monkeypatch.setattr(download, "GROUPLENS_BASE_URL", url)
    monkeypatch.setattr(download.fetch, "__defaults__", (url, None, 30.0, None))
    path, how = cli.resolve_data_dir(None, str(tmp_path / "cache"), environ={})
    assert "synthetic" in how
    assert readers.check_dataset(path).ratings == cli.SYNTH_DEFAULT["ratings"]
    # flag and environment take precedence
    assert cli.resolve_data_dir("/x", None, environ={}) == ("/x", "--data-dir")
    assert cli.resolve_data_dir(None, None, environ={cli.ENV_DATA_DIR: "/y"})[0] == "/y"


def test_cli_data_check_reports_problems(tmp_path, capsys):
    d = tmp_path / "d"
    d.mkdir()
    (d / "movies.csv").write_text("movieId,title,genres\n1,One,Drama\n")
    (d / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,1\n1,2,4.0,1\n")
    assert cli.main(["data", "check", str(d)]) == cli.EXIT_DATA_ERROR
    assert "ratings.csv:3: movie id '2' is not in the movie file" in capsys.readouterr().err
    assert cli.main(["data", "check", str(d), "--max-bad-records", "1"]) == 0
    assert "1 problem(s) within tolerance" in capsys.readouterr().out
