"""The ICL-vs-fine-tuning metrics of SPEC section 6 (Dai et al. 2023, and the seed's Jaccard index), on
plain arrays: one example's vectors in, one number (or one per layer) out; `analysis.py` averages."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CHANGES = ("all", "correct", "incorrect")  # which prediction changes a Jaccard index counts


def cosine(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    """Cosine similarity along `axis`; 0 where either side is the zero vector."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norms = np.linalg.norm(a, axis=axis) * np.linalg.norm(b, axis=axis)
    dots = np.sum(a * b, axis=axis)
    return np.divide(dots, norms, out=np.zeros_like(dots, dtype=np.float64), where=norms > 0)


def unit(rows: np.ndarray) -> np.ndarray:
    """Each row (the last axis) L2-normalised."""
    rows = np.asarray(rows, dtype=np.float64)
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)


def simaou(icl: np.ndarray, zsl: np.ndarray, ft: np.ndarray) -> np.ndarray:
    """SimAOU per layer for one example: cos(h_ICL - h_ZSL, h_FT - h_ZSL) of the L2-normalised
    last-token attention outputs, each (layers, hidden)."""
    base = unit(zsl)
    return cosine(unit(icl) - base, unit(ft) - base)


def random_update(zsl: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """SimAOU's random baseline in place of h_FT: a uniform [0, 1) vector per layer."""
    return rng.random(np.shape(zsl))


def simam(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SimAM per layer for one example: cos of two (layers, heads, query tokens) pre-softmax attention
    logit maps per head, averaged over heads."""
    return cosine(a, b).mean(axis=-1)


def simam_delta(icl: np.ndarray, zsl: np.ndarray, ft: np.ndarray) -> np.ndarray:
    """SimAM-delta per layer: cos(m_ICL - m_ZSL, m_FT - m_ZSL) per head, averaged over heads."""
    return simam(np.asarray(icl) - zsl, np.asarray(ft) - zsl)


def rec2ftp(gold: Sequence, zsl: Sequence, ft: Sequence, icl: Sequence) -> float | None:
    """#(ZSL wrong, FT right, ICL right) / #(ZSL wrong, FT right); None when FT corrects nothing."""
    fixed = [i for i, g in enumerate(gold) if zsl[i] != g and ft[i] == g]
    return sum(icl[i] == gold[i] for i in fixed) / len(fixed) if fixed else None


def jaccard(gold: Sequence, zsl: Sequence, icl: Sequence, ft: Sequence, to: str = "all") -> float | None:
    """Jaccard index of the prediction changes from ZSL under ICL and under FT: an example is in both
    when both changed it to the same label.  `to`: "all" changes, only those to the "correct" label, or
    only those to an "incorrect" one.  None when neither changed anything."""
    if to not in CHANGES:
        raise ValueError(f"to must be all, correct or incorrect, not {to!r}")

    def changed(predictions: Sequence) -> set[int]:
        return {
            i
            for i, p in enumerate(predictions)
            if p != zsl[i] and (to == "all" or (p == gold[i]) == (to == "correct"))
        }

    by_icl, by_ft = changed(icl), changed(ft)
    both = {i for i in by_icl & by_ft if icl[i] == ft[i]}
    union = len(by_icl) + len(by_ft) - len(both)
    return len(both) / union if union else None
