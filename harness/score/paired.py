"""Paired comparisons (SPEC section 7): every model of a task is scored on the same (test example, mode)
records, so regimes are compared PAIRED.  A comparison is a linear contrast of means,
sum_t coef_t * mean(series_t over group_t), tested against zero; its CI is a percentile bootstrap that
resamples test EXAMPLES, all of an example's records (every mode, group and series) moving together.
A claim combines comparisons into one verdict.  Public through `icl_bench.score.claims`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from icl_bench.core.errors import UsageError
from icl_bench.score.bootstrap import DEFAULT_BOOTSTRAP, Bootstrap, Corpus, Estimate, contrast

VERDICTS = ("holds", "contradicted", "inconclusive", "not run")

Relation = Literal[">", "<", ">="]
Verdict = Literal["holds", "contradicted", "inconclusive", "not run"]
# (series, group) -> {(example id, record key): score, or a corpus metric's statistics}
Scores = Mapping[tuple[str, str], Mapping[tuple[str, Hashable], Any]]


@dataclass(frozen=True)
class Term:
    """`coef` x the mean score of `series` over the records of `group`."""

    series: str
    group: str
    coef: float = 1.0


@dataclass(frozen=True)
class Comparison:
    """The contrast sum(coef x mean) compared with 0 by `relation`; `text` says it in words."""

    text: str
    terms: tuple[Term, ...]
    relation: Relation = ">"

    @property
    def series(self) -> frozenset[str]:
        return frozenset(t.series for t in self.terms)


def better(a: str, b: str, group: str, relation: Relation = ">") -> Comparison:
    """`a REL b in group`: the paired difference mean(a) - mean(b) over the group's records."""
    return Comparison(f"{a} {relation} {b} in {group}", (Term(a, group), Term(b, group, -1.0)), relation)


@dataclass(frozen=True)
class Outcome:
    comparison: Comparison
    estimate: Estimate | None  # None: a series did not run
    verdict: Verdict


@dataclass(frozen=True)
class Claim:
    id: str
    statement: str
    comparisons: tuple[Comparison, ...]


@dataclass(frozen=True)
class ClaimVerdict:
    claim: Claim
    outcomes: tuple[Outcome, ...]
    verdict: Verdict


def verdict(lo: float, hi: float, relation: Relation, margin: float = 0.0) -> Verdict:
    """holds / contradicted / inconclusive for a CI [lo, hi] of the contrast (SPEC 7).

    `>`: holds when lo > 0, contradicted when hi < 0.  `<`: the mirror image.  `>=` (non-inferiority):
    holds when lo > -margin, contradicted when hi < -margin (the whole CI beyond the margin).
    """
    if math.isnan(lo) or math.isnan(hi):
        return "inconclusive"
    if relation == ">":
        return "holds" if lo > 0 else "contradicted" if hi < 0 else "inconclusive"
    if relation == "<":
        return "holds" if hi < 0 else "contradicted" if lo > 0 else "inconclusive"
    if relation == ">=":
        return "holds" if lo > -margin else "contradicted" if hi < -margin else "inconclusive"
    raise UsageError(f"unknown relation {relation!r}; use >, < or >=")


def estimate(
    comparison: Comparison,
    scores: Scores,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    corpus: Corpus | None = None,
) -> Estimate | None:
    """The paired contrast and its CI, or None when a (series, group) it needs has no scores at all.

    Within a group only the records every series of that group scored are used (the pairing).  The
    examples with such records are resampled with replacement `bootstrap.resamples` times (numpy
    `default_rng(bootstrap.seed)`); a resample's group mean is the ratio of its records' score sum to their
    count, so examples with more records in a group weigh more, exactly as in the plain mean.  With
    `corpus`, the scores are statistics vectors and a group's value is `corpus` of their sum.
    """
    if any((t.series, t.group) not in scores for t in comparison.terms):
        return None
    shared = {}
    for group in sorted({t.group for t in comparison.terms}):
        keys = [set(scores[(t.series, group)]) for t in comparison.terms if t.group == group]
        shared[group] = set.intersection(*keys)
    examples = sorted({example for keys in shared.values() for example, _ in keys})
    if not examples:
        return Estimate(math.nan, math.nan, math.nan, 0)
    row = {example: i for i, example in enumerate(examples)}
    first = next(scores[(t.series, t.group)][key] for t in comparison.terms for key in shared[t.group])
    width = 1 if corpus is None else len(first)  # type: ignore[arg-type]
    sums = np.zeros((len(comparison.terms), len(examples), width))
    counts = np.zeros((len(comparison.terms), len(examples)))
    for t, term in enumerate(comparison.terms):
        for key in shared[term.group]:
            sums[t, row[key[0]]] += scores[(term.series, term.group)][key]
            counts[t, row[key[0]]] += 1
    return contrast(sums, counts, [t.coef for t in comparison.terms], bootstrap, corpus)


def outcome(
    comparison: Comparison,
    scores: Scores,
    margin: float = 0.0,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    corpus: Corpus | None = None,
) -> Outcome:
    found = estimate(comparison, scores, bootstrap, corpus)
    if found is None:
        return Outcome(comparison, None, "not run")
    return Outcome(comparison, found, verdict(found.lo, found.hi, comparison.relation, margin))


def combine(verdicts: Iterable[Verdict]) -> Verdict:
    """A claim of several comparisons (SPEC 7): not run if none ran, contradicted if any is, holds when
    all hold (a comparison that did not run is not a comparison that held), else inconclusive."""
    verdicts = list(verdicts)
    if all(v == "not run" for v in verdicts):
        return "not run"
    if "contradicted" in verdicts:
        return "contradicted"
    return "holds" if all(v == "holds" for v in verdicts) else "inconclusive"


def judge(
    claims: Sequence[Claim],
    scores: Scores,
    margin: float = 0.0,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    corpus: Corpus | None = None,
) -> list[ClaimVerdict]:
    """Every claim's comparisons on `scores`, and each claim's combined verdict."""
    judged = []
    for claim in claims:
        outcomes = tuple(outcome(c, scores, margin, bootstrap, corpus) for c in claim.comparisons)
        judged.append(ClaimVerdict(claim, outcomes, combine(o.verdict for o in outcomes)))
    return judged
