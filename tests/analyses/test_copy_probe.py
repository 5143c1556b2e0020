"""The copy probe's other labels O (SPEC section 4, turn 3): a correct in-weights answer is not copying, a
blind copier of another slot is, and where the labels cannot tell them apart (two-label classification)
the probe is "not defined" in every output, with P3 not run.  The pure rules are tested directly; the
task-level cases use stand-in predictors on real probe contexts (no model)."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest
from helpers import WordShuffle, build_words_task, hashed_embed
from rich.console import Console

from icl_bench import Example
from icl_bench.analyses import probes
from icl_bench.contexts.build import ContextConfig, load_pool
from icl_bench.contexts.pool import Pool
from icl_bench.core import plugins
from icl_bench.tasks.classification import Classification

CONFIG = ContextConfig(k=4, max_pool=24, max_test=6)
N = 20


# --- the pure rules ---------------------------------------------------------------------------------


def test_other_slots_rule_out_the_icl_the_in_weights_and_the_paraphrase_label():
    # C deranged: x~ (position 0) now carries "b"; y* = y~ = "a" (a classification paraphrase)
    assert probes.other_slots(["b", "c", "a", "d"], 0, "a", "a") == (1, 3)
    # y~ != y* (synthetic-alignment): the slot now holding y~ is ruled out too
    assert probes.other_slots(["b", "c", "e", "d"], 0, "d", "a") == (1, 2)
    assert probes.other_slots(["b", " c", "a ", "d"], 0, "a", " a") == (1, 3)  # labels compared stripped
    # the old rule (every j != i*) would have kept position 2, where the gold answer sits
    assert 2 not in probes.other_slots(["b", "c", "a", "d"], 0, "a", "a")


def test_too_few_labels_or_no_other_slot_is_not_defined():
    assert probes.other_slots(["neg", "pos", "pos", "neg"], 1, "pos", "pos") is None  # two labels
    assert probes.other_slots(["neg", "neg", "neg", "pos"], 3, "pos", "pos") is None
    # three distinct labels, but each is explained: y'_i* = "a", y* = "b", y~ = "c"
    assert probes.other_slots(["a", "b", "c", "a"], 0, "c", "b") is None
    assert probes.other_slots(["a", "b", "c", "d"], 0, "c", "b") == (3,)


def test_a_task_is_not_defined_when_most_examples_are():
    assert probes.defined_for_task(0, 20) and probes.defined_for_task(10, 20)
    assert not probes.defined_for_task(11, 20) and not probes.defined_for_task(1, 1)
    assert probes.defined_for_task(0, 0)


def test_undefined_values_are_left_out_of_the_cell_and_the_claims():
    ids = ("a", "b", "c", "d")
    states = (
        probes.State("base", 0),
        probes.State("random", 2),
        probes.State("similar", 2),
        probes.State("contrastive", 2),
    )
    flat = {"iwl": [0.5] * 4, "icl": [0.5] * 4}
    values = {
        "base@0": {**flat, "copy": [0.1, None, 0.1, 0.1]},
        "random@2": {**flat, "copy": [0.0, None, 0.2, 0.1]},
        "similar@2": {**flat, "copy": [0.9, None, 0.6, 0.9]},
        "contrastive@2": {**flat, "copy": [0.2, None, 0.0, 0.1]},
    }
    probed = probes.Probed("t", "m", "test", 4, ids, states, values)
    assert probed.undefined() == 1 and probed.copy_defined()
    rep = probes.report(probed)
    similar = rep.cells["similar@2"]["copy"]
    assert similar.n == 3 and similar.mean == pytest.approx(0.8)
    (p3,) = [v for v in rep.verdicts.claims if v.claim.id == "P3"]
    assert [o.estimate.examples for o in p3.outcomes] == [3, 3]
    assert p3.outcomes[0].estimate.value == pytest.approx(0.8 - 0.1)
    assert "not run" not in p3.claim.statement
    text = probes.markdown([rep])
    assert "The copy score is not defined on 1 of 4 probe examples" in text
    assert "its cells and P3 use the other 3." in text
    data = json.loads(probes.json_text([rep]))["probes"][0]
    assert data["copy"] == {"defined": True, "undefined": 1, "examples": 4}
    assert data["values"]["similar@2"]["copy"] == [0.9, None, 0.6, 0.9]


# --- stand-in predictors: (item, prompt name) -> prediction ------------------------------------------


def gold(item: probes.ProbeItem, name: str) -> str:
    """Pure in-weights learning: the target's gold output, whatever the context."""
    return item.target.output


