"""`icl-bench run`: contexts -> train each regime -> evaluate base + trained models -> leaderboard.

Every stage result is a store artifact keyed by its inputs, so an interrupted sweep resumes where it
stopped and an unchanged sweep recomputes nothing.  A failing training run is recorded and the sweep
goes on.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

from icl_bench import models
from icl_bench.contexts.build import (
    ContextSet,
    build_contexts,
    check_paraphrasers,
    read_test_records,
)
from icl_bench.core import environment, numerics, plugins
from icl_bench.core.errors import UsageError
from icl_bench.core.files import fingerprint, read_jsonl, write_json, write_jsonl
from icl_bench.core.locks import claim, made
from icl_bench.core.progress import console
from icl_bench.core.store import Store
from icl_bench.core.types import BASELINE_FILE, Regime, Task
from icl_bench.evaluate.export import metric_names
from icl_bench.sweep.plan import Plan, size_of
from icl_bench.train.deepspeed_env import world
from icl_bench.train.trainer import LOG

EVAL_VERSION = 3  # 2: a corpus metric's sufficient statistics; 3: reasons of metrics that explain
SUITES_ROOT = "leaderboards"  # a folder of suites, indexed by its README.md


@dataclass(frozen=True)
class Setting:
    """One unit of a sweep: a model on a task, untrained (`regime` None, the base) or trained."""

    task: Task
    model: models.ModelSpec
    reference: str
    regime: Regime | None
    contexts: ContextSet

    @property
    def label(self) -> str:
        return f"{self.model.name} / {self.task.name} / {self.regime.name if self.regime else 'base'}"


def _write_bins(task: Task, test_records: list[dict], folder: Path, metric: str | None) -> None:
    """Bin edges are fixed per task from the contexts alone, before any model is scored."""
    from icl_bench.score.bins import bin_edges

    method = "fixed" if task.similarity_bins else "tertiles"
    edges = bin_edges([r["max_sim"] for r in test_records], method=method, fixed=task.similarity_bins)
    bins = {"task": task.name, "metric": metric or task.metric, "method": method, "edges": list(edges)}
    write_json(folder / "bins.json", {**bins, "records": planned_records(test_records)})


def planned_records(test_records: list[dict]) -> dict[str, dict[str, list[str]]]:
    """split -> mode -> the test ids the contexts hold: every model's results must have exactly these."""
    planned: dict[str, dict[str, list[str]]] = {}
    for r in sorted(test_records, key=lambda r: (r["split"], r["mode"], r["id"])):
        planned.setdefault(r["split"], {}).setdefault(r["mode"], []).append(r["id"])
    return planned


