"""Benchmark what a LoRA training step costs, side by side on one machine and one batch of a task's
training contexts:

  loss      the model's own causal-LM loss (vocabulary logits at every position) vs the trainer's
            `causal_lm_loss` (logits at label positions only);
  dropout   LoRA dropout 0.05 (the paper-size preset's) vs 0 (the default preset's);
  batches   random batches vs length-grouped ones (`group_by_length`): padding waste and s/step of
            the harness's trainer.

    python tests/benchmarks/bench_train.py                      # smollm2-135m, synthetic-alignment
    python tests/benchmarks/bench_train.py --task mr-offline --model tiny --steps 4

Set ICL_BENCH_STORE to a store where the model is already materialised to skip building it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from icl_bench.contexts.build import ContextConfig, build_contexts
from icl_bench.core import plugins
from icl_bench.core.store import Store
from icl_bench.models import load, materialize, resolve
from icl_bench.train.config import TrainConfig
from icl_bench.train.data import Collator, encode
from icl_bench.train.objectives import causal_lm_loss
from icl_bench.train.trainer import LOG, train


def step_seconds(model, batch: dict, loss, steps: int) -> float:
    """Best seconds of one forward + backward + AdamW step over `steps` repeats."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    best = float("inf")
    for _ in range(steps):
        start = time.perf_counter()
        loss(model, batch).backward()
        optimizer.step()
        optimizer.zero_grad()
        best = min(best, time.perf_counter() - start)
    return best


def lora_model(reference: str, spec, dropout: float):
    from peft import LoraConfig, get_peft_model

    model, _ = load(reference, "fp32")
    config = LoraConfig(
        r=16,
        lora_alpha=32,
        lora_dropout=dropout,
        target_modules=list(spec.lora_targets_wide),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config).train()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--task", default="synthetic-alignment")
    parser.add_argument("--regime", default="contrastive")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8, help="repeats per step measure, trainer steps")
    args = parser.parse_args()
    console, store = Console(), Store()
    task, spec = plugins.tasks[args.task], resolve(args.model)
    reference = materialize(spec, store)
    contexts = build_contexts(
        task, [plugins.regimes[args.regime]], ContextConfig(max_pool=200, max_test=8), store
    )
    records = contexts.training_records(args.regime)
    _, tokenizer = load(reference, "fp32")
    batch = Collator(tokenizer.pad_token_id)(encode(records[: args.batch], tokenizer, 1024))

    def own(model, batch):
        return model(**batch).loss

    table = Table(title=f"{args.model}, {args.task} {args.regime} contexts, batch {args.batch}, fp32")
    for column in ("what", "baseline", "harness", "speed-up"):
        table.add_column(column, justify="left" if column == "what" else "right")
    model = lora_model(reference, spec, 0.05)
    full, labels = (step_seconds(model, batch, loss, args.steps) for loss in (own, causal_lm_loss))
    table.add_row(
        "loss: all-position logits vs labels only (s/step)",
        f"{full:.3f}",
        f"{labels:.3f}",
        f"{full / labels:.2f}x",
    )
    plain = step_seconds(lora_model(reference, spec, 0.0), batch, causal_lm_loss, args.steps)
    table.add_row(
        "LoRA dropout 0.05 vs 0 (s/step)", f"{labels:.3f}", f"{plain:.3f}", f"{labels / plain:.2f}x"
    )
    logs = []
    for grouped in (False, True):
        config = TrainConfig(
            adapt="attention+mlp",
            batch_size=args.batch,
            max_steps=args.steps,
            precision="fp32",
            save_steps=10_000,
            group_by_length=grouped,
        )
        with tempfile.TemporaryDirectory() as tmp:
            output = train(reference, spec, records, config, Path(tmp) / "out", Path(tmp) / "checkpoints")
            logs.append(json.loads((output / LOG).read_text()))
    (random_log, grouped_log) = logs
    table.add_row(
        "padding waste: random vs length-grouped",
        f"{random_log['padding']['waste']:.1%}",
        f"{grouped_log['padding']['waste']:.1%}",
        "",
    )
    seconds = [log["wall_time_s"] / log["steps"] for log in logs]
    table.add_row(
        "trainer s/step: random vs length-grouped",
        f"{seconds[0]:.3f}",
        f"{seconds[1]:.3f}",
        f"{seconds[0] / seconds[1]:.2f}x",
    )
    console.print(table)


if __name__ == "__main__":
    main()
