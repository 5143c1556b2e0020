"""Stage: evaluate.  Test-context records -> one scored record per (test example, mode), via lm-eval.

Every (split, mode) of the records becomes an lm-eval task folder (the one `export.export_lm_eval`
writes) whose documents already carry the full prompt; all of them run in ONE `lm_eval.simple_evaluate`
call with `num_fewshot=0`, so lm-eval pools their requests and its HFLM batches them sorted by length
(longest first), left-padded for generation.  Predictions come from the logged samples and are scored
in one batch per metric with the harness's own metrics.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from icl_bench.core import plugins
from icl_bench.core.errors import UsageError
from icl_bench.core.types import CorpusMetric, Example, Task
from icl_bench.evaluate.export import (
    gold_examples,
    group_records,
    metric_names,
    prediction,
    task_name,
    write_tasks,
)
from icl_bench.models import quiet


def check_lengths(task: Task, tokenizer, records: Sequence[Mapping[str, Any]], max_length: int) -> None:
    """Fail before any model call when a prompt plus its continuation would not fit the model's context
    (lm-eval would silently cut the prompt's start)."""
    budget = task.generation.max_new_tokens
    if task.choices:
        rendered = [task.render_output(Example("", "", choice)) for choice in task.choices]
        budget = max(len(ids) for ids in tokenizer(rendered, add_special_tokens=False).input_ids)
    lengths = [len(ids) for ids in tokenizer([r["prompt"] for r in records]).input_ids]
    too_long = sum(n + budget > max_length for n in lengths)
    if too_long:
        raise UsageError(
            f"{too_long} prompts of task {task.name!r} exceed the model's {max_length}-token context "
            f"(longest {max(lengths)} + {budget} to produce); lower --k or cap the test set"
        )


def evaluate(
    model,
    tokenizer,
    task: Task,
    records: list[dict],
    *,
    model_name: str,
    regime: str,
    batch_size: int = 16,
    metric: str | None = None,
) -> list[dict]:
    """Run `model` on every test-context record of `task` and score it; one record per (id, mode):
    task, model, regime, split, mode, id, prediction, score (the primary metric: `metric`, else the
    task's), metrics, max_sim, and stats (the primary metric's sufficient statistics, for a corpus
    metric) and reasons (metric -> why, for metrics that explain their scores)."""
    if not records:
        return []
    groups = group_records(records)
    golds = gold_examples(task, (split for split, _ in groups))
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    with quiet():  # max_length: lm-eval's own rule (the config's max_position_embeddings etc.)
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    check_lengths(task, tokenizer, records, lm.max_length)
    with tempfile.TemporaryDirectory(prefix="icl-bench-lm-eval-") as folder:
        names = write_tasks(task, groups, golds, Path(folder))
        with quiet():
            results = simple_evaluate(
                model=lm,
                tasks=names,
                task_manager=TaskManager(include_path=folder, include_defaults=False),
                num_fewshot=0,
                log_samples=True,
                predict_only=True,
                bootstrap_iters=0,
            )
    assert results is not None  # a single process is rank 0
    rows: list[tuple[Mapping[str, Any], Example, str]] = []
    for (split, mode), group in groups.items():
        by_id = {r["id"]: r for r in group}
        for sample in results["samples"][task_name(task, split, mode)]:
            rid, guess = sample["doc"]["id"], prediction(sample["doc"], sample["filtered_resps"])
            rows.append((by_id[rid], golds[split][rid], guess))
    assert len(rows) == len(records), "lm-eval returned fewer samples than documents"
    return scored(task, rows, model_name=model_name, regime=regime, metric=metric)


def scored(
    task: Task,
    rows: Sequence[tuple[Mapping[str, Any], Example, str]],
    *,
    model_name: str,
    regime: str,
    metric: str | None = None,
) -> list[dict]:
    """One result record per (test-context record, gold example, prediction), scored in one batch per
    metric (the primary first: `metric`, else the task's), sorted by (split, mode, id)."""
    predictions, examples = [p for *_, p in rows], [ex for _, ex, _ in rows]
    names = metric_names(task, metric)
    explained = {name: plugins.metrics[name].explained(predictions, examples) for name in names}
    scores = {name: values for name, (values, _) in explained.items()}
    reasons = {name: why for name, (_, why) in explained.items() if why is not None}
    primary = plugins.metrics[names[0]]
    stats = primary.statistics(predictions, examples) if isinstance(primary, CorpusMetric) else None
    out = [
        {
            "task": task.name,
            "model": model_name,
            "regime": regime,
            "split": record["split"],
            "mode": record["mode"],
            "id": record["id"],
            "prediction": guess,
            "score": float(scores[names[0]][i]),
            "metrics": {name: float(values[i]) for name, values in scores.items()},
            "max_sim": record.get("max_sim"),
            **({"stats": stats[i]} if stats else {}),
            **({"reasons": {name: why[i] for name, why in reasons.items()}} if reasons else {}),
        }
        for i, (record, _, guess) in enumerate(rows)
    ]
    return sorted(out, key=lambda r: (r["split"], r["mode"], r["id"]))
