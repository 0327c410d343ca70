"""captionlib's modules import one another without a cycle: every import counts, at the top or inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "captionlib"


def import_graph(package: Path) -> dict[str, set[str]]:
    """{module: the package's modules it imports anywhere in its file}, for every .py file of a flat package."""
    name = package.name
    modules = {path: name if path.stem == "__init__" else f"{name}.{path.stem}" for path in sorted(package.glob("*.py"))}
    known = set(modules.values())
    graph = {}
    for path, module in modules.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):  # every node: function bodies too
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                # `from .x import y` in a module of the flat package is `from <package>.x import y`; a level above 1
                # leaves the package, and `y` itself may be a module (`from . import x`)
                base = ".".join(filter(None, [name if node.level == 1 else "", node.module])) if node.level else node.module
                imported |= {base, *(f"{base}.{alias.name}" for alias in node.names)}
        graph[module] = {m for m in imported if m in known and m != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each cycle that closes a depth-first walk of the graph, as a path back to its start: none means there are none."""
    found, done, path = [], set(), []

    def visit(module: str) -> None:
        path.append(module)
        for imported in sorted(graph[module]):
            if imported in path:
                found.append(path[path.index(imported) :] + [imported])
            elif imported not in done:
                visit(imported)
        done.add(path.pop())

    for module in sorted(graph):
        if module not in done:
            visit(module)
    return found


def test_captionlib_has_no_import_cycle():
    named = [" -> ".join(cycle) for cycle in cycles(import_graph(PACKAGE))]
    assert not named, "import cycles (imports inside functions count):\n" + "\n".join(named)


def test_the_walk_sees_relative_imports_inside_functions(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from .b import f\n")
    (package / "b.py").write_text("import os\n\n\ndef f():\n    from . import a\n    from .c import g\n")
    (package / "c.py").write_text("import pkg.d\n")
    (package / "d.py").write_text("")
    graph = import_graph(package)
    assert graph == {"pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg", "pkg.a", "pkg.c"}, "pkg.c": {"pkg.d"}, "pkg.d": set()}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.a"]]
