"""Jobs and executors: the plugin API of scale-out (`register_executors`).

A sweep becomes a graph of `Job`s (train one regime, evaluate one model, ...), each a picklable call
with the jobs it needs (`after`), the store artifacts it writes, and the resources it asks for.  An
`Executor` runs such a graph somewhere (this process, a SLURM cluster, ...) and reports one `Outcome`
per job; the content-addressed store is the only coordination between jobs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import tomllib

from icl_bench.core.errors import UsageError

State = Literal["pending", "running", "done", "failed", "skipped"]


@dataclass(frozen=True)
class Resources:
    """What one job asks of a scheduler; `tasks_per_node` x `nodes` processes form one distributed
    training (ranks from the scheduler's environment).  `extra`: further scheduler directives."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    gpus_per_node: int = 0
    nodes: int = 1
    tasks_per_node: int = 1
    cpus_per_task: int = 2
    mem_gb: float = 8.0
    time_min: int = 240
    extra: Mapping[str, Any] = field(default_factory=dict)

    def single(self) -> Resources:
        """The same on one process: what a job that does not distribute asks for."""
        return replace(self, nodes=1, tasks_per_node=1)


# the fields a command line sets one by one (`extra` only comes from a config file), and their options
SETTABLE = tuple(f.name for f in fields(Resources) if f.name != "extra")


def option(name: str) -> str:
    """The command-line option of a Resources field: `gpus_per_node` -> `--gpus-per-node`."""
    return "--" + name.replace("_", "-")


def read_resources(path: Path | None, **overrides: Any) -> Resources:
    """Resources from an executor config file (TOML: the fields of `Resources`; `[extra]` holds further
    directives), then `overrides` that are not None.  An unknown field or a bad value is one line."""
    known = {f.name: f for f in fields(Resources)}
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            raise UsageError(
                f'executor config {path}: {error}; write TOML like `partition = "gpu"`'
            ) from None
    values |= {k: v for k, v in overrides.items() if v is not None}
    wrong = sorted(set(values) - set(known))
    if wrong:
        raise UsageError(f"executor config: unknown field {wrong[0]!r}; known fields: {', '.join(known)}")
    resources = Resources(**values)
    for name in ("gpus_per_node", "nodes", "tasks_per_node", "cpus_per_task", "time_min"):
        value, least = getattr(resources, name), 0 if name == "gpus_per_node" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise UsageError(
                f"executor config: {name} ({option(name)}) must be an integer >= {least}, got {value!r}"
            )
    for name in ("partition", "account", "qos"):
        if getattr(resources, name) is not None and not isinstance(getattr(resources, name), str):
            raise UsageError(f"executor config: {name} must be a string, got {getattr(resources, name)!r}")
    mem = resources.mem_gb
    if isinstance(mem, bool) or not isinstance(mem, int | float) or mem <= 0:
        raise UsageError(
            f"executor config: mem_gb ({option('mem_gb')}) must be a positive number, got {mem!r}"
        )
    if not isinstance(resources.extra, Mapping):
        raise UsageError("executor config: [extra] must be a table of scheduler directives")
    return resources


@dataclass(frozen=True)
class Job:
    """One unit of work: `call()` does it (in any process that shares the store); `after` names the
    jobs whose success it needs (with `always`: whose end, whatever their outcome); `writes` the store
    artifacts it makes (`done`: they all exist)."""

    name: str
    call: Callable[[], object]
    after: tuple[str, ...] = ()
    always: bool = False
    writes: tuple[str, ...] = ()
    done: bool = False
    resources: Resources = Resources()


@dataclass(frozen=True)
class Outcome:
    """What became of a job: its final state, the log to read, and the first line of its error."""

    job: str
    state: State
    log: Path | None = None
    error: str | None = None
    result: Any = None  # what the call returned, when the executor can fetch it

    def line(self) -> str:
        where = f" (log: {self.log})" if self.log else ""
        return f"{self.job}: {self.error or self.state}{where}"


class Executor(ABC):
    """Runs a job graph.  `run` returns one Outcome per job, in the graph's order; with `wait` False it
    may return after submitting (the outcomes then say `pending`).  A job whose dependency failed is
    `skipped`; a job already `done` is not run again."""

    name: str = ""
    description: str = ""
    remote: bool = True  # its jobs run in other processes (which must compute the same store keys)

    def check(self) -> None:  # noqa: B027 (optional: most executors have nothing to check)
        """What can be checked before any work (the scheduler's tools are there); one line if not."""

    @abstractmethod
    def run(self, jobs: Sequence[Job], folder: Path, *, wait: bool = True) -> list[Outcome]:
        """Run `jobs`; `folder` is where logs and the scheduler's files go."""


def check_graph(jobs: Sequence[Job]) -> None:
    """Names are unique and every dependency comes earlier in the graph (so the order is runnable)."""
    seen: set[str] = set()
    for job in jobs:
        if job.name in seen:
            raise UsageError(f"job graph: two jobs are named {job.name!r}")
        missing = [name for name in job.after if name not in seen]
        if missing:
            raise UsageError(f"job graph: {job.name!r} needs {missing[0]!r}, which does not come before it")
        seen.add(job.name)
