"""The package's shape as checked facts: no import circles, private names stay private, short functions,
and the import-layering contract (import-linter, configured in pyproject.toml) holds and catches a violation.

The graph is read from the source with ``ast`` (every ``import`` of the package, at module level or inside a
function), so a circle dodged by a function-level import still counts.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "lazarus_report"
MAX_FUNCTION_LINES = 80
MAX_PRIVATE_IMPORTS = 5
# Why each long function stays whole: a comment line starting with "# Long:" right above its ``def``.
LONG_REASON = "# Long:"


def _modules(package: Path) -> dict[str, Path]:
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    parts = module.split(".") if is_package else module.split(".")[:-1]
    if level:
        parts = parts[: len(parts) - (level - 1)]
    return ".".join(parts + ([target] if target else []))


def import_graph(package: Path) -> tuple[dict[str, set[str]], list[tuple[str, str, str]]]:
    """(module -> modules of the package it imports, [(importer, source module, private name)])."""
    modules = _modules(package)
    root = package.name
    edges: dict[str, set[str]] = defaultdict(set)
    private: list[tuple[str, str, str]] = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                source = (
                    _resolve(module, path.name == "__init__.py", node.level, node.module) if node.level else node.module
                )
                if not source or not (source == root or source.startswith(root + ".")):
                    continue
                for alias in node.names:
                    if f"{source}.{alias.name}" in modules:
                        edges[module].add(f"{source}.{alias.name}")
                        continue
                    edges[module].add(source)
                    if alias.name.startswith("_") and not alias.name.startswith("__") and source != module:
                        private.append((module, source, alias.name))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == root or alias.name.startswith(root + "."):
                        edges[module].add(alias.name)
    return {m: {t for t in ts if t in modules and t != m} for m, ts in edges.items()}, private


def import_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(set(edges) | {t for ts in edges.values() for t in ts}):
        if v not in index:
            visit(v)
    return cycles


def long_functions(package: Path) -> list[str]:
    out = []
    for path in sorted(package.rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                length = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if length > MAX_FUNCTION_LINES and not lines[first - 2].strip().startswith(LONG_REASON):
                    out.append(f"{path.relative_to(package.parent)}:{node.lineno} {node.name} ({length} lines)")
    return out


def test_the_package_has_no_import_cycles():
    edges, _ = import_graph(PACKAGE)
    assert len(edges) > 50  # the walk found the package
    assert import_cycles(edges) == []


def test_the_cycle_check_finds_a_circle_dodged_by_a_function_level_import(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import g\n\ndef f():\n    return g()\n")
    (pkg / "b.py").write_text("def g():\n    from .a import f\n    return f\n")
    (pkg / "c.py").write_text("from . import a\n")
    edges, _ = import_graph(pkg)
    assert import_cycles(edges) == [["pkg.a", "pkg.b"]]


def test_private_names_are_rarely_imported_across_modules():
    _, private = import_graph(PACKAGE)
    assert len(private) <= MAX_PRIVATE_IMPORTS, private


def test_no_function_is_longer_than_80_lines_without_a_reason():
    assert long_functions(PACKAGE) == []


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("import-linter is not installed (it is in the test extra)")
    return subprocess.run(
        [exe, "--no-cache"],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"},
    )


@pytest.mark.slow  # runs lint-imports
def test_the_layering_contract_holds():
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" not in result.stdout.split("Contracts:")[-1].lower() or " 0 broken" in result.stdout


@pytest.mark.slow  # runs lint-imports
def test_the_layering_contract_catches_a_renderer_importing_the_engine(tmp_path):
    shutil.copytree(PACKAGE, tmp_path / "lazarus_report", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    formatting = tmp_path / "lazarus_report" / "render" / "formatting.py"
    formatting.write_text(formatting.read_text() + "\n\ndef _bad():\n    from lazarus_report.engine import run\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert "lazarus_report.render.formatting -> lazarus_report.engine.run" in result.stdout
