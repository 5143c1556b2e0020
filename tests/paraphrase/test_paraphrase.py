"""The paraphrase stage: parsing an LM's answer, validation, per-example fallback, the store cache, and
contexts built from the prepared paraphrases (with `tiny` as the LM)."""

import dataclasses
import json

import pytest
from helpers import WordShuffle, error_line, run_cli
from test_contexts_cli import fails, leaks

from icl_bench import Example
from icl_bench.contexts.build import ContextConfig, build_contexts, read_test_records
from icl_bench.core import plugins
from icl_bench.core.store import Store
from icl_bench.paraphrase import llm as paraphrase

JSON_ANSWER = 'Sure!\n{"Sentence 1": ["Type a valid e-mail address.", "Please enter a valid email."]}\nDone.'


def test_parse_reads_the_json_list_or_else_the_listed_lines():
    assert paraphrase.parse(JSON_ANSWER) == ["Type a valid e-mail address.", "Please enter a valid email."]
    assert paraphrase.parse('1. "Type a valid address."\n2) Give a valid address\n- third one') == [
        "Type a valid address.",
        "Give a valid address",
        "third one",
    ]
    assert paraphrase.parse("\n\n\n") == [] and paraphrase.parse('{"Sentence 1": [') == []


@pytest.mark.parametrize(
    ("candidate", "reason"),
    [
        ("", "empty"),
        ("  enter a VALID  email address. ", "the input"),
        ("Type a valid\nemail address.", "several lines"),
        ("Email?", "length"),
        ("Geben Sie eine gültige E-Mail-Adresse ein und prüfen Sie sie genau.", "length"),
        ("Введите правильный адрес почты.", "language"),
        ("Type in a valid e-mail address.", None),
    ],
)
def test_validate_names_why_a_candidate_is_refused(candidate, reason):
    assert paraphrase.validate(candidate, "Enter a valid email address.") == reason


def test_llm_paraphrases_fall_back_per_example_and_are_built_once(registered_words, tmp_path, monkeypatch):
    """`tiny` answers gibberish, so every target falls back to the task's paraphraser; a second prepare
    reads the store and never asks the model."""
    store = Store(tmp_path / "store")
    inputs = [ex.input for ex in registered_words.load("test")[:3]]
    report = paraphrase.Report()
    made = paraphrase.prepare(registered_words, inputs, "tiny", store, report)
    assert report.fell_back == 3 and report.accepted == 0
    assert all(
        made.table[text] != text and sorted(made.table[text].split()) == sorted(text.split())
        for text in inputs
    )

    def no_model(*_):
        raise AssertionError("the model was asked again")

    monkeypatch.setattr(paraphrase.LLM, "answers", no_model)
    again = paraphrase.Report()
    assert paraphrase.prepare(registered_words, inputs, "tiny", store, again).table == made.table
    assert again.fell_back == 3


def test_valid_answers_are_accepted_and_rejections_counted(registered_words, tmp_path, monkeypatch):
    inputs = [ex.input for ex in registered_words.load("test")[:3]]
    answers = [
        json.dumps({"Sentence 1": [inputs[0], inputs[0].upper() + " x"]}),  # the input, then a valid one
        json.dumps({"Sentence 1": ["", "?"]}),  # nothing usable: falls back
        "1. " + " ".join(reversed(inputs[2].split())),
    ]
    monkeypatch.setattr(paraphrase.LLM, "answers", lambda self, reference, sentences: answers)
    report = paraphrase.Report()
    made = paraphrase.prepare(registered_words, inputs, "tiny", Store(tmp_path / "s"), report)
    assert (report.accepted, report.fell_back) == (2, 1)
    assert report.rejected == {"the input": 1, "empty": 1, "length": 1}
    assert made.table[inputs[0]] == inputs[0].upper() + " x"
    assert made.table[inputs[2]] == " ".join(reversed(inputs[2].split()))
    target = registered_words.load("test")[0]
    para = made(target, None)
    assert para.input == inputs[0].upper() + " x" and para.output == target.output  # y~ = y*


def test_contexts_use_the_prepared_paraphrases(registered_words, tmp_path):
    store = Store(tmp_path / "store")
    config = ContextConfig(k=4, max_pool=40, max_test=5, paraphraser="llm", paraphrase_model="tiny")
    built = build_contexts(registered_words, [], config, store)
    (folder,) = (store.root / "paraphrases").iterdir()
    table = {
        row["input"]: row["paraphrase"] for row in map(json.loads, (folder / "paraphrases.jsonl").open())
    }
    records = [r for r in read_test_records(built.test, registered_words) if r["mode"] == "paraphrase"]
    assert len(records) == 5
    for record in records:
        target = next(ex for ex in registered_words.load("test") if ex.id == record["id"])
        assert table[target.input] in record["prompt"]
    assert "paraphraser" in json.loads((built.test / "inputs.json").read_text())["config"]


