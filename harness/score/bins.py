"""Similarity bins (SPEC 3): a task's max_sim splits its records into Low (s < e1), Medium
(e1 <= s < e2) and High (s >= e2); the two edges are the tertiles of the records' max_sim or fixed
thresholds, chosen when the contexts are built and kept in the task's bins.json.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from icl_bench.core.errors import UsageError
from icl_bench.score.schema import Record, number

BINS = ("Low", "Medium", "High")
BIN_METHODS = ("tertiles", "fixed")

BinName = Literal["Low", "Medium", "High"]


@dataclass(frozen=True)
class Bins:
    """How a task's max_sim is binned: the method that chose the edges and the two edges."""

    method: str
    edges: tuple[float, float]
    planned: frozenset[tuple[str, str, str]] | None = None  # (split, mode, id) the contexts hold


def bin_edges(
    max_sims: Iterable[float | None], method: str = "tertiles", fixed: Sequence[float] | None = None
) -> tuple[float, float]:
    """The two bin edges: tertiles of the max_sims (None and NaN ignored), or the `fixed` thresholds.

    Tertiles use numpy's linear-interpolation quantiles at 1/3 and 2/3, so distinct values split into
    thirds; with many ties the edges may coincide (Medium is then empty).
    """
    if method not in BIN_METHODS:
        raise UsageError(f"unknown bin method {method!r}; use one of: {', '.join(BIN_METHODS)}")
    if method == "fixed":
        if fixed is None or len(fixed) != 2:
            raise UsageError(f"fixed bins need exactly two edges, got {fixed!r}; pass e.g. 0.3,0.6")
        lo, hi = (float(edge) for edge in fixed)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise UsageError(f"fixed bin edges {lo}, {hi} must be finite and increasing; pass e.g. 0.3,0.6")
        return lo, hi
    if fixed is not None:
        raise UsageError("fixed bin edges were given with method 'tertiles'; use method 'fixed' for them")
    values = np.array([s for s in max_sims if s is not None], dtype=float)
    values = values[~np.isnan(values)]
    if values.size == 0:
        raise UsageError("no max_sim values to take tertiles of; pass fixed edges or rebuild the contexts")
    lo, hi = np.quantile(values, [1 / 3, 2 / 3])
    return float(lo), float(hi)


def bin_of(s: float, edges: tuple[float, float]) -> BinName:
    """Low if s < e1, Medium if e1 <= s < e2, High if s >= e2."""
    if s < edges[0]:
        return "Low"
    return "Medium" if s < edges[1] else "High"


def tertiles(records: Sequence[Record]) -> Bins:
    """Tertiles over the distinct (split, mode, id) pairs: contexts, hence max_sim, are shared by models."""
    sims: dict[tuple[str, str, str], float | None] = {}
    for r in records:
        sims.setdefault((r.split, r.mode, r.id), r.max_sim)
    return Bins("tertiles", bin_edges(sims[key] for key in sorted(sims)))


def read_bins(path: Path) -> tuple[Bins, str | None]:
    """The bins in bins.json, and the metric name it states (optional key "metric")."""
    fix = 'rerun `icl-bench run` or write {"method": "tertiles", "edges": [e1, e2]}'
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise UsageError(f"{path}: not valid JSON ({error.msg}); {fix}") from None
    edges = raw.get("edges") if isinstance(raw, dict) else None
    values = [number(e) for e in edges] if isinstance(edges, list) else []
    if len(values) != 2 or None in values or not all(math.isfinite(v) for v in values):  # type: ignore[arg-type]
        raise UsageError(f"{path}: 'edges' must be two finite numbers; {fix}")
    lo, hi = values
    if lo > hi:  # type: ignore[operator]
        raise UsageError(f"{path}: edges {lo}, {hi} are not in increasing order; {fix}")
    method = raw.get("method")
    if not isinstance(method, str):
        raise UsageError(f"{path}: 'method' must be a string such as \"tertiles\"; {fix}")
    metric = raw.get("metric")
    records = raw.get("records")
    planned = None
    if records is not None:
        try:
            planned = frozenset(
                (split, mode, str(rid))
                for split, modes in records.items()
                for mode, ids in modes.items()
                for rid in ids
            )
        except (AttributeError, TypeError):
            raise UsageError(f"{path}: 'records' must map split -> mode -> ids; {fix}") from None
    bins = Bins(method, (lo, hi), planned)  # type: ignore[arg-type]
    return bins, metric if isinstance(metric, str) else None
