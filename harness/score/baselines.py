"""Stage: baselines.  What trivial predictors that need no model score on the sweep's own records
(SPEC 3, turn 3): every table shows them beside the models, so a reader sees the floor a model must
clear (`majority`) and the ceiling of pure copying (`copy-nearest`).

They are scored with the task's metric on the same (test example, mode) records as every model and
written to `<results>/<task>/baselines.jsonl` under the model name `baseline`, one regime per
predictor; the leaderboard shows them in italics and never as best.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from icl_bench.core.errors import UsageError
from icl_bench.core.files import read_jsonl
from icl_bench.core.types import BASELINE_MODEL, Baseline, Case, Example, Task
from icl_bench.evaluate.export import gold_examples
from icl_bench.evaluate.runner import scored


class Majority(Baseline):
    """The most frequent output of the training pool (a label; for generation the most frequent string;
    ties: the one that comes first in the pool)."""

    name = "majority"
    description = "the training pool's most frequent output, for every record"

    def predict(self, pool: Sequence[Example], cases: Sequence[Case]) -> list[str]:
        if not pool:
            raise UsageError("the majority baseline needs a training pool; the task's pool split is empty")
        [(output, _)] = Counter(ex.output for ex in pool).most_common(1)
        return [output] * len(cases)


class CopyNearest(Baseline):
    """The output of the context example most similar to the target (sim_x; ties: the first): what
    copying alone scores.  An empty context copies nothing (the empty string)."""

    name = "copy-nearest"
    description = "the output of the context example with the highest sim_x to the target"

    def predict(self, pool: Sequence[Example], cases: Sequence[Case]) -> list[str]:
        return [case.context[int(np.argmax(case.sims))].output if case.context else "" for case in cases]


BUILT_IN: tuple[Baseline, ...] = (Majority(), CopyNearest())
ORDER = tuple(b.name for b in BUILT_IN)  # table order: these first, then a task's own by name


def baselines_of(task: Task) -> list[Baseline]:
    """The harness's baselines, then the task's own; a name used twice is an error."""
    found = [*BUILT_IN, *task.baselines()]
    names = [b.name for b in found]
    if len(set(names)) < len(names):
        raise UsageError(f"task {task.name!r} defines a baseline whose name is taken: {', '.join(names)}")
    return found


def cases(task: Task, records: Sequence[Mapping[str, Any]]) -> list[Case]:
    """Each test-context record as a Case: its context examples (pool examples by id, the synthetic
    paraphrase from the record) with their sim_x to the target, from one batched embedding; the
    recomputed max_sim must be the record's (to 1e-5: batching may round), else the embedding changed."""
    known = {ex.id: ex for ex in task.load(task.pool_split)}
    contexts = []
    for record in records:
        synthetic = {s["id"]: Example(s["id"], s["input"], s["output"]) for s in record.get("synthetic", ())}
        try:
            contexts.append(tuple(synthetic.get(i) or known[i] for i in record["context_ids"]))
        except KeyError as missing:
            raise UsageError(
                f"test context of {record['id']!r} names pool example {missing} that task {task.name!r} "
                "no longer has; rebuild the contexts (`icl-bench run` into a fresh --out)"
            ) from None
    inputs = [g.input for g in _golds(task, records)]
    texts = sorted(set(inputs) | {ex.input for context in contexts for ex in context})
    vectors = task.embed(texts)
    row = {text: i for i, text in enumerate(texts)}
    out = []
    for record, target, context in zip(records, inputs, contexts, strict=True):
        sims = vectors[[row[ex.input] for ex in context]] @ vectors[row[target]] if context else np.zeros(0)
        expected = record.get("max_sim")
        if context and expected is not None and abs(float(np.max(sims)) - expected) > 1e-5:
            raise UsageError(
                f"max_sim of {record['id']!r} ({record['mode']}) is {expected} in its record but "
                f"{float(np.max(sims)):.6f} now; the task's embedding changed: rebuild the contexts"
            )
        out.append(Case(target, context, tuple(float(s) for s in sims)))
    return out


def _golds(task: Task, records: Sequence[Mapping[str, Any]]) -> list[Example]:
    golds = gold_examples(task, (r["split"] for r in records))
    return [golds[r["split"]][r["id"]] for r in records]


def suite_sims(folder: Path, records: Sequence[Mapping[str, Any]]) -> dict[tuple, float | None] | None:
    """The max_sim of each (split, mode, id) that the models' result records in a task's results
    `folder` carry, or None when there are none yet.  They must be the same records as `records` with
    the same max_sim to 1e-5 (embeddings round differently across CPU kinds): baselines and models are
    scored on one set of contexts."""
    ours = {(r["split"], r["mode"], r["id"]): r.get("max_sim") for r in records}
    found = None
    for path in sorted(folder.glob("*/*.jsonl")):
        theirs = {(r["split"], r["mode"], r["id"]): r.get("max_sim") for r in read_jsonl(path)}
        if theirs.keys() != ours.keys() or any(not _close(theirs[k], ours[k]) for k in ours):
            raise UsageError(
                f"{path} was scored on other test contexts than these ({len(theirs)} vs {len(ours)} records, "
                "or other max_sim); pass the options the suite was made with (its --max-test, --max-pool, "
                "--k, --seed, --paraphraser), or write into a fresh --out"
            )
        found = found or theirs
    return found


def check_metric(folder: Path, metric: str) -> None:
    """A suite's bins.json names the metric its models were scored with; baselines must use the same."""
    path = folder / "bins.json"
    named = json.loads(path.read_text(encoding="utf-8")).get("metric") if path.is_file() else None
    if named is not None and named != metric:
        raise UsageError(
            f"the suite in {folder.parent.parent} was scored with metric {named!r}, not {metric!r}; "
            f"pass --metric {named} (or write into a fresh --out)"
        )


def _close(a: float | None, b: float | None) -> bool:
    return a == b or (a is not None and b is not None and abs(a - b) <= 1e-5)


def baseline_records(
    task: Task, records: Sequence[Mapping[str, Any]], pool: Sequence[Example], metric: str | None = None
) -> list[dict]:
    """Every baseline's scored result records on the test-context `records`, `pool` being the training
    pool D: sorted by (regime, split, mode, id)."""
    if not records:
        return []
    found, golds = cases(task, records), _golds(task, records)
    out = []
    for baseline in baselines_of(task):
        predictions = baseline.predict(pool, found)
        if len(predictions) != len(found) or not all(isinstance(p, str) for p in predictions):
            raise UsageError(f"baseline {baseline.name!r} must return one string per case")
        rows = list(zip(records, golds, predictions, strict=True))
        out += scored(task, rows, model_name=BASELINE_MODEL, regime=baseline.name, metric=metric)
    return out
