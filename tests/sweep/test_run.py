"""`icl-bench run` end to end on `tiny`: results, leaderboard, resumption, recorded failures."""

import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest
from helpers import TINY_SMOKE, tiny_plan

from icl_bench import cli
from icl_bench.core import plugins
from icl_bench.core.errors import UsageError
from icl_bench.core.store import Store
from icl_bench.models import resolve_precision
from icl_bench.sweep.plan import Plan
from icl_bench.sweep.stages import run
from icl_bench.train.snapshots import snapshots


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One smoke sweep (tiny, zero + contrastive) shared by the tests below."""
    root = tmp_path_factory.mktemp("run")
    store, out = Store(root / "store"), root / "leaderboards" / "smoke"
    plan = tiny_plan(["zero", "contrastive"], out)
    assert run(plan, store) == []
    return plan, store, out


def artifacts(store: Store) -> dict:
    return {p: p.stat().st_mtime_ns for p in store.root.rglob("*") if p.is_file()}


def test_run_writes_results_and_leaderboard(smoke):
    _, store, out = smoke
    folder = out / "results" / "synthetic-alignment"
    assert sorted(p.name for p in (folder / "tiny").iterdir()) == [
        "base.jsonl",
        "contrastive.jsonl",
        "environment.json",
        "zero.jsonl",
    ]
    records = [json.loads(line) for line in (folder / "tiny" / "contrastive.jsonl").read_text().splitlines()]
    assert {r["mode"] for r in records} == {"random", "similar", "one-near", "paraphrase"}
    assert len(records) == 4 * 6 and all(r["regime"] == "contrastive" for r in records)
    assert json.loads((folder / "bins.json").read_text())["method"] == "fixed"
    board = (out / "leaderboard.md").read_text()
    assert "| base |" in board and "| zero |" in board and "| contrastive |" in board
    assert "### Claims" in board and "| **C1** |" in board and "## Environment" in board
    assert (out / "synthetic-alignment.png").is_file()
    assert (out.parent / "README.md").read_text().count("smoke") >= 1
    assert len(list((store.root / "train").iterdir())) == 2  # one model per trained regime


def test_unchanged_rerun_recomputes_nothing_and_new_regime_trains_only_itself(smoke):
    plan, store, out = smoke
    before = artifacts(store)
    assert run(plan, store) == []
    assert artifacts(store) == before
    wider = replace(plan, regimes=[*plan.regimes, plugins.regimes["random"]])
    assert run(wider, store) == []
    added = set(artifacts(store)) - set(before)
    assert {p.relative_to(store.root).parts[0] for p in added} == {"training-sets", "train", "evaluate"}
    assert len({p.relative_to(store.root).parts[:2] for p in added if p.parts[-3] == "train"}) <= 1
    assert (out / "results" / "synthetic-alignment" / "tiny" / "random.jsonl").is_file()


def test_diverging_training_is_recorded_and_the_sweep_goes_on(tmp_path):
    out = tmp_path / "nan"
    plan = tiny_plan(["zero"], out, learning_rate=1e30)
    failures = run(plan, Store(tmp_path / "store"))
    assert len(failures) == 1 and "zero" in failures[0] and "loss" in failures[0].lower()
    assert json.loads((out / "failures.json").read_text()) == failures
    assert (out / "results" / "synthetic-alignment" / "tiny" / "base.jsonl").is_file()  # nothing lost
    assert "| base |" in (out / "leaderboard.md").read_text()
    assert not (tmp_path / "README.md").exists()  # only a leaderboards/ folder of suites gets an index


def test_unreachable_model_fails_before_training(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ICL_BENCH_STORE": str(tmp_path / "store")}
    command = [
        sys.executable,
        "-m",
        "icl_bench.cli",
        "run",
        "--models",
        "tiny,llama8b",
        "--size",
        "smoke",
        "--tasks",
        "synthetic-alignment",
        "--out",
        str(tmp_path / "out"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("icl-bench: error: model 'llama8b' (meta-llama/Llama-3.1-8B) cannot be loaded: ")
    assert "the hub is unreachable" in line and "huggingface-cli login" in line
    assert not (tmp_path / "store" / "train").exists()


def test_precision_is_resolved_recorded_and_part_of_the_keys(smoke):
    plan, store, out = smoke
    recorded = json.loads((out / "results" / "synthetic-alignment" / "tiny" / "environment.json").read_text())
    assert {stage["precision"] for stage in recorded["zero"].values()} == {resolve_precision()}
    assert "| precision |" in (out / "leaderboard.md").read_text()
    other = "fp32" if resolve_precision() == "bf16" else "bf16"
    before = set(artifacts(store))
    assert run(replace(plan, precision=other, regimes=plan.regimes[:1]), store) == []
    added = {p.relative_to(store.root).parts[:2] for p in set(artifacts(store)) - before}
    assert {stage for stage, _ in added} == {"train", "evaluate"}  # same contexts, new models
    assert len({key for stage, key in added if stage == "evaluate"}) == 2  # the base and zero
    with pytest.raises(UsageError, match="unknown precision 'fp16'; known precisions: auto, fp32, bf16"):
        run(replace(plan, precision="fp16"), store)
    assert run(plan, store) == []  # put the shared suite back as the other tests expect it


@pytest.mark.parametrize(
    ("gpu", "native", "expected"), [(False, True, "fp32"), (True, True, "bf16"), (True, False, "fp32")]
)
def test_auto_precision_is_bf16_only_on_a_bf16_gpu(monkeypatch, gpu, native, expected):
    """A CPU computes in fp32 even with native bf16, so a default run's bytes do not depend on the CPU."""
    import torch

    from icl_bench import models

    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    monkeypatch.setattr(models, "native_bf16", lambda: native)
    assert resolve_precision("auto") == expected
    assert resolve_precision("bf16") == "bf16" and resolve_precision("fp32") == "fp32"


