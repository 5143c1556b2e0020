"""The results schema (SPEC 3): a record's fields, parsing one JSON line into a `Record`, and the checks
a task folder's records must pass beyond each line (one (model, regime) per file, known modes and
regimes, scores within the metric's bounds, the same records for every model, exactly the planned
ones); `icl_bench.score.results` reads the folders with them.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icl_bench.core.errors import UsageError
from icl_bench.core.types import BASELINE_FILE, BASELINE_MODEL

FIELDS = ("task", "model", "regime", "split", "mode", "id", "score", "max_sim")


@dataclass(frozen=True)
class Record:
    """One scored (test example, mode) pair; `score` is the task's primary metric."""

    task: str
    model: str
    regime: str
    split: str
    mode: str
    id: str
    score: float
    max_sim: float | None
    stats: tuple[float, ...] | None = None  # a corpus metric's sufficient statistics
    prediction: str | None = None  # the model's output, when the line records it (`collapses`)


def check_records(
    records: Sequence[Record], where: Sequence[str], metric: str, scored: Sequence[dict[str, float]]
) -> None:
    """The results schema beyond each line's fields: a file holds one (model, regime) named by its path;
    known test modes and regimes; `score` is the record's `metrics` entry of the task's metric and lies
    within its bounds (when installed and declared); one set of (split, mode, id) records shared by
    every model and regime of the task, each with one max_sim (the pairing every comparison relies on)."""
    from icl_bench.contexts.modes import MODES
    from icl_bench.core import plugins

    bounds = plugins.metrics[metric].bounds if metric in plugins.metrics else None
    slack = 1e-9 * (bounds[1] - bounds[0]) if bounds else 0.0
    regimes = {"base", *plugins.regimes}
    for record, here, named in zip(records, where, scored, strict=True):
        path = Path(here.rsplit(":", 1)[0])
        if record.mode not in MODES:
            raise UsageError(f"{here}: unknown test mode {record.mode!r}; known modes: {', '.join(MODES)}")
        if record.model != BASELINE_MODEL and record.regime not in regimes:
            raise UsageError(
                f"{here}: unknown regime {record.regime!r}; known regimes: {', '.join(sorted(regimes))} "
                "(install the plugin that registers it, or fix the line)"
            )
        if path.name == BASELINE_FILE and record.model != BASELINE_MODEL:
            raise UsageError(f"{here}: {BASELINE_FILE} holds model {record.model!r}, not {BASELINE_MODEL!r}")
        if path.name != BASELINE_FILE and record.regime != path.stem:
            raise UsageError(
                f"{here}: a record of regime {record.regime!r} in {path.name}; a file holds its own regime"
            )
        if bounds and not bounds[0] - slack <= record.score <= bounds[1] + slack:
            raise UsageError(
                f"{here}: score {record.score} is outside {metric}'s range [{bounds[0]:g}, {bounds[1]:g}]; "
                "rerun `icl-bench run` for this regime"
            )
        if named and (metric not in named or not math.isclose(named[metric], record.score, abs_tol=1e-9)):
            found = f"{metric} {named[metric]}" if metric in named else f"only {', '.join(sorted(named))}"
            raise UsageError(
                f"{here}: score {record.score} but its metrics say {found} (the task's metric is {metric}); "
                "rerun `icl-bench run` for this regime"
            )
    sims: dict[tuple[str, str, str], tuple[float | None, str]] = {}
    groups: dict[tuple[str, str, str], set[tuple[str, str]]] = defaultdict(set)
    files: dict[tuple[str, str, str], str] = {}
    for record, here in zip(records, where, strict=True):
        first, there = sims.setdefault((record.split, record.mode, record.id), (record.max_sim, here))
        if first != record.max_sim:
            raise UsageError(
                f"{here}: max_sim {record.max_sim} of id {record.id!r} in mode {record.mode!r} differs from "
                f"{first} at {there}; every model is scored on the same contexts: rerun `icl-bench run`"
            )
        groups[(record.split, record.model, record.regime)].add((record.mode, record.id))
        files.setdefault((record.split, record.model, record.regime), here.rsplit(":", 1)[0])
    for split in sorted({split for split, _, _ in groups}):
        every = set().union(*(keys for (s, _, _), keys in groups.items() if s == split))
        for (s, model, regime), keys in sorted(groups.items()):
            lacking = sorted(every - keys) if s == split else []
            if lacking:
                mode, rid = lacking[0]
                raise UsageError(
                    f"{files[(s, model, regime)]}: {len(lacking)} record(s) of split {split!r} that other "
                    f"results of the task have are missing (e.g. id {rid!r}, mode {mode!r}); rerun "
                    f"`icl-bench run` for {model} / {regime}"
                )