def icl(item: probes.ProbeItem, name: str) -> str:
    """Pure ICL: the label attached to the paraphrase x~ (the nearest input); gold without a context."""
    context = item.contexts[name]
    return context[item.near].output if name in ("paraphrase", "deranged") else item.target.output


def other_slot(item: probes.ProbeItem, name: str) -> str:
    """A blind copier of another slot: the label of a context slot whose input is not x~ and whose label
    belongs to neither x~, x* nor the paraphrase (a random one, seeded per example)."""
    context = item.contexts[name]
    if not context:
        return "nothing"
    labels = {context[item.near].output, item.target.output, item.contexts["paraphrase"][item.near].output}
    choices = [ex.output for ex in context if ex.output not in labels] or [context[0].output]
    return random.Random(f"{item.target.id}|{name}").choice(choices)


def copy_values(task, items, model) -> list[float | None]:
    predictions = {name: [model(item, name) for item in items] for name in probes.PROMPTS}
    return probes.score(task, items, predictions)["copy"]


def raw_bleu(prediction: str, others: Sequence[Example]) -> float:
    """The score before the excess over gold: max over the slots of BLEU(prediction, y'_j) / 100."""
    bleu = plugins.metrics["bleu"]
    return max(bleu([prediction] * len(others), others)) / bleu.scale


def old_copy(item: probes.ProbeItem, prediction: str) -> float:
    """The rule before turn 3: max over every j != i* of BLEU(prediction, y'_j) / 100."""
    others = [ex for j, ex in enumerate(item.contexts["deranged"]) if j != item.near]
    return raw_bleu(prediction, others)


def raw_copy(item: probes.ProbeItem, prediction: str) -> float:
    """Turn 3's O with raw BLEU: max over j in O of BLEU(prediction, y'_j) / 100."""
    return raw_bleu(prediction, [item.contexts["deranged"][j] for j in probes.copy_slots(item)])


# --- a generation task: synthetic-alignment ---------------------------------------------------------


@pytest.fixture(scope="module")
def alignment():
    task = plugins.tasks["synthetic-alignment"]
    return task, probes.probe_items(task, load_pool(task, CONFIG), CONFIG, N)


def test_synthetic_alignment_copy_is_defined_and_scores_only_blind_copying(alignment):
    task, items = alignment
    found = {m.__name__: copy_values(task, items, m) for m in (gold, icl, other_slot)}
    assert all(v is not None for values in found.values() for v in values)  # 4 distinct labels each
    assert found["other_slot"] == [1.0] * N
    assert found["gold"] == [0.0] * N  # exactly 0: the excess over gold's own similarity
    assert np.mean(found["icl"]) < 0.1, found
    # the in-weights answer no longer counts the paraphrase's own label y~ (x*'s symbols) as copied
    before = [old_copy(item, item.target.output) for item in items]
    assert np.mean(before) > 0.05, before
    # nor its n-grams shared with the other labels (raw BLEU over O left that residue)
    residue = [raw_copy(item, item.target.output) for item in items]
    assert max(residue) > 0, residue


# --- a structured task: MTOP-like logical forms ----------------------------------------------------

WEATHER_PARIS = "[IN:GET_WEATHER [SL:LOCATION Paris ] ]"
WEATHER_LONDON = "[IN:GET_WEATHER [SL:LOCATION London ] ]"
ALARM = "[IN:CREATE_ALARM [SL:DATE_TIME tomorrow at 7 ] ]"
REMINDER = "[IN:CREATE_REMINDER [SL:TODO call mum ] [SL:DATE_TIME tonight ] ]"
MUSIC = "[IN:PLAY_MUSIC [SL:MUSIC_ARTIST_NAME Adele ] ]"


