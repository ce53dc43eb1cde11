"""`movierec retrain` / `data split-spans` on the command line: inputs, errors, the run lock."""
import os

import pytest

from movierec import cli
from movierec.components.data import synth


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("data") / "synthetic")
    synth.generate(synth.SynthSpec(users=30, movies=40, ratings=600, seed=5), d)
    return d


def test_split_spans_command_prints_each_span(tmp_path, dataset, capsys):
    out = str(tmp_path / "spans")
    assert cli.main(["data", "split-spans", dataset, "--out", out, "--count", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and lines[0].startswith(os.path.join(out, "span-1") + ": 150 ratings, ")
    # a second split into the same folder is refused, naming it
    assert cli.main(["data", "split-spans", dataset, "--out", out]) == cli.EXIT_DATA_ERROR
    assert "not empty" in capsys.readouterr().err


def test_retrain_needs_span_folders(tmp_path, dataset, capsys):
    code = cli.main(["retrain", "--data-dir", dataset, "--output-dir", str(tmp_path / "o")])
    assert code == cli.EXIT_DATA_ERROR
    assert "has no span-<N>/ folders" in capsys.readouterr().err


def test_retrain_reports_a_bad_line_with_its_span(tmp_path, dataset, capsys):
    spans_dir = str(tmp_path / "spans")
    assert cli.main(["data", "split-spans", dataset, "--out", spans_dir, "--count", "2"]) == 0
    with open(os.path.join(spans_dir, "span-2", "ratings.csv"), "a") as f:
        f.write("1,2,7.5,100\n")
    code = cli.main(["retrain", "--data-dir", spans_dir, "--output-dir", str(tmp_path / "o")])
    assert code == cli.EXIT_DATA_ERROR
    err = capsys.readouterr().err
    assert "span-2/ratings.csv:302" in err and "outside the scale" in err


def test_a_second_run_on_the_same_output_dir_is_refused(tmp_path, dataset, capsys):
    out = str(tmp_path / "out")
    with cli.lock_output_dir(out):
        code = cli.main(["run", "--data-dir", dataset, "--output-dir", out])
        assert code == cli.EXIT_BUSY
        err = capsys.readouterr().err
        assert f"{out} is in use by a running movierec (pid {os.getpid()}" in err
        with pytest.raises(BlockingIOError):
            cli.lock_output_dir(out)
    with cli.lock_output_dir(out):   # released when the holder is done
        pass


def test_span_window_is_validated(tmp_path, dataset, capsys):
    code = cli.main(["run", "--data-dir", dataset, "--output-dir", str(tmp_path / "o"), "--span-window", "-1"])
    assert code == cli.EXIT_DATA_ERROR
    assert "span_window=-1 is invalid" in capsys.readouterr().err
