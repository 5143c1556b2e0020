"""Context samplers (SPEC section 1): the building blocks of regimes and test modes."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import ClassVar

from icl_bench.contexts.pool import NoParaphrase, Pool
from icl_bench.core.types import Context, Example, Sampler


def _with_near(pool: Pool, chosen: list[int], near: Example, rng: random.Random, name: str) -> Context:
    """k-1 random pool examples with `near` inserted at a random position."""
    examples = [pool.examples[i] for i in chosen]
    slot = rng.randrange(len(examples) + 1)
    examples.insert(slot, near)
    return Context(tuple(examples), name, near=slot)


@dataclass(frozen=True)
class Empty(Sampler):
    """No examples (zero-shot / standard fine-tuning)."""

    name: ClassVar[str] = "empty"

    def __call__(self, target: Example, pool: Pool, k: int, rng: random.Random) -> Context:
        return Context((), self.name)


@dataclass(frozen=True)
class Random(Sampler):
    """k examples uniformly from the pool."""

    name: ClassVar[str] = "random"

    def __call__(self, target: Example, pool: Pool, k: int, rng: random.Random) -> Context:
        return Context(tuple(pool.examples[i] for i in pool.random(target, k, rng)), self.name)


@dataclass(frozen=True)
class Similar(Sampler):
    """The top-k of the pool by BM25 against the target's input, best first."""

    name: ClassVar[str] = "similar"

    def __call__(self, target: Example, pool: Pool, k: int, rng: random.Random) -> Context:
        return Context(tuple(pool.examples[i] for i in pool.nearest(target, k)), self.name)


@dataclass(frozen=True)
class OneNear(Sampler):
    """k-1 random + 1 near example at a random position.

    `top_m=1` (test time) takes the BM25 top-1; `top_m>1` (training) samples among the BM25 top-m with
    probability proportional to BM25 score.
    """

    top_m: int = 1
    name: ClassVar[str] = "one_near"

    def __call__(self, target: Example, pool: Pool, k: int, rng: random.Random) -> Context:
        scored = pool.nearest_scored(target, self.top_m)
        candidates = [i for i, _ in scored]
        if len(candidates) > 1:
            weights = [score for _, score in scored]
            if sum(weights) <= 0:
                weights = [1.0] * len(candidates)
            near = rng.choices(candidates, weights=weights)[0]
        else:
            near = candidates[0]
        others = pool.random(target, k - 1, rng, also=frozenset({near}))
        return _with_near(pool, others, pool.examples[near], rng, self.name)


@dataclass(frozen=True)
class FellBack(Context):
    """A context made by a sampler's fallback, in place of the sampler named `instead_of`."""

    instead_of: str = ""


@dataclass(frozen=True)
class Paraphrase(Sampler):
    """k-1 random + the target's paraphrase (x~, y~) from the task's paraphraser, at a random position.

    A target without a paraphrase (`NoParaphrase`: its paraphrase is its own input) never gets itself:
    with a `fallback` sampler the context is the fallback's, drawn from the rng exactly as this sampler
    received it (a `FellBack` context); without one NoParaphrase reaches the caller, which leaves the
    target out (the `paraphrase` test mode does).
    """

    fallback: Sampler | None = None
    name: ClassVar[str] = "paraphrase"

    def __call__(self, target: Example, pool: Pool, k: int, rng: random.Random) -> Context:
        state = rng.getstate()
        others = pool.random(target, k - 1, rng)
        try:
            near = pool.paraphrase(target, rng)
        except NoParaphrase:
            if self.fallback is None:
                raise
            rng.setstate(state)
            made = self.fallback(target, pool, k, rng)
            return FellBack(made.examples, made.sampler, made.near, instead_of=self.name)
        return _with_near(pool, others, near, rng, self.name)
