"""Everything a leaderboard shows, computed from a results folder alone: each task's summary (mean and
CI per mode and similarity bin), its claim verdicts, the environments the results were made in and the
suite's plan.json; with the order the tables list regimes in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icl_bench.core import environment
from icl_bench.core.errors import UsageError
from icl_bench.core.names import REGIME_ORDER
from icl_bench.score import claims
from icl_bench.score.bootstrap import DEFAULT_BOOTSTRAP, Bootstrap
from icl_bench.score.results import load_results
from icl_bench.score.summary import TaskSummary, score_task

PLAN_FILE = "plan.json"  # beside results/: how the suite was made (`icl_bench.sweep.record`)


@dataclass(frozen=True)
class Board:
    """Everything a leaderboard shows, computed from a results folder alone."""

    summaries: tuple[TaskSummary, ...]
    verdicts: dict[str, list[claims.Verdicts]]  # task -> one per (model, split)
    margins: dict[str, float]  # task -> the `>=` margin in its metric's units
    environments: dict[tuple[str, str, str, str], dict[str, Any] | None]  # (task, model, regime, stage)
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP
    plan: dict[str, Any] | None = None  # the suite's plan.json (`icl_bench.sweep.record`), when it has one


def metric_scale(name: str) -> float:
    """The registered metric's range (1 for accuracies, 100 for chrF/BLEU); 1 when not installed."""
    from icl_bench.core import plugins

    return plugins.metrics[name].scale if name in plugins.metrics else 1.0


def board(results: Path, bootstrap: Bootstrap = DEFAULT_BOOTSTRAP) -> Board:
    """The summaries, claim verdicts, environments and plan of the suite whose results are `results`."""
    tasks = load_results(Path(results))
    summaries = tuple(score_task(task, bootstrap) for task in tasks)
    margins = {task.task: claims.MARGIN * metric_scale(task.metric) for task in tasks}
    verdicts = {
        task.task: claims.task_verdicts(
            task.task, task.records, task.bins.edges, margins[task.task], bootstrap, task.corpus
        )
        for task in tasks
    }
    plan = read_plan_record(Path(results).parent / PLAN_FILE)
    environments = read_environments(Path(results))
    return Board(summaries, verdicts, margins, environments, bootstrap, plan)


def read_plan_record(path: Path) -> dict[str, Any] | None:
    """The suite's plan.json as a table shows it (None when there is none); one line when unreadable."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        record = None
    if not isinstance(record, dict):
        raise UsageError(f"{path} is malformed; remake the suite with the command that made it, or delete it")
    return record


def read_environments(results: Path) -> dict[tuple[str, str, str, str], dict[str, Any] | None]:
    """(task, model, regime, stage) -> the environment recorded beside the results, stage being
    "train" or "evaluate"; a result without a record maps to None."""
    found: dict[tuple[str, str, str, str], dict[str, Any] | None] = {}
    kinds = ("train", "evaluate")

    def shaped(recorded: Any) -> bool:  # None, or an object whose packages (if any) are an object
        return recorded is None or (
            isinstance(recorded, dict) and isinstance(recorded.get("packages") or {}, dict)
        )

    for path in sorted(results.glob(f"*/*/{environment.FILE}")):
        fix = "delete it and rerun `icl-bench run` with the suite's options to record it again"
        try:
            recorded = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UsageError(f"{path} is not valid JSON; {fix}") from None
        if not isinstance(recorded, dict) or not all(
            stages is None or (isinstance(stages, dict) and all(shaped(stages.get(s)) for s in kinds))
            for stages in recorded.values()
        ):
            raise UsageError(
                f"{path} is not an environment record (an object of regime -> {{train, evaluate}}); {fix}"
            )
        for regime, stages in sorted(recorded.items()):
            for stage in kinds:
                found[(path.parent.parent.name, path.parent.name, regime, stage)] = (stages or {}).get(stage)
    for path in sorted(results.glob("*/*/*.jsonl")):
        found.setdefault((path.parent.parent.name, path.parent.name, path.stem, "evaluate"), None)
    return found


def regime_key(regime: str) -> tuple[int, str]:
    """Sort key: the paper's regimes first in their order, then the rest alphabetically."""
    if regime in REGIME_ORDER:
        return (0, f"{REGIME_ORDER.index(regime):03d}")
    return (1, regime)
