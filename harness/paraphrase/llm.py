"""Stage 0: paraphrases.  The synthetic near neighbour x~ of every target, made once per (targets,
paraphraser, model) and kept in the store, so every regime and test mode sees the same x~ (y~ = y*).

`llm` asks a causal LM (any registered alias or hub id) for paraphrases with the seed paper's prompt
(appendix B.2), parses the JSON list it answers, and keeps the first candidate that passes `validate`;
a target without one falls back to the task's own paraphraser and is counted.  Paraphrasers that are
plain functions of the target (WordNet synonyms, the synthetic shuffle) need no stage and run inline.

A paraphrase whose input is the target's own (`same_input`: up to case and spacing, the test `validate`
applies to the LM's candidates) is no paraphrase, whichever paraphraser made it: the fallback of a
target the LM failed on, WordNet or SQL constants with nothing to change, a one-symbol shuffle, an MTOP
utterance with no slot to swap.  The contexts stage never shows it (it would put the target itself,
with its gold output, in the context): see `icl_bench.contexts.pool.NoParaphrase`.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from icl_bench.core import plugins
from icl_bench.core.errors import UsageError
from icl_bench.core.files import read_jsonl, write_jsonl
from icl_bench.core.hookspecs import hookimpl
from icl_bench.core.progress import console
from icl_bench.core.store import Store, digest
from icl_bench.core.types import Example, Paraphraser, Task

STAGE_VERSION = 1
DEFAULT_MODEL = "smollm2-135m"
CANDIDATES = 5
LENGTH_RATIO = (0.5, 2.0)  # a candidate's length / the input's (choice)

PROMPT = """Generate {n} diverse paraphrases for the given input English sentence. Before paraphrasing, \
carefully analyze the original sentences and keywords. Ensure significant variation in phrasing, \
structure, and wording while preserving meaning. The paraphrases should be such that their translation \
into another language could still be the same. Only modify the grammar and sentence structure such that \
all the paraphrases should be translatable to a common sentence in another language.
### Inputs:
Original Sentences: [
"Sentence 1": {sentence}
]
Answer with a JSON object that maps "Sentence 1" to a list of {n} paraphrases.
"""


def prompt(sentence: str, n: int = CANDIDATES) -> str:
    return PROMPT.format(n=n, sentence=json.dumps(sentence, ensure_ascii=False))


def parse(answer: str) -> list[str]:
    """The paraphrases in a model's answer: the first JSON object's first list of strings, else the
    quoted or numbered lines of the answer."""
    for match in re.finditer(r"\{.*?\]\s*\}", answer, flags=re.DOTALL):
        try:
            value = json.loads(match.group(0))
        except json.JSONDecodeError:
            continue
        lists = [v for v in value.values() if isinstance(v, list)] if isinstance(value, dict) else []
        if lists:
            return [s.strip() for s in lists[0] if isinstance(s, str)]
    found = []
    for line in answer.splitlines():
        line = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s*", "", line).strip().rstrip(",").strip()
        if len(line) > 1 and line[0] == line[-1] == '"':
            line = line[1:-1]
        if line and not line.startswith(("{", "}", "[", "]", "#")):
            found.append(line)
    return found


def latin_share(text: str) -> float:
    letters = [c for c in text if c.isalpha()]
    return sum(c.isascii() for c in letters) / len(letters) if letters else 0.0


def same_input(made: str, source: str) -> bool:
    """Whether a paraphrase `made` is `source` itself, up to case and spacing: then it is none."""
    return " ".join(made.lower().split()) == " ".join(source.lower().split())


def validate(candidate: str, source: str) -> str | None:
    """Why `candidate` is not a usable paraphrase of `source` (None when it is): empty, the input
    itself, more than one line, a length outside LENGTH_RATIO, or another script than the input's."""
    if not candidate.strip():
        return "empty"
    if same_input(candidate, source):
        return "the input"
    if "\n" in candidate.strip():
        return "several lines"
    low, high = LENGTH_RATIO
    if not low <= len(candidate) / max(len(source), 1) <= high:
        return "length"
    if abs(latin_share(candidate) - latin_share(source)) > 0.2:
        return "language"
    return None


