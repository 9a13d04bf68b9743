"""Thread-level parallelism over independent blocks (``n_jobs``, scikit-learn semantics).

Cells and row chunks are independent and write disjoint slices of shared arrays, so they can
run on several threads: BLAS products, faiss calls and large numpy operations release the GIL, and every
BLAS/faiss call stays single-threaded (the blocks are small; nested thread pools only add synchronisation).
Results do not depend on ``n_jobs``: each block computes the same values whatever thread runs it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Self, TypeVar

from quartermaster.clustering.errors import ClusteringInputError

__all__ = ["Jobs", "resolve_n_jobs"]

T = TypeVar("T")
R = TypeVar("R")


def resolve_n_jobs(n_jobs: int | None) -> int:
    """Threads to use: ``None`` -> 1, ``-1`` -> every CPU this process may run on, ``k >= 1`` -> ``k``."""
    if n_jobs is None:
        return 1
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0 or n_jobs < -1:
        raise ClusteringInputError(f"n_jobs={n_jobs!r} (--jobs) must be -1 (every CPU) or an integer >= 1")
    if n_jobs == -1:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return n_jobs


class Jobs:
    """``map`` over a thread pool of ``n`` threads, or the built-in ``map`` when ``n == 1``."""

    def __init__(self, n: int, initializer: Callable[[], object] | None = None) -> None:
        """``initializer`` runs once in every worker thread (per-thread settings such as OpenMP's)."""
        self.n = n
        self._pool = (
            ThreadPoolExecutor(n, thread_name_prefix="clustering", initializer=initializer) if n > 1 else None
        )

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """Results in the order of ``items`` (lazily, as they complete in order)."""
        if self._pool is None:
            return map(fn, items)
        return self._pool.map(fn, items)

    def submit(self, fn: Callable[[], R]) -> Callable[[], R]:
        """Start ``fn`` on a worker thread (inline when ``n == 1``); returns a function that waits for and
        returns its result."""
        if self._pool is None:
            result = fn()
            return lambda: result
        return self._pool.submit(fn).result

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
