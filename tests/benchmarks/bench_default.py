"""Is a default informative?  Issue 11's criteria, fixed before any claim verdict is read:

  (a) the models learn the task in weights: zero-context fine-tuning beats the base model in the Low bin
      (paired 95% CI of zero - base above 0);
  (b) the base model uses its context: its score rises from Low to High (95% CI of High - Low above 0);
  (c) the bins are measured precisely: every bin cell's 95% CI half-width <= 0.05 on a [0, 1] metric;
  (d) the budget: <= 20 min wall and <= 6 GiB peak RSS on 2 CPU cores, fresh store.

    python tests/benchmarks/bench_default.py --suite leaderboards/default     # judge a suite's results
    python tests/benchmarks/bench_default.py -- --tasks mr-offline --size default   # run, then judge

A run goes to a fresh temporary store (its wall time and peak RSS are (d)); a suite is judged on (a)-(c)
from its per-sample results (no run: (d) unknown).  One line per task and model.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from icl_bench.report.board import metric_scale
from icl_bench.score import claims
from icl_bench.score.claims import Comparison, Term
from icl_bench.score.results import load_results

WALL_S, RSS_GIB, HALF_WIDTH = 20 * 60, 6.0, 0.05


def judge_suite(suite: Path) -> list[dict]:
    """(a)-(c) per (task, model) of a suite folder (its results/ and leaderboard.json)."""
    board = json.loads((suite / "leaderboard.json").read_text())
    out = []
    for task in load_results(suite / "results"):
        scale = metric_scale(task.metric)
        grouped = claims.record_scores(task.records, task.bins.edges, statistics=task.corpus is not None)
        rows = board["tasks"][task.task]["rows"]
        for model in sorted({m for m, *_ in grouped}):
            scores = {(regime, group): v for (m, _, regime, group), v in grouped.items() if m == model}
            learned = claims.estimate(
                Comparison("a", (Term("zero", "Low"), Term("base", "Low", -1)), ">"),
                scores,
                corpus=task.corpus,
            )
            context = claims.estimate(
                Comparison("b", (Term("base", "High"), Term("base", "Low", -1)), ">"),
                scores,
                corpus=task.corpus,
            )
            bins = [r for r in rows if r["kind"] == "bin" and r["model"] == model and r.get("hi") is not None]
            widest = max((r["hi"] - r["lo"]) / 2 / scale for r in bins) if bins else float("nan")
            out.append(
                {
                    "task": task.task,
                    "model": model,
                    "a": learned,
                    "b": context,
                    "c": widest,
                    "scale": scale,
                }
            )
    return out


def timed_run(args: list[str], store: Path, out: Path) -> tuple[float, float]:
    """(seconds, peak RSS in GiB) of `icl-bench run ARGS` in a subprocess."""
    command = [sys.executable, "-m", "icl_bench.cli", "run", "--store", str(store), "--out", str(out), *args]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--suite", help="judge this suite folder instead of running")
    parser.add_argument("run", nargs=argparse.REMAINDER, help="-- then `icl-bench run` options")
    options = parser.parse_args()
    budget = None
    with tempfile.TemporaryDirectory() as tmp:
        if options.suite:
            suite = Path(options.suite)
            found = judge_suite(suite)
        else:
            suite = Path(tmp) / "suite"
            budget = timed_run([a for a in options.run if a != "--"], Path(tmp) / "store", suite)
            found = judge_suite(suite)
    title = options.suite or "icl-bench run " + " ".join(a for a in options.run if a != "--")
    table = Table(title=title, title_justify="left")
    for column in ("task, model", "(a) zero - base, Low", "(b) base, High - Low", "(c) widest", "(d)"):
        table.add_column(column, justify="left" if column == "task, model" else "right")

    def ci(found, scale: float) -> str:
        if found is None:
            return "not run"
        mark = "ok" if found.lo > 0 else "FAILS"
        value, lo, hi = (x / scale for x in (found.value, found.lo, found.hi))
        return f"{value:+.3f} [{lo:+.3f},{hi:+.3f}] {mark}"

    for row in found:
        c = f"{row['c']:.3f} " + ("ok" if row["c"] <= HALF_WIDTH else "FAILS")
        if budget is None:
            d = "-"
        else:
            seconds, rss = budget
            d = f"{seconds / 60:.1f} min, {rss:.2f} GiB " + (
                "ok" if seconds <= WALL_S and rss <= RSS_GIB else "FAILS"
            )
        a, b = ci(row["a"], row["scale"]), ci(row["b"], row["scale"])
        table.add_row(f"{row['task']}\n{row['model']}", a, b, c, d)
    Console().print(table)


if __name__ == "__main__":
    main()
