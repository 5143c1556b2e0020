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
from icl_bench.report.board import PLAN_FILE

if TYPE_CHECKING:
    from icl_bench.contexts.build import ContextConfig
    from icl_bench.sweep.plan import Plan
    from icl_bench.train.config import TrainConfig

FILE = PLAN_FILE
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
        "command": command_line(plan.command) if plan.command else None,
        "argv": list(plan.command) if plan.command else None,
        "options": options,
        "contexts": contexts.key(),
        "train": train.key(),
        "numerics": {"profile": numerics.current(), "key": numerics.key()},
        "icl_bench": importlib.metadata.version("icl-bench"),
        "constraints_sha256": lock_sha256(),
    }


def write_plan(folder: Path, record: dict[str, Any]) -> Path:
    write_json(folder / FILE, record)
    return folder / FILE


def add_stage(folder: Path, name: str, argv: Sequence[str]) -> None:
    """Record a later command that wrote into the suite (`icl-bench probe`), so a reproduction reruns it
    too; nothing when the suite has no plan."""
    path = Path(folder) / FILE
    if path.is_file():
        record = json.loads(path.read_text(encoding="utf-8"))
        write_plan(folder, {**record, "stages": {**record.get("stages", {}), name: list(argv)}})


def read_plan(suite: Path) -> dict[str, Any]:
    """The plan recorded in `suite`, checked to name a `run` command; one-line errors otherwise."""
    path = Path(suite) / FILE
    if not path.is_file():
        raise UsageError(
            f"{suite} has no {FILE}: it was not made by `icl-bench run` (or before plans were recorded);"
            " remake it with `icl-bench run ... --out " + str(suite) + "`"
        )
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        argv = record["argv"]
        profile = record["numerics"]["profile"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
        raise UsageError(f"{path} is malformed; remake the suite with `icl-bench run`") from None
    if argv is None:
        raise UsageError(f"{path}: the suite was made through the Python API, with no command to rerun")
    if not (isinstance(argv, list) and argv[:1] == ["run"] and all(isinstance(a, str) for a in argv)):
        raise UsageError(f"{path}: argv is not an `icl-bench run` command; remake the suite")
    stages = record.get("stages", {})
    if not isinstance(stages, dict) or any(argv[:1] != [name] for name, argv in stages.items()):
        raise UsageError(f"{path}: malformed stages; remake the suite with `icl-bench run`")
    if profile not in numerics.PROFILES:
        known = ", ".join(numerics.PROFILES)
        raise UsageError(f"{path}: unknown numerics profile {profile!r}; known profiles: {known}")
    return record


def resolved(record: dict[str, Any]) -> dict[str, Any]:
    """What a rerun of the plan must resolve to the same values (the numerics profile may be chosen)."""
    train = {name: value for name, value in (record.get("train") or {}).items() if name != "numerics"}
    return {"options": record.get("options"), "contexts": record.get("contexts"), "train": train}
