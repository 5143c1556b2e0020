"""`synthetic-alignment`: the seed paper's synthetic alignment reasoning task (appendix C.4).

Each of 25 symbols (A..Y) owns a fixed probabilistic finite automaton (PFA) over a private 3-letter vocabulary
that emits strings of `segment_length` letters.  An input is `n_symbols` distinct symbols ("A C B"); its
output lists, for a fixed hidden permutation of the positions, a string sampled from the PFA of the symbol at
each permuted position ("rijj prtr hhjh").  Everything derives from `seed` through `random.Random`.

Choices (the paper gives sizes only): each PFA has 2-3 states; each state allows 2 of its 3 letters, each to
a random next state, with probabilities p and 1-p (p ~ U(0.1, 0.9)); vocabularies are distinct letter sets;
the permutation is never the identity (for n > 1).  Similarity levels come from a mixture: a fraction
`subset_fraction` (0.5) of the examples draw their symbols from one of `n_subsets` (3) fixed 12-symbol subsets
("similar" data, vocabulary 12), the rest from all 25 ("random" data).  sim_x is task-specific: cosine of
bag-of-symbol counts, since MiniLM embeddings of letter strings carry no meaning.
"""

from __future__ import annotations

import random
import string
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from icl_bench import Example, Generation, Metric, Paraphraser, Task, hookimpl
from icl_bench.errors import UsageError

SYMBOLS = string.ascii_uppercase[:25]
NAME = "synthetic-alignment"

Arc = tuple[str, int, float]  # (letter, next state, probability)


@dataclass(frozen=True)
class PFA:
    """A PFA starting in state 0 that emits exactly `length` letters; `arcs[state]` lists its transitions."""

    letters: str
    arcs: tuple[tuple[Arc, ...], ...]
    length: int

    @classmethod
    def random(cls, rng: random.Random, letters: str, length: int) -> PFA:
        states = rng.randint(2, 3)
        arcs = []
        for _ in range(states):
            (a, b), p = rng.sample(letters, 2), rng.uniform(0.1, 0.9)
            arcs.append(((a, rng.randrange(states), p), (b, rng.randrange(states), 1 - p)))
        return cls(letters, tuple(arcs), length)

    def sample(self, rng: random.Random) -> str:
        state, out = 0, []
        for _ in range(self.length):
            letter, state, _ = rng.choices(self.arcs[state], weights=[p for *_, p in self.arcs[state]])[0]
            out.append(letter)
        return "".join(out)

    def accepts(self, text: str) -> bool:
        """True iff some nonzero-probability path emits exactly `text`."""
        if len(text) != self.length:
            return False
        states = {0}
        for char in text:
            states = {nxt for s in states for c, nxt, p in self.arcs[s] if c == char and p > 0}
        return bool(states)


