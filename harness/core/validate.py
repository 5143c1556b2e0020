"""Checks of what a user gives, each failing with one line that says what is wrong and what to do: the
fields of config dataclasses, list options, output folders and the rows of local data files."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icl_bench.core.errors import UsageError


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool, NaN or infinity)."""
    return is_int(value) or (isinstance(value, float) and math.isfinite(value))


def check_fields(
    label: str,
    config: Any,
    checks: Mapping[str, bool],
    wanted: Mapping[str, str],
    default: Callable[[str], str],
) -> None:
    """UsageError naming the first field of `config` whose check failed and what it must be (`wanted`,
    else `default(name)`)."""
    for name, ok in checks.items():
        if not ok:
            hint = wanted.get(name) or default(name)
            raise UsageError(f"{label}: {name} must be {hint}, got {getattr(config, name)!r}")


def names_in(option: str, text: str, kind: str) -> list[str]:
    """The names a comma-separated list option gives (`kind`: what `icl-bench list` calls them), each
    once; UsageError naming `option` when it gives none (empty, only commas) or one twice."""
    found = [name.strip() for name in text.split(",") if name.strip()]
    if not found:
        raise UsageError(
            f"{option} {text!r} names no {kind}; pass one or more names, comma-separated "
            f"(`icl-bench list {kind}` lists them)"
        )
    twice = next((name for i, name in enumerate(found) if name in found[:i]), None)
    if twice is not None:
        raise UsageError(f"{option} {text!r} names {twice!r} twice; name each of the {kind} once")
    return found


def check_writable(folder: Path, flag: str) -> Path:
    """Prove `folder` can be written without creating it: a file can be made in it, or (when it does
    not exist yet) in its nearest existing parent, so a command that fails later leaves no empty folder.
    Else one line naming `flag`.  The writers create the folder when they have something to write."""
    folder = Path(folder)
    nearest = folder
    while not os.path.lexists(nearest) and nearest != nearest.parent:
        nearest = nearest.parent
    try:
        if not nearest.is_dir():
            raise NotADirectoryError(20, "Not a directory")
        with tempfile.NamedTemporaryFile(dir=nearest, prefix=".icl-bench-write-check-"):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UsageError(f"{folder} is not writable ({reason}); pass a writable folder with {flag}") from None
    return folder


@dataclass(frozen=True)
class Rows:
    """The layout of a local JSON data file, a list of objects, checked row by row: a missing or
    mistyped field fails with one line naming the file, the row and the field, what a row must look like
    (`expected`) and what to do (`fix`)."""

    path: Path
    layout: str  # its name, e.g. "BIRD's layout"
    expected: str
    fix: str = ""

    def fail(self, problem: str) -> UsageError:
        fix = f"; {self.fix}" if self.fix else ""
        return UsageError(f"{self.path} is not in {self.layout} ({problem}); expected {self.expected}{fix}")

    def of(self, data: Any) -> list[dict[str, Any]]:
        """`data` read from the file, checked to be a list of objects."""
        if not isinstance(data, list):
            raise self.fail(f"holds {json_kind(data)}, not a list of rows")
        for i, row in enumerate(data):
            if not isinstance(row, dict):
                raise self.fail(f"row {i} is {json_kind(row)}, not an object")
        return data

    def field(
        self, i: int, row: Mapping[str, Any], name: str, kind: type = str, required: bool = True
    ) -> Any:
        """Row `i`'s value of `name` (dotted: nested objects; "A|B": A, else B), of type `kind`; None
        when it is absent (or null) and not `required`."""
        for option in name.split("|"):
            value: Any = row
            for part in option.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if value is not None:
                break
        if value is None:
            if not required:
                return None
            raise self.fail(f"row {i} has no field {' or '.join(map(repr, name.split('|')))}")
        if not isinstance(value, kind) or isinstance(value, bool) is not (kind is bool):
            raise self.fail(f"row {i}'s {option!r} is {json_kind(value)}, not {json_kind(kind())}")
        return value


def json_kind(value: Any) -> str:
    """What a JSON value is, in words: "an object", "a list", "a string", ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    kinds = {dict: "an object", list: "a list", str: "a string"}
    return kinds.get(type(value), type(value).__name__)
