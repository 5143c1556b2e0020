"""The example-level (cluster) percentile bootstrap every interval of the harness uses (SPEC 3 and 7).

A resample draws test EXAMPLES with replacement; all of a drawn example's records move with it.  An
interval is asked for as a linear contrast of cell means, sum_t coef_t * (sum of term t's scores /
number of its records), so one cell's mean (one term, coefficient 1) and a paired difference of
regimes across bins (C2: four terms) share one implementation:

    sums[t, e]    the summed scores (or a corpus metric's summed statistics) of example e in term t
    counts[t, e]  how many records example e has in term t

Each resample weights example e by how often it was drawn; term t's value is then
(weights @ sums[t]) / (weights @ counts[t]), the mean of the drawn examples' records, so an example
with four identical records gives exactly the interval of one record per example.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from icl_bench.core.errors import UsageError

RESAMPLES, LEVEL, SEED = 1000, 0.95, 0
_CHUNK = 4_000_000  # resample weights held at once (bounds memory at ~32 MB)

Corpus = Callable[[Sequence[float]], float]  # summed statistics -> corpus score (`CorpusMetric.corpus`)


@dataclass(frozen=True)
class Bootstrap:
    """How intervals are drawn: `resamples` example resamples, a central `level` CI, numpy seed; the one
    config every score, claim and leaderboard function takes (`DEFAULT_BOOTSTRAP` unless asked)."""

    resamples: int = RESAMPLES
    level: float = LEVEL
    seed: int = SEED

    def __post_init__(self) -> None:
        if self.resamples < 1 or not 0 < self.level < 1:
            raise UsageError(
                f"bootstrap needs resamples >= 1 and 0 < level < 1, got {self.resamples} and {self.level}"
            )


DEFAULT_BOOTSTRAP = Bootstrap()  # every score, claim and table unless a caller asks for another


@dataclass(frozen=True)
class Estimate:
    """The contrast on the data, its percentile-bootstrap CI, and how many examples were resampled."""

    value: float
    lo: float
    hi: float
    examples: int


def weights(n: int, config: Bootstrap) -> Iterator[np.ndarray]:
    """Blocks of resample weights, shape (draws, n): how often each of n examples was drawn."""
    rng = np.random.default_rng(config.seed)
    block = max(1, _CHUNK // n)
    for start in range(0, config.resamples, block):
        size = min(block, config.resamples - start)
        draws = rng.integers(0, n, size=(size, n)) + (np.arange(size) * n)[:, None]
        yield np.bincount(draws.ravel(), minlength=size * n).reshape(size, n).astype(float)


def contrast(
    sums: np.ndarray,
    counts: np.ndarray,
    coefs: Sequence[float],
    config: Bootstrap = DEFAULT_BOOTSTRAP,
    corpus: Corpus | None = None,
) -> Estimate:
    """sum_t coefs[t] * value of term t, with its example-level percentile-bootstrap CI.

    `sums` has shape (terms, examples) for mean scores, or (terms, examples, statistics) with
    `corpus`, whose value of a term is `corpus` of its summed statistics.  A resample in which a term
    has no records says nothing and is dropped.  No examples: all NaN.
    """
    counts = np.asarray(counts, dtype=float)
    terms, n = counts.shape
    sums = np.asarray(sums, dtype=float).reshape(terms, n, -1)
    coef = np.asarray(coefs, dtype=float)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)

    def values(w: np.ndarray) -> np.ndarray:  # (draws, n) -> (draws, terms)
        with np.errstate(invalid="ignore", divide="ignore"):
            if corpus is None:
                return (w @ sums[:, :, 0].T) / (w @ counts.T)
            found = np.array([[corpus(totals) for totals in w @ term] for term in sums]).T
            return np.where(w @ counts.T > 0, found, np.nan)

    value = float(values(np.ones((1, n)))[0] @ coef)
    drawn = np.concatenate([values(w) @ coef for w in weights(n, config)])
    drawn = drawn[~np.isnan(drawn)]
    if drawn.size == 0:
        return Estimate(value, math.nan, math.nan, n)
    lo, hi = np.quantile(drawn, [(1 - config.level) / 2, (1 + config.level) / 2])
    return Estimate(value, float(lo), float(hi), n)


def clustered(
    examples: Sequence[object],
    values: Sequence,
    config: Bootstrap = DEFAULT_BOOTSTRAP,
    corpus: Corpus | None = None,
) -> Estimate:
    """The mean (or corpus score) of records `values`, record i belonging to example `examples[i]`,
    with the example-level CI.  Examples are ordered by first appearance, so sort the records first."""
    if len(examples) == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    row: dict[object, int] = {}
    for example in examples:
        row.setdefault(example, len(row))
    data = np.asarray(values, dtype=float).reshape(len(examples), -1)
    sums = np.zeros((1, len(row), data.shape[1]))
    counts = np.zeros((1, len(row)))
    index = np.array([row[e] for e in examples], dtype=int)
    np.add.at(sums[0], index, data)
    np.add.at(counts[0], index, 1.0)
    return contrast(sums, counts, (1.0,), config, corpus)
