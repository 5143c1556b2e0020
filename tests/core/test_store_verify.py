"""A store that verifies, end to end on one smoke run (tiny, the `random` regime): each kind of damage to
its artifacts is reported in one line, moved aside and recomputed, and the suite comes out byte-identical;
evaluations are keyed by their test contexts' content; `icl-bench store verify` finds damage by hand."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import run_cli, tiny_plan

from icl_bench import cli
from icl_bench.core.files import fingerprint
from icl_bench.core.store import DAMAGED, MANIFEST, Store, write_manifest
from icl_bench.sweep.stages import run


def contents(folder: Path) -> dict[str, bytes]:
    """Every file below `folder` (but the store's damaged/) by relative path."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and p.relative_to(folder).parts[0] != DAMAGED
    }


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One smoke sweep and the bytes of its suite and store, undamaged."""
    root = tmp_path_factory.mktemp("verify")
    store = Store(root / "store")
    plan = tiny_plan(["random"], root / "suite")
    assert run(plan, store) == []
    return plan, store, contents(plan.out), contents(store.root)


def artifact(store: Store, where: str) -> Path:
    """The one artifact of a stage; `evaluate:base` / `evaluate:random` pick the base or trained model's."""
    stage, _, which = where.partition(":")
    found = [
        folder
        for folder in (store.root / stage).iterdir()
        if not which
        or (json.loads((folder / "inputs.json").read_text())["trained"] is None) == (which == "base")
    ]
    (folder,) = found
    return folder


def without_lines(text: str, *, mode: str, n: int) -> str:
    lines = text.splitlines(keepends=True)
    drop = [i for i, line in enumerate(lines) if f'"mode": "{mode}"' in line][:n]
    assert len(drop) == n
    return "".join(line for i, line in enumerate(lines) if i not in drop)


def cut_mid_line(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 7])


def damage(kind: str, where: str, name: str, spoil: Callable[[Path], object], slow: bool = False):
    """One kind of damage: to file `name` of artifact `where`.  `slow`: a second damage of a kind of
    artifact already damaged by a default test (each is detected in test_store.py without a run)."""
    return pytest.param(where, name, spoil, id=kind, marks=[pytest.mark.slow] if slow else [])


def drop_first_line(path: Path) -> None:
    path.write_text("".join(path.read_text().splitlines(keepends=True)[1:]))


DAMAGES = [
    damage("evaluation cut mid-line", "evaluate:random", "samples.jsonl", cut_mid_line),
    damage(
        "evaluation without two similar lines",
        "evaluate:random",
        "samples.jsonl",
        lambda p: p.write_text(without_lines(p.read_text(), mode="similar", n=2)),
        slow=True,
    ),
    damage(
        "evaluation score edited 0 to 1",
        "evaluate:base",
        "samples.jsonl",
        lambda p: p.write_text(p.read_text().replace('"score": 0.0', '"score": 1.0', 1)),
        slow=True,
    ),
    damage("evaluation emptied", "evaluate:random", "samples.jsonl", lambda p: p.write_bytes(b""), slow=True),
    damage("test context line removed", "test-contexts", "test/test/similar.jsonl", drop_first_line),
    damage("test contexts cut mid-line", "test-contexts", "test/test/random.jsonl", cut_mid_line, slow=True),
    damage("training set cut mid-line", "training-sets", "train/random.jsonl", cut_mid_line),
    damage("adapter truncated", "train", "adapter_model.safetensors", cut_mid_line, slow=True),
    damage("adapter_config.json deleted", "train", "adapter_config.json", Path.unlink),
    damage("model truncated", "models", "model.safetensors", cut_mid_line),
]


