"""The leaderboard stage: markdown, csv, json and PNG from a small synthetic results folder."""

import csv
import io
import json
import re

import pytest
from rich.console import Console

from icl_bench import Single, hookimpl
from icl_bench.contexts.samplers import Random
from icl_bench.core import plugins
from icl_bench.core.errors import UsageError
from icl_bench.report.leaderboard import check_leaderboard, rich_tables, show, write_leaderboard
from icl_bench.report.suites import index_suites

MODES = ("random", "similar", "one-near", "paraphrase")
# regime -> score added to every example's base score; "contrastive" is best everywhere
REGIMES = {
    "base": 0.0,
    "zero": 0.05,
    "similar": 0.1,
    "contrastive": 0.3,
    "alpha": 0.02,
    "random+similar": 0.08,
}
HEADER = "| regime | random | similar | one-near | paraphrase | Low | Medium | High |"


class _AlphaPlugin:
    @hookimpl
    def register_regimes(self, register):
        register(Single("alpha", "a third party's regime (tests only)", sampler=Random()))


@pytest.fixture(autouse=True)
def alpha_regime():
    """A third-party regime, registered as a plugin would: results name only known regimes."""
    plugins.pm.register(_AlphaPlugin(), name="tests-alpha")
    plugins.refresh()
    yield
    plugins.pm.unregister(name="tests-alpha")
    plugins.refresh()


def make_results(root, models=("m1",), regimes=REGIMES, n=12, splits=("test",), scale=1.0):
    """results/toy: bins.json plus one JSONL per (model, regime); max_sim rises with the example index."""
    task = root / "toy"
    task.mkdir(parents=True)
    (task / "bins.json").write_text(json.dumps({"task": "toy", "method": "fixed", "edges": [0.3, 0.6]}))
    for model in models:
        for regime, lift in regimes.items():
            lines = []
            for split, mode in ((split, mode) for split in splits for mode in MODES):
                for i in range(n):
                    sim = (i + 0.5) / n
                    score = round(min(1.0, 0.2 + 0.5 * sim + lift + 0.1 * (i % 3)), 4) * scale
                    raw = {
                        "task": "toy",
                        "model": model,
                        "regime": regime,
                        "split": split,
                        "mode": mode,
                        "id": f"t{i}",
                        "prediction": "p",
                        "score": score,
                        "metrics": {"exact-match" if scale == 1.0 else "chrf": score},
                        "max_sim": sim,
                    }
                    lines.append(json.dumps(raw) + "\n")
            path = task / model / f"{regime}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(lines))
    return root


def table_lines(markdown):
    """The score tables' lines (the Claims and Environment tables left out)."""
    lines, keep = [], True
    for line in markdown.splitlines():
        if line.startswith("#") and not line.startswith("####"):
            keep = not line.startswith(("### Claims", "## Environment"))
        if keep and line.startswith("| "):
            lines.append(line)
    return lines


def test_markdown_rows_columns_and_bold(tmp_path):
    results = make_results(tmp_path / "results")
    out = tmp_path / "board"
    paths = write_leaderboard(results, out)
    assert [p.name for p in paths] == ["leaderboard.md", "leaderboard.csv", "leaderboard.json", "toy.png"]
    text = (out / "leaderboard.md").read_text()
    assert "## toy" in text
    assert "Metric: `exact-match`" in text and "Low < 0.3 <= Medium < 0.6 <= High" in text
    header, *rows = table_lines(text)
    assert header == HEADER
    labels = [row.split(" | ")[0].removeprefix("| ") for row in rows]
    assert labels == ["base", "zero", "similar", "contrastive", "alpha", "random+similar"]
    cells = {label: row.strip("| ").split(" | ")[1:] for label, row in zip(labels, rows, strict=True)}
    assert all(len(c) == 7 for c in cells.values())
    assert all(cell.startswith("**") and cell.endswith("**") for cell in cells["contrastive"])
    assert not any("**" in cell for label, row in cells.items() if label != "contrastive" for cell in row)
    assert cells["base"][0].count("[") == 1 and cells["base"][0].split(" [")[0].count(".") == 1
    assert len(cells["base"][0].split(" [")[0].split(".")[1]) == 3  # accuracy scale: 3 decimals
    assert "![toy: score by similarity bin](toy.png)" in text


def test_several_models_prefix_rows(tmp_path):
    results = make_results(tmp_path / "results", models=("m2", "m1"), regimes={"alpha": 0.0, "base": 0.1})
    write_leaderboard(results, tmp_path / "board")
    _, *rows = table_lines((tmp_path / "board" / "leaderboard.md").read_text())
    assert [row.split(" | ")[0] for row in rows] == [
        "| m1 / base",
        "| m1 / alpha",
        "| m2 / base",
        "| m2 / alpha",
    ]


def test_several_splits_get_a_table_each_and_wide_scales_one_decimal(tmp_path):
    results = make_results(tmp_path / "results", regimes={"base": 0.0}, splits=("ood", "id"), scale=100.0)
    write_leaderboard(results, tmp_path / "board")
    text = (tmp_path / "board" / "leaderboard.md").read_text()
    assert text.index("### Split `id`") < text.index("### Split `ood`")
    rows = [line for line in table_lines(text) if line != HEADER]
    assert len(rows) == 2
    mean = rows[0].split(" | ")[1].split(" [")[0].strip("*")  # the only row: bold
    assert len(mean.split(".")[1]) == 1 and float(mean) > 1


