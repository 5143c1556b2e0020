"""Paired comparisons and claim verdicts on constructed records whose answers are known."""

import json
import math
import random

import numpy as np
import pytest
from helpers import ci

from icl_bench import Example
from icl_bench.core import plugins
from icl_bench.core.types import BASELINE_MODEL
from icl_bench.report.leaderboard import write_leaderboard
from icl_bench.score import claims
from icl_bench.score.claims import (
    Comparison,
    Term,
    better,
    combine,
    estimate,
    judge,
    outcome,
    paper_claims,
    verdict,
)
from icl_bench.score.schema import Record

MODES = ("random", "similar", "one-near", "paraphrase")
BASELINES = ((BASELINE_MODEL, "majority"), (BASELINE_MODEL, "copy-nearest"))


def scores_of(per_example: dict[str, list[float]], series: str, group: str = "all") -> dict:
    """{(series, group): {(example, mode): score}} from each example's per-mode scores."""
    return {
        (series, group): {(e, MODES[i]): v for e, values in per_example.items() for i, v in enumerate(values)}
    }


def shifted(n: int, shift: float, noise: float, seed: int) -> tuple[dict, dict]:
    """Series b with per-record noise and a = b + shift (+ independent noise)."""
    rng = random.Random(seed)
    b = {f"e{i}": [rng.random() for _ in MODES] for i in range(n)}
    a = {e: [v + shift + rng.gauss(0, noise) for v in values] for e, values in b.items()}
    return scores_of(a, "a") | scores_of(b, "b")


@pytest.mark.parametrize(
    ("shift", "expected"), [(0.2, "holds"), (-0.2, "contradicted"), (0.0, "inconclusive")]
)
def test_paired_difference_verdicts(shift, expected):
    scores = shifted(60, shift, 0.05, seed=1)
    found = outcome(better("a", "b", "all"), scores)
    assert found.verdict == expected
    assert found.estimate.examples == 60
    assert found.estimate.value == pytest.approx(shift, abs=0.03)
    assert found.estimate.lo <= found.estimate.value <= found.estimate.hi


def test_pairing_makes_a_small_shift_visible_that_unpaired_cis_hide():
    """b varies a lot between examples, a = b + 0.02: the paired CI excludes 0, the marginal CIs overlap."""
    scores = shifted(50, 0.02, 0.001, seed=2)
    found = outcome(better("a", "b", "all"), scores)
    assert found.verdict == "holds"
    _, lo_a, hi_a = ci(list(scores[("a", "all")].values()))
    _, lo_b, hi_b = ci(list(scores[("b", "all")].values()))
    assert lo_a < hi_b and lo_b < hi_a  # marginal intervals overlap


def test_resampling_moves_an_example_with_all_its_records():
    """Each example's records share one difference: the CI is the bootstrap of the example means (same
    draws), far wider than a bootstrap that treated the 4 x 30 records as independent."""
    rng = np.random.default_rng(5)
    per_example = rng.normal(0.1, 0.3, size=30)
    a = {f"e{i:02d}": [float(d)] * len(MODES) for i, d in enumerate(per_example)}
    b = {e: [0.0] * len(MODES) for e in a}
    found = estimate(better("a", "b", "all"), scores_of(a, "a") | scores_of(b, "b"))
    mean, lo, hi = ci([a[e][0] for e in sorted(a)])
    assert (found.value, found.lo, found.hi) == pytest.approx((mean, lo, hi))
    _, rlo, rhi = ci([v for e in sorted(a) for v in a[e]])
    assert found.hi - found.lo > 1.5 * (rhi - rlo)


def test_unequal_record_counts_weigh_examples_by_their_records():
    scores = {
        ("a", "all"): {
            ("e1", "random"): 1.0,
            ("e1", "similar"): 1.0,
            ("e1", "one-near"): 1.0,
            ("e2", "random"): 0.0,
        },
        ("b", "all"): {
            ("e1", "random"): 0.0,
            ("e1", "similar"): 0.0,
            ("e1", "one-near"): 0.0,
            ("e2", "random"): 0.0,
        },
    }
    found = estimate(better("a", "b", "all"), scores)
    assert found.value == pytest.approx(0.75)  # the plain mean over the 4 records, not over 2 examples


