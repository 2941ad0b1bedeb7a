"""No import cycles among provenflow's modules (the layers stay layers).

The graph is read from the source with ``ast``, nothing is imported (no Prefect, well under a
second). A module's edges are its ``import x`` and ``from x import y`` statements at any depth,
inside functions too (a lazy import is still a dependency), except those under
``if TYPE_CHECKING:`` (annotations only). A name resolves to the longest module that exists
(``from x import y`` is an edge to ``x.y`` when that is a module, else to ``x``); the implicit
import of a package's ``__init__`` when one of its submodules is imported is not an edge.
The folders flows/, tasks/ and blocks/ beside provenflow/ are installed as provenflow.flows,
provenflow.tasks and provenflow.blocks (setup.py), and are read under those names.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Folder in the repository -> the package name it is installed as.
PACKAGES = {
    "provenflow": "provenflow",
    "flows": "provenflow.flows",
    "tasks": "provenflow.tasks",
    "blocks": "provenflow.blocks",
}


# -- reading the graph ---------------------------------------------------------------------


def module_files(repo: Path = REPO, packages: Mapping[str, str] = PACKAGES) -> dict[str, Path]:
    """Every module's dotted name -> its file (a package's name -> its ``__init__.py``)."""
    modules: dict[str, Path] = {}
    for folder, name in packages.items():
        root = repo / folder
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if any(not p.isidentifier() for p in parts):
                continue  # e.g. an Alembic version file named 0001_x.py is never imported by name
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((name, *parts))] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> Iterable[ast.Import | ast.ImportFrom]:
    """Import statements at any depth, skipping the bodies of ``if TYPE_CHECKING:`` (not their else)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _longest_module(dotted: str, modules: Mapping[str, object]) -> str | None:
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def imports_of(name: str, source: str, modules: Mapping[str, object], is_package: bool = False) -> set[str]:
    """The modules (of ``modules``) that module NAME with this SOURCE imports."""
    targets: set[str] = set()
    package = name if is_package else name.rpartition(".")[0]
    for node in _import_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                targets.add(_longest_module(alias.name, modules) or "")
            continue
        if node.level:  # relative: from . import x, from ..a import b
            base_parts = package.split(".")
            base_parts = base_parts[: len(base_parts) - (node.level - 1)]
            base = ".".join(base_parts + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            if alias.name != "*" and sub in modules:
                targets.add(sub)
            else:
                targets.add(_longest_module(base, modules) or "")
    targets.discard("")
    targets.discard(name)
    return targets


def import_graph(repo: Path = REPO, packages: Mapping[str, str] = PACKAGES) -> dict[str, set[str]]:
    files = module_files(repo, packages)
    return {
        name: imports_of(name, path.read_text(encoding="utf-8"), files, path.name == "__init__.py")
        for name, path in files.items()
    }


# -- finding cycles ------------------------------------------------------------------------


def cycles(graph: Mapping[str, Iterable[str]]) -> list[set[str]]:
    """The strongly connected components of more than one node (Tarjan, iterative), plus any node
    with an edge to itself: every import cycle is inside one of them."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[set[str]] = []
    counter = 0
    nodes = set(graph) | {t for targets in graph.values() for t in targets}
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph.get(node, ()):
                    found.append(component)
    return found


def _describe(component: set[str], graph: Mapping[str, Iterable[str]]) -> str:
    edges = sorted(f"{a} -> {b}" for a in component for b in graph.get(a, ()) if b in component)
    return "{" + ", ".join(sorted(component)) + "}\n    " + "\n    ".join(edges)


# -- tests ---------------------------------------------------------------------------------


@functools.cache
def _repo_graph() -> dict[str, set[str]]:
    return import_graph()


def test_cycle_finder_reports_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}, "f": {"d"}}
    found = cycles(graph)
    assert sorted(map(sorted, found)) == [["a", "b", "c"], ["e"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_imports_are_read_as_documented():
    modules = dict.fromkeys(["p", "p.a", "p.b", "p.b.c", "p.d", "p.e", "p.f", "p.g"])
    source = """
import p.b.c.name_in_c
from p.b import c
from p import a
from p.d import something
from . import e
from .g import x
import os

def lazy():
    from p import f

if TYPE_CHECKING:
    from p import b
else:
    import p
"""
    assert imports_of("p.h", source, modules) == {"p.b.c", "p.a", "p.d", "p.e", "p.g", "p.f", "p"}
    assert imports_of("p.b", "from . import c\nfrom .. import a\n", modules, is_package=True) == {
        "p.b.c",
        "p.a",
    }


def test_no_import_cycles():
    graph = _repo_graph()
    # The graph is the real one: every folder read, under its installed name, lazy imports counted.
    assert {"provenflow.data.datasets", "provenflow.flows.data_run", "provenflow.tasks.data"} <= set(graph)
    assert any(name.startswith("provenflow.blocks.") for name in graph)
    assert "provenflow.tasks.data" in graph["provenflow.flows.data_run"]
    assert "provenflow.ui.publish" in graph["provenflow.tracking.run"]  # imported inside a method
    new = cycles(graph)
    assert not new, "import cycles (break each where one module is really the lower layer):\n" + "\n".join(
        _describe(c, graph) for c in new
    )