def test_run_rejects_unknown_size_and_model():
    with pytest.raises(UsageError, match="unknown size 'huge'; known sizes: smoke, default, paper"):
        run(Plan(size="huge"), Store("/nonexistent"))
    assert cli.main(["run", "--models", "nope", "--size", "smoke", "--tasks", "synthetic-alignment"]) == 2


def test_leaderboard_command_regenerates_and_checks(smoke, capsys):
    _, _, out = smoke
    board = out / "leaderboard.md"
    original = board.read_bytes()
    assert cli.main(["leaderboard", "--results", str(out / "results"), "--out", str(out), "--check"]) == 0
    board.write_text(original.decode().replace("| zero |", "| zero (edited) |"))
    assert cli.main(["leaderboard", "--out", str(out), "--check"]) == 2
    assert "leaderboard.md" in capsys.readouterr().err
    assert cli.main(["leaderboard", "--out", str(out)]) == 0
    assert board.read_bytes() == original
    assert cli.main(["leaderboard", "--root", str(out.parent), "--check"]) == 0  # every suite under a root


def test_export_lm_eval_command(tmp_path, capsys):
    out = tmp_path / "lm-eval"
    args = [
        "export-lm-eval",
        "--task",
        "synthetic-alignment",
        "--out",
        str(out),
        "--max-test",
        "3",
        "--store",
        str(tmp_path / "store"),
    ]
    assert cli.main(args) == 0
    names = capsys.readouterr().out.split()
    assert names == [
        f"icl_bench_synthetic_alignment_test_{m}" for m in ("one_near", "paraphrase", "random", "similar")
    ]
    for name in names:
        assert (out / name / f"{name}.yaml").is_file()
        assert len((out / name / "docs.jsonl").read_text().splitlines()) == 3


@pytest.mark.deepspeed
def test_run_trains_under_the_deepspeed_launcher(tmp_path):
    out = tmp_path / "suites" / "ds"
    plan = tiny_plan(["zero"], out, launcher="deepspeed", num_gpus=1)
    store = Store(tmp_path / "store")
    assert run(plan, store) == []
    (trained,) = (store.root / "train").iterdir()
    log = json.loads((trained / "train_log.json").read_text())
    assert log["deepspeed"] is not None and log["steps"] == 4
    assert [step for step, _ in snapshots(trained)] == [2, 4]  # ZeRO-2 snapshots of the smoke preset
    assert (out / "results" / "synthetic-alignment" / "tiny" / "zero.jsonl").is_file()


def test_size_overrides_reach_the_contexts_and_keep_the_rest_of_the_preset(tmp_path):
    from icl_bench.sweep.plan import SIZES
    from icl_bench.sweep.sweep import Sweep

    options = ["--max-test", "3", "--max-pool", "9", "--epochs", "2", "--store", str(tmp_path / "store")]
    args = cli.build_parser().parse_args(["run", *TINY_SMOKE, *options])
    plan, store = cli.plan_of(args)
    config = Sweep(plan, store).contexts_config
    assert (config.max_test, config.max_pool, config.epochs) == (3, 9, 2)
    assert config.k == SIZES["smoke"].contexts.k
    plain = Sweep(replace(plan, max_test=None, max_pool=None, epochs=None), store).contexts_config
    assert plain == replace(config, max_test=6, max_pool=24, epochs=1)  # the smoke preset's
