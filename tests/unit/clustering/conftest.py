"""Shared helpers for the clustering tests: data generators and an independent guarantee check."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

DATA_DIR = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "queries"


def _blobs(n: int, d: int, *, k: int = 5, spread: float = 0.3, seed: int = 0) -> npt.NDArray[np.float32]:
    """Unit rows around ``k`` random centres (not normalised exactly, to exercise normalisation)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    comp = rng.integers(0, k, size=n)
    x = centres[comp] + rng.standard_normal((n, d)) * spread / np.sqrt(d)
    x *= rng.uniform(0.5, 3.0, size=(n, 1))  # arbitrary norms
    return x.astype(np.float32)


def _check_guarantee(
    X: npt.NDArray[np.floating],
    labels: npt.NDArray[np.int64],
    representatives: npt.NDArray[np.int64],
    alpha: float,
    attributes: list[npt.NDArray[object]] | None = None,
) -> float:
    """Assert the promise with a plain float64 computation; return the minimum similarity."""
    X64 = np.asarray(X, dtype=np.float64)
    unit = X64 / np.linalg.norm(X64, axis=1, keepdims=True)
    rep_of_row = representatives[labels]
    cos = np.einsum("ij,ij->i", unit, unit[rep_of_row])
    assert (cos >= alpha - 1e-12).all(), f"rows below alpha: {np.flatnonzero(cos < alpha - 1e-12)[:10]}"
    # every representative belongs to its own cluster, ids are ordered by representative row
    assert (labels[representatives] == np.arange(representatives.size)).all()
    assert (np.diff(representatives) > 0).all()
    assert set(np.unique(labels)) == set(range(representatives.size))
    for values in attributes or []:
        col = np.asarray(values, dtype=object)
        assert (col == col[rep_of_row]).all(), "attribute differs from the representative's"
    return float(cos.min())


@pytest.fixture(scope="session")
def queries_dir() -> Path:
    """The real query embeddings; CI always has them, so their absence is a failure, not a skip."""
    path = DATA_DIR.resolve()
    if not (path / "banking77.parquet").exists() or not (path / "clinc150.parquet").exists():
        pytest.fail(
            f"real query data not found at {path} (expected banking77.parquet and clinc150.parquet); "
            "the repository must sit next to shared/ (REPO/../shared/data/queries)"
        )
    return path


@pytest.fixture(scope="session")
def blobs() -> Callable[..., npt.NDArray[np.float32]]:
    """``blobs(n, d, k=5, spread=0.3, seed=0)``: rows around k random centres with arbitrary norms."""
    return _blobs


@pytest.fixture(scope="session")
def check_guarantee() -> Callable[..., float]:
    """``check_guarantee(X, labels, representatives, alpha, attributes=None)`` -> min similarity."""
    return _check_guarantee
