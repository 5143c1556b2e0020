"""Rich progress bars and console output shared by every stage."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sized
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")

console = Console(stderr=True)  # progress, logs and warnings
out = Console()  # results: tables, listings


def bar(*extra: ProgressColumn) -> Progress:
    """The stages' progress bar: description, bar, done/total, elapsed, then `extra` columns; transient,
    on stderr, and silent when stderr is not a terminal."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, *extra, console=console, transient=True, disable=not console.is_terminal)


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with the stages' progress bar (plus time remaining)."""
    if total is None and isinstance(items, Sized):
        total = len(items)
    with bar(TimeRemainingColumn()) as progress:
        yield from progress.track(items, total=total, description=description)


def quiet_libraries() -> None:
    """Keep library chatter off the terminal: Hugging Face progress bars (stages draw their own) and
    DeepSpeed's accelerator auto-detection warning on machines without a GPU.  User settings win."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
