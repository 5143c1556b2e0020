"""The train stage's entry point: `train` fine-tunes a model on (prompt, completion) records, the loss on
completion tokens only.

One `transformers.Trainer` run, seeded: LoRA via `peft`, full fine-tuning, or full-rank training of the
attention keys and values alone; AdamW (or SGD) with linear decay.  The objective is the causal-LM loss
or SPEC 6's layer-causal fine-tuning (`icl_bench.train.objectives`); the log keeps every step's
per-layer gradient norms and where the gradient clip acted.
Checkpoints go to a folder the caller keeps across interruptions, and a rerun resumes from the newest
complete one.  The result is a standard folder: a PEFT adapter, or a full model and its tokenizer, plus
`train_log.json`.  DeepSpeed ZeRO is the distributed engine (`icl_bench.train.deepspeed_env`), and
`icl_bench.train.launch` runs `train` under a launcher.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from icl_bench import models
from icl_bench.core import environment
from icl_bench.core.errors import UsageError
from icl_bench.core.files import write_json
from icl_bench.models import ModelSpec, load_tokenizer, resolve_precision
from icl_bench.train.config import TrainConfig, TrainingDiverged, parse_clip
from icl_bench.train.data import Collator, encode, padding_waste
from icl_bench.train.deepspeed_env import _environment, zero_config
from icl_bench.train.objectives import _trainer, clip_gradients
from icl_bench.train.snapshots import SNAPSHOTS, _snapshot_callback, latest_checkpoint

KEEP_CHECKPOINTS = 2
LOG = "train_log.json"


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
    import transformers
    from transformers.trainer_callback import PrinterCallback

    clip = _refuse_unsupported(records, config, deepspeed)
    output, checkpoints = Path(output), Path(checkpoints)
    bf16 = resolve_precision(config.precision) == "bf16"
    with _environment(deepspeed):
        # Arguments first: with ZeRO-3 they make from_pretrained partition the weights as it loads them.
        args = _arguments(config, checkpoints, clip, bf16, deepspeed)
        tokenizer = load_tokenizer(reference)
        features = encode(records, tokenizer, config.max_length)
        transformers.set_seed(config.seed)
        model = _model(reference, spec, config, bf16)
        layers = _layers(model, config)
        callbacks = _run_callbacks(spec, config, clip, checkpoints, tokenizer)
        collator = Collator(tokenizer.pad_token_id)
        trainer = _trainer(
            config.objective,
            layers,
            clip,
            model=model,
            args=args,
            data_collator=collator,
            train_dataset=features,
            processing_class=tokenizer,
            callbacks=callbacks,
        )
        trainer.remove_callback(PrinterCallback)
        resume = latest_checkpoint(checkpoints)
        wall = _fit(trainer, resume, callbacks[-1])
        trainer.save_model(str(output))  # the adapter alone for a PeftModel; gathers ZeRO-3 shards
        if trainer.is_world_process_zero():
            if config.snapshot_steps and (checkpoints / SNAPSHOTS).is_dir():
                copy = shutil.ignore_patterns(".*")  # not a temporary folder of an interrupted save
                shutil.copytree(checkpoints / SNAPSHOTS, output / SNAPSHOTS, ignore=copy, dirs_exist_ok=True)
            write_json(
                output / LOG, _train_log(trainer, args, spec, config, collator, resume, wall, deepspeed)
            )
    return output


def _refuse_unsupported(
    records: Sequence[Mapping[str, str]], config: TrainConfig, deepspeed: bool
) -> tuple[str, float]:
    """The run's gradient clip (`parse_clip`), after refusing what it cannot do: no records, and the
    settings DeepSpeed or the layer-causal objective do not support."""
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
    return clip, bound


def _arguments(config: TrainConfig, checkpoints: Path, clip: tuple[str, float], bf16: bool, deepspeed: bool):
    """The run's `TrainingArguments`: checkpoints every `save_steps` into `checkpoints`, a log entry
    every step, and the Trainer's L2 clip only for an `l2` clip outside layer-causal."""
    import torch
    from transformers import TrainingArguments

    kind, bound = clip
    layer_causal = config.objective == "layer-causal"
    return TrainingArguments(
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
        max_grad_norm=0.0 if layer_causal else {"none": 0.0, "l2": bound, "linf": 0.0}[kind],
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
        report_to=[] if config.report_to == "none" else [config.report_to],
        disable_tqdm=True,
        log_level="error",
        log_level_replica="error",
        remove_unused_columns=False,
        label_names=["labels"],
    )


def _model(reference: str, spec: ModelSpec, config: TrainConfig, bf16: bool):
    """The model to train, as `config.adapt` says: LoRA adapters on the attention (+mlp) projections,
    every weight (`full`), or the key and value projections alone with all else frozen."""
    import torch
    from transformers import AutoModelForCausalLM

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
            raise UsageError(f"adapt=key-value: the model has no modules named {', '.join(spec.key_value)}")
    return model


def _layers(model, config: TrainConfig) -> list:
    """The decoder layers, for the per-layer gradient norms; none for a model that is not a Llama-family
    decoder, which the causal-LM objective trains all the same."""
    try:
        return models.decoder_layers(model)
    except UsageError:
        if config.objective != "causal-lm":
            raise
        return []


def _run_callbacks(
    spec: ModelSpec, config: TrainConfig, clip: tuple[str, float], checkpoints: Path, tokenizer
):
    """`_callbacks` for the run, with the snapshot callback first when `snapshot_steps` asks for one."""
    kind, bound = clip
    linf = bound if kind == "linf" and config.objective != "layer-causal" else None
    callbacks = _callbacks(config.learning_rate, f"train {spec.name}", linf)
    if config.snapshot_steps:  # kept beside the checkpoints, so a resumed run still has the early ones
        full = None if config.lora else tokenizer
        callbacks.insert(0, _snapshot_callback(checkpoints / SNAPSHOTS, config.snapshot_steps, full))
    return callbacks


def _fit(trainer, resume: Path | None, progress) -> float:
    """Train, from checkpoint `resume` when given; the wall time in seconds.  The `progress` bar is
    closed whatever happens."""
    start = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    finally:
        progress.close()
    return time.perf_counter() - start


def _train_log(
    trainer,
    args,
    spec: ModelSpec,
    config: TrainConfig,
    collator: Collator,
    resume: Path | None,
    wall: float,
    deepspeed: bool,
) -> dict[str, Any]:
    """The `train_log.json` of a run: its settings and environment, the loss of every step, the padding
    waste and, when the Trainer logged them, the per-layer gradient norms and where the clip acted."""
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
    return {
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
    } | (per_layer if norms else {})


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
