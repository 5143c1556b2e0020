"""Stage: score.  Per-example results -> mean task metric with 95% bootstrap CIs (SPEC section 3).

Reads the evaluate stage's results folder:

    <results>/<task>/bins.json                {"task", "method": "tertiles"|"fixed", "edges": [e1, e2]}
    <results>/<task>/**/<regime>.jsonl        one record per (test example, mode)

and summarises each task per (split, model, regime, mode) and per (split, model, regime, similarity bin),
where the bins pool every mode's records by max_sim: Low (s < e1), Medium (e1 <= s < e2), High (s >= e2).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from icl_bench.core.errors import UsageError
from icl_bench.core.types import BASELINE_FILE, BASELINE_MODEL
from icl_bench.score.bootstrap import Bootstrap, Corpus, clustered

BINS = ("Low", "Medium", "High")
BIN_METHODS = ("tertiles", "fixed")
FIELDS = ("task", "model", "regime", "split", "mode", "id", "score", "max_sim")

BinName = Literal["Low", "Medium", "High"]


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


@dataclass(frozen=True)
class Bins:
    """How a task's max_sim is binned: the method that chose the edges and the two edges."""

    method: str
    edges: tuple[float, float]
    planned: frozenset[tuple[str, str, str]] | None = None  # (split, mode, id) the contexts hold


@dataclass(frozen=True)
class TaskResults:
    """Everything the evaluate stage left for one task; `metric` names the primary metric, `corpus` is
    its corpus score when the records carry statistics (None: cells are means of `score`)."""

    task: str
    metric: str
    bins: Bins
    records: tuple[Record, ...]
    corpus: Corpus | None = None


@dataclass(frozen=True)
class Cell:
    """Mean (or corpus score) of n records of `examples` test examples, with its example-level
    percentile-bootstrap CI [lo, hi]."""

    mean: float
    lo: float
    hi: float
    n: int
    examples: int


@dataclass(frozen=True)
class Row:
    """One summary cell: `column` is a mode (kind "mode") or a similarity bin (kind "bin")."""

    split: str
    model: str
    regime: str
    kind: Literal["mode", "bin"]
    column: str
    cell: Cell


@dataclass(frozen=True)
class TaskSummary:
    """A task's summary rows, sorted by (split, model, regime, kind, column)."""

    task: str
    metric: str
    bins: Bins
    rows: tuple[Row, ...]


def baseline_key(name: str) -> tuple[int, str]:
    """Sort key of trivial baselines: the harness's own in their order, then a task's by name."""
    from icl_bench.score.baselines import ORDER

    return (ORDER.index(name), "") if name in ORDER else (len(ORDER), name)


def bin_edges(
    max_sims: Iterable[float | None], method: str = "tertiles", fixed: Sequence[float] | None = None
) -> tuple[float, float]:
    """The two bin edges: tertiles of the max_sims (None and NaN ignored), or the `fixed` thresholds.

    Tertiles use numpy's linear-interpolation quantiles at 1/3 and 2/3, so distinct values split into
    thirds; with many ties the edges may coincide (Medium is then empty).
    """
    if method not in BIN_METHODS:
        raise UsageError(f"unknown bin method {method!r}; use one of: {', '.join(BIN_METHODS)}")
    if method == "fixed":
        if fixed is None or len(fixed) != 2:
            raise UsageError(f"fixed bins need exactly two edges, got {fixed!r}; pass e.g. 0.3,0.6")
        lo, hi = (float(edge) for edge in fixed)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise UsageError(f"fixed bin edges {lo}, {hi} must be finite and increasing; pass e.g. 0.3,0.6")
        return lo, hi
    if fixed is not None:
        raise UsageError("fixed bin edges were given with method 'tertiles'; use method 'fixed' for them")
    values = np.array([s for s in max_sims if s is not None], dtype=float)
    values = values[~np.isnan(values)]
    if values.size == 0:
        raise UsageError("no max_sim values to take tertiles of; pass fixed edges or rebuild the contexts")
    lo, hi = np.quantile(values, [1 / 3, 2 / 3])
    return float(lo), float(hi)


def bin_of(s: float, edges: tuple[float, float]) -> BinName:
    """Low if s < e1, Medium if e1 <= s < e2, High if s >= e2."""
    if s < edges[0]:
        return "Low"
    return "Medium" if s < edges[1] else "High"


def cell(
    values: Sequence,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    corpus: Corpus | None = None,
    examples: Sequence[object] | None = None,
) -> Cell:
    """The mean (or corpus score) of records `values` with its example-level bootstrap CI; record i
    belongs to test example `examples[i]` (default: every record its own example)."""
    found = clustered(
        range(len(values)) if examples is None else examples,
        values,
        Bootstrap(resamples, level, seed),
        corpus,
    )
    return Cell(found.value, found.lo, found.hi, len(values), found.examples)


