"""`icl-bench`: each pipeline stage is a subcommand; `run` chains them."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from icl_bench.core import plugins
from icl_bench.core.errors import UsageError
from icl_bench.core.validate import check_writable, names_in
from icl_bench.models import PRECISIONS

if TYPE_CHECKING:
    from icl_bench.core.store import Store

KINDS = ("tasks", "regimes", "modes", "models")


class Parser(argparse.ArgumentParser):
    """argparse that reports a malformed command line as one line (exit 2) instead of a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message}; see `{self.prog} --help`")


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def positive_number(text: str) -> float:
    """A finite number above 0 (a learning rate): not NaN, not infinite."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} is not a finite positive number")
    return value


def names(kind: str) -> list[dict[str, str]]:
    from icl_bench.contexts.modes import MODES

    registry = {"tasks": plugins.tasks, "regimes": plugins.regimes, "models": plugins.models}.get(kind)
    items = MODES.values() if registry is None else registry.values()
    return [{"name": item.name, "description": item.description} for item in items]


def store_of(args: argparse.Namespace, tasks: list[str] | None = None) -> Store:
    """--store checked writable (not created: its stages create it when they write) and made the
    process's store; --data-dir applied to `tasks`."""
    from icl_bench.core.store import STORE_ENV, Store
    from icl_bench.sweep.plan import apply_data_dirs

    store = Store(args.store)
    check_writable(store.root, f"--store (or ${STORE_ENV})")
    store.activate()
    apply_data_dirs(getattr(args, "data_dir", None) or [], tasks or [])
    return store


def cmd_list(args: argparse.Namespace) -> None:
    from rich.table import Table

    from icl_bench.core.progress import out

    kinds = [args.kind] if args.kind else list(KINDS)
    listing = {kind: names(kind) for kind in kinds}
    if args.json:
        print(json.dumps(listing, indent=2))
        return
    for kind, items in listing.items():
        table = Table(title=kind, title_justify="left", show_header=False)
        for item in items:
            table.add_row(item["name"], item["description"])
        out.print(table, soft_wrap=False)


def cmd_contexts(args: argparse.Namespace) -> None:
    from icl_bench.contexts.build import ContextConfig, build_contexts, write_contexts
    from icl_bench.core.progress import console
    from icl_bench.sweep.plan import resolve_regimes

    task = plugins.tasks[args.task]
    regimes = resolve_regimes(args.regimes, args.set)
    config = ContextConfig(
        k=args.k,
        seed=args.seed,
        epochs=args.epochs,
        max_pool=args.max_pool,
        max_test=args.max_test,
        paraphraser=args.paraphraser,
        paraphrase_model=args.paraphrase_model,
    )
    if args.out:
        print(write_contexts(task, regimes, config, check_writable(Path(args.out), "--out")))
        return
    built = build_contexts(task, regimes, config, store_of(args, [task.name]))
    console.print(f"test contexts in {built.test}")
    for regime, folder in built.train.items():
        console.print(f"{regime} training set in {folder}")
    print(built.fingerprint())


def cmd_paraphrase(args: argparse.Namespace) -> None:
    from icl_bench.contexts.build import paraphrase_targets, paraphraser_for
    from icl_bench.paraphrase.llm import LLM, Report, survey
    from icl_bench.sweep.plan import size_of

    task = plugins.tasks[args.task]
    name = args.paraphraser or task.paraphraser
    if name:
        plugins.paraphrasers[name]  # an unknown name fails here, listing the known ones
    config = dataclasses.replace(
        size_of(args.size).contexts, paraphraser=name, paraphrase_model=args.paraphrase_model
    )
    report = Report()
    made = paraphraser_for(task, config, store_of(args, [task.name]), report)
    if made is None:
        raise UsageError(f"task {task.name!r} has no paraphraser; pass --paraphraser NAME")
    if name != LLM.name:
        survey(made, paraphrase_targets(task, config), report)
    for line in [f"{task.name}: {name}", *report.lines()]:
        print(line)


