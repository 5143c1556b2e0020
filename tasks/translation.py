"""Translation English -> German, Hindi, Tamil, Lithuanian: the seed paper's main experiment (section 4,
appendix C.2), prompted as in appendix B.1.

`mt-en-XX` load the paper's benchmarks through `datasets` (pool: Europarl or Samanantar, 50,000 pairs;
`id`: Flores+ devtest; `ood`: EMEA, IIT Bombay, Tanzil); `mt-django-en-XX` are offline variants read at
run time from the gettext catalogues inside the installed `django` package (`catalogues.py`).  Every
dataset id, config and column is in `SOURCES`; `ICL_BENCH_DATASETS=DIR` loads `DIR/<dataset id>` instead
of the hub (a folder in the hub's layout: README configs + data files), which is how the tests run them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from icl_bench import Example, Generation, Task, hookimpl
from icl_bench.errors import unknown
from icl_bench.hub import field, load_split, sample
from icl_bench.tasks import catalogues
from icl_bench.tasks.prompts import numbered_prompt

LANGUAGES = {"de": "German", "hi": "Hindi", "ta": "Tamil", "lt": "Lithuanian"}
PARAPHRASER = "wordnet-synonyms"


def checked(language: str) -> str:
    if language not in LANGUAGES:
        raise unknown("language", language, LANGUAGES)
    return language


class Translation(Task):
    """English -> `language`, scored by chrF++ (BLEU also reported); the prompt of appendix B.1."""

    splits = ("train", "id", "ood")
    metric = "chrf"
    extra_metrics = ("bleu",)
    paraphraser = PARAPHRASER
    generation = Generation(max_new_tokens=128, stop=("\n",))

    def __init__(self, name: str, language: str, description: str):
        self.name, self.language, self.description = name, language, description
        self.target_language = LANGUAGES[language]

    def instruction(self) -> str:
        return f"Translate the source text from English to {self.target_language}."

    def prompt(self, context: Sequence[Example], target: Example) -> str:
        """Zero-shot: the instruction, then the source.  k examples: appendix B.1's k-example form."""
        noun = "translation" if len(context) == 1 else "translations"
        heading = f"Consider the following {len(context)} {noun} from English to {self.target_language}."
        return numbered_prompt(self, context, target, heading)

    def render_input(self, example: Example) -> str:
        return f"Source: {example.input}\nTarget:"


@dataclass(frozen=True)
class Columns:
    """A parallel split of one hub dataset: `english` and `foreign` are column paths ("translation.en")."""

    dataset: str
    config: str | None
    split: str
    english: str
    foreign: str

    def describe(self) -> str:
        return f"{self.dataset} ({self.config}, {self.split})" if self.config else self.dataset

    def pairs(self) -> list[tuple[str, str]]:
        rows = load_dataset(self, self.config)
        return [(field(row, self.english), field(row, self.foreign)) for row in rows]


@dataclass(frozen=True)
class Aligned(Columns):
    """Two configs of one dataset (one per language) joined on a key column: Flores+."""

    foreign_config: str = ""
    key: str = "id"

    def describe(self) -> str:
        return f"{self.dataset} ({self.config} + {self.foreign_config}, {self.split})"

    def pairs(self) -> list[tuple[str, str]]:
        foreign = {row[self.key]: row[self.foreign] for row in load_dataset(self, self.foreign_config)}
        return [
            (row[self.english], foreign[row[self.key]])
            for row in load_dataset(self, self.config)
            if row[self.key] in foreign
        ]


def load_dataset(source: Columns, config: str | None):
    return load_split(
        source.dataset, config, source.split, source.describe(), "the offline mt-django-* tasks"
    )


def flores(language_config: str) -> Aligned:
    return Aligned(
        "openlanguagedata/flores_plus", "eng_Latn", "devtest", "text", "text", foreign_config=language_config
    )


def opus(dataset: str, pair: str, language: str, split: str = "train") -> Columns:
    return Columns(dataset, pair, split, "translation.en", f"translation.{language}")


