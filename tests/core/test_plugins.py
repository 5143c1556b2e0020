"""Plugin discovery through real `icl_bench` entry points, in fresh processes, and the registries."""

import json
import textwrap
from pathlib import Path

import pytest
from helpers import run_cli

from icl_bench import Single, hookimpl
from icl_bench.contexts.samplers import Random
from icl_bench.core import plugins
from icl_bench.core.errors import UsageError
from icl_bench.core.files import read_jsonl

THIRD_PARTY = textwrap.dedent(
    '''
    """A third-party icl-bench plugin: a task, a paraphraser and a regime with its own sampler."""

    from dataclasses import dataclass
    from typing import ClassVar

    import numpy as np

    import icl_bench
    from icl_bench import Context, Example, Paraphraser, Sampler, Single, Task

    TRAIN = [
        ("which colour is the sky", "blue"),
        ("which colour is grass", "green"),
        ("which colour is snow", "white"),
        ("which colour is coal", "black"),
        ("what sound does a cat make", "meow"),
        ("what sound does a dog make", "woof"),
        ("what sound does a cow make", "moo"),
        ("how many legs has a spider", "eight"),
    ]
    TEST = [
        ("which colour is a lemon", "yellow"),
        ("what sound does a duck make", "quack"),
        ("how many legs has an ant", "six"),
    ]


    class Quiz(Task):
        name = "thirdparty-quiz"
        description = "a made-up quiz shipped by a third-party package"
        paraphraser = "thirdparty-reverse"

        def load(self, split):
            rows = {"train": TRAIN, "test": TEST}[split]
            return [Example(f"quiz-{split}-{i}", x, y) for i, (x, y) in enumerate(rows)]

        def embed(self, texts):
            out = np.zeros((len(texts), 26), dtype=np.float32)
            for row, text in enumerate(texts):
                for char in text:
                    if "a" <= char <= "z":
                        out[row, ord(char) - 97] += 1
            return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


    class Reverse(Paraphraser):
        name = "thirdparty-reverse"
        description = "reverse the words"

        def __call__(self, target, rng):
            return Example("x", " ".join(reversed(target.input.split())), target.output)


    @dataclass(frozen=True)
    class FirstK(Sampler):
        """The first k pool examples that are not the target."""

        name: ClassVar[str] = "first_k"

        def __call__(self, target, pool, k, rng):
            skip = pool.excluded(target)
            chosen = [ex for i, ex in enumerate(pool.examples) if i not in skip][:k]
            return Context(tuple(chosen), self.name)


    @icl_bench.hookimpl
    def register_tasks(register):
        register(Quiz())


    @icl_bench.hookimpl
    def register_paraphrasers(register):
        register(Reverse())


    @icl_bench.hookimpl
    def register_regimes(register):
        register(Single("first-k", "the first k pool examples", sampler=FirstK()))
    '''
)


def install(site: Path, module: str, source: str, entry: str = "") -> None:
    """A module plus a `.dist-info` that declares it under the `icl_bench` entry-point group."""
    (site / f"{module}.py").write_text(source)
    info = site / f"{module}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[icl_bench]\n{entry or module} = {module}\n")


@pytest.fixture
def site(tmp_path):
    folder = tmp_path / "site"
    folder.mkdir()
    (tmp_path / "work").mkdir()
    return folder


def test_third_party_task_and_regime_via_entry_point(site, tmp_path):
    install(site, "thirdparty_plugin", THIRD_PARTY, entry="thirdparty")
    work = tmp_path / "work"
    listed = run_cli("list", "--json", cwd=work, pythonpath=site)
    assert listed.returncode == 0, listed.stderr
    assert listed.stderr == ""
    listing = json.loads(listed.stdout)
    assert {"name": "thirdparty-quiz", "description": "a made-up quiz shipped by a third-party package"} in (
        listing["tasks"]
    )
    assert {"name": "first-k", "description": "the first k pool examples"} in listing["regimes"]
    assert {"synthetic-alignment"} <= {t["name"] for t in listing["tasks"]}
    assert {"contrastive", "zero"} <= {r["name"] for r in listing["regimes"]}

    # without the extra path the plugin is not there: discovery really goes through the entry point
    plain = json.loads(run_cli("list", "tasks", "--json", cwd=work).stdout)
    assert "thirdparty-quiz" not in {t["name"] for t in plain["tasks"]}

    out = tmp_path / "out"
    args = ("--task", "thirdparty-quiz", "--regimes", "first-k", "--k", "2", "--out", str(out))
    made = run_cli("contexts", *args, cwd=work, pythonpath=site)
    assert made.returncode == 0, made.stderr
    assert len(made.stdout.strip()) == 64  # the fingerprint
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == [
        "config.json",
        "test/summary.json",  # failed paraphrases, counted (none here)
        "test/test/one-near.jsonl",
        "test/test/paraphrase.jsonl",
        "test/test/random.jsonl",
        "test/test/similar.jsonl",
        "train/first-k.jsonl",
        "train/first-k.summary.json",
    ]
    train = read_jsonl(out / "train" / "first-k.jsonl")
    expected = {f"quiz-train-{i}": [f"quiz-train-{j}" for j in range(8) if j != i][:2] for i in range(8)}
    assert {r["id"]: r["context_ids"] for r in train} == expected
    assert {r["sampler"] for r in train} == {"first_k"}
    assert train[0]["prompt"].startswith("Input: which colour is grass\nOutput: green\n")
    for mode in ("random", "similar", "one-near", "paraphrase"):
        records = read_jsonl(out / "test" / "test" / f"{mode}.jsonl")
        assert [r["id"] for r in records] == ["quiz-test-0", "quiz-test-1", "quiz-test-2"]
        assert all(len(r["context_ids"]) == 2 and r["max_sim"] is not None for r in records)
    para = read_jsonl(out / "test" / "test" / "paraphrase.jsonl")[0]
    assert para["synthetic"] == [
        {"id": "quiz-test-0~para", "input": "lemon a is colour which", "output": "yellow"}
    ]
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "thirdparty-quiz" and config["k"] == 2
    assert config["regimes"] == {
        "first-k": {"augment_pool": False, "min_mean_sim": None, "sampler": "FirstK()"}
    }