def test_only_records_both_sides_scored_are_compared():
    scores = {
        ("a", "all"): {("e1", "random"): 1.0, ("e2", "random"): 1.0, ("e3", "random"): 0.0},
        ("b", "all"): {("e1", "random"): 0.0, ("e2", "random"): 0.0},
    }
    found = estimate(better("a", "b", "all"), scores)
    assert found.value == 1.0 and found.examples == 2


def test_a_contrast_across_bins_stays_paired():
    """C2's (zero - base) High - (zero - base) Low: one resample of examples serves both bins."""
    rng = random.Random(3)
    scores: dict = {}
    for i in range(40):
        level = rng.random()
        for mode, group in zip(MODES, ("Low", "Low", "High", "High"), strict=True):
            base = level + (0.3 if group == "High" else 0.0)
            zero = level + (0.1 if group == "High" else 0.2)  # gains 0.2 in Low, loses 0.2 in High
            scores.setdefault(("base", group), {})[(f"e{i}", mode)] = base
            scores.setdefault(("zero", group), {})[(f"e{i}", mode)] = zero
    (c2,) = next(c for c in paper_claims({"base", "zero"}) if c.id == "C2").comparisons
    found = outcome(c2, scores)
    assert found.estimate.value == pytest.approx(-0.4)
    assert found.estimate.hi - found.estimate.lo < 1e-9  # the per-example level cancels exactly
    assert found.verdict == "holds"


def test_claim_whose_regime_did_not_run():
    scores = shifted(20, 0.2, 0.05, seed=4)
    judged = judge([claims.Claim("X", "a beats c", (better("a", "c", "all"),))], scores)
    assert judged[0].verdict == "not run" and judged[0].outcomes[0].estimate is None


def test_verdict_rules():
    assert verdict(0.01, 0.2, ">") == "holds"
    assert verdict(-0.2, -0.01, ">") == "contradicted"
    assert verdict(-0.01, 0.2, ">") == "inconclusive"
    assert verdict(-0.2, -0.01, "<") == "holds"
    assert verdict(0.01, 0.2, "<") == "contradicted"
    assert verdict(-0.005, 0.1, ">=", margin=0.01) == "holds"  # within the margin
    assert verdict(-0.02, 0.1, ">=", margin=0.01) == "inconclusive"
    assert verdict(-0.05, -0.02, ">=", margin=0.01) == "contradicted"
    assert verdict(math.nan, math.nan, ">") == "inconclusive"
    assert combine(["holds", "not run", "holds"]) == "inconclusive"  # SPEC 7: holds when all hold
    assert combine(["holds", "inconclusive"]) == "inconclusive"
    assert combine(["holds", "contradicted"]) == "contradicted"
    assert combine(["not run", "not run"]) == "not run"


def test_paper_claims_compare_contrastive_with_every_other_fine_tuned_regime_that_ran():
    c5 = next(c for c in paper_claims({"base", "zero", "random", "contrastive", "alpha"}) if c.id == "C5")
    assert [c.text for c in c5.comparisons] == [
        "contrastive >= alpha in High",
        "contrastive >= random in High",
        "contrastive >= zero in High",
        "contrastive >= zero in Low",
    ]
    ids = [c.id for c in paper_claims(())]
    assert ids == ["C1", "C2", "C2s", "C3", "C4", "C5", "A1", "A2", "A3", "A4"]


def test_estimate_is_deterministic_and_seeded():
    scores = shifted(30, 0.05, 0.2, seed=6)
    comparison = Comparison("a - b", (Term("a", "all"), Term("b", "all", -1.0)), ">")
    assert estimate(comparison, scores) == estimate(comparison, scores)
    assert estimate(comparison, scores, seed=1) != estimate(comparison, scores)


def records(regimes: dict[str, float], n: int = 30) -> list[Record]:
    """Records of task `toy`: max_sim = example index / n over three bins; regime lifts are exact; the
    trivial baselines score as `base` does."""
    rng = random.Random(0)
    noise = {(i, m): rng.random() * 0.5 for i in range(n) for m in MODES}
    lifts = [("m", regime, lift) for regime, lift in regimes.items()]
    lifts += [(BASELINE_MODEL, name, 0.0) for name in ("majority", "copy-nearest")]
    return [
        Record("toy", model, regime, "test", mode, f"t{i:02d}", noise[(i, mode)] + lift, (i + 0.5) / n)
        for model, regime, lift in lifts
        for i in range(n)
        for mode in MODES
    ]


