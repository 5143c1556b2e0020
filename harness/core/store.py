"""Content-addressed artifact store: each artifact is a folder keyed by a hash of its inputs.

A stage asks `store.has(stage, inputs)`; if that says True the work is done and `store.folder(stage,
inputs)` holds it.  Otherwise it writes into the temporary folder `store.writing(stage, inputs)` yields,
which is renamed into place only when the block finishes, so an interrupted stage never leaves a
half-written artifact behind.

Every artifact carries `manifest.json`, written last inside `writing`: the relative path, size and
sha256 of each of its files.  `has` checks an artifact against it before saying True, and a stage that
reads an artifact long after `has` declares the read with `reading(path)`.  Files under
`HASH_ON_EVERY_READ` are hashed on every check; larger ones (model weights) by size on every check and
by sha256 on the first check in a process.  A damaged artifact (no manifest, a file missing, extra,
of another size or content) is reported in one line on stderr, moved aside to
`<root>/damaged/<stage>/<key>-<time>` and, from `has`, recomputed by the stage.

An artifact made before manifests existed has no manifest and counts as damaged: nothing tells it apart
from one whose manifest was lost, and sealing it unchecked would also seal any damage it already has.
Its first use moves it aside and recomputes it once (`icl-bench store verify --repair` moves every such
artifact at once); `<root>/damaged/` can be deleted when no longer wanted.

Caches kept beside the artifacts (`SEALED` stages, e.g. `embeddings/<model>/`) hold sealed files instead:
each is named by the sha256 of its bytes (`<sha256>.<ext>`, written atomically by `write_sealed`), so a
truncated, edited or pre-seal file is found by `sealed` before it is read and by `store verify`, then
moved aside to `<root>/damaged/<its folder>/` like a damaged artifact and its content recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icl_bench.core.errors import UsageError
from icl_bench.core.files import (  # fingerprint, read_jsonl, write_jsonl: public as icl_bench.store names
    file_sha256,
    fingerprint,  # noqa: F401
    read_jsonl,  # noqa: F401
    write_atomic,
    write_json,
    write_jsonl,  # noqa: F401
)

STORE_ENV = "ICL_BENCH_STORE"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "icl-bench-manifest/1"
INPUTS = "inputs.json"
HASH_ON_EVERY_READ = 64 * 2**20  # bytes: smaller files are hashed on every check, larger once a process
DAMAGED = "damaged"  # <root>/damaged/<stage>/<key>-<time>: artifacts moved aside
WORKING = frozenset({"checkpoints"})  # stages whose keyed folders are working space, not artifacts
KEY = re.compile(r"[0-9a-f]{24}")  # an artifact folder's name: `Store.folder`'s digest prefix
SEALED = frozenset({"embeddings"})  # stages holding sealed files (caches), not artifact folders
SEALED_NAME = re.compile(r"([0-9a-f]{64})\.[0-9a-z]+")  # a sealed file's name: sha256 of its bytes


def default_root() -> Path:
    """`$ICL_BENCH_STORE`, else the user cache dir (e.g. ~/.cache/icl-bench)."""
    if os.environ.get(STORE_ENV):
        return Path(os.environ[STORE_ENV])
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("icl-bench"))


def canonical(value: Any) -> str:
    """Stable JSON for hashing: sorted keys, no whitespace variance."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def digest(value: Any) -> str:
    return hashlib.sha256(canonical(value).encode()).hexdigest()


