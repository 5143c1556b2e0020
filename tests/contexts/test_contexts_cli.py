"""The contexts stage end to end, its determinism across processes, and the CLI's handling of bad input."""

import json
import random
import zlib

import pytest
from helpers import WordShuffle, WordsTask, error_line, run_cli

from icl_bench import Context, Example, Sampler, Single, cli
from icl_bench.analyses.probes import probe_items
from icl_bench.contexts.build import ContextConfig, instance_rng, load_pool, write_contexts
from icl_bench.contexts.samplers import OneNear, Paraphrase
from icl_bench.core import plugins
from icl_bench.core.errors import UsageError
from icl_bench.core.files import fingerprint, read_jsonl

MODE_FILES = ["one-near.jsonl", "paraphrase.jsonl", "random.jsonl", "similar.jsonl"]
SYNTHETIC = ("contexts", "--task", "synthetic-alignment")


@pytest.fixture
def work(tmp_path):
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


def test_write_contexts_layout(registered_words, tmp_path):
    regimes = [plugins.regimes["contrastive"], plugins.regimes["zero"]]
    config = ContextConfig(k=3, seed=1, epochs=2, max_pool=50, max_test=7)
    printed = write_contexts(registered_words, regimes, config, tmp_path)
    assert printed == fingerprint([tmp_path])
    assert sorted(p.name for p in (tmp_path / "test" / "test").iterdir()) == MODE_FILES
    for name in MODE_FILES:
        records = read_jsonl(tmp_path / "test" / "test" / name)
        assert len(records) == 7 and all(len(r["context_ids"]) == 3 for r in records)
        assert {i for r in records for i in r["context_ids"] if "~para" not in i} <= {
            ex.id for ex in registered_words.load("train")[:50]
        }
    train = read_jsonl(tmp_path / "train" / "contrastive.jsonl")
    assert len(train) == 100 and {r["epoch"] for r in train} == {0, 1}
    assert len(read_jsonl(tmp_path / "train" / "zero.jsonl")) == 100
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["task"] == "words" and (saved["k"], saved["seed"], saved["max_pool"]) == (3, 1, 50)
    assert saved["regimes"]["contrastive"]["p_random"] == 0.2
    assert saved["regimes"]["zero"]["sampler"] == "Empty()"


def test_write_contexts_is_deterministic_in_process(registered_words, tmp_path):
    regimes = [plugins.regimes["contrastive"], plugins.regimes["similar-augmented"]]
    a = write_contexts(registered_words, regimes, ContextConfig(max_pool=80, max_test=10), tmp_path / "a")
    b = write_contexts(registered_words, regimes, ContextConfig(max_pool=80, max_test=10), tmp_path / "b")
    c = write_contexts(
        registered_words, regimes, ContextConfig(max_pool=80, max_test=10, seed=1), tmp_path / "c"
    )
    assert a == b != c


def test_contexts_do_not_depend_on_other_targets(registered_words, tmp_path):
    """Per-instance RNGs: capping the test set leaves the kept targets' contexts unchanged."""
    write_contexts(registered_words, [], ContextConfig(max_test=20), tmp_path / "all")
    write_contexts(registered_words, [], ContextConfig(max_test=5), tmp_path / "few")
    for name in MODE_FILES:
        assert (
            read_jsonl(tmp_path / "few" / "test" / "test" / name)
            == read_jsonl(tmp_path / "all" / "test" / "test" / name)[:5]
        )


class PlainFirst(Sampler):
    """A third-party sampler written as a plain class (the Sampler ABC does not ask for a dataclass)."""

    name = "plain_first"

    def __call__(self, target, pool, k, rng: random.Random) -> Context:
        skip = pool.excluded(target)
        return Context(tuple(ex for i, ex in enumerate(pool.examples) if i not in skip)[:k], self.name)


def test_regime_with_a_plain_class_sampler(registered_words, tmp_path):
    regime = Single("plain", "a plain-class sampler", sampler=PlainFirst())
    assert "PlainFirst" in str(regime.params()["sampler"])
    write_contexts(registered_words, [regime], ContextConfig(max_pool=20, max_test=3), tmp_path)
    assert len(read_jsonl(tmp_path / "train" / "plain.jsonl")) == 20


def test_task_without_paraphraser(words_task, tmp_path):
    """No paraphraser: the paraphrase mode is left out, and regimes that need paraphrases are refused."""
    task = WordsTask("words-plain", words_task.load("train"), words_task.load("test"), paraphraser=None)
    config = ContextConfig(max_pool=40, max_test=5)
    write_contexts(task, [plugins.regimes["contrastive-no-paraphrase"]], config, tmp_path / "ok")
    assert sorted(p.name for p in (tmp_path / "ok" / "test" / "test").iterdir()) == [
        "one-near.jsonl",
        "random.jsonl",
        "similar.jsonl",
    ]
    for name in ("contrastive", "contrastive-no-similar", "similar-augmented"):
        with pytest.raises(UsageError, match=f"regime {name!r} uses paraphrases"):
            write_contexts(task, [plugins.regimes[name]], config, tmp_path / name)


