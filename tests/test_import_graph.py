"""mriscan's modules import one another without cycles: a lower stage never imports a higher one.

Every import counts, at module level or inside a function (where a cycle hides until it bites at
run time), ``from mriscan.x import y`` naming module ``mriscan.x.y`` when that is a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "mriscan"


def module_name(path: Path, root: Path = PACKAGE) -> str:
    """``mriscan/io/reader.py`` -> ``mriscan.io.reader``; a package's ``__init__.py`` -> the package."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, name: str, is_package: bool, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that the code of module ``name`` imports anywhere."""
    found: set[str] = set()
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {module for module in found if module in modules and module != name}


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports."""
    paths = {module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    modules = set(paths)
    return {name: imported_modules(path.read_text(), name, path.name == "__init__.py", modules)
            for name, path in paths.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None when the graph has none.

    Examples
    --------
    >>> find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    True
    >>> find_cycle({"a": {"b"}, "b": {"a"}})
    ['a', 'b', 'a']
    """
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_graph_sees_the_packages_and_imports_inside_functions():
    graph = import_graph()
    assert {"mriscan.io.reader", "mriscan.scan.pipeline", "mriscan.explain.lime", "mriscan.cli"} <= set(graph)
    assert "mriscan.execution.cluster" in graph["mriscan.execution.executor"]  # imported inside a function
    assert "mriscan.explain.keras_explain" in graph["mriscan.explain.lime"]


def test_mriscan_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle) + ". Move the shared part into a lower module."


def test_a_cycle_through_a_function_level_import_is_found(tmp_path):
    package = tmp_path / "mriscan"
    (package / "low").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "low" / "__init__.py").write_text("")
    (package / "low" / "base.py").write_text("def f():\n    from mriscan.high import g\n    return g\n")
    (package / "high.py").write_text("from mriscan.low import base\n")
    assert find_cycle(import_graph(package)) == ["mriscan.high", "mriscan.low.base", "mriscan.high"]


def test_every_package_folder_is_installed():
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {module_name(init.parent / "__init__.py") for init in PACKAGE.rglob("__init__.py")}
    assert folders <= listed, f"missing from pyproject.toml [tool.setuptools] packages: {sorted(folders - listed)}"
