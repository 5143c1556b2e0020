"""The content-addressed artifact store, its manifests and checks, and its JSON(L) helpers."""

import json
import os
from pathlib import Path

import pytest

from icl_bench.core import store as store_module
from icl_bench.core.errors import UsageError
from icl_bench.core.files import fingerprint, read_jsonl, write_json, write_jsonl
from icl_bench.core.store import (
    MANIFEST,
    STORE_ENV,
    DamagedArtifact,
    Store,
    damage,
    default_root,
    digest,
    reading,
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
    assert sorted(p.name for p in final.iterdir()) == ["a.jsonl", "inputs.json", MANIFEST]
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


# --- manifests and checks -------------------------------------------------------------------------


def made(store: Store, stage: str = "evaluate", inputs=INPUTS) -> Path:
    """A finished artifact with a small JSONL, a file in a subfolder and an empty file."""
    with store.writing(stage, inputs) as folder:
        write_jsonl(folder / "samples.jsonl", [{"id": i, "score": 0.0} for i in range(6)])
        (folder / "snapshots" / "step-2").mkdir(parents=True)
        (folder / "snapshots" / "step-2" / "weights.bin").write_bytes(bytes(range(256)) * 8)
        (folder / "empty").write_bytes(b"")
    return store.folder(stage, inputs)


def test_manifest_lists_size_and_sha256_of_every_file(tmp_path):
    import hashlib

    folder = made(Store(tmp_path))
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["format"] == "icl-bench-manifest/1"
    files = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == set(files) - {MANIFEST}
    assert "snapshots/step-2/weights.bin" in manifest["files"] and "inputs.json" in manifest["files"]
    for name, entry in manifest["files"].items():
        data = files[name].read_bytes()
        assert entry == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert damage(folder) is None


def cut_line(path):
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:2] + lines[3:]))


