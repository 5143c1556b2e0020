"""A suite's plan: `plan.json`, written by `icl-bench run` into the suite folder before any work.

It says how to remake the suite: the exact command and its argument list, the options as resolved
(regimes with their parameters, the size's context and training settings with every override), the
icl-bench version, the sha256 of the lock (`constraints.txt`) and the numerics profile; `stages` holds
the later commands that wrote into the suite (`icl-bench probe`).  `icl-bench
reproduce` reruns `argv` and compares (`icl_bench.sweep.reproduce`); the leaderboard shows `command`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icl_bench.core import numerics
from icl_bench.core.errors import UsageError
from icl_bench.core.files import write_json
from icl_bench.core.jobs import SETTABLE, option
from icl_bench.core.progress import console
from icl_bench.report.board import PLAN_FILE

if TYPE_CHECKING:
    from icl_bench.contexts.build import ContextConfig
    from icl_bench.sweep.plan import Plan
    from icl_bench.train.config import TrainConfig

LOCK = Path(__file__).resolve().parents[2] / "constraints.txt"  # the lock, when installed from the repo


def command_line(argv: Sequence[str]) -> str:
    return shlex.join(["icl-bench", *argv])


def lock_sha256() -> str | None:
    return hashlib.sha256(LOCK.read_bytes()).hexdigest() if LOCK.is_file() else None


def plan_record(plan: Plan, precision: str, contexts: ContextConfig, train: TrainConfig) -> dict[str, Any]:
    """The plan as plain JSON values, with what the sweep resolved it to: the precision, the context
    and the training settings."""
    options = {
        "models": list(plan.models),
        "tasks": list(plan.tasks),
        "regimes": [{"name": regime.name, "params": regime.params()} for regime in plan.regimes],
        "size": plan.size,
        "seed": plan.seed,
        "k": plan.k,
        "batch_size": plan.batch_size,
        "precision": precision,
        "metric": plan.metric,
        "paraphraser": plan.paraphraser,
        "paraphrase_model": plan.paraphrase_model,
        "launcher": plan.launcher,
    }
    return {
        "command": command_line(recorded_argv(plan.command)) if plan.command else None,
        "argv": recorded_argv(plan.command) if plan.command else None,
        "options": options,
        "contexts": contexts.key(),
        "train": train.key(),
        "numerics": {"profile": numerics.current(), "key": numerics.key()},
        "icl_bench": importlib.metadata.version("icl-bench"),
        "constraints_sha256": lock_sha256(),
    }


def write_plan(folder: Path, record: dict[str, Any]) -> Path:
    """Write the plan of a `run` into the suite `folder`.  A suite that already has a plan keeps it: a
    rerun of the same command keeps its later stages, another command becomes one more stage.  The same
    command resolving to other work (a default changed since) starts the plan anew (`starts_anew`)."""
    path = Path(folder) / PLAN_FILE
    try:
        known = read_plan(folder) if path.is_file() else None
    except UsageError:  # a damaged plan is replaced by this run's
        known = None
    if known is not None and known["argv"] == record["argv"] and starts_anew(folder, known, record):
        known = None
    if known is None:
        write_json(path, record)
    elif known["argv"] != record["argv"]:
        add_stage(folder, record["argv"] or [])
    return path


def starts_anew(folder: Path, known: dict[str, Any], record: dict[str, Any]) -> bool:
    """Whether `record` resolves to other work than the `known` plan of the same command; if so, one
    stderr line names the stages dropped with it and the result folders of tasks it no longer runs
    (their outputs stay until removed)."""
    if resolved(known) == resolved(json.loads(json.dumps(record, default=str))):  # tuples as read back
        return False
    results = Path(folder) / "results"
    tasks = record["options"]["tasks"]
    others = [t.name for t in sorted(results.glob("*")) if t.is_dir() and t.name not in tasks]
    line = f"{Path(folder) / PLAN_FILE}: {record['command']} now resolves to other work; its plan starts anew"
    if known["stages"]:
        line += "; dropped stages: " + "; ".join(command_line(stage) for stage in known["stages"])
    if others:
        line += f"; results of tasks it no longer runs stay until removed: {', '.join(others)}"
    console.print(line, markup=False, soft_wrap=True)
    return True


def add_stage(folder: Path, argv: Sequence[str]) -> None:
    """Record a later command that wrote into the suite (`icl-bench probe`, a `run` with other options),
    so a remake reruns it too, in order; nothing when the suite has no readable plan or the command is
    already the last stage."""
    try:
        record = read_plan(folder)
    except UsageError:
        return
    stages = record["stages"]
    if list(argv) and (not stages or stages[-1] != list(argv)):
        write_json(Path(folder) / PLAN_FILE, {**record, "stages": [*stages, list(argv)]})


# options that say where or how the work runs, never what it computes: a plan does not record them
WHERE = ("--store", "--executor", "--executor-config", "--report-to", *map(option, SETTABLE))
FLAGS = ("--detach",)


def recorded_argv(argv: Sequence[str]) -> list[str]:
    """The arguments as a plan records them: without `--store` (a machine's folder) and the executor's
    options (where jobs run, what they ask for, where metrics go), which never change a result."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in WHERE:
            skip = True
        elif arg not in FLAGS and not arg.startswith(tuple(f"{name}=" for name in WHERE)):
            kept.append(arg)
    return kept


def read_plan(suite: Path) -> dict[str, Any]:
    """The plan recorded in `suite`, its fields checked (a `run` command, its stages, the numerics
    profile); one-line errors naming the fix otherwise.  `stages` is returned as a list."""
    path = Path(suite) / PLAN_FILE
    if not Path(suite).is_dir():
        raise UsageError(f"suite folder {suite} does not exist")
    if not path.is_file():
        raise UsageError(
            f"{suite} has no {PLAN_FILE}: it was not made by `icl-bench run` (or before plans were recorded);"
            f" remake it with `icl-bench run ... --out {suite}`"
        )
    fix = "remake the suite with `icl-bench run`"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UsageError(f"{path} is not JSON; {fix}") from None
    if not isinstance(record, dict):
        raise UsageError(f"{path} is malformed; {fix}")
    argv, stages = record.get("argv"), record.get("stages", [])
    if argv is None and "argv" in record:
        raise UsageError(f"{path}: the suite was made through the Python API, with no command to rerun")
    if isinstance(stages, dict):  # the first plans kept {name: argv}
        stages = list(stages.values())
    for command in [argv, *stages] if isinstance(stages, list) else [None]:
        if not (isinstance(command, list) and all(isinstance(a, str) for a in command)):
            raise UsageError(f"{path}: a command is not a list of arguments; {fix}")
        if command[:1] not in (["run"], ["probe"]) or (command is argv and command[:1] != ["run"]):
            raise UsageError(f"{path}: {command_line(command)!r} is not a `run` (or later `probe`); {fix}")
        if {"-h", "--help"} & set(command):
            raise UsageError(f"{path}: {command_line(command)!r} asks for help, not a run; {fix}")
    profile = record.get("numerics", {}).get("profile") if isinstance(record.get("numerics"), dict) else None
    if not isinstance(profile, str) or profile not in numerics.PROFILES:
        known = ", ".join(numerics.PROFILES)
        raise UsageError(f"{path}: numerics profile {profile!r} is not one of {known}; {fix}")
    for name, kind in (("options", dict), ("contexts", dict), ("train", dict), ("command", str)):
        if not isinstance(record.get(name), kind):
            raise UsageError(f"{path}: {name} is missing or malformed; {fix}")
    return {**record, "stages": stages}


def resolved(record: dict[str, Any]) -> dict[str, Any]:
    """What a rerun of the plan must resolve to the same values (the numerics profile may be chosen)."""
    train = {name: value for name, value in (record.get("train") or {}).items() if name != "numerics"}
    return {"options": record.get("options"), "contexts": record.get("contexts"), "train": train}
