"""The `slurm` executor against a real cluster (`tests/slurm/cluster.sh up`): `tiny` sweeps at the smoke
size as SLURM jobs, compared byte for byte with the in-process sweep."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import TINY_SMOKE

CLUSTER = Path(__file__).resolve().parents[1] / "slurm" / "cluster.sh"
SWEEP = ("run", *TINY_SMOKE, "--out", "suite")
JOBS = ("--executor", "slurm", "--cpus-per-task", "1", "--mem-gb", "3")


def cluster_is_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    found = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
    return found.returncode == 0 and any(s.startswith(("idle", "mix", "alloc")) for s in found.stdout.split())


pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(not cluster_is_up(), reason=f"no SLURM cluster here: start one with `{CLUSTER} up`"),
]


def icl_bench(cwd: Path, store: Path, *args: str, wait: bool = True):
    """`icl-bench ARGS` in a fresh process from `cwd`; a Popen when not `wait`."""
    cwd.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "ICL_BENCH_STORE": str(store), "OMP_WAIT_POLICY": "PASSIVE"}
    command = [sys.executable, "-m", "icl_bench.cli", *args, "--store", str(store)]
    if not wait:
        return subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)


def suite_bytes(folder: Path) -> dict[str, bytes]:
    """Every file of a suite but the executor's job logs."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".jobs" not in p.relative_to(folder).parts
    }


def made(suites: list[Path], stage: str) -> list[str]:
    """The settings the suites' job logs say they computed (`train ...` / `evaluate ...` lines)."""
    logs = sorted(log for suite in suites for log in (suite / ".jobs").rglob("*_log.err"))
    return [
        line for log in logs for line in log.read_text().splitlines() if line.startswith(f"{stage} tiny /")
    ]


def test_a_slurm_sweep_is_byte_identical_and_two_at_once_compute_each_artifact_once(tmp_path):
    regimes = ("--regimes", "zero,contrastive")
    local = icl_bench(tmp_path / "local", tmp_path / "local-store", *SWEEP, *regimes)
    assert local.returncode == 0, local.stderr[-2000:]
    shared = tmp_path / "shared-store"
    both = [icl_bench(tmp_path / name, shared, *SWEEP, *regimes, *JOBS, wait=False) for name in ("a", "b")]
    for sweep in both:
        _, err = sweep.communicate(timeout=1800)
        assert sweep.returncode == 0, err[-2000:]
    expected = suite_bytes(tmp_path / "local" / "suite")
    assert suite_bytes(tmp_path / "a" / "suite") == expected
    assert suite_bytes(tmp_path / "b" / "suite") == expected
    suites = [tmp_path / name / "suite" for name in ("a", "b")]
    assert len(made(suites, "train")) == 2  # zero, contrastive: once each
    assert len(made(suites, "evaluate")) == 3  # base, zero, contrastive
    again = icl_bench(tmp_path / "a", shared, *SWEEP, *regimes, *JOBS)
    assert again.returncode == 0 and "nothing to submit" in again.stderr


def test_a_cancelled_training_resumes_from_its_checkpoint(tmp_path):
    longer = ("--regimes", "zero", "--max-steps", "600")  # a minute of training: scancel lands in it
    local = icl_bench(tmp_path / "local", tmp_path / "local-store", *SWEEP, *longer)
    assert local.returncode == 0, local.stderr[-2000:]
    store = tmp_path / "store"
    first = icl_bench(tmp_path / "slurm", store, *SWEEP, *longer, *JOBS, wait=False)
    deadline = time.time() + 900
    while not list((store / "checkpoints").glob("*/checkpoint-*")) and time.time() < deadline:
        time.sleep(0.5)
    assert list((store / "checkpoints").glob("*/checkpoint-*")), "no checkpoint within 15 min"
    queued = subprocess.run(["squeue", "-h", "-o", "%i %j"], capture_output=True, text=True).stdout
    [job] = [line.split()[0] for line in queued.splitlines() if "train tiny" in line]
    subprocess.run(["scancel", job], check=True)
    _, err = first.communicate(timeout=900)
    assert first.returncode == 1 and "CANCELLED" in err
    failures = json.loads((tmp_path / "slurm" / "suite" / "failures.json").read_text())
    assert len(failures) == 1 and failures[0].startswith("train tiny / synthetic-alignment / zero")
    again = icl_bench(tmp_path / "slurm", store, *SWEEP, *longer, *JOBS)
    assert again.returncode == 0, again.stderr[-2000:]
    [log] = [json.loads(p.read_text()) for p in (store / "train").glob("*/train_log.json")]
    assert log["resumed_from"] and 0 < log["resumed_from"] < 600 and log["steps"] == 600
    assert suite_bytes(tmp_path / "slurm" / "suite") == suite_bytes(tmp_path / "local" / "suite")


def test_a_failing_job_names_its_log_and_the_rest_is_kept(tmp_path):
    diverges = ("--regimes", "zero", "--learning-rate", "1e30")  # reaches the job: its training diverges
    done = icl_bench(tmp_path, tmp_path / "store", *SWEEP, *diverges, *JOBS)
    assert done.returncode == 1
    suite = tmp_path / "suite"
    [failure] = json.loads((suite / "failures.json").read_text())
    assert failure.startswith("train tiny / synthetic-alignment / zero: FAILED")
    log = Path(failure.rsplit("(log: ", 1)[1].rstrip(")"))
    assert log.is_file() and log.is_relative_to(suite / ".jobs") and "Diverged" in log.read_text()
    assert (suite / "results" / "synthetic-alignment" / "tiny" / "base.jsonl").is_file()  # nothing lost
    assert "| base |" in (suite / "leaderboard.md").read_text()


def test_a_two_task_job_trains_under_zero2_and_its_model_is_evaluated(tmp_path):
    store = tmp_path / "store"
    done = icl_bench(tmp_path, store, *SWEEP, "--regimes", "zero", *JOBS, "--tasks-per-node", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    [log] = [json.loads(p.read_text()) for p in (store / "train").glob("*/train_log.json")]
    assert log["world_size"] == 2 and log["deepspeed"]["zero_optimization"]["stage"] == 2
    assert (tmp_path / "suite" / "results" / "synthetic-alignment" / "tiny" / "zero.jsonl").is_file()


def test_detach_returns_at_once_a_rerun_attaches_and_a_last_job_writes_the_leaderboard(tmp_path):
    done = icl_bench(tmp_path, tmp_path / "store", *SWEEP, "--regimes", "zero", *JOBS, "--detach")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "submitted; a last job writes suite/leaderboard.md" in done.stderr
    assert not (tmp_path / "suite" / "leaderboard.md").exists()  # not yet: the jobs run on
    again = icl_bench(tmp_path, tmp_path / "store", *SWEEP, "--regimes", "zero", *JOBS)  # while they run
    assert again.returncode == 0, again.stderr[-2000:]
    assert "attached to" in again.stderr and "submitted " not in again.stderr  # nothing submitted twice
    deadline = time.time() + 900
    while len(list((tmp_path / "suite" / ".jobs").glob("*/*_result.pkl"))) < 4 and time.time() < deadline:
        time.sleep(1)  # the detached leaderboard job, after the three others
    assert "| zero |" in (tmp_path / "suite" / "leaderboard.md").read_text()
    assert not (tmp_path / "suite" / "failures.json").exists()
