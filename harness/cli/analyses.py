"""The commands beyond the sweep: `reproduce` a suite, the minimal-model `theory`, and `analyze ft-vs-icl`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from icl_bench.cli.commands import store_of
from icl_bench.core import plugins
from icl_bench.core.errors import UsageError
from icl_bench.core.validate import check_writable, names_in


def cmd_reproduce(args: argparse.Namespace) -> None:
    """Rerun a suite's plan (its run, then each later stage) into a scratch folder on a fresh store
    unless --store, then compare; the rerun's own output goes to stderr, the comparison to stdout; exit
    1 when it does not reproduce."""
    import tempfile

    from icl_bench.core.progress import console, out
    from icl_bench.sweep.record import command_line, lock_sha256, read_plan
    from icl_bench.sweep.reproduce import compare, remake, scratch_folders, summary_rows

    suite = Path(args.suite)
    recorded = read_plan(suite)
    if not (suite / "results").is_dir():
        raise UsageError(f"{suite} has no results/ to compare with; remake it with `{recorded['command']}`")
    scratch = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="icl-bench-reproduce-"))
    remade, store = scratch_folders(suite, scratch, args.store)
    if lock_sha256() != recorded.get("constraints_sha256"):
        console.print("[yellow]warning[/] constraints.txt differs from the suite's lock: expect other bytes")

    def execute(argv: list[str]) -> None:
        try:
            inner = args.parser().parse_args(argv)
        except UsageError as error:
            raise UsageError(f"{suite}/plan.json: `{command_line(argv)}`: {error}") from None
        inner.argv, inner.out, inner.store = tuple(argv), str(remade), str(store)
        inner.precision = recorded["options"].get("precision", inner.precision)  # as resolved then
        inner.func(inner)

    remake(suite, recorded, remade, execute)
    result = compare(suite, remade)
    out.print(reproduce_table(suite, summary_rows(result)), soft_wrap=False)
    for check in result.files:
        if not check.same:
            lines = f" ({check.lines[1] - check.lines[0]} of {check.lines[1]} lines)" if check.lines else ""
            print(f"differs: {check.name}{lines}" + (f", {check.side} only" if check.side else ""))
    failures = result.failures(args.strict)
    for why in failures:
        console.print(f"[red]not reproduced[/]: {why}")
    if failures:
        console.print(f"the remade suite is in {remade}")
        raise SystemExit(1)
    console.print(f"reproduced {suite} (remade in {remade})")


def reproduce_table(suite: Path, rows: Sequence[tuple[str, str, str]]):
    from rich.table import Table

    table = Table(title=f"reproduce {suite}", title_justify="left")
    for name in ("check", "result", "differs"):
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def cmd_theory(args: argparse.Namespace) -> None:
    from icl_bench.analyses.theory import TheoryConfig, rich_tables, run_theory, write_theory
    from icl_bench.core.progress import console, out

    config = TheoryConfig(d=args.d, k=args.k, seed=args.seed, steps=args.steps)
    folder = check_writable(Path(args.out), "--out")
    result = run_theory(config, log=lambda line: console.print(f"[bold]theory[/] {line}"))
    for table in rich_tables(result):
        out.print(table, soft_wrap=False)
    for path in write_theory(result, folder):
        print(path)
    console.print(f"theory: {result.seconds:.1f} s")


def cmd_analyze(args: argparse.Namespace) -> None:
    from icl_bench.analyses.alignment import AlignmentConfig, analyze, render
    from icl_bench.analyses.alignment.analysis import check_analysis
    from icl_bench.analyses.alignment.report import rich_table
    from icl_bench.core.progress import out, quiet_libraries
    from icl_bench.report.writer import write_files

    quiet_libraries()
    tasks = names_in("--tasks", args.tasks, "tasks")
    store = store_of(args, tasks)  # an unknown task fails here, listing the known ones
    folder = check_writable(Path(args.out), "--out")
    defaults = AlignmentConfig()
    config = AlignmentConfig(
        k=args.k,
        max_test=args.max_test,
        seed=args.seed,
        precision=args.precision,
        learning_rate=args.learning_rate or defaults.learning_rate,
        epochs=args.epochs or defaults.epochs,
    )
    check_analysis([plugins.tasks[name] for name in tasks], args.model, config)
    results = [analyze(plugins.tasks[name], args.model, config, store) for name in tasks]
    out.print(rich_table(results), soft_wrap=False)
    for path in write_files(folder, render(results)):
        print(path)
