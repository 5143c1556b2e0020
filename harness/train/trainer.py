"""The train stage: fine-tune a model on (prompt, completion) records, the loss on completion tokens only.

One `transformers.Trainer` run, seeded: LoRA via `peft`, full fine-tuning, or full-rank training of the
attention keys and values alone; AdamW (or SGD) with linear decay.  The objective is the causal-LM loss
(`causal_lm_loss`: vocabulary logits at label positions only) or SPEC 6's layer-causal fine-tuning
(`layer_causal_steps`: a step per layer, bottom to top); the log keeps every step's per-layer gradient
norms and where the gradient clip acted.
Checkpoints go to a folder the caller keeps across interruptions, and a rerun resumes from the newest
complete one.  The result is a standard folder: a PEFT adapter, or a full model and its tokenizer, plus
`train_log.json`.  DeepSpeed ZeRO is the distributed engine: `zero_config` writes its config, and
`icl_bench.train.launch` runs `train` under a launcher.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import socket
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icl_bench import models
from icl_bench.core import environment, numerics
from icl_bench.core.errors import UsageError
from icl_bench.core.store import reading, write_json
from icl_bench.core.validate import check_fields, is_int, is_number
from icl_bench.models import PRECISIONS, ModelSpec, load, load_tokenizer, resolve_precision

if TYPE_CHECKING:
    import torch

ADAPT = ("attention", "attention+mlp", "full", "key-value")
OBJECTIVES = ("causal-lm", "layer-causal")
OPTIMIZERS = ("adamw_torch", "sgd")
IGNORE = -100  # label id the loss skips
KEEP_CHECKPOINTS = 2
LOG = "train_log.json"
TRAINER_VERSION = 2  # in every key; 2: the causal-LM loss computes logits at label positions only
SNAPSHOTS = "snapshots"  # <train output>/snapshots/step-N/: the adapter every `snapshot_steps` (probes)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message is one line with the step and a hint."""


