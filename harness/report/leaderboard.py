"""Stage: leaderboard.  Tables and Figure-3 plots, regenerated from a results folder alone.

`write_leaderboard(results, out)` writes, byte-deterministically for identical results:

    out/leaderboard.md     one section per task: metric, bin edges, a table per split, the plot and the
                           claim verdicts; then the environment the results were made in
    out/leaderboard.csv    long format: task,split,model,regime,kind,column,mean,lo,hi,n,examples
    out/leaderboard.json   the same rows grouped by task, with each task's metric, bins and claims
    out/<task>.png         score by similarity bin (Low/Medium/High), one line per regime, CI error bars

Table rows are the regimes in the order base, zero, random, similar, contrastive, then the others
alphabetically (prefixed `model / ` when a task has several models); columns are the test-context modes
then the Low/Medium/High similarity bins; each cell is `mean [lo, hi]`.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from icl_bench.core import environment
from icl_bench.core.errors import UsageError
from icl_bench.core.names import MODE_ORDER, REGIME_ORDER
from icl_bench.core.store import write_atomic
from icl_bench.core.types import BASELINE_MODEL
from icl_bench.score import claims
from icl_bench.score.results import BINS, Cell, TaskSummary, baseline_key, load_results, score_task

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

FILES = ("leaderboard.md", "leaderboard.csv", "leaderboard.json")
OTHER_STAGES = (
    "probes.png",
)  # written into a suite by another stage (`icl_bench.analyses.probes`): never stale
CSV_FIELDS = ("task", "split", "model", "regime", "kind", "column", "mean", "lo", "hi", "n", "examples")
DIGITS = 6  # decimals kept in the csv and json
MISSING = "-"
PLAN_FILE = "plan.json"  # beside results/: how the suite was made (`icl_bench.sweep.record`)


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


def regime_key(regime: str) -> tuple[int, str]:
    """Sort key: the paper's regimes first in their order, then the rest alphabetically."""
    if regime in REGIME_ORDER:
        return (0, f"{REGIME_ORDER.index(regime):03d}")
    return (1, regime)


def decimals(summary: TaskSummary) -> int:
    """3 decimals for metrics within [-1, 1] (accuracy), 1 for wider scales (chrF 0-100)."""
    values = [v for row in summary.rows for v in (row.cell.mean, row.cell.lo, row.cell.hi)]
    return 3 if all(abs(v) <= 1 for v in values) else 1


@dataclass(frozen=True)
class Board:
    """Everything a leaderboard shows, computed from a results folder alone."""

    summaries: tuple[TaskSummary, ...]
    verdicts: dict[str, list[claims.Verdicts]]  # task -> one per (model, split)
    margins: dict[str, float]  # task -> the `>=` margin in its metric's units
    environments: dict[tuple[str, str, str, str], dict[str, Any] | None]  # (task, model, regime, stage)
    resamples: int = 1000
    level: float = 0.95
    seed: int = 0
    plan: dict[str, Any] | None = None  # the suite's plan.json (`icl_bench.sweep.record`), when it has one


def metric_scale(name: str) -> float:
    """The registered metric's range (1 for accuracies, 100 for chrF/BLEU); 1 when not installed."""
    from icl_bench.core import plugins

    return plugins.metrics[name].scale if name in plugins.metrics else 1.0


def board(results: Path, resamples: int = 1000, level: float = 0.95, seed: int = 0) -> Board:
    tasks = load_results(Path(results))
    summaries = tuple(score_task(task, resamples, level, seed) for task in tasks)
    margins = {task.task: claims.MARGIN * metric_scale(task.metric) for task in tasks}
    verdicts = {
        task.task: claims.task_verdicts(
            task.task, task.records, task.bins.edges, margins[task.task], resamples, level, seed, task.corpus
        )
        for task in tasks
    }
    plan_path = Path(results).parent / PLAN_FILE
    plan = json.loads(plan_path.read_text(encoding="utf-8")) if plan_path.is_file() else None
    environments = read_environments(Path(results))
    return Board(summaries, verdicts, margins, environments, resamples, level, seed, plan)


def read_environments(results: Path) -> dict[tuple[str, str, str, str], dict[str, Any] | None]:
    """(task, model, regime, stage) -> the environment recorded beside the results, stage being
    "train" or "evaluate"; a result without a record maps to None."""
    found: dict[tuple[str, str, str, str], dict[str, Any] | None] = {}
    kinds = ("train", "evaluate")

    def shaped(recorded: Any) -> bool:  # None, or an object whose packages (if any) are an object
        return recorded is None or (
            isinstance(recorded, dict) and isinstance(recorded.get("packages") or {}, dict)
        )

    for path in sorted(results.glob(f"*/*/{environment.FILE}")):
        fix = "delete it and rerun `icl-bench run` with the suite's options to record it again"
        try:
            recorded = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UsageError(f"{path} is not valid JSON; {fix}") from None
        if not isinstance(recorded, dict) or not all(
            stages is None or (isinstance(stages, dict) and all(shaped(stages.get(s)) for s in kinds))
            for stages in recorded.values()
        ):
            raise UsageError(
                f"{path} is not an environment record (an object of regime -> {{train, evaluate}}); {fix}"
            )
        for regime, stages in sorted(recorded.items()):
            for stage in kinds:
                found[(path.parent.parent.name, path.parent.name, regime, stage)] = (stages or {}).get(stage)
    for path in sorted(results.glob("*/*/*.jsonl")):
        found.setdefault((path.parent.parent.name, path.parent.name, path.stem, "evaluate"), None)
    return found


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


# --- renderers ----------------------------------------------------------------------------------------


