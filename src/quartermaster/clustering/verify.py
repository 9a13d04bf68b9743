"""Independent float64 check of a clustering output against its input (``quartermaster cluster verify``).

This module deliberately shares no similarity code with the clustering: it reads the input again, computes
every member-to-representative cosine in float64 from the raw input values (``dot(x, y) / (|x| |y|)``) and
checks, for every row of the input (or of the shard the output covers):

* it is assigned exactly once — or it is invalid (null, wrong dimension, NaN/inf, zero norm) and absent;
* ``cos(row, representative) >= alpha - tolerance`` with ``tolerance = 1e-12`` (float64 rounding only);
* every attribute value equals the representative's exactly (missing equals missing);
* the representative belongs to its own cluster, each cluster has one representative, and the reported
  ``similarity`` matches the recomputed cosine (within 1e-9).

Rows are streamed in batches; representatives' vectors are held in memory (``O(clusters * d)``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from quartermaster.clustering.errors import VerificationError
from quartermaster.clustering.shards import Shard, shard_mask
from quartermaster.clustering.similarity import FLOAT64_TOLERANCE

__all__ = ["VerifyReport", "Violation", "verify_outputs"]

_BATCH = 65536
_SIMILARITY_REPORT_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Violation:
    """One row that breaks the promise."""

    row: int
    representative: int | None
    reason: str
    similarity: float | None = None


@dataclass
class VerifyReport:
    """Outcome of :func:`verify_outputs`; ``ok`` when every count is zero."""

    alpha: float
    tolerance: float
    n_expected: int = 0
    n_checked: int = 0
    n_invalid_absent: int = 0
    min_similarity: float | None = None
    rows_below_alpha: int = 0
    attribute_mismatches: int = 0
    missing_rows: int = 0
    unexpected_rows: int = 0
    duplicate_rows: int = 0
    bad_representatives: int = 0
    similarity_mismatches: int = 0
    violations: list[Violation] = field(default_factory=list)

    @property
    def n_violations(self) -> int:
        return (
            self.rows_below_alpha
            + self.attribute_mismatches
            + self.missing_rows
            + self.unexpected_rows
            + self.duplicate_rows
            + self.bad_representatives
            + self.similarity_mismatches
        )

    @property
    def ok(self) -> bool:
        return self.n_violations == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "alpha": self.alpha,
            "tolerance": self.tolerance,
            "n_expected": self.n_expected,
            "n_checked": self.n_checked,
            "n_invalid_absent": self.n_invalid_absent,
            "min_similarity": self.min_similarity,
            "rows_below_alpha": self.rows_below_alpha,
            "attribute_mismatches": self.attribute_mismatches,
            "missing_rows": self.missing_rows,
            "unexpected_rows": self.unexpected_rows,
            "duplicate_rows": self.duplicate_rows,
            "bad_representatives": self.bad_representatives,
            "similarity_mismatches": self.similarity_mismatches,
            "violations": [v.__dict__ for v in self.violations],
        }


class _Source:
    """Raw input rows as float64 batches plus a validity mask, read independently of the clustering."""

    def __init__(self, path: Path, embedding_column: str, attributes: list[str]) -> None:
        self.path = path
        self.embedding_column = embedding_column
        self.attributes = attributes
        if path.suffix == ".npy":
            self.matrix: npt.NDArray[Any] | None = np.load(path, mmap_mode="r", allow_pickle=False)
            self.n_rows = int(self.matrix.shape[0])
            self.columns: list[str] = []
        else:
            self.matrix = None
            self.file = pq.ParquetFile(path)
            self.n_rows = self.file.metadata.num_rows
            self.columns = list(self.file.schema_arrow.names)
            missing = [c for c in [embedding_column, *attributes] if c not in self.columns]
            if missing:
                raise VerificationError(
                    f"column(s) {missing} not in {str(path)!r}; available: {self.columns}; pass the columns "
                    "the output was made with (--embedding-column/--attributes)"
                )

    def attribute_codes(self) -> npt.NDArray[np.int64]:
        """One int64 code per row and attribute column; equal codes <=> equal values (null = -1)."""
        codes = np.zeros((self.n_rows, len(self.attributes)), dtype=np.int64)
        if self.attributes:
            table = self.file.read(columns=self.attributes)
            for j, name in enumerate(self.attributes):
                enc = table.column(name).combine_chunks().dictionary_encode()
                idx = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False)
                codes[:, j] = idx
        return codes

    def batches(self, d: int) -> Iterator[tuple[int, npt.NDArray[np.float64], npt.NDArray[np.bool_]]]:
        """(first row, float64 vectors, valid mask) per batch; invalid rows hold zeros."""
        if self.matrix is not None:
            for start in range(0, self.n_rows, _BATCH):
                block = np.array(self.matrix[start : start + _BATCH], dtype=np.float64)
                yield start, *_clean(block)
            return
        start = 0
        for batch in self.file.iter_batches(batch_size=_BATCH, columns=[self.embedding_column]):
            col = batch.column(0)
            m = len(col)
            lengths = np.asarray(col.value_lengths().fill_null(-1), dtype=np.int64)
            good_len = lengths == d
            block = np.zeros((m, d), dtype=np.float64)
            if good_len.any():
                values = col.filter(pa.array(good_len)).flatten().to_numpy(zero_copy_only=False)
                block[good_len] = np.asarray(values, dtype=np.float64).reshape(-1, d)
            vec, valid = _clean(block)
            yield start, vec, valid & good_len
            start += m


def _clean(block: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    finite = np.isfinite(block).all(axis=1)
    block[~finite] = 0.0
    norms = np.sqrt((block * block).sum(axis=1))
    valid = finite & (norms > 0)
    return block, valid


def verify_outputs(
    input_path: str | Path,
    out_dir: str | Path,
    *,
    alpha: float | None = None,
    attributes: list[str] | None = None,
    embedding_column: str | None = None,
    tolerance: float = FLOAT64_TOLERANCE,
    max_report: int = 20,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Check ``out_dir`` against ``input_path`` (alpha/attributes/column default to summary.json's)."""
    out = Path(out_dir)
    summary_path = out / "summary.json"
    assign_path = out / "assignments.parquet"
    if not summary_path.exists() or not assign_path.exists():
        raise VerificationError(
            f"{str(out)!r} lacks summary.json or assignments.parquet; pass a directory written by "
            "`quartermaster cluster`"
        )
    summary = json.loads(summary_path.read_text())
    a = float(summary["alpha"] if alpha is None else alpha)
    if not (0.0 < a <= 1.0 and math.isfinite(a)):
        raise VerificationError(
            f"alpha={a!r} is outside (0, 1]; pass the threshold to check, e.g. --alpha 0.7"
        )
    attrs = list(summary.get("attributes", []) if attributes is None else attributes)
    column = embedding_column or summary.get("embedding_column") or "embedding"
    source = _Source(Path(input_path), column, attrs)
    report = VerifyReport(alpha=a, tolerance=tolerance)

    assign = pq.read_table(assign_path)
    rows = np.asarray(assign.column("row").to_numpy(), dtype=np.int64)
    reps = np.asarray(assign.column("representative").to_numpy(), dtype=np.int64)
    clusters = np.asarray(assign.column("cluster").to_numpy(), dtype=np.int64)
    reported = np.asarray(assign.column("similarity").to_numpy(), dtype=np.float64)

    def note(row: int, rep: int | None, reason: str, sim: float | None = None) -> None:
        if len(report.violations) < max_report:
            report.violations.append(Violation(int(row), None if rep is None else int(rep), reason, sim))

    n = source.n_rows
    out_of_range = (rows < 0) | (rows >= n) | (reps < 0) | (reps >= n)
    for i in np.flatnonzero(out_of_range)[:max_report]:
        note(rows[i], reps[i], "row or representative index outside the input")
    report.unexpected_rows += int(out_of_range.sum())
    keep = ~out_of_range
    rows, reps, clusters, reported = rows[keep], reps[keep], clusters[keep], reported[keep]

    rep_of = np.full(n, -1, dtype=np.int64)
    count = np.bincount(rows, minlength=n)
    rep_of[rows] = reps
    sim_reported = np.full(n, np.nan)
    sim_reported[rows] = reported
    dup = np.flatnonzero(count > 1)
    report.duplicate_rows = int(dup.size)
    for r in dup[:max_report]:
        note(r, None, "row assigned more than once")

    # Each cluster has exactly one representative, and a representative belongs to its own cluster.
    pairs = np.unique(np.stack([clusters, reps], axis=1), axis=0)
    multi = np.flatnonzero(np.bincount(pairs[:, 0]) > 1) if pairs.size else np.zeros(0, dtype=np.int64)
    uniq_reps = np.unique(reps)
    not_self = uniq_reps[rep_of[uniq_reps] != uniq_reps]
    report.bad_representatives = int(multi.size + not_self.size)
    for c in multi[:max_report]:
        note(-1, None, f"cluster {int(c)} has more than one representative")
    for r in not_self[:max_report]:
        note(r, r, "representative is not a member of its own cluster")

    expected = np.ones(n, dtype=np.bool_)
    shard_info = summary.get("shard")
    if shard_info:
        codes_for_shard: dict[str, Any] = {}
        if shard_info["by"] == "partition":
            table = source.file.read(columns=attrs)
            codes_for_shard = {name: table.column(name) for name in attrs}
        expected = shard_mask(
            n, Shard(shard_info["index"], shard_info["count"]), shard_info["by"], codes_for_shard
        )

    d = int(summary["d"]) if summary.get("d") else 0
    codes = source.attribute_codes()
    # Representative vectors, normalised in float64.
    rep_vec = np.zeros((uniq_reps.size, max(d, 1)), dtype=np.float64)
    rep_valid = np.zeros(uniq_reps.size, dtype=np.bool_)
    if d:
        for start, vec, valid in source.batches(d):
            stop = start + vec.shape[0]
            lo, hi = np.searchsorted(uniq_reps, [start, stop])
            if hi > lo:
                local = uniq_reps[lo:hi] - start
                norms = np.linalg.norm(vec[local], axis=1)
                rep_vec[lo:hi] = vec[local] / np.where(norms > 0, norms, 1.0)[:, None]
                rep_valid[lo:hi] = valid[local]
        min_sim = math.inf
        for start, vec, valid in source.batches(d):
            stop = start + vec.shape[0]
            idx = np.arange(start, stop)
            exp = expected[start:stop]
            assigned = count[start:stop] > 0
            invalid_assigned = assigned & ~valid
            report.unexpected_rows += int(invalid_assigned.sum()) + int((assigned & ~exp).sum())
            for r in idx[invalid_assigned][:max_report]:
                note(r, None, "invalid input row (null, NaN/inf, zero norm or wrong dimension) was assigned")
            for r in idx[assigned & ~exp][:max_report]:
                note(r, None, "row outside this output's shard was assigned")
            missing = exp & valid & ~assigned
            report.missing_rows += int(missing.sum())
            for r in idx[missing][:max_report]:
                note(r, None, "valid input row has no assignment")
            report.n_invalid_absent += int((exp & ~valid & ~assigned).sum())
            report.n_expected += int((exp & valid).sum())
            check = assigned & valid & exp
            if not check.any():
                continue
            local = np.flatnonzero(check)
            r_rows = idx[local]
            r_reps = rep_of[r_rows]
            pos = np.searchsorted(uniq_reps, r_reps)
            x = vec[local]
            x = x / np.linalg.norm(x, axis=1)[:, None]
            cos = np.clip((x * rep_vec[pos]).sum(axis=1), -1.0, 1.0)
            cos = np.where(rep_valid[pos], cos, -np.inf)
            report.n_checked += int(local.size)
            below = cos < a - tolerance
            report.rows_below_alpha += int(below.sum())
            for r, rep, s in zip(r_rows[below][:max_report], r_reps[below], cos[below], strict=False):
                note(r, rep, f"cosine {s:.6f} to the representative is below alpha {a}", float(s))
            if np.isfinite(cos).any():
                min_sim = min(min_sim, float(cos[np.isfinite(cos)].min()))
            mismatch = (codes[r_rows] != codes[r_reps]).any(axis=1)
            report.attribute_mismatches += int(mismatch.sum())
            for r, rep in zip(r_rows[mismatch][:max_report], r_reps[mismatch], strict=False):
                note(r, rep, "attribute values differ from the representative's")
            bad_sim = ~(np.abs(sim_reported[r_rows] - cos) <= _SIMILARITY_REPORT_TOLERANCE)
            report.similarity_mismatches += int(bad_sim.sum())
            for r, rep in zip(r_rows[bad_sim][:max_report], r_reps[bad_sim], strict=False):
                note(r, rep, "reported similarity differs from the recomputed cosine")
            if progress is not None:
                progress(stop, n)
        report.min_similarity = None if math.isinf(min_sim) else min_sim
    else:
        report.n_expected = 0
    return report