def test_csv_and_json_agree(tmp_path):
    out = tmp_path / "board"
    write_leaderboard(make_results(tmp_path / "results"), out)
    table = list(csv.DictReader(io.StringIO((out / "leaderboard.csv").read_text())))
    data = json.loads((out / "leaderboard.json").read_text())
    task = data["tasks"]["toy"]
    assert (task["metric"], task["bins"], task["decimals"]) == (
        "exact-match",
        {"method": "fixed", "edges": [0.3, 0.6]},
        3,
    )
    assert data["bootstrap"] == {"resamples": 1000, "level": 0.95, "seed": 0}
    assert len(table) == len(task["rows"]) == len(REGIMES) * 7
    for row, entry in zip(table, task["rows"], strict=True):
        assert row["task"] == "toy"
        for key in ("split", "model", "regime", "kind", "column"):
            assert row[key] == entry[key]
        for key in ("mean", "lo", "hi"):
            assert float(row[key]) == entry[key]
        assert int(row["n"]) == entry["n"]
        assert entry["lo"] <= entry["mean"] <= entry["hi"]
    modes = [r for r in task["rows"] if r["kind"] == "mode"]
    assert {r["n"] for r in modes} == {12}
    bins = [r for r in task["rows"] if r["kind"] == "bin" and r["regime"] == "base"]
    assert sum(r["n"] for r in bins) == 12 * len(MODES)  # bins pool every mode's records
    text = (out / "leaderboard.json").read_text()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"


def test_regeneration_is_byte_identical_and_check_detects_changes(tmp_path):
    results = make_results(tmp_path / "results")
    first, second = tmp_path / "a", tmp_path / "b"
    write_leaderboard(results, first)
    write_leaderboard(results, second)
    png = (first / "toy.png").read_bytes()
    assert png.startswith(b"\x89PNG") and b"Matplotlib" not in png
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.json", "toy.png"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert check_leaderboard(results, first) == []

    md = first / "leaderboard.md"
    md.write_text(md.read_text().replace("contrastive", "contrastive2", 1))
    (first / "toy.png").write_bytes(png + b"\0")
    (first / "leaderboard.csv").unlink()
    (first / "gone.png").write_bytes(png)
    (first / "notes.txt").write_text("kept")
    assert check_leaderboard(results, first) == ["gone.png", "leaderboard.csv", "leaderboard.md", "toy.png"]
    assert check_leaderboard(results, tmp_path / "missing") == [
        "leaderboard.csv",
        "leaderboard.json",
        "leaderboard.md",
        "toy.png",
    ]


def test_changed_result_changes_the_leaderboard(tmp_path):
    results = make_results(tmp_path / "results")
    out = tmp_path / "board"
    write_leaderboard(results, out)
    path = results / "toy" / "m1" / "base.jsonl"
    first, *rest = path.read_text().splitlines(keepends=True)
    edited = json.loads(first)
    edited["score"] = edited["metrics"]["exact-match"] = 0.0  # a consistent record, another score
    path.write_text(json.dumps(edited) + "\n" + "".join(rest))
    assert set(check_leaderboard(results, out)) >= {"leaderboard.md", "leaderboard.csv", "leaderboard.json"}


def test_malformed_input_is_a_usage_error(tmp_path):
    results = make_results(tmp_path / "results")
    path = results / "toy" / "m1" / "zero.jsonl"
    path.write_text(path.read_text() + '{"task": "toy", "score": \n')
    with pytest.raises(UsageError, match=r"zero\.jsonl:49: not valid JSON"):
        write_leaderboard(results, tmp_path / "board")
    with pytest.raises(UsageError, match="does not exist"):
        write_leaderboard(tmp_path / "nowhere", tmp_path / "board")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no task folders"):
        check_leaderboard(tmp_path / "empty", tmp_path / "board")
    assert not (tmp_path / "board").exists()


def test_index_suites(tmp_path):
    root = tmp_path / "leaderboards"
    write_leaderboard(make_results(tmp_path / "r1"), root / "paper")
    write_leaderboard(
        make_results(tmp_path / "r2", models=("m1", "m2"), regimes={"base": 0.0}), root / "small"
    )
    (root / "drafts").mkdir()
    text = index_suites(root).read_text()
    assert text.startswith("# Leaderboards\n")
    items = [line for line in text.splitlines() if line.startswith("- ")]
    assert items == [
        "- [paper](paper/leaderboard.md): tasks toy; models m1; 6 regimes "
        "(base, zero, similar, contrastive, alpha, random+similar)",
        "- [small](small/leaderboard.md): tasks toy; models m1, m2; 1 regimes (base)",
    ]
    with pytest.raises(UsageError, match="does not exist"):
        index_suites(tmp_path / "nowhere")


def test_rich_tables_and_show(tmp_path):
    results = make_results(tmp_path / "results")
    modes, bins, verdicts = rich_tables(results)
    assert [c.header for c in modes.columns] == ["regime", *MODES]
    assert [c.header for c in bins.columns] == ["regime", "Low", "Medium", "High"]
    assert modes.row_count == bins.row_count == len(REGIMES)
    assert [c.header for c in verdicts.columns] == [
        "claim",
        "statement / comparison",
        "difference [95% CI]",
        "verdict",
    ]
    console = Console(record=True, width=250)
    show(results, console=console)
    text = console.export_text()
    assert "toy (exact-match) by test mode" in text and "random+similar" in text and " ±" in text
    assert "C1" in text and "fine-tuning learns the task" in text


@pytest.mark.parametrize("models", [("m1",), ("a-long-model-name", "m1")])
def test_terminal_tables_print_every_number_whole_at_80_columns(tmp_path, models):
    results = make_results(tmp_path / "results", models=models)
    console = Console(record=True, width=80)
    show(results, console=console)
    text = console.export_text()
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    wide = Console(record=True, width=400)
    show(results, console=wide)
    numbers = sorted(set(re.findall(r"[+-]?\d+\.\d+", wide.export_text())))
    assert numbers and all(number in text for number in numbers)
