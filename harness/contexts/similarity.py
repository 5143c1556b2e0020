"""Similarity: Okapi BM25 retrieval over a pool (sim_x embeddings: `icl_bench.core.embeddings`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

K1, B = 1.5, 0.75


class BM25Index:
    """Okapi BM25 (k1=1.5, b=0.75) over pre-tokenised documents, backed by bm25s's sparse score matrix.

    Ranking ties are broken by document order, so top-k is deterministic.  bm25s's `robertson` idf floors
    negative idfs (terms in over half the documents) at 0, where rank_bm25 uses 0.25 * mean idf.
    """

    def __init__(self, documents: Sequence[Sequence[str]]):
        import bm25s

        self.size = len(documents)
        self._bm25 = bm25s.BM25(k1=K1, b=B, method="robertson")
        # bm25s rejects an empty corpus vocabulary; an empty token keeps empty documents indexable.
        self._bm25.index([list(doc) or [""] for doc in documents], show_progress=False)
        self._vocab = self._bm25.vocab_dict

    def scores(self, query: Sequence[str]) -> np.ndarray:
        """BM25 score of every document for `query`."""
        ids = [self._vocab[t] for t in query if t in self._vocab]
        if not ids:
            return np.zeros(self.size, dtype=np.float32)
        return self._bm25.get_scores_from_ids(ids) * (K1 + 1)  # bm25s's robertson omits the (k1+1) factor

    def top(self, query: Sequence[str], n: int, exclude: frozenset[int] = frozenset()) -> list[int]:
        """Indices of the `n` best documents (score desc, then index asc), skipping `exclude`."""
        scores = self.scores(query)
        return top_indices(scores, n, exclude)


def top_indices(scores: np.ndarray, n: int, exclude: frozenset[int] = frozenset()) -> list[int]:
    """Deterministic top-n of a score vector: score descending, ties by index, `exclude` skipped."""
    want = min(n + len(exclude), len(scores))
    if want <= 0:
        return []
    if want < len(scores):
        threshold = np.partition(scores, len(scores) - want)[len(scores) - want]
        candidates = np.flatnonzero(scores >= threshold)
    else:
        candidates = np.arange(len(scores))
    order = candidates[np.lexsort((candidates, -scores[candidates]))]
    return [int(i) for i in order if int(i) not in exclude][:n]
