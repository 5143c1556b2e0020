"""Stage 1: contexts.  The four test-context sets and each regime's training set, as JSONL records.

Every record carries the rendered prompt, the gold completion, the context example ids, the sampler
that chose them and max_sim (max sim_x between the target's and the context's inputs) for binning.
Each instance has its own RNG seeded from (seed, task, regime or mode, epoch, target id), so contexts
do not depend on processing order or on which other targets exist.

A target whose paraphrase is its own input (`pool.NoParaphrase`) is never its own near example (that
would show the target with its gold output): the `paraphrase` test mode leaves it out; in training the
contrastive regimes' paraphrase draw keeps its one_near context (the natural near example the paraphrase
would have replaced), a regime with no such fallback leaves the instance out, and similar-augmented
adds nothing for it.  `test/summary.json` and `train/<regime>.summary.json` count these (they are not
JSONL, so a fingerprint covers the contexts alone); `report` prints the non-zero counts on stderr.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from icl_bench.contexts.modes import MODES
from icl_bench.contexts.pool import NoParaphrase, Pool
from icl_bench.contexts.samplers import FellBack, Paraphrase
from icl_bench.contexts.summaries import SUMMARY, report
from icl_bench.core import plugins
from icl_bench.core.embeddings import keep_embeddings, store_folder
from icl_bench.core.errors import UsageError
from icl_bench.core.files import fingerprint, read_jsonl, write_json, write_jsonl
from icl_bench.core.progress import track
from icl_bench.core.store import Store, digest, reading
from icl_bench.core.types import Context, Example, Paraphraser, Regime, Task
from icl_bench.paraphrase import llm as paraphrase

STAGE_VERSION = 2  # 2: max_test caps a task's test examples, divided over its test splits
# In the keys of the artifacts that show paraphrases: those built before failed paraphrases were left
# out (when a target's paraphrase was its own input, the context held the target) are rebuilt.
FAILED_PARAPHRASES = {"failed_paraphrases": "left out"}


@dataclass(frozen=True)
class ContextConfig:
    """What determines the contexts: k, seed, training epochs (one context per instance per epoch),
    and optional caps on the pool and the task's test examples (first N, see `test_examples`)."""

    k: int = 4
    seed: int = 0
    epochs: int = 1
    max_pool: int | None = None
    max_test: int | None = None
    paraphraser: str | None = None  # None: the task's own; `llm` runs the paraphrase stage
    paraphrase_model: str = paraphrase.DEFAULT_MODEL

    def key(self) -> dict[str, Any]:
        chosen = {"paraphraser": self.paraphraser} if self.paraphraser else {}
        if self.paraphraser == paraphrase.LLM.name:
            chosen["paraphrase_model"] = self.paraphrase_model
        return {
            "k": self.k,
            "seed": self.seed,
            "epochs": self.epochs,
            "max_pool": self.max_pool,
            "max_test": self.max_test,
            **chosen,
            "version": STAGE_VERSION,
        }


def instance_rng(
    config: ContextConfig, task: Task, setting: str, epoch: int, target: Example
) -> random.Random:
    return random.Random(f"{config.seed}|{task.name}|{setting}|{epoch}|{target.id}")


def load_pool(task: Task, config: ContextConfig, store: Store | None = None) -> Pool:
    examples = task.load(task.pool_split)[: config.max_pool]
    pool = Pool(task, examples, paraphraser_for(task, config, store or Store()))
    if len(pool) <= config.k:
        raise UsageError(
            f"k={config.k} needs more than {len(pool)} pool examples in task {task.name!r}; lower --k"
        )
    return pool


def paraphraser_for(
    task: Task, config: ContextConfig, store: Store, report: paraphrase.Report | None = None
) -> Paraphraser | None:
    """The task's paraphraser, or the one `config` names; `llm` paraphrases every target (pool and
    capped test sets) through the paraphrase stage first."""
    name = config.paraphraser or task.paraphraser
    if config.paraphraser and not task.paraphraser:
        raise UsageError(f"task {task.name!r} has no paraphrase mode; drop --paraphraser for it")
    if name != paraphrase.LLM.name:
        return plugins.paraphrasers[name] if name else None
    inputs = [ex.input for ex in paraphrase_targets(task, config)]
    return paraphrase.prepare(task, inputs, config.paraphrase_model, store, report)


