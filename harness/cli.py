"""`icl-bench`: each pipeline stage is a subcommand; `run` chains them."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from icl_bench import plugins
from icl_bench.errors import UsageError
from icl_bench.types import Regime

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


def names(kind: str) -> list[dict[str, str]]:
    from icl_bench.modes import MODES

    registry = {"tasks": plugins.tasks, "regimes": plugins.regimes, "models": plugins.models}.get(kind)
    items = MODES.values() if registry is None else registry.values()
    return [{"name": item.name, "description": item.description} for item in items]


def resolve_regimes(spec: str, settings: Sequence[str] = ()) -> list[Regime]:
    """`all` or comma-separated names, each optionally reconfigured by `--set regime.field=value`."""
    chosen = list(plugins.regimes) if spec == "all" else [n.strip() for n in spec.split(",") if n.strip()]
    regimes = {name: plugins.regimes[name] for name in chosen}
    for setting in settings:
        target, _, value = setting.partition("=")
        name, _, field = target.rpartition(".")
        if not (name and field and value):
            raise UsageError(f"--set {setting!r} is malformed; write --set REGIME.FIELD=VALUE")
        if name not in regimes:
            raise UsageError(f"--set {setting!r} names regime {name!r}, which is not selected by --regimes")
        regime = regimes[name]
        known = {f.name: f for f in dataclasses.fields(regime) if f.name not in ("name", "description")}
        if field not in known:
            raise UsageError(
                f"--set {setting!r}: regime {name!r} has no field {field!r}; fields: {', '.join(known)}"
            )
        current = getattr(regime, field)
        try:
            parsed = json.loads(value) if not isinstance(current, str) else value
        except json.JSONDecodeError:
            raise UsageError(f"--set {setting!r}: {value!r} is not a number or boolean") from None
        regimes[name] = dataclasses.replace(regime, **{field: parsed})
    return list(regimes.values())


def cmd_list(args: argparse.Namespace) -> None:
    from rich.table import Table

    from icl_bench.progress import console

    kinds = [args.kind] if args.kind else list(KINDS)
    listing = {kind: names(kind) for kind in kinds}
    if args.json:
        print(json.dumps(listing, indent=2))
        return
    for kind, items in listing.items():
        table = Table(title=kind, title_justify="left", show_header=False)
        for item in items:
            table.add_row(item["name"], item["description"])
        console.print(table, soft_wrap=False)


def cmd_contexts(args: argparse.Namespace) -> None:
    from icl_bench.contexts import ContextConfig, write_contexts
    from icl_bench.progress import console
    from icl_bench.store import Store, fingerprint

    task = plugins.tasks[args.task]
    regimes = resolve_regimes(args.regimes, args.set)
    config = ContextConfig(
        k=args.k, seed=args.seed, epochs=args.epochs, max_pool=args.max_pool, max_test=args.max_test
    )
    if args.out:
        print(write_contexts(task, regimes, config, Path(args.out)))
        return
    store = Store(args.store)
    inputs = {"task": task.name, "config": config.key(), "regimes": {r.name: r.params() for r in regimes}}
    if not store.has("contexts", inputs):
        with store.writing("contexts", inputs) as folder:
            write_contexts(task, regimes, config, folder)
    folder = store.folder("contexts", inputs)
    console.print(f"contexts in {folder}")
    print(fingerprint(folder, skip=("inputs.json",)))


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
    contexts.add_argument("--max-test", type=positive, help="use only the first N examples of each test set")
    contexts.add_argument("--out", help="write here instead of the artifact store")
    contexts.add_argument(
        "--store", help="artifact store folder (default: $ICL_BENCH_STORE or the user cache)"
    )
    contexts.set_defaults(func=cmd_contexts)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
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
