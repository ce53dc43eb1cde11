"""The helpers of benchmarks/scale.py: size parsing, linearity notes, process measurement."""
from __future__ import annotations

import os
import sys

import pytest

from benchmarks import scale


def test_parse_count():
    assert scale.parse_count("100k") == 100_000
    assert scale.parse_count("1M") == 1_000_000
    assert scale.parse_count("1.5m") == 1_500_000
    assert scale.parse_count("2500") == 2500
    for bad in ("", "k", "1.5", "-3", "0", "12x"):
        with pytest.raises(ValueError):
            scale.parse_count(bad)


def test_parse_size_presets_and_custom():
    assert scale.parse_size("5M") == scale.PRESETS["5m"]
    assert scale.PRESETS["100k"].movies == 2_000 and scale.PRESETS["5m"].movies == 60_000
    custom = scale.parse_size("20k:200:500")
    assert (custom.ratings, custom.users, custom.movies) == (20_000, 200, 500)
    assert custom.dataset_name == "synth2-r20000-u200-m500-s42"
    assert scale.parse_size("25m").users == 162_541
    with pytest.raises(ValueError):
        scale.parse_size("20k:200")


def test_presets_are_valid_synth_specs():
    from movierec.components.data import synth

    for size in scale.PRESETS.values():
        synth.SynthSpec(users=size.users, movies=size.movies, ratings=size.ratings)


def test_marginal_per_million():
    ratings = [100_000, 1_000_000, 5_000_000]
    assert scale.marginal_per_million(ratings, [10.0, 19.0, 59.0]) == pytest.approx([10.0, 10.0])
    assert scale.marginal_per_million(ratings, [10.0, None, 59.0]) == [None, None]


def test_growth_notes_accept_fixed_cost_plus_linear():
    ratings = [100_000, 1_000_000, 5_000_000]
    # 30 s fixed + 20 s per million ratings: linear, whatever the ratio of the totals
    assert scale.growth_notes(["a", "b", "c"], ratings, [32.0, 50.0, 130.0], "x") == []


def test_growth_notes_flag_rising_and_falling_marginal_cost():
    ratings = [100_000, 1_000_000, 5_000_000]
    (note,) = scale.growth_notes(["a", "b", "c"], ratings, [32.0, 50.0, 400.0], "Transform")
    assert note.startswith("Transform: super-linear from b to c") and "predicts 130.0 s" in note
    (note,) = scale.growth_notes(["a", "b", "c"], ratings, [32.0, 50.0, 60.0], "Trainer")
    assert "sub-linear" in note
    # small absolute deviations are noise
    assert scale.growth_notes(["a", "b", "c"], ratings, [1.0, 1.2, 3.0], "tiny") == []
    # two sizes: nothing to test against
    assert scale.growth_notes(["a", "b"], ratings[:2], [1.0, 100.0], "x") == []


def test_per_rating_notes_flag_more_than_20_percent():
    ratings = [1_000_000, 5_000_000, 25_000_000]
    # 100 us per rating at 1m; 5m at 110 us (within 20%), 25m at 130 us (30% more: flagged)
    (note,) = scale.per_rating_notes(["1m", "5m", "25m"], ratings, [100.0, 550.0, 3250.0], "Transform")
    assert note == "Transform: 130.0 us per rating at 25m vs 100.0 at 1m (x1.30; more than +-20%)"
    # 25m at 70 us: 30% less, flagged the other way; a few seconds off is noise
    (note,) = scale.per_rating_notes(["1m", "25m"], ratings[::2], [100.0, 1750.0], "x")
    assert "x0.70; less than" in note
    assert scale.per_rating_notes(["1m", "5m"], ratings[:2], [2.0, 14.0], "tiny") == []


def test_peak_between_and_projection():
    samples = [(10.0, 100.0), (11.0, 300.0), (12.0, 200.0), (13.0, 900.0)]
    assert scale.peak_between(samples, 10.5, 12.0) == 300.0
    assert scale.peak_between(samples, 20.0, 30.0) is None
    # 10 s fixed + 20 s per million: 1m -> 30 s, 5m -> 110 s, projected 25m -> 510 s
    assert scale.project_value([1_000_000, 5_000_000], [30.0, 110.0], 25_000_000) == pytest.approx(510.0)
    assert scale.project_value([1_000_000, 5_000_000], [30.0, None], 25_000_000) is None


def test_md_table():
    assert scale.md_table(["a", "b"], [[1, "x"]]) == "| a | b |\n|---|---|\n| 1 | x |"


def test_cpu_between_brackets_the_interval():
    samples = [(10.0, 1.0), (10.5, 1.5), (11.0, 1.75), (11.5, 2.5)]   # cumulative CPU seconds
    assert scale.cpu_between(samples, 10.5, 11.0) == 0.25
    assert scale.cpu_between(samples, 10.2, 11.2) == 1.5     # 10.0 -> 11.5: the bracketing samples
    assert scale.cpu_between(samples, 9.0, 11.0) is None     # nothing sampled before the start
    assert scale.cpu_between(samples, 10.0, 12.0) is None    # nor after the end


def test_process_tree_and_peak_memory_of_self():
    tree = scale.process_tree(os.getpid())
    assert os.getpid() in tree and tree[os.getpid()][0] > 0
    usage = os.times()
    # this process's CPU seconds and its reaped children's, as /proc counts them (clock ticks):
    # in a long test session the children (servers, pipelines) are most of it
    cpu = tree[os.getpid()][2]
    own_and_reaped = usage.user + usage.system + usage.children_user + usage.children_system
    assert own_and_reaped - 0.05 <= cpu <= own_and_reaped + 0.05
    assert scale.vm_hwm_kb(os.getpid()) >= tree[os.getpid()][0] > 0
    assert scale.vm_hwm_kb(2 ** 22 + 12345) == 0   # no such process


def test_run_child_measures_its_own_peak_not_the_parents(tmp_path):
    # VmHWM is sampled every 0.5 s: the child stays alive long enough to be seen
    code = ("import sys, time; b = bytearray(200 << 20); b[::4096] = b'x' * len(b[::4096]); del b; print('done'); "
            "time.sleep(1.5); sys.exit(3)")
    result = scale.run_child([sys.executable, "-c", code], str(tmp_path / "log"), "t", heartbeat=1e9)
    assert result.returncode == 3
    assert [line for _, line in result.lines] == ["done"]
    assert (tmp_path / "log").read_text() == "done\n"
    assert 200 <= result.peak_mb < 400           # its own peak, freed before it exits
    assert result.wait4_maxrss_mb >= result.peak_mb
    assert result.max_descendants == 0
    assert result.cpu_s < 1.0 and result.cpu_samples and result.cpu_samples[-1][1] <= result.cpu_s + 0.05


def test_run_child_samples_the_cpu_time_of_a_busy_child(tmp_path):
    code = "import time\nend = time.process_time() + 1.0\nwhile time.process_time() < end: pass\ntime.sleep(0.6)"
    result = scale.run_child([sys.executable, "-c", code], str(tmp_path / "log"), "t", heartbeat=1e9)
    assert result.returncode == 0
    assert 1.0 <= result.cpu_s < 2.0
    # the last sample, taken while it slept, has its whole second of busy CPU
    assert 1.0 <= result.cpu_samples[-1][1] <= result.cpu_s + 0.05