def summarise(
    records: Iterable[Record],
    edges: tuple[float, float],
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    corpus: Corpus | None = None,
) -> tuple[Row, ...]:
    """Summary rows of one task: per (split, model, regime, mode) and per (split, model, regime, bin).

    A bin pools the records of every mode whose max_sim falls in it (records without max_sim are left
    out of the bins), so one test example can have several records in a bin: intervals resample test
    examples, all of a drawn example's records together (`icl_bench.score.bootstrap`).  Records are ordered
    by (id, mode), so the result does not depend on the order of the records, and every cell uses the
    same `seed`.  Empty cells have no row.  With `corpus` a cell is the corpus score of its records'
    statistics, else the mean of their scores.
    """
    groups: dict[tuple[str, str, str, str, str], list[Record]] = defaultdict(list)
    for r in records:
        groups[(r.split, r.model, r.regime, "mode", r.mode)].append(r)
        if r.max_sim is not None and not math.isnan(r.max_sim):
            groups[(r.split, r.model, r.regime, "bin", bin_of(r.max_sim, edges))].append(r)
    rows = []
    for key in sorted(groups):
        ordered = sorted(groups[key], key=lambda r: (r.id, r.mode))
        values = [r.score for r in ordered] if corpus is None else [r.stats for r in ordered]
        split, model, regime, kind, column = key
        found = cell(values, resamples, level, seed, corpus, [r.id for r in ordered])
        rows.append(Row(split, model, regime, kind, column, found))  # type: ignore[arg-type]
    return tuple(rows)


def score_task(task: TaskResults, resamples: int = 1000, level: float = 0.95, seed: int = 0) -> TaskSummary:
    rows = summarise(task.records, task.bins.edges, resamples, level, seed, task.corpus)
    return TaskSummary(task.task, task.metric, task.bins, rows)


def score_results(
    results: Path, resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> list[TaskSummary]:
    """Every task under the results folder, summarised, in task-name order."""
    return [score_task(task, resamples, level, seed) for task in load_results(results)]


# --- reading the evaluate stage's results -------------------------------------------------------------


def load_results(results: Path) -> list[TaskResults]:
    """Every task folder under `results` (sorted; hidden folders skipped), validated."""
    results = Path(results)
    if results.exists() and not results.is_dir():
        raise UsageError(f"results folder {results} is not a folder; pass a suite's results/ folder")
    if not results.is_dir():
        raise UsageError(f"results folder {results} does not exist; run `icl-bench run` or fix the path")
    folders = sorted(
        p
        for p in results.iterdir()
        if p.is_dir() and not p.name.startswith(".") and ((p / "bins.json").is_file() or _jsonl_files(p))
    )
    if not folders:
        raise UsageError(f"no task folders with results under {results}; run `icl-bench run` first")
    return [load_task(folder) for folder in folders]


def load_task(folder: Path) -> TaskResults:
    """One task folder, validated against the results schema (SPEC 3; `check_records`): its records,
    its bins (tertiles of the records' max_sim if bins.json is absent)."""
    records: list[Record] = []
    where: list[str] = []
    scored: list[dict[str, float]] = []  # each record's `metrics`
    seen: dict[tuple[str, str, str, str, str], str] = {}
    metric_names: set[str] | None = None
    declared: set[str] = set()
    for path in _jsonl_files(folder):
        count = 0
        for number, line in enumerate(_lines(path), 1):
            if not line.strip():
                continue
            count += 1
            here = f"{path}:{number}"
            raw = _parse_line(line, here)
            record = _record(raw, here)
            if record.task != folder.name:
                raise UsageError(
                    f"{here}: record is for task {record.task!r} but lies in folder {folder.name!r}; "
                    "move the file to its task's folder"
                )
            key = (record.split, record.model, record.regime, record.mode, record.id)
            if key in seen:
                raise UsageError(
                    f"{here}: duplicate record for id {record.id!r} in mode {record.mode!r} "
                    f"(first at {seen[key]}); delete one of them"
                )
            seen[key] = here
            records.append(record)
            where.append(here)
            scored.append(
                {k: v for k, v in (raw.get("metrics") or {}).items() if isinstance(v, (int, float))}
            )
            if isinstance(raw.get("metric"), str):
                declared.add(raw["metric"])
            matching = {
                name
                for name, value in (raw.get("metrics") or {}).items()
                if isinstance(value, (int, float)) and value == record.score
            }
            metric_names = matching if metric_names is None else metric_names & matching
        if count == 0:
            raise UsageError(f"{path} holds no records; rerun `icl-bench run` for it or delete the file")
    if not records:
        raise UsageError(f"no records in {folder}; run `icl-bench run` for task {folder.name!r}")
    bins_path = folder / "bins.json"
    if bins_path.is_file():
        bins, named = _read_bins(bins_path)
        declared |= {named} if named else set()
    elif any(r.max_sim is not None for r in records):
        bins = _tertiles(records)
    else:
        raise UsageError(f"{folder} has no bins.json and no max_sim values; rerun `icl-bench run`")
    metric = _metric_name(declared, metric_names or set())
    check_records(records, where, metric, scored)
    if bins.planned is not None:
        check_planned(records, where, bins.planned, bins_path)
    tertiles = _tertiles(records).edges
    close = all(
        math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) for a, b in zip(bins.edges, tertiles, strict=True)
    )
    if bins.method == "tertiles" and not close:
        raise UsageError(
            f"{bins_path}: edges {list(bins.edges)} are not the tertiles of the records' max_sim; "
            "rerun `icl-bench run`, or delete bins.json to take the tertiles"
        )
    return TaskResults(folder.name, metric, bins, tuple(records), _corpus(folder, metric, records))


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


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise UsageError(
            f"{path}: not UTF-8 text (byte {error.start}); the file is damaged: rerun `icl-bench run`"
        ) from None


