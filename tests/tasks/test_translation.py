"""Translation tasks: the django catalogue reader, the offline splits, prompt B.1, and the hub loaders run
for real through `datasets` on local copies in the hub's layout (made-up sentences, no dataset text)."""

import json

import numpy as np
import pytest
from helpers import error_line, run_cli

from icl_bench import Example
from icl_bench.core import plugins
from icl_bench.core.errors import UsageError
from icl_bench.core.hub import DATASETS_ENV
from icl_bench.core.store import STORE_ENV, default_root
from icl_bench.tasks import catalogues
from icl_bench.tasks.translation import HubTranslation, Translation

PO = r"""# a header comment
msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\n"

#: a.py:1
msgid "Enter a valid value."
msgstr "Geben Sie einen gültigen Wert ein."

#, fuzzy
msgid "Fuzzy entry"
msgstr "Unsicher"

msgid "%(count)s item"
msgid_plural "%(count)s items"
msgstr[0] "%(count)s Element"
msgstr[1] "%(count)s Elemente"

msgid "Untranslated"
msgstr ""

#, python-format
msgid ""
"Ensure this value has at most %(limit_value)d characters "
"(it has %(show_value)d)."
msgstr "Höchstens %(limit_value)d Zeichen (es sind %(show_value)d)."

#~ msgid "Obsolete"
#~ msgstr "Veraltet"
"""


def test_po_reader_keeps_translated_singulars_with_placeholders():
    kept = [e for e in catalogues.entries(PO) if catalogues.usable(e)]
    assert [e["msgid"] for e in kept] == [
        "Enter a valid value.",
        "Ensure this value has at most %(limit_value)d characters (it has %(show_value)d).",
    ]
    assert kept[1]["msgstr"].startswith("Höchstens %(limit_value)d")


@pytest.mark.parametrize("language", ["de", "hi", "ta", "lt"])
def test_django_splits_are_disjoint_and_deterministic(language):
    task = plugins.tasks[f"mt-django-en-{language}"]
    splits = {split: task.load(split) for split in task.splits}
    sources = {split: {ex.input for ex in examples} for split, examples in splits.items()}
    assert all(len(s) == len(splits[split]) for split, s in sources.items())  # de-duplicated by source
    assert not (
        sources["train"] & sources["id"]
        or sources["train"] & sources["ood"]
        or sources["id"] & sources["ood"]
    )
    assert len(splits["train"]) > 4 * len(splits["id"]) / 1.01 - 4 and len(splits["ood"]) > 50
    assert {ex.meta["catalogue"] for ex in splits["ood"]} <= {"admin", "admindocs"}
    assert all(ex.meta["catalogue"] not in ("admin", "admindocs") for ex in splits["train"] + splits["id"])
    everything = [ex for examples in splits.values() for ex in examples]
    assert any("%(" in ex.input and "%(" in ex.output for ex in everything)  # placeholders kept
    assert task.load("id") == splits["id"]


def test_prompt_is_appendix_b1():
    task: Translation = plugins.tasks["mt-django-en-de"]
    one, two, target = (
        Example("a", "One.", "Eins."),
        Example("b", "Two.", "Zwei."),
        Example("t", "Three.", "Drei."),
    )
    assert task.prompt([], target) == (
        "Translate the source text from English to German.\nSource: Three.\nTarget:"
    )
    assert task.prompt([one, two], target) + task.render_output(target) == (
        "Consider the following 2 translations from English to German.\n"
        "Example 1:\nSource: One.\nTarget: Eins.\n"
        "Example 2:\nSource: Two.\nTarget: Zwei.\n"
        "Translate the source text from English to German.\nSource: Three.\nTarget: Drei."
    )


def test_unknown_language_and_split_name_the_known_ones():
    with pytest.raises(UsageError, match="unknown language 'fr'; known languages: de, hi, lt, ta"):
        HubTranslation("fr")
    with pytest.raises(UsageError, match="unknown split 'dev'; known splits: id, ood, train"):
        plugins.tasks["mt-django-en-ta"].load("dev")


# Hub layouts, as the hub serves them: (dataset, config) -> (split, rows).
def opus_rows(language: str, n: int) -> list[dict]:
    return [{"translation": {"en": f"english {i}", language: f"{language} {i}"}} for i in range(n)]


def flores_rows(n: int, word: str) -> list[dict]:
    return [{"id": i + 1, "iso_639_3": "xxx", "text": f"{word} {i}"} for i in range(n)]


def hub_copies(language: str) -> dict[tuple[str, str | None], tuple[str, list[dict]]]:
    flores = {
        ("openlanguagedata/flores_plus", "eng_Latn"): ("devtest", flores_rows(6, "english")),
        (
            "openlanguagedata/flores_plus",
            {"de": "deu_Latn", "hi": "hin_Deva", "ta": "tam_Taml", "lt": "lit_Latn"}[language],
        ): (
            "devtest",
            flores_rows(5, language),
        ),
    }
    samanantar = [{"idx": i, "src": f"english {i}", "tgt": f"{language} {i}"} for i in range(30)]
    pools = {
        "de": {("Helsinki-NLP/europarl", "de-en"): ("train", opus_rows("de", 30))},
        "lt": {("Helsinki-NLP/europarl", "en-lt"): ("train", opus_rows("lt", 30))},
        "hi": {("ai4bharat/samanantar", "hi"): ("train", samanantar)},
        "ta": {("ai4bharat/samanantar", "ta"): ("train", samanantar)},
    }
    ood = {
        "de": {("Helsinki-NLP/emea", "de-en"): ("train", opus_rows("de", 12))},
        "lt": {("Helsinki-NLP/emea", "en-lt"): ("train", opus_rows("lt", 12))},
        "hi": {("cfilt/iitb-english-hindi", None): ("test", opus_rows("hi", 12))},
        "ta": {("Helsinki-NLP/tanzil", "en-ta"): ("train", opus_rows("ta", 12))},
    }
    return {**pools[language], **flores, **ood[language]}


