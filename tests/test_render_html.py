"""The self-contained HTML report: structure, escaping, embedded data, determinism, size."""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
from factories import HOSTILE_STRINGS, make_hostile_result, make_result, make_untracked_result

from lazarus_report.render.environment import html_environment
from lazarus_report.render.files import unpack_result
from lazarus_report.render.formatting import clean_text, visible_token
from lazarus_report.render.html import render_html
from lazarus_report.result import AnalysisResult, ComparisonResult, load_any_result

REPO = Path(__file__).resolve().parents[1]

INTERACTIVE_BUDGET = 1_200_000  # bytes, 30-layer report
STATIC_BUDGET = 300_000

# Every element the report may contain (page + inline SVG). Anything else was injected.
ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "header", "main", "footer", "section", "div", "p",
    "h1", "h2", "h3", "span", "strong", "em", "code", "pre", "ol", "ul", "li", "dl", "dt", "dd", "details",
    "summary", "table", "caption", "thead", "tbody", "tr", "th", "td", "figure", "figcaption", "script",
    "svg", "g", "path", "rect", "line", "text", "defs", "lineargradient", "stop", "clippath",
}  # fmt: skip
VOID = {"meta", "br", "img", "input", "link", "hr", "source", "wbr", "area", "base", "col", "embed", "param", "track"}


# --- a tiny DOM over html.parser ------------------------------------------------------------


@dataclass
class Node:
    tag: str
    attrs: dict[str, str | None]
    children: list[Node | str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self):
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


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo() -> AnalysisResult:
    return make_result()


@pytest.fixture(scope="module")
def demo_html(demo) -> str:
    return render_html(demo)


@pytest.fixture(scope="module")
def demo_static(demo) -> str:
    return render_html(demo, static=True)


@pytest.fixture(scope="module")
def hostile() -> AnalysisResult:
    return make_hostile_result()


@pytest.fixture(scope="module")
def hostile_html(hostile) -> str:
    return render_html(hostile)


@pytest.fixture(scope="module")
def hostile_static(hostile) -> str:
    return render_html(hostile, static=True)


# --- structure ---------------------------------------------------------------------------------


def test_page_has_every_section(demo_html, demo):
    doc = parse(demo_html)
    ids = {n.attrs.get("id") for n in doc.iter()}
    for section in ("run0-overview", "summary", "run0-final", "run0-charts", "run0-layers"):
        assert section in ids
    assert doc.find("title").text() == "Logit lens: smollm2-135m-instruct"
    footer = doc.find("footer")
    assert footer.find("details").find("summary").text().endswith("Versions, settings and timings")
    assert "mlx-lm" in footer.text() and "0.32.2" in footer.text()


def test_prompt_is_shown_as_formatted_with_token_chips(demo_html, demo):
    doc = parse(demo_html)
    assert doc.find("pre", cls="prompt").text() == demo.formatted_prompt
    chips = doc.find("ol", cls="chips").find_all("li")
    assert [li.find("span", cls="tok").text() for li in chips] == [visible_token(t) for t in demo.tokens]
    # Whitespace is visible: " capital" shows a space marker, "\n" a newline marker.
    markers = {m.text() for m in doc.find("ol", cls="chips").find_all("span", cls="mk")}
    assert {"\u2423", "\u21b5"} <= markers


def test_tracked_tokens_and_multi_token_warning(demo_html, demo):
    doc = parse(demo_html)
    warnings = [n.text() for n in doc.find_all("p", cls="warning")]
    assert len(warnings) == len(demo.warnings) == 1
    assert "3 tokens" in warnings[0] and "Lyonnais" in warnings[0]
    tracked_table = doc.find("table", cls="data")  # first table: the tracked tokens
    assert [r.find("td").text() for r in tracked_table.find("tbody").find_all("tr")] == ["\u2423Paris", "\u2423Ly"]


def test_final_top_k_table_with_bars(demo_html, demo):
    doc = parse(demo_html)
    table = doc.find("section", id="run0-final").find("table")
    rows = table.find("tbody").find_all("tr")
    assert len(rows) == len(demo.final_prediction) == 10
    assert rows[0].find("span", cls="tok").text() == "\u2423Paris"
    assert rows[0].find("span", cls="num").text() == "77.2%"
    bar = rows[0].find("span", cls="bar").find("span")
    assert bar.attrs["style"] == f"width:{100 * demo.final_prediction[0].prob:.1f}%"


def test_layer_table_rows_and_emergence_highlight(demo_html, demo):
    doc = parse(demo_html)
    table = doc.find("section", id="run0-layers").find("table")
    rows = table.find("tbody").find_all("tr")
    assert len(rows) == len(demo.layer_predictions) == 30
    highlighted = [r for r in rows if "emergence" in (r.attrs.get("class") or "")]
    assert len(highlighted) == 1
    emergence = demo.token_evolutions[0].emergence_layer
    assert highlighted[0].find("th").text().strip() == str(emergence)
    assert "top-1 from here" in highlighted[0].text()
    # Columns: layer, top-1, prob, entropy, KL, rank of final + (prob, rank) per tracked token.
    header = table.find("thead").find_all("th")
    assert len(header) == 6 + 2 * len(demo.tracked_tokens)
    assert len(rows[0].find_all("td")) == 5 + 2 * len(demo.tracked_tokens)


