"""icl_bench.contexts.similarity.BM25Index (bm25s) against rank_bm25's BM25Okapi, and the top-k helper."""

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    K1,
    B,
    make_documents,
    make_vocabulary,
    max_document_frequency,
    reference_scores,
    same_ranking,
    top_of,
)
from rank_bm25 import BM25Okapi

from icl_bench.contexts.similarity import BM25Index, top_indices


@pytest.fixture(scope="module")
def corpus():
    """2000 docs of 5-25 Zipf-distributed pseudo-words, 100 queries, no term in over half the docs
    (where the two libraries' idf floors would differ)."""
    rng = random.Random(11)
    vocabulary = make_vocabulary(3000, rng)
    docs = [d.split() for d in make_documents(2000, rng, vocabulary, 5, 25)]
    queries = [q.split() for q in make_documents(100, rng, vocabulary, 3, 12)]
    assert max_document_frequency(docs) < 0.5
    assert any(len(set(q)) < len(q) for q in queries)  # repeated query terms are covered too
    return docs, queries, BM25Index(docs), BM25Okapi(docs, k1=K1, b=B)


def test_topk_matches_rank_bm25(corpus):
    _, queries, index, ref = corpus
    identical = 0
    for query in queries:
        scores = reference_scores(ref, query)
        for n in (1, 4, 16):
            identical += same_ranking(index.top(query, n), top_of(scores, n), scores)
    assert identical >= 0.97 * 3 * len(queries)


def test_topk_with_exclusions_matches_rank_bm25(corpus):
    _, queries, index, ref = corpus
    for query in queries[:30]:
        scores = reference_scores(ref, query)
        exclude = frozenset(top_of(scores, 3)[::2])  # drop the best and the third best
        ours = index.top(query, 5, exclude)
        assert not exclude & set(ours)
        same_ranking(ours, top_of(scores, 5, exclude), scores)


def test_scores_rank_like_rank_bm25(corpus):
    """Same ordering of every document: the scores are a positive multiple of Okapi BM25's."""
    docs, queries, index, ref = corpus
    for query in queries[:20]:
        ours, theirs = index.scores(query).astype(np.float64), np.asarray(ref.get_scores(query))
        assert ours.shape == (len(docs),)
        assert np.array_equal(ours > 0, theirs > 0)
        ratio = ours[theirs > 0] / theirs[theirs > 0]
        assert np.allclose(ratio, ratio[0], rtol=1e-4)


def test_scores_equal_okapi_bm25(corpus):
    """SPEC section 1: Okapi BM25 with k1=1.5, b=0.75 -- the same numbers as rank_bm25's BM25Okapi."""
    _, queries, index, ref = corpus
    for query in queries[:20]:
        np.testing.assert_allclose(index.scores(query), ref.get_scores(query), rtol=1e-4, atol=1e-5)


def test_okapi_formula_by_hand():
    docs = [["a", "b", "c"], ["b", "d"], ["c", "e", "f", "g"], ["h", "i"], ["j", "k", "a"]]
    index = BM25Index(docs)
    n, avgdl = len(docs), sum(map(len, docs)) / len(docs)
    idf = np.log((n - 2 + 0.5) / (2 + 0.5))  # "a" occurs in two documents
    expected = [idf * (K1 + 1) / (1 + K1 * (1 - B + B * len(d) / avgdl)) if "a" in d else 0.0 for d in docs]
    np.testing.assert_allclose(index.scores(["a"]), expected, rtol=1e-5)


def test_unknown_and_empty_queries_score_zero():
    index = BM25Index([["x", "y"], [], ["y", "z"]])
    assert index.scores(["nothing", "here"]).tolist() == [0.0, 0.0, 0.0]
    assert index.scores([]).tolist() == [0.0, 0.0, 0.0]
    assert index.top(["nothing"], 2) == [0, 1]  # all tie: document order
    assert index.top(["z"], 1) == [2]


def test_top_indices_order_ties_and_exclusion():
    scores = np.array([0.5, 2.0, 0.5, 3.0, 2.0, 0.0], dtype=np.float32)
    assert top_indices(scores, 3) == [3, 1, 4]
    assert top_indices(scores, 4) == [3, 1, 4, 0]  # tie at 0.5: lower index first
    assert top_indices(scores, 3, frozenset({3, 4})) == [1, 0, 2]
    assert top_indices(scores, 10) == [3, 1, 4, 0, 2, 5]
    assert top_indices(scores, 0) == []
    assert top_indices(scores, 2, frozenset(range(6))) == []


def test_top_indices_against_full_sort():
    rng = np.random.default_rng(5)
    for _ in range(200):
        scores = rng.integers(0, 6, size=int(rng.integers(1, 40))).astype(np.float32)
        n = int(rng.integers(0, 12))
        exclude = frozenset(int(i) for i in rng.integers(0, len(scores), size=int(rng.integers(0, 5))))
        expected = [i for i in sorted(range(len(scores)), key=lambda i: (-scores[i], i)) if i not in exclude]
        assert top_indices(scores, n, exclude) == expected[:n]


def test_benchmark_script_runs_small():
    """tests/benchmarks/bench_contexts.py at toy size: it runs, and both paths pick the same top-k."""
    script = Path(__file__).parents[1] / "benchmarks" / "bench_contexts.py"
    args = ["--pool", "600", "--targets", "40", "--vocab", "3000"]
    result = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = " ".join(result.stdout.split())
    assert "top-4 agreement: 100.00% identical lists (40/40)" in out
    assert "speed-up" in out and "rank_bm25" in out
