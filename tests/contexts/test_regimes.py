"""Training regimes and test modes (SPEC sections 2-3) through the real contexts stage."""

import dataclasses
import random
from collections import Counter

import numpy as np
import pytest
from helpers import excluded_for, reference_scores, same_ranking, top_of

from icl_bench import Single
from icl_bench.contexts import build as contexts
from icl_bench.contexts.build import ContextConfig, training_set
from icl_bench.contexts.modes import MODES
from icl_bench.contexts.samplers import Empty, Paraphrase, Random, Similar
from icl_bench.core import plugins
from icl_bench.core.errors import UsageError
from icl_bench.core.types import Regime
from icl_bench.sweep.plan import resolve_regimes

K = 4
MANY = ContextConfig(k=K, seed=5, epochs=14)  # 302 pool examples x 14 epochs = 4228 instances
ONCE = ContextConfig(k=K, seed=5)
REGIMES = (
    "contrastive",
    "contrastive-no-paraphrase",
    "contrastive-no-similar",
    "random",
    "random+similar",
    "similar",
    "similar-augmented",
    "zero",
)
EXPECTED = {
    "contrastive": {"random": 0.2, "similar": 0.2, "one_near": 0.6 * 0.7, "paraphrase": 0.6 * 0.3},
    "contrastive-no-paraphrase": {"random": 0.2, "similar": 0.2, "one_near": 0.6},
    "contrastive-no-similar": {"random": 0.2, "one_near": 0.8 * 0.7, "paraphrase": 0.8 * 0.3},
    "random+similar": {"random": 0.5, "similar": 0.5},
    "random": {"random": 1.0},
    "similar": {"similar": 1.0},
    "similar-augmented": {"similar": 1.0},
    "zero": {"empty": 1.0},
}
TOLERANCE = 0.025  # > 3.5 standard deviations of a proportion over 4228 draws


def proportions(records):
    counts = Counter(r["sampler"] for r in records)
    return {name: n / len(records) for name, n in counts.items()}


def assert_proportions(records, expected):
    observed = proportions(records)
    assert set(observed) == {name for name, p in expected.items() if p > 0}, observed
    for name, p in expected.items():
        assert observed.get(name, 0.0) == pytest.approx(p, abs=TOLERANCE), (name, observed)


@pytest.fixture(scope="module")
def many(words_task, words_pool):
    cache = {}

    def get(regime: Regime):
        key = (regime.name, tuple(sorted(regime.params().items())))
        if key not in cache:
            cache[key] = training_set(words_task, words_pool, regime, MANY)
        return cache[key]

    return get


@pytest.fixture(scope="module")
def once(words_task, words_pool):
    return {name: training_set(words_task, words_pool, plugins.regimes[name], ONCE) for name in REGIMES}


@pytest.fixture(scope="module")
def modes(words_task, words_pool):
    return {
        name: contexts.mode_records(words_task, words_pool, "test", mode, ONCE)
        for name, mode in MODES.items()
    }


@pytest.fixture(scope="module")
def inputs(words_task, words_pool):
    """id -> input of every pool and test example."""
    return {ex.id: ex.input for ex in words_pool.examples + words_task.load("test")}


def test_registered_regimes():
    assert set(plugins.regimes) >= set(REGIMES)
    contrastive = plugins.regimes["contrastive"]
    assert (contrastive.p_random, contrastive.p_similar, contrastive.p_paraphrase, contrastive.top_m) == (
        0.2,
        0.2,
        0.3,
        16,
    )
    assert plugins.regimes["contrastive-no-paraphrase"].p_paraphrase == 0.0
    assert plugins.regimes["contrastive-no-similar"].p_similar == 0.0
    assert plugins.regimes["similar-augmented"].augment_pool
    assert list(MODES) == ["random", "similar", "one-near", "paraphrase"]


@pytest.mark.parametrize("name", REGIMES)
def test_sampler_proportions(name, many):
    records = many(plugins.regimes[name])
    assert len(records) == 302 * 14
    assert_proportions(records, EXPECTED[name])


def test_set_style_reconfiguration_changes_proportions(many):
    base = plugins.regimes["contrastive"]
    changed = dataclasses.replace(base, p_random=0.5, p_similar=0.1, p_paraphrase=0.5)
    assert_proportions(many(changed), {"random": 0.5, "similar": 0.1, "one_near": 0.2, "paraphrase": 0.2})
    (resolved,) = resolve_regimes(
        "contrastive",
        ["contrastive.p_random=0.5", "contrastive.p_similar=0.1", "contrastive.p_paraphrase=0.5"],
    )
    assert resolved == changed
    assert resolved.params()["p_random"] == 0.5 and base.params()["p_random"] == 0.2
    (similar,) = resolve_regimes("similar", ["similar.min_mean_sim=0.25"])
    assert similar.min_mean_sim == 0.25 and similar.sampler == Similar()


