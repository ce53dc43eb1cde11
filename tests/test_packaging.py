"""Package metadata: every runtime import declared in setup.py, `movierec --version`."""
import ast
import importlib.metadata
import os
import re
import sys

import pytest

import movierec
from movierec import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNTIME_CODE = ("movierec", "components", "pipeline", "serving")


def _setup_list(name: str):
    """A list or dict literal assigned to `name` in setup.py."""
    with open(os.path.join(REPO, "setup.py")) as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"setup.py assigns no {name}")


def _distribution(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _third_party_imports() -> dict[str, str]:
    """Top-level module -> a file importing it, over the runtime code (not tests, benchmarks)."""
    found = {}
    for root in RUNTIME_CODE:
        for folder, _dirs, files in os.walk(os.path.join(REPO, root)):
            for name in files:
                if not name.endswith(".py"):
                    continue
                path = os.path.join(folder, name)
                with open(path) as f:
                    tree = ast.parse(f.read(), path)
                for node in ast.walk(tree):
                    if isinstance(node, ast.Import):
                        modules = [a.name for a in node.names]
                    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                        modules = [node.module]
                    else:
                        continue
                    for module in modules:
                        top = module.split(".")[0]
                        if top not in sys.stdlib_module_names and top != "movierec":
                            found.setdefault(top if top != "google" else module, os.path.relpath(path, REPO))
    return found


def test_every_runtime_import_is_declared():
    declared = {_distribution(r) for r in _setup_list("INSTALL_REQUIRES")}
    providers = importlib.metadata.packages_distributions()
    missing = []
    for module, where in sorted(_third_party_imports().items()):
        top = module.split(".")[0]
        if module.startswith("google.protobuf"):
            dists = ["protobuf"]
        else:
            dists = providers.get(top) or [top]
        if not {_distribution(d) for d in dists} & declared:
            missing.append(f"{module} (imported by {where}; from {dists})")
    assert missing == []


def test_test_tools_are_an_extra_not_runtime():
    runtime = {_distribution(r) for r in _setup_list("INSTALL_REQUIRES")}
    test = {_distribution(r) for r in _setup_list("EXTRAS_REQUIRE")["test"]}
    assert {"pytest", "hypothesis", "moto"} <= test
    assert not runtime & test


def test_version_comes_from_the_package_metadata(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"movierec {importlib.metadata.version('movierec')}"
    assert importlib.metadata.version("movierec") == movierec.__version__   # setup.py reads it there
