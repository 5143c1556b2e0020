"""Recording hooks for HF decoder models (Llama family; SPEC section 6): at the last token of every layer,
the self-attention output before the residual add, and the pre-softmax attention logits from the last
token to every position, per head.

While a `Recorder` is open the model runs eager attention through a registered wrapper that computes the
last query row's logits (q . k * scaling, before the mask and the softmax) and then calls transformers'
own eager attention; a forward hook on each layer's attention module keeps its output (after the output
projection, before the residual add).  One prompt per forward: the last token is the prompt's last.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ATTENTION = "icl_bench_recording"


@dataclass(frozen=True)
class Recording:
    """One prompt's recording: `attention_output[l]` (hidden,), `logits[l]` (heads, positions) and the
    model's next-token log-probabilities `log_probs` (vocab,) at the last token."""

    attention_output: np.ndarray  # (layers, hidden)
    logits: tuple[np.ndarray, ...]
    log_probs: np.ndarray

    def query_logits(self, positions: Sequence[int]) -> np.ndarray:
        """(layers, heads, len(positions)): the logits to the given positions (e.g. the query's tokens)."""
        return np.stack([layer[:, list(positions)] for layer in self.logits])


OWNER = "_icl_bench_recorder"  # the attribute naming, on each attention module, the recorder it writes to


def _recording_attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    from transformers.models.llama.modeling_llama import eager_attention_forward, repeat_kv

    keys = repeat_kv(key, module.num_key_value_groups)
    last = (query[:, :, -1:, :] @ keys.transpose(2, 3)).squeeze(2) * scaling  # (batch, heads, positions)
    getattr(module, OWNER).logits[module.layer_idx] = last[0].detach().float().cpu().numpy()
    return eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout, **kwargs)


class Recorder:
    """`with Recorder(model) as record: recording = record(input_ids)`; the model's attention
    implementation is restored on exit.  Recorders of different models may be open together."""

    def __init__(self, model):
        from icl_bench.models import decoder_layers

        self.model = model
        self.layers = decoder_layers(model)
        self.logits: dict[int, np.ndarray] = {}
        self.outputs: dict[int, np.ndarray] = {}
        # `cache` since transformers 5.24 (`past_key_values` deprecated there), else the old name
        parameters = inspect.signature(model.forward).parameters
        self._cache_argument = "cache" if "cache" in parameters else "past_key_values"

    def __enter__(self) -> Recorder:
        from transformers import AttentionInterface
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

        AttentionInterface.register(ATTENTION, _recording_attention)
        ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, eager_mask)  # else the model builds no causal mask
        config = self.model.config
        self._previous = config._attn_implementation
        config._attn_implementation = ATTENTION  # read at each forward by every attention module
        self._hooks = []
        for number, layer in enumerate(self.layers):
            setattr(layer.self_attn, OWNER, self)
            self._hooks.append(layer.self_attn.register_forward_hook(self._keep_output(number)))
        return self

    def __exit__(self, *exc) -> None:
        for layer, hook in zip(self.layers, self._hooks, strict=True):
            hook.remove()
            delattr(layer.self_attn, OWNER)
        self.model.config._attn_implementation = self._previous

    def _keep_output(self, number: int):
        def hook(module, args, output) -> None:
            self.outputs[number] = output[0][0, -1].detach().float().cpu().numpy()

        return hook

    def prefix(self, input_ids: Sequence[int]):
        """The key/value cache of `input_ids`, for recording many prompts that start with them (the
        demonstrations every ICL prompt shares) at the cost of their own tokens only."""
        import torch
        from transformers import DynamicCache

        cache = DynamicCache()
        with torch.no_grad():
            self.model(input_ids=self._tensor(input_ids), **{self._cache_argument: cache}, use_cache=True)
        return cache

    def _tensor(self, ids: Sequence[int]):
        import torch

        return torch.tensor([list(ids)], device=next(self.model.parameters()).device)

    def __call__(self, input_ids: Sequence[int], cache=None) -> Recording:
        """Record one prompt; with `cache` (from `prefix`, whose tokens `input_ids` starts with) only the
        rest is computed, the cache is cut back afterwards."""
        import torch

        self.logits.clear()
        self.outputs.clear()
        start = cache.get_seq_length() if cache is not None else 0
        with torch.no_grad():
            ids, use = self._tensor(input_ids[start:]), cache is not None
            out = self.model(input_ids=ids, **{self._cache_argument: cache}, use_cache=use)
        if cache is not None:
            cache.crop(start - cache.get_seq_length())  # a negative count: the tokens just added
        log_probs = torch.log_softmax(out.logits[0, -1].float(), dim=-1).cpu().numpy()
        n = len(self.layers)
        if len(self.logits) != n or len(self.outputs) != n:
            raise RuntimeError(
                f"recorded {len(self.logits)} attention layers of {n}: not a Llama-family model"
            )
        return Recording(
            np.stack([self.outputs[i] for i in range(n)]), tuple(self.logits[i] for i in range(n)), log_probs
        )