def test_tables_are_accessible(demo_html):
    doc = parse(demo_html)
    tables = doc.find_all("table")
    assert len(tables) == 3
    for table in tables:
        assert table.find_all("caption"), "every table has a caption"
        assert all(th.attrs.get("scope") == "col" for th in table.find("thead").find_all("th"))
        assert all(tr.find("th").attrs.get("scope") == "row" for tr in table.find("tbody").find_all("tr"))
        wrapper_ok = any(
            "table-scroll" in (n.attrs.get("class") or "") and table in list(n.iter()) for n in doc.find_all("div")
        )
        assert wrapper_ok, "tables scroll sideways on narrow screens"


def test_page_declares_colour_schemes_print_and_viewport(demo_html):
    doc = parse(demo_html)
    assert doc.find("meta", name="viewport").attrs["content"].startswith("width=device-width")
    css = doc.find("style").text()
    assert "@media (prefers-color-scheme: dark)" in css
    assert "@media print" in css
    assert "@media (max-width: 640px)" in css


def test_summary_is_rendered_markdown(demo_html):
    summary = parse(demo_html).find("section", id="summary")
    items = [li.text() for li in summary.find_all("li")]
    assert items[0] == "Lens: logit lens."
    assert items[1].startswith("Final prediction: \u2423Paris at 77.2%")
    assert any(i.startswith("Emergence: \u2423Paris is first the top-1 prediction at layer 17") for i in items)
    assert summary.find_all("code"), "tokens are code spans"


# --- charts ------------------------------------------------------------------------------------


def test_each_chart_has_static_svg_and_interactive_spec(demo_html):
    doc = parse(demo_html)
    figures = doc.find_all("figure", cls="chart")
    assert [f.attrs["id"] for f in figures] == ["run0-trajectory", "run0-entropy-kl", "run0-heatmap"]
    for fig in figures:
        assert len(fig.find("div", cls="chart-static").find_all("svg")) == 1
        assert "hidden" in fig.find("div", cls="chart-live").attrs  # shown once vegaEmbed has rendered
        spec = json.loads(doc.find("script", id=fig.attrs["data-spec"]).text())
        assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/v6")
        assert fig.find("div", cls="chart-body").attrs.get("role") == "img"


def test_vega_bundle_is_inlined_once(demo_html):
    doc = parse(demo_html)
    classic = [s for s in doc.find_all("script") if "type" not in s.attrs]
    assert len(classic) == 2  # the bundle and the page script
    assert sum("window.vegaEmbed=" in s.text() for s in classic) == 1
    assert demo_html.count("window.vegaEmbed=") == 1


def test_svg_ids_are_unique_and_scoped_per_chart(demo_html):
    doc = parse(demo_html)
    ids = [n.attrs["id"] for n in doc.iter() if "id" in n.attrs]
    assert len(ids) == len(set(ids))
    for fig in doc.find_all("figure", cls="chart"):
        svg = fig.find("svg")
        inner = [n.attrs["id"] for n in svg.iter() if "id" in n.attrs]
        assert all(i.startswith(fig.attrs["id"] + "-") for i in inner)


def test_long_prompt_heatmap_says_it_shows_the_last_positions(demo_html):
    text = parse(demo_html).find("section", id="run0-charts").text()
    assert "the last 12 of 34 prompt positions" in text


def test_untracked_result_without_grid_still_renders(tmp_path):
    result = make_untracked_result()
    doc = parse(render_html(result))
    assert [f.attrs["id"] for f in doc.find_all("figure", cls="chart")] == ["run0-trajectory", "run0-entropy-kl"]
    assert "No tracked tokens" in doc.find("section", id="run0-overview").text()
    assert len(doc.find("section", id="run0-layers").find_all("tr", cls="emergence")) == 1


# --- static mode -------------------------------------------------------------------------------


def test_static_mode_has_no_scripts_but_the_result_json(demo_static, demo):
    doc = parse(demo_static)
    scripts = doc.find_all("script")
    assert [(s.attrs.get("type"), s.attrs.get("id")) for s in scripts] == [("application/json", "lazarus-result")]
    assert "vegaEmbed" not in demo_static
    assert len(doc.find_all("figure", cls="chart")) == 3
    assert all(f.find_all("svg") for f in doc.find_all("figure", cls="chart"))
    assert embedded_result(doc) == demo


# --- self-containment, safety ------------------------------------------------------------------


URL_ATTRIBUTES = {"src", "href", "xlink:href", "action", "formaction", "poster", "srcset", "data", "background"}