def plan_of(args: argparse.Namespace):
    """The sweep the options describe, with --store and --out checked writable (neither created) before
    any work."""
    from icl_bench.core.names import MAIN_REGIMES
    from icl_bench.core.progress import quiet_libraries
    from icl_bench.sweep.plan import Plan, resolve_regimes

    quiet_libraries()
    if args.hostfile and not Path(args.hostfile).is_file():
        raise UsageError(
            f"--hostfile {args.hostfile} is not a file; pass DeepSpeed's hostfile (one `host slots=N` a line)"
        )
    if args.hostfile and args.launcher != "deepspeed":
        raise UsageError(
            "--hostfile is read by the deepspeed launcher only; add --launcher deepspeed or drop it"
        )
    spec = ",".join(MAIN_REGIMES) if args.regimes == "main" else args.regimes
    plan = Plan(
        models=names_in("--models", args.models, "models"),
        tasks=names_in("--tasks", args.tasks, "tasks"),
        regimes=resolve_regimes(spec, args.set),
        size=args.size,
        seed=args.seed,
        k=args.k,
        out=Path(getattr(args, "out", None) or "."),
        launcher=args.launcher,
        num_gpus=args.num_gpus,
        hostfile=Path(args.hostfile) if args.hostfile else None,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        max_test=args.max_test,
        max_pool=args.max_pool,
        epochs=args.epochs,
        paraphraser=args.paraphraser,
        paraphrase_model=args.paraphrase_model,
        metric=args.metric,
        precision=args.precision,
        command=tuple(args.argv),
    )
    store = store_of(args, plan.tasks)
    if getattr(args, "out", None):
        check_writable(plan.out, "--out")
    return plan, store


def fail_on(failures: Sequence[str]) -> None:
    from icl_bench.core.progress import console

    for failure in failures:
        console.print(f"[red]failed[/] {failure}")
    if failures:
        raise SystemExit(1)


def cmd_run(args: argparse.Namespace) -> None:
    from icl_bench.report.leaderboard import show
    from icl_bench.sweep.sweep import run

    plan, store = plan_of(args)
    if args.probes:  # the probes' needs (k >= 2, a paraphraser), before the sweep
        from icl_bench.analyses import probes

        for name in plan.tasks:
            probes.check_task(plugins.tasks[name], plan.k)
    failures = run(plan, store)
    show(plan.out / "results")
    if args.probes:  # every regime that trained; a failed one is reported below
        probes.show(probes.probe_stage(plan, store, args.max_probe, skip_untrained=True))
    fail_on(failures)


def cmd_probe(args: argparse.Namespace) -> None:
    from icl_bench.analyses import probes
    from icl_bench.core.progress import console
    from icl_bench.sweep.record import add_stage, recorded_argv

    plan, store = plan_of(args)
    probes.show(probes.probe_stage(plan, store, args.max_probe))
    add_stage(plan.out, recorded_argv(args.argv))
    console.print(f"wrote {plan.out}/probes.md")


def cmd_train(args: argparse.Namespace) -> None:
    from icl_bench.sweep.sweep import train_stage

    trained, failures = train_stage(*plan_of(args))
    for folder in trained:
        print(folder)
    fail_on(failures)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from icl_bench.core.progress import console
    from icl_bench.sweep.sweep import evaluate_stage

    plan, store = plan_of(args)
    fail_on(evaluate_stage(plan, store))
    print(plan.out / "results")
    console.print(f"tabulate with `icl-bench leaderboard --out {plan.out}`")


def cmd_baselines(args: argparse.Namespace) -> None:
    from icl_bench.core.progress import console
    from icl_bench.sweep.sweep import baselines_stage

    plan, store = plan_of(args)
    for path in baselines_stage(plan, store):
        print(path)
    console.print(f"tabulate with `icl-bench leaderboard --out {plan.out}`")


def suites(args: argparse.Namespace) -> list[tuple[Path, Path]]:
    """(results, out) pairs: the given ones, or every suite under leaderboards/."""
    if args.results or args.out:
        results = Path(args.results) if args.results else Path(args.out) / "results"
        return [(results, Path(args.out) if args.out else results.parent)]
    root = Path(args.root)
    found = sorted(p.parent for p in root.glob("*/results") if p.is_dir())
    if not found:
        raise UsageError(f"no suites with results/ under {root}/; run `icl-bench run` or pass --results")
    return [(suite / "results", suite) for suite in found]