def test_k_must_be_below_the_pool_size(registered_words):
    with pytest.raises(UsageError, match="k=20 needs more than 20 pool examples"):
        load_pool(registered_words, ContextConfig(k=20, max_pool=20))
    assert len(load_pool(registered_words, ContextConfig(k=19, max_pool=20))) == 20


# --- determinism across processes -------------------------------------------------------------------


def test_fingerprint_is_stable_across_processes_and_hash_seeds(work, tmp_path):
    runs = {}
    for label, seed, hashseed in (("a", "0", "1"), ("b", "0", "12345"), ("c", "1", "1")):
        args = (*SYNTHETIC, "--seed", seed, "--out", str(tmp_path / label))
        result = run_cli(*args, cwd=work, env={"PYTHONHASHSEED": hashseed})
        assert result.returncode == 0, result.stderr
        runs[label] = result.stdout.strip()
        assert runs[label] == fingerprint([tmp_path / label])
    assert len(runs["a"]) == 64
    assert runs["a"] == runs["b"]
    assert runs["a"] != runs["c"]
    assert (tmp_path / "a" / "train" / "contrastive.jsonl").read_bytes() == (
        tmp_path / "b" / "train" / "contrastive.jsonl"
    ).read_bytes()

    store = tmp_path / "store"
    first = run_cli(*SYNTHETIC, "--store", str(store), cwd=work, env={"PYTHONHASHSEED": "7"})
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == runs["a"]  # the store path prints the same fingerprint as --out
    (folder,) = (store / "test-contexts").iterdir()
    assert str(folder) in "".join(first.stderr.split())  # rich may wrap the path
    assert (folder / "inputs.json").is_file()
    artifacts = sorted(store.glob("*/*"))
    assert len(artifacts) == 1 + len(plugins.regimes.values())  # test contexts + one training set per regime
    stamps = {p: p.stat().st_mtime_ns for p in store.rglob("*")}
    second = run_cli(*SYNTHETIC, "--store", str(store), cwd=work)
    assert second.returncode == 0 and second.stdout.strip() == runs["a"]
    assert sorted(store.glob("*/*")) == artifacts  # reused, not rebuilt
    assert {p: p.stat().st_mtime_ns for p in store.rglob("*")} == stamps

    only_zero = run_cli(
        "contexts", "--task", "synthetic-alignment", "--regimes", "zero", "--store", str(store), cwd=work
    )
    assert only_zero.returncode == 0
    assert sorted(store.glob("*/*")) == artifacts  # another regime selection reuses the same artifacts


# --- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            ("contexts", "--task", "nope"),
            "unknown task 'nope'; known tasks: agnews, cb, mr, mr-offline, mt-django-en-de, ",
        ),
        (
            (*SYNTHETIC, "--regimes", "contrastive,nope"),
            "known regimes: contrastive, contrastive-no-paraphrase",
        ),
        ((*SYNTHETIC, "--k", "500"), "k=500 needs more than 200 pool examples"),
        ((*SYNTHETIC, "--max-pool", "4"), "k=4 needs more than 4 pool examples"),
        ((*SYNTHETIC, "--k", "x"), "argument --k: invalid positive value: 'x'"),
        ((*SYNTHETIC, "--k", "0"), "0 is not a positive integer"),
        ((*SYNTHETIC, "--seed", "1.5"), "argument --seed"),
        (("contexts",), "--task"),
        (("frobnicate",), "invalid choice: 'frobnicate'"),
        (("list", "widgets"), "invalid choice: 'widgets'"),
        ((), "required: command"),
        ((*SYNTHETIC, "--set", "contrastive.p_random"), "is malformed"),
        ((*SYNTHETIC, "--set", "p_random=0.3"), "is malformed"),
        ((*SYNTHETIC, "--set", "contrastive.p_random="), "is malformed"),
        ((*SYNTHETIC, "--regimes", "zero", "--set", "contrastive.p_random=0.3"), "not selected by --regimes"),
        ((*SYNTHETIC, "--set", "contrastive.bogus=1"), "has no field 'bogus'; fields: augment_pool"),
        ((*SYNTHETIC, "--set", "contrastive.p_random=abc"), "is not a valid float"),
        ((*SYNTHETIC, "--set", "contrastive.p_random=1.5"), "p_random=1.5 is not a probability"),
        ((*SYNTHETIC, "--set", "contrastive.p_random=0.9"), "p_random + p_similar exceeds 1"),
        ((*SYNTHETIC, "--set", "contrastive.top_m=0"), "top_m=0 must be at least 1"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, needle, work):
    assert needle in error_line(run_cli(*args, cwd=work))
    store = work / "default-store"
    assert not store.exists() or not [p for p in store.rglob("*") if p.is_file()]  # nothing half-built


