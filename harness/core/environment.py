"""The environment a result was made in: versions of the stack, the device, torch's thread count, the
CPU numerics profile and the precision the model computed in.

Train and evaluate artifacts record it, `run` copies it beside each result, and the leaderboard shows
it, so a table says what produced it (floating-point results move with any of these).
"""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Iterable, Mapping
from typing import Any

FILE = "environment.json"  # in evaluate artifacts, and beside results: regime -> {"train", "evaluate"}
PACKAGES = ("icl-bench", "torch", "transformers", "peft", "accelerate", "lm_eval", "deepspeed")


def device() -> str:
    """`cpu`, or the GPU's name and count, e.g. `cuda: NVIDIA H100 80GB HBM3 x1`."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    return f"cuda: {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"


def capture(precision: str | None = None) -> dict[str, Any]:
    """python, the stack's package versions, device, torch threads and (given) the precision, as plain
    JSON values."""
    import torch

    from icl_bench.core import numerics

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": platform.python_version(),
        "packages": versions,
        "device": device(),
        "torch_threads": torch.get_num_threads(),
        "numerics": numerics.state(),
        **({"precision": precision} if precision else {}),
    }


def describe(environment: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field, value) rows of one environment, in a fixed order, for tables."""
    rows = [("python", str(environment.get("python")))]
    rows += [(name, str(version)) for name, version in sorted((environment.get("packages") or {}).items())]
    rows += [
        ("device", str(environment.get("device"))),
        ("torch threads", str(environment.get("torch_threads"))),
    ]
    if "precision" in environment:
        rows.append(("precision", str(environment["precision"])))
    if "numerics" in environment:
        found = environment["numerics"]
        rows.append(("numerics", f"{found.get('profile')} ({found.get('cpu_capability')})"))
    return rows


def distinct(environments: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The different environments among `environments`, in first-seen order."""
    seen: list[dict[str, Any]] = []
    for environment in environments:
        if dict(environment) not in seen:
            seen.append(dict(environment))
    return seen
