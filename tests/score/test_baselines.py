"""Trivial baselines: scored without a model on the sweep's own records, shown beside every model."""

import json
from collections import Counter

import numpy as np
import pytest
from helpers import hashed_embed

from icl_bench import Baseline, Example
from icl_bench.contexts.build import ContextConfig, build_contexts, read_test_records
from icl_bench.core.errors import UsageError
from icl_bench.core.files import write_jsonl
from icl_bench.core.store import Store
from icl_bench.core.types import BASELINE_MODEL, Case
from icl_bench.report.leaderboard import write_leaderboard
from icl_bench.score.baselines import CopyNearest, Majority, baseline_records, baselines_of, cases
from icl_bench.score.claims import task_verdicts
from icl_bench.score.schema import Record


@pytest.fixture
def test_records(registered_words, tmp_path):
    config = ContextConfig(k=4, seed=3, max_pool=120, max_test=30)
    contexts = build_contexts(registered_words, (), config, Store(tmp_path / "store"))
    return read_test_records(contexts.test, registered_words)


def test_majority_is_the_pools_most_frequent_output_first_on_ties():
    pool = [Example("a", "x", "odd"), Example("b", "y", "even"), Example("c", "z", "even")]
    assert Majority().predict(pool, [Case("q", (), ())] * 2) == ["even", "even"]
    tied = [Example("a", "x", "odd"), Example("b", "y", "even")]
    assert Majority().predict(tied, [Case("q", (), ())]) == ["odd"]
    with pytest.raises(UsageError, match="training pool"):
        Majority().predict([], [Case("q", (), ())])


def test_copy_nearest_copies_the_most_similar_context_output_first_on_ties():
    context = (Example("a", "x", "one"), Example("b", "y", "two"), Example("c", "z", "three"))
    found = CopyNearest().predict(
        [], [Case("q", context, (0.1, 0.9, 0.3)), Case("q", context, (0.5, 0.2, 0.5)), Case("q", (), ())]
    )
    assert found == ["two", "one", ""]


def test_cases_carry_each_context_examples_similarity_and_never_the_gold(registered_words, test_records):
    found = cases(registered_words, test_records)
    assert len(found) == len(test_records)
    for record, case in zip(test_records, found, strict=True):
        assert [ex.id for ex in case.context] == record["context_ids"]
        expected = hashed_embed([ex.input for ex in case.context]) @ hashed_embed([case.input])[0]
        assert case.sims == pytest.approx(tuple(expected), abs=1e-6)
        assert round(max(case.sims), 6) == pytest.approx(record["max_sim"], abs=1e-6)
        assert not hasattr(case, "output")


def test_baseline_records_score_every_record_with_the_tasks_metric(registered_words, test_records):
    pool = registered_words.load("train")[:120]
    records = baseline_records(registered_words, test_records, pool)
    keys = {(r["split"], r["mode"], r["id"]) for r in test_records}
    by_regime: dict[str, list[dict]] = {}
    for r in records:
        assert r["model"] == BASELINE_MODEL
        by_regime.setdefault(r["regime"], []).append(r)
    assert sorted(by_regime) == ["copy-nearest", "majority"]
    for rows in by_regime.values():
        assert {(r["split"], r["mode"], r["id"]) for r in rows} == keys
    [(most, _)] = Counter(ex.output for ex in pool).most_common(1)
    golds = {ex.id: ex.output for ex in registered_words.load("test")}
    for r in by_regime["majority"]:
        assert r["prediction"] == most and r["score"] == float(golds[r["id"]] == most)
    # The word-shuffle paraphrase has the target's words: its sim is 1, and it carries the gold output,
    # so copying it is always right: copy-nearest is the ceiling of copying.
    paraphrase = [r for r in by_regime["copy-nearest"] if r["mode"] == "paraphrase"]
    assert paraphrase and all(r["score"] == 1.0 for r in paraphrase)


