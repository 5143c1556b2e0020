"""Benchmark: batched evaluation through lm-eval vs a one-prompt-at-a-time `model.generate` loop.

    python tests/benchmarks/bench_evaluate.py [--model tiny|smollm2-135m] [--n 64] [--batch-size 16]
        [--threads N]

Both run greedy decoding with the task's stop strings on the same synthetic-alignment test prompts (all
four modes); imports and first-call costs are paid by a warm-up before timing.  Goal: batched >= 4x.
Set ICL_BENCH_STORE to a store where the model is already materialised to skip building it.  On a busy
CPU, `--threads 1` avoids OpenMP spin-waiting (two threads on a loaded 2-core machine ran ~5x slower).
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import torch
from rich.console import Console
from rich.table import Table

from icl_bench.contexts.build import ContextConfig, load_pool, mode_records
from icl_bench.contexts.modes import MODES
from icl_bench.core import plugins
from icl_bench.core.store import Store
from icl_bench.evaluate.runner import evaluate
from icl_bench.models import load, materialize, resolve


def one_at_a_time(
    model, tokenizer, prompts: list[str], max_new_tokens: int, stop: tuple[str, ...]
) -> list[str]:
    """The baseline: each prompt alone through `model.generate`, stopping at the stop strings."""
    outputs = []
    for prompt in prompts:
        encoded = tokenizer(prompt, return_tensors="pt").to(model.device)
        generated = model.generate(
            **encoded,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            stop_strings=list(stop),
            tokenizer=tokenizer,
            pad_token_id=tokenizer.pad_token_id,
        )
        text = tokenizer.decode(generated[0, encoded.input_ids.shape[1] :], skip_special_tokens=True)
        for s in stop:
            text = text.split(s)[0]
        outputs.append(text)
    return outputs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--n", type=int, default=64, help="test prompts (split evenly over the modes)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console()

    task = plugins.tasks["synthetic-alignment"]
    config = ContextConfig(max_test=math.ceil(args.n / len(MODES)))
    pool = load_pool(task, config)
    records = [r for mode in MODES.values() for r in mode_records(task, pool, "test", mode, config)]
    records = sorted(records, key=lambda r: (r["mode"], r["id"]))[: args.n]
    model, tokenizer = load(materialize(resolve(args.model), Store()))
    generation = task.generation

    kwargs = {"model_name": args.model, "regime": "base", "batch_size": args.batch_size}
    evaluate(model, tokenizer, task, records[:2], **kwargs)  # warm-up: imports, lm-eval's first call
    one_at_a_time(model, tokenizer, [records[0]["prompt"]], generation.max_new_tokens, generation.stop)

    start = time.perf_counter()
    batched = evaluate(model, tokenizer, task, records, **kwargs)
    batched_s = time.perf_counter() - start
    start = time.perf_counter()
    single = one_at_a_time(
        model, tokenizer, [r["prompt"] for r in records], generation.max_new_tokens, generation.stop
    )
    single_s = time.perf_counter() - start

    by_key = {(r["mode"], r["id"]): r["prediction"] for r in batched}
    agree = sum(by_key[(r["mode"], r["id"])] == s for r, s in zip(records, single, strict=True))
    title = f"{len(records)} prompts, {args.model}, {torch.get_num_threads()} threads"
    table = Table(title=f"{title}, up to {generation.max_new_tokens} new tokens")
    for column in ("method", "batch", "seconds", "prompts/s"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for method, batch, seconds in (
        ("evaluate() via lm-eval", args.batch_size, batched_s),
        ("model.generate loop", 1, single_s),
    ):
        table.add_row(method, str(batch), f"{seconds:.2f}", f"{len(records) / seconds:.2f}")
    console.print(table)
    ratio = single_s / batched_s
    console.print(f"speed-up {ratio:.1f}x (goal >= 4x); predictions agree on {agree}/{len(records)}")
    for r, s in zip(records, single, strict=True):
        if by_key[(r["mode"], r["id"])] != s:
            console.print(f"  differs {r['mode']}/{r['id']}: {by_key[(r['mode'], r['id'])]!r} vs {s!r}")
    return 0 if agree == len(records) else 1


if __name__ == "__main__":
    sys.exit(main())
