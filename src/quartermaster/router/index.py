"""Nearest-representative lookup: embedding -> query cluster.

The clustering job summarises every query cluster by a few representatives (unit vectors in the
embedding space of the clustering's embedding model). At request time the router embeds the query and
asks for the representative with the highest inner product (= cosine similarity, all vectors are
L2-normalised). If that similarity is at least the clustering's ``alpha`` the query belongs to the
representative's cluster; otherwise it is out of distribution and goes to the default cluster.

The search is exhaustive: 10k representatives x 384 dimensions is ~4 M multiply-adds per query, and an
exhaustive index needs no training, so a config reload rebuilds it in milliseconds. Two storages:

- ``precision="float16"`` (``faiss.IndexScalarQuantizer`` with ``QT_fp16``): rows are kept as float16
  and decoded on the fly against the float32 query. The router config ships representatives as float16
  by default, so this loses nothing against the config, and it halves the memory streamed per query
  (about 2.5x faster than float32 at 10k x 384 on the benchmark machine, see ``benchmarks/router``).
- ``precision="float32"`` (``faiss.IndexFlatIP``): exact float32 inner products.

Opt-in for very large representative sets: ``search="hnsw"`` (``faiss.IndexHNSWFlat``, ``hnsw_m`` links
per node, ``hnsw_ef_search`` candidates per query) is an approximate graph search: 2-4x cheaper at 10k
representatives, but about 0.5% of queries land in another cluster than with the exhaustive search
(measured on CLINC150 in ``benchmarks/router``). The similarity it reports is exact for the row it
returns. Building the graph takes about a second for 10k rows (done off the event loop, on reload).

faiss uses OpenMP; for one query at a time its thread pool only adds overhead, so the index limits faiss
to ``omp_threads`` threads (default 1) for its searches.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import faiss
import numpy as np
from numpy.typing import ArrayLike, NDArray

logger = logging.getLogger(__name__)


class RepresentativeIndexError(ValueError):
    """Representatives or a query vector do not fit the index (wrong shape, NaN, zero vector)."""


@dataclass(frozen=True)
class Assignment:
    """The cluster a query vector falls into.

    ``representative`` is the row of the nearest representative (-1 if the index is empty) and
    ``similarity`` its inner product with the query; ``in_distribution`` is ``similarity >= alpha``.
    """

    cluster: str
    similarity: float
    representative: int
    in_distribution: bool


def as_unit_rows(vectors: ArrayLike, *, what: str) -> NDArray[np.float32]:
    """Coerce to a C-contiguous float32 (n, d) array of unit rows (the one conversion at the boundary)."""
    arr = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise RepresentativeIndexError(
            f"{what}: expected a (n, d) matrix of embeddings, got shape {arr.shape}."
        )
    if not np.all(np.isfinite(arr)):
        raise RepresentativeIndexError(f"{what}: contains NaN or infinite values; send finite floats.")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    if np.any(norms == 0.0):
        raise RepresentativeIndexError(
            f"{what}: contains an all-zero vector, which has no direction; drop it."
        )
    return np.ascontiguousarray(arr / norms, dtype=np.float32)


class RepresentativeIndex:
    """Exact inner-product index over labelled cluster representatives.

    Parameters
    ----------
    vectors:
        (n, d) representatives; rows are L2-normalised here.
    labels:
        The cluster name of each row (length n).
    alpha:
        Similarity threshold: below it a query is out of distribution.
    default_cluster:
        The cluster for out-of-distribution queries (and for every query when ``n == 0``).
    omp_threads:
        faiss/OpenMP threads used for a search (1 is fastest for a single query).
    precision:
        ``float16`` (scalar-quantizer storage, default) or ``float32`` (flat); exhaustive search only.
    search:
        ``exact`` (exhaustive, default) or ``hnsw`` (approximate graph search, see the module docstring).
    hnsw_m, hnsw_ef_search:
        Graph degree and search breadth of ``search="hnsw"``.
    """

    def __init__(
        self,
        vectors: ArrayLike,
        labels: list[str],
        *,
        alpha: float,
        default_cluster: str,
        omp_threads: int = 1,
        precision: Literal["float16", "float32"] = "float16",
        search: Literal["exact", "hnsw"] = "exact",
        hnsw_m: int = 16,
        hnsw_ef_search: int = 64,
    ) -> None:
        if not -1.0 <= alpha <= 1.0:
            raise RepresentativeIndexError(
                f"alpha={alpha} is not a cosine similarity; use a value in [-1, 1]."
            )
        arr = np.asarray(vectors, dtype=np.float32)
        if arr.size == 0:
            if labels:
                raise RepresentativeIndexError(f"{len(labels)} labels but no representative vectors.")
            self.dim: int | None = None
            self._index: faiss.Index | None = None
            unit = np.zeros((0, 0), dtype=np.float32)
        else:
            unit = as_unit_rows(arr, what="representatives")
            if len(labels) != unit.shape[0]:
                raise RepresentativeIndexError(
                    f"{unit.shape[0]} representative vectors but {len(labels)} labels; give one "
                    "cluster label per representative."
                )
            self.dim = int(unit.shape[1])
            faiss.omp_set_num_threads(omp_threads)
            if search == "hnsw":
                if hnsw_m < 2 or hnsw_ef_search < 1:
                    raise RepresentativeIndexError(
                        f"hnsw_m={hnsw_m} / hnsw_ef_search={hnsw_ef_search}: use M >= 2 and efSearch >= 1."
                    )
                hnsw = faiss.IndexHNSWFlat(self.dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
                hnsw.hnsw.efSearch = hnsw_ef_search
                self._index = hnsw
            elif precision == "float16":
                self._index = faiss.IndexScalarQuantizer(
                    self.dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
                )
            else:
                self._index = faiss.IndexFlatIP(self.dim)
            self._index.add(unit)
        self.vectors = unit
        self.labels = list(labels)
        self.alpha = float(alpha)
        self.default_cluster = default_cluster
        self.omp_threads = omp_threads
        self.precision = precision
        self.search_kind = search

    def __len__(self) -> int:
        return len(self.labels)

    def search(self, queries: ArrayLike) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Top-1 similarity and row for each query (rows of -1 / -inf when the index is empty)."""
        q = as_unit_rows(queries, what="query embedding")
        if self._index is None:
            n = q.shape[0]
            return np.full(n, -np.inf, dtype=np.float32), np.full(n, -1, dtype=np.int64)
        if q.shape[1] != self.dim:
            raise RepresentativeIndexError(
                f"query embedding has {q.shape[1]} dimensions but the representatives have {self.dim}; "
                "embed with the clustering's embedding model."
            )
        faiss.omp_set_num_threads(self.omp_threads)
        sims, rows = self._index.search(q, 1)
        return sims[:, 0], rows[:, 0].astype(np.int64)

    def assign(self, query: ArrayLike) -> Assignment:
        """The cluster of one query vector (nearest representative if similar enough, else default)."""
        sims, rows = self.search(query)
        if sims.shape[0] != 1:
            raise RepresentativeIndexError(
                f"assign() takes one query vector, got {sims.shape[0]}; use assign_many()."
            )
        return self._assignment(float(sims[0]), int(rows[0]))

    def assign_many(self, queries: ArrayLike) -> list[Assignment]:
        """The cluster of each row of ``queries``."""
        sims, rows = self.search(queries)
        return [self._assignment(float(s), int(r)) for s, r in zip(sims, rows, strict=True)]

    def _assignment(self, similarity: float, row: int) -> Assignment:
        if row < 0 or similarity < self.alpha:
            return Assignment(self.default_cluster, similarity, row, False)
        return Assignment(self.labels[row], similarity, row, True)
