"""The `local` executor: the job graph in this process, in order; failures recorded, dependents skipped."""

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


def test_executors_are_plugins():
    assert {"local", "slurm"} <= set(plugins.executors)
    with pytest.raises(UsageError, match="unknown executor 'ray'; known executors: local, slurm"):
        plugins.executors["ray"]
