"""Benchmark: similar(k) test contexts through icl_bench (Pool + bm25s) vs a plain rank_bm25 loop.

Builds a pool of generated text (pseudo-words drawn from a Zipf-Mandelbrot vocabulary; no real dataset
text) and a set of targets, then times building the BM25 index and the similar(k) context of every
target both ways, checks that both pick the same top-k, and prints a table.  Goal: >= 50x on the queries.

    python tests/benchmarks/bench_contexts.py                   # 50,000 pool docs, 2,000 targets
    python tests/benchmarks/bench_contexts.py --pool 5000 --targets 200
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
import time
from collections import defaultdict
from collections.abc import Sequence

import bm25s  # noqa: F401  (imported up front: its import time is not index-build time)
import numpy as np
from rank_bm25 import BM25Okapi
from rich.console import Console
from rich.table import Table

from icl_bench import Example, Task
from icl_bench.contexts.pool import Pool
from icl_bench.contexts.samplers import Similar

K1, B = 1.5, 0.75
GOAL = 50.0


def vocabulary(size: int, rng: random.Random) -> list[str]:
    """`size` distinct pronounceable pseudo-words."""
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    words: dict[str, None] = {}
    while len(words) < size:
        words["".join(rng.choice(syllables) for _ in range(rng.randint(2, 4)))] = None
    return list(words)


def documents(n: int, words: Sequence[str], rng: random.Random, lo: int, hi: int) -> list[str]:
    """`n` documents of `lo`..`hi` words; word rank r has weight 1/(r + 20) (Zipf-Mandelbrot)."""
    cum = list(itertools.accumulate(1.0 / (rank + 20.0) for rank in range(1, len(words) + 1)))
    return [" ".join(rng.choices(words, cum_weights=cum, k=rng.randint(lo, hi))) for _ in range(n)]


class GeneratedText(Task):
    name = "bench-generated"
    description = "generated word salad (benchmark only)"

    def __init__(self, pool: list[Example], targets: list[Example]):
        self._splits = {"train": pool, "test": targets}

    def load(self, split: str) -> list[Example]:
        return self._splits[split]


def reference_top(scores: np.ndarray, k: int, exclude: Sequence[int]) -> list[int]:
    """Top-k by score descending, ties by index (the same rule as icl_bench), skipping `exclude`."""
    want = min(k + len(exclude), len(scores))
    cut = np.argpartition(-scores, want - 1)[:want]
    cut = np.flatnonzero(scores >= scores[cut].min())  # keep every document tied at the boundary
    order = cut[np.lexsort((cut, -scores[cut]))]
    return [int(i) for i in order if int(i) not in exclude][:k]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pool", type=int, default=50_000, help="pool documents (default 50,000)")
    parser.add_argument("--targets", type=int, default=2_000, help="targets (default 2,000)")
    parser.add_argument("--vocab", type=int, default=20_000, help="vocabulary size (default 20,000)")
    parser.add_argument("--k", type=int, default=4, help="in-context examples (default 4)")
    parser.add_argument("--words", type=int, nargs=2, default=(8, 20), metavar=("MIN", "MAX"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    console = Console()

    rng = random.Random(args.seed)
    words = vocabulary(args.vocab, rng)
    texts = documents(args.pool + args.targets, words, rng, *args.words)
    pool_examples = [Example(f"p{i}", t, "") for i, t in enumerate(texts[: args.pool])]
    targets = [Example(f"t{i}", t, "") for i, t in enumerate(texts[args.pool :])]
    task = GeneratedText(pool_examples, targets)
    tokens = [task.bm25_tokens(ex.input) for ex in pool_examples]
    df: dict[str, int] = defaultdict(int)
    for doc in tokens:
        for term in set(doc):
            df[term] += 1
    console.print(
        f"pool {args.pool:,} docs, {args.targets:,} targets, vocabulary {args.vocab:,} "
        f"({len(df):,} used), {args.words[0]}-{args.words[1]} words per doc, k={args.k}; "
        f"most frequent term in {max(df.values()) / args.pool:.1%} of docs"
    )

    # icl_bench: Pool (bm25s index) + the Similar sampler, exactly what the contexts stage runs
    start = time.perf_counter()
    pool = Pool(task, pool_examples)
    ours_index = time.perf_counter() - start
    sampler, ours = Similar(), []
    start = time.perf_counter()
    for target in targets:
        context = sampler(target, pool, args.k, random.Random(target.id))
        ours.append([ex.id for ex in context.examples])
    ours_query = time.perf_counter() - start
    console.print(f"icl_bench: index {ours_index:.2f} s, queries {ours_query:.2f} s")

    # rank_bm25: BM25Okapi.get_scores per target, then the same top-k rule
    by_input: dict[str, list[int]] = defaultdict(list)
    for i, ex in enumerate(pool_examples):
        by_input[ex.input].append(i)
    start = time.perf_counter()
    reference = BM25Okapi(tokens, k1=K1, b=B)
    ref_index = time.perf_counter() - start
    theirs, tied = [], 0
    start = time.perf_counter()
    for target in targets:
        scores = reference.get_scores(task.bm25_tokens(target.input))
        top = reference_top(scores, args.k, by_input.get(target.input, []))
        theirs.append([pool_examples[i].id for i in top])
    ref_query = time.perf_counter() - start
    console.print(f"rank_bm25: index {ref_index:.2f} s, queries {ref_query:.2f} s")

    # agreement: identical lists; differences confined to float32/float64 score ties count as tied
    same = sum(a == b for a, b in zip(ours, theirs, strict=True))
    for target, a, b in zip(targets, ours, theirs, strict=True):
        if a != b:
            scores = reference.get_scores(task.bm25_tokens(target.input))
            pa = [scores[int(i[1:])] for i in a]
            pb = [scores[int(i[1:])] for i in b]
            tied += bool(np.allclose(pa, pb, rtol=1e-5, atol=1e-6))
    sets = sum(set(a) == set(b) for a, b in zip(ours, theirs, strict=True))

    table = Table(title=f"similar(k={args.k}) contexts: icl_bench vs rank_bm25", title_justify="left")
    table.add_column("stage")
    table.add_column("icl_bench (bm25s)", justify="right")
    table.add_column("rank_bm25 loop", justify="right")
    table.add_column("speed-up", justify="right")
    rows = [
        ("index build", ours_index, ref_index),
        (f"{args.targets:,} similar(k) queries", ours_query, ref_query),
        ("total", ours_index + ours_query, ref_index + ref_query),
    ]
    for label, a, b in rows:
        table.add_row(label, f"{a:.2f} s", f"{b:.2f} s", f"{b / a:,.1f}x")
    table.add_row(
        "per target",
        f"{1e3 * ours_query / len(targets):.2f} ms",
        f"{1e3 * ref_query / len(targets):.2f} ms",
        "",
    )
    console.print(table)
    n = len(targets)
    console.print(
        f"top-{args.k} agreement: {same / n:.2%} identical lists ({same}/{n}), "
        f"{sets / n:.2%} identical sets, {tied} differ only among tied scores"
    )
    ratio = ref_query / ours_query
    verdict = "[green]meets[/green]" if ratio >= GOAL else "[red]misses[/red]"
    console.print(f"query speed-up {ratio:,.1f}x {verdict} the {GOAL:.0f}x goal")
    return 0 if same + tied == n else 1


if __name__ == "__main__":
    sys.exit(main())
