"""The train stage's settings: `TrainConfig` (what decides the trained weights, and its artifact key), the
choices it accepts (ADAPT, OBJECTIVES, OPTIMIZERS), `parse_clip` for its gradient norm clip, and
`TrainingDiverged`, the error a run raises when its loss becomes NaN or infinite.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from icl_bench.core import numerics
from icl_bench.core.errors import UsageError
from icl_bench.core.validate import check_fields, is_int, is_number
from icl_bench.models import PRECISIONS, resolve_precision

ADAPT = ("attention", "attention+mlp", "full", "key-value")
OBJECTIVES = ("causal-lm", "layer-causal")
OPTIMIZERS = ("adamw_torch", "sgd")
REPORT_TO = ("none", "tensorboard", "wandb", "mlflow")  # the Trainer's own integrations
TRACKERS = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "mlflow": ("mlflow",)}


def check_tracker(name: str) -> None:
    """`--report-to NAME` needs the tracker's package here (and in every job): one line if it is not."""
    import importlib.util

    packages = TRACKERS.get(name, ())
    if packages and not any(importlib.util.find_spec(p) is not None for p in packages):
        raise UsageError(
            f"--report-to {name}: the {packages[0]} package is not installed; pip install {packages[0]}"
        )


TRAINER_VERSION = 2  # in every key; 2: the causal-LM loss computes logits at label positions only


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
    report_to: str = "none"  # a Trainer integration for the training metrics (none: train_log.json only)

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
            "report_to": self.report_to in REPORT_TO,
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
            "report_to": f"one of {', '.join(REPORT_TO)}",
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
        """The fields that decide the trained weights, for artifact keys (not save_steps, zero_stage,
        offload or report_to, which only change how the run is carried out or reported);
        `snapshot_steps` changes what the artifact holds (never the weights), so it is part of the key
        too.  `trainer` (TRAINER_VERSION) changes when the training code changes the weights' rounding;
        objective, clip, optim and group_by_length appear only when not at their defaults, so a new
        field changes no other key; `numerics` is the CPU numerics profile's key (core.numerics)."""
        fields = asdict(self) | {
            "precision": resolve_precision(self.precision),
            "trainer": TRAINER_VERSION,
            "numerics": numerics.key(),
        }
        for name in ("save_steps", "zero_stage", "offload", "report_to"):
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
