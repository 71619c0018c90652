"""The package's shape: no import cycles (counting imports under TYPE_CHECKING and inside
functions), ``__all__`` in every module, the core free of the optional extras, and the public
surface re-exported from the top."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import d360calling

PACKAGE = Path(d360calling.__file__).parent
# Imported only behind a guard that falls back when they are missing (speedups).
GUARDED_EXTRAS = {"orjson", "uvloop"}
# Extras the core must not import at all; the testing package may use its own.
FORBIDDEN_IN_CORE = {
    "jsonschema",
    "aiortc",
    "redis",
    "pytest",
    "hypothesis",
    "aioresponses",
    # The ASGI adapter is plain ASGI: the web frameworks are the user's, never imported here.
    "fastapi",
    "starlette",
    "uvicorn",
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: Path) -> tuple[set[str], set[str]]:
    """(modules of this package, top-level third-party names) that ``name`` imports anywhere."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    inside: set[str] = set()
    outside: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                (inside if alias.name.startswith("d360calling") else outside).add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("d360calling"):
                inside.add(target)
                for alias in node.names:  # `from . import errors` names a module
                    inside.add(f"{target}.{alias.name}")
            else:
                outside.add(target)
    modules = _modules()
    return {m for m in inside if m in modules and m != name}, {m.split(".")[0] for m in outside}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle in ``graph`` as the path around it, or ``[]``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str]:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path, node, nxt]
            if nxt not in state:
                found = visit(nxt, [*path, node])
                if found:
                    return found
        state[node] = 2
        return []

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [])
            if found:
                return found
    return []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_there_are_no_import_cycles() -> None:
    modules = _modules()
    graph = {name: _imports(name, path)[0] for name, path in modules.items()}
    # A package's __init__ re-exports its children: a child importing a sibling through the
    # package (``from . import errors``) resolves to the sibling, not to the __init__.
    for name in graph:
        graph[name] = {m for m in graph[name] if not name.startswith(m + ".")}
    assert find_cycle(graph) == []


@pytest.mark.parametrize("name", sorted(_modules()))
def test_every_module_declares_all(name: str) -> None:
    if name.endswith("__main__"):  # importing it runs the command line
        tree = ast.parse(_modules()[name].read_text())
        assigned = [n for n in tree.body if isinstance(n, ast.Assign)]
        assert any(getattr(t, "id", "") == "__all__" for n in assigned for t in n.targets)
        return
    if name.startswith(
        ("d360calling.media", "d360calling.testing._media", "d360calling.testing.media")
    ):
        pytest.importorskip("aiortc")  # the media extra's modules need it
    if name.startswith("d360calling.fleet"):
        pytest.importorskip("redis")  # the redis extra's modules need it
    module = importlib.import_module(name)
    assert isinstance(getattr(module, "__all__", None), (tuple, list)), name
    for public in module.__all__:
        assert hasattr(module, public), f"{name}.__all__ names a missing {public}"


def test_the_core_never_imports_an_extra() -> None:
    for name, path in _modules().items():
        if name.startswith(("d360calling.testing", "d360calling.media", "d360calling.fleet")):
            continue  # the testing, media and redis extras' own packages
        outside = _imports(name, path)[1]
        assert not outside & FORBIDDEN_IN_CORE, (name, outside & FORBIDDEN_IN_CORE)
        if outside & GUARDED_EXTRAS:
            text = path.read_text()
            assert "except ImportError" in text, f"{name} imports a speedup without a fallback"


def test_the_public_surface_is_reexported() -> None:
    # Every error class, and what users build requests and settings updates from.
    expected = {name for name in d360calling.errors.__all__ if not name.startswith("error_from_")}
    expected |= {
        "ConnectCallRequest",
        "PreAcceptCallRequest",
        "AcceptCallRequest",
        "RejectCallRequest",
        "TerminateCallRequest",
        "CallActionRequest",
        "SettingsUpdate",
        "CallingSettings",
        "ClientOptions",
        "ClientOptionChanges",
        "RetryPolicy",
    }
    missing = expected - set(d360calling.__all__)
    assert not missing, missing
    for name in d360calling.__all__:
        assert hasattr(d360calling, name), name
