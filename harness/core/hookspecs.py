"""Plugin hooks.  Each receives a `register` callback; call it once per object the plugin provides."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("icl_bench")
hookimpl = pluggy.HookimplMarker("icl_bench")

Register = Callable[[Any], None]


@hookspec
def register_tasks(register: Register) -> None:
    """Register `icl_bench.Task` instances."""


@hookspec
def register_regimes(register: Register) -> None:
    """Register training regimes (`icl_bench.Regime` instances)."""


@hookspec
def register_models(register: Register) -> None:
    """Register `icl_bench.ModelSpec` aliases."""


@hookspec
def register_paraphrasers(register: Register) -> None:
    """Register `icl_bench.Paraphraser` instances (a target -> near-duplicate (x~, y~))."""


@hookspec
def register_metrics(register: Register) -> None:
    """Register `icl_bench.Metric` instances (predictions, examples -> one score per example)."""


@hookspec
def register_executors(register: Register) -> None:
    """Register `icl_bench.core.jobs.Executor` instances (run a sweep's job graph somewhere)."""
