"""Is a default informative?  Issue 21's criteria, fixed before any candidate was judged:

  (a) fine-tuning learns the task in weights: `zero` minus the better (in Low) of `base` and the best
      trivial baseline, paired, in the Low bin: 95% CI above 0 and point estimate >= 0.05;
  (b) the base model uses related context: `base` in High minus `base` in Low: 95% CI above 0;
  (c) precision: every mode and bin cell of every regime has a 95% CI half-width <= 0.05 ([0, 1] scale);
  (d) the budget: `icl-bench run` on a fresh store, 2 CPU cores, float32: <= 20 min wall, <= 6 GiB peak;
  (e) no collapse: on a generation task every fine-tuned regime's predictions take at least half as
      many distinct values as the references of the same records do.

Every interval resamples test examples (`icl_bench.claims.estimate`, the leaderboard's cells).  The
claims' verdicts are not read here: they never enter the choice of a default.

    python tests/benchmarks/bench_default.py --suite leaderboards/default     # judge a suite's results
    python tests/benchmarks/bench_default.py --suite leaderboards/default --measured 25.8 5.40  # and (d)
    python tests/benchmarks/bench_default.py --                  # run `icl-bench run` fresh, then judge

A run goes to a fresh temporary store (its wall time and peak RSS are (d)); a suite is judged on (a)-(c)
and (e) from its results (no run: (d) unknown).  One row per task and model; exit 1 when one fails.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from bench_run import timed_run  # this folder's run benchmark: wall time and peak RSS of one run
from rich.console import Console
from rich.table import Table

from icl_bench.core import plugins
from icl_bench.core.errors import UsageError
from icl_bench.core.types import BASELINE_MODEL
from icl_bench.report.board import metric_scale
from icl_bench.report.leaderboard import check_leaderboard
from icl_bench.score import claims
from icl_bench.score.bootstrap import Estimate
from icl_bench.score.claims import Comparison, Term
from icl_bench.score.results import TaskResults, load_results
from icl_bench.score.schema import Record

WALL_S, RSS_GIB, HALF_WIDTH, MIN_GAIN, MIN_DISTINCT = 20 * 60, 6.0, 0.05, 0.05, 0.5
CORES = 2  # (d) is judged on 2 CPU cores: a run with more is not comparable


@dataclass(frozen=True)
class Judged:
    """One (task, model) of a suite against (a)-(c) and (e); values on the metric's [0, 1] scale."""

    task: str
    model: str
    rival: str  # the better of base and the best trivial baseline in Low
    a: Estimate | None
    b: Estimate | None
    c: float  # the widest half-width over every mode and bin cell of every regime
    widest: str  # which cell
    e: float  # the lowest distinct-prediction ratio of a fine-tuned regime
    collapsed: str  # which regime
    choice: bool  # a multiple-choice task: (e) is shown, not judged (it asks it of generation tasks)

    def passes(self) -> dict[str, bool]:
        return {
            "a": self.a is not None and self.a.lo > 0 and self.a.value >= MIN_GAIN,
            "b": self.b is not None and self.b.lo > 0,
            "c": self.c <= HALF_WIDTH,
            "e": self.choice or self.e >= MIN_DISTINCT,
        }


def scaled(found: Estimate | None, scale: float) -> Estimate | None:
    if found is None:
        return None
    return Estimate(found.value / scale, found.lo / scale, found.hi / scale, found.examples)


def distinct_ratio(task: TaskResults, model: str, split: str) -> tuple[float, str]:
    """The lowest (distinct predictions / distinct references) over the fine-tuned regimes' verified
    records of `split`, all modes pooled, and its regime (on a choice task: labels predicted / needed)."""
    golds = {ex.id: ex.output for ex in plugins.tasks[task.task].load(split)}
    groups: dict[str, list[Record]] = defaultdict(list)
    for record in task.records:
        if (record.model, record.split) == (model, split) and record.regime != "base":
            groups[record.regime].append(record)
    lowest = (float("inf"), "")
    for regime, records in sorted(groups.items()):
        if any(r.prediction is None for r in records):
            raise ValueError(f"{task.task}: {model} / {regime} records keep no predictions; rerun evaluate")
        predicted = {r.prediction.strip() for r in records}  # type: ignore[union-attr]
        lowest = min(lowest, (len(predicted) / len({golds[r.id] for r in records}), regime))
    return lowest


