"""The probe stage (`icl-bench probe`): the base model and every snapshot of every trained regime of a
plan predict every probe context, each (model, snapshot)'s predictions a store artifact so a rerun
computes nothing; their scores, cells and verdicts are written as probes.md/json/png."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from icl_bench import models
from icl_bench.analyses.probes.claims import Probed, State
from icl_bench.analyses.probes.contexts import (
    PROMPTS,
    VERSION,
    build_probe_contexts,
    check_task,
    read_items,
)
from icl_bench.analyses.probes.outputs import Report, report, write_probes
from icl_bench.analyses.probes.scores import predict, score
from icl_bench.contexts.build import evaluation_splits
from icl_bench.core import numerics, plugins
from icl_bench.core.errors import UsageError
from icl_bench.core.files import read_jsonl, write_jsonl
from icl_bench.core.names import BASE
from icl_bench.core.progress import console
from icl_bench.core.store import Store
from icl_bench.core.types import Task
from icl_bench.sweep.jobs import OnStore, on_store

if TYPE_CHECKING:
    from icl_bench.sweep.plan import Plan


@dataclass(frozen=True)
class Probe(OnStore):
    """`probe_stage` as a job's call (`icl-bench probe --executor ...`); returns the reports."""

    examples: int | None = None

    @classmethod
    def of(cls, plan: Plan, store: Store, examples: int | None = None) -> Probe:
        return cls(**on_store(plan, store), examples=examples)

    def __call__(self) -> list[Report]:
        return probe_stage(self.plan, self.store(), self.examples)


def preflight(plan: Plan, store: Store, *, skip_untrained: bool = False):
    """What the probes need, checked before any work: each task has a paraphraser and k >= 2, every
    regime is trained (`skip_untrained`: those that are not are left out) with snapshots.  Returns the
    sweep, its trained settings, and their folders by label."""
    from icl_bench.sweep.sweep import Setting, Sweep
    from icl_bench.train.snapshots import snapshots

    for name in plan.tasks:  # before the sweep materialises any model
        check_task(plugins.tasks[name], plan.k)
    sweep = Sweep(plan, store)
    settings: list[Setting] = [setting for setting, _ in sweep.settings(base=False)]
    untrained, bare, trained = [], [], {}
    for setting in settings:
        folder = sweep.trained(setting)
        if folder is None:
            untrained.append(setting.label)
        elif not snapshots(folder):
            bare.append(setting.label)
        else:
            trained[setting.label] = folder
    if untrained and not skip_untrained:
        raise UsageError(
            f"not trained yet: {', '.join(untrained)}; run `icl-bench train` with the same options first"
        )
    if bare:
        raise UsageError(
            f"trained without snapshots: {', '.join(bare)}; the probes read them: retrain with "
            "snapshot_steps > 0 (rerun `icl-bench train` with a size preset that sets it)"
        )
    return sweep, settings, trained


def probe_stage(
    plan: Plan, store: Store, examples: int | None = None, *, skip_untrained: bool = False
) -> list[Report]:
    """`icl-bench probe`: probe the base model and every snapshot of every regime of the plan, write
    probes.md/json/png into `plan.out`; return the Report (cells, verdicts) of each (task, model).

    A regime that is not trained is an error before any work (`skip_untrained`: left out, as after a
    sweep whose training failed), so is one trained without snapshots or a task without a paraphraser.
    """
    from icl_bench.sweep.plan import size_of
    from icl_bench.train.snapshots import snapshots

    n = examples or size_of(plan.size).probe_examples
    sweep, settings, trained = preflight(plan, store, skip_untrained=skip_untrained)
    probed = []
    for task in sweep.tasks:
        folder = build_probe_contexts(task, sweep.contexts_config, store, n)
        items = read_items(folder)
        for spec in sweep.specs:
            reference = sweep.references[spec.name]
            states = [State(BASE, 0)]
            for setting in settings:
                if setting.task is task and setting.model is spec and setting.label in trained:
                    assert setting.regime is not None
                    for step, snapshot in snapshots(trained[setting.label]):
                        states.append(State(setting.regime.name, step, snapshot))
            values = {}
            for state in states:
                predictions = _predictions(sweep, task, spec, reference, folder, items, state)
                values[state.name] = score(task, items, predictions)
            ids = tuple(item.target.id for item in items)
            split = items[0].split if items else evaluation_splits(task)[0]
            probed.append(Probed(task.name, spec.name, split, plan.k, ids, tuple(states), values))
    reports = [report(p) for p in probed]
    write_probes(reports, plan.out)
    return reports


def _predictions(sweep, task: Task, spec, reference: str, contexts: Path, items, state: State) -> dict:
    """One state's predictions under every probe context, from the store or made and stored now."""
    from icl_bench.train.snapshots import load_trained

    trained = None if state.folder is None else f"{state.folder.parent.parent.name}/{state.folder.name}"
    inputs = {
        "model": models.identity(spec, reference),
        "task": task.name,
        "probe-contexts": contexts.name,
        "trained": trained,
        "batch_size": sweep.plan.batch_size,
        "precision": sweep.precision,
        "numerics": numerics.key(),
        "version": VERSION,
    }
    if not sweep.store.has("probe-predictions", inputs):
        console.print(f"[bold]probe[/] {spec.name} / {task.name} / {state.regime} step {state.step}")
        loaded = (
            models.load(reference, sweep.precision)
            if state.folder is None
            else load_trained(reference, state.folder, sweep.precision)
        )
        made = predict(*loaded, task, items, sweep.plan.batch_size)
        rows = [
            {"id": item.target.id, "prompt": name, "prediction": made[name][i]}
            for name in PROMPTS
            for i, item in enumerate(items)
        ]
        with sweep.store.writing("probe-predictions", inputs) as folder:
            write_jsonl(folder / "predictions.jsonl", rows)
    found = read_jsonl(sweep.store.folder("probe-predictions", inputs) / "predictions.jsonl")
    by_key = {(r["id"], r["prompt"]): r["prediction"] for r in found}
    return {name: [by_key[(item.target.id, name)] for item in items] for name in PROMPTS}
