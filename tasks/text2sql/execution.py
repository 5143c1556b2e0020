"""The `execution-match` metric: predicted and gold SQL run in the sandbox (`sandbox.py`) on the example's
SQLite database; their rows compared as multisets, or as lists where the gold orders at top level.
Every failure is a `Verdict` with score 0 and a one-line reason.  What the parent holds is bounded: each
result by `Limits.result_bytes` (enforced in the worker), the cache of gold results by `cache_bytes`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from icl_bench import Example, Metric
from icl_bench.tasks.text2sql.sandbox import Limits, Result, footprint, run

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


def held(result: Result) -> int:
    """The bytes a result takes here, at most: its rows in memory and the message it came in."""
    return result.size + sum(map(footprint, result.rows or ()))


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
        "ordered when the gold orders), run sandboxed: read-only, time/row/size/memory limits; else 0"
    )

    def __init__(self, limits: Limits | None = None, cache_bytes: int = 64 << 20):
        self.limits = limits or Limits()
        self.cache_bytes = cache_bytes  # gold results kept, oldest dropped first (the latest always)
        self._gold: dict[tuple[str, str], Result] = {}
        self.cached_bytes = 0

    def gold(self, example: Example) -> Result:
        """The gold query's result, run once while it stays in the cache."""
        key = (str(example.meta.get(DB_KEY, "")), example.output)
        if key in self._gold:
            return self._gold[key]
        result = self._gold[key] = run(key[0], key[1], self.limits)
        self.cached_bytes += held(result)
        while self.cached_bytes > self.cache_bytes and len(self._gold) > 1:
            self.cached_bytes -= held(self._gold.pop(next(iter(self._gold))))
        return result

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
