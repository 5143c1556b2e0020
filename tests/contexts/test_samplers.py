"""Context samplers and the pool (SPEC section 1), checked against rank_bm25 as an independent reference."""

import random
from collections import Counter
from collections.abc import Callable

import numpy as np
import pytest
from helpers import excluded_for, max_document_frequency, reference_scores, same_ranking, top_of

from icl_bench import Context, Example
from icl_bench.contexts.pool import NoParaphrase, Pool
from icl_bench.contexts.samplers import Empty, FellBack, OneNear, Paraphrase, Random, Similar
from icl_bench.core.errors import UsageError
from icl_bench.paraphrase.llm import same_input

K = 4
ALL_SAMPLERS = (Empty(), Random(), Similar(), OneNear(top_m=1), OneNear(top_m=16), Paraphrase())


def targets(pool, task):
    """Test targets plus pool members (the training case), twins and the test duplicate included."""
    return task.load("test") + pool.examples[:40] + [ex for ex in pool.examples if ex.id.startswith("twin")]


def ids(context):
    return [ex.id for ex in context.examples]


def test_corpus_has_no_majority_term(words_pool):
    """Precondition for comparing with rank_bm25: no idf floor is involved."""
    assert max_document_frequency([ex.input.split() for ex in words_pool.examples]) < 0.5


def test_pool_exclusion_rule(words_pool, words_task):
    by_id = {ex.id: i for i, ex in enumerate(words_pool.examples)}
    twin = words_task.load("train")[by_id["twin-a"]]
    assert words_pool.excluded(twin) == {by_id["twin-a"], by_id["tr-0005"]}
    assert words_pool.excluded(words_pool.examples[by_id["tr-0005"]]) == {by_id["twin-a"], by_id["tr-0005"]}
    dup = words_task.load("test")[-1]
    assert dup.id == "te-dup" and words_pool.excluded(dup) == {by_id["tr-0042"]}
    assert words_pool.excluded(words_task.load("test")[0]) == frozenset()
    assert words_pool.available(twin) == len(words_pool) - 2


def test_empty_pool_is_a_usage_error(words_task):
    with pytest.raises(UsageError, match="empty pool"):
        Pool(words_task, [])


def test_paraphrase_needs_a_paraphraser(words_task):
    pool = Pool(words_task, words_task.load("train")[:10])
    with pytest.raises(UsageError, match="paraphraser"):
        Paraphrase()(words_task.load("test")[0], pool, K, random.Random(0))


@pytest.mark.parametrize("sampler", ALL_SAMPLERS, ids=lambda s: f"{s.name}-{getattr(s, 'top_m', '')}")
def test_target_never_in_context(sampler, words_pool, words_task):
    for target in targets(words_pool, words_task):
        for draw in range(3):
            context = sampler(target, words_pool, K, random.Random(f"{target.id}/{draw}"))
            assert context.sampler == sampler.name
            assert len(context.examples) == (0 if sampler.name == "empty" else K)
            assert len(set(ids(context))) == len(context.examples)
            assert target.id not in ids(context)
            assert target.input not in [ex.input for ex in context.examples]


def test_random_is_uniform_over_the_pool(words_pool, words_task):
    target = words_pool.examples[0]
    counts = Counter()
    draws = 3000
    for draw in range(draws):
        counts.update(ids(Random()(target, words_pool, K, random.Random(draw))))
    assert target.id not in counts
    expected = draws * K / (len(words_pool) - 1)  # ~39.9 per example
    assert len(counts) == len(words_pool) - 1
    chi2 = sum((counts[ex.id] - expected) ** 2 / expected for ex in words_pool.examples[1:])
    assert chi2 < 1.5 * (len(words_pool) - 2)  # df ~ 300; a biased sampler lands far above


def test_pool_random_never_exceeds_what_is_available(words_task):
    pool = Pool(words_task, words_task.load("train")[:6])
    target = pool.examples[2]
    drawn = pool.random(target, 10, random.Random(0))
    assert sorted(drawn) == [0, 1, 3, 4, 5]
    assert pool.random(target, 2, random.Random(0), also=frozenset({0, 1, 3})) in ([4, 5], [5, 4])


