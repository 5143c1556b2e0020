"""The results schema: a damaged or edited results folder is refused in one line, never tabulated."""

import json
import shutil
from pathlib import Path

import pytest

from icl_bench.core.errors import UsageError
from icl_bench.core.names import DEFAULT_TASK
from icl_bench.score.results import load_results

SUITE = Path(__file__).parents[2] / "leaderboards" / "default" / "results"
TASK = DEFAULT_TASK


@pytest.fixture
def results(tmp_path) -> Path:
    shutil.copytree(SUITE, tmp_path / "results")
    return tmp_path / "results"


def _file(results: Path, regime: str) -> Path:
    return results / TASK / "smollm2-135m" / f"{regime}.jsonl"


def _edit(path: Path, line: int, **changes) -> None:
    lines = path.read_text().splitlines()
    lines[line] = json.dumps({**json.loads(lines[line]), **changes})
    path.write_text("\n".join(lines) + "\n")


def test_the_committed_results_pass(results):
    [task] = load_results(results)
    assert {r.regime for r in task.records} >= {"base", "zero", "majority", "copy-nearest"}


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda p: _edit(p, 3, score=7.0),
            r"zero.jsonl:4: score 7.0 is outside exact-match's range \[0, 1\]",
        ),
        (lambda p: _edit(p, 3, score=-0.5), r"zero.jsonl:4: score -0.5 is outside"),
        (
            lambda p: _edit(p, 0, mode="bogus-mode"),
            r"zero.jsonl:1: unknown test mode 'bogus-mode'; known modes: random",
        ),
        (lambda p: _edit(p, 0, regime="bogus"), r"zero.jsonl:1: unknown regime 'bogus'; known regimes: "),
        (
            lambda p: p.write_text("".join(p.read_text().splitlines(True)[2:])),
            r"zero.jsonl: 2 record\(s\) of split",
        ),
        (lambda p: p.write_text(""), r"zero.jsonl holds no records"),
        (lambda p: p.write_bytes(b"\xff\xfe" + p.read_bytes()), r"zero.jsonl: not UTF-8 text"),
    ],
    ids=[
        "score-7",
        "negative-score",
        "bogus-mode",
        "unknown-regime",
        "dropped-lines",
        "emptied",
        "invalid-utf8",
    ],
)
def test_a_damaged_results_file_is_refused_naming_file_and_line(results, damage, message):
    damage(_file(results, "zero"))
    with pytest.raises(UsageError, match=message):
        load_results(results)


def test_a_baseline_missing_records_is_refused_too(results):
    path = results / TASK / "baselines.jsonl"
    path.write_text("".join(path.read_text().splitlines(True)[1:]))
    with pytest.raises(UsageError, match=r"baselines.jsonl: 1 record\(s\) of split 'test'"):
        load_results(results)


def test_leaderboard_check_refuses_a_damaged_folder_with_one_line(results, capsys):
    from icl_bench import cli

    _edit(_file(results, "random"), 5, score=7.0)
    assert cli.main(["leaderboard", "--check", "--results", str(results), "--out", str(results.parent)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "random.jsonl:6: score 7.0 is outside" in err[0]


def test_bins_that_are_not_the_tertiles_they_claim_are_refused(results):
    path = results / TASK / "bins.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "method": "tertiles", "edges": [0.1, 0.2]}))
    with pytest.raises(UsageError, match=r"bins.json: edges \[0.1, 0.2\] are not the tertiles"):
        load_results(results)


def test_without_baseline_records_c1_cannot_hold(results):
    from icl_bench.report.board import board

    (results / TASK / "baselines.jsonl").unlink()
    [verdicts] = board(results).verdicts[TASK]
    c1 = next(c for c in verdicts.claims if c.claim.id == "C1")
    assert [o.verdict for o in c1.outcomes] == ["holds", "not run", "not run"]  # zero > base alone holds
    assert c1.verdict == "inconclusive"


def test_an_example_dropped_from_every_file_is_missing_from_the_plan(results):
    """bins.json lists the records the contexts hold: dropping one example everywhere is still found."""
    records = _file(results, "zero").read_text().splitlines()
    dropped = json.loads(records[7])["id"]
    for path in (results / TASK).rglob("*.jsonl"):
        kept = [line for line in path.read_text().splitlines(True) if f'"id": "{dropped}"' not in line]
        path.write_text("".join(kept))
    planned = rf"of the {len(records)} planned records are missing \(e.g. id '{dropped}'"
    with pytest.raises(UsageError, match=planned):
        load_results(results)
