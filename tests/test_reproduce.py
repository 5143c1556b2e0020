"""A suite's plan.json, `icl-bench reproduce`, and the numerics profile it is made under."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from icl_bench import cli
from icl_bench.core import numerics
from icl_bench.core.errors import UsageError
from icl_bench.sweep import record as plans
from icl_bench.sweep.reproduce import ClaimCheck, claims


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """A tiny smoke suite made by the command line, as a user would (zero regime only)."""
    root = tmp_path_factory.mktemp("reproduce")
    out = root / "suite"
    argv = ["run", "--models", "tiny", "--size", "smoke", "--regimes", "zero", "--out", str(out)]
    assert cli.main([*argv, "--store", str(root / "store")]) == 0
    return root, out


def test_run_records_its_plan_and_the_leaderboard_shows_the_command(suite):
    _, out = suite
    plan = json.loads((out / "plan.json").read_text())
    assert plan["argv"][:2] == ["run", "--models"] and plan["command"].startswith(
        "icl-bench run --models tiny"
    )
    assert plan["options"]["regimes"] == [
        {"name": "zero", "params": {"augment_pool": False, "min_mean_sim": None, "sampler": "Empty()"}}
    ]
    assert plan["contexts"]["max_test"] == 6 and plan["train"]["max_steps"] == 4
    assert plan["numerics"] == {"profile": "portable", "key": numerics.key()}
    assert plan["train"]["numerics"] == numerics.key() and len(plan["constraints_sha256"]) == 64
    assert f"Made by `{plan['command']}`" in (out / "leaderboard.md").read_text()
    environments = json.loads((out / "results/synthetic-alignment/tiny/environment.json").read_text())
    assert environments["zero"]["evaluate"]["numerics"]["profile"] == "portable"


def test_reproduce_remakes_the_suite_byte_for_byte_and_strict_fails_on_a_changed_byte(suite, capsys):
    root, out = suite
    capsys.readouterr()
    assert cli.main(["reproduce", str(out), "--strict", "--out", str(root / "again")]) == 0
    table = capsys.readouterr().out
    rows = {
        line.split("│")[1].strip(): line.split("│")[2].strip() for line in table.splitlines() if "│" in line
    }
    assert rows["plan"] == "same"
    assert len({rows["files byte-identical"]} | set(rows["files byte-identical"].split("/"))) == 2  # n/n
    assert rows["claim verdicts the same"].split("/")[0] == rows["claim verdicts the same"].split("/")[1]

    results = out / "results/synthetic-alignment/tiny/zero.jsonl"
    lines = results.read_text().splitlines()
    record = json.loads(lines[0])
    record["prediction"] = record["prediction"] + " "  # a byte, not a score
    results.write_text("\n".join([json.dumps(record), *lines[1:]]) + "\n")
    store = ["--store", str(root / "store")]
    with pytest.raises(SystemExit) as stopped:
        cli.main(["reproduce", str(out), "--strict", "--out", str(root / "third"), *store])
    assert stopped.value.code == 1
    assert "results/synthetic-alignment/tiny/zero.jsonl" in capsys.readouterr().out
    # without --strict the verdicts decide: still reproduced
    assert cli.main(["reproduce", str(out), "--out", str(root / "fourth"), *store]) == 0


def test_reproduce_refuses_a_suite_without_a_plan(tmp_path, capsys):
    (tmp_path / "results").mkdir()
    assert cli.main(["reproduce", str(tmp_path)]) == 2
    assert "has no plan.json" in capsys.readouterr().err
    (tmp_path / "plan.json").write_text(json.dumps({"argv": ["theory"], "numerics": {"profile": "portable"}}))
    assert cli.main(["reproduce", str(tmp_path)]) == 2
    assert "not an `icl-bench run` command" in capsys.readouterr().err


def test_a_changed_verdict_is_reported():
    def board(verdict: str):
        judged = SimpleNamespace(claim=SimpleNamespace(id="C1"), verdict=verdict)
        return SimpleNamespace(verdicts={"t": [SimpleNamespace(model="m", split="test", claims=[judged])]})

    assert claims(board("holds"), board("holds")) == (ClaimCheck(("t", "m", "test", "C1"), "holds", "holds"),)
    (changed,) = claims(board("holds"), board("inconclusive"))
    assert not changed.same


def test_numerics_profiles_are_applied_before_torch_loads():
    code = (
        "from icl_bench import numerics; numerics.apply('portable'); import torch; "
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
    found = subprocess.run(
        [sys.executable, "-c", native],
        env={**clean, "ATEN_CPU_CAPABILITY": "default"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert found.stdout.split()[0] == "DEFAULT" and found.stdout.split()[2].startswith("native-default-t")


def test_a_profile_that_cannot_take_effect_is_refused():
    with pytest.raises(UsageError, match="known profiles: portable, native"):
        numerics.apply("fast")
    import torch  # noqa: F401  (loaded, under the default profile conftest set)

    with pytest.raises(UsageError, match="must be set before torch loads"):
        os.environ["OMP_NUM_THREADS"] = "3"
        numerics.apply("portable")


def test_a_later_stage_is_recorded_for_the_rerun(suite, tmp_path):
    _, out = suite
    folder = tmp_path / "copy"
    folder.mkdir()
    (folder / "plan.json").write_text((out / "plan.json").read_text())
    plans.add_stage(folder, "probe", ["probe", "--models", "tiny", "--max-probe", "2"])
    assert plans.read_plan(folder)["stages"] == {"probe": ["probe", "--models", "tiny", "--max-probe", "2"]}
    plans.add_stage(tmp_path, "probe", ["probe"])  # no plan: nothing recorded
    assert not (tmp_path / "plan.json").exists()
    record = json.loads((folder / "plan.json").read_text())
    (folder / "plan.json").write_text(json.dumps({**record, "stages": {"probe": ["run"]}}))
    with pytest.raises(UsageError, match="malformed stages"):
        plans.read_plan(folder)
