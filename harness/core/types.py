"""Core types shared by every stage: examples, tasks, contexts, samplers, regimes."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from icl_bench.core.store import Store


@dataclass(frozen=True)
class Example:
    """One labelled instance: `input` x, gold `output` y, free-form `meta` (e.g. a SQL database path)."""

    id: str
    input: str
    output: str
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Generation:
    """How a generation task is decoded: greedy, up to `max_new_tokens`, cut at the first stop string."""

    max_new_tokens: int = 64
    stop: tuple[str, ...] = ("\n",)


class Task(ABC):
    """A task plugin: data, prompt, metric.  Subclass it and register an instance.

    Generation tasks are scored by `score(predictions, examples)`; multiple-choice tasks set `choices` and
    are scored by the log-likelihood of each choice as the continuation of the prompt.
    """

    name: str
    description: str
    splits: tuple[str, ...] = ("train", "test")
    pool_split: str = "train"
    metric: str = "exact-match"
    extra_metrics: tuple[str, ...] = ()  # also computed and stored per example; `metric` is the primary
    paraphraser: str | None = None
    choices: tuple[str, ...] | None = None
    generation: Generation = Generation()
    similarity_bins: tuple[float, float] | None = None  # fixed Low/Medium/High edges; None = tertiles
    data_env: str | None = None  # the variable naming the local data folder it reads (`--data-dir` sets it)

    @abstractmethod
    def load(self, split: str) -> list[Example]:
        """All examples of `split`, in a deterministic order."""

    def check(self) -> None:
        """Fail with one line (UsageError) before any work when the data cannot be had: loads every split."""
        for split in self.splits:
            self.load(split)

    def prompt(self, context: Sequence[Example], target: Example) -> str:
        """The text the model continues: the context examples, then the target's input."""
        shots = "".join(f"{self.render_input(ex)}{self.render_output(ex)}\n" for ex in context)
        return shots + self.render_input(target)

    def render_input(self, example: Example) -> str:
        return f"Input: {example.input}\nOutput:"

    def render_output(self, example: Example) -> str:
        """The continuation trained on and expected after `render_input` (leading space included)."""
        return f" {example.output}"

    def bm25_tokens(self, text: str) -> list[str]:
        """Tokens BM25 indexes for an input; lowercase words by default."""
        return text.lower().split()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm sentence embeddings of inputs (rows); sim_x is their dot product."""
        from icl_bench.core.embeddings import minilm_embed

        return minilm_embed(texts)

    def baselines(self) -> Sequence[Baseline]:
        """Trivial reference predictors of this task beside the harness's own (`majority`,
        `copy-nearest`), e.g. a per-symbol most frequent output.  None by default."""
        return ()

    def output_similarity(self, prediction: str, reference: Example) -> float:
        """sim_y of the probes, in [0, 1]: how close `prediction` is to `reference.output` as an output
        for `reference.input`.  Default: the primary metric of the one pair over its scale (exact
        match; sentence chrF++ / 100).  Override it where the metric is not a comparison of outputs."""
        from icl_bench.core import plugins

        metric = plugins.metrics[self.metric]
        return float(metric([prediction], [reference])[0]) / metric.scale


@dataclass(frozen=True)
class Context:
    """The in-context examples chosen for one target, and which sampler chose them.

    `near` is the position of the near slot (one_near's nearest or paraphrase's synthetic example).
    """

    examples: tuple[Example, ...]
    sampler: str
    near: int | None = None


def _describe(value: Any) -> Any:
    """A sampler as `Name(field=value, ...)`, anything else as is: stable text for keys and reports."""
    if isinstance(value, Sampler):
        state = (
            {f.name: getattr(value, f.name) for f in fields(value)} if is_dataclass(value) else vars(value)
        )
        args = ", ".join(f"{key}={state[key]!r}" for key in sorted(state))
        return f"{type(value).__name__}({args})"
    return value


class Pool(Protocol):
    """What a sampler sees of the pool (`icl_bench.contexts.pool.Pool` builds it): the examples, and
    index queries that never return the target itself."""

    examples: list[Example]

    def random(
        self, target: Example, n: int, rng: random.Random, also: frozenset[int] = frozenset()
    ) -> list[int]: ...

    def nearest(self, target: Example, n: int) -> list[int]: ...

    def nearest_scored(self, target: Example, n: int) -> list[tuple[int, float]]: ...

    def paraphrase(self, target: Example, rng: random.Random) -> Example: ...


class Sampler(ABC):
    """Builds the context for one target from a pool; never returns the target itself."""

    name: str

    @abstractmethod
    def __call__(self, target: Example, pool: Pool, k: int, rng: random.Random) -> Context: ...


@dataclass(frozen=True)
class Regime:
    """A named mixture of samplers: each instance draws one sampler with the given probabilities.

    A training regime and a test-context mode are both Regimes (a mode has one sampler).
    `augment_pool` adds every target's paraphrase to the pool first (SPEC section D.4 ablation);
    `min_mean_sim` drops instances whose context's mean sim_x to the target is not above it.
    Subclasses add their parameters as dataclass fields, so `dataclasses.replace` configures them.
    """

    name: str
    description: str
    augment_pool: bool = False
    min_mean_sim: float | None = None

    def components(self) -> Sequence[tuple[float, Sampler]]:
        raise NotImplementedError(f"regime {self.name!r} defines no components()")

    def sample(self, target: Example, pool: Pool, k: int, rng: random.Random) -> Context:
        """Draw u ~ U(0,1), pick the component whose cumulative probability covers it, sample."""
        parts = self.components()
        u, edge = rng.random(), 0.0
        for prob, sampler in parts:
            edge += prob
            if u < edge:
                return sampler(target, pool, k, rng)
        # u beyond a float-rounded total: the last component that can be drawn at all
        return next(s for p, s in reversed(parts) if p > 0)(target, pool, k, rng)

    def params(self) -> dict[str, Any]:
        """The configurable fields (everything but name and description), for keys and reports."""
        return {
            f.name: _describe(getattr(self, f.name))
            for f in fields(self)
            if f.name not in ("name", "description")
        }


@dataclass(frozen=True)
class Single(Regime):
    """A regime (or test mode) that always uses one sampler."""

    sampler: Sampler | None = None

    def components(self) -> Sequence[tuple[float, Sampler]]:
        assert self.sampler is not None, f"regime {self.name!r} has no sampler"
        return ((1.0, self.sampler),)


class Metric(ABC):
    """Scores a batch of predictions against their examples: one float per example, higher is better.

    `scale` is the metric's range (1 for accuracies, 100 for chrF or BLEU); claim margins scale with it.
    """

    name: str
    description: str
    scale: float = 1.0

    @property
    def bounds(self) -> tuple[float, float] | None:
        """Every score lies in [lo, hi] (results outside are refused); None: unbounded.  [0, scale]."""
        return (0.0, self.scale)

    @abstractmethod
    def __call__(self, predictions: Sequence[str], examples: Sequence[Example]) -> list[float]: ...

    def explained(
        self, predictions: Sequence[str], examples: Sequence[Example]
    ) -> tuple[list[float], list[str] | None]:
        """The scores and, for a metric that can say, why each example scored as it did (one line each;
        stored in its record's `reasons`).  Override instead of `__call__` to give reasons in one pass."""
        return self(predictions, examples), None

    def check(self, store: Store) -> None:  # noqa: B027  (optional hook: most metrics always run)
        """Fail with one line (UsageError) before any work when this metric cannot run with `store`
        (the run's artifact store, where metrics that need files, like COMET, keep them)."""


class CorpusMetric(Metric):
    """A metric scored on a corpus, not as a mean of sentences (chrF++, BLEU): each example contributes
    sufficient statistics (n-gram counts), and a group's score is `corpus` of their sums.  The harness
    stores an example's statistics beside its sentence score, so every leaderboard cell, similarity bin
    and bootstrap resample is the corpus score of exactly its examples."""

    @abstractmethod
    def statistics(self, predictions: Sequence[str], examples: Sequence[Example]) -> list[list[float]]:
        """One vector of sufficient statistics per example, all of one length."""

    @abstractmethod
    def corpus(self, totals: Sequence[float]) -> float:
        """The corpus score of examples whose `statistics` sum to `totals`."""


class Paraphraser(ABC):
    """Makes the synthetic near neighbour (x~, y~) of a target (SPEC section 1, `paraphrase`).

    The harness sets the result's id to `<target id>~para` and `meta["paraphrase_of"]` to the target id.
    Bump `version` when the paraphrases change: contexts built with the old ones are then rebuilt.
    """

    name: str
    description: str
    version: int = 1

    @abstractmethod
    def __call__(self, target: Example, rng: random.Random) -> Example: ...


BASELINE_MODEL = "baseline"  # the model name of trivial-baseline records in a results folder
BASELINE_FILE = "baselines.jsonl"  # where they are: <results>/<task>/baselines.jsonl


@dataclass(frozen=True)
class Case:
    """What a trivial baseline sees of one (test example, mode) record: the target's input (never its
    output), the context examples and each one's sim_x to the target."""

    input: str
    context: tuple[Example, ...]
    sims: tuple[float, ...]


class Baseline(ABC):
    """A trivial reference predictor (SPEC 3, turn 3): needs no model, only the training pool and the
    records' contexts.  Scored like a model, shown in every table as a reference, never a regime."""

    name: str
    description: str

    @abstractmethod
    def predict(self, pool: Sequence[Example], cases: Sequence[Case]) -> list[str]:
        """One predicted output per case, from the pool D and each case alone."""
