"""A sweep as a job graph (`icl_bench.core.jobs`): one training job per (model, task, regime), one
evaluation job per model depending on its training, the base models' evaluations free of any.

A job's call (`Work`) is picklable and rebuilds the sweep in whichever process runs it (this one, or a
scheduler's worker on another node), so the store is all the jobs share.  `graph` marks the jobs whose
artifacts exist as done; `show` prints the graph for `--dry-run`.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from icl_bench.core import numerics
from icl_bench.core.jobs import Job, Resources
from icl_bench.core.store import Store
from icl_bench.sweep.plan import Plan
from icl_bench.sweep.sweep import Sweep

KINDS = ("train", "evaluate")
_SWEEPS: dict[tuple[bytes, str], object] = {}  # per process: a sweep is checked and built once


@dataclass(frozen=True)
class OnStore:
    """A job's call that works on `plan` against the store at `root`, under the numerics `profile` of
    the command that made it (picklable: a scheduler runs it in a fresh process, maybe on another node)."""

    plan: Plan
    root: str
    profile: str

    def store(self) -> Store:
        numerics.apply(self.profile)  # before torch loads in a fresh worker
        return Store(self.root).activate()


@dataclass(frozen=True)
class Work(OnStore):
    """Train or evaluate one setting; returns the artifact folder."""

    kind: str = "train"
    task: str = ""
    model: str = ""
    regime: str | None = None

    def __call__(self) -> str:
        sweep = sweep_of(self.plan, self.store())
        setting, test_records = sweep.setting(self.task, self.model, self.regime)
        if self.kind == "train":
            return str(sweep.train(setting))
        sweep.evaluate(setting, test_records)
        return str(sweep.store.folder("evaluate", sweep.evaluate_inputs(setting)))


def on_store(plan: Plan, store: Store) -> dict[str, str]:
    """The OnStore fields of a call made in this process."""
    return {"plan": plan, "root": str(store.root.resolve()), "profile": numerics.current()}


def sweep_of(plan: Plan, store: Store):
    """The process's sweep for (plan, store), built (and checked) once."""
    key = (pickle.dumps(plan), str(store.root.resolve()))
    if key not in _SWEEPS:
        _SWEEPS[key] = Sweep(plan, store)
    return _SWEEPS[key]


def remember(sweep) -> None:
    """Let this process's jobs reuse `sweep` (the one the submitting command built)."""
    _SWEEPS[(pickle.dumps(sweep.plan), str(sweep.store.root.resolve()))] = sweep


def graph(sweep, kinds: Sequence[str] = KINDS, resources: Resources | None = None) -> list[Job]:
    """The sweep's jobs in the order the in-process sweep runs them: per task and model, the base
    evaluation, then each regime's training and evaluation (`kinds` keeps some of them).  Trainings ask
    for `resources`; evaluations for the same on one process (they do not distribute)."""
    remember(sweep)
    train = resources or Resources()
    evaluate = train.single()
    jobs, here = [], on_store(sweep.plan, sweep.store)
    for setting, _ in sweep.settings():
        regime = setting.regime.name if setting.regime else None
        work = {**here, "task": setting.task.name, "model": setting.model.name, "regime": regime}
        needs = ()
        if regime is not None and "train" in kinds:
            inputs = sweep.train_inputs(setting)
            name = f"train {setting.label}"
            jobs.append(
                Job(
                    name,
                    Work(kind="train", **work),
                    writes=(_relative(sweep.store, "train", inputs),),
                    done=sweep.store.has("train", inputs),
                    resources=train,
                )
            )
            needs = (name,)
        if "evaluate" in kinds:
            inputs = sweep.evaluate_inputs(setting)
            jobs.append(
                Job(
                    f"evaluate {setting.label}",
                    Work(kind="evaluate", **work),
                    after=needs,
                    writes=(_relative(sweep.store, "evaluate", inputs),),
                    done=sweep.store.has("evaluate", inputs),
                    resources=evaluate,
                )
            )
    return jobs


def _relative(store: Store, stage: str, inputs: dict) -> str:
    return store.folder(stage, inputs).relative_to(store.root).as_posix()


def show(jobs: Sequence[Job], store: Store) -> list[str]:
    """The lines of `--dry-run`: each job with what it needs, asks for, and writes (existing or not)."""
    lines = [f"{len(jobs)} jobs, {sum(not j.done for j in jobs)} to run; store {store.root}"]
    for number, job in enumerate(jobs, 1):
        r = job.resources
        asks = f"{r.nodes}x{r.tasks_per_node} tasks, {r.cpus_per_task} cpus, {r.gpus_per_node} gpus"
        asks += f", {r.mem_gb:g} GB, {r.time_min} min"
        lines.append(f"{number:>3}. {job.name} [{'exists' if job.done else 'to run'}]")
        if job.after:
            lines.append(f"     after: {', '.join(job.after)}")
        lines.append(f"     asks: {asks}")
        lines.extend(f"     writes: {path}" for path in job.writes)
    return lines


def job_folder(out: Path) -> Path:
    """Where an executor keeps a suite's job logs and scheduler files."""
    return (out / ".jobs").resolve()


@dataclass(frozen=True)
class Finish(OnStore):
    """The last job of a detached sweep: record every evaluated setting's results and write the
    leaderboard; a setting without its evaluation is reported as a failure."""

    @classmethod
    def of(cls, sweep) -> Finish:
        return cls(**on_store(sweep.plan, sweep.store))

    def __call__(self) -> list[str]:
        sweep = sweep_of(self.plan, self.store())
        missing = [
            f"{setting.label}: not evaluated; see the job logs in {job_folder(self.plan.out)}"
            for setting, _ in sweep.settings()
            if not sweep.store.has("evaluate", sweep.evaluate_inputs(setting))
        ]
        return sweep.finish(missing)
