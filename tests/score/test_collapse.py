"""Collapsed models: one output for every test example while not every answer is right; named beside
the tables, the output shown safely."""

from pathlib import Path

import pytest

from icl_bench.core.errors import UsageError
from icl_bench.core.types import BASELINE_MODEL
from icl_bench.report.suites import md_code
from icl_bench.report.tables import collapsed_lines
from icl_bench.score.collapse import Collapse, collapses
from icl_bench.score.results import load_results
from icl_bench.score.schema import Record, parse_record
from icl_bench.score.summary import score_task

ABLATIONS = Path(__file__).parents[2] / "leaderboards" / "ablations" / "results"


def _records(regime, predictions, scores, model="m", split="test") -> list[Record]:
    return [
        Record("t", model, regime, split, "random", f"x{i}", score, 0.5, prediction=prediction)
        for i, (prediction, score) in enumerate(zip(predictions, scores, strict=True))
    ]


def test_one_output_not_always_right_is_a_collapse():
    found = collapses(
        _records("stuck", ["neg ", "neg", "neg"], [1.0, 0.0, 1.0])  # stripped: one output
        + _records("garbage", [">>", ">>"], [0.0, 0.0])  # one output, never right (chrF of junk: 0)
        + _records("garbage", [">>", "<<"], [0.0, 0.0], split="ood")  # another split: two outputs
        + _records("fine", ["neg", "pos", "neg"], [1.0, 1.0, 0.0])
        + _records("all-right", ["pos", "pos"], [1.0, 1.0])  # every reference may be "pos"
        + _records("majority", ["neg", "neg"], [1.0, 0.0], model=BASELINE_MODEL)  # constant by design
        + _records("partly", ["neg", "neg"], [1.0, 0.0])[:1]  # one example: nothing to say
        + _records("unkept", ["neg", None], [1.0, 0.0]),  # a record without its prediction
        top=1.0,
    )
    assert found == (Collapse("m", "test", "garbage", ">>", 2), Collapse("m", "test", "stuck", "neg", 3))
    assert collapses(_records("garbage", [">>", ">>"], [0.0, 0.0]), top=None) == ()  # unknown top
    assert collapses(_records("stuck", ["a", "a"], [1.0, 0.0]), top=None)  # differing scores suffice


def test_outputs_are_shown_as_safe_code_spans():
    assert md_code("negative") == "`negative`"
    assert md_code("a`b") == "``a`b``" and md_code("`x") == "`` `x ``"
    assert md_code("<unk> | *x*\n") == "`<unk> | *x*\\n`"
    assert md_code("x" * 50) == "`" + "x" * 40 + "...`"
    assert md_code("") == "an empty string"


def test_a_prediction_that_is_not_a_string_is_refused():
    raw = {"task": "t", "model": "m", "regime": "zero", "split": "test", "mode": "random", "id": "x"}
    raw |= {"score": 1.0, "max_sim": 0.5, "prediction": 7}
    with pytest.raises(UsageError, match="field 'prediction' must be a string, got 7"):
        parse_record(raw, "zero.jsonl:1")


def test_the_committed_ablations_name_their_one_label_regime():
    """The ablations' contrastive-no-similar answers "negative" on all 240 records (README, issue 21)."""
    [task] = load_results(ABLATIONS)
    summary = score_task(task)
    assert summary.collapsed == (Collapse("smollm2-135m", "test", "contrastive-no-similar", "negative", 240),)
    [line] = collapsed_lines(summary)
    assert line.startswith("smollm2-135m / contrastive-no-similar answers `negative` on all 240 records")
    assert f"**Collapsed**: {line}." in (ABLATIONS.parent / "leaderboard.md").read_text()
