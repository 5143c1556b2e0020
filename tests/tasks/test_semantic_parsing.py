"""Semantic parsing (MTOP via XSemPLR): the loader on a generated folder in XSemPLR's layout (made-up
words, no dataset text), whitespace-normalised exact match, the missing-data error, and a smoke run."""

import json
import os
import random

import pytest
from helpers import error_line, run_cli

from icl_bench import Example
from icl_bench.core import plugins
from icl_bench.core.errors import UsageError
from icl_bench.core.store import STORE_ENV, default_root
from icl_bench.sweep.plan import apply_data_dirs
from icl_bench.tasks.semantic_parsing import MTOP_ENV, Mtop, write_fixture
from icl_bench.tasks.text2sql.bird import BIRD_ENV


@pytest.fixture(scope="module")
def fixture_folder(tmp_path_factory):
    return write_fixture(tmp_path_factory.mktemp("mtop"), n_train=30, n_test=8, seed=3)


def test_every_language_is_registered_with_the_slot_paraphraser():
    for language in ("es", "de", "fr"):
        task = plugins.tasks[f"mtop-{language}"]
        assert task.metric == "exact-match-ws" and task.paraphraser == "mtop-slots"
        assert (task.splits, task.pool_split) == (("train", "test"), "train")
    assert "exact-match-ws" in plugins.metrics


@pytest.mark.parametrize("language", ["es", "de", "fr"])
def test_loader_maps_question_and_slot_intent_of_its_language(fixture_folder, monkeypatch, language):
    monkeypatch.setenv(MTOP_ENV, str(fixture_folder))
    task = Mtop(language)
    task.check()
    train, test = task.load("train"), task.load("test")
    assert (len(train), len(test)) == (30, 8)
    rows = {row["id"]: row for row in json.loads((fixture_folder / "test.json").read_text())}
    for ex in test:
        row = rows[ex.id.removeprefix("test-")]
        assert ex.input == row["question"][language] and ex.input.startswith(language)
        assert ex.output == row["mr"]["slot_intent"][language] and ex.output.startswith("[IN:")
        assert ex.meta == {"language": language}
    assert not {ex.id for ex in train} & {ex.id for ex in test}
    assert task.load("train") == train  # deterministic


def test_loader_reads_jsonl_and_skips_rows_without_the_language(tmp_path, monkeypatch):
    rows = [
        {"id": "a", "question": {"de": "  eins   zwei "}, "mr": {"slot_intent": {"de": "[IN:X  eins ]"}}},
        {"id": "b", "question": {"fr": "un"}, "mr": {"slot_intent": {"fr": "[IN:X un ]"}}},
    ]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setenv(MTOP_ENV, str(tmp_path))
    assert Mtop("de").load("train") == [Example("train-a", "eins zwei", "[IN:X eins ]", {"language": "de"})]


def test_exact_match_normalises_whitespace_only():
    metric = plugins.metrics["exact-match-ws"]
    gold = Example("g", "x", "[IN:GET_X [SL:Y  a b ] ]")
    predictions = [
        "[IN:GET_X [SL:Y a b ] ]",
        "  [IN:GET_X\t[SL:Y a  b ]  ] ",
        "[IN:GET_X [SL:Y a b]]",
        "[in:get_x [sl:y a b ] ]",
    ]
    assert metric(predictions, [gold] * 4) == [1.0, 1.0, 0.0, 0.0]
    assert plugins.metrics["exact-match"](predictions[1:2], [gold]) == [0.0]  # why the task has its own


def test_prompt_numbers_the_examples_then_asks():
    task = plugins.tasks["mtop-fr"]
    one, target = Example("a", "un", "[IN:A un ]"), Example("t", "deux", "[IN:B deux ]")
    assert task.prompt([], target) == (
        "Parse the French utterance into its MTOP logical form.\nUtterance: deux\nLogical form:"
    )
    assert task.prompt([one], target) + task.render_output(target) == (
        "Consider the following 1 parse of French utterances into MTOP logical forms.\n"
        "Example 1:\nUtterance: un\nLogical form: [IN:A un ]\n"
        "Parse the French utterance into its MTOP logical form.\nUtterance: deux\nLogical form: [IN:B deux ]"
    )
    assert task.generation.stop == ("\n",)


def test_missing_or_malformed_data_is_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv(MTOP_ENV, raising=False)
    with pytest.raises(UsageError, match=rf"\${MTOP_ENV} is not set.*XSemPLR"):
        Mtop("es").check()
    monkeypatch.setenv(MTOP_ENV, str(tmp_path))
    with pytest.raises(UsageError, match=r"no train\.json"):
        Mtop("es").check()
    (tmp_path / "train.json").write_text('[{"id": 1, "question": "flat"}]')
    with pytest.raises(UsageError, match="not in XSemPLR's MTOP layout") as raised:
        Mtop("es").check()
    assert "\n" not in str(raised.value)


