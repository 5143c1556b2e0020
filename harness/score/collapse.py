"""Collapsed models: a (model, split, regime) that gives one output for every test example while not
every answer is right, so the references differ.  Its cells measure that constant output, not what the
regime learned, and a claim resting on it says nothing about the regime; the leaderboard names it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from icl_bench.core.types import BASELINE_MODEL
from icl_bench.score.schema import Record


@dataclass(frozen=True)
class Collapse:
    """One collapsed (model, split, regime): its single output (stripped) over `records` records."""

    model: str
    split: str
    regime: str
    output: str
    records: int


def collapses(records: Iterable[Record], top: float | None) -> tuple[Collapse, ...]:
    """Every model's (split, regime) whose records all carry one stripped prediction, over more than
    one test example, with some score below `top` (the metric's best; None: unknown, then the scores
    must differ).  Trivial baselines (constant by design) and groups with a record that kept no
    prediction are left out."""
    groups: dict[tuple[str, str, str], list[tuple[str | None, str, float]]] = defaultdict(list)
    for r in records:
        if r.model != BASELINE_MODEL:
            output = None if r.prediction is None else r.prediction.strip()
            groups[(r.model, r.split, r.regime)].append((output, r.id, r.score))
    found = []
    for (model, split, regime), group in sorted(groups.items()):
        outputs = {output for output, _, _ in group}
        scores = {score for _, _, score in group}
        wrong = len(scores) > 1 if top is None else min(scores) < top
        if len(outputs) == 1 and None not in outputs and len({i for _, i, _ in group}) > 1 and wrong:
            found.append(Collapse(model, split, regime, outputs.pop(), len(group)))  # type: ignore[arg-type]
    return tuple(found)
