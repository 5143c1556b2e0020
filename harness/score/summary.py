"""Stage: score.  Per-example results -> the mean task metric with 95% bootstrap CIs (SPEC section 3):
each task summarised per (split, model, regime, mode) and per (split, model, regime, similarity bin),
where the bins pool every mode's records by max_sim (`icl_bench.score.bins`).  Intervals resample test
examples (`icl_bench.score.bootstrap`), drawn as one `Bootstrap` config says.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from icl_bench.score.bins import Bins, bin_of
from icl_bench.score.bootstrap import DEFAULT_BOOTSTRAP, Bootstrap, Corpus, clustered
from icl_bench.score.collapse import Collapse, collapses
from icl_bench.score.results import TaskResults, load_results
from icl_bench.score.schema import Record


@dataclass(frozen=True)
class Cell:
    """Mean (or corpus score) of n records of `examples` test examples, with its example-level
    percentile-bootstrap CI [lo, hi]."""

    mean: float
    lo: float
    hi: float
    n: int
    examples: int


@dataclass(frozen=True)
class Row:
    """One summary cell: `column` is a mode (kind "mode") or a similarity bin (kind "bin")."""

    split: str
    model: str
    regime: str
    kind: Literal["mode", "bin"]
    column: str
    cell: Cell


@dataclass(frozen=True)
class TaskSummary:
    """A task's summary rows, sorted by (split, model, regime, kind, column)."""

    task: str
    metric: str
    bins: Bins
    rows: tuple[Row, ...]
    collapsed: tuple[Collapse, ...] = ()  # model rows answering one output throughout (`collapses`)


def baseline_key(name: str) -> tuple[int, str]:
    """Sort key of trivial baselines: the harness's own in their order, then a task's by name."""
    from icl_bench.score.baselines import ORDER

    return (ORDER.index(name), "") if name in ORDER else (len(ORDER), name)


def cell(
    values: Sequence,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    corpus: Corpus | None = None,
    examples: Sequence[object] | None = None,
) -> Cell:
    """The mean (or corpus score) of records `values` with its example-level bootstrap CI; record i
    belongs to test example `examples[i]` (default: every record its own example)."""
    found = clustered(
        range(len(values)) if examples is None else examples,
        values,
        bootstrap,
        corpus,
    )
    return Cell(found.value, found.lo, found.hi, len(values), found.examples)


def summarise(
    records: Iterable[Record],
    edges: tuple[float, float],
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    corpus: Corpus | None = None,
) -> tuple[Row, ...]:
    """Summary rows of one task: per (split, model, regime, mode) and per (split, model, regime, bin).

    A bin pools the records of every mode whose max_sim falls in it (records without max_sim are left
    out of the bins), so one test example can have several records in a bin: intervals resample test
    examples, all of a drawn example's records together (`icl_bench.score.bootstrap`).  Records are ordered
    by (id, mode), so the result does not depend on the order of the records, and every cell uses the
    same `bootstrap`.  Empty cells have no row.  With `corpus` a cell is the corpus score of its records'
    statistics, else the mean of their scores.
    """
    groups: dict[tuple[str, str, str, str, str], list[Record]] = defaultdict(list)
    for r in records:
        groups[(r.split, r.model, r.regime, "mode", r.mode)].append(r)
        if r.max_sim is not None and not math.isnan(r.max_sim):
            groups[(r.split, r.model, r.regime, "bin", bin_of(r.max_sim, edges))].append(r)
    rows = []
    for key in sorted(groups):
        ordered = sorted(groups[key], key=lambda r: (r.id, r.mode))
        values = [r.score for r in ordered] if corpus is None else [r.stats for r in ordered]
        split, model, regime, kind, column = key
        found = cell(values, bootstrap, corpus, [r.id for r in ordered])
        rows.append(Row(split, model, regime, kind, column, found))  # type: ignore[arg-type]
    return tuple(rows)


def score_task(task: TaskResults, bootstrap: Bootstrap = DEFAULT_BOOTSTRAP) -> TaskSummary:
    """One task's records summarised (`summarise`) with its bins and metric."""
    rows = summarise(task.records, task.bins.edges, bootstrap, task.corpus)
    from icl_bench.core import plugins

    metric = plugins.metrics.get(task.metric)
    top = metric.bounds[1] if metric is not None and metric.bounds is not None else None
    return TaskSummary(task.task, task.metric, task.bins, rows, collapses(task.records, top))


def score_results(results: Path, bootstrap: Bootstrap = DEFAULT_BOOTSTRAP) -> list[TaskSummary]:
    """Every task under the results folder, summarised, in task-name order."""
    return [score_task(task, bootstrap) for task in load_results(results)]
