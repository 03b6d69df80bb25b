"""The package's import graph has no cycles: data flows one way (CLI → stages → libraries).

Every ``import`` counts — module level, inside functions and under ``TYPE_CHECKING`` — because a
function-level import that closes a loop is a circle in the design even when Python tolerates it at run
time. ``from pkg import name`` is an edge to the submodule ``pkg.name`` when that is a module, else to
``pkg`` itself; merely importing a submodule does not count as importing its parent package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dre"


def module_names(root: Path) -> dict[str, Path]:
    """Dotted module name → file, for every ``.py`` below ``root`` (packages by their ``__init__``)."""
    mods = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def imported_modules(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """The modules of ``mods`` that ``name`` imports anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in mods]
            out.update(subs)
            if len(subs) < len(node.names):
                out.add(target)
    return {m for m in out if m in mods and m != name}


def import_graph(root: Path) -> dict[str, set[str]]:
    mods = module_names(root)
    return {name: imported_modules(name, path, mods) for name, path in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[v] = min(low[v], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_cycle_finder_finds_cycles_through_function_level_and_type_checking_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "dre"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from dre.sub.a import f\n")
    (pkg / "sub" / "a.py").write_text("def f():\n    from dre.sub import b\n")
    (pkg / "sub" / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import f\n")
    (pkg / "c.py").write_text("from dre.sub import a\n")
    graph = import_graph(pkg)
    assert graph["dre.c"] == {"dre.sub.a"}  # a submodule import is not an edge to its package
    assert cycles(graph) == [["dre.sub.a", "dre.sub.b"]]


def test_dre_has_no_import_cycles() -> None:
    graph = import_graph(PACKAGE)
    assert len(graph) > 50 and "dre.face3d.encoders" in graph["dre.face3d.extractor"]
    found = cycles(graph)
    if found:
        pytest.fail("import cycles in dre: " + "; ".join(" <-> ".join(c) for c in found))