def cmd_leaderboard(args: argparse.Namespace) -> None:
    from icl_bench.core.progress import console
    from icl_bench.report.leaderboard import check_leaderboard, show, write_leaderboard
    from icl_bench.report.suites import index_suites

    stale = []
    for results, out in suites(args):
        if args.check:
            stale += [f"{out}/{name}" for name in check_leaderboard(results, out)]
        else:
            write_leaderboard(results, check_writable(out, "--out"))
            console.print(f"wrote {out}/leaderboard.md")
            show(results)
    if args.check:
        if stale:
            names = ", ".join(stale)
            raise UsageError(f"leaderboard files out of date: {names}; run `icl-bench leaderboard`")
        console.print("leaderboards are up to date")
    elif not (args.results or args.out):
        index_suites(Path(args.root))


def cmd_reproduce(args: argparse.Namespace) -> None:
    """Rerun a suite's plan (its run, then each later stage) into a scratch folder on a fresh store
    unless --store, then compare; the rerun's own output goes to stderr, the comparison to stdout; exit
    1 when it does not reproduce."""
    import contextlib
    import tempfile

    from icl_bench.core.progress import console, out
    from icl_bench.sweep.record import command_line, lock_sha256, read_plan
    from icl_bench.sweep.reproduce import compare, scratch_folders, summary_rows

    suite = Path(args.suite)
    recorded = read_plan(suite)
    if not (suite / "results").is_dir():
        raise UsageError(f"{suite} has no results/ to compare with; remake it with `{recorded['command']}`")
    scratch = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="icl-bench-reproduce-"))
    remade, store = scratch_folders(suite, scratch, args.store)
    if lock_sha256() != recorded.get("constraints_sha256"):
        console.print("[yellow]warning[/] constraints.txt differs from the suite's lock: expect other bytes")
    for argv in (recorded["argv"], *recorded["stages"]):
        try:
            inner = build_parser().parse_args(argv)
        except UsageError as error:
            raise UsageError(f"{suite}/plan.json: `{command_line(argv)}`: {error}") from None
        inner.argv, inner.out, inner.store = tuple(argv), str(remade), str(store)
        inner.precision = recorded["options"].get("precision", inner.precision)  # as resolved then
        console.print(f"reproduce {suite}: `{command_line(argv)}` into {remade} (store {store})")
        with contextlib.redirect_stdout(sys.stderr):
            try:
                inner.func(inner)
            except SystemExit as stop:  # failed trainings: compared like the rest (their files are missing)
                console.print(f"[yellow]the rerun exited with {stop.code}[/]")
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


def cmd_comet(args: argparse.Namespace) -> None:
    from icl_bench.evaluate.metrics import comet

    print(comet.setup(store_of(args)))


def cmd_store(args: argparse.Namespace) -> None:
    """`icl-bench store verify [--repair]`: one line per damaged artifact and a summary, on stdout;
    exit 1 when damage is found and left in place."""
    from icl_bench.core.store import Store

    store = Store(args.store)
    if not store.root.is_dir():
        raise UsageError(f"no store at {store.root}; pass the folder `run --store` wrote with --store")
    checked, damaged = len(store.artifacts()), store.verify(repair=args.repair)
    for found in damaged:
        aside = f"; moved aside to {found.moved}" if found.moved else ""
        print(f"damaged {found.artifact}: {found.why}{aside}")
    fix = "a rerun recomputes them" if args.repair else "`--repair` moves them aside to be recomputed"
    summary = f"{checked} artifacts checked in {store.root}: {len(damaged)} damaged"
    print(f"{summary}; {fix}" if damaged else summary)
    if damaged and not args.repair:
        raise SystemExit(1)


