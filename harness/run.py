"""`icl-bench run`: contexts -> train each regime -> evaluate base + trained models -> leaderboard.

Every stage result is a store artifact keyed by its inputs, so an interrupted sweep resumes where it
stopped and an unchanged sweep recomputes nothing.  A failing training run is recorded and the sweep
goes on.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from icl_bench import models, plugins
from icl_bench.contexts import ContextConfig, ContextSet, build_contexts, read_test_records
from icl_bench.errors import UsageError
from icl_bench.progress import console
from icl_bench.store import Store, read_jsonl, write_json, write_jsonl
from icl_bench.train import TrainConfig, TrainingDiverged
from icl_bench.types import Regime, Task

EVAL_VERSION = 1
MAIN_REGIMES = ("zero", "random", "similar", "contrastive")


@dataclass(frozen=True)
class Size:
    """A preset of data caps and training length."""

    contexts: ContextConfig
    train: TrainConfig


SIZES = {
    "smoke": Size(ContextConfig(max_pool=24, max_test=6), TrainConfig(max_steps=4, save_steps=2)),
    "default": Size(ContextConfig(max_pool=200, max_test=60, epochs=2), TrainConfig(learning_rate=1e-3)),
    "paper": Size(ContextConfig(epochs=5), TrainConfig()),
}


@dataclass(frozen=True)
class Plan:
    models: Sequence[str] = ("smollm2-135m",)
    tasks: Sequence[str] = ("synthetic-alignment",)
    regimes: Sequence[Regime] = field(default_factory=tuple)
    size: str = "default"
    seed: int = 0
    k: int = 4
    out: Path = Path("leaderboards/default")
    launcher: str = "none"
    num_gpus: int | None = None
    hostfile: Path | None = None
    batch_size: int = 16


def run(plan: Plan, store: Store) -> list[str]:
    """Execute the plan; return the failures (one line each).  The leaderboard is rewritten at the end."""
    from icl_bench.leaderboard import index_suites, write_leaderboard

    if plan.size not in SIZES:
        raise UsageError(f"unknown size {plan.size!r}; known sizes: {', '.join(SIZES)}")
    size = SIZES[plan.size]
    contexts_config = replace(size.contexts, k=plan.k, seed=plan.seed)
    train_config = replace(size.train, seed=plan.seed)
    specs = {name: models.resolve(name) for name in plan.models}
    tasks = [plugins.tasks[name] for name in plan.tasks]
    # Resolve every model first, so an unreachable one fails before any training starts.
    references = {name: models.materialize(spec, store) for name, spec in specs.items()}
    results, failures = plan.out / "results", []
    for task in tasks:
        contexts = build_contexts(task, plan.regimes, contexts_config, store)
        test_records = read_test_records(contexts.test, task)
        _write_bins(task, test_records, results / task.name)
        for name, spec in specs.items():
            settings = [("base", None), *((r.name, r) for r in plan.regimes)]
            for regime_name, regime in settings:
                try:
                    samples = _evaluate_setting(
                        plan,
                        store,
                        task,
                        spec,
                        references[name],
                        regime,
                        contexts,
                        test_records,
                        train_config,
                    )
                except (TrainingDiverged, RuntimeError) as error:  # recorded; the sweep goes on
                    failures.append(f"{name}/{task.name}/{regime_name}: {error}")
                    continue
                write_jsonl(results / task.name / name / f"{regime_name}.jsonl", samples)
    write_leaderboard(results, plan.out)
    index_suites(plan.out.parent)
    if failures:
        write_json(plan.out / "failures.json", failures)
    return failures


def _write_bins(task: Task, test_records: list[dict], folder: Path) -> None:
    """Bin edges are fixed per task from the contexts alone, before any model is scored."""
    from icl_bench.score import bin_edges

    method = "fixed" if task.similarity_bins else "tertiles"
    edges = bin_edges([r["max_sim"] for r in test_records], method=method, fixed=task.similarity_bins)
    write_json(
        folder / "bins.json",
        {"task": task.name, "metric": task.metric, "method": method, "edges": list(edges)},
    )


def _evaluate_setting(
    plan: Plan,
    store: Store,
    task: Task,
    spec: models.ModelSpec,
    reference: str,
    regime: Regime | None,
    contexts: ContextSet,
    test_records: list[dict],
    train_config: TrainConfig,
) -> list[dict]:
    """Per-sample results of one (model, task, regime) — training first unless the regime is the base."""
    from icl_bench.evaluate import evaluate
    from icl_bench.train import load_trained

    identity = models.identity(spec, reference)
    trained = None
    if regime is not None:
        trained = _train(plan, store, task, spec, reference, regime, contexts, train_config)
    eval_inputs = {
        "model": identity,
        "task": task.name,
        "contexts": contexts.test.name,
        "version": EVAL_VERSION,
        "trained": trained.name if trained else None,
        "batch_size": plan.batch_size,
    }
    label = regime.name if regime else "base"
    if not store.has("evaluate", eval_inputs):
        console.print(f"[bold]evaluate[/] {spec.name} / {task.name} / {label}")
        model, tokenizer = load_trained(reference, trained) if trained else models.load(reference)
        samples = evaluate(
            model,
            tokenizer,
            task,
            test_records,
            model_name=spec.name,
            regime=label,
            batch_size=plan.batch_size,
        )
        with store.writing("evaluate", eval_inputs) as folder:
            write_jsonl(folder / "samples.jsonl", samples)
    return read_jsonl(store.folder("evaluate", eval_inputs) / "samples.jsonl")


def _train(
    plan: Plan,
    store: Store,
    task: Task,
    spec: models.ModelSpec,
    reference: str,
    regime: Regime,
    contexts: ContextSet,
    config: TrainConfig,
) -> Path:
    """The trained model's folder for (model, task data, regime, hyper-parameters, seed), built once."""
    from icl_bench.train import run_job, train, write_job

    inputs = {
        "model": models.identity(spec, reference),
        "contexts": contexts.train[regime.name].name,
        "regime": regime.name,
        "params": regime.params(),
        "config": config.key(),
    }
    if store.has("train", inputs):
        return store.folder("train", inputs)
    checkpoints = store.folder("checkpoints", inputs)
    console.print(f"[bold]train[/] {spec.name} / {task.name} / {regime.name}")
    records = contexts.training_records(regime.name)
    with store.writing("train", inputs) as output:
        if plan.launcher == "none":
            train(reference, spec, records, config, output, checkpoints)
        else:
            job = write_job(
                checkpoints / "job",
                reference=reference,
                model=spec.name,
                records=records,
                config=config,
                output=output,
                checkpoints=checkpoints,
            )
            run_job(job, num_gpus=plan.num_gpus, hostfile=plan.hostfile, launcher=plan.launcher)
    shutil.rmtree(checkpoints, ignore_errors=True)
    return store.folder("train", inputs)
