"""Benchmark bfloat16 against float32 on this machine: matrix products, LoRA training steps through the
harness's trainer, and batched evaluation, side by side.  `--precision auto` picks bf16 only where it is
native (a CUDA GPU that supports it, or a CPU with AVX512-BF16 or AMX); this shows what that buys.

    python tests/benchmarks/bench_precision.py                       # smollm2-135m, 8 steps, 32 prompts
    python tests/benchmarks/bench_precision.py --model tiny --steps 4 --n 8

Set ICL_BENCH_STORE to a store where the model is already materialised to skip building it.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from icl_bench.contexts.build import ContextConfig, build_contexts, load_pool, mode_records
from icl_bench.contexts.modes import MODES
from icl_bench.core import plugins
from icl_bench.core.store import Store
from icl_bench.evaluate.runner import evaluate
from icl_bench.models import load, materialize, native_bf16, resolve
from icl_bench.train.config import TrainConfig
from icl_bench.train.trainer import LOG, train

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}


def matmul_gflops(dtype: torch.dtype, size: int = 1024, repeats: int = 20) -> float:
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def train_seconds_per_step(reference: str, spec, records: list[dict], precision: str, steps: int) -> float:
    """Seconds per LoRA step of the harness's trainer (its own wall clock, model loading excluded)."""
    config = TrainConfig(max_steps=steps, precision=precision, save_steps=10_000)
    with tempfile.TemporaryDirectory() as tmp:
        output = train(reference, spec, records, config, Path(tmp) / "out", Path(tmp) / "checkpoints")
        return json.loads((output / LOG).read_text())["wall_time_s"] / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=8, help="LoRA steps per precision")
    parser.add_argument("--n", type=int, default=32, help="evaluation prompts (over the four test modes)")
    args = parser.parse_args()
    console, store = Console(), Store()
    task = plugins.tasks["synthetic-alignment"]
    spec = resolve(args.model)
    reference = materialize(spec, store)
    config = ContextConfig(max_test=math.ceil(args.n / len(MODES)), max_pool=64)
    records = build_contexts(task, [plugins.regimes["random"]], config, store).training_records("random")
    pool = load_pool(task, config)
    prompts = [r for mode in MODES.values() for r in mode_records(task, pool, "test", mode, config)][: args.n]

    rows = {}
    for precision, dtype in PRECISIONS.items():
        model, tokenizer = load(reference, precision)
        evaluate(model, tokenizer, task, prompts[:2], model_name=args.model, regime="base")  # warm-up
        start = time.perf_counter()
        evaluate(model, tokenizer, task, prompts, model_name=args.model, regime="base", batch_size=16)
        rows[precision] = (
            matmul_gflops(dtype),
            train_seconds_per_step(reference, spec, records, precision, args.steps),
            time.perf_counter() - start,
        )
    native = "native" if native_bf16() else "emulated"
    table = Table(title=f"{args.model}, {torch.get_num_threads()} threads, bf16 {native}")
    for column in ("", "matmul GFLOPS", "LoRA s/step", f"eval s ({len(prompts)} prompts)"):
        table.add_column(column, justify="right")
    for precision, (gflops, step, seconds) in rows.items():
        table.add_row(precision, f"{gflops:.0f}", f"{step:.2f}", f"{seconds:.1f}")
    (g32, s32, e32), (g16, s16, e16) = rows["fp32"], rows["bf16"]
    table.add_row("bf16 gain", f"{g16 / g32:.2f}x", f"{s32 / s16:.2f}x", f"{e32 / e16:.2f}x")
    console.print(table)


if __name__ == "__main__":
    main()