def cut_mid_line(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def edit_score(path):
    path.write_text(path.read_text().replace('"score": 0.0', '"score": 1.0', 1))


def empty(path):
    path.write_bytes(b"")


@pytest.mark.parametrize(
    ("spoil", "name", "why"),
    [
        (cut_line, "samples.jsonl", "samples.jsonl is 120 bytes, its manifest says 144"),
        (cut_mid_line, "samples.jsonl", "samples.jsonl is 72 bytes, its manifest says 144"),
        (edit_score, "samples.jsonl", "samples.jsonl differs from its manifest (sha256)"),
        (empty, "samples.jsonl", "samples.jsonl is 0 bytes, its manifest says 144"),
        (os.remove, "snapshots/step-2/weights.bin", "snapshots/step-2/weights.bin missing"),
        (lambda p: p.write_text("x"), "stray.txt", "extra file stray.txt"),
        (os.remove, MANIFEST, "no manifest.json: made before manifests, or it was deleted"),
        (lambda p: p.write_text("{"), MANIFEST, "manifest.json is unreadable"),
    ],
)
def test_a_damaged_artifact_is_reported_moved_aside_and_recomputed(tmp_path, capsys, spoil, name, why):
    store = Store(tmp_path)
    folder = made(store)
    spoil(folder / name)
    assert damage(folder) == why
    assert not store.has("evaluate", INPUTS)  # so the stage recomputes it
    (line,) = capsys.readouterr().err.splitlines()
    (moved,) = (tmp_path / "damaged" / "evaluate").iterdir()
    assert moved.name.startswith(f"{folder.name}-") and (moved / "inputs.json").is_file()
    assert line == f"store: evaluate/{folder.name} is damaged ({why}); moved aside to {moved} and recomputed"
    assert not folder.exists()
    assert made(store) == folder and store.has("evaluate", INPUTS)  # recomputed, whole again
    assert capsys.readouterr().err == ""


def test_several_problems_are_one_line(tmp_path):
    folder = made(Store(tmp_path))
    for name in ("a", "b", "c", "d"):
        (folder / name).write_text(name)
    assert damage(folder) == "extra file a; extra file b; extra file c; 1 more"


def test_large_files_are_hashed_once_a_process_then_checked_by_size(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "HASH_ON_EVERY_READ", 1000)  # weights.bin (2048 bytes) is large
    monkeypatch.setattr(store_module, "_hashed", {})
    folder = made(Store(tmp_path))
    weights = folder / "snapshots" / "step-2" / "weights.bin"
    stat = weights.stat()
    weights.write_bytes(b"\xff" + weights.read_bytes()[1:])  # same size, another byte, same mtime
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert damage(folder) == "snapshots/step-2/weights.bin differs from its manifest (sha256)"  # first use

    folder = made(Store(tmp_path / "b"))
    weights = folder / "snapshots" / "step-2" / "weights.bin"
    stat = weights.stat()
    assert damage(folder) is None  # first use: hashed
    weights.write_bytes(b"\xff" + weights.read_bytes()[1:])
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert damage(folder) is None  # large, same size and mtime: not hashed again in this process
    assert damage(folder, full=True) == "snapshots/step-2/weights.bin differs from its manifest (sha256)"
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert damage(folder) == "snapshots/step-2/weights.bin differs from its manifest (sha256)"  # touched
    weights.write_bytes(b"\xff")
    assert damage(folder) == "snapshots/step-2/weights.bin is 1 bytes, its manifest says 2048"
    edit_score(folder / "samples.jsonl")  # small: hashed every time, even at the same size
    assert "samples.jsonl differs from its manifest (sha256)" in damage(folder)


def test_reading_checks_the_artifact_holding_a_path(tmp_path):
    store = Store(tmp_path / "store")
    folder = made(store)
    snapshot = folder / "snapshots" / "step-2"
    assert reading(snapshot) == snapshot and reading(str(folder)) == folder
    outside = tmp_path / "out" / "abcdef0123456789abcdef01"  # a key-like name, but no artifact
    outside.mkdir(parents=True)
    assert reading(outside) == outside
    (snapshot / "weights.bin").unlink()
    with pytest.raises(DamagedArtifact) as raised:
        reading(snapshot)
    (moved,) = (store.root / "damaged" / "evaluate").iterdir()
    assert str(raised.value) == (
        f"store: evaluate/{folder.name} is damaged (snapshots/step-2/weights.bin missing); "
        f"moved aside to {moved}; rerun to recompute it"
    )
    assert not folder.exists() and not store.has("evaluate", INPUTS)


def test_working_folders_and_temporary_ones_are_not_artifacts(tmp_path):
    store = Store(tmp_path)
    good, bad = made(store), made(store, "train", {"x": 1})
    (bad / "samples.jsonl").write_text("")
    (store.folder("checkpoints", {"x": 1}) / "checkpoint-2").mkdir(parents=True)  # resumable training
    (tmp_path / "train" / ".0123456789abcdef01234567.tmp").mkdir()  # a write in progress
    (tmp_path / "comet" / "venv").mkdir(parents=True)  # not keyed: an environment beside the artifacts
    assert store.artifacts() == [good, bad]
    (damaged,) = store.verify()
    assert damaged.artifact == f"train/{bad.name}" and damaged.moved is None and bad.is_dir()
    (damaged,) = store.verify(repair=True)
    assert damaged.moved == next((tmp_path / "damaged" / "train").iterdir()) and not bad.exists()
    assert store.artifacts() == [good] and store.verify() == []
    assert Store(tmp_path / "none").artifacts() == []


def test_a_folder_another_process_moved_aside_is_absent(tmp_path, capsys):
    store = Store(tmp_path)
    folder = made(store)
    (folder / "samples.jsonl").write_text("")
    why = damage(folder)
    first = store_module.move_aside(folder, why)
    assert store_module.move_aside(folder, why).parent == first.parent  # no error: already gone
    assert not store.has("evaluate", INPUTS) and capsys.readouterr().err == ""


def test_an_unreadable_manifest_size_is_damage_not_a_crash(tmp_path, capsys):
    store = Store(tmp_path)
    folder = made(store)
    text = (folder / MANIFEST).read_text()
    (folder / MANIFEST).write_text(text.replace('"size": 144', '"size": 1e400', 1))
    assert "1e400" in (folder / MANIFEST).read_text()
    assert damage(folder) == "manifest.json is unreadable"
    assert not store.has("evaluate", INPUTS)
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"store: evaluate/{folder.name} is damaged (manifest.json is unreadable)")


def test_a_file_where_an_artifact_folder_should_be(tmp_path, capsys):
    store = Store(tmp_path)
    final = store.folder("evaluate", INPUTS)
    final.parent.mkdir(parents=True)
    final.write_text("not a folder")
    (damaged,) = store.verify()
    assert damaged == store_module.Damage(
        f"evaluate/{final.name}", "a file where the artifact folder should be", None
    )
    # writing over it without asking `has` first: reported, moved aside, replaced
    assert made(store) == final and final.is_dir() and store.has("evaluate", INPUTS)
    (line,) = capsys.readouterr().err.splitlines()
    (moved,) = (tmp_path / "damaged" / "evaluate").iterdir()
    assert line == (
        f"store: evaluate/{final.name} is damaged (a file where the artifact folder should be); "
        f"moved aside to {moved}"
    )
    assert moved.read_text() == "not a folder"
    # `has` finds it first: reported, moved aside, recomputed
    store = Store(tmp_path / "b")
    final = store.folder("evaluate", INPUTS)
    final.parent.mkdir(parents=True)
    final.write_text("x")
    assert not store.has("evaluate", INPUTS) and not os.path.lexists(final)
    assert capsys.readouterr().err.endswith("and recomputed\n")
    # a file where the stage folder should be: one line naming it and the fix
    store = Store(tmp_path / "c")
    store.root.mkdir()
    (store.root / "evaluate").write_text("x")
    with pytest.raises(UsageError) as raised, store.writing("evaluate", INPUTS):
        pass
    assert str(raised.value) == (
        f"store: cannot write evaluate/{final.name} (File exists); "
        f"{store.root / 'evaluate'} is a file where the store needs a folder: move or delete it"
    )


