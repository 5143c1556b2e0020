"""Stage: leaderboard.  Tables and Figure-3 plots, regenerated from a results folder alone.

`write_leaderboard(results, out)` writes, byte-deterministically for identical results:

    out/leaderboard.md     one section per task: metric, bin edges, a table per split, the plot and the
                           claim verdicts; then the environment the results were made in
    out/leaderboard.csv    long format: task,split,model,regime,kind,column,mean,lo,hi,n,examples
    out/leaderboard.json   the same rows grouped by task, with each task's metric, bins and claims
    out/<task>.png         score by similarity bin (Low/Medium/High), one line per regime, CI error bars

Table rows are the regimes in the order base, zero, random, similar, contrastive, then the others
alphabetically (prefixed `model / ` when a task has several models); columns are the test-context modes
then the Low/Medium/High similarity bins; each cell is `mean [lo, hi]`.  What the files show is a
`Board` (`icl_bench.report.board`), rendered by `icl_bench.report.tables` and `.plots`; the index of
suites is `icl_bench.report.suites`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from icl_bench.report.board import board
from icl_bench.report.plots import plot_png
from icl_bench.report.tables import Grid, collapsed_lines, csv_text, decimals, grids, json_text, markdown
from icl_bench.report.writer import write_files
from icl_bench.score import verdicts
from icl_bench.score.bins import BINS
from icl_bench.score.bootstrap import DEFAULT_BOOTSTRAP, Bootstrap

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

FILES = ("leaderboard.md", "leaderboard.csv", "leaderboard.json")
OTHER_STAGES = (
    "probes.png",
)  # written into a suite by another stage (`icl_bench.analyses.probes`): never stale


def render(results: Path, bootstrap: Bootstrap = DEFAULT_BOOTSTRAP) -> dict[str, bytes]:
    """Every leaderboard file's name and bytes, computed from `results` alone."""
    data = board(results, bootstrap)
    files = {
        "leaderboard.md": markdown(data).encode(),
        "leaderboard.csv": csv_text(data.summaries).encode(),
        "leaderboard.json": json_text(data).encode(),
    }
    for summary in data.summaries:
        files[f"{summary.task}.png"] = plot_png(summary)
    return files


def write_leaderboard(results: Path, out: Path, bootstrap: Bootstrap = DEFAULT_BOOTSTRAP) -> list[Path]:
    """Write leaderboard.md/.csv/.json and one <task>.png into `out`; return the paths written.

    Files of tasks no longer in `results` are left alone (`check_leaderboard` reports them).
    """
    return write_files(out, render(results, bootstrap))


def check_leaderboard(results: Path, out: Path, bootstrap: Bootstrap = DEFAULT_BOOTSTRAP) -> list[str]:
    """Names of files in `out` that a regeneration would change: differing, missing, or stale.

    Regenerates into a temporary folder and compares bytes, PNGs included; PNG bytes are stable for
    equal inputs on one matplotlib version (and its bundled fonts), so a matplotlib upgrade can flag
    the plots.  Stale means a leaderboard.* or *.png file in `out` that regeneration does not produce.
    """
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="icl-bench-leaderboard-") as tmp:
        written = write_leaderboard(results, Path(tmp), bootstrap)
        fresh = {path.name: path.read_bytes() for path in written}
    changed = [
        name
        for name in sorted(fresh)
        if not (out / name).is_file() or (out / name).read_bytes() != fresh[name]
    ]
    present = sorted(p.name for p in out.glob("*") if p.is_file()) if out.is_dir() else []
    stale = [
        n for n in present if n not in fresh and n not in OTHER_STAGES and (n in FILES or n.endswith(".png"))
    ]
    return sorted(changed + stale)


# --- terminal -----------------------------------------------------------------------------------------


def rich_tables(results: Path, bootstrap: Bootstrap = DEFAULT_BOOTSTRAP) -> list[Table]:
    """The leaderboard for a terminal: per task and split a table by test mode and one by similarity
    bin (cells `mean ±half-width`, best mean in bold), then the claim verdicts; each fits 80 columns."""
    data = board(results, bootstrap)
    level = bootstrap.level
    tables = []
    for summary in data.summaries:
        e1, e2 = summary.bins.edges
        per_split = grids(summary)
        for grid in per_split:
            title = f"{summary.task} ({summary.metric})"
            title += f", split {grid.split}" if len(per_split) > 1 else ""
            modes = [j for j, c in enumerate(grid.columns) if c not in BINS]
            bins = [j for j, c in enumerate(grid.columns) if c in BINS]
            tables.append(
                _rich_grid(
                    grid,
                    modes,
                    f"{title} by test mode",
                    f"±: half the {level:.0%} CI (test-example resamples); italic: trivial baselines",
                )
            )
            caption = f"Low < {e1:.4g} <= Medium < {e2:.4g} <= High (max_sim, {summary.bins.method})"
            caption += "".join(f"\ncollapsed: {line}" for line in collapsed_lines(summary, grid.split))
            tables.append(_rich_grid(grid, bins, f"{title} by similarity bin", caption))
        tables += [
            verdicts.rich_table(v, summary.metric, decimals(summary)) for v in data.verdicts[summary.task]
        ]
    return tables


def _rich_grid(grid: Grid, columns: Sequence[int], title: str, caption: str) -> Table:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title), title_justify="left", caption=escape(caption), caption_justify="left")
    table.add_column("regime", overflow="fold")
    for j in columns:
        table.add_column(escape(grid.columns[j]), justify="right", no_wrap=True)
    bold = {j: grid.best(j) for j in columns}
    for i, label in enumerate(grid.labels):
        texts = [(escape(grid.compact(i, j)), i in bold[j]) for j in columns]
        name = f"[italic]{escape(label)}[/italic]" if i in grid.references else escape(label)
        table.add_row(name, *(f"[bold]{t}[/bold]" if b else t for t, b in texts))
    return table


def show(results: Path, console: Console | None = None, bootstrap: Bootstrap = DEFAULT_BOOTSTRAP) -> None:
    """Print the leaderboard and claim tables (to stdout unless a console is given)."""
    from icl_bench.core import progress

    target = console or progress.out
    for table in rich_tables(results, bootstrap):
        target.print(table, soft_wrap=False)