def cmd_export(args: argparse.Namespace) -> None:
    from icl_bench.contexts.build import ContextConfig, build_contexts, read_test_records
    from icl_bench.core.progress import quiet_libraries
    from icl_bench.evaluate.export import export_lm_eval

    quiet_libraries()
    task = plugins.tasks[args.task]
    config = ContextConfig(k=args.k, seed=args.seed, max_test=args.max_test)
    out = check_writable(Path(args.out), "--out")
    built = build_contexts(task, [], config, store_of(args, [task.name]))
    for name in export_lm_eval(task, read_test_records(built.test, task), out):
        print(name)


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
    from icl_bench.analyses.alignment.analysis import FINE_TUNED, demonstrations
    from icl_bench.analyses.alignment.report import rich_table
    from icl_bench.core.files import write_atomic
    from icl_bench.core.progress import out, quiet_libraries
    from icl_bench.models import resolve

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
    for name in tasks:  # every task a classification task, before any task's data is fetched
        if not plugins.tasks[name].choices:
            raise UsageError(
                f"analyze ft-vs-icl needs a classification task (label choices); {name} has none"
            )
    for setting in FINE_TUNED:  # the fine-tuning configs (seed, ...), before any data or training
        config.train_config(setting)
    resolve(args.model)
    for name in tasks:  # every task's data and k demonstrations, before any training
        plugins.tasks[name].check()
        demonstrations(plugins.tasks[name], config)
    results = [analyze(plugins.tasks[name], args.model, config, store) for name in tasks]
    out.print(rich_table(results), soft_wrap=False)
    for name, data in render(results).items():
        write_atomic(folder / name, data)
        print(folder / name)


def paraphrase_arguments(parser: argparse.ArgumentParser, model_flag: str = "--paraphrase-model") -> None:
    from icl_bench.paraphrase.llm import DEFAULT_MODEL

    parser.add_argument("--paraphraser", help="override each task's paraphraser (`llm`: an LM's, prompt B.2)")
    parser.add_argument(
        model_flag, dest="paraphrase_model", default=DEFAULT_MODEL, help="the LM of --paraphraser llm"
    )


def data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        action="append",
        metavar="[TASK=]DIR",
        help="the local data folder of tasks that read one (BIRD, MTOP) instead of their variable",
    )


