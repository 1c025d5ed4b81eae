"""The self-contained HTML report: structure, escaping, embedded data, determinism, size."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import jinja2
import pytest
from factories import (
    HOSTILE_STRINGS,
    make_comparison,
    make_hostile_answer_comparison,
    make_hostile_answer_result,
    make_hostile_lens_comparison,
    make_hostile_lens_result,
    make_hostile_result,
    make_lens_eval,
    make_result,
    make_suite,
    make_untracked_result,
    with_hostile_change,
)
from helpers import (
    ALLOWED_TAGS,
    SUITE_TAGS,
    URL_ATTRIBUTES,
    digests_in_a_fresh_process,
    embedded_result,
    github_like,
    parse,
    sha256s,
)

import lazarus_report
from lazarus_report.render.environment import html_environment, markdown_environment
from lazarus_report.render.formatting import clean_text, visible_token
from lazarus_report.render.html import render_html
from lazarus_report.render.markdown import render_markdown
from lazarus_report.render.template_files import template_root
from lazarus_report.results.analysis import AnalysisResult
from lazarus_report.results.suite import SuiteResult

INTERACTIVE_BUDGET = 1_200_000  # bytes, 30-layer report
STATIC_BUDGET = 300_000

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
    # Columns: layer, top-1, prob, entropy, KL + (prob, rank) per tracked token, each named by its token;
    # no separate "rank of the final top-1" column, as the final top-1 (␣Paris) is tracked.
    header = table.find("thead").find_all("th")
    assert len(header) == 5 + 2 * len(demo.tracked_tokens)
    assert [th.text().strip() for th in header[5:7]] == ["P(␣Paris)", "Rank of ␣Paris"]
    assert len(rows[0].find_all("td")) == 4 + 2 * len(demo.tracked_tokens)


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
    # The verdict first: the final prediction, where it emerges, the lens and how far to trust it.
    assert items[0].startswith("Final prediction: \u2423Paris at 77.2%")
    assert items[1].startswith("Emergence: \u2423Paris is first the top-1 prediction at layer 17")
    assert items[2] == (
        "Lens: Logit lens, with no held-out fidelity for it on this model: no layer is marked "
        "(unknown is not reliable; lazarus lens eval measures it)."
    )
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


class _RecordingLoader(jinja2.BaseLoader):
    """Passes through to ``inner``, noting every template name loaded."""

    def __init__(self, inner: jinja2.BaseLoader) -> None:
        self.inner = inner
        self.loaded: set[str] = set()

    def get_source(self, environment, template):
        self.loaded.add(template)
        return self.inner.get_source(environment, template)

    def list_templates(self):
        return self.inner.list_templates()


def _templates_used(env: jinja2.Environment, monkeypatch, render) -> tuple[set[str], list[str]]:
    """Templates ``render()`` loads from ``env`` (its cache emptied first, so each is loaded), and its outputs."""
    recorder = _RecordingLoader(env.loader)
    monkeypatch.setattr(env, "loader", recorder)
    env.cache.clear()
    outputs = render()
    env.cache.clear()  # the next test compiles them again through the real loader
    return recorder.loaded, outputs


@pytest.fixture(scope="module")
def hostile_change(tmp_path_factory):
    """A real (tiny-model) base vs LoRA comparison with its change map, tokens made hostile."""
    from test_render_change import tiny_change_comparison

    return with_hostile_change(tiny_change_comparison(tmp_path_factory.mktemp("hostile-change")))


def _hostile_diff():
    """A suite diffed against itself with one probability changed: hostile ids, prompts and tokens on every row."""
    import copy

    from lazarus_report.results.diff import diff_results

    data = make_suite(len(HOSTILE_STRINGS) + 2, hostile=True).to_dict()
    after = copy.deepcopy(data)
    for c in after["cases"]:
        if c["comparison"] and c["comparison"]["tracked"]:
            c["comparison"]["tracked"][0]["final_probs"][1] = 0.0
    return diff_results(data, after)


def _hostile_sweep():
    """A two-step sweep whose case ids, prompts, labels and tokens are hostile strings."""
    from lazarus_report.results.suite import FAILED, PASSED
    from lazarus_report.results.sweep import StepCase, SweepCase, SweepResult, SweepStep

    bad = [s for s in HOSTILE_STRINGS if s]
    cases = [SweepCase(s, s, s, s, 0.1, 3) for s in bad[:3]]

    def step(i: int, status: str) -> SweepStep:
        rows = [StepCase(c.id, status, [], 0.2 * i, i + 1, 2, 0.1, [1, 2], bad[-1]) for c in cases]
        return SweepStep(bad[i], 10 * (i + 1), bad[i], None, "0" * 64, bad[0], rows)

    return SweepResult(bad[0], bad[1], "0" * 64, bad[2], bad[3], "logit", True, cases,
                       [step(0, PASSED), step(1, FAILED)], "last", [], {}, {"lazarus-report": "test"})  # fmt: skip


def _hostile_suite_with_drift():
    """The hostile suite with a hostile drift measurement and a failed max_drift_js check."""
    import dataclasses

    from test_drift import _hostile_result

    from lazarus_report.results.suite import CheckOutcome

    bad = HOSTILE_STRINGS[-1]
    check = CheckOutcome(bad, "max_drift_js", "comparison", bad, bad, "failed", bad, 1)
    suite = make_suite(4, hostile=True)
    return dataclasses.replace(suite, drift=_hostile_result(), drift_checks=[check])


def _hostile_results(hostile_change):
    return [
        make_hostile_result(),
        make_comparison("hostile"),
        make_suite(len(HOSTILE_STRINGS) + 2, hostile=True),
        make_hostile_lens_result(),
        make_hostile_lens_comparison(),
        hostile_change,
        # Answers (issue 19): the answer strip, aligned and side by side.
        make_hostile_answer_result(),
        make_hostile_answer_comparison("aligned"),
        make_hostile_answer_comparison("generated"),
        _hostile_suite_with_drift(),
    ]


def test_every_html_template_escapes_hostile_data(monkeypatch, hostile_change):
    env = html_environment()
    assert env.autoescape is True  # not select_autoescape(): *.html.j2 would slip through
    results = _hostile_results(hostile_change)
    from test_drift import _hostile_result

    from lazarus_report.render.diff_html import render_diff_html
    from lazarus_report.render.drift_html import render_drift_html
    from lazarus_report.render.lens_report import render_lens_eval_html
    from lazarus_report.render.sweep_report import render_sweep_html

    def render_all():
        pages = [render_html(r, static=s) for r in results for s in (0, 1)]
        pages += [render_lens_eval_html(make_lens_eval(hostile=True), static=s) for s in (0, 1)]
        return [*pages, render_diff_html(_hostile_diff()), render_drift_html(_hostile_result()),
                render_sweep_html(_hostile_sweep())]  # fmt: skip

    used, pages = _templates_used(env, monkeypatch, render_all)
    for page in (pages.pop(), pages.pop(), pages.pop()):  # the sweep, drift and diff pages (charts: lines, dots)
        doc = parse(page)
        assert {n.tag for n in doc.iter()} - {"#document"} <= ALLOWED_TAGS | {"circle", "polyline", "a", "mark"}
        assert all(
            (a.attrs.get("href") or "#").startswith("#") for a in doc.find_all("a")
        )  # links within the page only
        assert not any(s in page for s in HOSTILE_STRINGS if "<" in s)
    results = [*results, None]  # the lens eval pages (two, like every result) are not suite pages
    templates = {n for n in env.loader.list_templates() if n.startswith("html/") and n.endswith(".j2")}
    assert "html/page.html.j2" in templates
    assert templates <= used, f"not rendered with hostile data: {sorted(templates - used)}"
    for i, page in enumerate(pages):
        for s in HOSTILE_STRINGS:
            if "<" in s:
                assert s not in page  # markup from the data never reaches the page as markup
        allowed = SUITE_TAGS if isinstance(results[i // 2], SuiteResult) else ALLOWED_TAGS
        tags = {n.tag for n in parse(page).iter()} - {"#document"}
        assert tags <= allowed, tags - allowed


def test_every_markdown_template_escapes_hostile_data(monkeypatch, hostile_change):
    env = markdown_environment()
    import dataclasses

    from test_drift import _hostile_result

    from lazarus_report.render.diff_markdown import render_diff_markdown
    from lazarus_report.render.drift_markdown import render_drift_markdown
    from lazarus_report.render.sweep_report import render_sweep_markdown

    used, docs = _templates_used(
        env,
        monkeypatch,
        lambda: [
            *(render_markdown(r) for r in _hostile_results(hostile_change)),
            render_diff_markdown(_hostile_diff()),
            render_drift_markdown(dataclasses.replace(_hostile_result(), labels=["{{ 7*7 }}", "<i>x</i>"])),
            render_sweep_markdown(_hostile_sweep()),
        ],
    )
    templates = {n for n in env.loader.list_templates() if n.startswith("markdown/") and n.endswith(".j2")}
    assert "markdown/report.md.j2" in templates
    assert templates <= used, f"not rendered with hostile data: {sorted(templates - used)}"
    for doc in docs:
        rendered = github_like().render(doc)
        tags = set(re.findall(r"<([a-zA-Z][a-zA-Z0-9]*)", rendered))
        assert tags <= {
            "h1",
            "h2",
            "h3",
            "h4",
            "p",
            "strong",
            "code",
            "pre",
            "ul",
            "li",
            "table",
            "thead",
            "tbody",
            "tr",
            "th",
            "td",
            "details",  # the diff's collapsed table (GitHub renders both)
            "summary",
        }, tags
        assert "<a " not in rendered and "href=" not in rendered and "<em>" not in rendered
        assert "{{ 7*7 }}" in html.unescape(rendered)  # template syntax in the data stays text


def test_templates_are_found_next_to_the_package():
    # Installed: lazarus_report/templates (package data); a checkout (editable or PYTHONPATH=.): ./templates.
    root = template_root()
    assert (root / "html" / "page.html.j2").is_file()
    package = Path(lazarus_report.__file__).resolve().parent
    assert root in (package / "templates", package.parent / "templates")


# --- determinism and size ----------------------------------------------------------------------


@pytest.mark.slow  # fresh processes
def test_output_is_byte_identical_across_processes(demo_html, demo_static):
    pages = "[render_html(make_result(), static=s) for s in (False, True)]"
    here = sha256s([demo_html, demo_static])
    assert digests_in_a_fresh_process(pages, warm_up=False, hash_seed="1") == here
    assert digests_in_a_fresh_process(pages, warm_up=True, hash_seed="2") == here


def test_sizes_stay_within_budget(demo_html, demo_static):
    interactive = len(demo_html.encode("utf-8"))
    static = len(demo_static.encode("utf-8"))
    print(f"30-layer report: interactive {interactive:,} bytes, static {static:,} bytes")
    assert interactive <= INTERACTIVE_BUDGET - 100_000  # keep a margin: prompts and top-k vary
    assert static <= STATIC_BUDGET
