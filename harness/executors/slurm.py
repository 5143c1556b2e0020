"""`slurm`: every job of the graph an sbatch job, submitted through submitit, each depending on the jobs
it needs (`afterok`; `afterany` for a job that runs whatever they did), the others free to run at once.

A job's tasks are the processes of one distributed training: rank, world size and master address come
from SLURM's environment (submitit's `JobEnvironment`), so DeepSpeed runs without its own launcher.  A
job stopped by its time limit or preempted is requeued by submitit and resumes from what the store holds
(a training's checkpoints); a cancelled one is resubmitted by running the same command again, which
submits only what is missing.  While the jobs run a table of their states replaces the progress bars.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import submitit

from icl_bench import hookimpl
from icl_bench.core.errors import UsageError
from icl_bench.core.files import write_json
from icl_bench.core.jobs import Executor, Job, Outcome, Resources, State, check_graph
from icl_bench.core.progress import console

POLL_S = 2.0
ENDED = {"COMPLETED": "done", "FAILED": "failed", "TIMEOUT": "failed", "OUT_OF_MEMORY": "failed"}
ENDED |= {"CANCELLED": "failed", "NODE_FAIL": "failed", "BOOT_FAIL": "failed", "DEADLINE": "failed"}
RUNNING = ("RUNNING", "COMPLETING", "CONFIGURING", "STAGE_OUT")  # anything else not ENDED waits (PENDING,
# PREEMPTED and REQUEUED on the way back to the queue, REQUEUE_HOLD, SUSPENDED, ...)
SUBMITTED = "submitted.json"  # <folder>: job name -> SLURM id, so a rerun attaches to live jobs


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

    def check(self) -> None:
        missing = [tool for tool in ("sbatch", "squeue") if shutil.which(tool) is None]
        if missing:
            raise UsageError(
                f"--executor slurm: {missing[0]} is not on PATH; run on a SLURM login node (a local "
                "one-node cluster: tests/slurm/cluster.sh up, as root)"
            )

    def run(self, jobs: Sequence[Job], folder: Path, *, wait: bool = True) -> list[Outcome]:
        check_graph(jobs)
        self.check()
        folder = Path(folder)
        executor = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm")
        submitted = live(folder, [job.name for job in jobs if not job.done])
        for job in jobs:
            if job.done or job.name in submitted:
                continue
            needs = [submitted[name].job_id for name in job.after if name in submitted]
            executor.update_parameters(**parameters(job, needs))
            try:
                submitted[job.name] = executor.submit(Resumable(job.call))
            except Exception as error:  # sbatch refused it: a partition, account or GRES that is not there
                line = next((x for x in str(error).splitlines() if "error" in x.lower()), str(error))
                raise UsageError(
                    f"sbatch refused {job.name!r}: {line.strip()[:300]}; fix the job resources"
                ) from None
            write_json(folder / SUBMITTED, {name: str(j.job_id) for name, j in submitted.items()})
            console.print(f"submitted {submitted[job.name].job_id}: {job.name}")
        if not submitted:
            console.print("nothing to submit: every job's artifacts exist")
        states = watch(submitted) if wait and submitted else ({} if wait else None)
        return [outcome(job, submitted.get(job.name), states) for job in jobs]


def live(folder: Path, names: Sequence[str]) -> dict[str, submitit.Job]:
    """The jobs of an earlier submission into `folder` that SLURM still runs or queues, by name: a
    rerun watches them instead of submitting them again."""
    path = folder / SUBMITTED
    try:
        known = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        known = {}
    wanted = {name: job_id for name, job_id in known.items() if name in names}
    if not wanted:
        return {}
    attached = {
        name: submitit.SlurmJob(folder=folder / "%j", job_id=job_id) for name, job_id in wanted.items()
    }
    states = squeue(list(attached.values())) or {}
    running = {
        name: job for name, job in attached.items() if states.get(str(job.job_id), "COMPLETED") not in ENDED
    }
    for name, job in running.items():
        console.print(f"attached to {job.job_id}: {name} (still {states[str(job.job_id)].lower()})")
    return running


def squeue(jobs: Sequence[submitit.Job]) -> dict[str, str] | None:
    """Job id -> SLURM state, from `squeue` (which keeps ended jobs for MinJobAge; submitit asks sacct,
    which a cluster without accounting does not have); None when squeue did not answer."""
    ids = ",".join(str(job.job_id) for job in jobs)
    done = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", ids, "-o", "%i %T"], capture_output=True, text=True
    )
    if done.returncode != 0:
        return None
    pairs = (line.split() for line in done.stdout.splitlines())
    return {pair[0]: pair[1] for pair in pairs if len(pair) == 2}


def state_of(job: submitit.Job, states: dict[str, str] | None) -> tuple[State, str]:
    """(our state, SLURM's word for it): a job that squeue no longer lists is judged by its result file;
    before squeue has answered (`states` None) every job is pending."""
    if states is None:
        return "pending", "UNKNOWN"
    raw = states.get(str(job.job_id), "")
    if raw in ENDED or not raw:
        if job.done():  # the result file decides: submitit writes it, success or failure
            return ("failed" if job.exception() else "done"), raw or "ENDED"
        if not raw:
            return "failed", "GONE"
        return ENDED[raw], raw  # type: ignore[return-value]
    return ("running" if raw in RUNNING else "pending"), raw


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
    if raw == "CANCELLED" and job.after and not log.is_file():  # never started: a job it needs failed
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

    def table(states: dict[str, str] | None) -> tuple[Table, bool]:
        shown, ended = Table(title="jobs", title_justify="left"), True
        for column in ("job", "id", "state"):
            shown.add_column(column)
        for name, job in submitted.items():
            state, _ = state_of(job, states)
            ended &= state in ("done", "failed")
            log = f" ({job.paths.stderr})" if state == "failed" else ""
            shown.add_row(name, str(job.job_id), state + log)
        return shown, ended

    states: dict[str, str] | None = None
    ended = False
    with Live(table(states)[0], console=console, refresh_per_second=1, transient=False) as shown:
        while not ended:
            polled = squeue(list(submitted.values()))
            states = states if polled is None else polled  # squeue did not answer: ask again next time
            view, ended = table(states)
            shown.update(view)
            if not ended:
                time.sleep(POLL_S)
    if not console.is_terminal:  # a live display off a terminal leaves its last line open
        console.line()
    assert states is not None
    return states


@hookimpl
def register_executors(register) -> None:
    register(Slurm())
