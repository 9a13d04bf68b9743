"""Synthetic skewed mixtures of unit vectors (the scale benchmark's input).

Component weights follow a Zipf law (a few huge intents, a long tail), each component is a random unit centre
plus isotropic Gaussian noise of a per-component spread, and a fraction of rows is pure noise (one-off
queries). Rows are generated in chunks straight into one float32 matrix, so 1M x 384 needs ~1.5 GB.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def skewed_mixture(
    n: int,
    d: int = 384,
    *,
    n_components: int | None = None,
    zipf: float = 1.1,
    spread: tuple[float, float] = (0.2, 0.6),
    noise_fraction: float = 0.05,
    seed: int = 0,
    chunk: int = 65536,
) -> npt.NDArray[np.float32]:
    """``n x d`` float32 unit rows from a Zipf-weighted mixture of spherical Gaussian blobs plus noise."""
    rng = np.random.default_rng(seed)
    k = n_components if n_components is not None else max(8, n // 200)
    centres = rng.standard_normal((k, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = 1.0 / np.arange(1, k + 1) ** zipf
    weights /= weights.sum()
    sigma = rng.uniform(*spread, size=k).astype(np.float32) / np.sqrt(d).astype(np.float32)
    out = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        comp = rng.choice(k, size=m, p=weights)
        block = rng.standard_normal((m, d), dtype=np.float32) * sigma[comp, None]
        block += centres[comp]
        noise = rng.random(m) < noise_fraction
        block[noise] = rng.standard_normal((int(noise.sum()), d), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + m] = block
    return out
