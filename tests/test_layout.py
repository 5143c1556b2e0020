"""harness/ reads as the pipeline: stage packages in data-flow order, imports only ever pointing back
along the flow, no import cycle, small files."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parent.parent / "harness"
# The data flow, written once: a package may import itself and the packages before it, never after.
FLOW = (
    "core",
    "models",
    "paraphrase",
    "contexts",
    "train",
    "evaluate",
    "score",
    "report",
    "sweep",
    "executors",
    "analyses",
    "cli",
)
FACADE = "icl_bench"  # the package root re-exports the public API; it is no stage
MAX_LINES = 400


def modules() -> dict[str, Path]:
    found = {}
    for path in HARNESS.rglob("*.py"):
        parts = path.relative_to(HARNESS).with_suffix("").parts
        if parts[0] in ("tasks", "regimes"):  # plugins, installed from the top-level folders
            continue
        name = ".".join((FACADE, *parts[:-1], *([] if parts[-1] == "__init__" else [parts[-1]])))
        found[name] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The harness modules `path` imports, at module level or inside functions, type-checking ones too;
    a public path (`icl_bench.claims`, `from icl_bench import claims`) counts as the module it names.
    Relative imports are banned by ruff (TID252), so every import is seen here."""
    import icl_bench

    def resolved(name: str) -> str:
        old = name.removeprefix(f"{FACADE}.")
        return f"{FACADE}.{icl_bench.PUBLIC_PATHS[old]}" if old in icl_bench.PUBLIC_PATHS else name

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(FACADE):
            for alias in node.names:
                child = resolved(f"{node.module}.{alias.name}")
                yield child if child in known else resolved(node.module)
        elif isinstance(node, ast.Import):
            yield from (resolved(alias.name) for alias in node.names if alias.name.startswith(FACADE))


def stage(module: str) -> str:
    return module.split(".")[1] if module.count(".") else FACADE


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: set(imports(path, known)) - {name} for name, path in known.items()}


def test_every_module_belongs_to_a_stage_of_the_flow():
    strays = sorted(name for name in modules() if stage(name) not in (*FLOW, FACADE))
    assert not strays, f"modules outside the stage packages {FLOW}: {strays}"


def test_no_stage_imports_a_later_stage():
    against = sorted(
        f"{name} imports {target}"
        for name, targets in graph().items()
        if stage(name) != FACADE
        for target in targets
        if stage(target) != FACADE and FLOW.index(stage(target)) > FLOW.index(stage(name))
    )
    assert not against, "imports against the flow:\n" + "\n".join(against)


def test_no_import_cycle():
    edges, seen, path, cycles = graph(), set(), [], []

    def visit(node: str) -> None:
        if node in path:
            cycles.append(" -> ".join([*path[path.index(node) :], node]))
            return
        if node in seen:
            return
        seen.add(node)
        path.append(node)
        for target in sorted(edges.get(node, ())):
            if target != FACADE:  # every module imports through the facade's package
                visit(target)
        path.pop()

    for node in sorted(edges):
        visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("path", sorted(HARNESS.rglob("*.py")), ids=lambda p: str(p.relative_to(HARNESS)))
def test_files_stay_small(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(HARNESS)} has {lines} lines (at most {MAX_LINES})"


def test_the_checks_see_a_violation(tmp_path, monkeypatch):
    """The graph check is not vacuous: a core module importing the CLI is caught."""
    fake = {"icl_bench.core.x": tmp_path / "x.py", "icl_bench.cli": tmp_path / "cli.py"}
    fake["icl_bench.core.x"].write_text("def f():\n    from icl_bench.cli import main\n")
    assert set(imports(fake["icl_bench.core.x"], fake)) == {"icl_bench.cli"}
    assert FLOW.index(stage("icl_bench.cli")) > FLOW.index(stage("icl_bench.core.x"))


def test_the_public_module_paths_of_plugins_keep_working():
    """A plugin written against the flat layout (`icl_bench.claims`, `icl_bench.types`, ...) imports
    the same module objects; harness/ itself uses the stage paths."""
    import importlib

    import icl_bench

    for old, new in icl_bench.PUBLIC_PATHS.items():
        moved = importlib.import_module(f"icl_bench.{new}")
        assert importlib.import_module(f"icl_bench.{old}") is moved is getattr(icl_bench, old)
        assert moved.__spec__.name == f"icl_bench.{new}"
    import sys

    sys.modules.pop("validate", None)  # an unrelated top-level module of the same name still imports
    assert importlib.util.find_spec("validate") is None or "icl_bench" not in str(
        importlib.util.find_spec("validate")
    )
    legacy = {f"icl_bench.{old}" for old in icl_bench.PUBLIC_PATHS}
    internal = sorted(
        f"{name} imports {node.module}"
        for name, path in modules().items()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and node.module in legacy
    )
    assert not internal, internal


def test_plugins_import_only_the_public_api():
    """tasks/ and regimes/ are written as a third party would: `icl_bench` itself, its public module
    paths, and their own package; nothing of a stage package directly."""
    import icl_bench

    public = {
        *(f"{FACADE}.{old}" for old in icl_bench.PUBLIC_PATHS),
        f"{FACADE}.tasks",
        f"{FACADE}.regimes",
    }
    root = HARNESS.parent
    private = sorted(
        f"{path.relative_to(root)} imports {name}"
        for folder in ("tasks", "regimes")
        for path in (root / folder).rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        for name in (
            [node.module]
            if isinstance(node, ast.ImportFrom) and node.module
            else [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else []
        )
        if name.startswith(FACADE)
        and name != FACADE
        and not any(name == p or name.startswith(f"{p}.") for p in public)
    )
    assert not private, private


def test_tests_mirror_the_stages():
    """tests/ has one folder per stage package (plus tasks/ for the task plugins), and no stray test."""
    tests = Path(__file__).resolve().parent
    folders = {p.name for p in tests.iterdir() if p.is_dir() and any(p.glob("test_*.py"))}
    assert folders <= {*FLOW, "tasks"}, sorted(folders - {*FLOW, "tasks"})
    assert [p.name for p in tests.glob("test_*.py")] == [Path(__file__).name]
