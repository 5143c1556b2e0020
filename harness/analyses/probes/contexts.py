"""The probe contexts: for each probe example x, its four contexts (random, empty, the paraphrase context C
and C with its labels deranged), their prompts, the paraphrase's position i* and the ICL weights w_i over
C, built once per task and seed as the `probe-contexts` store artifact (as the test contexts are)."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from icl_bench.contexts.build import (
    ContextConfig,
    data_fingerprint,
    evaluation_splits,
    instance_rng,
    load_pool,
    mode_context,
    paraphrasers_of,
)
from icl_bench.contexts.modes import MODES
from icl_bench.contexts.pool import NoParaphrase, Pool
from icl_bench.core.embeddings import keep_embeddings, store_folder
from icl_bench.core.errors import UsageError
from icl_bench.core.files import read_jsonl, write_jsonl
from icl_bench.core.store import Store
from icl_bench.core.types import Example, Task

VERSION = 1  # of the probe artifacts (contexts and predictions)
PROMPTS = ("random", "empty", "paraphrase", "deranged")
DIGITS = 6  # decimals kept in the json


@dataclass(frozen=True)
class ProbeItem:
    """One probe example: its four contexts (by PROMPTS name), their prompts, the paraphrase's position
    i* in C (and in C deranged) and the ICL weights w_i over C."""

    split: str
    target: Example
    contexts: Mapping[str, tuple[Example, ...]]
    prompts: Mapping[str, str]
    near: int
    weights: tuple[float, ...]


def derangement(n: int, rng: random.Random) -> list[int]:
    """A uniformly random permutation of range(n) without fixed points (by rejection; n >= 2)."""
    if n < 2:
        raise UsageError(f"a derangement needs at least 2 positions, got {n}; raise --k")
    while True:
        order = list(range(n))
        rng.shuffle(order)
        if all(i != j for i, j in enumerate(order)):
            return order


def icl_weights(sims: Sequence[float]) -> tuple[float, ...]:
    """w_i = max(s_i, 0) / sum_j max(s_j, 0); uniform when no similarity is positive."""
    clipped = [max(float(s), 0.0) for s in sims]
    total = sum(clipped)
    if total <= 0:
        return tuple(1.0 / len(clipped) for _ in clipped)
    return tuple(s / total for s in clipped)


def probe_items(task: Task, pool: Pool, config: ContextConfig, examples: int) -> list[ProbeItem]:
    """The probe contexts of the first `examples` examples of the task's first evaluation split, less
    those without a paraphrase (as in the `paraphrase` test mode: there is no C for them)."""
    check_task(task, config.k)
    split = evaluation_splits(task)[0]
    built = []
    for target in task.load(split)[:examples]:
        shuffled = mode_context(task, pool, MODES["random"], config, target).examples
        try:
            paraphrased = mode_context(task, pool, MODES["paraphrase"], config, target)
        except NoParaphrase:
            continue
        assert paraphrased.near is not None
        order = derangement(len(paraphrased.examples), instance_rng(config, task, "probe:derange", 0, target))
        deranged = tuple(
            replace(ex, output=paraphrased.examples[j].output)
            for ex, j in zip(paraphrased.examples, order, strict=True)
        )
        contexts = {"random": shuffled, "empty": (), "paraphrase": paraphrased.examples, "deranged": deranged}
        built.append((target, contexts, paraphrased.near))
    texts = sorted({t.input for t, _, _ in built} | {ex.input for _, c, _ in built for ex in c["paraphrase"]})
    vectors = task.embed(texts) if texts else np.zeros((0, 1))
    row = {text: i for i, text in enumerate(texts)}
    items = []
    for target, contexts, near in built:
        sims = vectors[[row[ex.input] for ex in contexts["paraphrase"]]] @ vectors[row[target.input]]
        prompts = {name: task.prompt(contexts[name], target) for name in PROMPTS}
        items.append(ProbeItem(split, target, contexts, prompts, near, icl_weights(sims.tolist())))
    return items


def check_task(task: Task, k: int) -> None:
    """The probes need a paraphraser (the ICL and copy contexts) and k >= 2 (a derangement)."""
    if not task.paraphraser:
        raise UsageError(
            f"task {task.name!r} has no paraphraser: the ICL and copy probes need one; "
            "set the task's paraphraser or probe another task"
        )
    if k < 2:
        raise UsageError(
            f"the copy probe deranges the context's labels, so it needs k >= 2, not {k}; pass --k 2"
        )


def _example(ex: Example) -> dict[str, Any]:
    return {"id": ex.id, "input": ex.input, "output": ex.output, "meta": dict(ex.meta)}


def _from(data: Mapping[str, Any]) -> Example:
    return Example(data["id"], data["input"], data["output"], data.get("meta", {}))


def item_record(item: ProbeItem) -> dict[str, Any]:
    return {
        "split": item.split,
        "id": item.target.id,
        "target": _example(item.target),
        "contexts": {name: [_example(ex) for ex in item.contexts[name]] for name in PROMPTS},
        "prompts": dict(item.prompts),
        "near": item.near,
        "weights": [round(w, DIGITS) for w in item.weights],
    }


def read_items(folder: Path) -> list[ProbeItem]:
    return [
        ProbeItem(
            r["split"],
            _from(r["target"]),
            {name: tuple(_from(ex) for ex in r["contexts"][name]) for name in PROMPTS},
            r["prompts"],
            r["near"],
            tuple(r["weights"]),
        )
        for r in read_jsonl(folder / "probes.jsonl")
    ]


def build_probe_contexts(task: Task, config: ContextConfig, store: Store, examples: int) -> Path:
    """The probe-contexts artifact of (task data, paraphrasers, context config, N), built once."""
    check_task(task, config.k)
    keep_embeddings(store_folder(store.root))
    inputs = {
        "task": task.name,
        "data": data_fingerprint(task),
        "config": config.key(),
        "paraphrasers": [f"{p.name}@{p.version}" for p in paraphrasers_of(task, config)],
        "examples": examples,
        "version": VERSION,
    }
    if not store.has("probe-contexts", inputs):
        pool = load_pool(task, config, store)
        with store.writing("probe-contexts", inputs) as folder:
            write_jsonl(folder / "probes.jsonl", map(item_record, probe_items(task, pool, config, examples)))
    return store.folder("probe-contexts", inputs)