def paraphrasers_of(task: Task, config: ContextConfig) -> list[Paraphraser]:
    """The paraphrasers a task's contexts depend on: the task's own, and the one `config` names."""
    names = dict.fromkeys(name for name in (task.paraphraser, config.paraphraser) if name)
    return [plugins.paraphrasers[name] for name in names]


def paraphrase_targets(task: Task, config: ContextConfig) -> list[Example]:
    """Every example a context may need the paraphrase of (pool and capped test sets), inputs unique."""
    pool = task.load(task.pool_split)[: config.max_pool]
    tests = [ex for split in evaluation_splits(task) for ex in test_examples(task, split, config)]
    return list({ex.input: ex for ex in reversed([*pool, *tests])}.values())[::-1]


def test_examples(task: Task, split: str, config: ContextConfig) -> list[Example]:
    """The first examples of a test split: `max_test` caps a task's test examples, divided evenly over its
    test splits (60: 60 for one split, 30 + 30 for `id` + `ood`; at least one per split)."""
    splits = len(evaluation_splits(task))
    return task.load(split)[: None if config.max_test is None else max(1, config.max_test // splits)]


def evaluation_splits(task: Task) -> list[str]:
    return [s for s in task.splits if s != task.pool_split]


def modes_for(task: Task) -> list[Regime]:
    """The four test modes; `paraphrase` only for tasks that have a paraphraser."""
    return [mode for mode in MODES.values() if task.paraphraser or not needs_paraphrases(mode)]


def needs_paraphrases(regime: Regime) -> bool:
    return regime.augment_pool or any(p > 0 and isinstance(s, Paraphrase) for p, s in regime.components())


@dataclass
class Shortfall:
    """What targets without a paraphrase (`NoParaphrase`) cost one test split or training set, as target
    ids (one per instance): instances a fallback sampler made, instances left out, and targets whose
    paraphrase the similar-augmented pool did not get."""

    fell_back: list[str] = field(default_factory=list)
    fell_back_to: set[str] = field(default_factory=set)  # the samplers that made those instances
    left_out: list[str] = field(default_factory=list)
    not_augmented: list[str] = field(default_factory=list)


def _record(task: Task, target: Example, context: Context, **extra: Any) -> dict[str, Any]:
    synthetic = [ex for ex in context.examples if "paraphrase_of" in ex.meta]
    if isinstance(context, FellBack):
        extra["instead_of"] = context.instead_of
    return {
        "id": target.id,
        "prompt": task.prompt(context.examples, target),
        "completion": task.render_output(target),
        "output": target.output,
        "context_ids": [ex.id for ex in context.examples],
        "sampler": context.sampler,
        "near": context.near,
        "synthetic": [{"id": ex.id, "input": ex.input, "output": ex.output} for ex in synthetic],
        **extra,
    }


def _add_similarity(task: Task, rows: list[tuple[dict, Example, Context]]) -> None:
    """Fill max_sim / mean_sim of each record from one batched embedding of all distinct inputs."""
    texts = sorted({t.input for _, t, _ in rows} | {ex.input for _, _, c in rows for ex in c.examples})
    vectors = task.embed(texts)
    row_of = {text: i for i, text in enumerate(texts)}
    for record, target, context in rows:
        if not context.examples:
            record["max_sim"] = record["mean_sim"] = None
            continue
        sims = vectors[[row_of[ex.input] for ex in context.examples]] @ vectors[row_of[target.input]]
        record["max_sim"] = round(float(np.max(sims)), 6)
        record["mean_sim"] = round(float(np.mean(sims)), 6)


def mode_context(task: Task, pool: Pool, mode: Regime, config: ContextConfig, target: Example) -> Context:
    """The context test mode `mode` gives `target` (the probes reuse it: the same contexts exactly);
    NoParaphrase from the `paraphrase` mode for a target without a paraphrase."""
    return mode.sample(target, pool, config.k, instance_rng(config, task, f"mode:{mode.name}", 0, target))


def mode_records(
    task: Task,
    pool: Pool,
    split: str,
    mode: Regime,
    config: ContextConfig,
    shortfall: Shortfall | None = None,
) -> list[dict]:
    """One record per test target of `split`; a target without a paraphrase gets none from a mode that
    needs one (its id goes to `shortfall.left_out`)."""
    targets = test_examples(task, split, config)
    rows = []
    for target in track(targets, f"{task.name}/{split}: {mode.name} contexts"):
        try:
            context = mode_context(task, pool, mode, config, target)
        except NoParaphrase:
            if shortfall is not None:
                shortfall.left_out.append(target.id)
            continue
        rows.append((_record(task, target, context, split=split, mode=mode.name), target, context))
    _add_similarity(task, rows)
    return [record for record, _, _ in rows]


def training_set(
    task: Task, pool: Pool, regime: Regime, config: ContextConfig, shortfall: Shortfall | None = None
) -> list[dict]:
    """One record per pool example per epoch; the regime's `min_mean_sim` filter drops records.  For a
    target without a paraphrase, an instance made by a fallback sampler is recorded with `instead_of`
    (and counted in `shortfall.fell_back`), one with no fallback is left out (`shortfall.left_out`)."""
    shortfall = shortfall if shortfall is not None else Shortfall()
    targets = pool.examples
    if regime.augment_pool:
        skipped: list[Example] = []
        pool = pool.augmented(
            targets, lambda t: instance_rng(config, task, f"augment:{regime.name}", 0, t), skipped
        )
        shortfall.not_augmented.extend(t.id for t in skipped)
    rows = []
    for epoch in range(config.epochs):
        for target in track(targets, f"{task.name}: {regime.name} training set (epoch {epoch})"):
            rng = instance_rng(config, task, f"regime:{regime.name}", epoch, target)
            try:
                context = regime.sample(target, pool, config.k, rng)
            except NoParaphrase:
                shortfall.left_out.append(target.id)
                continue
            if isinstance(context, FellBack):
                shortfall.fell_back.append(target.id)
                shortfall.fell_back_to.add(context.sampler)
            rows.append((_record(task, target, context, regime=regime.name, epoch=epoch), target, context))
    _add_similarity(task, rows)
    records = [record for record, _, _ in rows]
    if regime.min_mean_sim is not None:
        records = [r for r in records if r["mean_sim"] is not None and r["mean_sim"] > regime.min_mean_sim]
    return records


def check_paraphrasers(task: Task, regimes: Sequence[Regime]) -> None:
    for regime in regimes:
        if task.paraphraser is None and needs_paraphrases(regime):
            raise UsageError(
                f"regime {regime.name!r} uses paraphrases but task {task.name!r} has no paraphraser; "
                f"pick another regime or set {regime.name}.p_paraphrase=0"
            )


def write_test_contexts(task: Task, pool: Pool, config: ContextConfig, out: Path) -> None:
    """test/<split>/<mode>.jsonl, and test/summary.json: per split, its targets and those left out of
    the paraphrase mode (no paraphrase but their own input)."""
    summary = {}
    for split in evaluation_splits(task):
        shortfall = Shortfall()
        for mode in modes_for(task):
            records = mode_records(task, pool, split, mode, config, shortfall)
            write_jsonl(out / "test" / split / f"{mode.name}.jsonl", records)
        left_out = sorted(set(shortfall.left_out))
        targets = len(test_examples(task, split, config))
        summary[split] = {"targets": targets, "left_out": len(left_out), "left_out_ids": left_out}
    write_json(out / "test" / SUMMARY, {"task": task.name, "paraphrase_mode": summary})


def write_training_set(task: Task, pool: Pool, regime: Regime, config: ContextConfig, out: Path) -> None:
    """train/<regime>.jsonl, and train/<regime>.summary.json: its instances, and how many of them a
    target without a paraphrase made fall back or left out (and, augmenting, the paraphrases not added)."""
    shortfall = Shortfall()
    records = training_set(task, pool, regime, config, shortfall)
    write_jsonl(out / "train" / f"{regime.name}.jsonl", records)
    failed = sorted({*shortfall.fell_back, *shortfall.left_out, *shortfall.not_augmented})
    summary = {
        "task": task.name,
        "regime": regime.name,
        "targets": len(pool),
        "instances": len(pool) * config.epochs,
        "records": len(records),
        "fell_back": len(shortfall.fell_back),
        "fell_back_to": sorted(shortfall.fell_back_to),
        "left_out": len(shortfall.left_out),
        "not_augmented": len(shortfall.not_augmented),
        "failed_ids": failed,
    }
    write_json(out / "train" / f"{regime.name}.{SUMMARY}", summary)


def write_contexts(task: Task, regimes: Sequence[Regime], config: ContextConfig, out: Path) -> str:
    """Write test/<split>/<mode>.jsonl and train/<regime>.jsonl (with their summaries) under `out`;
    return their fingerprint."""
    check_paraphrasers(task, regimes)
    pool = load_pool(task, config)
    write_test_contexts(task, pool, config, out)
    for regime in regimes:
        write_training_set(task, pool, regime, config, out)
    params = {r.name: r.params() for r in regimes}
    write_json(out / "config.json", {"task": task.name, **config.key(), "regimes": params})
    report([out])
    return fingerprint([out])


def data_fingerprint(task: Task) -> str:
    """sha256 of every example of every split: artifact keys change when the task's data does."""
    splits = {split: [(ex.id, ex.input, ex.output) for ex in task.load(split)] for split in task.splits}
    return digest(splits)


@dataclass(frozen=True)
class ContextSet:
    """Store artifacts of one task: the shared test contexts, and a training set per regime.  Separate
    artifacts, so adding a regime to a sweep leaves the test contexts (and every evaluation) untouched."""

    test: Path
    train: dict[str, Path]

    def training_records(self, regime: str) -> list[dict]:
        return read_jsonl(reading(self.train[regime]) / "train" / f"{regime}.jsonl")

    def fingerprint(self) -> str:
        return fingerprint([self.test, *self.train.values()])


def build_contexts(task: Task, regimes: Sequence[Regime], config: ContextConfig, store: Store) -> ContextSet:
    """The contexts artifacts for these inputs, each built once and then reused from the store."""
    check_paraphrasers(task, regimes)
    keep_embeddings(store_folder(store.root))
    base = {"task": task.name, "data": data_fingerprint(task), "config": config.key()}
    shows = {}  # the key of artifacts that show paraphrases
    if task.paraphraser:  # its version: changed paraphrases rebuild the contexts
        base["paraphrasers"] = [f"{p.name}@{p.version}" for p in paraphrasers_of(task, config)]
        shows = FAILED_PARAPHRASES
    pool: Pool | None = None

    def built(stage: str, inputs: dict, write) -> Path:
        nonlocal pool
        if not store.has(stage, inputs):
            pool = pool or load_pool(task, config, store)
            with store.writing(stage, inputs) as folder:
                write(pool, folder)
        return store.folder(stage, inputs)

    test = built("test-contexts", {**base, **shows}, lambda p, out: write_test_contexts(task, p, config, out))
    train = {
        regime.name: built(
            "training-sets",
            {
                **base,
                "regime": regime.name,
                "params": regime.params(),
                **(shows if needs_paraphrases(regime) else {}),
            },
            lambda p, out, regime=regime: write_training_set(task, p, regime, config, out),
        )
        for regime in regimes
    }
    report([test, *train.values()])
    return ContextSet(test, train)


def read_test_records(folder: Path, task: Task) -> list[dict]:
    """Every test-context record under `folder`: all test splits, all modes."""
    return [
        record
        for split in evaluation_splits(task)
        for path in sorted((reading(folder) / "test" / split).glob("*.jsonl"))
        for record in read_jsonl(path)
    ]