def test_paraphrase_command_prints_what_was_kept(tmp_path):
    done = run_cli("paraphrase", "--task", "mt-django-en-de", "--size", "smoke", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "mt-django-en-de: wordnet-synonyms"
    # smoke: 24 pool + 3 id + 3 ood targets; one pool target's only paraphrase is itself, lower-cased
    assert lines[1] == "accepted 29, fell back 0, unchanged 1"
    assert len(lines) == 2 + 1 + 3 and all(" -> " in line for line in lines[3:])
    bad = run_cli("paraphrase", "--task", "mt-django-en-de", "--paraphraser", "nope", cwd=tmp_path)
    line = error_line(bad)
    assert "unknown paraphraser 'nope'; known paraphrasers: llm, " in line


def test_a_new_paraphraser_version_rebuilds_the_contexts(registered_words, words_paraphraser, tmp_path):
    store, config = Store(tmp_path / "store"), ContextConfig(k=4, max_pool=40, max_test=5)
    first = build_contexts(registered_words, [], config, store)
    assert build_contexts(registered_words, [], config, store) == first
    words_paraphraser.version = 2
    try:
        again = build_contexts(registered_words, [], config, store)
    finally:
        del words_paraphraser.version  # back to the class's 1
    assert again.test != first.test
    key = json.loads((again.test / "inputs.json").read_text())
    assert key["paraphrasers"] == [f"{words_paraphraser.name}@2"]


def test_llm_targets_whose_fallback_cannot_paraphrase_them_are_left_out(
    registered_words, tmp_path, monkeypatch, capsys
):
    """An LM answer with no valid candidate falls back to the task's paraphraser; where that gives the
    input back, the target gets no paraphrase record and no context shows it with its gold output."""
    shuffle = WordShuffle.__call__

    def task_paraphraser(self, target, rng):  # what the llm stage's fallback can do: nothing for `fails`
        if fails(target.input):
            return Example("p", target.input, target.output)
        return shuffle(self, target, rng)

    def answers(self, reference, sentences):  # a third valid, the rest the input itself or nothing
        return [
            json.dumps({"Sentence 1": [" ".join(reversed(text.split()))]})
            if i % 3 == 0
            else json.dumps({"Sentence 1": [text.upper(), ""]})
            for i, text in enumerate(sentences)
        ]

    monkeypatch.setattr(WordShuffle, "__call__", task_paraphraser)
    monkeypatch.setattr(paraphrase.LLM, "answers", answers)
    config = ContextConfig(k=4, max_pool=60, max_test=30, paraphraser="llm", paraphrase_model="tiny")
    store = Store(tmp_path / "store")
    contrastive = dataclasses.replace(plugins.regimes["contrastive"], p_paraphrase=1.0)  # near: always x~
    built = build_contexts(registered_words, [contrastive], config, store)

    (folder,) = (store.root / "paraphrases").iterdir()
    rows = {row["input"]: row for row in map(json.loads, (folder / "paraphrases.jsonl").open())}
    failed = {text for text, row in rows.items() if row["paraphrase"] == text}
    assert failed == {text for text, row in rows.items() if row["source"] != "llm" and fails(text)}
    assert len(failed) >= 5
    report = paraphrase.Report()
    paraphrase.summarize(list(rows.values()), report)
    assert report.unchanged == len(failed)

    tests = registered_words.load("test")[:30]
    left_out = sorted(ex.id for ex in tests if ex.input in failed)
    records = read_test_records(built.test, registered_words)
    assert sorted(r["id"] for r in records if r["mode"] == "paraphrase") == sorted(
        ex.id for ex in tests if ex.input not in failed
    )
    summary = json.loads((built.test / "test" / "summary.json").read_text())["paraphrase_mode"]["test"]
    assert (summary["left_out"], summary["left_out_ids"]) == (len(left_out), left_out) and left_out
    training = built.training_records("contrastive")
    fell_back = [r for r in training if r.get("instead_of") == "paraphrase"]
    counts = json.loads((built.train["contrastive"] / "train" / "contrastive.summary.json").read_text())
    assert counts["fell_back"] == len(fell_back) and {r["sampler"] for r in fell_back} <= {"one_near"}
    pool_failed = {ex.id for ex in registered_words.load("train")[:60] if ex.input in failed}
    assert fell_back and {r["id"] for r in fell_back} <= pool_failed
    assert leaks(registered_words, records + training) == []
    err = " ".join(capsys.readouterr().err.split())
    assert f"words/test: {len(left_out)} of 30 targets left out of the paraphrase mode" in err
    key = json.loads((built.test / "inputs.json").read_text())
    assert key["failed_paraphrases"] == "left out"  # contexts built before leaving them out are rebuilt