@pytest.mark.parametrize(
    "setting",
    [
        "contrastive.p_random=[0.1]",  # valid JSON, not a number
        'contrastive.p_random="0.1"',  # a JSON string
        "contrastive.top_m=2.5",  # an int field given a float
        "random.sampler=1",  # a field that is not a parameter at all
    ],
)
def test_ill_typed_set_is_one_line_exit_2(setting, work):
    line = error_line(
        run_cli(
            *SYNTHETIC,
            "--regimes",
            "contrastive,random",
            "--set",
            setting,
            "--out",
            str(work / "o"),
            cwd=work,
        )
    )
    assert setting.split("=")[0] in line


# --- list ---------------------------------------------------------------------------------------------


def test_list_json_structure(work):
    result = run_cli("list", "--json", cwd=work)
    assert result.returncode == 0 and result.stderr == ""
    listing = json.loads(result.stdout)
    assert list(listing) == ["tasks", "regimes", "modes", "models", "executors"]
    for items in listing.values():
        assert isinstance(items, list)
        for item in items:
            assert set(item) == {"name", "description"}
            assert (
                isinstance(item["name"], str) and isinstance(item["description"], str) and item["description"]
            )
    assert "synthetic-alignment" in [t["name"] for t in listing["tasks"]]
    assert [m["name"] for m in listing["modes"]] == ["random", "similar", "one-near", "paraphrase"]
    regimes = [r["name"] for r in listing["regimes"]]
    assert regimes == sorted(regimes) and {"contrastive", "similar-augmented", "random+similar"} <= set(
        regimes
    )


