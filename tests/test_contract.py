"""The contract module: what exporters and the server share, importing neither; training
code never imports serving code."""
import ast
import os
import subprocess
import sys

import numpy as np
import pytest

from movierec import contract

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _imports(path: str) -> set[str]:
    """Every module a Python file imports (top level and inside functions)."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_contract_imports_neither_side_nor_tensorflow():
    imported = _imports(os.path.join(REPO, "movierec", "contract.py"))
    assert not {m for m in imported if m.startswith(("movierec.serving", "movierec.components"))}
    code = ("import sys, movierec.contract; "
            "print(sorted(m for m in sys.modules if m.startswith(('tensorflow', 'movierec.serving', "
            "'movierec.components'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def test_training_code_never_imports_serving_code():
    offenders = []
    for folder, _dirs, files in os.walk(os.path.join(REPO, "components")):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                bad = sorted(m for m in _imports(path) if m.startswith("movierec.serving"))
                if bad:
                    offenders.append(f"{os.path.relpath(path, REPO)}: {bad}")
    assert offenders == []


def test_contract_call_shapes():
    assert contract.contract_call(["1", "2"], None, None) == ("serving_default", {"user_id": ["1", "2"]})
    signature, inputs = contract.contract_call(["1", "2"], 3, [["a", "b"], []])
    assert signature == "recommend"
    assert inputs == {"user_id": ["1", "2"], "k": [3, 3], "exclude_movie_ids": [["", "a", "b"], ["", "", ""]]}
    assert contract.contract_call(["1"], None, [["a"]])[1]["k"] == [contract.DEFAULT_K]
    with pytest.raises(ValueError, match="exclude has 1 rows for 2 users"):
        contract.contract_call(["1", "2"], 3, [["a"]])


@pytest.mark.parametrize("k", [0, -1, contract.MAX_K_LIMIT + 1, True, 2.0])
def test_check_k_refuses_what_no_model_takes(k):
    with pytest.raises(ValueError, match=f"k={k!r} is invalid: a list length from 1 to"):
        contract.check_k(k)


def test_check_k_bounds():
    assert contract.check_k(1) == 1 and contract.check_k(np.int32(5), max_k=5) == 5
    with pytest.raises(ValueError, match="from 1 to 5"):
        contract.check_k(6, max_k=5)
    assert contract.serving_default_k(3) == 3 and contract.serving_default_k(500) == contract.DEFAULT_K


def test_version_layout_counts_complete_numeric_folders_only(tmp_path):
    base = tmp_path / "mf"
    for name, files in {"1": ["saved_model.pb"], "0002": ["saved_model.pb", "variables/variables.index"],
                        "3": ["variables/variables.index"],           # no graph: not complete
                        "4": ["saved_model.pb", "variables/x"],      # variables without index
                        ".tmp-5-1": ["saved_model.pb"], "latest": ["saved_model.pb"]}.items():
        for rel in files:
            (base / name / rel).parent.mkdir(parents=True, exist_ok=True)
            (base / name / rel).write_bytes(b"x")
    assert contract.list_versions(str(base)) == [1, 2]
    assert contract.latest_version(str(base)) == 2
    assert contract.version_dir(str(base), 2) == f"{base}/0002"
    assert contract.list_versions(str(tmp_path / "none")) == [] and contract.latest_version(str(tmp_path)) is None
    with pytest.raises(FileNotFoundError, match="no version 9 under"):
        contract.version_dir(str(base), 9)


def test_warmup_records_round_trip(tmp_path):
    requests = contract.contract_warmup_requests("u1", max_k=4)
    path = contract.write_predict_warmup(str(tmp_path), "mf", requests)
    assert path == f"{tmp_path}/assets.extra/tf_serving_warmup_requests"
    read = contract.read_warmup_requests(str(tmp_path))
    assert [r.model_spec.signature_name for r in read] == ["serving_default", "recommend"]
    assert [r.model_spec.name for r in read] == ["mf", "mf"]
    import tensorflow as tf
    assert tf.make_ndarray(read[1].inputs["k"]).tolist() == [4, 4]         # min(DEFAULT_K, max_k)
    assert tf.make_ndarray(read[0].inputs["user_id"]).tolist() == [b"u1", b""]
    assert contract.read_warmup_requests(str(tmp_path / "nothing")) == []