def judge_suite(suite: Path) -> list[Judged]:
    """(a)-(c) and (e) per (task, model, split) of a suite folder, from its results/ and its
    leaderboard.json, which must be current (`icl-bench leaderboard --check`)."""
    stale = check_leaderboard(suite / "results", suite)
    if stale:
        raise UsageError(
            f"{suite}: {', '.join(stale)} out of date with its results; run `icl-bench leaderboard`"
        )
    board = json.loads((suite / "leaderboard.json").read_text())
    out = []
    for task in load_results(suite / "results"):
        scale = metric_scale(task.metric)
        grouped = claims.record_scores(task.records, task.bins.edges, statistics=task.corpus is not None)
        rows = board["tasks"][task.task]["rows"]
        for model, split in sorted({(m, s) for m, s, *_ in grouped if m != BASELINE_MODEL}):
            mine = {(m, r, g): v for (m, s, r, g), v in grouped.items() if s == split}
            scores = {(r, g): v for (m, r, g), v in mine.items() if m in (model, BASELINE_MODEL)}
            cells = [r for r in rows if r["split"] == split and r.get("hi") is not None]
            low = {  # the rival of (a): the better in Low of base and each trivial baseline
                r["regime"]: r["mean"]
                for r in cells
                if r["kind"] == "bin"
                and r["column"] == "Low"
                and (r["model"] == BASELINE_MODEL or (r["model"], r["regime"]) == (model, "base"))
            }
            if not any(m == BASELINE_MODEL for m, _, _ in mine):
                raise UsageError(
                    f"{suite}: task {task.task!r} has no trivial baselines; run `icl-bench baselines`"
                )
            rival = max(sorted(low), key=lambda name: low[name])
            learned = claims.estimate(
                Comparison("a", (Term("zero", "Low"), Term(rival, "Low", -1)), ">"),
                scores,
                corpus=task.corpus,
            )
            context = claims.estimate(
                Comparison("b", (Term("base", "High"), Term("base", "Low", -1)), ">"),
                scores,
                corpus=task.corpus,
            )
            widest = max((r for r in cells if r["model"] == model), key=lambda r: r["hi"] - r["lo"])
            collapse = distinct_ratio(task, model, split)
            out.append(
                Judged(
                    task.task if split == "test" else f"{task.task} ({split})",
                    model,
                    rival,
                    scaled(learned, scale),
                    scaled(context, scale),
                    (widest["hi"] - widest["lo"]) / 2 / scale,
                    f"{widest['regime']}/{widest['column']}",
                    *collapse,
                    plugins.tasks[task.task].choices is not None,
                )
            )
    return out


def ci(found: Estimate | None, ok: bool) -> str:
    if found is None:
        return "not run FAILS"
    return f"{found.value:+.3f} [{found.lo:+.3f},{found.hi:+.3f}] " + ("ok" if ok else "FAILS")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--suite", help="judge this suite folder instead of running")
    parser.add_argument(
        "--measured",
        nargs=2,
        type=float,
        metavar=("MINUTES", "GIB"),
        help="with --suite: judge (d) on a budget measured outside (fresh store, 2 cores, float32)",
    )
    parser.add_argument("run", nargs=argparse.REMAINDER, help="-- then `icl-bench run` options")
    options = parser.parse_args()
    budget = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if options.suite:
                if not (Path(options.suite) / "results").is_dir():
                    raise UsageError(f"{options.suite}: no results/ folder; pass a suite folder")
                found = judge_suite(Path(options.suite))
            else:
                suite = Path(tmp) / "suite"
                run_options = ["--precision", "fp32", *(a for a in options.run if a != "--")]  # (d): float32
                budget = timed_run(run_options, Path(tmp) / "store", suite)
                found = judge_suite(suite)
    except (UsageError, OSError, ValueError, KeyError) as error:
        sys.exit(f"bench_default: {type(error).__name__ if not str(error) else error}")
    title = options.suite or "icl-bench run " + " ".join(a for a in options.run if a != "--")
    table = Table(title=title, title_justify="left")
    for column in (
        "task, model",
        "(a) zero - rival, Low",
        "(b) base, High - Low",
        "(c) widest",
        "(d)",
        "(e)",
    ):
        table.add_column(column, justify="left" if column == "task, model" else "right")
    failed = False
    for row in found:
        ok = row.passes()
        d = "not measured"
        if options.measured:  # measured outside this script, e.g. GNU time around the README's command
            minutes, rss = options.measured
            ok["d"] = minutes * 60 <= WALL_S and rss <= RSS_GIB
            d = f"{minutes:.1f} min, {rss:.2f} GiB (given) " + ("ok" if ok["d"] else "FAILS")
        if budget is not None:
            seconds, rss = budget
            cores = len(os.sched_getaffinity(0))
            ok["d"] = seconds <= WALL_S and rss <= RSS_GIB and cores == CORES
            d = f"{seconds / 60:.1f} min, {rss:.2f} GiB, {cores} cores " + ("ok" if ok["d"] else "FAILS")
        e = f"{row.e:.2f} {row.collapsed} " + (
            "(choice task: not judged)" if row.choice else "ok" if ok["e"] else "FAILS"
        )
        table.add_row(
            f"{row.task}\n{row.model}",
            f"vs {row.rival}\n" + ci(row.a, ok["a"]),
            ci(row.b, ok["b"]),
            f"{row.c:.3f} " + ("ok" if ok["c"] else "FAILS") + f"\n{row.widest}",
            d,
            e,
        )
        failed |= not all(ok.values())
    Console(width=160).print(table)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
