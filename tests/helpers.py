"""Helpers shared by the test modules: a small DOM over ``html.parser`` (to inspect rendered pages), the
in-process command line (``lazarus``), and the fresh-process harness that checks output is byte-identical
across processes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from markdown_it import MarkdownIt

from lazarus_report.render.packing import unpack_result
from lazarus_report.results.analysis import AnalysisResult
from lazarus_report.results.comparison import ComparisonResult
from lazarus_report.results.loading import load_any_result

REPO = Path(__file__).resolve().parents[1]

# What ``preload_blas`` reports on the platforms the suite runs on: Accelerate on macOS; on Linux the
# OpenBLAS that `make install-test` installs (scripts/install_system_deps.sh).
EXPECTED_BLAS = "Accelerate" if sys.platform == "darwin" else "OpenBLAS"

# Every element the report may contain (page + inline SVG). Anything else was injected.
ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "header", "main", "footer", "section", "div", "p",
    "h1", "h2", "h3", "span", "strong", "em", "code", "pre", "ol", "ul", "li", "dl", "dt", "dd", "details",
    "summary", "table", "caption", "thead", "tbody", "tr", "th", "td", "figure", "figcaption", "script",
    "svg", "g", "path", "rect", "line", "text", "tspan", "defs", "lineargradient", "stop", "clippath",
    "input", "label", "h4",  # the lens switch: radio inputs styled as tabs; a compare page's model headings
}  # fmt: skip
# The suite page adds its filter controls and in-page links.
SUITE_TAGS = ALLOWED_TAGS | {
    "a",
    "label",
    "input",
    "select",
    "option",
    "h4",
    "h5",
    "polyline",
    "mark",
}  # polyline: sparklines; mark: the drift section's token
VOID = {"meta", "br", "img", "input", "link", "hr", "source", "wbr", "area", "base", "col", "embed", "param", "track"}
URL_ATTRIBUTES = {"src", "href", "xlink:href", "action", "formaction", "poster", "srcset", "data", "background"}


# --- a tiny DOM over html.parser ------------------------------------------------------------


@dataclass
class Node:
    tag: str
    attrs: dict[str, str | None]
    children: list[Node | str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self) -> Iterator[Node]:
        yield self
        for c in self.children:
            if isinstance(c, Node):
                yield from c.iter()

    def find_all(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list[Node]:
        out = []
        for n in self.iter():
            if n is self:
                continue
            if tag is not None and n.tag != tag:
                continue
            if cls is not None and cls not in (n.attrs.get("class") or "").split():
                continue
            if any(n.attrs.get(k.rstrip("_").replace("_", "-")) != v for k, v in attrs.items()):
                continue
            out.append(n)
        return out

    def find(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> Node:
        found = self.find_all(tag, cls, **attrs)
        assert found, f"no <{tag} class={cls} {attrs}>"
        return found[0]


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs))
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(Node(tag, dict(attrs)))

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def parse(html_text: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(html_text)
    builder.close()
    return builder.root


def embedded_result(doc: Node) -> AnalysisResult | ComparisonResult:
    script = doc.find("script", id="lazarus-result")
    assert script.attrs.get("type") == "application/json"
    return load_any_result(unpack_result(json.loads(script.text())))


def github_like() -> MarkdownIt:
    """A Markdown renderer at least as permissive as GitHub's: raw HTML on, tables and strikethrough on."""
    return MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])


# --- the command line, in-process ------------------------------------------------------------------


def lazarus(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``lazarus ARGS`` in this process (click's ``CliRunner`` over ``lazarus_report.cli.main``, the group the
    console script runs), as a ``CompletedProcess`` (exit code, stdout, stderr): the command's behaviour without
    a process start-up and its imports. ``env`` is set for the call only; ``cwd``: the working directory for
    the call. Keep true processes for what needs one (the console script, signals, exit behaviour)."""
    from click.testing import CliRunner

    from lazarus_report.cli.main import main

    previous = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        result = CliRunner().invoke(main, list(args), env=env)
    finally:
        os.chdir(previous)
    return subprocess.CompletedProcess(["lazarus", *args], result.exit_code, result.stdout, result.stderr)


# --- byte-identical across processes ---------------------------------------------------------------

_FRESH_PROCESS_SCRIPT = """
import hashlib, sys
sys.path.insert(0, {tests!r})
from factories import *
from lazarus_report.render.html import render_html
from lazarus_report.render.markdown import render_markdown
if sys.argv[1] == "warm-up-first":
    render_html(make_result(num_layers=6))  # advances vl-convert's global SVG id counter
pages = {pages}
assert not any(m == "mlx" or m.startswith(("mlx.", "mlx_lm")) for m in sys.modules), "renderers import mlx"
print(" ".join(hashlib.sha256(p.encode()).hexdigest() for p in pages))
"""


def sha256s(pages: Iterable[str]) -> list[str]:
    return [hashlib.sha256(p.encode()).hexdigest() for p in pages]


def digests_in_a_fresh_process(pages: str, *, warm_up: bool, hash_seed: str) -> list[str]:
    """sha256 of each page that the Python expression ``pages`` (a list; ``tests/factories.py``, ``render_html``
    and ``render_markdown`` in scope) renders in a new interpreter with ``PYTHONHASHSEED=hash_seed``; with
    ``warm_up``, after rendering another report first (vl-convert numbers SVG ids from a process-global
    counter). The child also checks that rendering imported no MLX."""
    code = _FRESH_PROCESS_SCRIPT.format(tests=str(REPO / "tests"), pages=pages)
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    mode = "warm-up-first" if warm_up else "plain"
    proc = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def render_samples_to(out: Path, names: Iterable[str], samples: Path) -> dict[str, Path]:
    """Each named sample's committed JSON re-rendered by this checkout into ``out`` (browser tests read the pages
    the current code writes, not the committed HTML)."""
    from lazarus_report.render import load_result_file
    from lazarus_report.render.html import render_html

    files = {}
    for name in names:
        path = out / f"{name}.html"
        path.write_text(render_html(load_result_file(samples / f"{name}.json")), encoding="utf-8")
        files[name] = path
    return files
