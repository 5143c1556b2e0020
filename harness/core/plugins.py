"""The plugin manager, filled from the `icl_bench` entry points in setup.cfg (the harness's own
plugins are declared there like any third party's), and the registries."""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Iterator
from functools import cache
from typing import Generic, TypeVar

import pluggy

from icl_bench.core import hookspecs
from icl_bench.core.errors import UsageError, unknown

T = TypeVar("T")


pm = pluggy.PluginManager("icl_bench")
pm.add_hookspecs(hookspecs)


def _load() -> None:
    """Register every `icl_bench` entry point, the harness's own plugins (models, metrics, paraphrasers)
    as well as third parties'; a plugin that fails to import is reported and skipped."""
    for entry in importlib.metadata.entry_points(group="icl_bench"):
        if pm.is_blocked(entry.name):
            continue
        if (found := pm.get_plugin(entry.name)) is not None:
            if getattr(found, "__name__", entry.value) != entry.value:  # two plugins, one name: say so
                print(
                    f"icl-bench: skipped plugin {entry.name!r} ({entry.value}): the name is taken by "
                    f"{found.__name__}; rename the entry point",
                    file=sys.stderr,
                )
                pm.set_blocked(entry.name)
            continue
        try:
            pm.register(entry.load(), name=entry.name)
        except Exception as error:  # a broken third-party plugin must not take the harness down
            print(f"icl-bench: skipped plugin {entry.name!r} ({entry.value}): {error!r}", file=sys.stderr)
            pm.set_blocked(entry.name)


class Registry(Generic[T]):
    """Name -> object, filled by one hook; a miss lists the known names."""

    def __init__(self, kind: str, hook: str):
        self.kind, self.hook = kind, hook

    def _items(self) -> dict[str, T]:
        return _collect(self.hook)

    def __getitem__(self, name: str) -> T:
        items = self._items()
        if name not in items:
            raise unknown(self.kind, name, items)
        return items[name]

    def get(self, name: str, default: T | None = None) -> T | None:
        return self._items().get(name, default)

    def __contains__(self, name: str) -> bool:
        return name in self._items()

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items()))

    def values(self) -> list[T]:
        items = self._items()
        return [items[name] for name in sorted(items)]


@cache
def _collect(hook: str) -> dict:
    _load()
    found: dict = {}

    def register(obj) -> None:
        if obj.name in found:
            raise UsageError(f"two plugins register {obj.name!r} via {hook}; uninstall or rename one")
        found[obj.name] = obj

    getattr(pm.hook, hook)(register=register)
    return found


def refresh() -> None:
    """Forget collected registries (after registering or unregistering a plugin at run time)."""
    _collect.cache_clear()


tasks = Registry("task", "register_tasks")
regimes = Registry("regime", "register_regimes")
models = Registry("model", "register_models")
paraphrasers = Registry("paraphraser", "register_paraphrasers")
metrics = Registry("metric", "register_metrics")
executors = Registry("executor", "register_executors")
