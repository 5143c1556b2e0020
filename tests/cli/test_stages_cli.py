"""`icl-bench train` / `evaluate` as stage subcommands, determinism across processes, output streams and
the bad inputs that must fail before any work: each CLI call runs in a fresh process."""

import json
import os
from pathlib import Path

import pytest
from helpers import TINY_SMOKE, error_line, run_cli

SWEEP = (*TINY_SMOKE, "--regimes", "zero")


def trained_files(store: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (store / "train").glob("*/adapter_model.safetensors")}


@pytest.fixture(scope="module")
def twice(tmp_path_factory):
    """`train` then `evaluate` of the same sweep, in separate processes, into two fresh stores."""
    outcomes = []
    for name in ("first", "second"):
        root = tmp_path_factory.mktemp(name)
        store, out = root / "store", root / "leaderboards" / "suite"
        trained = run_cli("train", *SWEEP, "--store", str(store), cwd=root)
        assert trained.returncode == 0, trained.stderr
        evaluated = run_cli("evaluate", *SWEEP, "--store", str(store), "--out", str(out), cwd=root)
        assert evaluated.returncode == 0, evaluated.stderr
        outcomes.append((root, store, out, trained, evaluated))
    return outcomes


def test_train_prints_the_trained_folder_and_evaluate_the_results(twice):
    _, store, out, trained, evaluated = twice[0]
    (folder,) = trained.stdout.split()
    assert Path(folder).parent == store / "train" and (Path(folder) / "adapter_config.json").is_file()
    assert evaluated.stdout.strip() == str(out / "results")
    models = out / "results" / "synthetic-alignment" / "tiny"
    assert sorted(p.name for p in models.glob("*.jsonl")) == ["base.jsonl", "zero.jsonl"]
    recorded = json.loads((models / "environment.json").read_text())
    assert recorded["zero"]["train"]["packages"]["torch"] and recorded["base"]["train"] is None
    assert recorded["zero"]["evaluate"]["device"] == "cpu"
    assert recorded["zero"]["evaluate"]["torch_threads"] >= 1


def test_two_processes_give_byte_identical_adapters_and_predictions(twice):
    (_, store_a, out_a, *_), (_, store_b, out_b, *_) = twice
    adapters_a, adapters_b = trained_files(store_a), trained_files(store_b)
    assert len(adapters_a) == 1 and list(adapters_a.values()) == list(adapters_b.values())
    for name in ("base.jsonl", "zero.jsonl"):
        path = Path("synthetic-alignment") / "tiny" / name
        assert (out_a / "results" / path).read_bytes() == (out_b / "results" / path).read_bytes()


def test_run_after_train_retrains_nothing(twice):
    root, store, _, _, _ = twice[0]
    before = {p: p.stat().st_mtime_ns for p in (store / "train").rglob("*") if p.is_file()}
    done = run_cli(
        "run", *SWEEP, "--store", str(store), "--out", str(root / "leaderboards" / "run"), cwd=root
    )
    assert done.returncode == 0, done.stderr
    assert "train tiny" not in done.stderr and " train " not in done.stderr.replace("[bold]", "")
    assert {p: p.stat().st_mtime_ns for p in (store / "train").rglob("*") if p.is_file()} == before
    assert "zero > base in Low" in done.stdout  # the claims table is a result: stdout
    board = (root / "leaderboards" / "run" / "leaderboard.md").read_text()
    assert "### Claims" in board and "## Environment" in board and "| torch threads |" in board


def test_evaluate_before_train_names_the_fix(tmp_path):
    done = run_cli(
        "evaluate", *SWEEP, "--store", str(tmp_path / "store"), "--out", str(tmp_path / "o"), cwd=tmp_path
    )
    line = error_line(done)
    assert "not trained yet: tiny / synthetic-alignment / zero" in line and "icl-bench train" in line
    assert not (tmp_path / "store" / "evaluate").exists()


def test_list_and_tables_go_to_stdout(tmp_path):
    done = run_cli("list", "tasks", cwd=tmp_path)
    assert done.returncode == 0 and "synthetic-alignment" in done.stdout and done.stderr == ""


@pytest.mark.parametrize("flag", ["--store", "--out"])
def test_unwritable_folders_fail_before_any_work(tmp_path, flag):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    folders = {"--store": str(tmp_path / "store"), "--out": str(tmp_path / "out")}
    folders[flag] = str(blocker / "inside")
    done = run_cli("run", *SWEEP, "--store", folders["--store"], "--out", folders["--out"], cwd=tmp_path)
    line = error_line(done)
    assert (
        f"{blocker / 'inside'} is not writable (Not a directory); pass a writable folder with {flag}" in line
    )
    assert not (tmp_path / "store" / "models").exists()  # nothing was built


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permission bits")
def test_a_read_only_store_fails_before_any_work(tmp_path):
    store = tmp_path / "store"
    store.mkdir(mode=0o555)
    line = error_line(
        run_cli("run", *SWEEP, "--store", str(store), "--out", str(tmp_path / "o"), cwd=tmp_path)
    )
    assert "is not writable (Permission denied)" in line


def test_a_folder_that_is_not_a_model_names_what_is_missing(tmp_path):
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    line = error_line(
        run_cli(
            "run",
            "--models",
            str(folder),
            "--size",
            "smoke",
            "--tasks",
            "synthetic-alignment",
            "--out",
            "o",
            cwd=tmp_path,
        )
    )
    assert f"model folder {folder} is not a loadable model: no weights" in line
    assert "no tokenizer" in line and "no config.json" not in line and "tiny" in line
    line = error_line(
        run_cli(
            "train", "--models", "/etc", "--size", "smoke", "--tasks", "synthetic-alignment", cwd=tmp_path
        )
    )
    assert "model folder /etc is not a loadable model: no config.json, no weights" in line


def test_a_model_given_as_a_folder_keeps_its_results_in_the_suite(twice, tmp_path):
    """A path (or a hub id) names the model; its results folder is that name flattened, inside the suite."""
    _, store, *_ = twice[0]
    (folder,) = (store / "models").iterdir()  # the tiny model the stage test built
    out = tmp_path / "leaderboards" / "suite"
    done = run_cli(
        "run", "--models", str(folder), "--regimes", "zero", "--size", "smoke",
        "--tasks", "synthetic-alignment", "--store", str(store), "--out", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    flattened = str(folder).strip("/").replace("/", "--")
    results = out / "results" / "synthetic-alignment" / flattened
    assert sorted(p.name for p in results.iterdir()) == ["base.jsonl", "environment.json", "zero.jsonl"]
    assert not (folder / "base.jsonl").exists() and "### Claims" in (out / "leaderboard.md").read_text()
