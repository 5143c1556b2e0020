"""A suite's plan.json, `icl-bench reproduce`, and the numerics profile it is made under."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest
from helpers import TINY_SMOKE

from icl_bench import cli
from icl_bench.core import numerics
from icl_bench.core.errors import UsageError
from icl_bench.sweep import record as plans
from icl_bench.sweep.reproduce import ClaimCheck, Comparison, claims


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """A tiny smoke suite made by the command line, as a user would (zero regime only)."""
    root = tmp_path_factory.mktemp("reproduce")
    out = root / "suite"
    argv = ["run", *TINY_SMOKE, "--regimes", "zero", "--out", str(out)]
    assert cli.main([*argv, "--store", str(root / "store")]) == 0
    return root, out


def table_rows(text: str) -> dict[str, str]:
    cells = [line.split("│") for line in text.splitlines() if line.count("│") >= 3]
    return {cell[1].strip(): cell[2].strip() for cell in cells}


def copy_of(suite, tmp_path):
    copied = tmp_path / "copy"
    shutil.copytree(suite, copied)
    return copied


def test_run_records_its_plan_and_the_leaderboard_shows_the_command(suite):
    _, out = suite
    plan = json.loads((out / "plan.json").read_text())
    assert plan["argv"] == ["run", *TINY_SMOKE, "--regimes", "zero", "--out", str(out)]
    assert plan["command"].startswith("icl-bench run --models tiny") and "--store" not in plan["command"]
    assert plan["options"]["regimes"] == [
        {"name": "zero", "params": {"augment_pool": False, "min_mean_sim": None, "sampler": "Empty()"}}
    ]
    assert plan["contexts"]["max_test"] == 6 and plan["train"]["max_steps"] == 4
    assert plan["numerics"] == {"profile": "portable", "key": numerics.key()}
    assert plan["train"]["numerics"] == numerics.key() and len(plan["constraints_sha256"]) == 64
    assert f"Made by `{plan['command']}`" in (out / "leaderboard.md").read_text()
    environments = json.loads((out / "results/synthetic-alignment/tiny/environment.json").read_text())
    assert environments["zero"]["evaluate"]["numerics"]["profile"] == "portable"


def test_reproduce_remakes_the_suite_byte_for_byte_and_strict_fails_on_a_changed_byte(
    suite, tmp_path, capsys
):
    root, out = suite
    capsys.readouterr()
    assert cli.main(["reproduce", str(out), "--strict", "--out", str(tmp_path / "again")]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert rows["plan"] == "same" and rows["environment recorded"] == "same"
    for check in ("files byte-identical", "results lines identical", "claim verdicts the same"):
        same, total = rows[check].split("/")
        assert same == total and int(total) > 0, check
    assert cli.main(["reproduce", str(out), "--out", str(tmp_path / "again")]) == 2  # the same --out again
    assert "a remake starts empty" in capsys.readouterr().err

    copied = copy_of(out, tmp_path)
    results = copied / "results/synthetic-alignment/tiny/zero.jsonl"
    lines = results.read_text().splitlines()
    record = json.loads(lines[0])
    record["prediction"] = record["prediction"] + " "  # a byte, not a score
    results.write_text("\n".join([json.dumps(record), *lines[1:]]) + "\n")
    store = ["--store", str(root / "store")]
    with pytest.raises(SystemExit) as stopped:
        cli.main(["reproduce", str(copied), "--strict", "--out", str(tmp_path / "third"), *store])
    assert stopped.value.code == 1
    assert "results/synthetic-alignment/tiny/zero.jsonl" in capsys.readouterr().out
    # without --strict the verdicts decide: still reproduced
    assert cli.main(["reproduce", str(copied), "--out", str(tmp_path / "fourth"), *store]) == 0


def test_missing_results_never_pass(suite, tmp_path, capsys):
    root, out = suite
    copied = copy_of(out, tmp_path)
    shutil.rmtree(copied / "results/synthetic-alignment/tiny")
    with pytest.raises(SystemExit):
        cli.main(["reproduce", str(copied), "--out", str(tmp_path / "o"), "--store", str(root / "store")])
    assert "results files on one side only" in capsys.readouterr().err
    assert "no claim verdicts" in " ".join(Comparison((), (), True, (), ()).failures(strict=False))


def test_reproduce_refuses_bad_plans_and_scratch_folders(suite, tmp_path, capsys):
    _, out = suite
    (tmp_path / "results").mkdir()
    assert cli.main(["reproduce", str(tmp_path)]) == 2
    assert "has no plan.json" in capsys.readouterr().err
    assert cli.main(["reproduce", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    good = json.loads((out / "plan.json").read_text())
    for broken, message in (
        ("{", "is not JSON"),
        (json.dumps({**good, "argv": ["theory"]}), "is not a `run`"),
        (json.dumps({**good, "argv": [*good["argv"], "--help"]}), "asks for help"),
        (json.dumps({**good, "stages": [["reproduce", "x"]]}), "is not a `run`"),
        (json.dumps({**good, "stages": [["probe", 1]]}), "not a list of arguments"),
        (json.dumps({**good, "numerics": {"profile": []}}), "numerics profile"),
        (json.dumps({**good, "options": None}), "options is missing"),
    ):
        (tmp_path / "plan.json").write_text(broken)
        assert cli.main(["reproduce", str(tmp_path)]) == 2, broken
        assert message in capsys.readouterr().err
    (tmp_path / "plan.json").write_text(json.dumps({**good, "argv": [*good["argv"], "--bogus"]}))
    assert cli.main(["reproduce", str(tmp_path), "--out", str(tmp_path.with_name(tmp_path.name + "-o"))]) == 2
    assert "plan.json: `icl-bench run" in capsys.readouterr().err
    for scratch in (out.parent, out):  # the remake would land on (or around) the committed suite
        assert cli.main(["reproduce", str(out), "--out", str(scratch)]) == 2
        assert "would remake into the committed suite" in capsys.readouterr().err


def test_a_changed_verdict_is_reported():
    def board(verdict: str):
        judged = SimpleNamespace(claim=SimpleNamespace(id="C1"), verdict=verdict)
        return SimpleNamespace(verdicts={"t": [SimpleNamespace(model="m", split="test", claims=[judged])]})

    assert claims(board("holds"), board("holds")) == (ClaimCheck(("t", "m", "test", "C1"), "holds", "holds"),)
    (changed,) = claims(board("holds"), board("inconclusive"))
    assert not changed.same
    result = Comparison((), (), True, (), (changed,))
    assert result.failures(strict=False) == ["claim verdicts differ: t/m/test/C1: holds -> inconclusive"]


def test_later_commands_become_stages_and_store_paths_are_not_recorded(suite, tmp_path):
    _, out = suite
    folder = copy_of(out, tmp_path)
    probe = ["probe", "--models", "tiny", "--max-probe", "2"]
    plans.add_stage(folder, plans.recorded_argv([*probe, "--store", "/somewhere"]))
    plans.add_stage(folder, probe)  # the same command again: one stage
    first = plans.read_plan(folder)
    assert first["stages"] == [probe]
    plans.write_plan(folder, {**first, "argv": ["run", "--regimes", "random", "--store=/x"]})  # another run
    assert plans.read_plan(folder)["stages"] == [probe, ["run", "--regimes", "random", "--store=/x"]]
    assert plans.recorded_argv(["run", "--store=/x", "--k", "2"]) == ["run", "--k", "2"]
    plans.add_stage(tmp_path, ["probe"])  # no plan: nothing recorded
    assert not (tmp_path / "plan.json").exists()


def test_the_same_command_resolving_to_other_work_starts_the_plan_anew(suite, tmp_path, capsys):
    """A changed default (issue 21 moved `run`'s task) must not leave the old resolution on record; the
    same command resolving to the same work keeps the plan and its stages (the real command line)."""
    root, out = suite
    folder = copy_of(out, tmp_path)
    first = plans.read_plan(folder)
    argv = [*first["argv"][:-1], str(folder)]  # the suite as if made in `folder`
    json_file = folder / "plan.json"
    json_file.write_text(json.dumps({**first, "argv": argv, "command": plans.command_line(argv)}))
    plans.add_stage(folder, ["probe"])
    capsys.readouterr()
    assert cli.main([*argv, "--store", str(root / "store")]) == 0  # the same work: nothing to redo
    assert plans.read_plan(folder)["stages"] == [["probe"]]
    assert "starts anew" not in capsys.readouterr().err
    recorded = plans.read_plan(folder)
    moved = {k: v for k, v in recorded.items() if k != "stages"}
    plans.write_plan(folder, moved | {"options": {**recorded["options"], "tasks": ["mr-offline"]}})
    again = plans.read_plan(folder)
    assert again["options"]["tasks"] == ["mr-offline"] and again["stages"] == []
    err = " ".join(capsys.readouterr().err.split())
    assert "now resolves to other work; its plan starts anew; dropped stages: icl-bench probe" in err
    assert "results of tasks it no longer runs stay until removed: synthetic-alignment" in err


def test_numerics_profiles_are_applied_before_torch_loads():
    code = (
        "from icl_bench.core import numerics; numerics.apply('portable'); import torch; "
        "print(torch.backends.cpu.get_cpu_capability(), torch.get_num_threads(), numerics.key())"
    )
    clean = {k: v for k, v in os.environ.items() if k not in numerics.VARIABLES}
    found = subprocess.run(
        [sys.executable, "-c", code], env=clean, capture_output=True, text=True, check=True
    )
    capability, threads, key = found.stdout.split()
    assert threads == str(numerics.THREADS)
    assert key == ("portable" if capability == "AVX2" else f"portable-{capability.lower()}-t{threads}")
    native = code.replace("'portable'", "'native'")
    env = {**clean, "ATEN_CPU_CAPABILITY": "default"}
    found = subprocess.run(
        [sys.executable, "-c", native], env=env, capture_output=True, text=True, check=True
    )
    assert found.stdout.split()[0] == "DEFAULT" and found.stdout.split()[2].startswith("native-default-t")
    assert numerics.resolve("portable") == "portable" and numerics.resolve("native") == "native"
    assert numerics.resolve("auto") == (
        "native" if any(map(os.path.exists, numerics.GPU_DEVICES)) else "portable"
    )


def test_a_profile_that_cannot_take_effect_is_refused():
    with pytest.raises(UsageError, match="known profiles: auto, portable, native"):
        numerics.apply("fast")
    import torch  # noqa: F401  (loaded, under the default profile conftest set)

    with pytest.raises(UsageError, match="must be set before torch loads"):
        os.environ["OMP_NUM_THREADS"] = "3"
        numerics.apply("portable")


def test_a_damaged_plan_stops_the_leaderboard_in_one_line(suite, tmp_path, capsys):
    _, out = suite
    copied = copy_of(out, tmp_path)
    (copied / "plan.json").write_text("[1, 2")
    assert cli.main(["leaderboard", "--results", str(copied / "results"), "--out", str(copied)]) == 2
    assert "plan.json is malformed" in capsys.readouterr().err
    (copied / "plan.json").write_text(
        json.dumps({"command": "icl-bench run"})
    )  # fields missing: shown as far as known
    assert cli.main(["leaderboard", "--results", str(copied / "results"), "--out", str(copied)]) == 0
    assert "Made by `icl-bench run`; `icl-bench reproduce`" in (copied / "leaderboard.md").read_text()
