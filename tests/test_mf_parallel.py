"""components/mf/parallel.py: every item runs once, slices cover the range, errors surface."""
import pytest

from movierec.components.mf import parallel


def test_chunks_cover_the_range_in_near_equal_contiguous_slices():
    assert parallel.chunks(10, 3) == [slice(0, 3), slice(3, 6), slice(6, 10)]
    assert parallel.chunks(2, 4) == [slice(0, 1), slice(1, 2)]       # never an empty slice
    assert parallel.chunks(0, 2) == [slice(0, 0)]


def test_run_all_runs_every_item_once_and_raises_the_first_error():
    seen = []
    parallel.run_all(seen.append, range(50))
    assert sorted(seen) == list(range(50))

    def fail(i):
        if i == 7:
            raise ValueError("item 7")
    with pytest.raises(ValueError, match="item 7"):
        parallel.run_all(fail, range(10))
    assert parallel.workers() >= 1
