"""The commands' stages over a sweep's job graph (`icl_bench.sweep.jobs`): `run` (train, evaluate,
record, tabulate), `train`, `evaluate` and `baselines`, each through an executor (default: `local`,
this process, one job after another)."""

from __future__ import annotations

from pathlib import Path

from icl_bench.core import plugins
from icl_bench.core.errors import UsageError
from icl_bench.core.jobs import Executor, Job, Outcome, Resources
from icl_bench.core.store import Store
from icl_bench.sweep.jobs import Finish, graph, job_folder
from icl_bench.sweep.plan import Plan
from icl_bench.sweep.record import plan_record, write_plan
from icl_bench.sweep.sweep import Sweep


def run(
    plan: Plan,
    store: Store,
    executor: Executor | None = None,
    resources: Resources | None = None,
    wait: bool = True,
) -> list[str]:
    """Execute the plan's job graph with `executor`, then record the results and rewrite the
    leaderboard; return the failures (one line each).  With `wait` False the executor only submits,
    and a last job (after all others, whatever their outcome) records and tabulates."""
    sweep = Sweep(plan, store)
    write_plan(plan.out, plan_record(plan, sweep.precision, sweep.contexts_config, sweep.train_config))
    sweep.baselines()
    jobs = graph(sweep, resources=resources)
    if not wait:
        after, one = tuple(j.name for j in jobs), (resources or Resources()).single()
        last = Job("leaderboard", Finish.of(sweep), after=after, always=True, resources=one)
        execute(sweep, [*jobs, last], executor, wait=False)
        return []
    try:
        outcomes = execute(sweep, jobs, executor)
    except UsageError:  # the work done so far is written before the error stops the sweep
        sweep.record_evaluated()
        raise
    return sweep.finish(failed(outcomes))


def train_stage(
    plan: Plan, store: Store, executor: Executor | None = None, resources: Resources | None = None
) -> tuple[list[Path], list[str]]:
    """`icl-bench train`: train every (model, task, regime) of the plan, under the keys `run` uses;
    return the trained folders and the failures."""
    sweep = Sweep(plan, store)
    outcomes = execute(sweep, graph(sweep, ("train",), resources), executor)
    trained = [folder for s, _ in sweep.settings(base=False) if (folder := sweep.trained(s)) is not None]
    return trained, failed(outcomes)


def evaluate_stage(
    plan: Plan, store: Store, executor: Executor | None = None, resources: Resources | None = None
) -> list[str]:
    """`icl-bench evaluate`: evaluate the base and every trained model of the plan and write their
    results into the suite; a regime that was not trained yet is an error before any evaluation."""
    sweep = Sweep(plan, store)
    untrained = [s.label for s, _ in sweep.settings(base=False) if not sweep.trained(s)]
    if untrained:
        raise UsageError(
            f"not trained yet: {', '.join(untrained)}; run `icl-bench train` with the same options first"
        )
    sweep.baselines()
    outcomes = execute(sweep, graph(sweep, ("evaluate",), resources), executor)
    sweep.record_evaluated()
    return failed(outcomes)


def baselines_stage(plan: Plan, store: Store) -> list[Path]:
    """`icl-bench baselines`: score the trivial baselines on the plan's test contexts into the suite's
    results (no model, no training); return the files written."""
    return Sweep(plan, store).baselines()


def failed(outcomes: list[Outcome]) -> list[str]:
    """One line per job that failed (its error and log); the jobs skipped for its sake add none."""
    return [o.line() for o in outcomes if o.state == "failed"]


def execute(sweep: Sweep, jobs: list[Job], executor: Executor | None, wait: bool = True) -> list[Outcome]:
    """Run `jobs` with `executor` (default: `local`), its logs in the suite's job folder."""
    return (executor or plugins.executors["local"]).run(jobs, job_folder(sweep.plan.out), wait=wait)