def mtop_item() -> probes.ProbeItem:
    """x* = "weather in Paris" (y* = WEATHER_PARIS); C holds its paraphrase x~ at i* = 0 and three other
    parses, one with the same intent; C deranged moves every label one slot on."""
    target = Example("t", "weather in Paris", WEATHER_PARIS)
    paraphrase = (
        Example("p", "what's the weather like in Paris", WEATHER_PARIS),
        Example("a", "weather in London", WEATHER_LONDON),
        Example("b", "wake me tomorrow at 7", ALARM),
        Example("c", "remind me to call mum tonight", REMINDER),
    )
    labels = [ex.output for ex in paraphrase]
    deranged = tuple(replace(ex, output=labels[(j + 1) % 4]) for j, ex in enumerate(paraphrase))
    contexts = {"random": paraphrase[1:], "empty": (), "paraphrase": paraphrase, "deranged": deranged}
    return probes.ProbeItem("test", target, contexts, dict.fromkeys(contexts, ""), 0, (0.25,) * 4)


def mtop_copy(prediction: str) -> float | None:
    item = mtop_item()
    predictions = {"random": [""], "empty": [""], "paraphrase": [WEATHER_PARIS], "deranged": [prediction]}
    return probes.score(ExactParse(), [item], predictions)["copy"][0]


class ExactParse:
    """An MTOP stand-in for `probes.score`: sim_y = exact match (the copy score does not use it)."""

    def output_similarity(self, prediction: str, reference: Example) -> float:
        return float(prediction.strip() == reference.output.strip())


def test_a_correct_parse_is_not_copying_a_parse_with_the_same_intent():
    item = mtop_item()
    assert probes.copy_slots(item) == (1, 2)  # C deranged: London (y'_i*), alarm, reminder, Paris (y*)
    others = [Example("o", "", label) for label in (WEATHER_LONDON, ALARM, MUSIC)]
    # raw BLEU / 100 of the gold parse against the same-intent parse is the reviewer's 0.79
    assert raw_bleu(WEATHER_PARIS, others) == pytest.approx(0.79, abs=0.005)
    assert probes.copy_score(WEATHER_PARIS, others, WEATHER_PARIS) == 0.0
    for label in (WEATHER_LONDON, ALARM, MUSIC):
        assert probes.copy_score(label, others, WEATHER_PARIS) == 1.0  # a blind copier of any slot
    # a wrong parse that copies nothing (another city) is as far from London as the gold one is
    assert probes.copy_score("[IN:GET_WEATHER [SL:LOCATION Rome ] ]", others, WEATHER_PARIS) == 0.0
    # part of a copy: between 0 and 1
    half = probes.copy_score("[IN:CREATE_ALARM [SL:DATE_TIME tomorrow ] ]", others, WEATHER_PARIS)
    assert 0.0 < half < 1.0
    # through probes.score, on a probe item whose C deranged holds the same-intent parse at i*
    assert mtop_copy(WEATHER_PARIS) == 0.0
    assert mtop_copy(ALARM) == 1.0 and mtop_copy(REMINDER) == 1.0
    assert mtop_copy(WEATHER_LONDON) == 0.0  # pure ICL: x~'s label now is y'_i*, not in O


def test_a_slot_as_similar_to_gold_as_gold_itself_is_not_in_o():
    # BLEU's tokenizer splits "]]" like " ] ]", so this label is y* to BLEU although not as a string
    others = [Example("o", "", "[IN:GET_WEATHER [SL:LOCATION Paris ]]")]
    assert probes.other_slots([ALARM, others[0].output, MUSIC], 0, WEATHER_PARIS, WEATHER_PARIS) == (1, 2)
    assert plugins.metrics["bleu"]([WEATHER_PARIS], others)[0] == pytest.approx(100.0)
    assert probes.copy_score(WEATHER_PARIS, others, WEATHER_PARIS) is None
    assert probes.copy_score(ALARM, [*others, Example("o", "", ALARM)], WEATHER_PARIS) == 1.0


# --- classification, y~ = y* -----------------------------------------------------------------------


class WordsClassification(Classification):
    """A classification task (the harness's own prompt and labels) over generated words: an mr-offline
    stand-in that needs no download; label = word count mod len(labels)."""

    paraphraser = "tests-shuffle"

    def __init__(self, name: str, labels: Sequence[str], train: list[Example], test: list[Example]):
        super().__init__(name, "generated words, labelled by length (tests only)", dict(enumerate(labels)))
        self._splits = {"train": train, "test": test}

    def load(self, split: str) -> list[Example]:
        self.check_split(split)
        return list(self._splits[split])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return hashed_embed(texts)