@pytest.mark.parametrize("variant", ["demo_html", "demo_static", "hostile_html", "hostile_static"])
def test_nothing_is_loaded_from_elsewhere(variant, request):
    doc = parse(request.getfixturevalue(variant))
    for node in doc.iter():
        for name, value in node.attrs.items():
            if name in URL_ATTRIBUTES:
                # Only in-page references (SVG gradients/clips), never http(s), data: or javascript:.
                assert value is not None and value.startswith("#"), f"<{node.tag} {name}={value!r}>"
    assert all(n.tag not in ("link", "img", "iframe", "object", "embed", "a", "base") for n in doc.iter())
    if variant.startswith("demo"):
        # No model string carries a URL here, so any http(s):// in an attribute would be ours.
        urls = [(n.tag, k, v) for n in doc.iter() for k, v in n.attrs.items() if "http" in (v or "")]
        assert {k for _, k, _ in urls} <= {"xmlns", "xmlns:xlink"}, urls


@pytest.mark.parametrize("variant", ["hostile_html", "hostile_static"])
def test_hostile_tokens_inject_nothing(variant, request, hostile):
    html_text = request.getfixturevalue(variant)
    doc = parse(html_text)
    tags = {n.tag for n in doc.iter()} - {"#document"}
    assert tags <= ALLOWED_TAGS, tags - ALLOWED_TAGS
    for node in doc.iter():
        for name, value in node.attrs.items():
            assert not name.startswith("on"), f"event handler attribute on <{node.tag}>"
            assert not (value or "").strip().lower().startswith("javascript:")
    scripts = doc.find_all("script")
    expected = 1 if variant == "hostile_static" else 1 + 3 + 2
    assert len(scripts) == expected
    assert "49" not in doc.find("pre", cls="prompt").text()


def test_hostile_strings_appear_as_text(hostile_html, hostile):
    doc = parse(hostile_html)
    assert doc.find("pre", cls="prompt").text() == clean_text(hostile.formatted_prompt)
    chips = [li.find("span", cls="tok").text() for li in doc.find("ol", cls="chips").find_all("li")]
    assert chips == [visible_token(t) for t in hostile.tokens]
    for s in HOSTILE_STRINGS:
        assert visible_token(s) in chips
    assert doc.find("h1").text() == "<b>evil</b>|`model`{{ 7*7 }}\u27e8U+202E\u27e9\u27e8U+D800\u27e9"
    assert "<img src=x onerror=alert(2)>" in doc.find("section", id="run0-overview").text()
    # Bidi overrides never reach the page raw; lone surrogates cannot (they are not UTF-8).
    assert "\u202e" not in "".join(n.text() for n in doc.find_all("section"))
    hostile_html.encode("utf-8")  # strict: raises on a lone surrogate


def test_hostile_strings_stay_data_in_chart_specs(hostile_html):
    doc = parse(hostile_html)
    for chart in ("trajectory", "heatmap"):
        raw = doc.find("script", id=f"spec-run0-{chart}").text()
        assert "<" not in raw and ">" not in raw and "&" not in raw  # |tojson escapes < > & '
        assert visible_token(HOSTILE_STRINGS[0]) in json.dumps(json.loads(raw), ensure_ascii=False)


def test_embedded_json_round_trips(demo_html, hostile_html, demo, hostile):
    assert embedded_result(parse(demo_html)) == demo
    assert embedded_result(parse(hostile_html)) == hostile  # incl. lone surrogates and U+202E


def test_every_template_is_autoescaped():
    env = html_environment()
    assert env.autoescape is True  # not select_autoescape(): *.html.j2 would slip through
    names = env.list_templates()
    assert "html/page.html.j2" in names
    for name in names:
        if name.endswith(".j2"):
            assert env.from_string("{{ x }}").render(x="<i>") == "&lt;i&gt;"
    assert (importlib.resources.files("lazarus_report.templates") / "html" / "page.html.j2").is_file()


# --- determinism and size ----------------------------------------------------------------------

_RENDER_SCRIPT = """
import hashlib, sys
sys.path.insert(0, {tests!r})
from factories import make_result, make_hostile_result
from lazarus_report.render.html import render_html
if sys.argv[1] == "warm-up-first":
    render_html(make_hostile_result())  # advances vl-convert's global SVG id counter
out = [hashlib.sha256(render_html(make_result(), static=s).encode()).hexdigest() for s in (False, True)]
assert not any(m == "mlx" or m.startswith(("mlx.", "mlx_lm")) for m in sys.modules), "renderers import mlx"
print(" ".join(out))
"""


def test_output_is_byte_identical_across_processes(demo_html, demo_static):
    code = _RENDER_SCRIPT.format(tests=str(REPO / "tests"))
    digests = []
    for seed, mode in (("1", "plain"), ("2", "warm-up-first")):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, env=env, cwd=REPO)
        assert out.returncode == 0, out.stderr
        digests.append(out.stdout.split())
    here = [hashlib.sha256(h.encode()).hexdigest() for h in (demo_html, demo_static)]
    assert digests[0] == digests[1] == here


def test_sizes_stay_within_budget(demo_html, demo_static):
    interactive = len(demo_html.encode("utf-8"))
    static = len(demo_static.encode("utf-8"))
    print(f"30-layer report: interactive {interactive:,} bytes, static {static:,} bytes")
    assert interactive <= INTERACTIVE_BUDGET - 100_000  # keep a margin: prompts and top-k vary
    assert static <= STATIC_BUDGET
