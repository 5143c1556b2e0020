"""The training data: `encode` turns (prompt, completion) records into token ids with labels on the
completion only (IGNORE on the prompt), `Collator` pads a batch, and `padding_waste` reports the pad
positions it added.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from icl_bench.core.errors import UsageError

IGNORE = -100  # label id the loss skips


def encode(records: Sequence[Mapping[str, str]], tokenizer, max_length: int) -> list[dict[str, list[int]]]:
    """Token ids of prompt + completion + eos, and labels that are IGNORE on the prompt.  Prompt and
    completion are tokenised separately so the boundary is exact; an over-long prompt loses tokens from
    its left (after a leading bos), the completion is never cut."""
    features = []
    bos = tokenizer.bos_token_id
    for number, record in enumerate(records):
        if not isinstance(record.get("prompt"), str) or not isinstance(record.get("completion"), str):
            raise UsageError(f"training record {number} needs string 'prompt' and 'completion' fields")
        prompt = tokenizer(record["prompt"])["input_ids"]
        completion = tokenizer(record["completion"], add_special_tokens=False)["input_ids"]
        completion = [*completion, tokenizer.eos_token_id]
        head = prompt[:1] if prompt and prompt[0] == bos and bos is not None else []
        room = max_length - len(completion) - len(head)
        if room < 1:
            raise UsageError(
                f"training record {number}: its completion ({len(completion)} tokens with eos) leaves "
                f"no room for the prompt within max_length={max_length}; raise max_length"
            )
        prompt = head + prompt[len(head) :][-room:]
        features.append({"input_ids": prompt + completion, "labels": [IGNORE] * len(prompt) + completion})
    return features


@dataclass
class Collator:
    """Pads a batch on the right to its longest sequence: pad ids, IGNORE labels, attention mask 0; and
    counts the tokens it collated and the pad positions it added (the padding waste of the run)."""

    pad_id: int
    tokens: int = 0
    padding: int = 0

    def __call__(self, features: Sequence[Mapping[str, list[int]]]) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        real = sum(len(f["input_ids"]) for f in features)
        self.tokens, self.padding = self.tokens + real, self.padding + width * len(features) - real
        batch: dict[str, list[list[int]]] = {"input_ids": [], "labels": [], "attention_mask": []}
        for f in features:
            pad = width - len(f["input_ids"])
            batch["input_ids"].append([*f["input_ids"], *[self.pad_id] * pad])
            batch["labels"].append([*f["labels"], *[IGNORE] * pad])
            batch["attention_mask"].append([1] * len(f["input_ids"]) + [0] * pad)
        return {name: torch.tensor(rows, dtype=torch.long) for name, rows in batch.items()}


def padding_waste(collator: Collator) -> dict[str, float]:
    """Tokens collated, pad positions added and their share of all positions computed (this process)."""
    computed = collator.tokens + collator.padding
    return {
        "tokens": collator.tokens,
        "padding": collator.padding,
        "waste": round(collator.padding / computed, 4) if computed else 0.0,
    }
