"""The leaderboard's tables: a `Grid` per (task, split) of (model, regime) rows by test-mode and
similarity-bin columns, each cell `mean [lo, hi]`; rendered as leaderboard.md (with the claim
verdicts and the Environment section), the long-format leaderboard.csv and leaderboard.json.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from icl_bench.core import environment
from icl_bench.core.names import MODE_ORDER
from icl_bench.core.types import BASELINE_MODEL
from icl_bench.report.board import Board, regime_key
from icl_bench.report.suites import md_code, md_escape, plan_markdown
from icl_bench.score import verdicts
from icl_bench.score.bins import BINS
from icl_bench.score.summary import Cell, TaskSummary, baseline_key

CSV_FIELDS = ("task", "split", "model", "regime", "kind", "column", "mean", "lo", "hi", "n", "examples")
DIGITS = 6  # decimals kept in the csv and json
MISSING = "-"


@dataclass(frozen=True)
class Grid:
    """One table: a task's (model, regime) rows by its columns (modes, then bins) for one split."""

    task: str
    metric: str
    split: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, str], ...]
    labels: tuple[str, ...]
    cells: tuple[tuple[Cell | None, ...], ...]
    decimals: int
    references: frozenset[int] = frozenset()  # rows of trivial baselines: shown, never best

    def text(self, i: int, j: int) -> str:
        """`mean [lo, hi]` with `decimals` decimals, or `-` for an empty cell."""
        cell, d = self.cells[i][j], self.decimals
        return MISSING if cell is None else f"{cell.mean:.{d}f} [{cell.lo:.{d}f}, {cell.hi:.{d}f}]"

    def compact(self, i: int, j: int) -> str:
        """`mean ±h`, h the CI's half-width, for terminals; `-` for an empty cell."""
        cell, d = self.cells[i][j], self.decimals
        return MISSING if cell is None else f"{cell.mean:.{d}f} ±{(cell.hi - cell.lo) / 2:.{d}f}"

    def best(self, j: int) -> set[int]:
        """Model rows whose displayed mean in column j is the column's highest (ties all count)."""
        shown = {
            i: round(row[j].mean, self.decimals)
            for i, row in enumerate(self.cells)
            if row[j] is not None and i not in self.references
        }
        top = max(shown.values(), default=None)
        return {i for i, mean in shown.items() if mean == top}


def collapsed_lines(summary: TaskSummary, split: str | None = None) -> list[str]:
    """One sentence per collapsed model row (`icl_bench.score.collapse`) of `split` (None: every one),
    in the tables' row order."""
    found = sorted(summary.collapsed, key=lambda c: (c.split, c.model, regime_key(c.regime)))
    return [
        f"{c.model} / {c.regime} answers {md_code(c.output)} on all {c.records} records of split "
        f"`{c.split}`, not all of them right: its cells measure that one output, not what the regime learned"
        for c in found
        if split in (None, c.split)
    ]


def decimals(summary: TaskSummary) -> int:
    """3 decimals for metrics within [-1, 1] (accuracy), 1 for wider scales (chrF 0-100)."""
    values = [v for row in summary.rows for v in (row.cell.mean, row.cell.lo, row.cell.hi)]
    return 3 if all(abs(v) <= 1 for v in values) else 1


def grids(summary: TaskSummary) -> list[Grid]:
    """The task's tables, one per split (sorted): the models' rows, then the trivial baselines'."""
    modes = {row.column for row in summary.rows if row.kind == "mode"}
    columns = MODE_ORDER + tuple(sorted(modes - set(MODE_ORDER))) + BINS
    models = {row.model for row in summary.rows} - {BASELINE_MODEL}
    lookup = {(r.split, r.model, r.regime, r.kind, r.column): r.cell for r in summary.rows}
    digits = decimals(summary)
    result = []
    for split in sorted({row.split for row in summary.rows}):
        found = {(r.model, r.regime) for r in summary.rows if r.split == split}
        keys = sorted((k for k in found if k[0] != BASELINE_MODEL), key=lambda k: (k[0], regime_key(k[1])))
        references = sorted((k for k in found if k[0] == BASELINE_MODEL), key=lambda k: baseline_key(k[1]))
        labels = tuple(f"{m} / {r}" if len(models) > 1 else r for m, r in keys)
        labels += tuple(r for _, r in references)
        cells = tuple(
            tuple(lookup.get((split, m, r, "bin" if c in BINS else "mode", c)) for c in columns)
            for m, r in (*keys, *references)
        )
        marked = frozenset(range(len(keys), len(keys) + len(references)))
        rows = (*keys, *references)
        result.append(Grid(summary.task, summary.metric, split, columns, rows, labels, cells, digits, marked))
    return result