def sweep_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that name a sweep: `run`, `train` and `evaluate` share them, and so its store keys."""
    parser.add_argument(
        "--models", default="smollm2-135m", help="comma-separated aliases, hub ids or folders"
    )
    parser.add_argument("--tasks", default="synthetic-alignment", help="comma-separated task names")
    parser.add_argument("--regimes", default="main", help="`main` (the four main regimes), `all`, or names")
    parser.add_argument("--set", action="append", default=[], metavar="REGIME.FIELD=VALUE")
    parser.add_argument("--size", default="default", help="smoke, default or paper")
    parser.add_argument("--k", type=positive, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=positive, default=16, help="evaluation batch size")
    parser.add_argument(
        "--learning-rate", type=positive_number, help="override the size preset's learning rate"
    )
    parser.add_argument("--max-test", type=positive, help="override the size preset's test examples")
    parser.add_argument("--max-pool", type=positive, help="override the size preset's pool examples")
    parser.add_argument(
        "--epochs", type=positive, help="override the size preset's training contexts per pool example"
    )
    parser.add_argument("--store", help="artifact store folder")
    data_arguments(parser)
    parser.add_argument("--metric", help="primary metric instead of each task's (e.g. comet)")
    parser.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="fp32, bf16, or auto (default): bf16 on a GPU that computes it natively, else fp32",
    )
    paraphrase_arguments(parser)
    parser.add_argument(
        "--launcher",
        choices=("none", "deepspeed", "torchrun"),
        default="none",
        help="run training under a distributed launcher",
    )
    parser.add_argument("--num-gpus", type=positive, help="GPUs per node for --launcher deepspeed")
    parser.add_argument("--hostfile", help="DeepSpeed hostfile for multi-node training")
    numerics_argument(parser)


def numerics_argument(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    from icl_bench.core.numerics import CHOICES, DEFAULT

    parser.add_argument(
        "--numerics",
        choices=CHOICES,
        default=default or DEFAULT,
        help="CPU numerics: portable (the same bytes on any x86-64 CPU with AVX2), native, or auto "
        "(default: portable without a GPU)",
    )


def probe_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-probe", type=positive, help="probe examples (first N of a test split; default: the size's)"
    )


def build_parser() -> Parser:
    parser = Parser(prog="icl-bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    listing = sub.add_parser("list", help="registered tasks, regimes, test modes and models")
    listing.add_argument("kind", nargs="?", choices=KINDS)
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=cmd_list)

    contexts = sub.add_parser("contexts", help="build test-context sets and regime training sets")
    contexts.add_argument("--task", required=True)
    contexts.add_argument("--regimes", default="all", help="`all` or comma-separated regime names")
    contexts.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="REGIME.FIELD=VALUE",
        help="override a regime parameter, e.g. contrastive.p_random=0.3",
    )
    contexts.add_argument("--k", type=positive, default=4, help="in-context examples per instance")
    contexts.add_argument("--seed", type=int, default=0)
    contexts.add_argument("--epochs", type=positive, default=1, help="training contexts per pool example")
    contexts.add_argument("--max-pool", type=positive, help="use only the first N pool examples")
    contexts.add_argument("--max-test", type=positive, help="at most N test examples in all test sets")
    contexts.add_argument("--out", help="write here instead of the artifact store")
    paraphrase_arguments(contexts)
    contexts.add_argument(
        "--store", help="artifact store folder (default: $ICL_BENCH_STORE or the user cache)"
    )
    data_arguments(contexts)
    numerics_argument(contexts)
    contexts.set_defaults(func=cmd_contexts)

    para = sub.add_parser("paraphrase", help="make (or show) a task's paraphrases; print what was kept")
    para.add_argument("--task", required=True)
    para.add_argument("--size", default="default", help="smoke, default or paper: which examples")
    para.add_argument("--store", help="artifact store folder")
    data_arguments(para)
    paraphrase_arguments(para, model_flag="--model")
    numerics_argument(para)
    para.set_defaults(func=cmd_paraphrase)

    comet = sub.add_parser("comet", help="COMET's own environment: `icl-bench comet setup`")
    comet.add_argument("action", choices=("setup",), help="create (once) the environment COMET runs in")
    comet.add_argument("--store", help="artifact store folder (the environment lives in it)")
    comet.set_defaults(func=cmd_comet)

    store = sub.add_parser("store", help="check the artifact store: `icl-bench store verify [--repair]`")
    store.add_argument("action", choices=("verify",), help="check every artifact against its manifest")
    store.add_argument("--store", help="artifact store folder (default: $ICL_BENCH_STORE or the user cache)")
    store.add_argument("--repair", action="store_true", help="move damaged artifacts aside to be recomputed")
    store.set_defaults(func=cmd_store)

    run = sub.add_parser("run", help="contexts -> train -> evaluate -> leaderboard, resumable")
    sweep_arguments(run)
    run.add_argument("--out", default="leaderboards/default", help="suite folder for results and tables")
    run.add_argument("--probes", action="store_true", help="then probe IWL/ICL/copy over training snapshots")
    probe_arguments(run)
    run.set_defaults(func=cmd_run)

    train = sub.add_parser("train", help="train each regime (the store keys `run` uses); print the folders")
    sweep_arguments(train)
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("evaluate", help="evaluate the base and trained models into a suite's results")
    sweep_arguments(evaluate)
    evaluate.add_argument("--out", default="leaderboards/default", help="suite folder for results")
    evaluate.set_defaults(func=cmd_evaluate)

    baselines = sub.add_parser(
        "baselines", help="score the trivial baselines (no model) on the test contexts into a suite"
    )
    sweep_arguments(baselines)
    baselines.add_argument("--out", default="leaderboards/default", help="suite folder for results")
    baselines.set_defaults(func=cmd_baselines)

    probe = sub.add_parser("probe", help="IWL / ICL / copy scores of every training snapshot: probes.md")
    sweep_arguments(probe)
    probe.add_argument("--out", default="leaderboards/default", help="suite folder for probes.md/json/png")
    probe_arguments(probe)
    probe.set_defaults(func=cmd_probe)

    board = sub.add_parser("leaderboard", help="regenerate tables and plots from results")
    board.add_argument("--results", help="results folder (default: every suite under leaderboards/)")
    board.add_argument("--out", help="suite folder to write")
    board.add_argument("--root", default="leaderboards", help=argparse.SUPPRESS)
    board.add_argument("--check", action="store_true", help="exit non-zero if committed files differ")
    board.set_defaults(func=cmd_leaderboard)

    export = sub.add_parser("export-lm-eval", help="write the test-context sets as lm-eval task folders")
    export.add_argument("--task", required=True)
    export.add_argument("--out", required=True)
    export.add_argument("--k", type=positive, default=4)
    export.add_argument("--seed", type=int, default=0)
    export.add_argument("--max-test", type=positive)
    export.add_argument("--store", help="artifact store folder")
    data_arguments(export)
    export.set_defaults(func=cmd_export)

    theory = sub.add_parser("theory", help="train the paper's minimal model per regime; tabulate test MSE")
    theory.add_argument("--d", type=int, default=16, help="input dimension (>= 2)")
    theory.add_argument("--k", type=int, default=4, help="context examples per instance (>= 2)")
    theory.add_argument("--seed", type=int, default=0)
    theory.add_argument("--steps", type=int, default=1500, help="Adam steps per model")
    theory.add_argument("--out", default="leaderboards/theory", help="folder for theory.json/.md/.png")
    numerics_argument(theory)
    theory.set_defaults(func=cmd_theory)

    analysis = sub.add_parser(
        "analyze", help="ft-vs-icl: how ICL aligns with fine-tuning (SimAOU, SimAM, ...)"
    )
    analysis.add_argument("analysis", choices=("ft-vs-icl",))
    analysis.add_argument("--tasks", default="mr-offline", help="comma-separated classification tasks")
    analysis.add_argument("--model", default="smollm2-135m", help="model alias, hub id or folder")
    analysis.add_argument("--k", type=positive, default=32, help="demonstrations (ICL and fine-tuning)")
    analysis.add_argument("--max-test", type=positive, help="at most N test examples per task")
    analysis.add_argument("--seed", type=int, default=0)
    analysis.add_argument(
        "--learning-rate", type=positive_number, help="fine-tuning learning rate (default 0.01, SGD)"
    )
    analysis.add_argument("--epochs", type=positive, help="fine-tuning epochs (default 3)")
    analysis.add_argument("--precision", default="auto", choices=PRECISIONS, help="fp32, bf16 or auto")
    analysis.add_argument("--store", help="artifact store folder")
    data_arguments(analysis)
    analysis.add_argument(
        "--out", default="leaderboards/ft-vs-icl", help="folder for the tables and heatmaps"
    )
    numerics_argument(analysis)
    analysis.set_defaults(func=cmd_analyze)

    again = sub.add_parser("reproduce", help="rerun a suite's plan.json and compare: bytes, cells, verdicts")
    again.add_argument("suite", help="a suite folder with plan.json and results/ (e.g. leaderboards/default)")
    again.add_argument("--store", help="artifact store for the rerun (default: a fresh one in --out)")
    again.add_argument("--out", help="scratch folder for the rerun (default: a new temporary folder)")
    again.add_argument("--strict", action="store_true", help="also fail on any byte difference")
    again.add_argument("--numerics", choices=("portable", "native"), help="default: the plan's profile")
    again.set_defaults(func=cmd_reproduce)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        args.argv = tuple(sys.argv[1:] if argv is None else argv)
        profile = getattr(args, "numerics", None)
        if args.command == "reproduce" and profile is None:
            from icl_bench.sweep.record import read_plan

            profile = read_plan(Path(args.suite))["numerics"]["profile"]
        if profile:  # before anything loads torch
            from icl_bench.core.numerics import apply

            apply(profile)
        args.func(args)
    except UsageError as error:
        print(f"icl-bench: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("icl-bench: interrupted; finished artifacts are kept and a rerun resumes", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