BROKEN = 'raise RuntimeError("this plugin is broken on purpose")\n'


def test_broken_plugin_is_skipped_and_the_rest_loads(site, tmp_path):
    install(site, "broken_plugin", BROKEN, entry="broken")
    work = tmp_path / "work"
    listed = run_cli("list", "--json", cwd=work, pythonpath=site)
    assert listed.returncode == 0
    assert "Traceback" not in listed.stderr
    assert "broken" in listed.stderr and "this plugin is broken on purpose" in listed.stderr
    listing = json.loads(listed.stdout)
    assert "synthetic-alignment" in [t["name"] for t in listing["tasks"]]
    assert "contrastive" in {r["name"] for r in listing["regimes"]}
    out = tmp_path / "out"
    args = ("--task", "synthetic-alignment", "--regimes", "zero", "--max-test", "5", "--out", str(out))
    made = run_cli("contexts", *args, cwd=work, pythonpath=site)
    assert made.returncode == 0, made.stderr
    assert len(read_jsonl(out / "test" / "test" / "paraphrase.jsonl")) == 5


def test_broken_plugin_is_reported_in_one_line(site, tmp_path):
    install(site, "broken_plugin", BROKEN, entry="broken")
    listed = run_cli("list", "--json", cwd=tmp_path / "work", pythonpath=site)
    lines = listed.stderr.strip().splitlines()
    assert len(lines) == 1, listed.stderr  # once per process, not once per registry collected
    assert "'broken'" in lines[0] and "broken_plugin" in lines[0]


def test_a_plugin_named_like_a_builtin_neither_replaces_it_nor_is_dropped_silently(site, tmp_path):
    """The harness's own plugins are entry points named by their module path: a third party's `models`
    adds to them; a second plugin under a taken name is reported and skipped."""
    install(site, "mymodels_plugin", "", entry="models")
    install(site, "other_models_plugin", "", entry="models")
    listed = run_cli("list", "models", "--json", cwd=tmp_path / "work", pythonpath=site)
    assert listed.returncode == 0
    assert {"smollm2-135m", "tiny"} <= {m["name"] for m in json.loads(listed.stdout)["models"]}
    assert "the name is taken by" in listed.stderr and "rename the entry point" in listed.stderr


def test_registry_lookup_errors_list_known_names():
    with pytest.raises(UsageError, match=r"unknown task 'nope'; known tasks: .*synthetic-alignment"):
        plugins.tasks["nope"]
    with pytest.raises(UsageError, match=r"known regimes: contrastive, .*zero"):
        plugins.regimes["nope"]
    assert "synthetic-alignment" in plugins.tasks and "nope" not in plugins.tasks
    assert list(plugins.regimes) == sorted(plugins.regimes)
    assert {"exact-match", "chrf", "bleu"} <= set(plugins.metrics)


class _Clash:
    @hookimpl
    def register_regimes(self, register):
        register(Single("random", "a second 'random'", sampler=Random()))


def test_duplicate_names_are_a_usage_error():
    assert "random" in plugins.regimes
    plugins.pm.register(_Clash(), name="tests-clash")
    plugins.refresh()
    try:
        with pytest.raises(UsageError, match="two plugins register 'random'"):
            plugins.regimes["random"]
    finally:
        plugins.pm.unregister(name="tests-clash")
        plugins.refresh()
    assert plugins.regimes["random"].description == "k random pool examples"
