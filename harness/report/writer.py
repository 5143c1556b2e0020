"""One way every report is written, the leaderboard and each analysis alike: a stage renders its files
(name -> bytes, deterministic for equal inputs), `write_files` puts them into a folder atomically, and
`png_bytes` turns a figure into the bytes of its file."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from icl_bench.core.files import write_atomic

DPI = 100


def write_files(folder: Path, files: Mapping[str, bytes]) -> list[Path]:
    """Write each rendered file into `folder` (each atomically); return the paths, in `files`' order."""
    for name, data in files.items():
        write_atomic(Path(folder) / name, data)
    return [Path(folder) / name for name in files]


def png_bytes(fig: Any) -> bytes:
    """A matplotlib figure as PNG bytes: fixed dpi and no Software metadata, so equal figures give
    equal bytes for a given matplotlib version.  Call it under the style the figure was drawn in."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()