def write_hub_copies(root, copies) -> None:
    """Each dataset as a folder with a README whose `configs` map config names to JSON-lines files."""
    by_dataset: dict[str, list] = {}
    for (dataset, config), (split, rows) in copies.items():
        name = config or "default"
        folder = root / dataset / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{split}.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        )
        by_dataset.setdefault(dataset, []).append((name, split))
    for dataset, configs in by_dataset.items():
        lines = ["---", "configs:"]
        for name, split in configs:
            lines += [
                f"- config_name: {name}",
                "  data_files:",
                f"  - split: {split}",
                f"    path: {name}/{split}.jsonl",
            ]
        (root / dataset / "README.md").write_text("\n".join([*lines, "---", ""]))


@pytest.mark.parametrize("language", ["de", "hi", "ta", "lt"])
def test_hub_loaders_map_columns_on_local_copies(tmp_path, monkeypatch, language):
    write_hub_copies(tmp_path, hub_copies(language))
    monkeypatch.setenv(DATASETS_ENV, str(tmp_path))
    task = HubTranslation(language, sizes={"train": 20, "ood": 10})
    task.check()
    train, test, ood = (task.load(split) for split in ("train", "id", "ood"))
    assert len(train) == 20 and len(ood) == 10 and len(test) == 5  # Flores+ joined on id: 5 of 6
    for ex in train + test + ood:
        assert ex.input.startswith("english ") and ex.output == f"{language} {ex.input.split()[1]}"
    assert [ex.id for ex in train] == [
        ex.id for ex in HubTranslation(language, sizes={"train": 20}).load("train")
    ]
    assert len({ex.input for ex in train}) == 20  # a sample of distinct rows, not the first 20 in order
    assert [ex.input for ex in train] != [f"english {i}" for i in range(20)]


@pytest.mark.parametrize("task", ["mt-en-de", "mt-en-hi", "mt-en-ta", "mt-en-lt"])
def test_hub_tasks_without_the_hub_fail_with_one_line(offline_hub, task):
    with pytest.raises(UsageError) as raised:
        plugins.tasks[task].check()
    message = str(raised.value)
    assert "\n" not in message and message.startswith("cannot load ")
    assert "from the Hugging Face hub" in message and "huggingface-cli login" in message


def test_a_hub_task_fails_before_any_work(tmp_path):
    line = error_line(
        run_cli(
            "run",
            "--tasks",
            "mt-en-lt",
            "--models",
            "tiny",
            "--size",
            "smoke",
            "--out",
            "o",
            cwd=tmp_path,
            env={"HF_HUB_OFFLINE": "1"},
        )
    )
    assert "cannot load Helsinki-NLP/europarl (en-lt, train) from the Hugging Face hub" in line
    assert not (tmp_path / "default-store" / "models").exists()  # no model was built first


def test_the_test_cap_is_divided_over_the_test_splits():
    from icl_bench.contexts.build import ContextConfig, test_examples

    task = plugins.tasks["mt-django-en-lt"]
    capped = ContextConfig(max_test=60)
    assert [len(test_examples(task, split, capped)) for split in ("id", "ood")] == [30, 30]
    assert len(test_examples(task, "id", ContextConfig(max_test=1))) == 1
    assert len(test_examples(task, "ood", ContextConfig())) == len(task.load("ood"))
    assert len(test_examples(plugins.tasks["synthetic-alignment"], "test", ContextConfig(max_test=60))) == 60


def test_a_missing_catalogue_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(catalogues, "django_root", lambda: tmp_path)
    with pytest.raises(UsageError, match=r"no catalogue for language 'de' .*pip install --force-reinstall"):
        catalogues.pairs("de")


def test_every_django_task_runs_end_to_end_and_its_cells_are_corpus_chrf(tmp_path):
    """The four offline tasks through `icl-bench run` (tiny, smoke): each leaderboard reports chrF++, and
    every cell is the corpus chrF++ of its records' statistics, not the mean of their sentence scores."""
    tasks = [f"mt-django-en-{language}" for language in ("de", "hi", "ta", "lt")]
    done = run_cli(
        "run", "--tasks", ",".join(tasks), "--models", "tiny", "--regimes", "zero,contrastive",
        "--size", "smoke", "--store", str(tmp_path / "store"), "--out", str(tmp_path / "suite"),
        cwd=tmp_path, env={STORE_ENV: str(default_root())},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    board = json.loads((tmp_path / "suite" / "leaderboard.json").read_text())
    chrf = plugins.metrics["chrf"]
    assert sorted(board["tasks"]) == sorted(tasks)
    for name, task in board["tasks"].items():
        assert task["metric"] == "chrf"
        records = [
            json.loads(line)
            for path in (tmp_path / "suite" / "results" / name).rglob("zero.jsonl")
            for line in path.read_text().splitlines()
        ]
        split = records[0]["split"]
        mode = [r for r in records if (r["split"], r["mode"]) == (split, "random")]
        assert all(len(r["stats"]) == 24 for r in records)
        cell = next(
            c for c in task["rows"] if (c["split"], c["regime"], c["column"]) == (split, "zero", "random")
        )
        assert cell["mean"] == pytest.approx(
            chrf.corpus(np.sum([r["stats"] for r in mode], axis=0)), abs=1e-5
        )
