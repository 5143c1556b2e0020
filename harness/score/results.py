"""Stage: score.  Reads the evaluate stage's results folder (SPEC section 3):

    <results>/<task>/bins.json                {"task", "method": "tertiles"|"fixed", "edges": [e1, e2]}
    <results>/<task>/**/<regime>.jsonl        one record per (test example, mode)

into one validated `TaskResults` per task (`icl_bench.score.schema` checks the records,
`icl_bench.score.bins` the bins); `icl_bench.score.summary` summarises them with bootstrap CIs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from icl_bench.core.errors import UsageError
from icl_bench.score.bins import Bins, read_bins, tertiles
from icl_bench.score.bootstrap import Corpus
from icl_bench.score.schema import Record, check_planned, check_records, metric_name, parse_line, parse_record


@dataclass(frozen=True)
class TaskResults:
    """Everything the evaluate stage left for one task; `metric` names the primary metric, `corpus` is
    its corpus score when the records carry statistics (None: cells are means of `score`)."""

    task: str
    metric: str
    bins: Bins
    records: tuple[Record, ...]
    corpus: Corpus | None = None


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
            raw = parse_line(line, here)
            record = parse_record(raw, here)
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
        bins, named = read_bins(bins_path)
        declared |= {named} if named else set()
    elif any(r.max_sim is not None for r in records):
        bins = tertiles(records)
    else:
        raise UsageError(f"{folder} has no bins.json and no max_sim values; rerun `icl-bench run`")
    metric = metric_name(declared, metric_names or set())
    check_records(records, where, metric, scored)
    if bins.planned is not None:
        check_planned(records, where, bins.planned, bins_path)
    expected = tertiles(records).edges
    close = all(
        math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) for a, b in zip(bins.edges, expected, strict=True)
    )
    if bins.method == "tertiles" and not close:
        raise UsageError(
            f"{bins_path}: edges {list(bins.edges)} are not the tertiles of the records' max_sim; "
            "rerun `icl-bench run`, or delete bins.json to take the tertiles"
        )
    return TaskResults(folder.name, metric, bins, tuple(records), _corpus(folder, metric, records))


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