class Store:
    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root else default_root()

    def folder(self, stage: str, inputs: Mapping[str, Any]) -> Path:
        """Where the artifact of `stage` for these inputs lives (it may not exist yet)."""
        return self.root / stage / digest({"stage": stage, **inputs})[:24]

    def activate(self) -> Store:
        """Make this the store of the process and its children ($ICL_BENCH_STORE): a plugin's data
        (`Store()`, `default_root()`) then lands beside the run's artifacts, not in the user cache."""
        os.environ[STORE_ENV] = str(self.root.resolve())
        return self

    def has(self, stage: str, inputs: Mapping[str, Any]) -> bool:
        """Whether the artifact exists and matches its manifest.  A damaged one is reported on stderr
        and moved aside, and this says False, so the stage recomputes it."""
        folder = self.folder(stage, inputs)
        if not folder.is_dir() and not os.path.lexists(folder):
            return False
        why = damage(folder)
        if why is None:
            return True
        print(f"{set_aside(folder, why)} and recomputed", file=sys.stderr)
        return False

    def artifacts(self) -> list[Path]:
        """Every artifact of the store: the folders by stage and key (and anything else bearing a key's
        name there), then the files of `SEALED` stages (not `damaged/`, working or temporary ones)."""
        if not self.root.is_dir():
            return []
        stages = sorted(stage for stage in self.root.iterdir() if stage.is_dir() and stage.name != DAMAGED)
        folders = (
            folder
            for stage in stages
            if stage.name not in WORKING | SEALED
            for folder in stage.iterdir()
            if KEY.fullmatch(folder.name)
        )
        files = (
            path
            for stage in stages
            if stage.name in SEALED
            for path in stage.rglob("*")
            if not path.name.startswith(".") and not path.is_dir()
        )
        return sorted(folders) + sorted(files)

    def verify(self, repair: bool = False) -> list[Damage]:
        """Check every artifact against its manifest and every sealed file against its name, hashing
        every file; with `repair`, move each damaged one aside (a rerun then recomputes it).  Returns
        the damaged ones."""
        found = []
        for path in self.artifacts():
            sealed_file = path.relative_to(self.root).parts[0] in SEALED
            why = seal_damage(path) if sealed_file else damage(path, full=True)
            if why is not None:
                name = path.relative_to(self.root).as_posix()
                found.append(Damage(name, why, move_aside(path, why, self.root) if repair else None))
        return found

    @contextmanager
    def writing(self, stage: str, inputs: Mapping[str, Any]) -> Iterator[Path]:
        """Yield a temporary folder; on success it atomically becomes `folder(stage, inputs)`."""
        final = self.folder(stage, inputs)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        except OSError as error:
            reason = error.strerror or type(error).__name__
            ancestors = (final.parent, *final.parent.parents)
            blocking = next((p for p in ancestors if os.path.lexists(p) and not p.is_dir()), None)
            fix = (
                f"{blocking} is a file where the store needs a folder: move or delete it"
                if blocking
                else f"make {final.parent} writable"
            )
            raise UsageError(f"store: cannot write {name_of(final)} ({reason}); {fix}") from None
        try:
            yield tmp
            write_json(tmp / INPUTS, {"stage": stage, **inputs})
            write_manifest(tmp)  # last: only a finished artifact has one
            try:
                os.rename(tmp, final)
            except OSError:  # another process finished the same artifact first: keep theirs
                if final.is_dir():
                    return
                if not os.path.lexists(final):
                    raise
                # a file where the artifact folder should be: damaged, moved aside, replaced
                print(set_aside(final, damage(final) or "not a folder"), file=sys.stderr)
                os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class DamagedArtifact(UsageError):
    """A store artifact failed its check while a stage was reading it (after `Store.has` said True)."""


@dataclass(frozen=True)
class Damage:
    """A damaged artifact: `<stage>/<key>`, why, and where it was moved (None: left in place)."""

    artifact: str
    why: str
    moved: Path | None = None


def files_of(folder: Path) -> dict[str, Path]:
    """Every file below `folder` but its manifest, by path relative to it (POSIX separators)."""
    return {
        path.relative_to(folder).as_posix(): path
        for path in folder.rglob("*")
        if path.is_file() and path != folder / MANIFEST
    }


def write_manifest(folder: Path) -> None:
    """`folder/manifest.json`: the size and sha256 of every other file below `folder`."""
    files = {
        name: {"size": path.stat().st_size, "sha256": file_sha256(path)}
        for name, path in sorted(files_of(folder).items())
    }
    write_json(folder / MANIFEST, {"format": MANIFEST_FORMAT, "files": files})


# artifact folder -> (its manifest's mtime, {large file: (size, mtime_ns) when its sha256 matched})
_hashed: dict[Path, tuple[int, dict[str, tuple[int, int]]]] = {}


def damage(folder: Path, *, full: bool = False) -> str | None:
    """Why the artifact in `folder` does not match its manifest, or None when it does.  Files under
    `HASH_ON_EVERY_READ` are hashed every time; larger ones when this process has not yet hashed them
    unchanged (same size and mtime), or always with `full`."""
    if not folder.is_dir() and os.path.lexists(folder):
        return "a file where the artifact folder should be"
    try:
        stamp = (folder / MANIFEST).stat().st_mtime_ns
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        listed = {name: (int(e["size"]), str(e["sha256"])) for name, e in manifest["files"].items()}
        if manifest.get("format") != MANIFEST_FORMAT:
            raise ValueError(manifest.get("format"))
    except FileNotFoundError:
        return f"no {MANIFEST}: made before manifests, or it was deleted"
    except (OSError, ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError):
        return f"{MANIFEST} is unreadable"
    found = files_of(folder)
    problems = [f"{name} missing" for name in sorted(set(listed) - set(found))]
    problems += [f"extra file {name}" for name in sorted(set(found) - set(listed))]
    key = folder.absolute()
    known_stamp, known = _hashed.get(key, (None, {}))
    known = known if known_stamp == stamp and not full else {}
    large = {}
    for name in sorted(set(listed) & set(found)):
        size, sha256 = listed[name]
        try:
            stat = found[name].stat()
            if stat.st_size != size:
                problems.append(f"{name} is {stat.st_size} bytes, its manifest says {size}")
                continue
            if size >= HASH_ON_EVERY_READ:
                large[name] = (size, stat.st_mtime_ns)
                if known.get(name) == large[name]:
                    continue
            if file_sha256(found[name]) != sha256:
                problems.append(f"{name} differs from its manifest (sha256)")
        except OSError as error:
            problems.append(f"{name} is unreadable ({error.strerror or type(error).__name__})")
    if problems:
        _hashed.pop(key, None)
        more = f"; {len(problems) - 3} more" if len(problems) > 3 else ""
        return "; ".join(problems[:3]) + more
    _hashed[key] = (stamp, large)
    return None


