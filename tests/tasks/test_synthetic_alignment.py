"""The synthetic-alignment task: data, automata, metric, paraphraser and task-specific similarity."""

import itertools
import random

import numpy as np
import pytest

from icl_bench import Example
from icl_bench.core.errors import UsageError
from icl_bench.tasks import synthetic_alignment as sa

TASK = sa.TASK
METRIC = sa.PfaSegmentAccuracy(TASK)
PARAPHRASE = sa.SymbolShuffle(TASK)


def test_default_task_shape():
    assert TASK.name == "synthetic-alignment"
    assert (TASK.metric, TASK.paraphraser) == ("pfa-segment-accuracy", "symbol-shuffle")
    assert (METRIC.name, PARAPHRASE.name) == (TASK.metric, TASK.paraphraser)
    assert "exact-match" in TASK.extra_metrics
    assert len(sa.SYMBOLS) == 25 and sa.SYMBOLS == "ABCDEFGHIJKLMNOPQRSTUVWXY"
    assert sorted(TASK.permutation) == [0, 1, 2] and TASK.permutation != [0, 1, 2]
    assert len({pfa.letters for pfa in TASK.automata.values()}) == 25


def test_splits_and_ids():
    train, test = TASK.load("train"), TASK.load("test")
    assert (len(train), len(test)) == (200, 200)
    assert train[7].id == "train-0007" and test[0].id == "test-0000"
    for ex in train + test:
        symbols = ex.input.split()
        assert len(symbols) == len(set(symbols)) == 3 and set(symbols) <= set(sa.SYMBOLS)
        segments = ex.output.split(" ")
        assert len(segments) == 3 and all(len(s) == 4 and s.islower() for s in segments)
    subsets = {ex.meta["subset"] for ex in train}
    assert None in subsets and len(subsets) > 1  # both random (25) and similar (12-symbol) data
    for ex in train:
        if ex.meta["subset"] is not None:
            assert set(ex.input.split()) <= set(TASK.subsets[ex.meta["subset"]])


def test_unknown_split():
    with pytest.raises(UsageError, match="train, test"):
        TASK.load("validation")


def test_deterministic_per_seed():
    again = sa.SyntheticAlignment()
    assert again.load("train") == TASK.load("train") and again.load("test") == TASK.load("test")
    other = sa.SyntheticAlignment(name="synthetic-alignment-s1", seed=1)
    assert [ex.output for ex in other.load("train")] != [ex.output for ex in TASK.load("train")]
    assert other.automata != TASK.automata
    # the example draws themselves depend on seed and split, not only the automata
    full = [[ex.input for ex in task.load("train") if ex.meta["subset"] is None] for task in (TASK, other)]
    assert full[0] != full[1]
    assert [ex.input for ex in TASK.load("train")] != [ex.input for ex in TASK.load("test")]
    assert other.metric == "pfa-segment-accuracy@synthetic-alignment-s1"


def test_prompt_format():
    ex = TASK.load("train")[0]
    assert TASK.prompt([ex], ex) == f"{ex.input} -> {ex.output}\n{ex.input} ->"


def test_accepts_matches_brute_force():
    for symbol, pfa in TASK.automata.items():
        sampled = {pfa.sample(random.Random(i)) for i in range(200)}
        accepted = {"".join(s) for s in itertools.product(pfa.letters, repeat=4) if pfa.accepts("".join(s))}
        assert sampled <= accepted, symbol
        assert len(accepted) <= 2**4  # each state allows only 2 of the 3 letters
        assert not pfa.accepts(pfa.letters[0] * 3) and not pfa.accepts(pfa.letters[0] * 5)


def test_gold_outputs_score_one():
    examples = TASK.load("train") + TASK.load("test")
    assert METRIC([ex.output for ex in examples], examples) == [1.0] * len(examples)


def test_corrupted_and_missing_segments():
    ex = TASK.load("test")[3]
    segments = ex.output.split()
    aligned = [ex.input.split()[p] for p in TASK.permutation]
    foreign = next(c for c in "abcdefghijklmnopqrstuvwxyz" if c not in TASK.automata[aligned[1]].letters)
    corrupted = " ".join([segments[0], foreign * 4, segments[2]])
    assert METRIC([corrupted], [ex]) == [pytest.approx(2 / 3)]
    assert METRIC([" ".join(segments[:2])], [ex]) == [pytest.approx(2 / 3)]
    assert METRIC([ex.output + " extra"], [ex]) == [1.0]
    assert METRIC([""], [ex]) == [0.0]