class Sweep:
    """Trains and evaluates settings through the store: each result is built once, then reused.

    Constructing one checks everything that can be checked before hours of work: the size, every task
    (registered, its data loadable) and every model (resolved and reachable).
    """

    def __init__(self, plan: Plan, store: Store):
        size = size_of(plan.size)
        self.plan, self.store, self.results = plan, store, plan.out / "results"
        overrides = {"max_test": plan.max_test, "max_pool": plan.max_pool, "epochs": plan.epochs}
        self.contexts_config = replace(
            size.contexts,
            **{name: value for name, value in overrides.items() if value is not None},
            k=plan.k,
            seed=plan.seed,
            paraphraser=plan.paraphraser,
            paraphrase_model=plan.paraphrase_model,
        )
        if plan.paraphraser:
            plugins.paraphrasers[plan.paraphraser]  # an unknown name fails now, listing the known ones
        self.precision = models.resolve_precision(plan.precision)
        self.train_config = replace(
            size.train, seed=plan.seed, precision=self.precision, report_to=plan.report_to
        )
        if plan.learning_rate is not None:
            self.train_config = replace(self.train_config, learning_rate=plan.learning_rate)
        if plan.max_steps is not None:
            self.train_config = replace(self.train_config, max_steps=plan.max_steps)
        self.specs = [models.resolve(name) for name in plan.models]
        self.tasks = [plugins.tasks[name] for name in plan.tasks]
        for task in self.tasks:  # data or a metric that cannot be had fails now, not after hours
            task.check()
            for name in metric_names(task, plan.metric):
                plugins.metrics[name].check(store)
            check_paraphrasers(task, plan.regimes)  # what each task's contexts need, before any task's
            if plan.paraphraser and not task.paraphraser:
                raise UsageError(f"task {task.name!r} has no paraphrase mode; drop --paraphraser for it")
            pool = len(task.load(task.pool_split)[: self.contexts_config.max_pool])
            if pool <= plan.k:
                raise UsageError(
                    f"k={plan.k} needs more than {pool} pool examples in task {task.name!r}; lower --k"
                )
        # Resolve every model first, so an unreachable one fails before any training starts.
        self.references = {spec.name: models.materialize(spec, store) for spec in self.specs}

    def settings(self, *, base: bool = True) -> Iterator[tuple[Setting, list[dict]]]:
        """Every setting with its task's test records, in the sweep's order: per task and model, the
        base (when `base`) and then each regime."""
        regimes: tuple[Regime | None, ...] = ((None,) if base else ()) + tuple(self.plan.regimes)
        for task in self.tasks:
            contexts = build_contexts(task, self.plan.regimes, self.contexts_config, self.store)
            test_records = read_test_records(contexts.test, task)
            for spec in self.specs:
                for regime in regimes:
                    yield Setting(task, spec, self.references[spec.name], regime, contexts), test_records

    def setting(self, task: str, model: str, regime: str | None) -> tuple[Setting, list[dict]]:
        """One setting of the sweep by its names (a job's), with its task's test records."""
        for setting, test_records in self.settings():
            names = (setting.task.name, setting.model.name, setting.regime.name if setting.regime else None)
            if names == (task, model, regime):
                return setting, test_records
        raise UsageError(f"the sweep has no setting {model} / {task} / {regime or 'base'}")

    def baselines(self) -> list[Path]:
        """Score every task's trivial baselines on its test contexts (`icl_bench.score.baselines`) into
        <results>/<task>/baselines.jsonl, before any model: they need only the pool and the contexts."""
        from icl_bench.score.baselines import baseline_records, check_metric, suite_sims

        written = []
        for task in self.tasks:
            contexts = build_contexts(task, (), self.contexts_config, self.store)
            test_records = read_test_records(contexts.test, task)
            pool = task.load(task.pool_split)[: self.contexts_config.max_pool]
            folder = self.results / task.name
            sims = suite_sims(folder, test_records)
            check_metric(folder, self.plan.metric or task.metric)
            if sims is None or not (folder / "bins.json").is_file():
                _write_bins(task, test_records, folder, self.plan.metric)
            else:  # beside a suite's models: their max_sim and bins, to the last digit; the plan's records
                bins = json.loads((folder / "bins.json").read_text(encoding="utf-8"))
                write_json(folder / "bins.json", {**bins, "records": planned_records(test_records)})
                test_records = [
                    {**r, "max_sim": sims[(r["split"], r["mode"], r["id"])]} for r in test_records
                ]
            write_jsonl(folder / BASELINE_FILE, baseline_records(task, test_records, pool, self.plan.metric))
            written.append(folder / BASELINE_FILE)
        return written

    def finish(self, failures: list[str]) -> list[str]:
        """Write the results of every evaluated setting, the leaderboard, the suites' index, and
        failures.json (the lines of what did not run); return `failures`."""
        from icl_bench.report.leaderboard import write_leaderboard
        from icl_bench.report.suites import index_suites

        out = self.plan.out
        self.record_evaluated()
        write_leaderboard(self.results, out)
        if out.parent.name == SUITES_ROOT:  # a suite among suites: refresh their index
            index_suites(out.parent)
        (out / "failures.json").unlink(missing_ok=True)
        if failures:
            write_json(out / "failures.json", failures)
        return failures

    def record_evaluated(self) -> None:
        """Write the results of every setting whose evaluation the store holds."""
        for setting, test_records in self.settings():
            if self.store.has("evaluate", self.evaluate_inputs(setting)):
                self.record(setting, test_records, self.evaluate(setting, test_records))

    def record(self, setting: Setting, test_records: list[dict], evaluated: tuple[list[dict], dict]) -> None:
        """Write a setting's per-sample results, its task's bins and the environments that made them."""
        samples, environments = evaluated
        folder = self.results / setting.task.name
        _write_bins(setting.task, test_records, folder, self.plan.metric)
        label = setting.regime.name if setting.regime else "base"
        model_folder = folder / models.folder_name(setting.model.name)
        write_jsonl(model_folder / f"{label}.jsonl", samples)
        recorded = model_folder / environment.FILE
        known = json.loads(recorded.read_text()) if recorded.is_file() else {}
        write_json(recorded, {**known, label: environments})

    def evaluate(self, setting: Setting, test_records: list[dict]) -> tuple[list[dict], dict]:
        """Per-sample results of the setting under every test mode (training it first if needed), and
        the environments it was trained and evaluated in."""
        trained = self.train(setting) if setting.regime else None
        inputs = self.evaluate_inputs(setting)
        folder = made(
            self.store, "evaluate", inputs, lambda: self._evaluate(setting, test_records, trained, inputs)
        )
        environments = {"train": _recorded(trained / LOG, "environment") if trained else None}
        environments["evaluate"] = _recorded(folder / environment.FILE)
        return read_jsonl(folder / "samples.jsonl"), environments

    def evaluate_inputs(self, setting: Setting) -> dict:
        """The evaluation's store key: the model (and the trained model's key), the contexts' content,
        and everything that changes a prediction."""
        trained = self.store.folder("train", self.train_inputs(setting)).name if setting.regime else None
        return {
            "model": models.identity(setting.model, setting.reference),
            "task": setting.task.name,
            "contexts": fingerprint([setting.contexts.test]),  # their content, not their folder's name
            "version": EVAL_VERSION,
            "trained": trained,
            "batch_size": self.plan.batch_size,
            "precision": self.precision,
            "numerics": numerics.key(),
            **({"metric": self.plan.metric} if self.plan.metric else {}),
        }

    def _evaluate(
        self, setting: Setting, test_records: list[dict], trained: Path | None, inputs: dict
    ) -> None:
        """Run the evaluation and write its artifact."""
        from icl_bench.evaluate.runner import evaluate
        from icl_bench.train.snapshots import load_trained

        console.print(f"[bold]evaluate[/] {setting.label}")
        reference, precision = setting.reference, self.precision
        loaded = load_trained(reference, trained, precision) if trained else models.load(reference, precision)
        regime = setting.regime.name if setting.regime else "base"
        samples = evaluate(
            *loaded,
            setting.task,
            test_records,
            model_name=setting.model.name,
            regime=regime,
            batch_size=self.plan.batch_size,
            metric=self.plan.metric,
        )
        with self.store.writing("evaluate", inputs) as folder:
            write_jsonl(folder / "samples.jsonl", samples)
            write_json(folder / environment.FILE, environment.capture(self.precision))

    def train_inputs(self, setting: Setting) -> dict:
        regime = setting.regime
        assert regime is not None
        return {
            "model": models.identity(setting.model, setting.reference),
            "contexts": setting.contexts.train[regime.name].name,
            "regime": regime.name,
            "params": regime.params(),
            "config": self.train_config.key(),
        }

    def trained(self, setting: Setting) -> Path | None:
        """The trained model's folder if it exists in the store."""
        inputs = self.train_inputs(setting)
        return self.store.folder("train", inputs) if self.store.has("train", inputs) else None

    def train(self, setting: Setting) -> Path:
        """The trained model for (model, task data, regime and parameters, hyper-parameters, seed)."""
        inputs = self.train_inputs(setting)
        if world()[1] > 1:  # one rank of a distributed job: every rank trains
            return self._train_rank(setting, inputs)
        return made(self.store, "train", inputs, lambda: self._train(setting, inputs))

    def _train_rank(self, setting: Setting, inputs: dict) -> Path:
        """One rank of a training job whose processes a scheduler started (no launcher): every rank
        trains under DeepSpeed into a working folder beside the checkpoints, rank 0 (which holds the
        artifact's lock meanwhile) then copies it into the store."""
        from icl_bench.train.trainer import train

        final, (rank, size) = self.store.folder("train", inputs), world()
        if self.store.has("train", inputs):
            return final
        assert setting.regime is not None
        checkpoints = self.store.folder("checkpoints", inputs)
        records = setting.contexts.training_records(setting.regime.name)
        console.print(f"[bold]train[/] {setting.label} (rank {rank} of {size})")
        work = checkpoints / "output"
        with claim(self.store, "train", inputs) if rank == 0 else nullcontext():
            train(
                setting.reference,
                setting.model,
                records,
                self.train_config,
                work,
                checkpoints,
                deepspeed=True,
            )
            if rank == 0:
                with self.store.writing("train", inputs) as output:
                    shutil.copytree(work, output, dirs_exist_ok=True)
                shutil.rmtree(checkpoints, ignore_errors=True)
        return final

    def _train(self, setting: Setting, inputs: dict) -> None:
        """Train the setting (resuming from its checkpoints) and write its artifact."""
        from icl_bench.train.launch import run_job, write_job
        from icl_bench.train.trainer import train

        config, plan = self.train_config, self.plan
        assert setting.regime is not None
        checkpoints = self.store.folder("checkpoints", inputs)  # kept across interruptions: training resumes
        console.print(f"[bold]train[/] {setting.label}")
        records = setting.contexts.training_records(setting.regime.name)
        with self.store.writing("train", inputs) as output:
            if plan.launcher == "none":
                train(setting.reference, setting.model, records, config, output, checkpoints)
            else:
                job = write_job(
                    checkpoints / "job",
                    reference=setting.reference,
                    model=setting.model.name,
                    records=records,
                    config=config,
                    output=output,
                    checkpoints=checkpoints,
                )
                run_job(job, num_gpus=plan.num_gpus, hostfile=plan.hostfile, launcher=plan.launcher)
        shutil.rmtree(checkpoints, ignore_errors=True)


def _recorded(path: Path, key: str | None = None) -> dict | None:
    """The environment in a JSON file (under `key`), or None for an artifact made before records."""
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return data.get(key) if key else data