def markdown(data: Board) -> str:
    resamples, level, seed = data.resamples, data.level, data.seed
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
                lines.append("| " + " | ".join(_md_escape(t) for t in (label, *texts)) + " |")
        lines += ["", f"![{summary.task}: score by similarity bin]({quote(summary.task)}.png)"]
        lines += claims.markdown(data.verdicts[summary.task], decimals(summary), data.margins[summary.task])
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
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows(summaries))
    return buffer.getvalue()


def json_text(data: Board) -> str:
    tasks: dict[str, Any] = {}
    for summary in data.summaries:
        tasks[summary.task] = {
            "metric": summary.metric,
            "bins": {"method": summary.bins.method, "edges": list(summary.bins.edges)},
            "decimals": decimals(summary),
            "rows": [{k: v for k, v in row.items() if k != "task"} for row in rows([summary])],
            "claims": claims.as_json(data.verdicts[summary.task], DIGITS),
            "claims_margin": round(data.margins[summary.task], DIGITS),
        }
    environments = [
        {"task": t, "model": m, "regime": r, "stage": s, "environment": env}
        for (t, m, r, s), env in sorted(data.environments.items())
    ]
    bootstrap = {"resamples": data.resamples, "level": data.level, "seed": data.seed}
    out = {"bootstrap": bootstrap, "tasks": tasks, "environments": environments}
    return json.dumps(out, indent=2, sort_keys=True, allow_nan=False) + "\n"


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
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


# --- the stage ----------------------------------------------------------------------------------------


def render(results: Path, resamples: int = 1000, level: float = 0.95, seed: int = 0) -> dict[str, bytes]:
    """Every leaderboard file's name and bytes, computed from `results` alone."""
    data = board(results, resamples, level, seed)
    files = {
        "leaderboard.md": markdown(data).encode(),
        "leaderboard.csv": csv_text(data.summaries).encode(),
        "leaderboard.json": json_text(data).encode(),
    }
    for summary in data.summaries:
        files[f"{summary.task}.png"] = plot_png(summary)
    return files


def write_leaderboard(
    results: Path, out: Path, resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> list[Path]:
    """Write leaderboard.md/.csv/.json and one <task>.png into `out`; return the paths written.

    Files of tasks no longer in `results` are left alone (`check_leaderboard` reports them).
    """
    files = render(results, resamples, level, seed)
    out = Path(out)
    for name, data in files.items():
        write_atomic(out / name, data)
    return [out / name for name in files]


def check_leaderboard(
    results: Path, out: Path, resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> list[str]:
    """Names of files in `out` that a regeneration would change: differing, missing, or stale.

    Regenerates into a temporary folder and compares bytes, PNGs included; PNG bytes are stable for
    equal inputs on one matplotlib version (and its bundled fonts), so a matplotlib upgrade can flag
    the plots.  Stale means a leaderboard.* or *.png file in `out` that regeneration does not produce.
    """
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="icl-bench-leaderboard-") as tmp:
        written = write_leaderboard(results, Path(tmp), resamples, level, seed)
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


def index_suites(root: Path) -> Path:
    """Write root/README.md: a linked line for every suite folder under `root` with a leaderboard.md."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"leaderboards folder {root} does not exist; run `icl-bench leaderboard` first")
    suites = sorted(p for p in root.iterdir() if p.is_dir() and (p / "leaderboard.md").is_file())
    lines = [
        "# Leaderboards",
        "",
        "Generated by `icl-bench leaderboard`; do not edit by hand. One folder per suite, each regenerated",
        "from its results alone.",
        "",
    ]
    lines += [
        f"- [{_md_escape(s.name)}]({quote(s.name)}/leaderboard.md): {_describe_suite(s)}" for s in suites
    ]
    if not suites:
        lines.append("No suites yet.")
    path = root / "README.md"
    write_atomic(path, ("\n".join(lines) + "\n").encode())
    return path


def _describe_suite(folder: Path) -> str:
    path = folder / "leaderboard.json"
    if not path.is_file():
        return "no leaderboard.json"
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))["tasks"]
        found = [row for task in tasks.values() for row in task["rows"]]
        models = sorted({row["model"] for row in found} - {BASELINE_MODEL})
        regimes = sorted({row["regime"] for row in found if row["model"] != BASELINE_MODEL}, key=regime_key)
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
        raise UsageError(f"{path} is malformed; regenerate it with `icl-bench leaderboard`") from None
    return (
        f"tasks {', '.join(sorted(tasks))}; models {', '.join(models)}; "
        f"{len(regimes)} regimes ({', '.join(regimes)})"
    )


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


# --- terminal -----------------------------------------------------------------------------------------


def rich_tables(results: Path, resamples: int = 1000, level: float = 0.95, seed: int = 0) -> list[Table]:
    """The leaderboard for a terminal: per task and split a table by test mode and one by similarity
    bin (cells `mean ±half-width`, best mean in bold), then the claim verdicts; each fits 80 columns."""
    data = board(results, resamples, level, seed)
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
            tables.append(_rich_grid(grid, bins, f"{title} by similarity bin", caption))
        tables += [
            claims.rich_table(v, summary.metric, decimals(summary)) for v in data.verdicts[summary.task]
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


def show(
    results: Path, console: Console | None = None, resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> None:
    """Print the leaderboard and claim tables (to stdout unless a console is given)."""
    from icl_bench.core import progress

    target = console or progress.out
    for table in rich_tables(results, resamples, level, seed):
        target.print(table, soft_wrap=False)


def plan_markdown(record: dict[str, Any]) -> list[str]:
    """The leaderboard's lines on how the suite was made (none for a plan without a command)."""
    if not record.get("command"):
        return []
    return [
        f"Made by `{record['command']}` (numerics {record['numerics']['key']}, icl-bench "
        f"{record['icl_bench']}); `icl-bench reproduce` remakes it from `{PLAN_FILE}`.",
        "",
    ]