@pytest.mark.parametrize(("where", "name", "spoil"), DAMAGES)
def test_damage_is_reported_moved_aside_and_recomputed_to_the_same_bytes(smoke, capsys, where, name, spoil):
    plan, store, suite, _ = smoke
    undamaged = contents(store.root)
    folder = artifact(store, where)
    stage = folder.parent.name
    spoil(folder / name)
    aside = store.root / DAMAGED / stage
    before = set(aside.iterdir()) if aside.is_dir() else set()
    capsys.readouterr()

    assert run(plan, store) == []

    (moved,) = set(aside.iterdir()) - before
    assert moved.name.startswith(f"{folder.name}-") and (moved / "inputs.json").is_file()
    reports = [line for line in capsys.readouterr().err.splitlines() if line.startswith("store:")]
    assert len(reports) == 1, reports
    pattern = rf"store: {stage}/{folder.name} is damaged \((.+)\); moved aside to (.+) and recomputed"
    why, path = re.fullmatch(pattern, reports[0]).groups()
    assert name in why and path == str(moved)
    assert contents(plan.out) == suite  # the suite is byte-identical to the undamaged run's
    now = contents(store.root)
    changed = {p for p in set(now) | set(undamaged) if now.get(p) != undamaged.get(p)}
    if stage == "train":  # retrained to the same adapter; only the log's wall time differs
        assert changed == {f"train/{folder.name}/train_log.json", f"train/{folder.name}/{MANIFEST}"}
    else:  # every artifact, the recomputed one included, holds the same bytes (manifest too)
        assert changed == set()
    assert store.verify() == []


def test_evaluations_are_keyed_by_their_test_contexts_content(smoke, capsys):
    """Test contexts that change (whole, with their manifest) re-evaluate every model on the same
    examples; the original contexts find their original evaluations again."""
    plan, store, suite, _ = smoke
    contexts = artifact(store, "test-contexts")
    similar = contexts / "test" / "test" / "similar.jsonl"
    original, manifest = similar.read_bytes(), (contexts / MANIFEST).read_bytes()
    key = fingerprint([contexts])
    drop_first_line(similar)
    write_manifest(contexts)  # a whole artifact with other content, as another version would make
    assert fingerprint([contexts]) != key
    capsys.readouterr()
    other = replace(plan, out=plan.out.with_name("other-contexts"))
    assert run(other, store) == []
    assert "store:" not in capsys.readouterr().err
    results = other.out / "results" / "synthetic-alignment" / "tiny"
    for regime in ("base", "random"):  # both re-evaluated on the 23 examples, not one of them
        records = [json.loads(line) for line in (results / f"{regime}.jsonl").read_text().splitlines()]
        assert len(records) == 23 and sum(r["mode"] == "similar" for r in records) == 5
    assert len(list((store.root / "evaluate").iterdir())) == 4

    similar.write_bytes(original)
    (contexts / MANIFEST).write_bytes(manifest)
    assert run(plan, store) == []
    assert "evaluate tiny" not in capsys.readouterr().err  # the first evaluations, found by content
    assert contents(plan.out) == suite
    for folder in (store.root / "evaluate").iterdir():
        if json.loads((folder / "inputs.json").read_text())["contexts"] != key:
            shutil.rmtree(folder)  # keep the store as the other tests expect it


def test_store_verify_finds_a_hand_made_corruption(smoke, capsys):
    plan, store, suite, _ = smoke
    folder = artifact(store, "evaluate:base")
    samples = folder / "samples.jsonl"
    samples.write_text(samples.read_text().replace('"score": 0.0', '"score": 1.0', 1))

    found = run_cli("store", "verify", "--store", str(store.root), cwd=store.root.parent)
    assert found.returncode == 1, found.stderr
    checked = len(store.artifacts())
    assert found.stdout.splitlines() == [
        f"damaged evaluate/{folder.name}: samples.jsonl differs from its manifest (sha256)",
        f"{checked} artifacts checked in {store.root}: 1 damaged; "
        "`--repair` moves them aside to be recomputed",
    ]
    assert samples.is_file()  # without --repair nothing moves

    earlier = set((store.root / DAMAGED / "evaluate").glob("*"))  # moved aside by the tests above
    assert cli.main(["store", "verify", "--store", str(store.root), "--repair"]) == 0
    (moved,) = set((store.root / DAMAGED / "evaluate").glob(f"{folder.name}-*")) - earlier
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith(f"; moved aside to {moved}") and lines[1].endswith(
        "1 damaged; a rerun recomputes them"
    )
    assert not folder.exists()
    assert cli.main(["store", "verify", "--store", str(store.root)]) == 0
    assert capsys.readouterr().out == f"{checked - 1} artifacts checked in {store.root}: 0 damaged\n"

    assert run(plan, store) == [] and contents(plan.out) == suite  # the rerun recomputes it
    assert store.verify() == []


def test_store_verify_without_a_store_is_one_line(tmp_path, capsys):
    assert cli.main(["store", "verify", "--store", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err == (
        f"icl-bench: error: no store at {tmp_path / 'none'}; "
        "pass the folder `run --store` wrote with --store\n"
    )
