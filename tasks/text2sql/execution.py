"""The `execution-match` metric: predicted and gold SQL run in the sandbox (`sandbox.py`) on the example's
SQLite database; their rows compared as multisets, or as lists where the gold orders at top level.
Every failure is a `Verdict` with score 0 and a one-line reason.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from icl_bench import Example, Metric
from icl_bench.tasks.text2sql.sandbox import Limits, Result, run

__all__ = ["DB_KEY", "ExecutionMatch", "Limits", "Result", "Verdict", "orders_at_top_level", "run"]

DB_KEY = "db_path"  # Example.meta key: the SQLite file a text-to-SQL example runs on


@dataclass(frozen=True)
class Verdict:
    score: float
    reason: str  # "match", "mismatch: ..." or why the prediction (or gold) could not be run


def _mask(sql: str) -> str:
    """`sql` with string literals, quoted identifiers and comments blanked (same length)."""
    pattern = r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|`[^`]*`|\[[^\]]*\]|--[^\n]*|/\*.*?\*/"
    return re.sub(pattern, lambda m: " " * len(m.group()), sql, flags=re.S)


def orders_at_top_level(sql: str) -> bool:
    """True when the statement's outermost SELECT has an ORDER BY (not one inside a subquery)."""
    masked = _mask(sql)
    depth = 0
    for match in re.finditer(r"\(|\)|\border\s+by\b", masked, flags=re.I):
        token = match.group()
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
        elif depth == 0:
            return True
    return False


def _normal(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, float):
        return round(value, 9)
    return value


def same_results(predicted: list[tuple], gold: list[tuple], ordered: bool) -> bool:
    """Equal as multisets of rows (columns in the given order); as lists when `ordered`."""
    pred = [tuple(_normal(v) for v in row) for row in predicted]
    ref = [tuple(_normal(v) for v in row) for row in gold]
    if ordered:
        return pred == ref
    return Counter(pred) == Counter(ref)


class ExecutionMatch(Metric):
    name = "execution-match"
    description = (
        "1 if the predicted SQL returns the gold SQL's rows on the example's SQLite database (multisets; "
        "ordered when the gold orders), run sandboxed: read-only, time/row/memory limits; else 0"
    )

    def __init__(self, limits: Limits | None = None):
        self.limits = limits or Limits()
        self._gold: dict[tuple[str, str], Result] = {}

    def gold(self, example: Example) -> Result:
        key = (str(example.meta.get(DB_KEY, "")), example.output)
        if key not in self._gold:
            self._gold[key] = run(key[0], key[1], self.limits)
        return self._gold[key]

    def judge(self, prediction: str, example: Example) -> Verdict:
        """The score of one prediction and why."""
        path = example.meta.get(DB_KEY)
        if not path:
            return Verdict(0.0, f"example {example.id} has no meta[{DB_KEY!r}]")
        gold = self.gold(example)
        if not gold.ok:
            return Verdict(0.0, f"gold query failed: {gold.reason}")
        predicted = run(path, prediction.strip(), self.limits)
        if not predicted.ok:
            return Verdict(0.0, predicted.reason or "error")
        assert predicted.rows is not None and gold.rows is not None
        ordered = orders_at_top_level(example.output)
        if same_results(predicted.rows, gold.rows, ordered):
            return Verdict(1.0, "match")
        how = "ordered rows" if ordered else "rows (as multisets)"
        return Verdict(0.0, f"mismatch: {how} differ ({len(predicted.rows)} vs {len(gold.rows)} rows)")

    def explained(
        self, predictions: Sequence[str], examples: Sequence[Example]
    ) -> tuple[list[float], list[str]]:
        verdicts = [self.judge(p, ex) for p, ex in zip(predictions, examples, strict=True)]
        return [v.score for v in verdicts], [v.reason for v in verdicts]

    def __call__(self, predictions: Sequence[str], examples: Sequence[Example]) -> list[float]:
        return self.explained(predictions, examples)[0]
