"""Test contexts as lm-eval task folders: one per (split, test mode), runnable with plain `lm_eval`.

Each folder holds `<name>.yaml`, `docs.jsonl` (one document per test record: the full prompt, the gold
example and, for multiple-choice tasks, the rendered choices) and a `utils.py` whose hooks call back
into this module.  The prompt is the whole context, so lm-eval runs with `num_fewshot: 0` and empty
delimiters and its samplers never see it.  lm-eval 0.4.13 resolves `dataset_kwargs.data_files` against
the working directory, not the YAML, so the documents load through `custom_dataset` relative to
`utils.py` instead: the folder can be moved.

    lm_eval --include_path DIR --tasks icl_bench_<task>_<split>_<mode> --model hf \\
        --model_args pretrained=<model folder>
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from icl_bench.core import plugins
from icl_bench.core.errors import UsageError
from icl_bench.core.files import write_atomic, write_jsonl
from icl_bench.core.types import Example, Task

DOCS = "docs.jsonl"
HOOKS = ("custom_dataset: !function utils.load_docs", "process_results: !function utils.process_results")
UTILS = '''"""lm-eval hooks for a task exported by icl-bench (icl_bench.evaluate.export); needs icl-bench."""

from pathlib import Path

from icl_bench.evaluate import export

METRICS = {metrics!r}


def load_docs(**_):
    return export.load_docs(Path(__file__).with_name("{docs}"))


def process_results(doc, results):
    return export.process_results(doc, results, METRICS)
'''

Records = Sequence[Mapping[str, Any]]


def task_name(task: Task, split: str, mode: str) -> str:
    """The lm-eval task name of one (split, mode): `icl_bench_<task>_<split>_<mode>`, non-word chars `_`."""
    return re.sub(r"\W", "_", f"icl_bench_{task.name}_{split}_{mode}")


def metric_names(task: Task, primary: str | None = None) -> tuple[str, ...]:
    """The primary metric (the task's, or `primary`), then the task's others (duplicates dropped)."""
    return tuple(dict.fromkeys((primary or task.metric, task.metric, *task.extra_metrics)))


def group_records(records: Records) -> dict[tuple[str, str], list[Mapping[str, Any]]]:
    """Records by (split, mode), each group sorted by id; a duplicate (split, mode, id) is an error."""
    groups: dict[tuple[str, str], dict[str, Mapping[str, Any]]] = {}
    for record in records:
        try:
            key, rid = (record["split"], record["mode"]), record["id"]
        except KeyError as missing:
            raise UsageError(f"test-context record lacks {missing}; rebuild the contexts") from None
        group = groups.setdefault(key, {})
        if rid in group:
            raise UsageError(f"test example {rid!r} appears twice in split {key[0]!r}, mode {key[1]!r}")
        group[rid] = record
    return {key: [group[rid] for rid in sorted(group)] for key, group in sorted(groups.items())}


def gold_examples(task: Task, splits: Iterable[str]) -> dict[str, dict[str, Example]]:
    """Each split's examples by id: the gold outputs, and whatever metrics read from `input` or `meta`."""
    return {split: {ex.id: ex for ex in task.load(split)} for split in sorted(set(splits))}


def documents(task: Task, records: Records, golds: Mapping[str, Example]) -> list[dict[str, Any]]:
    """lm-eval documents for one (split, mode): each record's prompt plus the gold example it came from."""
    docs = []
    for record in records:
        gold = golds.get(record["id"])
        if gold is None:
            raise UsageError(f"task {task.name!r} split {record['split']!r} has no example {record['id']!r}")
        doc = {
            "id": gold.id,
            "prompt": record["prompt"],
            "input": gold.input,
            "output": gold.output,
            "meta": json.dumps(dict(gold.meta), sort_keys=True, default=str),
        }
        if task.choices:
            if gold.output not in task.choices:
                raise UsageError(f"task {task.name!r}: the gold output of {gold.id!r} is not a choice")
            doc["labels"] = list(task.choices)
            doc["choices"] = [task.render_output(Example(gold.id, gold.input, c)) for c in task.choices]
            doc["gold"] = task.choices.index(gold.output)
        docs.append(doc)
    return docs


def task_config(task: Task, name: str) -> dict[str, Any]:
    """One exported task's YAML keys, but the `!function` hooks."""
    config: dict[str, Any] = {
        "task": name,
        "test_split": "test",
        "doc_to_text": "prompt",
        "target_delimiter": "",
        "fewshot_delimiter": "",
        "num_fewshot": 0,
    }
    if task.choices:
        config |= {"output_type": "multiple_choice", "doc_to_choice": "choices", "doc_to_target": "gold"}
    else:
        stop, budget = list(task.generation.stop), task.generation.max_new_tokens
        config |= {
            "output_type": "generate_until",
            "doc_to_target": "output",
            "generation_kwargs": {"until": stop, "max_gen_toks": budget, "do_sample": False},
        }
    config["metric_list"] = [
        {"metric": m, "aggregation": "mean", "higher_is_better": True} for m in metric_names(task)
    ]
    config["metadata"] = {"version": 1}
    return config


def export_lm_eval(task: Task, records: Records, out: Path) -> list[str]:
    """Write one lm-eval task folder per (split, mode) of `records` under `out`; return the task names."""
    groups = group_records(records)
    return write_tasks(task, groups, gold_examples(task, (split for split, _ in groups)), Path(out))


def write_tasks(
    task: Task,
    groups: Mapping[tuple[str, str], Records],
    golds: Mapping[str, Mapping[str, Example]],
    out: Path,
) -> list[str]:
    """`export_lm_eval` for records already grouped and their gold examples already loaded."""
    names = []
    for (split, mode), group in groups.items():
        name = task_name(task, split, mode)
        folder = out / name
        # JSON values are YAML flow nodes: exact strings (stop sequences) without YAML's quoting rules
        lines = [f"{key}: {json.dumps(value)}" for key, value in task_config(task, name).items()]
        write_atomic(folder / f"{name}.yaml", "\n".join([*lines, *HOOKS, ""]).encode())
        write_jsonl(folder / DOCS, documents(task, group, golds[split]))
        write_atomic(folder / "utils.py", UTILS.format(metrics=metric_names(task), docs=DOCS).encode())
        names.append(name)
    return names


def load_docs(path: Path):
    """Exported documents as the dataset lm-eval expects: a DatasetDict with one `test` split."""
    import datasets

    with open(path, encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def prediction(doc: Mapping[str, Any], results: Sequence[Any]) -> str:
    """The predicted output: the generated text, or the label of the likeliest choice (the first on ties)."""
    if "labels" not in doc:
        return results[0]
    scores = [float(r[0]) for r in results]
    return doc["labels"][scores.index(max(scores))]


def example(doc: Mapping[str, Any]) -> Example:
    """The gold example a document carries."""
    return Example(doc["id"], doc["input"], doc["output"], json.loads(doc["meta"]))


def process_results(doc: Mapping[str, Any], results: Sequence[Any], metrics: Sequence[str]) -> dict:
    """lm-eval's per-document hook in exported folders: every metric of the document's prediction."""
    guess, gold = prediction(doc, results), example(doc)
    return {name: plugins.metrics[name]([guess], [gold])[0] for name in metrics}
