"""The ICL-vs-fine-tuning metrics of SPEC section 6 (Dai et al. 2023, and the seed's Jaccard index), on
plain arrays: one example's vectors in, one number (or one per layer) out; `analysis.py` averages.  Each
metric has a null beside it: SimAOU a Gaussian and a drift-matched random update (`gaussian_update`,
`same_drift_update`), Jaccard and Rec2FTP the level expected of independent prediction changes
(`jaccard_chance`, `rec2ftp_chance`)."""

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


def update(h: np.ndarray, zsl: np.ndarray) -> np.ndarray:
    """The update of a setting's last-token attention outputs `h` over ZSL's, per layer, as SimAOU reads
    it: unit(h) - unit(h_ZSL), both (layers, hidden)."""
    return unit(h) - unit(zsl)


def simaou(icl: np.ndarray, zsl: np.ndarray, ft: np.ndarray) -> np.ndarray:
    """SimAOU per layer for one example: cos(h_ICL - h_ZSL, h_FT - h_ZSL) of the L2-normalised
    last-token attention outputs, each (layers, hidden)."""
    return cosine(update(icl, zsl), update(ft, zsl))


def gaussian_update(like: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """SimAOU's random baseline: per layer an isotropic Gaussian direction scaled to the norm of `like`
    (the FT update, (layers, hidden)).  Its cosine with any fixed update has mean 0 and standard deviation
    about 1/sqrt(hidden): the paper's h_rand "sampled uniformly" read as uniform over directions (a
    uniform [0, 1) vector is no null: normalised, it points near the all-ones direction)."""
    like = np.asarray(like, dtype=np.float64)
    return unit(rng.standard_normal(like.shape)) * np.linalg.norm(like, axis=-1, keepdims=True)


def same_drift_update(h: np.ndarray, zsl: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random update with the drift of `h` from ZSL, per layer: unit(h) is replaced by the point at the
    same angle theta from unit(h_ZSL) in a uniformly random direction, cos(theta) unit(h_ZSL) +
    sin(theta) u with u a random unit vector orthogonal to unit(h_ZSL).  The update keeps its norm
    2 sin(theta / 2) and its component -(1 - cos theta) unit(h_ZSL) along the ZSL state, which every
    update between unit vectors has; only the direction orthogonal to h_ZSL is random.

    Why this and not a random direction of the same norm: a cosine ignores norms, so a random direction
    of any norm has expected SimAOU 0, whatever the drift.  What a larger drift buys is that shared
    component: for an ICL update at angle theta_I and this null at theta_X, E[cos] = sin(theta_I / 2)
    sin(theta_X / 2), growing with either drift; SimAOU above this null is alignment beyond the drift."""
    base, target = unit(zsl), unit(h)
    cos_theta = np.clip(np.sum(base * target, axis=-1, keepdims=True), -1.0, 1.0)
    noise = rng.standard_normal(base.shape)
    tangent = unit(noise - np.sum(noise * base, axis=-1, keepdims=True) * base)
    return cos_theta * base + np.sqrt(1.0 - cos_theta**2) * tangent - base


def same_drift_expectation(icl: np.ndarray, zsl: np.ndarray, h: np.ndarray) -> np.ndarray:
    """The mean of SimAOU against `same_drift_update(h, zsl)` per layer: sin(theta_I / 2) sin(theta_X / 2),
    theta the angles of unit(h_ICL) and unit(h) from unit(h_ZSL) (each sin(theta / 2) is half the norm of
    that update)."""
    return np.linalg.norm(update(icl, zsl), axis=-1) * np.linalg.norm(update(h, zsl), axis=-1) / 4


def simam(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SimAM per layer for one example: cos of two (layers, heads, query tokens) pre-softmax attention
    logit maps per head, averaged over heads."""
    return cosine(a, b).mean(axis=-1)


def simam_delta(icl: np.ndarray, zsl: np.ndarray, ft: np.ndarray) -> np.ndarray:
    """SimAM-delta per layer: cos(m_ICL - m_ZSL, m_FT - m_ZSL) per head, averaged over heads."""
    return simam(np.asarray(icl) - zsl, np.asarray(ft) - zsl)


# ------------------------------------------------------------------------------ prediction changes
#
# Each function below is a ratio of counts of examples; `weights` counts example i w_i times: None (each
# once), one weight per example (a bootstrap resample), or a (resamples, examples) matrix, which returns
# an array with NaN where the number is undefined (a scalar call returns None there).


class _Counts:
    """Indicator columns over the examples, counted under weights in one matrix product."""

    def __init__(self) -> None:
        self.columns: list[np.ndarray] = []

    def add(self, mask: np.ndarray) -> int:
        self.columns.append(np.asarray(mask, dtype=np.float64))
        return len(self.columns) - 1

    def count(self, weights: np.ndarray) -> np.ndarray:  # (resamples, examples) -> (resamples, columns)
        return weights @ np.stack(self.columns, axis=1)


def _arrays(*columns: Sequence, weights=None) -> tuple[list[np.ndarray], np.ndarray, bool]:
    arrays = [np.asarray(column, dtype=object) for column in columns]
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError("gold and predictions need one entry per example each")
    w = np.ones((1, n)) if weights is None else np.asarray(weights, dtype=np.float64)
    return arrays, (w[None] if w.ndim == 1 else w), w.ndim == 1 or weights is None


def _ratio(numerator: np.ndarray, denominator: np.ndarray, single: bool):
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)
    if not single:
        return values
    return None if np.isnan(values[0]) else float(values[0])


def changed(gold: np.ndarray, zsl: np.ndarray, new: np.ndarray, to: str) -> np.ndarray:
    """Which examples `new` changed from ZSL's prediction: all changes, or only those to the "correct"
    (gold) label, or only those to an "incorrect" one."""
    if to not in CHANGES:
        raise ValueError(f"to must be all, correct or incorrect, not {to!r}")
    moved = new != zsl
    return moved if to == "all" else moved & ((new == gold) == (to == "correct"))


def rec2ftp(gold: Sequence, zsl: Sequence, ft: Sequence, icl: Sequence, weights=None):
    """#(ZSL wrong, FT right, ICL right) / #(ZSL wrong, FT right); None when FT corrects nothing."""
    (gold, zsl, ft, icl), w, single = _arrays(gold, zsl, ft, icl, weights=weights)
    fixed = (zsl != gold) & (ft == gold)
    counts = _Counts()
    counts.add(fixed), counts.add(fixed & (icl == gold))
    c = counts.count(w)
    return _ratio(c[:, 1], c[:, 0], single)


def jaccard(gold: Sequence, zsl: Sequence, icl: Sequence, ft: Sequence, to: str = "all", weights=None):
    """Jaccard index of the prediction changes from ZSL under ICL and under FT: an example is in both
    when both changed it to the same label.  `to`: "all" changes, only those to the "correct" label, or
    only those to an "incorrect" one.  None when neither changed anything."""
    (gold, zsl, icl, ft), w, single = _arrays(gold, zsl, icl, ft, weights=weights)
    by_icl, by_ft = changed(gold, zsl, icl, to), changed(gold, zsl, ft, to)
    counts = _Counts()
    counts.add(by_icl & by_ft & (icl == ft)), counts.add(by_icl), counts.add(by_ft)
    c = counts.count(w)
    return _ratio(c[:, 0], c[:, 1] + c[:, 2] - c[:, 0], single)


def jaccard_chance(
    gold: Sequence,
    zsl: Sequence,
    icl: Sequence,
    ft: Sequence,
    to: str = "all",
    labels: Sequence | None = None,
    within_zsl: bool = False,
    weights=None,
):
    """The Jaccard index expected if ICL's and FT's prediction changes were independent with their
    observed rates (None when neither changed anything).

    Derivation.  Call example i eligible when some label may qualify as its new label: c != z_i (ZSL's
    prediction), and for to="correct" c = g_i (gold), for to="incorrect" c != g_i; Q_i is that set of
    labels, E the eligible examples, a = |D_ICL| and b = |D_FT| the observed qualifying changes.  Null:
    each eligible example is changed by ICL with probability p_I = a / |E| and by FT with p_F = b / |E|,
    independently; a changed example's new label is drawn from that method's observed distribution of new
    labels among its changes on examples with the same (z, g), q_X(c | z, g) (uniform over Q_i where the
    method made none).  Both land on the same label with probability s_i = sum_{c in Q_i} q_I(c) q_F(c),
    so E|D_ICL & D_FT| = p_I p_F sum_{i in E} s_i, while E|D_ICL| = a and E|D_FT| = b.  The chance level
    is E& / (a + b - E&), a ratio of expectations (it differs from the expected ratio by O(1/n)).  With
    two labels every Q_i has one label, s_i = 1, and for to="all" E& = a b / n.

    `within_zsl`: the rates p_I, p_F are taken within each ZSL prediction instead (a method that moves
    predictions towards one label can only change examples ZSL gave another; this null keeps that).
    `labels`: the task's label set (default: every label seen)."""
    (gold, zsl, icl, ft), w, single = _arrays(gold, zsl, icl, ft, weights=weights)
    labels = sorted(set(gold) | set(zsl) | set(icl) | set(ft)) if labels is None else list(labels)
    by_icl, by_ft = changed(gold, zsl, icl, to), changed(gold, zsl, ft, to)
    counts = _Counts()
    a, b = counts.add(by_icl), counts.add(by_ft)
    strata = sorted(set(zip(zsl, gold, strict=True)))
    groups = sorted({z for z, _ in strata}) if within_zsl else [None]
    plan = []
    for group in groups:
        member = np.ones(len(zsl), bool) if group is None else zsl == group
        rates = counts.add(by_icl & member), counts.add(by_ft & member)
        cells = []
        for z, g in strata:
            targets = [c for c in labels if c != z and (to == "all" or (c == g) == (to == "correct"))]
            if targets and (group is None or z == group):
                stratum = (zsl == z) & (gold == g)
                cells.append(
                    (
                        counts.add(stratum),
                        [counts.add(stratum & by_icl & (icl == c)) for c in targets],
                        [counts.add(stratum & by_ft & (ft == c)) for c in targets],
                    )
                )
        plan.append((rates, cells))
    c = counts.count(w)

    def shares(columns: list[int]) -> np.ndarray:  # (resamples, targets), uniform where none
        found = c[:, columns]
        total = found.sum(axis=1, keepdims=True)
        uniform = np.full_like(found, 1 / len(columns))
        return np.where(total > 0, found / np.where(total > 0, total, 1), uniform)

    expected = np.zeros(len(c))
    for (rate_icl, rate_ft), cells in plan:
        eligible = sum((c[:, stratum] for stratum, _, _ in cells), np.zeros(len(c)))
        safe = np.where(eligible > 0, eligible, 1)
        p_icl, p_ft = c[:, rate_icl] / safe, c[:, rate_ft] / safe
        for stratum, to_icl, to_ft in cells:
            same = (shares(to_icl) * shares(to_ft)).sum(axis=1)
            expected += p_icl * p_ft * same * c[:, stratum]
    return _ratio(expected, c[:, a] + c[:, b] - expected, single)


def rec2ftp_chance(
    gold: Sequence,
    zsl: Sequence,
    ft: Sequence,
    icl: Sequence,
    within_zsl: bool = False,
    weights=None,
):
    """Rec2FTP expected if ICL's changes were independent of FT's: Rec2FTP = |C_ICL & C_FT| / |C_FT| for
    C_X the changes to the correct label, and under `jaccard_chance`'s null (to="correct")
    E|C_ICL & C_FT| = |C_FT| p_I, so the chance level is p_I, the share of ZSL-wrong examples that ICL
    gets right (within each ZSL prediction, weighted by FT's corrections there, with `within_zsl`).
    None when FT corrects nothing."""
    (gold, zsl, ft, icl), w, single = _arrays(gold, zsl, ft, icl, weights=weights)
    fixed = changed(gold, zsl, ft, "correct")
    wrong, right = zsl != gold, icl == gold
    groups = sorted(set(zsl[wrong])) if within_zsl else [None]
    counts = _Counts()
    total = counts.add(fixed)
    plan = []
    for group in groups:
        member = np.ones(len(zsl), bool) if group is None else zsl == group
        plan.append(tuple(counts.add(mask & member) for mask in (fixed, wrong, wrong & right)))
    c = counts.count(w)
    expected = np.zeros(len(c))
    for corrected, eligible, hits in plan:
        expected += c[:, corrected] * c[:, hits] / np.where(c[:, eligible] > 0, c[:, eligible], 1)
    return _ratio(expected, c[:, total], single)