class Constant(Baseline):
    description = "a fixed string (tests only)"

    def __init__(self, name: str, output: str):
        self.name, self.output = name, output

    def predict(self, pool, cases):
        return [self.output] * len(cases)


def test_a_task_adds_its_own_baselines_and_names_stay_unique(registered_words, test_records, monkeypatch):
    monkeypatch.setattr(type(registered_words), "baselines", lambda self: (Constant("always-odd", "odd"),))
    assert [b.name for b in baselines_of(registered_words)] == ["majority", "copy-nearest", "always-odd"]
    records = baseline_records(registered_words, test_records, registered_words.load("train"))
    assert {r["prediction"] for r in records if r["regime"] == "always-odd"} == {"odd"}
    monkeypatch.setattr(type(registered_words), "baselines", lambda self: (Constant("majority", "odd"),))
    with pytest.raises(UsageError, match="name is taken"):
        baselines_of(registered_words)


def test_a_context_that_no_longer_matches_its_max_sim_is_refused(registered_words, test_records):
    changed = [dict(test_records[0], max_sim=0.123)]
    with pytest.raises(UsageError, match="rebuild the contexts"):
        cases(registered_words, changed)


def _records(scores: dict[tuple[str, str], float], n: int = 40) -> list[Record]:
    """n examples x 2 modes in the Low bin, each (model, regime) with a constant score."""
    return [
        Record("toy", model, regime, "test", mode, f"e{i:02d}", value, 0.1)
        for (model, regime), value in scores.items()
        for i in range(n)
        for mode in ("random", "similar")
    ]


def test_c1_is_judged_against_every_trivial_baseline():
    rng = np.random.default_rng(0)
    noisy = [
        Record(r.task, r.model, r.regime, r.split, r.mode, r.id, float(rng.uniform()) * 0.1 + r.score, 0.1)
        for r in _records({("m", "base"): 0.0, ("m", "zero"): 0.3, (BASELINE_MODEL, "majority"): 0.6})
    ]
    [verdicts] = task_verdicts("toy", noisy, (0.3, 0.6))
    c1 = next(c for c in verdicts.claims if c.claim.id == "C1")
    assert [o.comparison.text for o in c1.outcomes] == [
        "zero > base in Low",
        "zero > majority in Low",
        "zero > copy-nearest in Low",
    ]
    assert [o.verdict for o in c1.outcomes] == ["holds", "contradicted", "not run"]
    assert c1.verdict == "contradicted"  # beating base alone is not learning the task
    assert verdicts.model == "m"  # baselines are references, not a model with claims of its own


def test_leaderboard_shows_baselines_in_italics_never_best(tmp_path):
    results = tmp_path / "results" / "toy"
    records = _records({("m", "base"): 0.1, ("m", "zero"): 0.2, (BASELINE_MODEL, "majority"): 0.9})
    for model, regime in {(r.model, r.regime) for r in records}:
        rows = [
            {
                **{k: getattr(r, k) for k in ("task", "model", "regime", "split", "mode", "id", "score")},
                "max_sim": r.max_sim,
                "metrics": {},
                "prediction": "",
            }
            for r in records
            if (r.model, r.regime) == (model, regime)
        ]
        name = "baselines.jsonl" if model == BASELINE_MODEL else f"{model}/{regime}.jsonl"
        write_jsonl(results / name, rows)
    (results / "bins.json").write_text(json.dumps({"method": "fixed", "edges": [0.3, 0.6]}))
    write_leaderboard(tmp_path / "results", tmp_path / "board")
    text = (tmp_path / "board" / "leaderboard.md").read_text()
    assert "| *majority* | 0.900 [0.900, 0.900] | 0.900 [0.900, 0.900] |" in text
    assert "| zero | **0.200 [0.200, 0.200]** |" in text
    data = json.loads((tmp_path / "board" / "leaderboard.json").read_text())
    assert any(row["model"] == BASELINE_MODEL for row in data["tasks"]["toy"]["rows"])
