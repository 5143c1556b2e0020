"""The command line: one parser, a subcommand per stage, the option groups the sweep commands share."""

from __future__ import annotations

import argparse
import math

from icl_bench.cli.analyses import cmd_analyze, cmd_reproduce, cmd_theory
from icl_bench.cli.commands import (
    KINDS,
    cmd_baselines,
    cmd_comet,
    cmd_contexts,
    cmd_evaluate,
    cmd_export,
    cmd_leaderboard,
    cmd_list,
    cmd_paraphrase,
    cmd_probe,
    cmd_run,
    cmd_store,
    cmd_train,
)
from icl_bench.core.errors import UsageError
from icl_bench.core.names import DEFAULT_TASK
from icl_bench.models import PRECISIONS


class Parser(argparse.ArgumentParser):
    """argparse that reports a malformed command line as one line (exit 2) instead of a usage dump, and
    takes options by their whole names only (a plan records the command; `--part` would hide what it
    meant)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

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
    parser.add_argument("--tasks", default=DEFAULT_TASK, help="comma-separated task names")
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
    parser.add_argument("--max-steps", type=positive, help="override the size preset's training steps")
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


def executor_arguments(parser: argparse.ArgumentParser, detach: bool = False) -> None:
    """Where the sweep's jobs run and what each asks for (`icl_bench.core.jobs.Resources`)."""
    from icl_bench.train.config import REPORT_TO

    group = parser.add_argument_group("executor", "where the jobs run (results do not depend on it)")
    group.add_argument("--executor", default="local", help="local (default: this process) or slurm")
    group.add_argument("--executor-config", help="TOML file of job resources (fields as the options below)")
    group.add_argument("--partition", help="scheduler partition")
    group.add_argument("--account", help="scheduler account")
    group.add_argument("--qos", help="scheduler quality of service")
    group.add_argument("--gpus-per-node", type=int, help="GPUs per node of each job")
    group.add_argument("--nodes", type=positive, help="nodes of a training job")
    group.add_argument("--tasks-per-node", type=positive, help="processes per node of a training job")
    group.add_argument("--cpus-per-task", type=positive, help="CPU cores per process")
    group.add_argument("--mem-gb", type=positive_number, help="memory per job (GB)")
    group.add_argument("--time-min", type=positive, help="time limit per job (minutes)")
    group.add_argument("--dry-run", action="store_true", help="print the job graph; submit nothing")
    if detach:
        group.add_argument(
            "--detach", action="store_true", help="submit and return; a last job writes the leaderboard"
        )
    group.add_argument(
        "--report-to", choices=REPORT_TO, default="none", help="also send training metrics to this tracker"
    )


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
    executor_arguments(run, detach=True)
    run.set_defaults(func=cmd_run)

    train = sub.add_parser("train", help="train each regime (the store keys `run` uses); print the folders")
    sweep_arguments(train)
    executor_arguments(train)
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("evaluate", help="evaluate the base and trained models into a suite's results")
    sweep_arguments(evaluate)
    evaluate.add_argument("--out", default="leaderboards/default", help="suite folder for results")
    executor_arguments(evaluate)
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
    executor_arguments(probe)
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
    again.set_defaults(func=cmd_reproduce, parser=build_parser)  # it parses the plan's commands
    return parser
