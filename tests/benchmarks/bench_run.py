"""Benchmark `icl-bench run`: wall time and peak RSS of a first run in a fresh store, and of an
unchanged second run (goal: at most 5% of the first's time).

    python tests/benchmarks/bench_run.py                       # the embedded default (~26 min on 2 cores)
    python tests/benchmarks/bench_run.py --models tiny --tasks synthetic-alignment --size smoke
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from icl_bench.core.names import DEFAULT_TASK


def timed_run(args: list[str], store: Path, out: Path) -> tuple[float, float]:
    """(seconds, peak RSS of the process in GiB) of one `icl-bench run` in a subprocess."""
    command = [sys.executable, "-m", "icl_bench.cli", "run", "--store", str(store), "--out", str(out), *args]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="smollm2-135m")
    parser.add_argument("--tasks", default=DEFAULT_TASK)
    parser.add_argument("--size", default="default")
    parser.add_argument("--store", help="store to start from (default: a fresh temporary one)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(options.store or Path(tmp) / "store")
        out = Path(tmp) / "suites" / "bench"
        args = ["--models", options.models, "--tasks", options.tasks, "--size", options.size]
        first, first_rss = timed_run(args, store, out)
        second, _ = timed_run(args, store, out)
    table = Table(title="icl-bench run " + " ".join(args))
    for column in ("first run (s)", "peak RSS (GiB)", "unchanged rerun (s)", "rerun / first"):
        table.add_column(column, justify="right")
    table.add_row(f"{first:.1f}", f"{first_rss:.2f}", f"{second:.1f}", f"{second / first:.1%} (goal <= 5%)")
    Console().print(table)


if __name__ == "__main__":
    main()