def test_data_dir_sets_the_variable_of_the_tasks_that_read_a_folder(tmp_path, fixture_folder):
    apply_data_dirs([str(fixture_folder)], ["synthetic-alignment", "mtop-de"])
    assert os.environ[MTOP_ENV] == str(fixture_folder.resolve())
    apply_data_dirs([f"text2sql-bird={tmp_path}"], ["mtop-de", "text2sql-bird"])
    assert os.environ[BIRD_ENV] == str(tmp_path.resolve())
    assert os.environ[MTOP_ENV] == str(fixture_folder.resolve())  # named: the others keep theirs
    bad = {
        (f"synthetic-alignment={tmp_path}", ("mtop-de", "synthetic-alignment")): "those that do: mtop-de",
        (str(tmp_path), ("synthetic-alignment",)): "none of synthetic-alignment",
        (str(tmp_path / "nowhere"), ("mtop-de",)): "does not exist",
    }
    for (setting, tasks), message in bad.items():
        with pytest.raises(UsageError, match=message):
            apply_data_dirs([setting], list(tasks))


def test_a_run_without_the_data_fails_with_one_line_before_any_work(tmp_path):
    env = {MTOP_ENV: str(tmp_path / "nowhere")}
    args = ("run", "--tasks", "mtop-de", "--models", "tiny", "--size", "smoke", "--out", "o")
    line = error_line(run_cli(*args, cwd=tmp_path, env=env))
    assert MTOP_ENV in line and "XSemPLR" in line and "does not exist" in line
    assert not (tmp_path / "default-store" / "models").exists()


def test_slot_paraphrase_swaps_values_of_the_same_slot_type_in_both(tmp_path, monkeypatch):
    rows = [
        {"id": i, "question": {"de": q}, "mr": {"slot_intent": {"de": f}}}
        for i, (q, f) in enumerate([
            ("wecker um sieben für anna", "[IN:SET_ALARM [SL:TIME um sieben ] [SL:NAME anna ] ]"),
            ("wecker um acht für ben", "[IN:SET_ALARM [SL:TIME um acht ] [SL:NAME ben ] ]"),
            ("ruf ben an", "[IN:CALL [SL:CONTACT [IN:GET_CONTACT [SL:NAME ben ] ] ] ]"),
            ("wie ist das wetter", "[IN:GET_WEATHER ]"),
            ("wetter bitte", "[IN:GET_WEATHER ]"),
        ])
    ]  # fmt: skip
    (tmp_path / "train.json").write_text(json.dumps(rows))
    monkeypatch.setenv(MTOP_ENV, str(tmp_path))
    para = plugins.paraphrasers["mtop-slots"]
    pool = {ex.input: ex for ex in Mtop("de").load("train")}
    made = para(pool["wecker um sieben für anna"], random.Random(0))
    assert made.input == "wecker um acht für ben"
    assert made.output == "[IN:SET_ALARM [SL:TIME um acht ] [SL:NAME ben ] ]"
    nested = para(pool["ruf ben an"], random.Random(0))  # the leaf inside a nested intent swaps too
    assert nested.output == "[IN:CALL [SL:CONTACT [IN:GET_CONTACT [SL:NAME anna ] ] ] ]"
    assert nested.input == "ruf anna an"
    slotless = para(pool["wie ist das wetter"], random.Random(0))  # same form, another utterance
    assert (slotless.input, slotless.output) == ("wetter bitte", "[IN:GET_WEATHER ]")
    assert para(pool["wetter bitte"], random.Random(1)) == para(pool["wetter bitte"], random.Random(2))
    with pytest.raises(UsageError, match="MTOP language"):
        para(Example("x", "a", "b"), random.Random(0))


def test_mtop_runs_end_to_end_on_the_fixture(tmp_path, fixture_folder):
    """Every default regime (contrastive with `mtop-slots` paraphrases) and all four test modes: the
    leaderboard reports the whitespace-normalised exact match."""
    done = run_cli(
        "run", "--tasks", "mtop-de", "--models", "tiny", "--size", "smoke",
        "--store", str(tmp_path / "store"), "--out", str(tmp_path / "suite"),
        "--data-dir", str(fixture_folder), cwd=tmp_path, env={STORE_ENV: str(default_root())},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    board = json.loads((tmp_path / "suite" / "leaderboard.json").read_text())
    task = board["tasks"]["mtop-de"]
    assert task["metric"] == "exact-match-ws"
    columns = {row["column"] for row in task["rows"]}
    assert {"random", "similar", "one-near", "paraphrase"} <= columns
    assert {row["regime"] for row in task["rows"]} >= {"zero", "random", "similar", "contrastive"}
    assert all(0.0 <= row["mean"] <= 1.0 for row in task["rows"] if row.get("mean") is not None)