def test_task_verdicts_on_known_regime_effects():
    regimes = {"base": 0.0, "zero": 0.3, "random": 0.3, "similar": 0.1, "contrastive": 0.3}
    (found,) = claims.task_verdicts("toy", records(regimes), (1 / 3, 2 / 3))
    by_id = {item.claim.id: item for item in found.claims}
    assert by_id["C1"].verdict == "holds"  # zero beats base by 0.3 everywhere
    assert by_id["C2"].verdict == "inconclusive"  # the same gain in High and Low: no erosion
    assert by_id["C3"].verdict == "inconclusive"  # random == zero exactly
    assert by_id["C4"].verdict == "holds"  # similar trails zero, random and contrastive by 0.2
    assert by_id["C5"].verdict == "holds"  # contrastive ties zero/random (within the margin), beats similar
    assert by_id["A1"].verdict == by_id["A4"].verdict == "not run"


def test_leaderboard_has_claims_in_markdown_and_json(tmp_path):
    results = tmp_path / "results" / "toy"
    for model, regime in (("m", "base"), ("m", "zero"), ("m", "contrastive"), *BASELINES):
        lines = [
            json.dumps(
                {
                    "task": r.task,
                    "model": r.model,
                    "regime": r.regime,
                    "split": r.split,
                    "mode": r.mode,
                    "id": r.id,
                    "prediction": "",
                    "score": r.score,
                    "metrics": {},
                    "max_sim": r.max_sim,
                }
            )
            for r in records({"base": 0.0, "zero": 0.3, "contrastive": 0.4})
            if (r.model, r.regime) == (model, regime)
        ]
        path = results / ("baselines.jsonl" if model == BASELINE_MODEL else f"m/{regime}.jsonl")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as handle:
            handle.write("\n".join(lines) + "\n")
    (results / "bins.json").write_text(json.dumps({"method": "fixed", "edges": [1 / 3, 2 / 3]}))
    write_leaderboard(tmp_path / "results", tmp_path / "board")
    text = (tmp_path / "board" / "leaderboard.md").read_text()
    assert (
        "### Claims" in text
        and "| **C1** | **fine-tuning learns the task in weights (beats base and every trivial baseline)** "
        "|  | **holds** |"
        in text
    )
    data = json.loads((tmp_path / "board" / "leaderboard.json").read_text())
    (entry,) = data["tasks"]["toy"]["claims"]
    c1 = next(c for c in entry["claims"] if c["id"] == "C1")
    assert c1["verdict"] == "holds" and c1["comparisons"][0]["difference"] == pytest.approx(0.3)
    assert next(c for c in entry["claims"] if c["id"] == "C3")["verdict"] == "not run"
    assert "## Environment" in text and "Not recorded" in text  # these results carry no environment


def test_a_corpus_metric_is_compared_on_corpus_scores_of_the_paired_examples():
    chrf = plugins.metrics["chrf"]
    rng = random.Random(0)
    words = [
        "Speichern",
        "Löschen",
        "Benutzer",
        "Passwort",
        "Gruppe",
        "Seite",
        "Datei",
        "Feld",
        "gültig",
        "erforderlich",
    ]
    refs = [" ".join(rng.sample(words, 4)) for _ in range(40)]
    close = [" ".join(ref.split()[:3]) for ref in refs]  # a drops the last word
    far = [" ".join(ref.split()[:1]) for ref in refs]  # b keeps only the first
    examples = [Example(str(i), "x", ref) for i, ref in enumerate(refs)]
    a, b = chrf.statistics(close, examples), chrf.statistics(far, examples)
    scores = {
        ("a", "all"): {(str(i), "random"): tuple(row) for i, row in enumerate(a)},
        ("b", "all"): {(str(i), "random"): tuple(row) for i, row in enumerate(b)},
    }
    comparison = Comparison("a - b", (Term("a", "all"), Term("b", "all", -1.0)), ">")
    found = estimate(comparison, scores, corpus=chrf.corpus)
    expected = chrf.corpus(np.sum(a, axis=0)) - chrf.corpus(np.sum(b, axis=0))
    assert found.value == pytest.approx(expected) and found.examples == 40
    assert 0 < found.lo < found.value < found.hi
    assert outcome(comparison, scores, corpus=chrf.corpus).verdict == "holds"
    assert estimate(comparison, scores, corpus=chrf.corpus) == found  # deterministic
