"""`icl-bench reproduce`: a suite remade from its plan, compared with the committed one.

Three levels, strictest first: per file, byte-identical or not (results files also by line; the recorded
environment, i.e. versions and device, is reported apart and never decides); per cell, whether the remade
mean lies inside the committed interval; per claim, the same verdict or not.  A remake passes when its
plan resolves the same, nothing is missing on either side (results files, cells, claims) and every
verdict is the same; `strict` also needs every file byte-identical.  Verdicts are promised anywhere;
bytes on the same lock and numerics profile (`icl_bench.core.numerics`).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icl_bench.core.errors import UsageError
from icl_bench.core.progress import console
from icl_bench.core.validate import check_writable
from icl_bench.report.board import PLAN_FILE, board
from icl_bench.sweep.record import command_line, resolved

Key = tuple[str, ...]
ENVIRONMENT = "environment.json"  # recorded beside results: versions and device, not results
RESULTS = "results/"
STORE = "store"  # the fresh store of a remake, beside the remade suite in the scratch folder


@dataclass(frozen=True)
class FileCheck:
    name: str  # relative to the suite
    same: bool  # byte-identical (environment sections aside)
    lines: tuple[int, int] | None = None  # (identical, total) lines of a `.jsonl` file
    side: str | None = None  # "committed" or "remade": the only suite that has the file


@dataclass(frozen=True)
class CellCheck:
    key: Key  # (task, split, model, regime, kind, column)
    committed: tuple[float, float, float] | None  # mean, lo, hi; None: not in the committed suite
    remade: float | None  # the remade mean; None: not in the remade suite

    @property
    def inside(self) -> bool:
        c = self.committed
        return c is not None and self.remade is not None and c[1] <= self.remade <= c[2]


@dataclass(frozen=True)
class ClaimCheck:
    key: Key  # (task, model, split, claim)
    committed: str | None
    remade: str | None

    @property
    def same(self) -> bool:
        return self.committed is not None and self.committed == self.remade


@dataclass(frozen=True)
class Comparison:
    plan: tuple[str, ...]  # plan fields the rerun resolved differently, e.g. `options.k`
    files: tuple[FileCheck, ...]
    environment_same: bool
    cells: tuple[CellCheck, ...]
    claims: tuple[ClaimCheck, ...]

    def failures(self, strict: bool) -> list[str]:
        """Why the remake does not reproduce the suite (empty: it does)."""
        why = []
        if self.plan:
            why.append(f"the plan resolved differently ({', '.join(self.plan)})")
        lost = [f.name for f in self.files if f.side and f.name.startswith(RESULTS)]
        if lost:
            why.append(f"results files on one side only: {_shown(lost)}")
        lopsided = ["/".join(c.key) for c in self.cells if c.committed is None or c.remade is None]
        if lopsided:
            why.append(f"cells on one side only: {_shown(lopsided)}")
        if not self.claims:
            why.append("no claim verdicts to compare")
        changed = [f"{'/'.join(c.key)}: {c.committed} -> {c.remade}" for c in self.claims if not c.same]
        if changed:
            why.append(f"claim verdicts differ: {_shown(changed)}")
        differing = [f.name for f in self.files if not f.same]
        if strict and differing:
            why.append(f"files differ in bytes: {_shown(differing)}")
        return why


def scratch_folders(suite: Path, out: Path, store: str | None) -> tuple[Path, Path]:
    """(the remade suite's folder, the store of the remake) under the scratch folder `out`, checked:
    neither may overlap the committed suite, and a remake starts empty (a store only with `store`)."""
    suite = suite.resolve()
    remade = check_writable(out, "--out").resolve() / suite.name
    fresh = remade.parent / STORE
    for folder in {remade, Path(store).resolve() if store else fresh}:
        if folder == suite or suite in folder.parents or folder in suite.parents:
            raise UsageError(
                f"--out {out} would remake into the committed suite {suite}; pass another folder"
            )
    taken = [p for p in (remade, None if store else fresh) if p is not None and p.exists()]
    if taken:
        raise UsageError(f"{taken[0]} exists: a remake starts empty; pass an empty --out")
    return remade, Path(store) if store else fresh


def remake(suite: Path, recorded: dict[str, Any], remade: Path, execute: Callable[[list[str]], None]) -> None:
    """Rerun the plan's `run`, then each later stage in order, into `remade` through `execute` (the
    CLI parses a command and runs it); their own output goes to stderr, and a rerun that fails (a
    training that diverged) is reported and compared like the rest, its files missing."""
    for argv in (recorded["argv"], *recorded["stages"]):
        console.print(f"reproduce {suite}: `{command_line(argv)}` into {remade}")
        with contextlib.redirect_stdout(sys.stderr):
            try:
                execute(argv)
            except SystemExit as stop:
                console.print(f"[yellow]the rerun exited with {stop.code}[/]")


def compare(committed: Path, remade: Path) -> Comparison:
    """Compare the remade suite folder with the committed one."""
    plans = [json.loads((folder / PLAN_FILE).read_text(encoding="utf-8")) for folder in (committed, remade)]
    before, after = resolved(plans[0]), resolved(plans[1])
    old, new = board(committed / "results"), board(remade / "results")
    files = compare_files(committed, remade)
    return Comparison(
        tuple(_differences(before, after)),
        tuple(f for f in files if not f.name.endswith(ENVIRONMENT)),
        all(f.same for f in files if f.name.endswith(ENVIRONMENT)),
        cells(old, new),
        claims(old, new),
    )


def compare_files(committed: Path, remade: Path) -> list[FileCheck]:
    """Every file of either suite but the plan, by bytes apart from the environment it records;
    `.jsonl` files also by line."""
    names = {p.relative_to(root).as_posix() for root in (committed, remade) for p in root.rglob("*")}
    checks = []
    for name in sorted(names - {PLAN_FILE}):
        a, b = committed / name, remade / name
        if a.is_dir() or b.is_dir():
            continue
        side = None if a.is_file() and b.is_file() else "committed" if a.is_file() else "remade"
        old, new = (_content(name, p.read_bytes()) if p.is_file() else None for p in (a, b))
        lines = None
        if name.endswith(".jsonl"):
            x, y = (data.splitlines() if data is not None else [] for data in (old, new))
            lines = (sum(p == q for p, q in zip(x, y, strict=False)), max(len(x), len(y)))
        checks.append(FileCheck(name, side is None and old == new, lines, side))
    return checks


def cells(old: Any, new: Any) -> tuple[CellCheck, ...]:
    """Every summary cell of either suite, the committed interval against the remade mean."""

    def rows(data: Any) -> dict[Key, Any]:
        return {
            (s.task, r.split, r.model, r.regime, r.kind, r.column): r.cell
            for s in data.summaries
            for r in s.rows
        }

    committed, remade = rows(old), rows(new)
    return tuple(
        CellCheck(
            key,
            (committed[key].mean, committed[key].lo, committed[key].hi) if key in committed else None,
            remade[key].mean if key in remade else None,
        )
        for key in sorted(committed.keys() | remade.keys())
    )


def claims(old: Any, new: Any) -> tuple[ClaimCheck, ...]:
    """Every claim verdict of either suite, committed against remade."""

    def verdicts(data: Any) -> dict[Key, str]:
        return {
            (task, v.model, v.split, judged.claim.id): judged.verdict
            for task, found in data.verdicts.items()
            for v in found
            for judged in v.claims
        }

    committed, remade = verdicts(old), verdicts(new)
    keys = sorted(committed.keys() | remade.keys())
    return tuple(ClaimCheck(key, committed.get(key), remade.get(key)) for key in keys)


def summary_rows(result: Comparison) -> list[tuple[str, str, str]]:
    """(check, count, what differs) rows for the stdout table."""
    files = result.files
    lines = [f.lines for f in files if f.lines is not None]
    return [
        ("plan", "same" if not result.plan else "differs", ", ".join(result.plan)),
        (
            "files byte-identical",
            f"{sum(f.same for f in files)}/{len(files)}",
            _shown([f.name + (f" ({f.side} only)" if f.side else "") for f in files if not f.same]),
        ),
        ("results lines identical", f"{sum(s for s, _ in lines)}/{sum(n for _, n in lines)}", ""),
        ("environment recorded", "same" if result.environment_same else "differs", "versions, device"),
        (
            "cells inside committed CI",
            f"{sum(c.inside for c in result.cells)}/{len(result.cells)}",
            _shown(["/".join(c.key) for c in result.cells if not c.inside]),
        ),
        (
            "claim verdicts the same",
            f"{sum(c.same for c in result.claims)}/{len(result.claims)}",
            _shown([f"{'/'.join(c.key)}: {c.committed} -> {c.remade}" for c in result.claims if not c.same]),
        ),
    ]


def _content(name: str, data: bytes) -> bytes:
    """A file's bytes without the environment it records (leaderboard.md's section, its json's key)."""
    if name.endswith("leaderboard.md"):
        return data.split(b"\n## Environment\n", 1)[0]
    if name.endswith("leaderboard.json"):
        try:
            parsed = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return data
        if isinstance(parsed, dict):
            parsed.pop("environments", None)
            return json.dumps(parsed, sort_keys=True).encode()
    return data


def _differences(before: Any, after: Any, where: str = "") -> list[str]:
    """Dotted paths at which two JSON values differ (`options.k`)."""
    if isinstance(before, dict) and isinstance(after, dict):
        found = []
        for key in sorted(before.keys() | after.keys()):
            found += _differences(before.get(key), after.get(key), f"{where}.{key}" if where else key)
        return found
    return [] if before == after else [where or "plan"]


def _shown(labels: Sequence[str], shown: int = 3) -> str:
    more = f" (+{len(labels) - shown} more)" if len(labels) > shown else ""
    return ", ".join(labels[:shown]) + more
