"""icl-bench: in-context vs in-weights learning under fine-tuning, as a benchmark harness."""

from icl_bench.core.hookspecs import hookimpl
from icl_bench.core.types import (
    Baseline,
    Case,
    Context,
    CorpusMetric,
    Example,
    Generation,
    Metric,
    Paraphraser,
    Regime,
    Sampler,
    Single,
    Task,
)

__all__ = [
    "Baseline",
    "Case",
    "Context",
    "CorpusMetric",
    "Example",
    "Generation",
    "Metric",
    "Paraphraser",
    "Regime",
    "Sampler",
    "Single",
    "Task",
    "hookimpl",
]
