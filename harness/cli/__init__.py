"""`icl-bench`: each pipeline stage is a subcommand; `run` chains them.  The CLI only parses options
(`arguments`) and calls the stages (`commands`, `analyses`), printing results to stdout."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from icl_bench.cli.arguments import build_parser
from icl_bench.cli.commands import KINDS, names, plan_of
from icl_bench.core.errors import UsageError

__all__ = ["KINDS", "build_parser", "main", "names", "plan_of"]


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