@pytest.mark.parametrize(
    "change",
    [
        {"p_random": 1.5},
        {"p_random": -0.1},
        {"p_similar": 2},
        {"p_paraphrase": 1.01},
        {"p_random": 0.7, "p_similar": 0.4},
        {"top_m": 0},
    ],
)
def test_invalid_parameters_raise_usage_error(change):
    with pytest.raises(UsageError, match="contrastive"):
        dataclasses.replace(plugins.regimes["contrastive"], **change)


def test_boundary_probabilities_are_valid(many):
    only_near = dataclasses.replace(
        plugins.regimes["contrastive"], p_random=0.0, p_similar=0.0, p_paraphrase=1.0
    )
    assert_proportions(many(only_near), {"paraphrase": 1.0})


def test_target_never_in_any_context(once, modes, inputs, words_task, words_pool):
    rows = [r for records in once.values() for r in records] + [
        r for records in modes.values() for r in records
    ]
    assert len(rows) == len(REGIMES) * 302 + 4 * 61
    for record in rows:
        synthetic = {s["id"]: s["input"] for s in record["synthetic"]}
        context_inputs = [synthetic.get(i) or inputs[i] for i in record["context_ids"]]
        assert record["id"] not in record["context_ids"]
        assert inputs[record["id"]] not in context_inputs, record["id"]


def test_paraphrases_only_in_paraphrase_contexts_at_near(once, modes):
    seen_para = 0
    for name, records in [*once.items(), *(("mode:" + m, r) for m, r in modes.items())]:
        for record in records:
            synthetic = [s["id"] for s in record["synthetic"]]
            assert all(i.endswith("~para") for i in synthetic)
            assert synthetic == [i for i in record["context_ids"] if i.endswith("~para")]
            if name == "similar-augmented":
                continue  # the augmented pool holds every target's paraphrase
            if record["sampler"] == "paraphrase":
                seen_para += 1
                assert synthetic == [record["id"] + "~para"]
                assert record["context_ids"][record["near"]] == record["id"] + "~para"
            else:
                assert synthetic == [], (name, record)
    assert seen_para > 61  # the paraphrase mode plus the contrastive regimes' paraphrase component


def test_contrastive_one_near_comes_from_the_top16(once, words_pool, reference):
    index = {ex.id: i for i, ex in enumerate(words_pool.examples)}
    records = [r for r in once["contrastive"] if r["sampler"] == "one_near"]
    assert len(records) > 100
    for record in records:
        target = words_pool.examples[index[record["id"]]]
        scores = reference_scores(reference, target.input.split())
        top16 = top_of(scores, 16, excluded_for(words_pool, target))
        near = index[record["context_ids"][record["near"]]]
        assert near in top16 or scores[near] >= scores[top16[-1]] - 1e-6


def test_similar_augmented_contains_the_targets_own_paraphrase(once):
    records = once["similar-augmented"]
    others = 0
    for record in records:
        assert record["sampler"] == "similar" and record["near"] is None
        assert record["id"] + "~para" in record["context_ids"]
        others += any(i.endswith("~para") and i != record["id"] + "~para" for i in record["context_ids"])
    assert all(not r["synthetic"] for r in once["similar"])
    assert others > 0  # the pool holds the other targets' paraphrases too


def test_test_modes(modes, words_pool, words_task, reference):
    index = {ex.id: i for i, ex in enumerate(words_pool.examples)}
    targets = {ex.id: ex for ex in words_task.load("test")}
    assert [len(r) for r in modes.values()] == [61] * 4
    near_positions = Counter()
    for record in modes["one-near"]:
        target = targets[record["id"]]
        scores = reference_scores(reference, target.input.split())
        best = top_of(scores, 1, excluded_for(words_pool, target))
        same_ranking([index[record["context_ids"][record["near"]]]], best, scores)
        near_positions[record["near"]] += 1
    assert set(near_positions) == set(range(K))
    for record in modes["similar"]:
        target = targets[record["id"]]
        scores = reference_scores(reference, target.input.split())
        expected = top_of(scores, K, excluded_for(words_pool, target))
        same_ranking([index[i] for i in record["context_ids"]], expected, scores)
    assert {r["sampler"] for r in modes["random"]} == {"random"}
    assert {r["sampler"] for r in modes["paraphrase"]} == {"paraphrase"}
    assert len({r["near"] for r in modes["paraphrase"]}) == K
    for mode, records in modes.items():
        assert all(r["mode"] == mode and r["split"] == "test" for r in records)