def name_of(folder: Path, root: Path | None = None) -> str:
    """`<stage>/<key>` of an artifact folder; a path relative to `root` when given."""
    if root is not None:
        return folder.relative_to(root).as_posix()
    return f"{folder.parent.name}/{folder.name}"


def move_aside(folder: Path, why: str, root: Path | None = None) -> Path:
    """Move a damaged artifact to `<root>/damaged/<stage>/<key>-<time>` (kept for inspection), or a
    sealed file `<root>/<dir>/<name>.<ext>` to `<root>/damaged/<dir>/<name>-<time>.<ext>`; return that
    path.  `root` is the store's (default: the folder's grandparent).  One that cannot be moved is one
    line naming it."""
    root = folder.parent.parent if root is None else root
    aside = root / DAMAGED / folder.parent.relative_to(root)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    stem, ext = (folder.stem, folder.suffix) if SEALED_NAME.fullmatch(folder.name) else (folder.name, "")
    target = aside / f"{stem}-{stamp}{ext}"
    for n in range(1, 1000):
        if not os.path.lexists(target):
            break
        target = aside / f"{stem}-{stamp}-{n}{ext}"
    try:
        aside.mkdir(parents=True, exist_ok=True)
        os.rename(folder, target)
    except FileNotFoundError:
        if folder.exists():
            raise
        # another process checking the same artifact moved it aside first
    except OSError as error:
        raise UsageError(
            f"store: {name_of(folder, root)} is damaged ({why}) and cannot be moved aside "
            f"({error.strerror or type(error).__name__}); delete {folder} by hand"
        ) from None
    _hashed.pop(folder.absolute(), None)
    return target


def set_aside(folder: Path, why: str, root: Path | None = None) -> str:
    """Move a damaged artifact (or sealed file, under `root`) aside; return the start of its one-line
    report."""
    moved = move_aside(folder, why, root)
    return f"store: {name_of(folder, root)} is damaged ({why}); moved aside to {moved}"


def sealed_root(path: Path) -> Path:
    """The store root of a sealed file: the folder holding its `SEALED` stage (else the file's own)."""
    return next((p.parent for p in path.parents if p.name in SEALED), path.parent)


def write_sealed(folder: Path, data: bytes, ext: str) -> Path:
    """Write `data` atomically as `folder/<sha256 of data>.<ext>` (a sealed file); return its path."""
    path = Path(folder) / f"{hashlib.sha256(data).hexdigest()}.{ext}"
    if not (path.is_file() and seal_damage(path) is None):
        write_atomic(path, data)
    return path


def seal_damage(path: Path) -> str | None:
    """Why a sealed file does not hash to the sha256 its name gives, or None when it does."""
    name = SEALED_NAME.fullmatch(path.name)
    if not path.is_file():
        return "not a file" if os.path.lexists(path) else "missing"
    if name is None:
        return "not named by its sha256: made before sealed files, or renamed"
    try:
        if file_sha256(path) != name.group(1):
            return f"its {path.stat().st_size} bytes differ from the sha256 in its name"
    except OSError as error:
        return f"unreadable ({error.strerror or type(error).__name__})"
    return None


def sealed(path: Path) -> bool:
    """Whether the sealed file `path` is whole.  A damaged one is reported on stderr, moved aside and
    this says False, so its content is recomputed."""
    why = seal_damage(path)
    if why is None:
        return True
    if os.path.lexists(path):
        print(f"{set_aside(path, why, sealed_root(path))} and recomputed", file=sys.stderr)
    return False


def artifact_of(path: Path | str) -> Path | None:
    """The store artifact folder `path` lies in (or is), or None for a path outside any store."""
    path = Path(path).absolute()
    for folder in (path, *path.parents):
        if (
            KEY.fullmatch(folder.name)
            and folder.parent.name not in WORKING
            and ((folder / MANIFEST).is_file() or (folder / INPUTS).is_file())
        ):
            return folder
    return None


def reading(path: Path | str) -> Path:
    """Declare "this stage reads the store artifact holding `path` now": check the artifact (a path
    outside any store passes unchecked) and return `path`.  For reads that do not follow `Store.has` at
    once.  A damaged artifact is moved aside and raises `DamagedArtifact`: a rerun recomputes it."""
    folder = artifact_of(path)
    why = damage(folder) if folder else None
    if folder and why:
        raise DamagedArtifact(f"{set_aside(folder, why)}; rerun to recompute it")
    return Path(path)