# --- sealed files: the embeddings cache -----------------------------------------------------------


@pytest.fixture
def embeddings(monkeypatch):
    """similarity's caches emptied, and a stand-in encoder that counts the texts it embeds."""
    import numpy as np

    from icl_bench.core import embeddings as similarity

    monkeypatch.setattr(similarity, "_EMBEDDINGS", {})
    monkeypatch.setattr(similarity, "_KEPT", [])
    encoded = []

    class Encoder:
        def encode(self, texts, **_):
            encoded.extend(texts)
            return np.array([[len(t), 1.0 / (1 + len(t))] for t in texts], dtype=np.float32)

    monkeypatch.setattr(similarity, "_minilm", Encoder)

    def fresh(folder):
        """A new process's view: nothing in memory, `folder` kept."""
        monkeypatch.setattr(similarity, "_EMBEDDINGS", {})
        monkeypatch.setattr(similarity, "_KEPT", [])
        similarity.keep_embeddings(folder)

    return similarity, encoded, fresh


TEXTS = ["a cat", "a dog sat", "rain"]


def truncate(path):
    path.write_bytes(path.read_bytes()[:-40])


def edit_vector(path):
    """Another float in `vectors`, a valid npz again (so only the seal can tell)."""
    import numpy as np

    with np.load(path) as saved:
        texts, vectors = saved["texts"], saved["vectors"].copy()
    vectors[0, 0] += 1
    with open(path, "wb") as handle:
        np.savez(handle, texts=texts, vectors=vectors)


@pytest.mark.parametrize("spoil", [truncate, edit_vector])
def test_a_damaged_embeddings_shard_is_reported_moved_aside_and_recomputed(
    tmp_path, capsys, embeddings, spoil
):
    similarity, encoded, fresh = embeddings
    store = Store(tmp_path)
    folder = tmp_path / "embeddings" / "m"
    similarity.keep_embeddings(folder)
    first = similarity.minilm_embed(TEXTS)
    (shard,) = folder.glob("*.npz")
    assert store_module.seal_damage(shard) is None and store.verify() == []
    assert store.artifacts() == [shard]
    fresh(folder)
    assert encoded == sorted(TEXTS)  # a whole shard: read, not embedded again
    assert similarity.minilm_embed(TEXTS).tobytes() == first.tobytes() and capsys.readouterr().err == ""

    spoil(shard)
    size = shard.stat().st_size
    why = f"its {size} bytes differ from the sha256 in its name"
    (found,) = store.verify()
    assert found == store_module.Damage(f"embeddings/m/{shard.name}", why, None) and shard.is_file()
    fresh(folder)
    (line,) = capsys.readouterr().err.splitlines()
    (moved,) = (tmp_path / "damaged" / "embeddings" / "m").iterdir()
    assert (
        line == f"store: embeddings/m/{shard.name} is damaged ({why}); moved aside to {moved} and recomputed"
    )
    assert moved.name.startswith(shard.stem + "-") and moved.suffix == ".npz" and not shard.exists()
    again = similarity.minilm_embed(TEXTS)
    assert encoded == sorted(TEXTS) * 2  # recomputed
    assert again.tobytes() == first.tobytes()
    assert store.verify() == [] and len(list(folder.glob("*.npz"))) == 1


def test_store_verify_repairs_embeddings_shards(tmp_path, embeddings):
    similarity, _, _ = embeddings
    store = Store(tmp_path)
    folder = tmp_path / "embeddings" / "m"
    similarity.keep_embeddings(folder)
    similarity.minilm_embed(TEXTS[:1])
    good = next(folder.glob("*.npz"))
    similarity.minilm_embed(TEXTS[1:])
    (bad,) = set(folder.glob("*.npz")) - {good}
    truncate(bad)
    legacy = folder / "0123456789abcdef01234567.npz"  # a shard from before seals
    legacy.write_bytes(good.read_bytes())
    (folder / f".{good.name}.x").write_bytes(b"")  # a write in progress
    whys = {
        f"embeddings/m/{bad.name}": f"its {bad.stat().st_size} bytes differ from the sha256 in its name",
        f"embeddings/m/{legacy.name}": "not named by its sha256: made before sealed files, or renamed",
    }
    found = store.verify(repair=True)
    assert {d.artifact: d.why for d in found} == whys and len(found) == 2
    assert all(d.moved.parent == tmp_path / "damaged" / "embeddings" / "m" for d in found)
    assert all(d.moved.is_file() for d in found)
    assert not bad.exists() and not legacy.exists() and good.is_file()
    assert store.verify() == [] and store.artifacts() == [good]