def test_other_symbols_segment_rejected():
    a, b = next(
        (a, b)
        for a, b in itertools.permutations(sa.SYMBOLS, 2)
        if not set(TASK.automata[a].letters) & set(TASK.automata[b].letters)
    )
    rest = [s for s in sa.SYMBOLS if s not in (a, b)][:2]
    symbols = [a, *rest]  # position 0 holds `a`; find the output slot aligned to it
    ex = Example("probe", " ".join(symbols), TASK.output_for(symbols, random.Random(0)))
    slot = TASK.permutation.index(0)
    segments = ex.output.split()
    segments[slot] = TASK.automata[b].sample(random.Random(1))  # disjoint letters: cannot be accepted
    assert not TASK.automata[a].accepts(segments[slot])
    assert METRIC([" ".join(segments)], [ex]) == [pytest.approx(2 / 3)]


def test_unpermuted_outputs_are_penalised():
    """Segments in input order (ignoring the hidden permutation) are right only at its fixed points."""
    examples, perm = TASK.load("test"), TASK.permutation
    unpermuted = []
    for ex in examples:
        segments = ex.output.split()
        unpermuted.append(" ".join(segments[perm.index(k)] for k in range(3)))
    fixed = sum(p == j for j, p in enumerate(perm)) / 3
    assert fixed < 1
    assert np.mean(METRIC(unpermuted, examples)) < fixed + 0.1


def test_paraphrase():
    for ex in TASK.load("test")[:50]:
        para = PARAPHRASE(ex, random.Random(ex.id))
        assert para.id == f"{ex.id}~para" and para.meta == {"paraphrase_of": ex.id}
        assert sorted(para.input.split()) == sorted(ex.input.split())
        assert para.input != ex.input
        assert METRIC([para.output], [para]) == [1.0]
    single = sa.SyntheticAlignment(name="one", n_symbols=1)
    ex = single.load("train")[0]
    assert sa.SymbolShuffle(single)(ex, random.Random(0)).input == ex.input  # nothing to shuffle


def test_embed_and_bm25_tokens():
    assert TASK.bm25_tokens("A C B") == ["A", "C", "B"]
    vectors = TASK.embed(["A C B", "B A C", "A D E", "X Y W", ""])
    assert vectors.shape == (5, 25) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors[:4], axis=1), 1.0) and not vectors[4].any()
    sims = vectors @ vectors.T
    assert sims[0, 1] == pytest.approx(1.0)
    assert sims[0, 2] == pytest.approx(1 / 3)
    assert sims[0, 3] == pytest.approx(0.0)


def test_registered_plugins():
    hooks = {}
    for hook in ("register_tasks", "register_paraphrasers", "register_metrics"):
        found = []
        getattr(sa, hook)(found.append)
        hooks[hook] = found
    assert hooks["register_tasks"] == [TASK]
    assert [p.name for p in hooks["register_paraphrasers"]] == ["symbol-shuffle"]
    assert hooks["register_paraphrasers"][0].task is TASK
    assert [m.name for m in hooks["register_metrics"]] == ["pfa-segment-accuracy"]
    assert hooks["register_metrics"][0].task is TASK


def test_smaller_alphabet():
    small = sa.SyntheticAlignment(name="sa-small", alphabet_size=8, subset_size=5, n_subsets=2)
    assert sorted(small.automata) == list("ABCDEFGH")
    used = {s for ex in small.load("train") for s in ex.input.split()}
    assert used <= set("ABCDEFGH") and len(used) == 8
    assert all(set(subset) <= set("ABCDEFGH") for subset in small.subsets)
    # the 25-symbol task draws the same automata as before the alphabet became a choice
    assert TASK.automata == sa.SyntheticAlignment(alphabet_size=25).automata
    with pytest.raises(UsageError, match="alphabet_size"):
        sa.SyntheticAlignment(name="bad", alphabet_size=4, subset_size=5)
