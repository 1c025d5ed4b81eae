"""The renderers' code stays readable: no function over 80 lines, and no module of render/ imports another
module's private (leading underscore) names; a helper shared across modules gets a public name where it lives."""

from __future__ import annotations

import ast
from pathlib import Path

import lazarus_report.render

RENDER = Path(lazarus_report.render.__file__).parent
MAX_FUNCTION_LINES = 80


def _modules() -> list[tuple[str, ast.Module]]:
    return [(str(path.relative_to(RENDER)), ast.parse(path.read_text())) for path in sorted(RENDER.rglob("*.py"))]


def long_functions(tree: ast.Module) -> list[tuple[str, int]]:
    """(name, lines) of every function or method in ``tree`` longer than MAX_FUNCTION_LINES."""
    return [
        (node.name, node.end_lineno - node.lineno + 1)
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]


def private_imports(tree: ast.Module) -> list[str]:
    """``module.name`` of every private name ``tree`` imports from the package (relative imports included)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("lazarus_report")):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{'.' * node.level}{node.module or ''}.{alias.name}")
    return found


def test_the_checks_see_what_they_look_for() -> None:
    source = (
        "from lazarus_report.core.files import _private_helper\nfrom .charts import _x, ok\ndef f():\n"
        + "    pass\n" * 80
    )
    tree = ast.parse(source)
    assert private_imports(tree) == ["lazarus_report.core.files._private_helper", ".charts._x"]
    assert long_functions(tree) == [("f", 81)]


def test_no_render_function_is_over_80_lines() -> None:
    assert {path: long for path, tree in _modules() if (long := long_functions(tree))} == {}


def test_render_modules_import_no_private_names() -> None:
    assert {path: names for path, tree in _modules() if (names := private_imports(tree))} == {}