def test_similar_is_the_bm25_top_k(words_pool, words_task, reference):
    identical = 0
    all_targets = targets(words_pool, words_task)
    for target in all_targets:
        scores = reference_scores(reference, target.input.split())
        expected = top_of(scores, K, excluded_for(words_pool, target))
        context = Similar()(target, words_pool, K, random.Random(0))
        ours = [words_pool.examples.index(ex) for ex in context.examples]
        identical += same_ranking(ours, expected, scores)
        assert context.near is None
    assert identical >= 0.95 * len(all_targets)


def test_test_time_one_near_is_the_bm25_top1_at_a_random_position(words_pool, words_task, reference):
    positions = Counter()
    for target in targets(words_pool, words_task):
        scores = reference_scores(reference, target.input.split())
        (best,) = top_of(scores, 1, excluded_for(words_pool, target))
        for draw in range(4):
            context = OneNear(top_m=1)(target, words_pool, K, random.Random(f"{target.id}:{draw}"))
            assert context.sampler == "one_near" and 0 <= context.near < K
            near = words_pool.examples.index(context.examples[context.near])
            same_ranking([near], [best], scores)
            positions[context.near] += 1
    total = sum(positions.values())
    assert set(positions) == set(range(K))
    assert all(abs(n / total - 1 / K) < 0.08 for n in positions.values()), positions


def test_training_one_near_samples_the_top16_by_score(words_pool, words_task, reference):
    sampler = OneNear(top_m=16)
    checked = 0
    for target in [words_task.load("test")[-1], *words_task.load("test"), *words_pool.examples]:
        scores = reference_scores(reference, target.input.split())
        top16 = top_of(scores, 16, excluded_for(words_pool, target))
        weights = scores[top16] / scores[top16].sum()
        if not (weights[0] > 2 * weights[-1] > 0 and np.abs(weights - 1 / 16).max() > 0.045):
            continue  # only targets whose candidates' scores clearly differ (uniform would fail below)
        checked += 1
        if checked > 3:
            break
        draws, chosen = 3000, Counter()
        for draw in range(draws):
            context = sampler(target, words_pool, K, random.Random(f"{target.id}/{draw}"))
            chosen[words_pool.examples.index(context.examples[context.near])] += 1
        assert set(chosen) <= set(top16)
        freq = np.array([chosen[i] / draws for i in top16])
        assert np.abs(freq - weights).max() < 0.02, (freq.round(3), weights.round(3))
        # higher scores are favoured: the drawn near examples score above the top-16 average
        assert sum(scores[i] * n for i, n in chosen.items()) / draws > scores[top16].mean()
        assert chosen[top16[0]] > chosen[top16[-1]]
    assert checked > 3


def test_paraphrase_sampler_puts_the_targets_own_paraphrase_at_near(words_pool, words_task):
    positions = set()
    for target in targets(words_pool, words_task):
        context = Paraphrase()(target, words_pool, K, random.Random(target.id))
        assert context.sampler == "paraphrase"
        near = context.examples[context.near]
        assert near.id == f"{target.id}~para"
        assert near.meta["paraphrase_of"] == target.id
        assert near.input != target.input and sorted(near.input.split()) == sorted(target.input.split())
        assert near.output == target.output
        others = [ex for i, ex in enumerate(context.examples) if i != context.near]
        assert all("paraphrase_of" not in ex.meta and ex in words_pool.examples for ex in others)
        positions.add(context.near)
    assert positions == set(range(K))


def test_samplers_are_deterministic_given_the_rng(words_pool, words_task):
    target = words_task.load("test")[9]
    for sampler in ALL_SAMPLERS:
        a = sampler(target, words_pool, K, random.Random("same"))
        b = sampler(target, words_pool, K, random.Random("same"))
        assert a == b


def test_duplicate_input_never_leaks_even_when_it_is_the_best_match(words_pool, words_task, reference):
    """A twin has the highest BM25 score of all against its double; it must still be excluded."""
    twin = next(ex for ex in words_pool.examples if ex.id == "twin-a")
    scores = reference_scores(reference, twin.input.split())
    assert set(top_of(scores, 2)) == excluded_for(words_pool, twin)
    for sampler in (Similar(), OneNear(top_m=1), OneNear(top_m=16)):
        for draw in range(20):
            context = sampler(twin, words_pool, K, random.Random(draw))
            assert not {"twin-a", "tr-0005"} & set(ids(context))


