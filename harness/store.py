"""Content-addressed artifact store: each artifact is a folder keyed by a hash of its inputs.

A stage asks `store.folder(stage, inputs)`; if the folder exists the work is done.  Otherwise it writes
into the temporary folder `store.writing(stage, inputs)` yields, which is renamed into place only when
the block finishes, so an interrupted stage never leaves a half-written artifact behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from icl_bench.errors import UsageError

STORE_ENV = "ICL_BENCH_STORE"


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

    def check_writable(self) -> Store:
        """Fail with one line now, not after hours of work, when artifacts cannot be written here."""
        writable(self.root, f"--store (or ${STORE_ENV})")
        return self

    def activate(self) -> Store:
        """Make this the store of the process and its children ($ICL_BENCH_STORE): a plugin's data
        (`Store()`, `default_root()`) then lands beside the run's artifacts, not in the user cache."""
        os.environ[STORE_ENV] = str(self.root.resolve())
        return self

    def has(self, stage: str, inputs: Mapping[str, Any]) -> bool:
        return self.folder(stage, inputs).is_dir()

    @contextmanager
    def writing(self, stage: str, inputs: Mapping[str, Any]) -> Iterator[Path]:
        """Yield a temporary folder; on success it atomically becomes `folder(stage, inputs)`."""
        final = self.folder(stage, inputs)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        try:
            yield tmp
            write_json(tmp / "inputs.json", {"stage": stage, **inputs})
            try:
                os.rename(tmp, final)
            except OSError:  # another process finished the same artifact first: keep theirs
                if not final.is_dir():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def writable(folder: Path, flag: str) -> Path:
    """Create `folder` if needed and prove a file can be written in it; else one line naming `flag`."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".icl-bench-write-check-"):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UsageError(f"{folder} is not writable ({reason}); pass a writable folder with {flag}") from None
    return folder


def write_atomic(path: Path, data: bytes) -> None:
    """Write bytes via a temporary file and rename, so readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, value: Any) -> None:
    write_atomic(path, (json.dumps(value, indent=2, sort_keys=True, default=str) + "\n").encode())


def write_jsonl(path: Path, records: Iterable[Mapping[str, Any]]) -> None:
    lines = (json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in records)
    write_atomic(path, "".join(lines).encode())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def fingerprint(folders: Iterable[Path]) -> str:
    """sha256 over every JSONL file below `folders` (path relative to its folder, and bytes), sorted."""
    files = sorted(
        (path.relative_to(folder).as_posix(), path) for folder in folders for path in folder.rglob("*.jsonl")
    )
    sha = hashlib.sha256()
    for name, path in files:
        sha.update(name.encode() + b"\0")
        sha.update(path.read_bytes() + b"\0")
    return sha.hexdigest()
