"""fork_map: results in order from forked workers that inherit unpicklable state."""

from __future__ import annotations

import os

import numpy as np
import pytest

from quartermaster.clustering.forked import fork_map


def test_results_come_back_in_order_from_other_processes() -> None:
    big = np.arange(1_000_000, dtype=np.int64)  # inherited by the workers, never pickled
    parent = os.getpid()
    lock_like = {"unpicklable": lambda: None}  # a closure over this would not pickle

    def work(i: int) -> tuple[int, int, bool]:
        assert lock_like["unpicklable"]() is None
        return i, int(big[i * 1000]), os.getpid() != parent

    out = list(fork_map(work, list(range(40)), 2, chunksize=3))
    assert [(i, v) for i, v, _ in out] == [(i, i * 1000) for i in range(40)]
    assert all(forked for _, _, forked in out)


def test_one_worker_runs_in_this_process() -> None:
    parent = os.getpid()
    assert list(fork_map(lambda i: (i * i, os.getpid() == parent), [1, 2, 3], 1)) == [
        (1, True),
        (4, True),
        (9, True),
    ]


def test_a_failure_in_a_worker_reaches_the_caller() -> None:
    def work(i: int) -> int:
        if i == 7:
            raise ValueError("cell 7 is broken")
        return i

    with pytest.raises(ValueError, match="cell 7 is broken"):
        list(fork_map(work, list(range(10)), 2))
    assert list(fork_map(lambda i: i + 1, [1, 2], 2)) == [2, 3]  # the next map works