def _corpus(folder: Path, metric: str, records: Sequence[Record]) -> Corpus | None:
    """The corpus score of `metric` when the records carry its statistics (all of them, one length)."""
    from icl_bench.core import plugins
    from icl_bench.core.types import CorpusMetric

    lengths = {len(r.stats) if r.stats is not None else None for r in records}
    if lengths == {None}:
        return None
    if None in lengths or len(lengths) > 1:
        raise UsageError(
            f"{folder}: some records carry {metric} statistics and some do not (or of other lengths); "
            "rerun `icl-bench run` into a fresh --out for this task"
        )
    found = plugins.metrics.get(metric)
    if not isinstance(found, CorpusMetric):
        raise UsageError(
            f"{folder}: records carry statistics of {metric!r}, which is not an installed corpus metric; "
            "install the plugin that provides it"
        )
    return found.corpus


def _jsonl_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*.jsonl")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _parse_line(line: str, where: str) -> dict[str, Any]:
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as error:
        raise UsageError(
            f"{where}: not valid JSON ({error.msg}); fix or delete the line, or rerun `icl-bench run`"
        ) from None
    if not isinstance(raw, dict):
        raise UsageError(f"{where}: a record must be a JSON object; fix the line or rerun evaluate")
    return raw


def _record(raw: dict[str, Any], where: str) -> Record:
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
    score = _number(raw["score"])
    if score is None or not math.isfinite(score):
        raise UsageError(f"{where}: field 'score' must be a finite number, got {raw['score']!r}")
    max_sim = _number(raw["max_sim"])
    if raw["max_sim"] is not None and (max_sim is None or math.isnan(max_sim)):
        raise UsageError(f"{where}: field 'max_sim' must be a number or null, got {raw['max_sim']!r}")
    stats = raw.get("stats")
    if stats is not None and (not isinstance(stats, list) or not stats or not all(_finite(x) for x in stats)):
        raise UsageError(f"{where}: field 'stats' must be a list of numbers, got {stats!r}; rerun evaluate")
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
    )


def _finite(value: Any) -> bool:
    number = _number(value)
    return number is not None and math.isfinite(number)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _read_bins(path: Path) -> tuple[Bins, str | None]:
    """The bins in bins.json, and the metric name it states (optional key "metric")."""
    fix = 'rerun `icl-bench run` or write {"method": "tertiles", "edges": [e1, e2]}'
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise UsageError(f"{path}: not valid JSON ({error.msg}); {fix}") from None
    edges = raw.get("edges") if isinstance(raw, dict) else None
    values = [_number(e) for e in edges] if isinstance(edges, list) else []
    if len(values) != 2 or None in values or not all(math.isfinite(v) for v in values):  # type: ignore[arg-type]
        raise UsageError(f"{path}: 'edges' must be two finite numbers; {fix}")
    lo, hi = values
    if lo > hi:  # type: ignore[operator]
        raise UsageError(f"{path}: edges {lo}, {hi} are not in increasing order; {fix}")
    method = raw.get("method")
    if not isinstance(method, str):
        raise UsageError(f"{path}: 'method' must be a string such as \"tertiles\"; {fix}")
    metric = raw.get("metric")
    records = raw.get("records")
    planned = None
    if records is not None:
        try:
            planned = frozenset(
                (split, mode, str(rid))
                for split, modes in records.items()
                for mode, ids in modes.items()
                for rid in ids
            )
        except (AttributeError, TypeError):
            raise UsageError(f"{path}: 'records' must map split -> mode -> ids; {fix}") from None
    bins = Bins(method, (lo, hi), planned)  # type: ignore[arg-type]
    return bins, metric if isinstance(metric, str) else None


def _tertiles(records: Sequence[Record]) -> Bins:
    """Tertiles over the distinct (split, mode, id) pairs: contexts, hence max_sim, are shared by models."""
    sims: dict[tuple[str, str, str], float | None] = {}
    for r in records:
        sims.setdefault((r.split, r.mode, r.id), r.max_sim)
    return Bins("tertiles", bin_edges(sims[key] for key in sorted(sims)))


def _metric_name(declared: set[str], matching: set[str]) -> str:
    """The metric a record's "metric" or bins.json's "metric" names, else the unique `metrics` entry
    equal to `score` in every record, else "score"."""
    if len(declared) == 1:
        return next(iter(declared))
    if len(matching) == 1:
        return next(iter(matching))
    return "score"
