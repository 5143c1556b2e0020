"""`icl-bench reproduce`: a suite remade from its plan, compared with the committed one.

Three levels, strictest first: per file, byte-identical or not (results lines counted); per cell, whether
the remade mean lies inside the committed interval; per claim, the same verdict or not.  Verdicts are
promised anywhere; bytes only on the same lock and numerics profile (`icl_bench.core.numerics`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icl_bench.sweep.record import FILE as PLAN_FILE
from icl_bench.sweep.record import resolved

Key = tuple[str, ...]


@dataclass(frozen=True)
class FileCheck:
    name: str  # relative to the suite
    same: bool
    lines: tuple[int, int] | None = None  # (differing, committed) lines of a results file


@dataclass(frozen=True)
class CellCheck:
    key: Key  # (task, split, model, regime, column)
    committed: tuple[float, float, float]  # mean, lo, hi
    remade: float | None  # the remade mean; None: the cell is missing

    @property
    def inside(self) -> bool:
        return self.remade is not None and self.committed[1] <= self.remade <= self.committed[2]


@dataclass(frozen=True)
class ClaimCheck:
    key: Key  # (task, model, split, claim)
    committed: str
    remade: str | None

    @property
    def same(self) -> bool:
        return self.committed == self.remade


@dataclass(frozen=True)
class Comparison:
    plan: tuple[str, ...]  # plan fields the rerun resolved differently
    files: tuple[FileCheck, ...]
    cells: tuple[CellCheck, ...]
    claims: tuple[ClaimCheck, ...]

    @property
    def verdicts_same(self) -> bool:
        return all(claim.same for claim in self.claims)

    @property
    def bytes_same(self) -> bool:
        return all(check.same for check in self.files)

    def passed(self, strict: bool) -> bool:
        return not self.plan and self.verdicts_same and (self.bytes_same or not strict)


def compare(committed: Path, remade: Path, plans: tuple[dict[str, Any], dict[str, Any]]) -> Comparison:
    """Compare the remade suite folder with the committed one (their plans given)."""
    from icl_bench.report.board import board

    before, after = resolved(plans[0]), resolved(plans[1])
    plan = tuple(field for field in before if before[field] != after[field])
    old, new = board(committed / "results"), board(remade / "results")
    return Comparison(plan, tuple(compare_files(committed, remade)), cells(old, new), claims(old, new))


def compare_files(committed: Path, remade: Path) -> list[FileCheck]:
    """Every file of either suite but the plan, by bytes; `.jsonl` files also by line."""
    names = {p.relative_to(root).as_posix() for root in (committed, remade) for p in root.rglob("*")}
    checks = []
    for name in sorted(names - {PLAN_FILE}):
        a, b = committed / name, remade / name
        if a.is_dir() or b.is_dir():
            continue
        same = a.is_file() and b.is_file() and a.read_bytes() == b.read_bytes()
        lines = None
        if name.endswith(".jsonl") and a.is_file():
            old = a.read_bytes().splitlines()
            new = b.read_bytes().splitlines() if b.is_file() else []
            differing = sum(x != y for x, y in zip(old, new, strict=False)) + abs(len(old) - len(new))
            lines = (differing, len(old))
        checks.append(FileCheck(name, same, lines))
    return checks


def cells(old: Any, new: Any) -> tuple[CellCheck, ...]:
    """Each committed summary cell against the remade one of the same key."""

    def rows(data: Any) -> dict[Key, Any]:
        return {
            (s.task, r.split, r.model, r.regime, r.column): r.cell for s in data.summaries for r in s.rows
        }

    remade = rows(new)
    return tuple(
        CellCheck(key, (c.mean, c.lo, c.hi), remade[key].mean if key in remade else None)
        for key, c in sorted(rows(old).items())
    )


def claims(old: Any, new: Any) -> tuple[ClaimCheck, ...]:
    """Each committed claim verdict against the remade one."""

    def verdicts(data: Any) -> dict[Key, str]:
        return {
            (task, v.model, v.split, judged.claim.id): judged.verdict
            for task, found in data.verdicts.items()
            for v in found
            for judged in v.claims
        }

    remade = verdicts(new)
    return tuple(ClaimCheck(key, verdict, remade.get(key)) for key, verdict in sorted(verdicts(old).items()))


def summary_rows(result: Comparison) -> list[tuple[str, str, str]]:
    """(check, count, what differs) rows for the stdout table."""
    files = list(result.files)
    lines = [f.lines for f in files if f.lines is not None]
    same_lines, all_lines = sum(n - d for d, n in lines), sum(n for _, n in lines)
    cells_in = sum(c.inside for c in result.cells)
    claims_same = sum(c.same for c in result.claims)
    return [
        ("plan", "same" if not result.plan else "differs", ", ".join(result.plan)),
        (
            "files byte-identical",
            f"{sum(f.same for f in files)}/{len(files)}",
            _names([f for f in files if not f.same]),
        ),
        (
            "results lines identical",
            f"{same_lines}/{all_lines}",
            "",
        ),
        (
            "cells inside committed CI",
            f"{cells_in}/{len(result.cells)}",
            _names([c for c in result.cells if not c.inside]),
        ),
        (
            "claim verdicts the same",
            f"{claims_same}/{len(result.claims)}",
            "; ".join(
                f"{'/'.join(c.key)}: {c.committed} -> {c.remade or 'missing'}"
                for c in result.claims
                if not c.same
            ),
        ),
    ]


def _names(items: Sequence[FileCheck | CellCheck], shown: int = 3) -> str:
    labels = [item.name if isinstance(item, FileCheck) else "/".join(item.key) for item in items]
    more = f" (+{len(labels) - shown} more)" if len(labels) > shown else ""
    return ", ".join(labels[:shown]) + more