@dataclass(frozen=True)
class TrainConfig:
    """Plain training settings.  `batch_size` is per process; `zero_stage` and `offload` apply only
    when training under DeepSpeed (`offload` moves the optimizer state, and at stage 3 the
    parameters, to CPU memory).  `snapshot_steps` > 0 keeps the adapter (or full model) every that
    many optimizer steps and at the last step in `snapshots/step-N/` of the output (0: none).

    `adapt`: LoRA on the attention (+mlp) projections, `full` fine-tuning, or `key-value`: full-rank
    training of the attention key and value projections alone (`ModelSpec.key_value`), all else frozen.
    `objective`: `causal-lm`, or `layer-causal` (SPEC 6: on every batch, for each decoder layer from the
    bottom up, a step on the loss of its own logit-lens exit, its input being the output of the layers
    below as already updated; `layer_causal_steps`).  Under layer-causal only the decoder layers train
    (every step belongs to one layer) and it runs in one process without gradient accumulation.
    `clip`: `l2:V` or `linf:V`, gradient norm clipping (the gradient rescaled so its L2 / l-infinity norm
    is at most V; `clip_gradients`) over all trained parameters, or under layer-causal over each layer's
    step; the default `l2:1.0` is the Trainer's own; `none`: no clipping at all.  `optim`: `adamw_torch`
    or `sgd` (plain SGD, as the seed paper).
    `group_by_length`: batches of similar lengths (the Trainer's length-grouped sampler) for less
    padding; the train log reports the padding waste either way."""

    lora_rank: int = 16
    lora_alpha: float = 32
    lora_dropout: float = 0.05
    adapt: str = "attention"
    learning_rate: float = 2e-4
    epochs: int = 1
    batch_size: int = 2
    grad_accum: int = 1
    max_steps: int = -1
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    max_length: int = 1024
    seed: int = 0
    save_steps: int = 50
    snapshot_steps: int = 0
    zero_stage: int = 2
    offload: bool = False
    precision: str = "auto"  # fp32, bf16, or auto: bf16 on a bf16 GPU, else fp32
    objective: str = "causal-lm"
    clip: str = "l2:1.0"
    optim: str = "adamw_torch"
    group_by_length: bool = False

    def __post_init__(self) -> None:
        checks = {
            "lora_rank": is_int(self.lora_rank) and self.lora_rank >= 1,
            "lora_alpha": is_number(self.lora_alpha) and self.lora_alpha > 0,
            "lora_dropout": is_number(self.lora_dropout) and 0 <= self.lora_dropout < 1,
            "adapt": self.adapt in ADAPT,
            "learning_rate": is_number(self.learning_rate) and 0 < self.learning_rate < math.inf,
            "epochs": is_int(self.epochs) and self.epochs >= 1,
            "batch_size": is_int(self.batch_size) and self.batch_size >= 1,
            "grad_accum": is_int(self.grad_accum) and self.grad_accum >= 1,
            "max_steps": is_int(self.max_steps) and (self.max_steps == -1 or self.max_steps >= 1),
            "warmup_ratio": is_number(self.warmup_ratio) and 0 <= self.warmup_ratio < 1,
            "weight_decay": is_number(self.weight_decay) and 0 <= self.weight_decay < math.inf,
            "max_length": is_int(self.max_length) and self.max_length >= 2,
            "seed": is_int(self.seed) and self.seed >= 0,
            "save_steps": is_int(self.save_steps) and self.save_steps >= 1,
            "snapshot_steps": is_int(self.snapshot_steps) and self.snapshot_steps >= 0,
            "zero_stage": is_int(self.zero_stage) and self.zero_stage in (0, 1, 2, 3),
            "offload": isinstance(self.offload, bool),
            "precision": self.precision in PRECISIONS,
            "objective": self.objective in OBJECTIVES,
            "clip": parse_clip(self.clip) is not None,
            "optim": self.optim in OPTIMIZERS,
            "group_by_length": isinstance(self.group_by_length, bool),
        }
        wanted = {
            "adapt": f"one of {', '.join(ADAPT)}",
            "lora_dropout": "in [0, 1)",
            "max_steps": "-1 (use epochs) or a positive integer",
            "precision": f"one of {', '.join(PRECISIONS)}",
            "objective": f"one of {', '.join(OBJECTIVES)}",
            "clip": "l2:V, linf:V (V a positive number) or none",
            "optim": f"one of {', '.join(OPTIMIZERS)}",
            "warmup_ratio": "in [0, 1)",
            "zero_stage": "0, 1, 2 or 3",
            "offload": "true or false",
            "group_by_length": "true or false",
            "seed": "a non-negative integer",
            "weight_decay": "a non-negative number",
            "max_length": "an integer >= 2",
            "snapshot_steps": "0 (no snapshots) or a positive integer",
        }
        check_fields(
            "train config",
            self,
            checks,
            wanted,
            lambda name: "a positive integer" if name in _INTS else "a positive number",
        )

    @property
    def lora(self) -> bool:
        return self.adapt in ("attention", "attention+mlp")

    def key(self) -> dict[str, Any]:
        """The fields that decide the trained weights, for artifact keys (not save_steps, zero_stage or
        offload, which only change how the run is carried out); `snapshot_steps` changes what the
        artifact holds (never the weights), so it is part of the key too.  `trainer` (TRAINER_VERSION)
        changes when the training code changes the weights' rounding; objective, clip, optim and
        group_by_length appear only when not at their defaults, so a new field changes no other key;
        `numerics` is the CPU numerics profile's key (`icl_bench.core.numerics`)."""
        fields = asdict(self) | {
            "precision": resolve_precision(self.precision),
            "trainer": TRAINER_VERSION,
            "numerics": numerics.key(),
        }
        for name in ("save_steps", "zero_stage", "offload"):
            del fields[name]
        for name in ("objective", "clip", "optim", "group_by_length"):
            if fields[name] == TrainConfig.__dataclass_fields__[name].default:
                del fields[name]
        if not self.lora:
            for name in ("lora_rank", "lora_alpha", "lora_dropout"):
                del fields[name]
        return fields


_INTS = {"lora_rank", "epochs", "batch_size", "grad_accum", "max_length", "seed", "save_steps"}


def parse_clip(clip: str) -> tuple[str, float] | None:
    """("none", 0.0), ("linf", V) or ("l2", V) for a `TrainConfig.clip` setting; None when malformed."""
    if clip == "none":
        return ("none", 0.0)
    kind, _, bound = clip.partition(":") if isinstance(clip, str) else ("", "", "")
    try:
        value = float(bound)
    except ValueError:
        return None
    return (kind, value) if kind in ("linf", "l2") and 0 < value < math.inf else None


# ---------------------------------------------------------------------------------------------- data


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


# ----------------------------------------------------------------------------------------- objectives


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


# ------------------------------------------------------------------------------------------- training


