"""`local`: the job graph in this process, one job after another, in the graph's order (the default).

A job that fails (a diverged or crashed training) is recorded and the sweep goes on; the jobs that need
it are skipped.  A usage error stops everything at once, as in any command.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from icl_bench import hookimpl
from icl_bench.core.jobs import Executor, Job, Outcome, check_graph
from icl_bench.core.progress import console
from icl_bench.train.config import TrainingDiverged


class Local(Executor):
    name = "local"
    description = "in this process, one job after another (the default)"
    remote = False

    def run(self, jobs: Sequence[Job], folder: Path, *, wait: bool = True) -> list[Outcome]:
        check_graph(jobs)
        outcomes: dict[str, Outcome] = {}
        for number, job in enumerate(jobs, 1):
            lost = [name for name in job.after if outcomes[name].state != "done"]
            if not job.done and len(jobs) > 1:  # a counter for a graph, not for one job
                console.print(f"[dim][{number}/{len(jobs)}][/] {job.name}")
            if job.done:
                outcomes[job.name] = Outcome(job.name, "done")
            elif lost and not job.always:
                outcomes[job.name] = Outcome(job.name, "skipped", error=f"skipped: {lost[0]} did not finish")
            else:
                try:
                    outcomes[job.name] = Outcome(job.name, "done", result=job.call())
                except (TrainingDiverged, RuntimeError) as error:  # recorded; the sweep goes on
                    line = next(iter(str(error).strip().splitlines()), "") or type(error).__name__
                    outcomes[job.name] = Outcome(job.name, "failed", error=line)
        return [outcomes[job.name] for job in jobs]


@hookimpl
def register_executors(register) -> None:
    register(Local())
