"""The training objectives: the causal-LM loss (`causal_lm_loss`: vocabulary logits at label positions
only) and SPEC 6's layer-causal fine-tuning (`layer_causal_steps`: a step per layer, bottom to top);
gradient norms and their clipping (`clip_gradients`); and `_trainer`, the `transformers.Trainer`
subclass that runs either objective and logs every step's per-layer gradient norms and where the clip
acted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from icl_bench import models
from icl_bench.core.errors import UsageError
from icl_bench.train.data import IGNORE

if TYPE_CHECKING:
    import torch


def _label_nll(exits: Sequence[torch.Tensor], lens, batch: Mapping[str, Any], num_items_in_batch=None):
    """The label NLL of hidden states `exits` (each [batch, seq, hidden]) read through `lens`, summed
    over the exits: labels shifted as in the causal-LM loss, IGNORE skipped, and `lens` applied at label
    positions only.  Each exit's term is the mean over label tokens, or the sum over
    `num_items_in_batch` (the Trainer's count over an accumulated batch)."""
    import torch.nn.functional as F

    labels = batch["labels"][:, 1:]
    kept = labels != IGNORE
    count = kept.sum() if num_items_in_batch is None else num_items_in_batch
    nll = [F.cross_entropy(lens(h[:, :-1][kept]).float(), labels[kept], reduction="sum") for h in exits]
    return sum(nll) / count


def _run(model, batch: Mapping[str, Any], hooks: list) -> None:
    """One forward pass of `model` on `batch` with `hooks` in place; its own logits are not needed, so
    only the last position's are computed."""
    try:
        model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"), logits_to_keep=1)
    finally:
        for hook in hooks:
            hook.remove()


def causal_lm_loss(model, batch: Mapping[str, Any], num_items_in_batch=None) -> torch.Tensor:
    """The causal-LM loss, with the output embeddings applied at label positions only: the model's own
    loss computes vocabulary logits at every position (batch x seq x vocab floats, and their gradient),
    though a prompt-masked example has labels on its completion alone.  Same value and gradient."""
    exits: list[torch.Tensor] = []
    decoder = models.decoder(model)
    hooks = [decoder.register_forward_hook(lambda module, args, output: exits.append(output[0]))]
    _run(model, batch, hooks)
    return _label_nll(exits, models.unembedding(model), batch, num_items_in_batch)


def _layer_calls(model, batch: Mapping[str, Any]) -> list[tuple[tuple, dict]]:
    """How the model calls each decoder layer on `batch` (positional and keyword arguments: the input,
    attention mask, position embeddings, ...), from one forward pass without gradients or a cache."""
    import torch

    calls: list[tuple[tuple, dict]] = []
    layers = models.decoder_layers(model)
    hooks = [
        layer.register_forward_pre_hook(
            lambda m, args, kwargs: calls.append((args, kwargs)), with_kwargs=True
        )
        for layer in layers
    ]
    with torch.no_grad():
        try:
            model(
                input_ids=batch["input_ids"],
                attention_mask=batch.get("attention_mask"),
                use_cache=False,
                logits_to_keep=1,
            )
        finally:
            for hook in hooks:
                hook.remove()
    if len(calls) != len(layers):
        raise RuntimeError(f"the model called {len(calls)} of its {len(layers)} decoder layers")
    return calls


def _call_layer(layer, hidden: torch.Tensor, call: tuple[tuple, dict]) -> torch.Tensor:
    """`layer`'s output hidden states on input `hidden`, with the other arguments of `call`."""
    args, kwargs = call
    out = layer(hidden, *args[1:], **kwargs) if args else layer(**{**kwargs, "hidden_states": hidden})
    return out[0] if isinstance(out, tuple) else out


def layer_causal_steps(
    model,
    batch: Mapping[str, Any],
    step: Callable[[int, torch.nn.Module], None],
    num_items_in_batch=None,
) -> torch.Tensor:
    """SPEC 6's layer-causal fine-tuning on one batch, as the paper has it: "each layer sequentially,
    regarding the output of the previous layer as constant".  For l = 1..L from the bottom: layer l's
    output, computed from the output of the layers below as already updated on this batch, is read
    through the logit lens (final norm + unembedding); the gradient of its label NLL (`_label_nll`) with
    respect to layer l's own trainable parameters lands in their .grad; `step(l - 1, layer)` applies it
    (clipping, the optimizer step, clearing the gradient); then layer l's output is recomputed with its
    new weights as layer l + 1's input.  Only the decoder layers learn; each from its own exit.

    Returns the sum of the L exit losses, each taken before its own layer's step (the top one is the
    model's own loss at that point).  The released code of the paper (GiilDe/ft-vs-icl) instead sums the
    exits of detached layer inputs and steps once, updating every layer from the old lower layers."""
    import torch

    layers, lens = models.decoder_layers(model), models.logit_lens(model)
    calls = _layer_calls(model, batch)
    args, kwargs = calls[0]
    hidden = args[0] if args else kwargs["hidden_states"]
    total = torch.zeros((), device=hidden.device)
    for number, (layer, call) in enumerate(zip(layers, calls, strict=True)):
        trained = [p for p in layer.parameters() if p.requires_grad]
        output = _call_layer(layer, hidden.detach(), call)
        loss = _label_nll([output], lens, batch, num_items_in_batch)
        if trained:
            loss.backward(inputs=trained)  # layer l's parameters only: not the lens, not the layers below
        step(number, layer)
        total = total + loss.detach()
        if number + 1 < len(layers):
            with torch.no_grad():
                hidden = _call_layer(layer, hidden, call) if trained else output.detach()
    return total


def clip_gradients(params: Iterable[torch.nn.Parameter], clip: tuple[str, float]) -> bool:
    """Gradient norm clipping in place, as torch's `clip_grad_norm_`: ("l2", V) or ("linf", V) rescales
    the gradients of `params` by V / (norm + 1e-6) when that is below 1, the norm their joint L2 or
    l-infinity norm (the paper's "clipped to 12.0 in l-inf norm"); ("none", 0) leaves them.  Returns
    whether the clip acted, i.e. changed the gradients."""
    import torch

    kind, bound = clip
    params = [p for p in params if p.grad is not None]
    if kind == "none" or not params:
        return False
    norm = torch.nn.utils.clip_grad_norm_(params, bound, norm_type=2.0 if kind == "l2" else math.inf)
    return bound / (float(norm) + 1e-6) < 1.0


def _grad_norm(params: Iterable[torch.nn.Parameter], order: float) -> float:
    """The joint L2 (`order` 2) or l-infinity (`order` inf) norm of the gradients of `params` (0.0 for
    none), to 6 digits."""
    import torch

    grads = [p.grad for p in params if p.requires_grad and p.grad is not None]
    if not grads:
        return 0.0
    norm = torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(g.float(), order) for g in grads]), order
    )
    return float(f"{float(norm):.6g}")


