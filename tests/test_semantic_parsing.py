"""Semantic parsing (MTOP via XSemPLR): the loader on a generated folder in XSemPLR's layout (made-up
words, no dataset text), whitespace-normalised exact match, the missing-data error, and a smoke run."""

import json

import pytest
from helpers import error_line, run_cli

from icl_bench import Example, plugins
from icl_bench.errors import UsageError
from icl_bench.store import STORE_ENV, default_root
from icl_bench.tasks.semantic_parsing import MTOP_ENV, Mtop, write_fixture


@pytest.fixture(scope="module")
def fixture_folder(tmp_path_factory):
    return write_fixture(tmp_path_factory.mktemp("mtop"), n_train=30, n_test=8, seed=3)


def test_every_language_is_registered_without_a_paraphraser():
    for language in ("es", "de", "fr"):
        task = plugins.tasks[f"mtop-{language}"]
        assert task.metric == "exact-match-ws" and task.paraphraser is None
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
    assert not {ex.id for ex in train} & {ex.id for ex in test}
    assert task.load("train") == train  # deterministic


def test_loader_reads_jsonl_and_skips_rows_without_the_language(tmp_path, monkeypatch):
    rows = [
        {"id": "a", "question": {"de": "  eins   zwei "}, "mr": {"slot_intent": {"de": "[IN:X  eins ]"}}},
        {"id": "b", "question": {"fr": "un"}, "mr": {"slot_intent": {"fr": "[IN:X un ]"}}},
    ]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setenv(MTOP_ENV, str(tmp_path))
    assert Mtop("de").load("train") == [Example("train-a", "eins zwei", "[IN:X eins ]")]


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


def test_a_run_without_the_data_fails_with_one_line_before_any_work(tmp_path):
    env = {MTOP_ENV: str(tmp_path / "nowhere")}
    args = ("run", "--tasks", "mtop-de", "--models", "tiny", "--size", "smoke", "--out", "o")
    line = error_line(run_cli(*args, cwd=tmp_path, env=env))
    assert MTOP_ENV in line and "XSemPLR" in line and "does not exist" in line
    assert not (tmp_path / "default-store" / "models").exists()


def test_mtop_runs_end_to_end_on_the_fixture(tmp_path, fixture_folder):
    """The main regimes but contrastive (it needs paraphrases, and MTOP has no paraphraser): the
    leaderboard reports the whitespace-normalised exact match over three test modes (no `paraphrase`)."""
    done = run_cli(
        "run", "--tasks", "mtop-de", "--models", "tiny", "--regimes", "zero,random,similar",
        "--size", "smoke", "--store", str(tmp_path / "store"), "--out", str(tmp_path / "suite"),
        cwd=tmp_path, env={STORE_ENV: str(default_root()), MTOP_ENV: str(fixture_folder)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    board = json.loads((tmp_path / "suite" / "leaderboard.json").read_text())
    task = board["tasks"]["mtop-de"]
    assert task["metric"] == "exact-match-ws"
    columns = {row["column"] for row in task["rows"]}
    assert {"random", "similar", "one-near"} <= columns and "paraphrase" not in columns
    assert {row["regime"] for row in task["rows"]} >= {"zero", "random", "similar"}
    assert all(0.0 <= row["mean"] <= 1.0 for row in task["rows"] if row.get("mean") is not None)
