"""The commands of the pipeline's stages: each parses nothing, reads its checked options, runs its stage
and prints the results (stdout) and progress (stderr)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from icl_bench.core import plugins
from icl_bench.core.errors import UsageError
from icl_bench.core.validate import check_writable, names_in

if TYPE_CHECKING:
    from icl_bench.core.store import Store


KINDS = ("tasks", "regimes", "modes", "models", "executors")


def names(kind: str) -> list[dict[str, str]]:
    from icl_bench.contexts.modes import MODES

    registries = {"tasks": plugins.tasks, "regimes": plugins.regimes, "models": plugins.models}
    registry = {**registries, "executors": plugins.executors}.get(kind)
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
    plan = Plan(
        models=names_in("--models", args.models, "models"),
        tasks=names_in("--tasks", args.tasks, "tasks"),
        regimes=resolve_regimes(args.regimes, args.set),
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
        max_steps=args.max_steps,
        paraphraser=args.paraphraser,
        paraphrase_model=args.paraphrase_model,
        metric=args.metric,
        precision=args.precision,
        report_to=getattr(args, "report_to", "none"),
        command=tuple(getattr(args, "argv", ())),  # set by main; none when parsed elsewhere
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


def executor_of(args: argparse.Namespace):
    """The executor the options name and the resources its jobs ask for, checked before any work."""
    from icl_bench.core.jobs import SETTABLE, read_resources
    from icl_bench.core.numerics import DEFAULT, resolve
    from icl_bench.train.config import check_tracker

    executor = plugins.executors[args.executor]
    config = Path(args.executor_config) if args.executor_config else None
    resources = read_resources(config, **{name: getattr(args, name) for name in SETTABLE})
    profile = resolve(getattr(args, "numerics", DEFAULT))
    if executor.remote and profile != "portable":  # store keys would name each machine's CPU
        raise UsageError(
            f"--executor {executor.name} needs --numerics portable: under {profile} the store keys "
            "name each machine's CPU and threads, so jobs and this process would not find each other's work"
        )
    if getattr(args, "detach", False) and not executor.remote:
        raise UsageError("--detach needs an executor that submits jobs (e.g. --executor slurm)")
    if getattr(args, "detach", False) and getattr(args, "probes", False):
        raise UsageError("--detach runs no probes: drop --probes and run `icl-bench probe` afterwards")
    check_tracker(getattr(args, "report_to", "none"))
    executor.check()
    return executor, resources


def dry_run(plan, store, resources, kinds: Sequence[str] = ("train", "evaluate")) -> None:
    """`--dry-run`: the job graph on stdout; nothing runs."""
    from icl_bench.sweep.jobs import graph, show
    from icl_bench.sweep.sweep import Sweep

    for line in show(graph(Sweep(plan, store), kinds, resources), store):
        print(line)


def cmd_run(args: argparse.Namespace) -> None:
    from icl_bench.core.progress import console
    from icl_bench.report.leaderboard import show
    from icl_bench.sweep.jobs import job_folder
    from icl_bench.sweep.stages import run

    plan, store = plan_of(args)
    executor, resources = executor_of(args)
    if args.dry_run:
        return dry_run(plan, store, resources)
    if args.probes:  # the probes' needs (k >= 2, a paraphraser), before the sweep
        from icl_bench.analyses import probes

        for name in plan.tasks:
            probes.check_task(plugins.tasks[name], plan.k)
    failures = run(plan, store, executor, resources, wait=not args.detach)
    if args.detach:
        console.print(
            f"submitted; a last job writes {plan.out}/leaderboard.md (logs: {job_folder(plan.out)})"
        )
        return
    show(plan.out / "results")
    if args.probes:  # every regime that trained; a failed one is reported below
        probes.show(probes.probe_stage(plan, store, args.max_probe, skip_untrained=True))
    fail_on(failures)


def cmd_probe(args: argparse.Namespace) -> None:
    from icl_bench.analyses import probes
    from icl_bench.core.jobs import Job
    from icl_bench.core.progress import console
    from icl_bench.sweep.jobs import job_folder
    from icl_bench.sweep.record import add_stage, recorded_argv

    plan, store = plan_of(args)
    executor, resources = executor_of(args)
    probes.preflight(plan, store)  # here, before a job is submitted
    job = Job(f"probe {plan.out}", probes.Probe.of(plan, store, args.max_probe), resources=resources.single())
    if args.dry_run:
        print(f"1 job: {job.name}")
        return
    [outcome] = executor.run([job], job_folder(plan.out))
    fail_on([outcome.line()] if outcome.state != "done" else [])
    probes.show(outcome.result)
    add_stage(plan.out, recorded_argv(args.argv))
    console.print(f"wrote {plan.out}/probes.md")


def cmd_train(args: argparse.Namespace) -> None:
    from icl_bench.sweep.stages import train_stage

    plan, store = plan_of(args)
    executor, resources = executor_of(args)
    if args.dry_run:
        return dry_run(plan, store, resources, ("train",))
    trained, failures = train_stage(plan, store, executor, resources)
    for folder in trained:
        print(folder)
    fail_on(failures)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from icl_bench.core.progress import console
    from icl_bench.sweep.stages import evaluate_stage

    plan, store = plan_of(args)
    executor, resources = executor_of(args)
    if args.dry_run:
        return dry_run(plan, store, resources, ("evaluate",))
    fail_on(evaluate_stage(plan, store, executor, resources))
    print(plan.out / "results")
    console.print(f"tabulate with `icl-bench leaderboard --out {plan.out}`")


def cmd_baselines(args: argparse.Namespace) -> None:
    from icl_bench.core.progress import console
    from icl_bench.sweep.stages import baselines_stage

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
