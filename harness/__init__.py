"""icl-bench: in-context vs in-weights learning under fine-tuning, as a benchmark harness."""

import importlib
import importlib.abc
import importlib.util
import sys
from importlib.machinery import ModuleSpec
from types import ModuleType

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


# The module paths plugins import from (README, built-in tasks) keep working now that the modules live in
# stage packages: `icl_bench.claims` is `icl_bench.score.claims`, and so on; loaded when first imported.
PUBLIC_PATHS = {
    "bootstrap": "score.bootstrap",
    "claims": "score.claims",
    "errors": "core.errors",
    "hookspecs": "core.hookspecs",
    "hub": "core.hub",
    "packages": "core.packages",
    "plugins": "core.plugins",
    "samplers": "contexts.samplers",
    "store": "core.store",
    "types": "core.types",
    "validate": "core.validate",
}


class _PublicPath(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports `icl_bench.<old>` as the module now at `icl_bench.<new>` (the same module object)."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> ModuleSpec | None:
        package, _, old = name.rpartition(".")
        return (
            importlib.util.spec_from_loader(name, self)
            if (package, old in PUBLIC_PATHS) == (__name__, True)
            else None
        )

    def __init__(self) -> None:
        self.specs: dict[str, ModuleSpec | None] = {}  # alias -> the module's own spec

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        module = importlib.import_module(f"{__name__}.{PUBLIC_PATHS[spec.name.rsplit('.', 1)[1]]}")
        self.specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run (the module ran under its new path); give it back its own spec, which the
        import system replaced with the alias's."""
        if module.__spec__ is not None and module.__spec__.name in self.specs:
            module.__spec__ = self.specs.pop(module.__spec__.name)


def __getattr__(name: str) -> ModuleType:
    if name in PUBLIC_PATHS:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if not any(type(finder).__name__ == _PublicPath.__name__ for finder in sys.meta_path):  # once, reloads too
    sys.meta_path.insert(0, _PublicPath())
