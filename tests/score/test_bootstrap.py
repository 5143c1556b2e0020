"""The example-level (cluster) bootstrap behind every interval."""

import math

import numpy as np
import pytest
from helpers import ci

from icl_bench.core.errors import UsageError
from icl_bench.score.bootstrap import Bootstrap, clustered, contrast
from icl_bench.score.schema import Record
from icl_bench.score.summary import summarise


def test_ci_contains_mean_narrows_with_n_and_is_deterministic():
    rng = np.random.default_rng(0)
    small, large = rng.normal(size=50), rng.normal(size=2000)
    mean, lo, hi = ci(small)
    assert mean == pytest.approx(small.mean())
    assert lo < mean < hi
    big_mean, big_lo, big_hi = ci(large)
    assert big_lo < big_mean < big_hi
    assert (big_hi - big_lo) < (hi - lo) / 3  # width ~ 1/sqrt(n): 50 -> 2000 is ~6x narrower
    assert ci(small) == (mean, lo, hi)
    assert ci(small, seed=1) != (mean, lo, hi)
    wide = ci(small, level=0.99)
    assert wide[1] < lo and wide[2] > hi


def test_small_and_bad_inputs():
    assert all(math.isnan(v) for v in ci([]))
    assert ci([0.25]) == (0.25, 0.25, 0.25)
    assert ci([1.0, 1.0, 1.0]) == (1.0, 1.0, 1.0)
    assert ci([0.0, 1.0], resamples=2000) == (0.5, 0.0, 1.0)
    for bad in ({"resamples": 0}, {"level": 1.0}, {"level": 0.0}):
        with pytest.raises(UsageError, match="bootstrap needs"):
            Bootstrap(**bad)


def test_four_identical_records_per_example_give_the_interval_of_one_record_per_example():
    values = np.random.default_rng(3).uniform(size=40)
    once = clustered(range(40), values)
    four = clustered([e for e in range(40) for _ in range(4)], np.repeat(values, 4))
    assert (four.value, four.lo, four.hi, four.examples) == pytest.approx(
        (once.value, once.lo, once.hi, once.examples)
    )
    records = clustered(range(160), np.repeat(values, 4))  # the old, record-level resampling
    assert (records.hi - records.lo) < 0.6 * (four.hi - four.lo)  # 1/sqrt(4) of it: far too narrow


def test_a_bin_cell_resamples_examples_not_records():
    """Two modes put the same example in the High bin twice: the cell counts 2 records per example
    but resamples 40 examples, exactly as one record each."""
    values = np.random.default_rng(4).uniform(size=40)
    records = [
        Record("toy", "m", "base", "test", mode, f"e{i:02d}", float(v), 0.9)
        for i, v in enumerate(values)
        for mode in ("random", "similar")
    ]
    [high] = [r.cell for r in summarise(records, (0.3, 0.6)) if r.kind == "bin"]
    mean, lo, hi = ci(values)
    assert (high.n, high.examples) == (80, 40)
    assert (high.mean, high.lo, high.hi) == pytest.approx((mean, lo, hi))


def test_contrast_of_terms_and_corpus_statistics():
    sums = np.array([[3.0, 1.0], [1.0, 1.0]])  # term 0: example 0 has 3 over 3 records
    counts = np.array([[3.0, 1.0], [1.0, 1.0]])
    found = contrast(sums, counts, (1.0, -1.0))
    assert found.value == pytest.approx(0.0) and found.examples == 2
    stats = np.array([[[1.0, 2.0], [3.0, 4.0]]])  # one term; corpus = ratio of summed statistics
    found = contrast(stats, np.ones((1, 2)), (1.0,), corpus=lambda t: t[0] / t[1])
    assert found.value == pytest.approx(4 / 6)
    assert 0.5 <= found.lo <= found.value <= found.hi <= 0.75
