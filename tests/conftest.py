import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def shared_dir() -> str:
    return os.environ.get("MOVIEREC_SHARED_DIR") or os.path.join(os.path.dirname(REPO), "shared")


@pytest.fixture(scope="session")
def ml100k_dir() -> str:
    path = os.path.join(shared_dir(), "data", "ml-100k")
    if not os.path.isfile(os.path.join(path, "u.data")):
        pytest.skip(f"MovieLens 100k not found at {path} (set MOVIEREC_SHARED_DIR)")
    return path


def write(path: str, text: str | bytes) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    mode = "wb" if isinstance(text, bytes) else "w"
    with open(path, mode) as f:
        f.write(text)
    return path


@pytest.fixture(scope="session")
def small_synthetic(tmp_path_factory) -> str:
    """The small synthetic dataset of the end-to-end tests (120 users, 150 movies, 4,000
    ratings); read-only: tests write their outputs elsewhere."""
    from movierec.components.data import synth

    d = str(tmp_path_factory.mktemp("data") / "synthetic")
    synth.generate(synth.SynthSpec(users=120, movies=150, ratings=4000, seed=3), d)
    return d


def mlmd_store(path: str):
    """ML Metadata store of a run: `path` is an output dir (metadata.sqlite inside) or the file."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    cfg = metadata_store_pb2.ConnectionConfig()
    cfg.sqlite.filename_uri = path if path.endswith(".sqlite") else os.path.join(path, "metadata.sqlite")
    return metadata_store.MetadataStore(cfg)
