"""The labelled pool D that contexts are drawn from: its BM25 index and the target-exclusion rule."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import replace

from icl_bench.contexts.similarity import BM25Index, top_indices
from icl_bench.core.errors import UsageError
from icl_bench.core.types import Example, Task
from icl_bench.paraphrase.llm import same_input

Paraphrase = Callable[[Example, random.Random], Example]


class NoParaphrase(Exception):
    """The target has no paraphrase: its paraphraser made none but the target's own input
    (`icl_bench.paraphrase.llm.same_input`).  Shown as x~, it would put the target itself, with its gold
    output, in its own context; so the caller leaves the target out or uses another sampler."""

    def __init__(self, target: Example):
        super().__init__(f"target {target.id!r} has no paraphrase other than its own input")
        self.target = target


class Pool:
    """Examples plus a BM25 index over their inputs.  Every query excludes the target itself:
    the example with the target's id and every example whose input equals the target's input."""

    def __init__(self, task: Task, examples: Sequence[Example], paraphrase: Paraphrase | None = None):
        if not examples:
            raise UsageError(f"task {task.name!r} has an empty pool; give it at least k+1 examples")
        self.task = task
        self.examples = list(examples)
        self._paraphrase = paraphrase
        self.index = BM25Index([task.bm25_tokens(ex.input) for ex in self.examples])
        self._by_id: dict[str, list[int]] = defaultdict(list)
        self._by_input: dict[str, list[int]] = defaultdict(list)
        for i, ex in enumerate(self.examples):
            self._by_id[ex.id].append(i)
            self._by_input[ex.input].append(i)

    def __len__(self) -> int:
        return len(self.examples)

    def excluded(self, target: Example) -> frozenset[int]:
        """Pool indices that may never appear in `target`'s context."""
        return frozenset([*self._by_id.get(target.id, ()), *self._by_input.get(target.input, ())])

    def available(self, target: Example) -> int:
        return len(self) - len(self.excluded(target))

    def random(
        self, target: Example, n: int, rng: random.Random, also: frozenset[int] = frozenset()
    ) -> list[int]:
        """`n` distinct indices uniformly at random, never excluded ones nor `also`."""
        skip = self.excluded(target) | also
        drawn = rng.sample(range(len(self)), min(len(self), n + len(skip)))
        return [i for i in drawn if i not in skip][:n]

    def nearest(self, target: Example, n: int) -> list[int]:
        """The `n` best pool indices by BM25 against the target's input."""
        return [i for i, _ in self.nearest_scored(target, n)]

    def nearest_scored(self, target: Example, n: int) -> list[tuple[int, float]]:
        """The `n` best pool indices by BM25 with their scores, from one scoring pass."""
        scores = self.index.scores(self.task.bm25_tokens(target.input))
        return [(i, float(scores[i])) for i in top_indices(scores, n, self.excluded(target))]

    def paraphrase(self, target: Example, rng: random.Random) -> Example:
        """The target's paraphrase (x~, y~); NoParaphrase when it is the target's own input."""
        if self._paraphrase is None:
            raise UsageError(
                f"task {self.task.name!r} names no paraphraser; set Task.paraphraser to a registered one"
            )
        made = self._paraphrase(target, rng)
        if same_input(made.input, target.input):
            raise NoParaphrase(target)
        return replace(made, id=f"{target.id}~para", meta={**made.meta, "paraphrase_of": target.id})

    def augmented(
        self,
        targets: Sequence[Example],
        rng_for: Callable[[Example], random.Random],
        left_out: list[Example] | None = None,
    ) -> Pool:
        """This pool plus every target's paraphrase (the similar-augmented ablation); a target without
        one adds nothing (appended to `left_out` when given)."""
        extra = []
        for target in targets:
            try:
                extra.append(self.paraphrase(target, rng_for(target)))
            except NoParaphrase:
                if left_out is not None:
                    left_out.append(target)
        return Pool(self.task, self.examples + extra, self._paraphrase)
