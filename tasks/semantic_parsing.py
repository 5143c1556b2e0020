"""Semantic parsing: an MTOP utterance in Spanish, German or French -> its intent/slot logical form (seed
section 4), from the XSemPLR release of MTOP, scored by exact match after whitespace normalisation.

`mtop-es`, `mtop-de` and `mtop-fr` read a local folder named by `--data-dir` or $ICL_BENCH_MTOP: XSemPLR's
`dataset/mtop` (https://github.com/psunlpgroup/XSemPLR; its README links the data).  Each split is one
JSON file, `train.json`, `dev.json`, `test.json` (a `.jsonl` file of the same rows is read too), holding a
list of examples aligned across the six MTOP languages (XSemPLR's `read_mtop` in its `dataset` script
writes them):

    {"id": "...", "question": {"en": "...", "de": "...", ...},
     "mr": {"slot_intent": {"en": "[IN:... [SL:... ] ]", "de": "...", ...}}}

x = question[<language>], y = mr.slot_intent[<language>] (MTOP's logical form keeps the utterance's own
words, so it differs by language).  The pool is `train`, the tests `test`.  The paraphraser `mtop-slots`
makes the target's near neighbour as `sql-constants` does for SQL (x~ and y~ both change): every leaf
slot whose value the utterance says verbatim gets another value of the same slot type from the pool, in
the utterance and the logical form.  `write_fixture` writes a tiny folder in this layout from made-up words
(never dataset text), which is how the tests run the tasks offline.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections import Counter
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from icl_bench import Example, Generation, Paraphraser, Task, hookimpl
from icl_bench.errors import UsageError, unknown
from icl_bench.tasks.prompts import numbered_prompt
from icl_bench.types import Metric
from icl_bench.validate import Rows

LANGUAGES = {"es": "Spanish", "de": "German", "fr": "French"}
MTOP_ENV = "ICL_BENCH_MTOP"
SOURCE = "https://github.com/psunlpgroup/XSemPLR"
MR_FIELD = "slot_intent"
ROW = f'a list of {{"id", "question": {{lang: text}}, "mr": {{"{MR_FIELD}": {{lang: form}}}}}}'
LEAF_SLOT = re.compile(r"\[(?P<slot>SL:[^\s\[\]]+) (?P<value>[^\[\]]+?) \]")  # a slot with no nested intent


def normalise(text: str) -> str:
    """Runs of whitespace as one space, none at either end."""
    return " ".join(text.split())


class ExactMatchWhitespace(Metric):
    name = "exact-match-ws"
    description = "1 if the prediction equals the gold output after whitespace normalisation, else 0"

    def __call__(self, predictions: Sequence[str], examples: Sequence[Example]) -> list[float]:
        pairs = zip(predictions, examples, strict=True)
        return [float(normalise(p) == normalise(ex.output)) for p, ex in pairs]


class Mtop(Task):
    """`language` utterance -> MTOP logical form; the prompt in the style of the translation tasks."""

    splits = ("train", "test")
    metric = "exact-match-ws"
    paraphraser = "mtop-slots"
    data_env = MTOP_ENV
    generation = Generation(max_new_tokens=128, stop=("\n",))

    def __init__(self, language: str):
        if language not in LANGUAGES:
            raise unknown("language", language, LANGUAGES)
        self.language, self.source_language = language, LANGUAGES[language]
        self.name = f"mtop-{language}"
        self.description = (
            f"{self.source_language} utterance -> MTOP logical form (XSemPLR, ${MTOP_ENV}): train pool, test"
        )
        self._loaded: dict[str, list[Example]] = {}

    def instruction(self) -> str:
        return f"Parse the {self.source_language} utterance into its MTOP logical form."

    def prompt(self, context: Sequence[Example], target: Example) -> str:
        """Zero-shot: the instruction, then the utterance.  k examples: numbered, then both."""
        noun = "parse" if len(context) == 1 else "parses"
        heading = (
            f"Consider the following {len(context)} {noun} of {self.source_language} utterances "
            "into MTOP logical forms."
        )
        return numbered_prompt(self, context, target, heading)

    def render_input(self, example: Example) -> str:
        return f"Utterance: {example.input}\nLogical form:"

    def folder(self) -> Path:
        root = os.environ.get(MTOP_ENV)
        if not root or not Path(root).is_dir():
            where = f"folder {root} does not exist" if root else f"${MTOP_ENV} is not set"
            raise UsageError(
                f"{self.name} needs the XSemPLR MTOP release ({where}); download XSemPLR's data ({SOURCE}) "
                f"and pass its dataset/mtop folder (train.json, test.json) as --data-dir or ${MTOP_ENV}"
            )
        return Path(root)

    def load(self, split: str) -> list[Example]:
        if split not in self.splits:
            raise unknown("split", split, self.splits)
        if split not in self._loaded:
            self._loaded[split] = self._read(split)
        return list(self._loaded[split])

    def _read(self, split: str, folder: Path | None = None) -> list[Example]:
        folder = folder or self.folder()
        path = next((p for p in (folder / f"{split}.json", folder / f"{split}.jsonl") if p.is_file()), None)
        if path is None:
            raise UsageError(
                f"{self.name}: no {split}.json in ${MTOP_ENV} folder {folder}; set it to XSemPLR's "
                f"dataset/mtop folder ({SOURCE})"
            )
        try:
            text = path.read_text(encoding="utf-8")
            data = (
                json.loads(text)
                if path.suffix == ".json"
                else [json.loads(x) for x in text.splitlines() if x.strip()]
            )
        except (OSError, ValueError) as error:  # invalid UTF-8 or JSON
            reason = f"{type(error).__name__}: {error}".splitlines()[0][:120]
            raise UsageError(
                f"{self.name}: cannot read {path} ({reason}); set ${MTOP_ENV} to XSemPLR's dataset/mtop "
                f"folder ({SOURCE})"
            ) from None
        layout = Rows(path, "XSemPLR's MTOP layout", ROW, f"write it with XSemPLR's read_mtop ({SOURCE})")
        examples = []
        for i, row in enumerate(layout.of(data)):
            layout.field(i, row, "question", dict)
            layout.field(i, row, f"mr.{MR_FIELD}", dict)
            utterance = layout.field(i, row, f"question.{self.language}", required=False) or ""
            form = layout.field(i, row, f"mr.{MR_FIELD}.{self.language}", required=False) or ""
            if utterance.strip() and form.strip():
                uid = str(row.get("id", i))
                meta = {"language": self.language}
                examples.append(Example(f"{split}-{uid}", normalise(utterance), normalise(form), meta))
        if not examples:
            raise UsageError(f"{self.name}: {path} has no {self.source_language} ({self.language}) examples")
        return examples


def mention(utterance: str, value: str) -> re.Match | None:
    return re.search(rf"(?<!\w){re.escape(value)}(?!\w)", utterance, flags=re.I)


class MtopSlots(Paraphraser):
    """Swap each leaf slot's value for another value of its slot type that the pool's logical forms hold
    (seeded by the target, not the caller's rng); a target with no swappable slot gets a pool utterance
    with the same logical form if one exists, else stays unchanged (the stage counts those)."""

    name = "mtop-slots"
    description = (
        "MTOP: replace each slot value said in the utterance with another value of the same slot type "
        "from the pool, in the utterance and the logical form (y~ != y*)"
    )

    def __call__(self, target: Example, rng: random.Random) -> Example:
        language = target.meta.get("language", "")
        if language not in LANGUAGES:
            raise UsageError(f"mtop-slots paraphrases MTOP examples only; {target.id} names no MTOP language")
        values, by_form = pool_index(language, Mtop(language).folder())
        choose = random.Random(f"mtop-slots|{target.id}|{target.output}")
        utterance, form = target.input, target.output
        for match in reversed(list(LEAF_SLOT.finditer(form))):  # right to left: spans keep positions
            old, spot = match["value"], mention(utterance, match["value"])
            others = [v for v in values.get(match["slot"], ()) if v != old and not mention(utterance, v)]
            if spot is None or not others:
                continue
            new = choose.choice(others)
            form = form[: match.start("value")] + new + form[match.end("value") :]
            utterance = utterance[: spot.start()] + new + utterance[spot.end() :]
        if form == target.output:
            same = [u for u in by_form.get(form, ()) if u != target.input]
            utterance = choose.choice(same) if same else utterance
        return Example("paraphrase", utterance, form, dict(target.meta))


@cache
def pool_index(language: str, folder: Path) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    """For a language's pool in `folder`: slot type -> its values (by count, then text), and logical form
    -> its utterances; read once per process."""
    counts: dict[str, Counter] = {}
    by_form: dict[str, list[str]] = {}
    for example in Mtop(language)._read("train", folder):
        by_form.setdefault(example.output, []).append(example.input)
        for match in LEAF_SLOT.finditer(example.output):
            counts.setdefault(match["slot"], Counter())[match["value"]] += 1
    values = {slot: tuple(sorted(c, key=lambda v: (-c[v], v))) for slot, c in counts.items()}
    return values, {form: tuple(sorted(set(u))) for form, u in by_form.items()}


# The offline fixture: made-up words in MTOP-shaped logical forms (no dataset text).
FIXTURE_INTENTS = {
    "IN:GET_ZORBLE": ("SL:ZORB_PLACE",),
    "IN:SET_MIPLON": ("SL:MIPLON_TIME", "SL:MIPLON_NAME"),
    "IN:SEND_FRABBIT": ("SL:FRABBIT_TO",),
}


def write_fixture(folder: Path, n_train: int = 40, n_test: int = 12, seed: int = 0) -> Path:
    """Write `train.json`, `dev.json` and `test.json` in XSemPLR's MTOP layout under `folder`: utterances
    of generated pseudo-words for en, es, de and fr, and each language's logical form over its own words.
    The same seed writes the same files."""
    rng = random.Random(seed)
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]

    def word() -> str:
        return "".join(rng.choice(syllables) for _ in range(rng.randint(2, 3)))

    def example(uid: str) -> dict:
        intent = rng.choice(sorted(FIXTURE_INTENTS))
        slots = FIXTURE_INTENTS[intent]
        question, forms = {}, {}
        for language in ("en", *LANGUAGES):
            head = [f"{language}{word()}" for _ in range(rng.randint(1, 3))]
            values = [[word() for _ in range(rng.randint(1, 2))] for _ in slots]
            question[language] = " ".join(head + [w for value in values for w in value])
            inner = " ".join(
                f"[{slot} {' '.join(value)} ]" for slot, value in zip(slots, values, strict=True)
            )
            forms[language] = f"[{intent} {inner} ]"
        return {"id": uid, "mr": {MR_FIELD: forms}, "question": question}

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("dev", n_test), ("test", n_test)):
        rows = [example(f"{seed}{split[:2]}{i:05d}") for i in range(n)]
        (folder / f"{split}.json").write_text(
            json.dumps(rows, ensure_ascii=False, indent=4), encoding="utf-8"
        )
    return folder


TASKS = [Mtop(language) for language in LANGUAGES]


@hookimpl
def register_tasks(register) -> None:
    for task in TASKS:
        register(task)


@hookimpl
def register_metrics(register) -> None:
    register(ExactMatchWhitespace())


@hookimpl
def register_paraphrasers(register) -> None:
    register(MtopSlots())