@dataclass
class Report:
    """What the stage did: paraphrases accepted from the model, targets that fell back, candidates
    rejected by reason, and a few (input, paraphrase) examples."""

    accepted: int = 0
    fell_back: int = 0
    unchanged: int = 0  # final paraphrases that are their input (`same_input`): left out of contexts
    rejected: Counter = field(default_factory=Counter)
    examples: list[tuple[str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        reasons = ", ".join(f"{reason} {n}" for reason, n in self.rejected.most_common()) or "none"
        return [
            f"accepted {self.accepted}, fell back {self.fell_back}, unchanged {self.unchanged}",
            f"rejected candidates: {reasons}",
            *(f"  {source!r} -> {made!r}" for source, made in self.examples),
        ]


def survey(paraphraser: Paraphraser, targets: Sequence[Example], report: Report, examples: int = 3) -> None:
    """Count what a paraphraser that runs inline makes of `targets` (accepted = not `same_input`)."""
    for target in targets:
        made = paraphraser(target, random.Random(target.id)).input
        if same_input(made, target.input):
            report.unchanged += 1
            continue
        report.accepted += 1
        if len(report.examples) < examples:
            report.examples.append((target.input, made))


@dataclass
class Prepared(Paraphraser):
    """Paraphrases made ahead by the stage, looked up by the target's input (y~ = y*)."""

    name: str
    description: str
    table: dict[str, str]

    def __call__(self, target: Example, rng: random.Random) -> Example:
        if target.input not in self.table:
            raise UsageError(f"no prepared paraphrase for target {target.id!r}; rebuild the contexts")
        return Example(f"{target.id}~para", self.table[target.input], target.output)


class LLM(Paraphraser):
    """Appendix B.2's prompt through a causal LM; greedy decoding; first valid candidate wins."""

    name = "llm"
    description = "an LM's paraphrases (prompt B.2), validated, falling back to the task's paraphraser"

    def __call__(self, target: Example, rng: random.Random) -> Example:
        raise UsageError("the llm paraphraser runs as a stage; pass --paraphraser llm to run or contexts")

    def answers(self, reference: str, sentences: Sequence[str]) -> list[str]:
        from icl_bench import models
        from icl_bench.models import generate

        loaded, tokenizer = models.load(reference)
        prompts = [chat(tokenizer, prompt(s)) for s in sentences]
        return generate(loaded, tokenizer, prompts, max_new_tokens=256)


def chat(tokenizer, text: str) -> str:
    """`text` as a user turn when the tokenizer has a chat template (instruction-tuned models)."""
    if getattr(tokenizer, "chat_template", None):
        turn = [{"role": "user", "content": text}]
        return tokenizer.apply_chat_template(turn, tokenize=False, add_generation_prompt=True)
    return text


def fallback_for(task: Task) -> Paraphraser:
    if not task.paraphraser:
        raise UsageError(
            f"task {task.name!r} has no paraphraser to fall back to; the llm paraphraser needs one"
        )
    return plugins.paraphrasers[task.paraphraser]


def prepare(
    task: Task, inputs: Sequence[str], model: str, store: Store, report: Report | None = None
) -> Prepared:
    """The `llm` paraphrase of every input, built once into the store and then reused."""
    from icl_bench import models

    fallback = fallback_for(task)
    spec = models.resolve(model)
    reference = models.materialize(spec, store)
    key = {
        "task": task.name,
        "inputs": digest(list(inputs)),
        "paraphraser": LLM.name,
        "model": models.identity(spec, reference),
        "fallback": fallback.name,
        "version": STAGE_VERSION,
    }
    if not store.has("paraphrases", key):
        console.print(f"paraphrase {len(inputs)} inputs of {task.name} with {model}")
        answers = LLM().answers(reference, inputs)
        rows = [choose(task, fallback, text, answer) for text, answer in zip(inputs, answers, strict=True)]
        with store.writing("paraphrases", key) as folder:
            write_jsonl(folder / "paraphrases.jsonl", rows)
    rows = read_jsonl(store.folder("paraphrases", key) / "paraphrases.jsonl")
    if report is not None:
        summarize(rows, report)
    return Prepared(LLM.name, LLM.description, {row["input"]: row["paraphrase"] for row in rows})


def choose(task: Task, fallback: Paraphraser, text: str, answer: str) -> dict:
    """One stored row: the first valid candidate, else the fallback's paraphrase; with the reasons.  A
    fallback that cannot change the input gives a row whose paraphrase is the input: the contexts stage
    leaves that target out (`icl_bench.contexts.pool.NoParaphrase`), never shows it as its own paraphrase."""
    reasons = []
    for candidate in parse(answer):
        reason = validate(candidate, text)
        if reason is None:
            return {"input": text, "paraphrase": candidate, "source": LLM.name, "rejected": reasons}
        reasons.append(reason)
    made = fallback(Example("", text, ""), random.Random(text))
    return {"input": text, "paraphrase": made.input, "source": fallback.name, "rejected": reasons}


def summarize(rows: Sequence[dict], report: Report, examples: int = 3) -> None:
    for row in rows:
        if row["source"] == LLM.name:
            report.accepted += 1
            if len(report.examples) < examples:
                report.examples.append((row["input"], row["paraphrase"]))
        else:
            report.fell_back += 1
        report.unchanged += same_input(row["paraphrase"], row["input"])
        report.rejected.update(row["rejected"])


@hookimpl
def register_paraphrasers(register) -> None:
    register(LLM())
