"""Figure 3 of the paper for the leaderboard: a task's score by similarity bin (Low/Medium/High), one line
per regime with its CI bars and the trivial baselines dashed, rendered to PNG bytes that are equal for
equal inputs on one matplotlib version.
"""

from __future__ import annotations

from typing import Any

from icl_bench.core.types import BASELINE_MODEL
from icl_bench.report.board import regime_key
from icl_bench.report.tables import grids
from icl_bench.report.writer import png_bytes
from icl_bench.score.bins import BINS
from icl_bench.score.summary import TaskSummary, baseline_key


def plot_png(summary: TaskSummary) -> bytes:
    """Figure 3 of the paper for one task: score by similarity bin, a line per regime with CI bars.

    One panel per (model, split).  Rendered with Agg under matplotlib's default style (no user rc),
    a fixed size and dpi, and no Software metadata, so equal inputs give equal bytes for a given
    matplotlib version.
    """
    import matplotlib
    import matplotlib.style
    from matplotlib.figure import Figure

    tables = grids(summary)
    models = sorted({m for grid in tables for m, _ in grid.rows} - {BASELINE_MODEL})
    regimes = sorted({r for grid in tables for m, r in grid.rows if m != BASELINE_MODEL}, key=regime_key)
    references = sorted({r for grid in tables for m, r in grid.rows if m == BASELINE_MODEL}, key=baseline_key)
    with matplotlib.style.context("default"):
        colours = matplotlib.colormaps["tab10" if len(regimes) <= 10 else "tab20"]
        fig = Figure(figsize=(4.2 * len(tables) + 2.0, 3.2 * len(models)), dpi=100, layout="constrained")
        axes = fig.subplots(len(models), len(tables), squeeze=False, sharey=True)
        bins = [tables[0].columns.index(b) for b in BINS] if tables else []
        width = min(0.3, 0.6 / max(1, len(regimes)))
        handles: dict[str, Any] = {}
        for col, grid in enumerate(tables):
            for row, model in enumerate(models):
                ax = axes[row][col]
                for (m, regime), cells in zip(grid.rows, grid.cells, strict=True):
                    if m not in (model, BASELINE_MODEL):
                        continue
                    points = [(x, cells[j]) for x, j in enumerate(bins) if cells[j] is not None]
                    if not points:
                        continue
                    means = [c.mean for _, c in points]
                    if m == BASELINE_MODEL:  # a reference: a dashed grey line, no interval
                        k = references.index(regime)
                        label = f"{regime} (baseline)"
                        (handles[label],) = ax.plot(
                            [x for x, _ in points], means, ls="--", lw=1, color=str(0.25 + 0.2 * k)
                        )
                        continue
                    k = regimes.index(regime)
                    offset = (k - (len(regimes) - 1) / 2) * width
                    xs = [x + offset for x, _ in points]
                    errors = [[c.mean - c.lo for _, c in points], [c.hi - c.mean for _, c in points]]
                    handles[regime] = ax.errorbar(
                        xs, means, yerr=errors, marker="o", ms=4, capsize=3, lw=1.2, color=colours(k)
                    )
                title = model if len(tables) == 1 else f"{model}, split {grid.split}"
                ax.set_title(title, fontsize=9)
                ax.set_xticks(range(len(BINS)), BINS)
                ax.set_xlim(-0.5, len(BINS) - 0.5)
                ax.grid(axis="y", alpha=0.3)
                if col == 0:
                    ax.set_ylabel(summary.metric)
                if row == len(models) - 1:
                    ax.set_xlabel("similarity bin (max_sim)")
        fig.suptitle(summary.task, fontsize=11)
        order = [r for r in (*regimes, *(f"{b} (baseline)" for b in references)) if r in handles]
        if order:
            fig.legend([handles[r] for r in order], order, loc="outside right upper", fontsize=8)
        return png_bytes(fig)