@pytest.mark.parametrize("kind", cli.KINDS)
def test_list_one_kind(kind, capsys):
    assert cli.main(["list", kind, "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert list(listing) == [kind]
    assert listing[kind] == cli.names(kind)


def test_list_table_goes_to_stdout(capsys):
    assert cli.main(["list", "modes"]) == 0
    out = capsys.readouterr().out
    assert "one-near" in out and "paraphrase" in out


# --- targets without a paraphrase ---------------------------------------------------------------------


def fails(text: str) -> bool:
    """About a quarter of the inputs, decided by the text alone (the llm stage's fallback sees no id)."""
    return zlib.crc32(text.encode()) % 4 == 0


@pytest.fixture
def failing_words(registered_words, monkeypatch):
    """The words task whose paraphraser gives `fails` inputs back unchanged (nothing it can change)."""
    shuffle = WordShuffle.__call__

    def paraphrase(self, target, rng):
        if fails(target.input):
            return Example("p", target.input, target.output)
        return shuffle(self, target, rng)

    monkeypatch.setattr(WordShuffle, "__call__", paraphrase)
    return registered_words


def leaks(task, records: list[dict]) -> list[str]:
    """Records whose context shows their own target's input (any case or spacing) with its gold output."""
    by_id = {ex.id: ex for split in task.splits for ex in task.load(split)}
    found = []
    for record in records:
        target = by_id[record["id"]]
        own = f"{task.render_input(target)}{task.render_output(target)}\n"
        if " ".join(own.lower().split()) in " ".join(record["prompt"].lower().split()):
            found.append(record["id"])
    return found


def test_targets_without_a_paraphrase_are_left_out_or_fall_back(failing_words, tmp_path, capsys):
    task, config = failing_words, ContextConfig(k=4, epochs=2, max_pool=80, max_test=40)
    pool_targets = task.load("train")[:80]
    failed_test = sorted(ex.id for ex in task.load("test")[:40] if fails(ex.input))
    failed_pool = [ex for ex in pool_targets if fails(ex.input)]
    assert len(failed_test) >= 5 and len(failed_pool) >= 10
    para_only = Single("paraphrase-only", "paraphrase(k) for every instance", sampler=Paraphrase())
    regimes = [plugins.regimes[name] for name in ("contrastive", "similar-augmented", "zero")] + [para_only]
    write_contexts(task, regimes, config, tmp_path)

    # test: no paraphrase record for the failed targets, every other mode keeps them all
    modes = {name: read_jsonl(tmp_path / "test" / "test" / name) for name in MODE_FILES}
    assert sorted(r["id"] for r in modes["paraphrase.jsonl"]) == sorted(
        ex.id for ex in task.load("test")[:40] if not fails(ex.input)
    )
    assert all(len(modes[name]) == 40 for name in MODE_FILES if name != "paraphrase.jsonl")
    probed = probe_items(task, load_pool(task, config), config, 40)  # the probes' C is that mode's context
    assert sorted(item.target.id for item in probed) == sorted(r["id"] for r in modes["paraphrase.jsonl"])
    summary = json.loads((tmp_path / "test" / "summary.json").read_text())["paraphrase_mode"]
    assert summary == {"test": {"targets": 40, "left_out": len(failed_test), "left_out_ids": failed_test}}

    # contrastive: an instance that drew the paraphrase component keeps its one_near context instead
    contrastive = read_jsonl(tmp_path / "train" / "contrastive.jsonl")
    assert len(contrastive) == 160
    fell_back = []
    for target in failed_pool:
        for epoch in range(2):
            rng = instance_rng(config, task, "regime:contrastive", epoch, target)
            if rng.random() >= 0.2 + 0.2 + 0.6 * 0.7:  # SPEC 2: the paraphrase share of the draws
                near = OneNear(top_m=16)(target, load_pool(task, config), 4, rng)
                fell_back.append((target.id, epoch, [ex.id for ex in near.examples], near.near))
    records = [r for r in contrastive if r.get("instead_of") == "paraphrase"]
    assert len(fell_back) >= 2
    assert sorted((r["id"], r["epoch"], r["context_ids"], r["near"]) for r in records) == sorted(fell_back)
    assert {r["sampler"] for r in records} == {"one_near"}
    train = {path.stem: json.loads(path.read_text()) for path in (tmp_path / "train").glob("*.summary.json")}
    assert train["contrastive.summary"]["fell_back"] == len(fell_back)
    assert train["contrastive.summary"]["fell_back_to"] == ["one_near"]
    assert train["contrastive.summary"]["left_out"] == train["contrastive.summary"]["not_augmented"] == 0
    assert train["contrastive.summary"]["records"] == 160

    # a regime with no fallback leaves the instances out; the augmented pool gets no paraphrase for them
    assert train["paraphrase-only.summary"]["left_out"] == 2 * len(failed_pool)
    assert len(read_jsonl(tmp_path / "train" / "paraphrase-only.jsonl")) == 160 - 2 * len(failed_pool)
    assert train["similar-augmented.summary"]["not_augmented"] == len(failed_pool)
    augmented = read_jsonl(tmp_path / "train" / "similar-augmented.jsonl")
    assert not {f"{ex.id}~para" for ex in failed_pool} & {i for r in augmented for i in r["context_ids"]}
    assert train["zero.summary"]["fell_back"] == train["zero.summary"]["left_out"] == 0

    # nowhere does a context hold its own target with the gold output (the check does see one)
    everything = [r for path in tmp_path.rglob("*.jsonl") for r in read_jsonl(path)]
    assert len(everything) > 600 and leaks(task, everything) == []
    shown = failed_pool[0]
    assert leaks(task, [{"id": shown.id, "prompt": task.prompt([shown], shown).upper()}]) == [shown.id]

    err = " ".join(capsys.readouterr().err.split())
    assert f"words/test: {len(failed_test)} of 40 targets left out of the paraphrase mode" in err
    assert f"words: contrastive: {len(fell_back)} of 160 training instances fell back" in err
    assert f"words: paraphrase-only: {2 * len(failed_pool)} of 160 training instances left out" in err


def test_contexts_without_failures_keep_every_target(registered_words, tmp_path, capsys):
    """The words task's shuffle never fails: every target keeps its paraphrase record, the counts are
    zero and stderr says nothing about it."""
    regimes = [plugins.regimes["contrastive"]]
    write_contexts(registered_words, regimes, ContextConfig(max_pool=80, max_test=40, epochs=2), tmp_path)
    assert len(read_jsonl(tmp_path / "test" / "test" / "paraphrase.jsonl")) == 40
    summary = json.loads((tmp_path / "test" / "summary.json").read_text())["paraphrase_mode"]
    assert summary["test"]["left_out"] == 0
    train = json.loads((tmp_path / "train" / "contrastive.summary.json").read_text())
    assert (train["fell_back"], train["left_out"], train["records"]) == (0, 0, 160)
    everything = [r for path in tmp_path.rglob("*.jsonl") for r in read_jsonl(path)]
    assert leaks(registered_words, everything) == []
    assert "left out" not in capsys.readouterr().err


def test_contexts_passes_its_paraphraser_on(tmp_path, capsys):
    """`contexts --paraphraser` is used, not silently dropped: an unknown one is named with the known."""
    from icl_bench import cli

    code = cli.main(
        ["contexts", "--task", "synthetic-alignment", "--paraphraser", "bogus", "--store", str(tmp_path)]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "bogus" in err[0] and "symbol-shuffle" in err[0]
