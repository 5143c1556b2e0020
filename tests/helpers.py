"""Test helpers: a generated-text task with a cheap embedding, rank_bm25 references, a CLI runner."""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rank_bm25 import BM25Okapi

from icl_bench import Example, Paraphraser, Task
from icl_bench.contexts.pool import Pool

if TYPE_CHECKING:
    from icl_bench.sweep.plan import Plan

K1, B = 1.5, 0.75
EMBED_DIM = 64


def make_vocabulary(size: int, rng: random.Random) -> list[str]:
    """`size` distinct lowercase pseudo-words built from syllables (no real text)."""
    onsets, vowels = "bdfgklmnprstvz", "aeiou"
    syllables = [c + v for c in onsets for v in vowels]
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < size:
        word = "".join(rng.choice(syllables) for _ in range(rng.randint(2, 4)))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def zipf_weights(size: int, offset: float = 20.0, exponent: float = 1.0) -> list[float]:
    """Zipf-Mandelbrot weights 1/(rank + offset)^exponent: a long tail, no term in most documents."""
    return [1.0 / (rank + offset) ** exponent for rank in range(1, size + 1)]


def make_documents(n: int, rng: random.Random, vocabulary: Sequence[str], lo: int, hi: int) -> list[str]:
    cum = list(itertools.accumulate(zipf_weights(len(vocabulary))))
    return [" ".join(rng.choices(vocabulary, cum_weights=cum, k=rng.randint(lo, hi))) for _ in range(n)]


def max_document_frequency(docs: Sequence[Sequence[str]]) -> float:
    """The largest fraction of documents any one term occurs in."""
    counts: dict[str, int] = {}
    for doc in docs:
        for term in set(doc):
            counts[term] = counts.get(term, 0) + 1
    return max(counts.values()) / len(docs)


def hashed_embed(texts: Sequence[str]) -> np.ndarray:
    """A cheap deterministic sentence embedding: L2-normalised hashed bag of words."""
    out = np.zeros((len(texts), EMBED_DIM), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in text.lower().split():
            out[row, zlib.crc32(word.encode()) % EMBED_DIM] += 1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms > 0, norms, 1.0)


class WordsTask(Task):
    """A generic generation task over generated word salad; y is a word-count parity label."""

    description = "generated word salad -> a parity label (tests only)"
    metric = "exact-match"

    def __init__(self, name: str, train: list[Example], test: list[Example], paraphraser: str | None):
        self.name = name
        self.paraphraser = paraphraser
        self._splits = {"train": train, "test": test}

    def load(self, split: str) -> list[Example]:
        return list(self._splits[split])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return hashed_embed(texts)


class WordShuffle(Paraphraser):
    """x~ = the target's words in another order; y~ = y*.  Leaves id and meta to the harness."""

    description = "shuffle the target's words (tests only)"

    def __init__(self, name: str):
        self.name = name

    def __call__(self, target: Example, rng: random.Random) -> Example:
        words = target.input.split()
        shuffled = list(words)
        rng.shuffle(shuffled)
        if shuffled == words:
            shuffled = words[1:] + words[:1]
        return Example("made-by-paraphraser", " ".join(shuffled), target.output)


def label(text: str) -> str:
    return "even" if len(text.split()) % 2 == 0 else "odd"


def build_words_task(name: str = "words", n_train: int = 300, n_test: int = 60, seed: int = 7) -> WordsTask:
    """`n_train` generated pool docs plus two exact-duplicate twins ("twin-a" repeats tr-0005's input,
    "twin-b" tr-0017's); a test split whose last example ("te-dup") repeats tr-0042's input."""
    rng = random.Random(seed)
    vocabulary = make_vocabulary(2000, rng)
    docs = make_documents(n_train + n_test, rng, vocabulary, 8, 20)
    train = [Example(f"tr-{i:04d}", d, label(d)) for i, d in enumerate(docs[:n_train])]
    train.append(Example("twin-a", train[5].input, train[5].output))
    train.append(Example("twin-b", train[17].input, train[17].output))
    test = [Example(f"te-{i:04d}", d, label(d)) for i, d in enumerate(docs[n_train:])]
    test.append(Example("te-dup", train[42].input, train[42].output))
    return WordsTask(name, train, test, paraphraser=f"{name}-shuffle")


