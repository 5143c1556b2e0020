"""Files the stages write and read: atomic writes (readers never see a partial file), JSON and JSON
lines in one canonical form, and content hashes."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


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


def file_sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            sha.update(chunk)
    return sha.hexdigest()
