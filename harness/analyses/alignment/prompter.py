"""Prompts of the ft-vs-icl analysis: token ids of a zero-shot or ICL prompt (the earliest demonstrations
dropped until it fits), the positions of the target's own tokens, label scoring, and the prefix every
ICL prompt shares (its key/value cache is reused)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from icl_bench.analyses.alignment.hooks import Recording
from icl_bench.core.types import Example, Task


class Prompter:
    """Token ids of a prompt, the positions of the target's own tokens in it, and label scores."""

    def __init__(self, task: Task, tokenizer, max_length: int):
        self.task, self.tokenizer, self.max_length = task, tokenizer, max_length
        self.labels = list(task.choices or ())
        self.label_ids = [
            tokenizer(task.render_output(Example("", "", c)), add_special_tokens=False)["input_ids"]
            for c in self.labels
        ]

    def encode(self, context: Sequence[Example], target: Example) -> tuple[list[int], list[int], int]:
        """(ids, query positions, demonstrations kept): the earliest demonstrations are dropped until
        the prompt fits `max_length` tokens."""
        context = list(context)
        while True:
            prompt = self.task.prompt(context, target)
            encoded = self.tokenizer(prompt, return_offsets_mapping=True)
            if len(encoded["input_ids"]) <= self.max_length or not context:
                break
            context = context[1:]
        start = len(prompt) - len(self.task.render_input(target))
        positions = [i for i, (a, b) in enumerate(encoded["offset_mapping"]) if a >= start and b > a]
        return encoded["input_ids"], positions, len(context)

    def predict(self, model, ids: list[int], recording: Recording) -> str:
        """The label whose tokens are likeliest after the prompt (one token: from the recording)."""
        import torch

        scores = []
        for tokens in self.label_ids:
            score = float(recording.log_probs[tokens[0]])
            if len(tokens) > 1:
                with torch.no_grad():
                    device = next(model.parameters()).device
                    out = model(input_ids=torch.tensor([ids + tokens[:-1]], device=device), use_cache=False)
                logp = torch.log_softmax(out.logits[0, len(ids) :].float(), dim=-1)
                score += float(sum(logp[i, t] for i, t in enumerate(tokens[1:])))
            scores.append(score)
        return self.labels[int(np.argmax(scores))]


def align_queries(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two (layers, heads, query tokens) maps cut to their common last query tokens (a boundary token
    may merge differently after demonstrations than at the start of a prompt)."""
    n = min(a.shape[-1], b.shape[-1])
    return a[..., -n:], b[..., -n:]


def shared_prefix(prompter: Prompter, demos: Sequence[Example], tests: Sequence[Example]) -> list[int]:
    """The token ids every ICL prompt starts with (the demonstrations), found on two targets; the
    recordings reuse their key/value cache."""
    if len(tests) < 2:
        return []
    first, second = (prompter.encode(demos, target)[0] for target in tests[:2])
    n = next(
        (i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b),
        min(len(first), len(second)),
    )
    return first[: n - 1] if n > 1 else []  # one short: a target always adds tokens of its own