SOURCES: dict[str, dict[str, Columns]] = {
    "de": {
        "train": opus("Helsinki-NLP/europarl", "de-en", "de"),
        "id": flores("deu_Latn"),
        "ood": opus("Helsinki-NLP/emea", "de-en", "de"),
    },
    "hi": {
        "train": Columns("ai4bharat/samanantar", "hi", "train", "src", "tgt"),
        "id": flores("hin_Deva"),
        "ood": opus("cfilt/iitb-english-hindi", None, "hi", split="test"),
    },
    "ta": {
        "train": Columns("ai4bharat/samanantar", "ta", "train", "src", "tgt"),
        "id": flores("tam_Taml"),
        "ood": opus("Helsinki-NLP/tanzil", "en-ta", "ta"),
    },
    "lt": {
        "train": opus("Helsinki-NLP/europarl", "en-lt", "lt"),
        "id": flores("lit_Latn"),
        "ood": opus("Helsinki-NLP/emea", "en-lt", "lt"),
    },
}


class HubTranslation(Translation):
    """The paper's benchmark for one language; `sizes` caps each split by a deterministic sample."""

    def __init__(self, language: str, sizes: dict[str, int | None] | None = None, seed: int = 0):
        sources = {split: s.dataset.split("/")[-1] for split, s in SOURCES[checked(language)].items()}
        super().__init__(
            f"mt-en-{language}",
            language,
            f"English->{LANGUAGES[language]} (hub): {sources['train']} pool, {sources['id']} id, "
            f"{sources['ood']} ood",
        )
        self.sizes = {"train": 50_000, "id": None, "ood": 500, **(sizes or {})}
        self.seed = seed
        self._loaded: dict[str, list[Example]] = {}

    def load(self, split: str) -> list[Example]:
        if split not in self.splits:
            raise unknown("split", split, self.splits)
        if split not in self._loaded:
            pairs = SOURCES[self.language][split].pairs()
            examples = [
                Example(f"{split}-{i:06d}", english.strip(), foreign.strip())
                for i, (english, foreign) in enumerate(pairs)
                if english.strip() and foreign.strip()
            ]
            self._loaded[split] = sample(examples, self.sizes[split], f"{self.seed}|{self.name}|{split}")
        return list(self._loaded[split])


class DjangoTranslation(Translation):
    """Offline: django's own UI strings and their translations.  `ood` is the admin catalogue family;
    the rest (core + other contrib apps) is split deterministically into the pool and `id` tests.
    Answers get 64 new tokens (UI strings are short: 9 in 10 German ones fit in 32)."""

    generation = Generation(max_new_tokens=64, stop=("\n",))

    def __init__(self, language: str, id_fraction: float = 0.2, seed: int = 0):
        super().__init__(
            f"mt-django-en-{language}",
            checked(language),
            f"English->{LANGUAGES[language]} (offline): django's UI strings, ood the admin's",
        )
        self.id_fraction, self.seed = id_fraction, seed

    def load(self, split: str) -> list[Example]:
        if split not in self.splits:
            raise unknown("split", split, self.splits)
        return list(self._splits[split])

    @cached_property
    def _splits(self) -> dict[str, tuple[Example, ...]]:
        pairs = catalogues.pairs(self.language)
        families = {
            family: [
                Example(f"{family}-{i:04d}", pair.source, pair.translation, {"catalogue": pair.catalogue})
                for i, pair in enumerate(p for p in pairs if p.family == family)
            ]
            for family in ("core", "admin")
        }
        core = sample(families["core"], None, f"{self.seed}|{self.name}")
        cut = round(len(core) * self.id_fraction)
        return {
            "train": tuple(core[cut:]),
            "id": tuple(core[:cut]),
            "ood": tuple(sample(families["admin"], None, f"{self.seed}|{self.name}|ood")),
        }


TASKS = [
    *(HubTranslation(language) for language in LANGUAGES),
    *(DjangoTranslation(language) for language in LANGUAGES),
]


@hookimpl
def register_tasks(register) -> None:
    for task in TASKS:
        register(task)
