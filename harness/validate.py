"""Checks for the fields of config dataclasses, failing with one line that says what a field must be."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from icl_bench.errors import UsageError


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
