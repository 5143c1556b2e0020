"""The `local` executor: the job graph in this process, in order; failures recorded, dependents skipped."""

import json
import re

import pytest

from icl_bench.core import plugins
from icl_bench.core.errors import UsageError
from icl_bench.core.jobs import Job
from icl_bench.train.config import TrainingDiverged

LOCAL = plugins.executors["local"]


def test_runs_in_order_and_returns_results(tmp_path):
    ran = []
    jobs = [
        Job("a", lambda: ran.append("a") or 1),
        Job("b", lambda: ran.append("b") or 2, after=("a",)),
        Job("c", lambda: ran.append("c"), done=True),
    ]
    outcomes = LOCAL.run(jobs, tmp_path)
    assert ran == ["a", "b"]  # a done job is not run again
    assert [(o.job, o.state, o.result) for o in outcomes] == [
        ("a", "done", 1),
        ("b", "done", 2),
        ("c", "done", None),
    ]


def test_a_failure_is_recorded_its_dependents_skipped_the_rest_run(tmp_path):
    def diverge():
        raise TrainingDiverged("loss is nan at step 3")

    ran = []
    jobs = [
        Job("train", diverge),
        Job("evaluate", lambda: ran.append("evaluate"), after=("train",)),
        Job("other", lambda: ran.append("other")),
        Job("last", lambda: ran.append("last"), after=("train", "other"), always=True),
    ]
    states = {o.job: (o.state, o.error) for o in LOCAL.run(jobs, tmp_path)}
    assert states["train"] == ("failed", "loss is nan at step 3")
    assert states["evaluate"][0] == "skipped" and "train did not finish" in states["evaluate"][1]
    assert ran == ["other", "last"]  # `always`: after its dependencies, whatever their outcome


def test_a_usage_error_stops_everything(tmp_path):
    def bad():
        raise UsageError("unknown task 'x'")

    ran = []
    with pytest.raises(UsageError, match="unknown task"):
        LOCAL.run([Job("a", bad), Job("b", lambda: ran.append("b"))], tmp_path)
    assert ran == []


def test_executors_are_plugins(capsys):
    from icl_bench import cli

    assert {"local", "slurm"} <= set(plugins.executors)
    assert cli.main(["list", "executors", "--json"]) == 0
    listed = [item["name"] for item in json.loads(capsys.readouterr().out)["executors"]]
    assert listed == ["local", "slurm"]
    with pytest.raises(UsageError, match="unknown executor 'ray'; known executors: local, slurm"):
        plugins.executors["ray"]


def test_dry_run_prints_the_graph_and_runs_nothing(tmp_path):
    from helpers import TINY_SMOKE, run_cli

    args = ("run", *TINY_SMOKE, "--regimes", "zero", "--dry-run")
    done = run_cli(*args, "--store", str(tmp_path / "store"), "--out", "suite", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("3 jobs, 3 to run; store ")
    assert "  2. train tiny / synthetic-alignment / zero [to run]" in lines
    assert "     after: train tiny / synthetic-alignment / zero" in lines
    assert any(line.startswith("     writes: train/") for line in lines)
    assert not (tmp_path / "suite").exists() and not (tmp_path / "store" / "train").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--detach",), "--detach needs an executor that submits jobs"),
        (("--executor", "slurm", "--numerics", "native"), "--executor slurm needs --numerics portable"),
        (("--executor", "ray"), "unknown executor 'ray'; known executors: local, slurm"),
        (("--executor", "slurm", "--gpus-per-node", "-1"), r"gpus_per_node \(--gpus-per-node\) must be"),
        (("--part", "gpu"), "unrecognized arguments: --part gpu"),  # no abbreviations: plans record names
        (
            ("--report-to", "wandb"),
            "--report-to wandb: the wandb package is not installed; pip install wandb",
        ),
    ],
)
def test_bad_executor_options_are_one_line_before_any_work(tmp_path, options, message):
    from helpers import TINY_SMOKE, error_line, run_cli

    done = run_cli("run", *TINY_SMOKE, *options, "--out", "suite", cwd=tmp_path)
    assert re.search(message, error_line(done))
    assert not (tmp_path / "suite").exists()


def test_slurm_without_its_tools_is_one_line(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(UsageError, match=r"--executor slurm: sbatch is not on PATH; .*cluster\.sh up"):
        plugins.executors["slurm"].check()


def test_a_plan_records_no_executor_option():
    from icl_bench.sweep.record import recorded_argv

    argv = ["run", "--executor", "slurm", "--partition=gpu", "--gpus-per-node", "4", "--detach", "--k", "4"]
    assert recorded_argv([*argv, "--report-to", "wandb", "--store", "/x", "--executor-config", "c.toml"]) == [
        "run",
        "--k",
        "4",
    ]