def markdown(data: Board) -> str:
    """leaderboard.md: per task its bins, a table per split, the plot and the claims; the environment."""
    resamples, level, seed = data.bootstrap.resamples, data.bootstrap.level, data.bootstrap.seed
    lines = [
        "# Leaderboard",
        "",
        "Generated by `icl-bench leaderboard` from the per-example results alone; do not edit by hand.",
        "",
        *(plan_markdown(data.plan) if data.plan else []),
        f"Each cell is `mean [lo, hi]`: the mean score with its {level:.0%} percentile-bootstrap CI "
        f"({resamples} resamples of the test examples in the cell, seed {seed}; a resample carries all "
        "of a drawn example's records in the cell together, so an example that several modes put in "
        "one bin counts once). Columns are the test-context modes, then the Low / Medium / High bins of "
        f"max_sim, which pool every mode's records. **Bold**: the best mean in the column (higher is "
        f"better). *Italic* rows are trivial baselines scored on the same records without a model, "
        "references that are never best: `majority` (the training pool's most frequent output) and "
        "`copy-nearest` (the output of the context example most similar to the target: pure copying). "
        f"`{MISSING}`: no records.",
    ]
    for summary in data.summaries:
        e1, e2 = summary.bins.edges
        lines += [
            "",
            f"## {summary.task}",
            "",
            f"Metric: `{summary.metric}`. Bins ({summary.bins.method} of max_sim): "
            f"Low < {e1:.4g} <= Medium < {e2:.4g} <= High.",
        ]
        tables = grids(summary)
        for grid in tables:
            if len(tables) > 1:
                lines += ["", f"### Split `{grid.split}`"]
            lines += ["", "| " + " | ".join(("regime", *grid.columns)) + " |"]
            lines.append("|:--" + "|--:" * len(grid.columns) + "|")
            bold = [grid.best(j) for j in range(len(grid.columns))]
            for i, label in enumerate(grid.labels):
                texts = [
                    f"**{grid.text(i, j)}**" if i in bold[j] else grid.text(i, j)
                    for j in range(len(grid.columns))
                ]
                label = f"*{label}*" if i in grid.references else label
                lines.append("| " + " | ".join(md_escape(t) for t in (label, *texts)) + " |")
        for line in collapsed_lines(summary):
            lines += ["", f"**Collapsed**: {line}."]
        lines += ["", f"![{summary.task}: score by similarity bin]({quote(summary.task)}.png)"]
        lines += verdicts.markdown(data.verdicts[summary.task], decimals(summary), data.margins[summary.task])
    lines += environment_markdown(data.environments)
    return "\n".join(lines) + "\n"


def environment_markdown(recorded: dict[tuple[str, str, str, str], dict[str, Any] | None]) -> list[str]:
    """The Environment section: one column per distinct environment, and which results each made."""
    lines = ["", "## Environment", ""]
    known = environment.distinct(env for env in recorded.values() if env is not None)
    missing = sorted(
        "/".join(key[:3]) + f" ({key[3]})"
        for key, env in recorded.items()
        if env is None and key[3] == "evaluate"
    )
    if not known:
        return [*lines, "Not recorded: these results predate environment records; rerun `icl-bench run`."]
    if len(known) == 1:
        lines.append("Every recorded result was trained and evaluated in this environment:")
    else:
        lines.append(f"The results come from {len(known)} environments:")
    names = [f"env {i + 1}" for i in range(len(known))] if len(known) > 1 else ["value"]
    lines += ["", "| " + " | ".join(("", *names)) + " |", "|:--" * (len(names) + 1) + "|"]
    described = [dict(environment.describe(env)) for env in known]
    for field, _ in environment.describe(known[0]):
        lines.append("| " + " | ".join((field, *(d.get(field, MISSING) for d in described))) + " |")
    if len(known) > 1:
        lines.append("")
        for i, env in enumerate(known):
            used = sorted("/".join(k[:3]) + f" ({k[3]})" for k, e in recorded.items() if e == env)
            lines.append(f"- env {i + 1}: {', '.join(used)}")
    if missing:
        lines += ["", f"Not recorded for: {', '.join(missing)}."]
    return lines


def rows(summaries: Sequence[TaskSummary]) -> list[dict[str, Any]]:
    """Long-format rows in table order (task, split, row, column); floats rounded to DIGITS."""
    out = []
    for summary in summaries:
        for grid in grids(summary):
            for (model, regime), row in zip(grid.rows, grid.cells, strict=True):
                for column, cell in zip(grid.columns, row, strict=True):
                    if cell is None:
                        continue
                    kind = "bin" if column in BINS else "mode"
                    out.append(
                        {
                            "task": summary.task,
                            "split": grid.split,
                            "model": model,
                            "regime": regime,
                            "kind": kind,
                            "column": column,
                            "mean": round(cell.mean, DIGITS),
                            "lo": round(cell.lo, DIGITS),
                            "hi": round(cell.hi, DIGITS),
                            "n": cell.n,
                            "examples": cell.examples,
                        }
                    )
    return out


def csv_text(summaries: Sequence[TaskSummary]) -> str:
    """leaderboard.csv: the long-format `rows`."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows(summaries))
    return buffer.getvalue()


def json_text(data: Board) -> str:
    """leaderboard.json: per task its metric, bins, rows and claims; the bootstrap and environments."""
    tasks: dict[str, Any] = {}
    for summary in data.summaries:
        tasks[summary.task] = {
            "metric": summary.metric,
            "bins": {"method": summary.bins.method, "edges": list(summary.bins.edges)},
            "decimals": decimals(summary),
            "rows": [{k: v for k, v in row.items() if k != "task"} for row in rows([summary])],
            "claims": verdicts.as_json(data.verdicts[summary.task], DIGITS),
            "claims_margin": round(data.margins[summary.task], DIGITS),
            "collapsed": [dataclasses.asdict(c) for c in summary.collapsed],
        }
    environments = [
        {"task": t, "model": m, "regime": r, "stage": s, "environment": env}
        for (t, m, r, s), env in sorted(data.environments.items())
    ]
    config = data.bootstrap
    bootstrap = {"resamples": config.resamples, "level": config.level, "seed": config.seed}
    out = {"bootstrap": bootstrap, "tasks": tasks, "environments": environments}
    return json.dumps(out, indent=2, sort_keys=True, allow_nan=False) + "\n"
