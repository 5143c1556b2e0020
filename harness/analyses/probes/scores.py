"""The probe scores of one model state: per probe example IWL, ICL and the blind-copy score (over the
other slots O of C deranged; None where it is not defined), functions of the state's predictions under the
four probe contexts, which any predictor can make; `predict` makes them with a real model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from icl_bench.analyses.probes.contexts import PROMPTS, ProbeItem
from icl_bench.core import plugins
from icl_bench.core.types import Example, Task

PROBES = ("iwl", "icl", "copy")
LABELS = {"iwl": "IWL", "icl": "ICL", "copy": "copy"}
MIN_LABELS = 3  # distinct labels C needs for the copy probe to tell ICL, IWL and blind copying apart
NOT_DEFINED = "not defined"


def other_slots(labels: Sequence[str], near: int, paraphrase_label: str, gold: str) -> tuple[int, ...] | None:
    """O: the slots of C deranged (`labels`: y'_j by position) whose label is none of y'_{i*} (`near`),
    y* (`gold`) and y~ (`paraphrase_label`), labels compared stripped; None where the copy score is not
    defined: fewer than MIN_LABELS distinct labels, or O empty."""
    stripped = [label.strip() for label in labels]
    if len(set(stripped)) < MIN_LABELS:
        return None
    ruled_out = {stripped[near], gold.strip(), paraphrase_label.strip()}
    found = tuple(j for j, label in enumerate(stripped) if label not in ruled_out)
    return found or None


def copy_slots(item: ProbeItem) -> tuple[int, ...] | None:
    """The copy probe's other slots O of one probe item (None: not defined for it)."""
    labels = [ex.output for ex in item.contexts["deranged"]]
    paraphrase_label = item.contexts["paraphrase"][item.near].output
    return other_slots(labels, item.near, paraphrase_label, item.target.output)


def copy_score(prediction: str, others: Sequence[Example], gold: str) -> float | None:
    """max over the other slots' examples of copy_j = max(0, s(prediction, y'_j) - s(y*, y'_j)) /
    (1 - s(y*, y'_j)), s = BLEU / 100, y* = `gold`, clipped to 1: the similarity in excess of the gold
    answer's, so y* scores 0 and an exact copy of y'_j scores 1.  A slot with s(y*, y'_j) = 1 is not in
    O; None where no slot is left."""
    bleu = plugins.metrics["bleu"]
    found = bleu([prediction] * len(others), others)
    baseline = bleu([gold] * len(others), others)
    top = bleu.scale * (1 - 1e-9)  # sacrebleu's exact match is 100 up to rounding, either side
    excess = [(s - g) / (bleu.scale - g) for s, g in zip(found, baseline, strict=True) if g < top]
    return min(1.0, max(0.0, *excess)) if excess else None


def defined_for_task(undefined: int, examples: int) -> bool:
    """The copy probe is defined for a task unless most (over half) of its probe examples are undefined."""
    return 2 * undefined <= examples


def score(task: Task, items: Sequence[ProbeItem], predictions: Mapping[str, Sequence[str]]) -> dict:
    """Per-example IWL, ICL and copy values ({probe: [value per item]}) of one model state, from its
    predictions under each probe context ({PROMPTS name: [prediction per item]}); a copy value is None
    where the copy score is not defined for the item."""
    for name in PROMPTS:
        if len(predictions[name]) != len(items):
            raise ValueError(f"{len(predictions[name])} {name} predictions for {len(items)} probe items")
    iwl: list[float] = []
    icl: list[float] = []
    copy: list[float | None] = []
    for i, item in enumerate(items):
        alone = replace(item.target, output=predictions["empty"][i])
        iwl.append(task.output_similarity(predictions["random"][i], alone))
        guess = predictions["paraphrase"][i]
        icl.append(
            sum(
                w * task.output_similarity(guess, ex)
                for w, ex in zip(item.weights, item.contexts["paraphrase"], strict=True)
            )
        )
        slots = copy_slots(item)
        if slots is None:
            copy.append(None)
        else:
            others = [item.contexts["deranged"][j] for j in slots]
            copy.append(copy_score(predictions["deranged"][i], others, item.target.output))
    return {"iwl": iwl, "icl": icl, "copy": copy}


def predict(
    model, tokenizer, task: Task, items: Sequence[ProbeItem], batch_size: int
) -> dict[str, list[str]]:
    """A real model's predictions under every probe context, in one batched generation."""
    from icl_bench.models import generate

    prompts = [item.prompts[name] for name in PROMPTS for item in items]
    outputs = generate(
        model,
        tokenizer,
        prompts,
        max_new_tokens=task.generation.max_new_tokens,
        batch_size=batch_size,
        stop=task.generation.stop,
    )
    n = len(items)
    return {name: outputs[i * n : (i + 1) * n] for i, name in enumerate(PROMPTS)}
