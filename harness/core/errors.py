"""The one error type users see: a single line naming the problem and the fix (exit status 2)."""

from __future__ import annotations

from collections.abc import Iterable


class UsageError(Exception):
    """Bad input: the message is one line that says what is wrong and what to do."""


def unknown(kind: str, name: str, known: Iterable[str]) -> UsageError:
    names = ", ".join(sorted(known)) or "(none registered)"
    return UsageError(f"unknown {kind} {name!r}; known {kind}s: {names}")
