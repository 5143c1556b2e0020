"""The seed paper's numbers (Bar Natan et al., "In-context learning and gradient descent revisited",
Tables 1-3) and how each of the analysis' numbers compares with them.

The paper's model (fairseq's 1.3B GPT), prompts and validation sets are not ours, so an absolute number
(an accuracy, a Jaccard index, a cosine) is not comparable; what is comparable is each relation its
tables show, e.g. ICL more accurate than ZSL, or layer-causal FT's SimAOU above FT's.  A relation
agrees when our bootstrap CI (over test examples) lies entirely on the paper's side of 0, disagrees when
it lies entirely on the other side, and is inconclusive when it spans 0.  The rule was fixed before any
result of this analysis was read."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

TASKS = {
    "mr": "MR",
    "mr-offline": "MR",
    "sst2": "SST2",
    "sst5": "SST5",
    "subj": "Subj",
    "agnews": "AGNews",
    "cb": "CB",
}

# Table 1: accuracies and Jaccard indices in %.
_T1 = ("zsl", "ft", "icl", "jaccard_all", "jaccard_correct", "jaccard_incorrect")
TABLE1: dict[str, dict[str, float]] = {
    task: dict(zip(_T1, values, strict=True))
    for task, values in {
        "CB": (37.5, 57.1, 50.0, 80.0, 91.7, 66.7),
        "SST2": (70.5, 74.0, 92.7, 16.4, 19.8, 1.8),
        "SST5": (39.3, 39.4, 45.0, 3.4, 3.2, 3.5),
        "Subj": (72.6, 77.8, 90.0, 36.2, 48.0, 10.2),
        "MR": (65.9, 72.6, 89.1, 34.0, 40.2, 17.7),
        "AGNews": (46.2, 66.7, 79.2, 48.0, 63.5, 19.2),
    }.items()
}
# Table 2: SimAOU and SimAM (cosines, mean over layers); "lc" is layer-causal FT.
_T2 = ("simaou/random", "simaou/ft", "simaou/lc", "simam/zsl", "simam/ft", "simam/lc")
TABLE2: dict[str, dict[str, float]] = {
    task: dict(zip(_T2, values, strict=True))
    for task, values in {
        "SST2": (0.0016, 0.1091, 0.2297, 0.5546, 0.5850, 0.5774),
        "SST5": (0.0025, 0.113, 0.1065, 0.3913, 0.4047, 0.4039),
        "MR": (0.0008, 0.2190, 0.3299, 0.3979, 0.4980, 0.2919),
        "Subj": (0.0022, 0.1932, 0.3439, 0.3786, 0.4870, 0.2844),
        "AGNews": (0.0021, 0.3053, 0.3213, 0.1518, 0.4944, 0.1201),
        "CB": (0.0037, 0.2013, 0.3435, 0.1524, 0.1875, 0.0293),
    }.items()
}
# Table 3: layer-causal FT clipped at 12.0 in l-inf norm, on Subj only.
TABLE3: dict[str, dict[str, float]] = {
    "Subj": {
        "simaou/ft": 0.1932,
        "simaou/lc-clip": 0.3480,
        "simam/zsl": 0.3786,
        "simam/ft": 0.4870,
        "simam/lc-clip": 0.4227,
    },
}

OTHER_SETUP = "other model (1.3B), prompts, test set"
NOT_IN_PAPER = "not in the paper's tables"


@dataclass(frozen=True)
class Comparison:
    """One of our numbers (or relations) beside the paper's: `verdict` is agrees, disagrees,
    inconclusive or not comparable, `why` says on what grounds."""

    quantity: str
    ours: str
    paper: str
    verdict: str
    why: str


def verdict(estimate: dict[str, float] | None, paper: float | None) -> str:
    """The rule of this module's docstring for our difference `estimate` (value, lo, hi) and the paper's
    difference `paper`."""
    if (
        estimate is None
        or paper is None
        or paper == 0
        or not all(math.isfinite(estimate[k]) for k in ("lo", "hi"))
    ):
        return "not comparable"
    if estimate["lo"] > 0 or estimate["hi"] < 0:
        return "agrees" if (estimate["lo"] > 0) == (paper > 0) else "disagrees"
    return "inconclusive"


def _estimate(estimate: dict[str, float] | None, scale: float, digits: int) -> str:
    if estimate is None or not math.isfinite(estimate["value"]):
        return "-"
    v, lo, hi = (scale * estimate[k] for k in ("value", "lo", "hi"))
    return f"{v:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def _value(value: float | None, scale: float, digits: int) -> str:
    return "-" if value is None else f"{scale * value:.{digits}f}"


def compare(task: str, summary: dict[str, Any]) -> list[Comparison]:
    """Every number of the task's main table, and each relation of the paper's tables, against the
    paper's task of the same name (MR for mr-offline); empty when the paper has no such task."""
    name = TASKS.get(task)
    if name is None:
        return []
    t1, t2 = TABLE1[name], TABLE2[name]
    t3 = TABLE3.get(name, TABLE3["Subj"])
    t3_note = "" if name in TABLE3 else "; paper: Subj, Table 3's only task"
    contrasts, mean, acc = summary["contrasts"], summary["mean"], summary["accuracy"]
    out: list[Comparison] = []

    def absolute(quantity: str, ours: str, paper: str, why: str = OTHER_SETUP) -> None:
        out.append(Comparison(quantity, ours, paper, "not comparable", why))

    def relation(quantity: str, key: str, paper: float, percent: bool, why: str) -> None:
        estimate = contrasts.get(key)
        scale, digits = (100.0, 1) if percent else (1.0, 3)
        paper_text = f"{paper:+.1f}" if percent else f"{paper:+.4f}"
        out.append(
            Comparison(
                quantity, _estimate(estimate, scale, digits), paper_text, verdict(estimate, paper), why
            )
        )

    for setting, label in (("zsl", "ZSL"), ("icl", "ICL"), ("ft", "FT")):
        absolute(f"{label} accuracy", _value(acc.get(setting), 100, 1), f"{t1[setting]:.1f}")
    for setting, label in (("ft-layer-causal", "LC FT"), ("ft-layer-causal-clip", "LC FT clip")):
        absolute(f"{label} accuracy", _value(acc.get(setting), 100, 1), "-", NOT_IN_PAPER)
    relation("ICL - ZSL accuracy", "accuracy icl - zsl", t1["icl"] - t1["zsl"], True, "Table 1")
    relation("FT - ZSL accuracy", "accuracy ft - zsl", t1["ft"] - t1["zsl"], True, "Table 1")
    relation("ICL - FT accuracy", "accuracy icl - ft", t1["icl"] - t1["ft"], True, "Table 1")
    for setting, label in (("ft", "FT"), ("ft-layer-causal", "LC FT"), ("ft-layer-causal-clip", "LC clip")):
        alignment = summary.get(setting, {})
        absolute(
            f"Rec2FTP ({label})",
            _value(alignment.get("rec2ftp"), 100, 1),
            "-",
            "Dai et al.'s, not in this paper's tables",
        )
        for to in ("all", "correct", "incorrect"):
            ours = _value(alignment.get(f"jaccard_{to}"), 100, 1)
            if setting == "ft":
                absolute(
                    f"Jaccard {to} ({label})",
                    ours,
                    f"{t1[f'jaccard_{to}']:.1f}",
                    "set by change rates; no chance level there",
                )
            else:
                absolute(f"Jaccard {to} ({label})", ours, "-", NOT_IN_PAPER)
    relation(
        "Jaccard correct - incorrect (FT)",
        "jaccard correct - incorrect ft",
        t1["jaccard_correct"] - t1["jaccard_incorrect"],
        True,
        "Table 1",
    )

    gaussian = contrasts.get("simaou gaussian null")
    random_ok = gaussian is not None and gaussian["lo"] <= 0 <= gaussian["hi"]
    out.append(
        Comparison(
            "SimAOU (Random)",
            _estimate(gaussian, 1, 4),
            f"{t2['simaou/random']:.4f}",
            "agrees" if random_ok else "disagrees",
            "both about 0 (ours: Gaussian, mean 0 by construction)",
        )
    )
    absolute(
        "SimAOU (FT)",
        _value(mean.get("simaou/ft"), 1, 4),
        f"{t2['simaou/ft']:.4f}",
        "cosine scale differs by model; relations below",
    )
    absolute(
        "SimAOU (LC FT)",
        _value(mean.get("simaou/ft-layer-causal"), 1, 4),
        f"{t2['simaou/lc']:.4f}",
        "cosine scale differs by model; relations below",
    )
    absolute(
        "SimAOU (LC FT clip)",
        _value(mean.get("simaou/ft-layer-causal-clip"), 1, 4),
        f"{t3['simaou/lc-clip']:.4f}",
        "other clip value; Table 3 is Subj only",
    )
    for setting, label in (("ft", "FT"), ("ft-layer-causal", "LC FT"), ("ft-layer-causal-clip", "LC clip")):
        absolute(
            f"SimAOU same-drift null ({label})",
            _value(mean.get(f"simaou-null/{setting}"), 1, 4),
            "-",
            NOT_IN_PAPER,
        )
    for key, label, paper in (
        ("zsl", "ZSL", t2["simam/zsl"]),
        ("ft", "FT", t2["simam/ft"]),
        ("ft-layer-causal", "LC FT", t2["simam/lc"]),
        ("ft-layer-causal-clip", "LC FT clip", t3["simam/lc-clip"]),
    ):
        absolute(
            f"SimAM ({label})",
            _value(mean.get(f"simam/{key}"), 1, 4),
            f"{paper:.4f}",
            "cosine scale differs by model; relations below",
        )
    for setting, label in (("ft", "FT"), ("ft-layer-causal", "LC FT"), ("ft-layer-causal-clip", "LC clip")):
        absolute(
            f"SimAM-delta ({label})", _value(mean.get(f"simam-delta/{setting}"), 1, 4), "-", NOT_IN_PAPER
        )

    relation(
        "SimAOU FT - Random",
        "simaou ft - gaussian null",
        t2["simaou/ft"] - t2["simaou/random"],
        False,
        "Table 2",
    )
    relation(
        "SimAOU LC FT - FT",
        "simaou ft-layer-causal - ft",
        t2["simaou/lc"] - t2["simaou/ft"],
        False,
        "Table 2",
    )
    relation("SimAM FT - ZSL", "simam ft - zsl", t2["simam/ft"] - t2["simam/zsl"], False, "Table 2")
    relation(
        "SimAM LC FT - FT", "simam ft-layer-causal - ft", t2["simam/lc"] - t2["simam/ft"], False, "Table 2"
    )
    relation(
        "SimAM LC FT - ZSL", "simam ft-layer-causal - zsl", t2["simam/lc"] - t2["simam/zsl"], False, "Table 2"
    )
    relation(
        "SimAOU LC clip - FT",
        "simaou ft-layer-causal-clip - ft",
        t3["simaou/lc-clip"] - t3["simaou/ft"],
        False,
        f"Table 3{t3_note}",
    )
    relation(
        "SimAM LC clip - LC FT",
        "simam ft-layer-causal-clip - ft-layer-causal",
        t3["simam/lc-clip"] - TABLE2["Subj" if t3_note else name]["simam/lc"],
        False,
        f"Tables 2-3{t3_note}",
    )
    relation(
        "SimAM LC clip - FT",
        "simam ft-layer-causal-clip - ft",
        t3["simam/lc-clip"] - t3["simam/ft"],
        False,
        f"Table 3{t3_note}",
    )
    return out