def test_max_sim_is_the_max_cosine(once, modes, inputs, words_task):
    rows = [r for records in once.values() for r in records] + [
        r for records in modes.values() for r in records
    ]
    for record in rows:
        if not record["context_ids"]:
            assert record["max_sim"] is None and record["mean_sim"] is None
            continue
        synthetic = {s["id"]: s["input"] for s in record["synthetic"]}
        texts = [inputs[record["id"]]] + [synthetic.get(i) or inputs[i] for i in record["context_ids"]]
        vectors = words_task.embed(texts)
        sims = vectors[1:] @ vectors[0]
        assert record["max_sim"] == pytest.approx(float(sims.max()), abs=2e-6)
        assert record["mean_sim"] == pytest.approx(float(sims.mean()), abs=2e-6)
    assert all(r["max_sim"] is None for r in once["zero"])
    assert max(r["max_sim"] for r in modes["paraphrase"]) == pytest.approx(1.0)  # a shuffle: same bag


def test_min_mean_sim_filter_drops_records(words_task, words_pool):
    similar = plugins.regimes["similar"]
    full = training_set(words_task, words_pool, similar, ONCE)
    threshold = float(np.median([r["mean_sim"] for r in full]))
    kept = training_set(words_task, words_pool, dataclasses.replace(similar, min_mean_sim=threshold), ONCE)
    assert 0 < len(kept) < len(full)
    assert kept == [r for r in full if r["mean_sim"] > threshold]
    zero = dataclasses.replace(plugins.regimes["zero"], min_mean_sim=0.0)
    assert training_set(words_task, words_pool, zero, ONCE) == []  # empty contexts have no similarity


def test_records_render_prompts(once, words_task, inputs):
    record = next(r for r in once["random"] if r["id"] == "tr-0003")
    lines = record["prompt"].split("\n")
    assert len(lines) == 2 * K + 2
    assert lines[-2:] == [f"Input: {inputs['tr-0003']}", "Output:"]
    assert record["completion"] == " " + record["output"]
    assert lines[0] == f"Input: {inputs[record['context_ids'][0]]}"


def test_epochs_draw_fresh_contexts(many):
    records = many(plugins.regimes["random"])
    first = {r["id"]: r["context_ids"] for r in records if r["epoch"] == 0}
    second = {r["id"]: r["context_ids"] for r in records if r["epoch"] == 1}
    assert first.keys() == second.keys()
    assert sum(first[i] != second[i] for i in first) > 0.9 * len(first)


def test_single_regime_components():
    regime = Single("x", "y", sampler=Random())
    assert regime.components() == ((1.0, Random()),)
    assert regime.params() == {"augment_pool": False, "min_mean_sim": None, "sampler": "Random()"}


class _AlmostOne(random.Random):
    """An RNG whose first U(0,1) draw is the largest double below 1 (a legal value of random())."""

    def __init__(self):
        super().__init__(0)
        self.first = True

    def random(self):
        if self.first:
            self.first = False
            return 1.0 - 2.0**-53
        return super().random()


def test_zero_probability_component_is_never_drawn(words_pool, words_task):
    """contrastive-no-paraphrase with p_random = p_similar = 0.05: the component probabilities sum to
    0.9999999999999999 in floating point; a draw above that must not fall through to the
    probability-0 paraphrase component."""
    regime = dataclasses.replace(plugins.regimes["contrastive-no-paraphrase"], p_random=0.05, p_similar=0.05)
    assert sum(p for p, _ in regime.components()) < 1.0
    context = regime.sample(words_task.load("test")[0], words_pool, K, _AlmostOne())
    assert context.sampler != "paraphrase"


def test_components_cover_the_unit_interval():
    for name in REGIMES:
        parts = plugins.regimes[name].components()
        assert sum(p for p, _ in parts) == pytest.approx(1.0)
        assert all(p >= 0 for p, _ in parts)
    contrastive = plugins.regimes["contrastive"].components()
    assert [type(s) for _, s in contrastive][:2] == [Random, Similar]
    assert isinstance(contrastive[-1][1], Paraphrase)
    assert plugins.regimes["zero"].components() == ((1.0, Empty()),)