def test_k_one_contexts(words_pool, words_task):
    target = words_task.load("test")[0]
    assert len(OneNear()(target, words_pool, 1, random.Random(0)).examples) == 1
    context = Paraphrase()(target, words_pool, 1, random.Random(0))
    assert context.near == 0 and context.examples[0].id == f"{target.id}~para"


def test_paraphrase_of_meta_is_set_by_the_harness(words_pool):
    made = words_pool.paraphrase(Example("x1", "aa bb cc", "odd", {"keep": 1}), random.Random(0))
    assert made.id == "x1~para" and made.meta["paraphrase_of"] == "x1"


# --- a paraphrase that is the target itself -------------------------------------------------------------


def own_input_for(fails: set[str], variant: Callable[[str], str] = str):
    """A paraphraser that makes `variant` of the target's own input for the ids in `fails`, and
    otherwise reverses the words; y~ = y*."""

    def paraphrase(target: Example, rng: random.Random) -> Example:
        if target.id in fails:
            return Example("p", variant(target.input), target.output)
        return Example("p", " ".join(reversed(target.input.split())), target.output)

    return paraphrase


@pytest.mark.parametrize(
    "variant", [str, str.upper, lambda text: "  ".join(text.split()) + " "], ids=["same", "upper", "spaced"]
)
def test_a_paraphrase_that_is_the_target_is_no_paraphrase(words_task, variant):
    """Its input up to case and spacing (the LM stage's "the input"): NoParaphrase, never (x*, y*)."""
    test = words_task.load("test")
    fails = {test[0].id, test[2].id}
    pool = Pool(words_task, words_task.load("train"), own_input_for(fails, variant))
    for target in test[:4]:
        if target.id in fails:
            with pytest.raises(NoParaphrase, match=target.id):
                pool.paraphrase(target, random.Random(0))
            with pytest.raises(NoParaphrase):
                Paraphrase()(target, pool, K, random.Random(0))
        else:
            assert Paraphrase()(target, pool, K, random.Random(0)).sampler == "paraphrase"


def test_paraphrase_falls_back_to_its_fallbacks_own_context(words_task):
    """With a fallback the failed target gets exactly the context the fallback draws from the same rng
    (one_near: the natural near example the paraphrase would replace); other targets are untouched."""
    test = words_task.load("test")
    fails = {ex.id for ex in test[:10:2]}
    pool = Pool(words_task, words_task.load("train"), own_input_for(fails))
    with_fallback, plain = Paraphrase(fallback=OneNear(top_m=16)), Paraphrase()
    for target in test[:10]:
        for draw in range(3):
            context = with_fallback(target, pool, K, random.Random(f"{target.id}/{draw}"))
            if target.id in fails:
                expected = OneNear(top_m=16)(target, pool, K, random.Random(f"{target.id}/{draw}"))
                assert isinstance(context, FellBack) and context.instead_of == "paraphrase"
                assert (context.examples, context.sampler, context.near) == (
                    expected.examples,
                    "one_near",
                    expected.near,
                )
                assert not any(same_input(ex.input, target.input) for ex in context.examples)
            else:
                assert context == plain(target, pool, K, random.Random(f"{target.id}/{draw}"))
                assert type(context) is Context


def test_augmented_pool_adds_no_paraphrase_for_a_failed_target(words_task):
    train = words_task.load("train")[:30]
    fails = {ex.id for ex in train[:6]}
    pool = Pool(words_task, train, own_input_for(fails))
    left_out: list[Example] = []
    augmented = pool.augmented(train, lambda t: random.Random(t.id), left_out)
    assert [ex.id for ex in left_out] == [ex.id for ex in train[:6]]
    added = augmented.examples[len(train) :]
    assert [ex.meta["paraphrase_of"] for ex in added] == [ex.id for ex in train[6:]]