def reference_scores(ref: BM25Okapi, query: Sequence[str]) -> np.ndarray:
    return np.asarray(ref.get_scores(list(query)), dtype=np.float64)


def reference_top(ref: BM25Okapi, query: Sequence[str], n: int, exclude: set[int] | frozenset = frozenset()):
    """Top-n by rank_bm25 score, descending, ties by index, skipping `exclude`."""
    return top_of(reference_scores(ref, query), n, exclude)


def top_of(scores: np.ndarray, n: int, exclude: set[int] | frozenset = frozenset()) -> list[int]:
    """Top-n of a score vector by a plain full sort: score descending, ties by index, skipping `exclude`."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return [i for i in order if i not in exclude][:n]


def same_ranking(ours: Sequence[int], theirs: Sequence[int], ref_scores: np.ndarray) -> bool:
    """Assert `ours` is `theirs` up to swaps of documents whose float64 reference scores tie within
    float32 precision (bm25s scores in float32); return True when the lists are identical."""
    assert len(ours) == len(theirs), (ours, theirs)
    for a, b in zip(ours, theirs, strict=True):
        if a != b:
            scale = max(1.0, abs(float(ref_scores[b])))
            assert abs(float(ref_scores[a]) - float(ref_scores[b])) <= 1e-5 * scale, (ours, theirs)
    return list(ours) == list(theirs)


def excluded_for(pool: Pool, target: Example) -> set[int]:
    """Pool indices with the target's id or input, computed here rather than via Pool.excluded."""
    return {i for i, ex in enumerate(pool.examples) if ex.id == target.id or ex.input == target.input}


# The fast test sweep: the tiny model on the synthetic task at the smoke size (`icl-bench run`'s own
# default task, mr-offline, fetches an sdist and takes minutes)
TINY_SMOKE = ("--models", "tiny", "--tasks", "synthetic-alignment", "--size", "smoke")


def tiny_plan(regimes: Sequence[str], out: Path, size: str = "smoke", **changes: Any) -> Plan:
    """The `Plan` of the fast test sweep (`TINY_SMOKE`) over the named regimes, with `changes`."""
    from icl_bench.core import plugins
    from icl_bench.sweep.plan import Plan

    chosen = [plugins.regimes[name] for name in regimes]
    return Plan(models=["tiny"], tasks=["synthetic-alignment"], regimes=chosen, size=size, out=out, **changes)


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, pythonpath: Path | None = None):
    """Run `python -m icl_bench.cli ARGS` in a fresh process from `cwd` (a temporary folder); the default
    artifact store is pointed inside it, so the user's cache is never touched."""
    full_env = {**os.environ, "ICL_BENCH_STORE": str(cwd / "default-store"), **(env or {})}
    if pythonpath is not None:
        full_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(pythonpath), os.environ.get("PYTHONPATH")) if p
        )
    return subprocess.run(
        [sys.executable, "-m", "icl_bench.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=600,  # a guard against hangs, not a speed test (a loaded 2-core machine is slow)
    )


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one stderr line of a usage error; asserts exit 2, a single line and no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("icl-bench: error: "), lines[0]
    return lines[0]


def reverse_records(n: int, seed: int) -> list[dict[str, str]]:
    """`n` 'reverse the word' training records: the completion is the gold continuation of the prompt."""
    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdefgh") for _ in range(4)) for _ in range(n)]
    return [{"prompt": f"Reverse: {w}\nOutput:", "completion": " " + w[::-1]} for w in words]


def ci(values: Sequence[float], **options) -> tuple[float, float, float]:
    """(mean, lo, hi) of `values` with one record per example (`icl_bench.score.bootstrap.clustered`)."""
    from icl_bench.score.bootstrap import Bootstrap, clustered

    found = clustered(range(len(values)), values, Bootstrap(**options))
    return found.value, found.lo, found.hi
