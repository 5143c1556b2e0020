"""Helpers for task plugins that read Hugging Face hub datasets through `datasets`: one split with a
one-line error naming the dataset and the fixes, nested columns, and deterministic samples.

`$ICL_BENCH_DATASETS=DIR` loads `DIR/<dataset id>` instead of the hub: a folder in the hub's layout
(README configs + data files), which is how the tests run hub tasks offline.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

from icl_bench.core.errors import UsageError
from icl_bench.core.types import Example

DATASETS_ENV = "ICL_BENCH_DATASETS"


def load_split(dataset: str, config: str | None, split: str, what: str, offline: str):
    """One split of `dataset` (a `datasets.Dataset`); a failure is one line naming `what` was loaded and
    the fixes, `offline` (e.g. "the offline mr-offline task") among them."""
    import datasets

    root = os.environ.get(DATASETS_ENV)
    path = str(Path(root) / dataset) if root else dataset
    try:
        return datasets.load_dataset(path, config, split=split)
    except Exception as error:  # datasets raises many types; the user needs the dataset and the fix
        reason = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        where = f"folder {path}" if root else "the Hugging Face hub"
        raise UsageError(
            f"cannot load {what} from {where} ({reason}); log in with `huggingface-cli login` on a "
            f"machine with the hub, or set ${DATASETS_ENV} to a folder of local copies, or use {offline}"
        ) from None


def field(row: dict[str, Any], path: str) -> Any:
    """The value at a dotted column path ("translation.en") of a row."""
    for part in path.split("."):
        row = row[part]
    return row


def sample(examples: list[Example], size: int | None, seed: str) -> list[Example]:
    """A deterministic shuffle of `examples`, cut to `size`: callers take the first N, so any prefix is a
    uniform sample (ContextConfig's max_pool / max_test)."""
    shuffled = sorted(examples, key=lambda ex: ex.id)
    random.Random(seed).shuffle(shuffled)
    return shuffled[:size]