def _layer_grad_norms(layers: Sequence[torch.nn.Module], order: float = 2.0) -> list[float]:
    """Each layer's gradient norm (L2 by default, or l-infinity) over its trainable parameters."""
    return [_grad_norm(layer.parameters(), order) for layer in layers]


def _trainer(objective: str, layers: Sequence[torch.nn.Module], clip: tuple[str, float], **kwargs):
    """A `transformers.Trainer` for `objective` that also logs, for every optimizer step, each layer's
    gradient L2 and l-infinity norms before clipping and whether the `clip` acted on that layer's
    gradient ("layer_grad_norms", "layer_grad_linf", "clip_acted" in its log history, so a resumed run
    keeps the earlier ones).  Under layer-causal a step is `layer_causal_steps`' L layer steps, each
    clipped on its own; otherwise the clip is joint (the Trainer's L2 clip, or `_callbacks`' l-inf one),
    so it acts on every layer with a gradient at once."""
    from transformers import Trainer

    class LayerTrainer(Trainer):
        pending: dict[str, list] | None = None

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if not layers:  # not a Llama-family decoder (causal-lm only): the model's own loss
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            loss = causal_lm_loss(model, inputs, num_items_in_batch)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes  # as Trainer: the count spans all processes
            return (loss, None) if return_outputs else loss

        def training_step(self, model, inputs, num_items_in_batch=None):
            if objective == "layer-causal":
                return self.layer_causal_step(model, inputs, num_items_in_batch)
            loss = super().training_step(model, inputs, num_items_in_batch)
            # After the step's last backward and before any clipping.  Not under DeepSpeed: its engine
            # keeps the gradients (ZeRO: partitioned) in its own buffers and steps inside backward, so
            # p.grad holds no gradient to read; the log has no "layer_grad_norms" then.
            if layers and not self.is_deepspeed_enabled and self.accelerator.sync_gradients:
                kind, bound = clip
                total = _grad_norm(model.parameters(), 2.0 if kind == "l2" else math.inf)
                acted = kind != "none" and bound / (total + 1e-6) < 1.0
                self.pending = {
                    "layer_grad_norms": _layer_grad_norms(layers),
                    "layer_grad_linf": _layer_grad_norms(layers, math.inf),
                    "clip_acted": [
                        acted and any(p.grad is not None for p in layer.parameters()) for layer in layers
                    ],
                }
            return loss

        def layer_causal_step(self, model, inputs, num_items_in_batch=None):
            """One batch of `layer_causal_steps`, each layer step clipped and applied by the optimizer at
            the scheduler's current learning rate; the Trainer's own step then finds no gradient."""
            if self.accelerator.num_processes > 1:
                raise UsageError("objective=layer-causal runs in one process; launch it without a launcher")
            model.train()
            inputs = self._prepare_inputs(inputs)
            norms: list[float] = []
            linf: list[float] = []
            acted: list[bool] = []

            def step(number: int, layer) -> None:
                trained = [p for p in layer.parameters() if p.grad is not None]
                norms.append(_grad_norm(trained, 2.0))
                linf.append(_grad_norm(trained, math.inf))
                acted.append(clip_gradients(trained, clip))
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)

            with self.compute_loss_context_manager():
                loss = layer_causal_steps(model, inputs, step, num_items_in_batch)
            self.pending = {"layer_grad_norms": norms, "layer_grad_linf": linf, "clip_acted": acted}
            return loss

        def log(self, logs, start_time=None):
            if "loss" in logs and self.pending is not None:
                if objective == "layer-causal":  # the Trainer saw no gradient: the layer steps' joint norm
                    logs["grad_norm"] = math.hypot(*self.pending["layer_grad_norms"])
                logs |= self.pending
                self.pending = None
            super().log(logs, start_time)

    return LayerTrainer(**kwargs)
