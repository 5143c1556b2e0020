"""`slurm`: every job of the graph an sbatch job, submitted through submitit, each depending on the jobs
it needs (`afterok`; `afterany` for a job that runs whatever they did), the others free to run at once.

A job's tasks are the processes of one distributed training: rank, world size and master address come
from SLURM's environment (submitit's `JobEnvironment`), so DeepSpeed runs without its own launcher.  A
job stopped by its time limit or preempted is requeued by submitit and resumes from what the store holds
(a training's checkpoints); a cancelled one is resubmitted by running the same command again, which
submits only what is missing.  While the jobs run a table of their states replaces the progress bars.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import submitit

from icl_bench import hookimpl
from icl_bench.core.jobs import Executor, Job, Outcome, Resources, State, check_graph
from icl_bench.core.progress import console

POLL_S = 2.0
FINISHED = {"COMPLETED": "done", "FAILED": "failed", "TIMEOUT": "failed", "OUT_OF_MEMORY": "failed"}
FINISHED |= {"CANCELLED": "failed", "NODE_FAIL": "failed", "PREEMPTED": "failed", "BOOT_FAIL": "failed"}
FINISHED |= {"DEADLINE": "failed", "DONE": "done"}


class Resumable(submitit.helpers.Checkpointable):
    """A job's call that submitit requeues when SLURM stops it early (time limit, preemption); the call
    picks up from the store, where a training keeps its checkpoints."""

    def __init__(self, call: Any):
        self.call = call

    def __call__(self) -> Any:
        distributed_environment()
        return self.call()


def distributed_environment() -> None:
    """torch's variables (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) from the SLURM job's
    tasks, when there is more than one; the port is derived from the job id so every task agrees."""
    job = submitit.JobEnvironment()
    if job.num_tasks < 2:
        return
    port = 20000 + int(re.sub(r"\D", "", str(job.job_id))[-6:] or 0) % 20000
    os.environ.update(
        RANK=str(job.global_rank),
        LOCAL_RANK=str(job.local_rank),
        WORLD_SIZE=str(job.num_tasks),
        MASTER_ADDR=job.hostnames[0],
        MASTER_PORT=str(port),
    )


def parameters(job: Job, dependencies: Sequence[str]) -> dict[str, Any]:
    """submitit's parameters for one job: its resources, name and dependencies."""
    r: Resources = job.resources
    extra: dict[str, Any] = dict(r.extra)
    if dependencies:
        extra["dependency"] = ("afterany:" if job.always else "afterok:") + ":".join(dependencies)
        extra["kill_on_invalid_dep"] = "yes"  # a job whose needs failed is cancelled, not left pending
    found: dict[str, Any] = {
        "name": "icl-bench " + job.name,
        "timeout_min": r.time_min,
        "mem_gb": r.mem_gb,
        "nodes": r.nodes,
        "tasks_per_node": r.tasks_per_node,
        "cpus_per_task": r.cpus_per_task,
        "slurm_additional_parameters": extra,
    }
    if r.gpus_per_node:
        found["gpus_per_node"] = r.gpus_per_node
    for name in ("partition", "account", "qos"):
        if getattr(r, name):
            found[f"slurm_{name}"] = getattr(r, name)
    return found


class Slurm(Executor):
    name = "slurm"
    description = "each job an sbatch job via submitit, with dependencies; logs in <out>/.jobs"

    def run(self, jobs: Sequence[Job], folder: Path, *, wait: bool = True) -> list[Outcome]:
        check_graph(jobs)
        executor = submitit.AutoExecutor(folder=Path(folder) / "%j", cluster="slurm")
        submitted: dict[str, submitit.Job] = {}
        for job in jobs:
            if job.done:
                continue
            needs = [submitted[name].job_id for name in job.after if name in submitted]
            executor.update_parameters(**parameters(job, needs))
            submitted[job.name] = executor.submit(Resumable(job.call))
            console.print(f"submitted {submitted[job.name].job_id}: {job.name}")
        if not submitted:
            console.print("nothing to submit: every job's artifacts exist")
        states = watch(submitted) if wait and submitted else ({} if wait else None)
        return [outcome(job, submitted.get(job.name), states) for job in jobs]


def squeue(jobs: Sequence[submitit.Job]) -> dict[str, str]:
    """Job id -> SLURM state, from `squeue` (which keeps ended jobs for MinJobAge; submitit asks sacct,
    which a cluster without accounting does not have)."""
    ids = ",".join(str(job.job_id) for job in jobs)
    done = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", ids, "-o", "%i %T"], capture_output=True, text=True
    )
    pairs = (line.split() for line in done.stdout.splitlines() if done.returncode == 0)
    return {pair[0]: pair[1] for pair in pairs if len(pair) == 2}


def state_of(job: submitit.Job, states: dict[str, str]) -> tuple[State, str]:
    """(our state, SLURM's word for it): a job that squeue no longer lists is judged by its result file."""
    raw = states.get(str(job.job_id), "")
    if raw in FINISHED or (not raw and job.done()):
        if job.done():  # the result file decides: submitit writes it, success or failure
            return ("failed" if job.exception() else "done"), raw or "ENDED"
        return FINISHED.get(raw, "failed"), raw  # type: ignore[return-value]
    if not raw:
        return "failed", "GONE"
    return ("running" if raw in ("RUNNING", "COMPLETING") else "pending"), raw


def outcome(job: Job, submitted: submitit.Job | None, states: dict[str, str] | None) -> Outcome:
    if submitted is None:
        return Outcome(job.name, "done")
    log = submitted.paths.stderr
    if states is None:
        return Outcome(job.name, "pending", log)
    state, raw = state_of(submitted, states)
    if state == "done":
        return Outcome(job.name, "done", log, result=submitted.results()[0])
    if state in ("pending", "running"):
        return Outcome(job.name, state, log)
    if raw == "CANCELLED" and not log.is_file():
        return Outcome(job.name, "skipped", None, f"skipped: a job it needs did not finish ({raw})")
    return Outcome(job.name, "failed", log if log.is_file() else None, f"{raw}: {last_error(log)}")


def last_error(log: Path) -> str:
    """The error line of a job's stderr log: its last line that names an error, else its last line."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    named = [line for line in lines if re.search(r"(Error|error:|Exception|Diverged)", line)]
    return (named or lines or ["empty log"])[-1][:300]


def watch(submitted: dict[str, submitit.Job]) -> dict[str, str]:
    """A live table of the jobs' states (stderr) until every job has ended; the last states."""
    from rich.live import Live
    from rich.table import Table

    def table(states: dict[str, str]) -> tuple[Table, bool]:
        shown, ended = Table(title="jobs", title_justify="left"), True
        for column in ("job", "id", "state"):
            shown.add_column(column)
        for name, job in submitted.items():
            state, _ = state_of(job, states)
            ended &= state in ("done", "failed")
            log = f" ({job.paths.stderr})" if state == "failed" else ""
            shown.add_row(name, str(job.job_id), state + log)
        return shown, ended

    states = squeue(list(submitted.values())) if submitted else {}
    shown, ended = table(states)
    with Live(shown, console=console, refresh_per_second=1, transient=False) as live:
        while not ended:
            time.sleep(POLL_S)
            states = squeue(list(submitted.values()))
            shown, ended = table(states)
            live.update(shown)
    return states


@hookimpl
def register_executors(register) -> None:
    register(Slurm())