class SyntheticAlignment(Task):
    """The task; pass keywords (and a new `name`) to register a variant with its own automata."""

    description = "map symbol sequences to permuted strings sampled from per-symbol automata (seed C.4)"
    extra_metrics = ("exact-match",)

    def __init__(
        self,
        *,
        name: str = NAME,
        seed: int = 0,
        n_symbols: int = 3,
        segment_length: int = 4,
        train_size: int = 200,
        test_size: int = 200,
        subset_fraction: float = 0.5,
        n_subsets: int = 3,
        subset_size: int = 12,
        alphabet_size: int = len(SYMBOLS),
    ):
        if not 1 <= n_symbols <= subset_size <= alphabet_size <= len(SYMBOLS):
            raise UsageError(
                f"task {name!r}: set 1 <= n_symbols <= subset_size <= alphabet_size <= {len(SYMBOLS)}"
            )
        suffix = "" if name == NAME else f"@{name}"
        self.name = name
        self.metric = "pfa-segment-accuracy" + suffix
        self.paraphraser = "symbol-shuffle" + suffix
        self.seed, self.subset_fraction = seed, subset_fraction
        self.sizes = {"train": train_size, "test": test_size}
        self.generation = Generation(max_new_tokens=n_symbols * (segment_length + 1) + 4, stop=("\n",))
        # sim_x takes the values j/n (shared symbols); High = all n shared, Medium = n-1, Low = fewer.
        self.similarity_bins = ((n_symbols - 1.5) / n_symbols, (n_symbols - 0.5) / n_symbols)
        rng = random.Random(seed)
        self.symbols = SYMBOLS[:alphabet_size]
        vocabularies: list[str] = []
        while len(vocabularies) < alphabet_size:
            letters = "".join(sorted(rng.sample(string.ascii_lowercase, 3)))
            if letters not in vocabularies:
                vocabularies.append(letters)
        self.automata = {
            s: PFA.random(rng, v, segment_length) for s, v in zip(self.symbols, vocabularies, strict=True)
        }
        self.subsets = [rng.sample(self.symbols, subset_size) for _ in range(n_subsets)]
        self.permutation = list(range(n_symbols))
        while n_symbols > 1 and self.permutation == sorted(self.permutation):
            rng.shuffle(self.permutation)

    def output_for(self, symbols: Sequence[str], rng: random.Random) -> str:
        """A correct output for `symbols`, sampled from the automata with `rng`."""
        return " ".join(self.automata[symbols[p]].sample(rng) for p in self.permutation)

    def segment_accuracy(self, prediction: str, example: Example) -> float:
        """Fraction of output positions whose segment the aligned symbol's PFA accepts."""
        symbols, segments = example.input.split(), prediction.split()
        hits = sum(
            j < len(segments) and self.automata[symbols[p]].accepts(segments[j])
            for j, p in enumerate(self.permutation)
        )
        return hits / len(self.permutation)

    def output_similarity(self, prediction: str, reference: Example) -> float:
        """sim_y of the probes: the fraction of output positions where the two segments are equal (both
        missing counts as equal) or both accepted by the PFA of `reference.input`'s aligned symbol.
        Against a correct output this is the segment accuracy; between two predictions (the IWL probe)
        it asks whether they agree, so identical predictions score 1."""
        symbols, ours, theirs = reference.input.split(), prediction.split(), reference.output.split()
        hits = 0
        for j, p in enumerate(self.permutation):
            a, b = (ours[j] if j < len(ours) else None), (theirs[j] if j < len(theirs) else None)
            accepts = self.automata[symbols[p]].accepts
            hits += a == b or (a is not None and b is not None and accepts(a) and accepts(b))
        return hits / len(self.permutation)

    def load(self, split: str) -> list[Example]:
        if split not in self.sizes:
            raise UsageError(f"task {self.name!r} has no split {split!r}; splits: {', '.join(self.sizes)}")
        examples = []
        for index in range(self.sizes[split]):
            rng = random.Random(f"{self.seed}/{split}/{index}")
            subset = rng.randrange(len(self.subsets)) if rng.random() < self.subset_fraction else None
            drawn = self.symbols if subset is None else self.subsets[subset]
            symbols = rng.sample(drawn, len(self.permutation))
            examples.append(
                Example(
                    f"{split}-{index:04d}",
                    " ".join(symbols),
                    self.output_for(symbols, rng),
                    {"subset": subset},
                )
            )
        return examples

    def render_input(self, example: Example) -> str:
        return f"{example.input} ->"

    def bm25_tokens(self, text: str) -> list[str]:
        return [t for t in text.split() if t in self.automata]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised bag-of-symbol counts (all-zero for a text without symbols)."""
        counts = np.zeros((len(texts), len(SYMBOLS)), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in self.bm25_tokens(text):
                counts[row, SYMBOLS.index(token)] += 1
        norms = np.linalg.norm(counts, axis=1, keepdims=True)
        return counts / np.where(norms > 0, norms, 1)


class SymbolShuffle(Paraphraser):
    """x~ = the target's symbols in a different order; y~ = x~'s own output, sampled with `rng`."""

    description = "shuffle the target's symbols; the output is the shuffled input's own PFA output"

    def __init__(self, task: SyntheticAlignment):
        self.task, self.name = task, task.paraphraser

    def __call__(self, target: Example, rng: random.Random) -> Example:
        original = target.input.split()
        symbols = list(original)
        while len(set(original)) > 1 and symbols == original:
            rng.shuffle(symbols)
        return Example(
            f"{target.id}~para",
            " ".join(symbols),
            self.task.output_for(symbols, rng),
            {"paraphrase_of": target.id},
        )


class PfaSegmentAccuracy(Metric):
    description = "fraction of output segments accepted by the PFA of the aligned input symbol"

    def __init__(self, task: SyntheticAlignment):
        self.task, self.name = task, task.metric

    def __call__(self, predictions: Sequence[str], examples: Sequence[Example]) -> list[float]:
        return [self.task.segment_accuracy(p, ex) for p, ex in zip(predictions, examples, strict=True)]


TASK = SyntheticAlignment()


@hookimpl
def register_tasks(register) -> None:
    register(TASK)


@hookimpl
def register_paraphrasers(register) -> None:
    register(SymbolShuffle(TASK))


@hookimpl
def register_metrics(register) -> None:
    register(PfaSegmentAccuracy(TASK))