def zero_config(config: TrainConfig) -> dict[str, Any]:
    """A DeepSpeed ZeRO config; "auto" values are filled in by the Trainer from its arguments.  With
    offload the optimizer is DeepSpeed's CPU AdamW (a torch optimizer cannot step offloaded state)."""
    zero: dict[str, Any] = {"stage": config.zero_stage, "contiguous_gradients": True, "overlap_comm": False}
    if config.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    if config.offload:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        if config.zero_stage == 3:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    ds: dict[str, Any] = {
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "zero_optimization": zero,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if config.offload:
        params = {"lr": "auto", "betas": "auto", "eps": "auto", "weight_decay": "auto"}
        ds["optimizer"] = {"type": "AdamW", "params": params}
    return ds


def _callbacks(learning_rate: float, description: str, linf: float | None = None) -> list:
    """The run's TrainerCallbacks: an l-infinity gradient norm clip at `linf` (when given; joint over all
    trained parameters, `clip_gradients`), a divergence guard
    and a progress bar (defined here so that importing this module stays free of transformers)."""
    from rich.progress import Progress, TextColumn
    from transformers import TrainerCallback

    from icl_bench.core.progress import bar

    class LinfClip(TrainerCallback):
        """Rescales the gradient to l-infinity norm at most linf before the step (the Trainer's L2 clip is
        off)."""

        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            clip_gradients(model.parameters(), ("linf", linf))

    class DivergenceGuard(TrainerCallback):
        """Raises TrainingDiverged at the first logged NaN/inf loss, before that step is checkpointed."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(loss):
                raise TrainingDiverged(
                    f"training diverged at step {state.global_step}: loss is {loss}; "
                    f"lower the learning rate (now {learning_rate:g})"
                )

    class ProgressBar(TrainerCallback):
        """A transient rich bar over optimizer steps with the last loss (main process, terminals only)."""

        progress: Progress | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            self.progress = bar(TextColumn("{task.fields[loss]}"))
            self.progress.start()
            self.task = self.progress.add_task(description, total=state.max_steps, loss="")

        def on_step_end(self, args, state, control, **kwargs):
            if self.progress is not None:
                self.progress.update(self.task, completed=state.global_step)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.progress is not None and "loss" in (logs or {}):
                self.progress.update(self.task, loss=f"loss {logs['loss']:.4f}")

        def on_train_end(self, args, state, control, **kwargs):
            self.close()

        def close(self) -> None:
            if self.progress is not None:
                self.progress.stop()
                self.progress = None

    return [*([LinfClip()] if linf else []), DivergenceGuard(), ProgressBar()]


def _snapshot_callback(folder: Path, every: int, tokenizer=None):
    """A TrainerCallback that saves the model every `every` optimizer steps and at the last step into
    `folder/step-N` (main process only).  Saving reads the weights and draws no random numbers, so a
    run with snapshots trains exactly the weights of one without."""
    from transformers import TrainerCallback

    class Snapshots(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            step = state.global_step
            if state.is_world_process_zero and (step % every == 0 or step == state.max_steps):
                save_snapshot(model, folder / f"step-{step}", tokenizer)

    return Snapshots()


def save_snapshot(model, folder: Path, tokenizer=None) -> None:
    """`model.save_pretrained` (a PEFT adapter folder for a PeftModel) into `folder`, through a temporary
    sibling renamed into place, so an interrupted run never leaves half a snapshot; `tokenizer` too
    when given (full fine-tuning: the snapshot must load on its own)."""
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(tmp))
    shutil.rmtree(folder, ignore_errors=True)
    os.rename(tmp, folder)


def snapshots(output: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every snapshot a `train` result keeps, by step; empty when it keeps none."""
    found = [
        (int(path.name.removeprefix("step-")), path)
        for path in (reading(output) / SNAPSHOTS).glob("step-*")
        if path.is_dir() and path.name.removeprefix("step-").isdigit()
    ]
    return sorted(found)


def latest_checkpoint(checkpoints: Path) -> Path | None:
    """The newest complete `checkpoint-N` folder (trainer_state.json is written last), if any."""
    if not checkpoints.is_dir():
        return None
    done = [
        path
        for path in checkpoints.glob("checkpoint-*")
        if path.name.split("-")[-1].isdigit() and (path / "trainer_state.json").is_file()
    ]
    return max(done, key=lambda path: int(path.name.split("-")[-1]), default=None)


def train(
    reference: str,
    spec: ModelSpec,
    records: Sequence[Mapping[str, str]],
    config: TrainConfig,
    output: Path,
    checkpoints: Path,
    *,
    deepspeed: bool = False,
) -> Path:
    """Fine-tune `reference` on `records` and write the result to `output`; resumes from `checkpoints`."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    if not records:
        raise UsageError("train: no training records; build the regime's training set first")
    if deepspeed and config.zero_stage == 3 and config.snapshot_steps:
        raise UsageError("snapshots are not supported under ZeRO-3; set snapshot_steps=0 or zero_stage=2")
    clip, bound = parse_clip(config.clip)
    if deepspeed and clip == "linf":
        raise UsageError(f"clip={config.clip} is not supported under DeepSpeed; use l2:V or train without it")
    layer_causal = config.objective == "layer-causal"
    if deepspeed and layer_causal:
        raise UsageError(
            "objective=layer-causal steps layer by layer, which DeepSpeed cannot; train without it"
        )
    if layer_causal and config.grad_accum != 1:
        raise UsageError(
            f"objective=layer-causal steps on every batch; set grad_accum=1, not {config.grad_accum}"
        )
    if deepspeed and config.offload and config.optim != "adamw_torch":
        raise UsageError(f"offload trains with DeepSpeed's CPU AdamW, not {config.optim}; set offload=false")
    output, checkpoints = Path(output), Path(checkpoints)
    bf16 = resolve_precision(config.precision) == "bf16"
    with _environment(deepspeed):
        # Arguments first: with ZeRO-3 they make from_pretrained partition the weights as it loads them.
        args = TrainingArguments(
            output_dir=str(checkpoints),
            per_device_train_batch_size=config.batch_size,
            gradient_accumulation_steps=config.grad_accum,
            num_train_epochs=config.epochs,
            max_steps=config.max_steps,
            learning_rate=config.learning_rate,
            lr_scheduler_type="linear",
            warmup_steps=config.warmup_ratio,  # a float below 1 is a fraction of the steps
            weight_decay=config.weight_decay,
            optim=config.optim,
            # 0: the Trainer does not clip (layer-causal: each layer step clips its own gradient)
            max_grad_norm=0.0 if layer_causal else {"none": 0.0, "l2": bound, "linf": 0.0}[clip],
            seed=config.seed,
            data_seed=config.seed,
            train_sampling_strategy="group_by_length" if config.group_by_length else "random",
            bf16=bf16,
            use_cpu=not torch.cuda.is_available(),
            deepspeed=zero_config(config) if deepspeed else None,
            save_strategy="steps",
            save_steps=config.save_steps,
            save_total_limit=KEEP_CHECKPOINTS,
            logging_strategy="steps",
            logging_steps=1,
            logging_nan_inf_filter=False,
            report_to=[],
            disable_tqdm=True,
            log_level="error",
            log_level_replica="error",
            remove_unused_columns=False,
            label_names=["labels"],
        )
        tokenizer = load_tokenizer(reference)
        features = encode(records, tokenizer, config.max_length)
        transformers.set_seed(config.seed)
        dtype = torch.bfloat16 if bf16 and config.lora else torch.float32  # full: fp32 master weights
        model = AutoModelForCausalLM.from_pretrained(reference, dtype=dtype)
        if config.lora:
            from peft import LoraConfig, get_peft_model

            targets = spec.lora_targets if config.adapt == "attention" else spec.lora_targets_wide
            lora = LoraConfig(
                r=config.lora_rank,
                lora_alpha=config.lora_alpha,
                lora_dropout=config.lora_dropout,
                target_modules=list(targets),
                bias="none",
                task_type="CAUSAL_LM",
            )
            model = get_peft_model(model, lora)
        elif config.adapt == "key-value":  # full-rank training of the key and value projections only
            for name, param in model.named_parameters():
                param.requires_grad = name.split(".")[-2] in spec.key_value
            if not any(param.requires_grad for param in model.parameters()):
                raise UsageError(
                    f"adapt=key-value: the model has no modules named {', '.join(spec.key_value)}"
                )
        try:  # for the per-layer gradient norms; the causal-LM objective trains any architecture
            layers = models.decoder_layers(model)
        except UsageError:
            if config.objective != "causal-lm":
                raise
            layers = []
        linf = bound if clip == "linf" and not layer_causal else None
        callbacks = _callbacks(config.learning_rate, f"train {spec.name}", linf)
        if config.snapshot_steps:  # kept beside the checkpoints, so a resumed run still has the early ones
            full = None if config.lora else tokenizer
            callbacks.insert(0, _snapshot_callback(checkpoints / SNAPSHOTS, config.snapshot_steps, full))
        collator = Collator(tokenizer.pad_token_id)
        trainer = _trainer(
            config.objective,
            layers,
            (clip, bound),
            model=model,
            args=args,
            data_collator=collator,
            train_dataset=features,
            processing_class=tokenizer,
            callbacks=callbacks,
        )
        trainer.remove_callback(PrinterCallback)
        resume = latest_checkpoint(checkpoints)
        start = time.perf_counter()
        try:
            trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        finally:
            callbacks[-1].close()
        wall = time.perf_counter() - start
        trainer.save_model(str(output))  # the adapter alone for a PeftModel; gathers ZeRO-3 shards
        if trainer.is_world_process_zero():
            if config.snapshot_steps and (checkpoints / SNAPSHOTS).is_dir():
                copy = shutil.ignore_patterns(".*")  # not a temporary folder of an interrupted save
                shutil.copytree(checkpoints / SNAPSHOTS, output / SNAPSHOTS, ignore=copy, dirs_exist_ok=True)
            history = trainer.state.log_history
            steps = [e for e in history if "loss" in e and "layer_grad_norms" in e]
            norms = [e["layer_grad_norms"] for e in steps]
            acted = [e["clip_acted"] for e in steps if "clip_acted" in e]
            per_layer = {
                "layer_grad_norms": norms,
                "layer_grad_linf": [e["layer_grad_linf"] for e in steps if "layer_grad_linf" in e],
                "clip_acted": acted,
                "clip_acted_fraction": sum(map(sum, acted)) / max(1, sum(map(len, acted))),
            }
            write_json(
                output / LOG,
                {
                    "model": spec.name,
                    "environment": environment.capture(resolve_precision(config.precision)),
                    "config": asdict(config),
                    "deepspeed": zero_config(config) if deepspeed else None,
                    "world_size": args.world_size,
                    "steps": trainer.state.global_step,
                    "resumed_from": int(resume.name.split("-")[-1]) if resume else None,
                    "wall_time_s": round(wall, 3),
                    "padding": padding_waste(collator),
                    "losses": [
                        {k: entry[k] for k in ("step", "loss", "learning_rate", "grad_norm") if k in entry}
                        for entry in history
                        if "loss" in entry
                    ],
                }
                | (per_layer if norms else {}),
            )
    return output


@contextlib.contextmanager
def _environment(deepspeed: bool) -> Iterator[None]:
    """Quiet loading, and for DeepSpeed: torch extensions (compiled ops) cached under the user cache and,
    outside a launcher, a one-process group over localhost (else it tries MPI).  Environment variables
    (also those accelerate sets) are restored afterwards; the group lives on for the next run to reuse."""
    import torch
    from platformdirs import user_cache_dir
    from transformers.utils import logging as hf_logging

    saved = dict(os.environ)
    if deepspeed:
        version = f"py{sys.version_info.major}{sys.version_info.minor}_torch{torch.__version__}"
        cache = Path(user_cache_dir("icl-bench")) / "torch_extensions" / version
        os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(cache))
        if "RANK" not in os.environ:
            os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1")
            os.environ["MASTER_PORT"] = str(free_port())
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*is deprecated")
            warnings.filterwarnings("ignore", message="OMP_NUM_THREADS/MKL_NUM_THREADS unset")
            yield
    finally:
        if deepspeed:  # else a later from_pretrained in this process would still partition for ZeRO-3
            from transformers.integrations.deepspeed import unset_hf_deepspeed_config

            unset_hf_deepspeed_config()
        if bars:
            hf_logging.enable_progress_bar()
        for name in set(os.environ) - set(saved):
            del os.environ[name]
        os.environ.update(saved)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def load_trained(reference: str, output: Path, precision: str = "auto"):
    """(model, tokenizer) of a `train` result: the base with the adapter merged in, or the full model."""
    output = reading(output)  # checked against its manifest when it is a store artifact
    if (output / "adapter_config.json").is_file():
        from peft import PeftModel

        model, tokenizer = load(reference, precision)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*is deprecated")
            model = PeftModel.from_pretrained(model, str(output)).merge_and_unload()
        return model.eval(), tokenizer
    model, tokenizer = load(str(output), precision)
    return model.eval(), tokenizer