def check_planned(
    records: Sequence[Record], where: Sequence[str], planned: frozenset[tuple[str, str, str]], bins_path: Path
) -> None:
    """Every (model, regime) holds exactly the records the contexts planned (bins.json's `records`):
    an example missing from every file is found too."""
    groups: dict[tuple[str, str], set[tuple[str, str, str]]] = defaultdict(set)
    files: dict[tuple[str, str], str] = {}
    for record, here in zip(records, where, strict=True):
        key = (record.split, record.mode, record.id)
        if key not in planned:
            raise UsageError(
                f"{here}: id {record.id!r} in mode {record.mode!r} is not in the plan ({bins_path})"
            )
        groups[(record.model, record.regime)].add(key)
        files.setdefault((record.model, record.regime), here.rsplit(":", 1)[0])
    for (model, regime), keys in sorted(groups.items()):
        lacking = sorted(planned - keys)
        if lacking:
            split, mode, rid = lacking[0]
            raise UsageError(
                f"{files[(model, regime)]}: {len(lacking)} of the {len(planned)} planned records are missing "
                f"(e.g. id {rid!r}, mode {mode!r}, split {split!r}); rerun `icl-bench run` for "
                f"{model} / {regime}"
            )


def parse_line(line: str, where: str) -> dict[str, Any]:
    """One line of a results file as a JSON object."""
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as error:
        raise UsageError(
            f"{where}: not valid JSON ({error.msg}); fix or delete the line, or rerun `icl-bench run`"
        ) from None
    if not isinstance(raw, dict):
        raise UsageError(f"{where}: a record must be a JSON object; fix the line or rerun evaluate")
    return raw


def parse_record(raw: dict[str, Any], where: str) -> Record:
    """A parsed line as a `Record`, its fields checked (`where`: the file and line, for messages)."""
    missing = [name for name in FIELDS if name not in raw]
    if missing:
        raise UsageError(
            f"{where}: missing field(s) {', '.join(missing)}; every record needs {', '.join(FIELDS)}"
        )
    for name in ("task", "model", "regime", "split", "mode"):
        if not isinstance(raw[name], str) or not raw[name]:
            raise UsageError(f"{where}: field {name!r} must be a non-empty string, got {raw[name]!r}")
    if not isinstance(raw["id"], (str, int)) or isinstance(raw["id"], bool):
        raise UsageError(f"{where}: field 'id' must be a string, got {raw['id']!r}")
    score = number(raw["score"])
    if score is None or not math.isfinite(score):
        raise UsageError(f"{where}: field 'score' must be a finite number, got {raw['score']!r}")
    max_sim = number(raw["max_sim"])
    if raw["max_sim"] is not None and (max_sim is None or math.isnan(max_sim)):
        raise UsageError(f"{where}: field 'max_sim' must be a number or null, got {raw['max_sim']!r}")
    stats = raw.get("stats")
    if stats is not None and (not isinstance(stats, list) or not stats or not all(_finite(x) for x in stats)):
        raise UsageError(f"{where}: field 'stats' must be a list of numbers, got {stats!r}; rerun evaluate")
    prediction = raw.get("prediction")
    if prediction is not None and not isinstance(prediction, str):
        raise UsageError(f"{where}: field 'prediction' must be a string, got {prediction!r}; rerun evaluate")
    return Record(
        raw["task"],
        raw["model"],
        raw["regime"],
        raw["split"],
        raw["mode"],
        str(raw["id"]),
        score,
        max_sim,
        None if stats is None else tuple(float(x) for x in stats),
        prediction,
    )


def _finite(value: Any) -> bool:
    found = number(value)
    return found is not None and math.isfinite(found)


def number(value: Any) -> float | None:
    """A JSON number as a float; None for anything else (booleans included)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def metric_name(declared: set[str], matching: set[str]) -> str:
    """The metric a record's "metric" or bins.json's "metric" names, else the unique `metrics` entry
    equal to `score` in every record, else "score"."""
    if len(declared) == 1:
        return next(iter(declared))
    if len(matching) == 1:
        return next(iter(matching))
    return "score"
