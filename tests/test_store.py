"""The content-addressed artifact store and its JSON(L) helpers."""

import json

import pytest

from icl_bench.store import (
    STORE_ENV,
    Store,
    default_root,
    digest,
    fingerprint,
    read_jsonl,
    write_json,
    write_jsonl,
)

INPUTS = {"task": "t", "config": {"k": 4, "seed": 0}}


def test_writing_leaves_nothing_when_the_block_raises(tmp_path):
    store = Store(tmp_path)
    with pytest.raises(RuntimeError, match="interrupted"), store.writing("contexts", INPUTS) as folder:
        (folder / "half.jsonl").write_text("{}\n")
        raise RuntimeError("interrupted")
    assert not store.has("contexts", INPUTS)
    assert list((tmp_path / "contexts").iterdir()) == []  # no temporary folder left behind either


def test_finished_artifact_is_reused(tmp_path):
    store = Store(tmp_path)
    assert not store.has("contexts", INPUTS)
    with store.writing("contexts", INPUTS) as folder:
        write_jsonl(folder / "a.jsonl", [{"x": 1}])
        assert not store.has("contexts", INPUTS)  # not visible until the block finishes
    final = store.folder("contexts", INPUTS)
    assert store.has("contexts", INPUTS) and final.parent == tmp_path / "contexts"
    assert json.loads((final / "inputs.json").read_text()) == {"stage": "contexts", **INPUTS}
    assert read_jsonl(final / "a.jsonl") == [{"x": 1}]
    assert (
        Store(tmp_path).folder("contexts", dict(reversed(INPUTS.items()))) == final
    )  # key order is irrelevant
    assert store.folder("contexts", {**INPUTS, "task": "u"}) != final
    assert store.folder("train", INPUTS) != final


def test_concurrent_finish_keeps_the_first(tmp_path):
    store = Store(tmp_path)
    with store.writing("s", INPUTS) as late:
        (late / "who").write_text("late")
        with store.writing("s", INPUTS) as early:
            (early / "who").write_text("early")
    final = store.folder("s", INPUTS)
    assert (final / "who").read_text() == "early"
    assert [p.name for p in (tmp_path / "s").iterdir()] == [final.name]


def test_jsonl_roundtrip(tmp_path):
    records = [
        {"id": "a", "prompt": "naïve → ✓\nline two", "near": None, "ids": ["x", "y"], "max_sim": 0.25},
        {"id": "b", "nested": {"k": [1, 2.5, True]}, "empty": []},
    ]
    path = tmp_path / "deep" / "r.jsonl"
    write_jsonl(path, records)
    assert read_jsonl(path) == records
    assert path.read_text(encoding="utf-8").count("\n") == 2 and "naïve" in path.read_text(encoding="utf-8")
    write_jsonl(path, [])
    assert read_jsonl(path) == []
    assert [p.name for p in path.parent.iterdir()] == ["r.jsonl"]  # no temporary files left


def test_fingerprint_covers_jsonl_names_and_bytes(tmp_path):
    write_jsonl(tmp_path / "a" / "test" / "x.jsonl", [{"z": 1}])
    write_jsonl(tmp_path / "b" / "train" / "r.jsonl", [{"y": 2}])
    first = fingerprint([tmp_path / "a", tmp_path / "b"])
    assert first == fingerprint([tmp_path / "b", tmp_path / "a"]) and len(first) == 64
    write_json(tmp_path / "a" / "inputs.json", {"ignored": True})  # metadata is not content
    assert fingerprint([tmp_path / "a", tmp_path / "b"]) == first
    assert fingerprint([tmp_path / "a"]) != first
    (tmp_path / "a" / "test" / "x.jsonl").rename(
        tmp_path / "a" / "test" / "y.jsonl"
    )  # same bytes, other name
    assert fingerprint([tmp_path / "a", tmp_path / "b"]) != first


def test_digest_is_canonical():
    assert digest({"a": 1, "b": [1, 2]}) == digest({"b": [1, 2], "a": 1})
    assert digest({"a": 1}) != digest({"a": 1.5})


def test_default_root_honours_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(STORE_ENV, str(tmp_path / "s"))
    assert default_root() == tmp_path / "s" and Store().root == tmp_path / "s"
    monkeypatch.delenv(STORE_ENV)
    assert default_root().name == "icl-bench"