def classification(labels: Sequence[str]) -> tuple[WordsClassification, list[probes.ProbeItem]]:
    words = build_words_task()

    def relabel(examples: list[Example]) -> list[Example]:
        return [Example(ex.id, ex.input, labels[len(ex.input.split()) % len(labels)]) for ex in examples]

    task = WordsClassification(
        f"words-{len(labels)}", labels, relabel(words.load("train")), relabel(words.load("test"))
    )
    pool = Pool(task, task.load("train"), WordShuffle("tests-shuffle"))  # y~ = y*
    return task, probes.probe_items(task, pool, CONFIG, N)


def test_with_the_gold_label_in_context_an_in_weights_answer_scores_0_not_1():
    task, items = classification(["world", "sports", "business", "technology"])
    found = {m.__name__: copy_values(task, items, m) for m in (gold, icl, other_slot)}
    defined = [i for i, v in enumerate(found["gold"]) if v is not None]
    # four labels, k = 4: about half the contexts hold three distinct labels and one beyond y'_i*, y*
    assert len(defined) >= N // 4, found["gold"]
    assert [found["gold"][i] for i in defined] == [0.0] * len(defined)
    assert [found["icl"][i] for i in defined] == [0.0] * len(defined)
    assert [found["other_slot"][i] for i in defined] == pytest.approx([1.0] * len(defined))
    # before turn 3 the slot now holding y~ = y* counted, so the correct answer scored as a full copy
    assert [old_copy(items[i], items[i].target.output) for i in defined] == pytest.approx(
        [1.0] * len(defined)
    )


@pytest.fixture(scope="module")
def two_labels():
    return classification(["negative", "positive"])


def stand_in_report(task, items) -> probes.Report:
    states = [probes.State("base", 0)]
    models = {"base@0": icl}
    for regime, model in (("random", gold), ("similar", other_slot), ("contrastive", icl)):
        for step in (2, 4):
            states.append(probes.State(regime, step))
            models[f"{regime}@{step}"] = model
    values = {
        name: probes.score(task, items, {p: [m(it, p) for it in items] for p in probes.PROMPTS})
        for name, m in models.items()
    }
    ids = tuple(item.target.id for item in items)
    return probes.report(probes.Probed(task.name, "stand-ins", "test", 4, ids, tuple(states), values))


def test_two_label_classification_is_not_defined_everywhere(two_labels):
    task, items = two_labels
    assert all(probes.copy_slots(item) is None for item in items)
    assert all(len({ex.output for ex in item.contexts["paraphrase"]}) <= 2 for item in items)
    rep = stand_in_report(task, items)
    assert rep.probed.undefined() == N and not rep.probed.copy_defined()
    verdicts = {v.claim.id: v for v in rep.verdicts.claims}
    assert verdicts["P3"].verdict == "not run" and verdicts["P1"].verdict != "not run"
    assert "copy probe is not defined on this task" in verdicts["P3"].claim.statement

    files = probes.render([rep])
    text = files["probes.md"].decode()
    assert "| similar | 4 | 1.000 [1.000, 1.000] |" not in text
    rows = [line for line in text.splitlines() if line.startswith("| similar | 4 |")]
    assert rows and rows[0].endswith("| not defined |"), rows
    assert f"The copy score is not defined on {N} of {N} probe examples" in text
    assert "P3 is not run." in text and "copy probe is not defined on this task" in text

    data = json.loads(files["probes.json"])["probes"][0]
    assert data["copy"] == {"defined": False, "undefined": N, "examples": N}
    copies = [r for r in data["rows"] if r["probe"] == "copy"]
    assert copies and all(not r["defined"] and r["mean"] is None and r["n"] == 0 for r in copies)
    assert all(r["defined"] for r in data["rows"] if r["probe"] != "copy")
    assert data["values"]["similar@4"]["copy"] == [None] * N
    (p3,) = [c for c in data["claims"] if c["id"] == "P3"]
    assert p3["verdict"] == "not run" and "not defined" in p3["statement"]
    assert files["probes.png"].startswith(b"\x89PNG")

    console = Console(width=80, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    for table in probes.rich_tables([rep]):
        console.print(table, soft_wrap=False)
    shown = console.export_text()
    assert f"copy not defined on {N} of {N} examples (P3 not run)" in " ".join(shown.split())
    rows = [line.rstrip(" │") for line in shown.splitlines() if line.startswith("│ similar")]
    assert rows and all(row.endswith("not defined") for row in rows), rows
    assert max(len(line) for line in shown.splitlines()) <= 80
