"""Suite reports (HTML, Markdown, terminal text) for a ``SuiteResult``.

Synthetic suites come from ``factories.make_suite``: two models (base vs tuned) or one, 30-layer
results without grids (suite runs compute none), a mix of passed, failed and skipped checks, and
one case that could not run; ``hostile=True`` puts ``HOSTILE_STRINGS`` into every string slot.
"""

from __future__ import annotations

import copy
import html
import json
import re
from xml.etree import ElementTree

import pytest
from altair.utils.schemapi import validate_jsonschema
from altair.vegalite.v6.schema import load_schema
from factories import HOSTILE_STRINGS, make_suite
from helpers import (
    SUITE_TAGS,
    URL_ATTRIBUTES,
    digests_in_a_fresh_process,
    embedded_result,
    github_like,
    parse,
    sha256s,
)

from lazarus_report.render import ResultFormatError, charts, load_result_file, write_report_files
from lazarus_report.render.formatting import visible_token
from lazarus_report.render.html import render_html
from lazarus_report.render.markdown import MAX_CASES, render_markdown
from lazarus_report.render.packing import PACKED_ENCODING_XZ, pack_result, unpack_result
from lazarus_report.render.suite_model import STATUS_ORDER, build_suite_report, case_anchors
from lazarus_report.render.text import render_suite_text
from lazarus_report.results.suite import ERROR, FAILED, SuiteResult

SUITE_INTERACTIVE_BUDGET = 3_000_000  # bytes: a 50-case two-model report (issue text)
# Elements only a suite page has: case links and the table's filter controls.


@pytest.fixture(scope="module")
def suite() -> SuiteResult:
    return make_suite(6)


@pytest.fixture(scope="module")
def pages(suite) -> dict[str, str]:
    return {"interactive": render_html(suite), "static": render_html(suite, static=True)}


@pytest.fixture(scope="module")
def hostile() -> SuiteResult:
    return make_suite(len(HOSTILE_STRINGS) + 2, hostile=True)


@pytest.fixture(scope="module")
def hostile_pages(hostile) -> dict[str, str]:
    return {"interactive": render_html(hostile), "static": render_html(hostile, static=True)}


@pytest.fixture(scope="module")
def big() -> SuiteResult:
    return make_suite(50)


def _rows(rendered: str) -> list[list[str]]:
    return [re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", tr, re.S) for tr in re.findall(r"<tr>(.*?)</tr>", rendered, re.S)]


def _patched(doc, chart_id: str) -> dict:
    """A chart's spec as the page script rebuilds it (see report.js)."""
    spec = json.loads(doc.find("script", id=f"spec-{chart_id}").text())
    patch = spec.get("lazarus-patch")
    if patch is None:
        return spec
    spec = json.loads(doc.find("script", id=patch["base"]).text())
    for op in patch["ops"]:
        path = op[0]
        if not path:
            spec = op[1]
            continue
        parent = spec
        for key in path[:-1]:
            parent = parent[key]
        if len(op) > 1:
            parent[path[-1]] = op[1]
        else:
            del parent[path[-1]]
    return spec


# --- what the page shows ------------------------------------------------------------------------


def test_page_has_a_verdict_and_every_section(pages, suite):
    doc = parse(pages["interactive"])
    assert doc.find("title").text() == "Suite: capitals (logit lens)"
    header = doc.find("header")
    assert header.find("h1").text() == "capitals"
    verdict = header.find("p", cls="verdict")
    assert verdict.find("strong").text() == "ERROR"  # one case could not run
    assert "4 of 6 cases passed · 1 failed · 1 errored" in verdict.text()
    assert [t.text() for t in header.find_all("span", cls="tag")] == ["base", "tuned"]
    assert suite.labels[1] in header.text()
    ids = [n.attrs.get("id") for n in doc.iter() if "id" in n.attrs]
    for section in ("summary", "overview", "emergence", "cases"):
        assert section in ids
    assert len(ids) == len(set(ids)), "ids are unique"
    summary = doc.find("section", id="summary")
    assert "italy-02" in summary.text() and "could not run" in summary.text()


def test_overview_has_a_row_per_case_linking_to_its_section(pages, suite):
    doc = parse(pages["interactive"])
    report = build_suite_report(suite)
    table = doc.find("table", id="cases-table")
    rows = table.find("tbody").find_all("tr")
    assert len(rows) == len(suite.cases)
    for row, case in zip(rows, report.verdict_order):  # failing first, then changed but passing (issue 23)
        assert row.attrs["data-status"] == case.status
        link = row.find("th").find("a")
        assert link.attrs["href"] == f"#{case.anchor}" and link.text() == case.id
        assert len(row.find_all("td")) + 1 == len(table.find("thead").find_all("th")) or not case.sides
    # Status, target, final top-1 per model, emergence per model, P(target) per model, the change, final JS,
    # top-1 changed, the JS-by-layer sparkline, failing.
    header = [th.text().strip() for th in table.find("thead").find_all("th")]
    assert header == ["Status", "Case", "Target", "Top-1 base", "Top-1 tuned", "Layer base", "Layer tuned",
                      "P base", "P tuned", "Δ P", "JS final", "Top-1 changed", "JS by layer", "Failing"]  # fmt: skip
    assert all(len(row.find_all("td")) + 1 == len(header) for row in rows)  # "could not run" rows too
    rows = [rows[report.verdict_order.index(c)] for c in report.cases]  # back in file order
    failed = rows[2]
    cells = [td.text() for td in failed.find_all("td")]
    assert cells[0] == "✗ failed" and cells[1] == "␣Rome" and cells[4:6] == ["16", "never"]
    assert cells[-1] == "3"
    assert "could not run" in rows[3].text()
    assert rows[5].find_all("td")[1].text() == "none"  # a case without a target
    # Sort keys: numbers for numeric columns, "" (sorted last) where there is no value.
    assert failed.find_all("td")[5].attrs["data-sort"] == "1e9"  # never: after every layer
    assert rows[5].find_all("td")[4].attrs["data-sort"] == ""


def test_one_anchored_section_per_case_failing_ones_open(pages, suite):
    doc = parse(pages["interactive"])
    sections = doc.find("section", id="cases").find_all("details", cls="case")
    report = build_suite_report(suite)
    # failing cases first (as in the Markdown), then the rest in file order
    assert [d.attrs["id"] for d in sections] == [c.anchor for c in report.failures_first]
    statuses = [c.status for c in report.failures_first]
    assert statuses == sorted(statuses, key=lambda s: s not in (FAILED, ERROR))
    for details, case in zip(sections, report.failures_first):
        assert ("open" in details.attrs) == (case.status in (FAILED, ERROR))
        assert re.fullmatch(r"case-[a-z0-9-]+", details.attrs["id"])
        assert details.find("summary").find("h3").text().endswith(case.id)


def test_each_case_reuses_the_single_report_parts(pages, suite):
    doc = parse(pages["interactive"])
    report = build_suite_report(suite)
    for details, view in zip(doc.find_all("details", cls="case"), report.failures_first, strict=True):
        i, case = view.index, suite.cases[view.index]
        if case.error is not None:
            assert "Could not run" in details.find("p", cls="warning").text()
            assert not details.find_all("figure")
            continue
        checks = details.find("table", cls="checks").find("tbody").find_all("tr")
        assert [r.find("th").text() for r in checks] == [c.name for c in case.checks]
        assert details.find("pre", cls="prompt").text() == case.comparison.results[0].formatted_prompt
        final = details.find("section", id=f"c{i}-final")
        assert len(final.find_all("table")) == 2  # both models' top-k, side by side
        assert final.find("h4").text() == "Final predictions"
        figure = details.find("figure", cls="chart")
        assert figure.attrs["id"] == f"c{i}-trajectory" and figure.attrs["data-spec"] == f"spec-c{i}-trajectory"
        layers = details.find("details", cls="case-layers")  # collapsed
        assert "open" not in layers.attrs
        pairs = layers.find("section", id=f"c{i}-comparison").find("table", cls="pairs")
        assert len(pairs.find("tbody").find_all("tr")) == 30


def test_tables_are_accessible(pages):
    doc = parse(pages["interactive"])
    for table in doc.find_all("table"):
        assert table.find_all("caption")
        assert all(th.attrs.get("scope") == "col" for th in table.find("thead").find_all("th"))
        assert all(tr.find("th").attrs.get("scope") == "row" for tr in table.find("tbody").find_all("tr"))


def test_emergence_chart_shows_every_case_with_a_target_never_included(pages, suite):
    doc = parse(pages["interactive"])
    figure = doc.find("section", id="emergence").find("figure", cls="chart")
    assert figure.attrs["id"] == "suite-emergence"
    assert figure.find("div", cls="chart-static").find_all("svg")
    spec = _patched(doc, "suite-emergence")
    rows = spec["datasets"]["d"]
    with_target = [c for c in suite.cases if c.comparison is not None and c.comparison.tracked]
    assert len(rows) == 2 * len(with_target) and {r["m"] for r in rows} == {"base", "tuned"}
    never = [r for r in rows if r["e"] == "never"]
    assert len(never) == 1 and never[0]["y"] > 29  # in the "never" band above the last layer
    assert "never" in spec["layer"][-1]["encoding"]["y"]["axis"]["labelExpr"]
    assert "Not plotted: 2 cases" in doc.find("section", id="emergence").text()


def test_target_change_chart_sorts_cases_by_the_change(pages, suite):
    doc = parse(pages["interactive"])
    figure = doc.find("figure", id="suite-target-change")
    assert figure.find("div", cls="chart-static").find_all("svg")
    spec = _patched(doc, "suite-target-change")
    validate_jsonschema(spec, load_schema())
    report = build_suite_report(suite)
    with_delta = sorted((c for c in report.cases if c.delta is not None), key=lambda c: (c.delta, c.index))
    pairs = spec["datasets"]["pairs"]
    assert [p["id"] for p in pairs] == [c.id for c in with_delta]  # largest drop first
    for p, c in zip(pairs, with_delta):
        assert (p["x"], p["x2"]) == pytest.approx((c.sides[0].target_prob, c.sides[1].target_prob), abs=1e-3)
    # The tolerance band of no_regression_of final_prob: [base - 0.3, base]; a tuned point left of it is
    # exactly a failed no_regression check.
    bands = {b["id"]: b for b in spec["datasets"]["bands"]}
    regression_checks = {c.id: c for s in suite.cases for c in [s] if any(k.check == "no_regression" for k in s.checks)}
    assert set(bands) == {c.id for c in with_delta if c.id in regression_checks} != set()
    for c in with_delta:
        if c.id not in bands:
            continue
        base, tuned = c.sides[0].target_prob, c.sides[1].target_prob
        assert (bands[c.id]["x"], bands[c.id]["x2"]) == pytest.approx((max(0.0, base - 0.3), base), abs=1e-3)
        [check] = [k for k in regression_checks[c.id].checks if k.check == "no_regression"]
        assert (tuned < bands[c.id]["x"] - 1e-3) == (check.status == FAILED)


def test_different_depths_compare_emergence_by_relative_depth():
    suite = make_suite(5, tuned_layers=18)
    doc = parse(render_html(suite))
    assert "relative depth" in doc.find("section", id="emergence").text()
    spec = _patched(doc, "suite-emergence")
    assert spec["layer"][-1]["encoding"]["y"]["title"].endswith("(relative depth)")
    assert all(0 < r["y"] <= 1 or r["e"] == "never" for r in spec["datasets"]["d"])
    trajectory = _patched(doc, "c0-trajectory")
    assert trajectory["vconcat"][1]["layer"][0]["encoding"]["x"]["field"] == "x"


# --- charts ---------------------------------------------------------------------------------------


def test_case_specs_are_patches_of_one_shared_spec(pages, suite):
    doc = parse(pages["interactive"])
    expected = charts.start_suite_charts(build_suite_report(suite))
    schema = load_schema()
    ran = [i for i, c in enumerate(suite.cases) if c.error is None]
    for i in ran:
        spec = _patched(doc, f"c{i}-trajectory")
        assert spec == json.loads(json.dumps(expected[f"c{i}"][0].spec))
        validate_jsonschema(spec, schema)
    bases = {json.loads(doc.find("script", id=f"spec-c{i}-trajectory").text())["lazarus-patch"]["base"] for i in ran}
    assert bases == {"spec-case-trajectory"}
    validate_jsonschema(_patched(doc, "suite-emergence"), schema)


def test_spec_patch_round_trips():
    base = {"a": 1, "b": [1, 2, {"c": 3}], "d": {"e": [1, 2]}, "gone": True}
    for spec in (
        {"a": 1, "b": [1, 2, {"c": 4}], "d": {"e": [1, 2, 3]}, "new": "x"},
        {"a": 2},
        [1, 2],
        base,
    ):
        ops = charts.spec_patch(base, spec)
        rebuilt = copy.deepcopy(base)
        for op in ops:
            if not op[0]:
                rebuilt = op[1]
                continue
            parent = rebuilt
            for key in op[0][:-1]:
                parent = parent[key]
            if len(op) > 1:
                parent[op[0][-1]] = op[1]
            else:
                del parent[op[0][-1]]
        assert rebuilt == spec
    assert charts.spec_patch(base, base) == []


def test_case_charts_have_small_checked_svg_fallbacks(pages):
    doc = parse(pages["interactive"])
    raw = pages["interactive"]
    for figure in doc.find("section", id="cases").find_all("figure", cls="chart"):
        assert "hidden" in figure.find("div", cls="chart-live").attrs
        chart_id = figure.attrs["id"]
        svg = re.search(rf'<figure class="chart" id="{chart_id}".*?(<svg.*?</svg>)', raw, re.S).group(1)
        assert len(svg) < 6_000
        charts.checked_svg(svg)  # only the expected SVG elements, no event attributes, no external href
        assert ElementTree.fromstring(svg).tag.endswith("svg")


def test_compact_svg_draws_the_same_lines_as_the_spec(suite):
    report = build_suite_report(suite)
    chart = charts.start_suite_charts(report)["c0"][0].result()
    paths = re.findall(r'<path fill="none"[^>]* d="([^"]+)"', chart.svg)
    assert len(paths) == 2 * 2 * 2  # two panels x two models x two tracked tokens
    assert all(p.startswith("M") for p in paths)
    # Emergence markers: a circle (base) and a diamond (tuned) in each panel.
    assert chart.svg.count("a4.2,4.2") == 2 * 2 and chart.svg.count("l4.2,-4.2") == 2  # a circle is two arcs


# --- static mode and self-containment -----------------------------------------------------------


def test_static_report_has_no_scripts_and_no_controls(pages, suite):
    doc = parse(pages["static"])
    scripts = doc.find_all("script")
    assert [(s.attrs.get("type"), s.attrs.get("id")) for s in scripts] == [("application/json", "lazarus-result")]
    assert "vegaEmbed" not in pages["static"] and not doc.find_all("input")
    figures = doc.find_all("figure", cls="chart")
    assert len(figures) == 2 + sum(1 for c in suite.cases if c.error is None)  # emergence, P(target) change
    assert all(f.find("div", cls="chart-static").find_all("svg") for f in figures)
    assert "data-spec" not in pages["static"]
    assert embedded_result(doc) == suite


def test_interactive_report_inlines_the_bundle_once_and_hides_the_controls(pages):
    doc = parse(pages["interactive"])
    classic = [s for s in doc.find_all("script") if "type" not in s.attrs]
    assert len(classic) == 3  # the Vega bundle, the page script, the table script
    assert pages["interactive"].count("window.vegaEmbed=") == 1
    assert "hidden" in doc.find("div", id="cases-controls").attrs  # shown by the script


@pytest.mark.parametrize("variant", ["interactive", "static"])
def test_nothing_is_loaded_from_elsewhere(pages, hostile_pages, variant):
    for page in (pages[variant], hostile_pages[variant]):
        doc = parse(page)
        for node in doc.iter():
            for name, value in node.attrs.items():
                if name in URL_ATTRIBUTES:
                    assert value is not None and value.startswith("#"), f"<{node.tag} {name}={value!r}>"
        assert all(n.tag not in ("link", "img", "iframe", "object", "embed", "base") for n in doc.iter())
    urls = [(n.tag, k, v) for n in parse(pages[variant]).iter() for k, v in n.attrs.items() if "http" in (v or "")]
    assert {k for _, k, _ in urls} <= {"xmlns", "xmlns:xlink"}, urls


# --- hostile strings ----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["interactive", "static"])
def test_hostile_suite_injects_nothing_in_html(hostile_pages, hostile, variant):
    doc = parse(hostile_pages[variant].encode("utf-8").decode("utf-8"))  # strict: no lone surrogates
    tags = {n.tag for n in doc.iter()} - {"#document"}
    assert tags <= SUITE_TAGS, tags - SUITE_TAGS
    attributes = [(n.tag, name, (value or "").strip().lower()) for n in doc.iter() for name, value in n.attrs.items()]
    assert [a for a in attributes if a[1].startswith("on") or a[2].startswith("javascript:")] == []
    figures = len(doc.find_all("figure", cls="chart"))
    scripts = doc.find_all("script")
    assert len(scripts) == (1 if variant == "static" else 1 + 1 + figures + 3)  # result, shared spec, specs, code
    for script in scripts:
        if script.attrs.get("type") == "application/json":
            assert "<" not in script.text() and ">" not in script.text()
    assert embedded_result(doc) == hostile


def test_hostile_strings_appear_as_text(hostile_pages, hostile):
    doc = parse(hostile_pages["interactive"])
    report = build_suite_report(hostile)
    rows = doc.find("table", id="cases-table").find("tbody").find_all("tr")
    links = [row.find("th").find("a").text() for row in rows]
    assert links == [c.id for c in report.verdict_order]
    assert "</script><script>alert(1)</script>" in links and "{{ 7*7 }}" in links
    assert "⟨U+202E⟩evil" in links and "↵⇥ " in links and "∅" in links  # made visible
    assert doc.find("h1").text() == "<script>alert('suite')</script> `capitals` | {{ 7*7 }}"
    prompts = [p.text() for p in doc.find_all("span", cls="typed")]
    assert "Say </script><script>alert(1)</script><img src=x onerror=alert(1)>" in prompts
    text = "".join(n.text() for n in doc.find_all("main"))
    assert "\u202e" not in text
    targets = {t.text() for t in doc.find("table", id="cases-table").find_all("span", cls="tok")}
    assert {visible_token(s) for s in HOSTILE_STRINGS[:3]} <= targets


def test_hostile_anchors_are_unique_and_safe(hostile):
    anchors = case_anchors([c.id for c in hostile.cases])
    assert len(set(anchors)) == len(anchors)
    assert all(re.fullmatch(r"case-[a-z0-9-]+", a) for a in anchors)
    assert case_anchors(["a b", "a-b", "A_B", "", "é", "???"]) == [
        "case-a-b", "case-a-b-2", "case-a-b-3", "case-4", "case-e", "case-6",
    ]  # fmt: skip


def test_hostile_markdown_injects_nothing(hostile):
    md = render_markdown(hostile)
    md.encode("utf-8")
    rendered = github_like().render(md)
    tags = set(re.findall(r"<([a-zA-Z][a-zA-Z0-9]*)", rendered))
    assert tags <= {"h1", "h2", "p", "strong", "code", "ul", "li", "table", "thead", "tbody", "tr", "th", "td"}, tags
    assert "href" not in rendered and "<em>" not in rendered and "<img" not in rendered
    assert "{{ 7*7 }}" in html.unescape(rendered)
    for table in [_rows(t) for t in re.findall(r"<table>.*?</table>", rendered, re.S)]:
        assert len({len(r) for r in table}) == 1  # no "|" made an extra cell


def test_hostile_text_is_terminal_safe(hostile):
    text = render_suite_text(hostile)
    text.encode("utf-8")
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069\ud800-\udfff]", text)
    lines = text.splitlines()
    case_lines = [line for line in lines if line.startswith(("  PASS", "  FAIL", "  ERROR", "  SKIP"))]
    assert len(case_lines) == len(hostile.cases)


# --- re-rendering and determinism ---------------------------------------------------------------


def test_report_reloads_as_the_suite_and_re_renders_byte_identical(tmp_path, pages, suite, hostile, hostile_pages):
    for name, page, result in (("s", pages["interactive"], suite), ("h", hostile_pages["static"], hostile)):
        path = tmp_path / f"{name}.html"
        path.write_text(page, encoding="utf-8")
        loaded = load_result_file(path)
        assert isinstance(loaded, SuiteResult) and loaded == result
    assert render_html(load_result_file(tmp_path / "s.html")) == pages["interactive"]
    json_path = tmp_path / "suite.json"
    suite.save(json_path)
    assert load_result_file(json_path) == suite


def test_suite_is_embedded_packed_with_xz(pages):
    doc = parse(pages["interactive"])
    packed = json.loads(doc.find("script", id="lazarus-result").text())
    assert packed["contents"] == "lazarus-report/suite" and packed["encoding"] == PACKED_ENCODING_XZ
    damaged = {**packed, "data": packed["data"][:-40] + "A" * 40}
    with pytest.raises(ResultFormatError, match="damaged"):
        unpack_result(damaged)
    truncated = {**packed, "data": packed["data"][: len(packed["data"]) // 2 // 4 * 4]}
    with pytest.raises(ResultFormatError, match="damaged"):
        unpack_result(truncated)
    assert pack_result({"kind": "lazarus-report/analysis"})["encoding"] == "xz+base64"  # single reports too
    # Reports written before used zlib for analyses and comparisons: they still load.
    import base64
    import zlib

    older = {
        **packed,
        "encoding": "zlib+base64",
        "data": base64.b64encode(zlib.compress(json.dumps({"kind": "x", "n": 1}).encode(), 9)).decode(),
    }
    assert unpack_result(older) == {"kind": "x", "n": 1}


def test_write_report_files_writes_both_and_nothing_else(tmp_path, monkeypatch, suite, pages):
    summary = tmp_path / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    write_report_files(suite, html_path=tmp_path / "out" / "suite.html", markdown_path=tmp_path / "out" / "suite.md")
    assert (tmp_path / "out" / "suite.html").read_text(encoding="utf-8") == pages["interactive"]
    md = render_markdown(suite)
    assert (tmp_path / "out" / "suite.md").read_text(encoding="utf-8") == md
    assert not summary.exists()  # the step summary is the command line's job, not the library's


@pytest.mark.slow  # fresh processes
def test_output_is_byte_identical_across_processes(pages, suite):
    here = sha256s((pages["interactive"], pages["static"], render_markdown(suite)))
    rendered = "[render_html(make_suite(6), static=x) for x in (False, True)] + [render_markdown(make_suite(6))]"
    assert digests_in_a_fresh_process(rendered, warm_up=False, hash_seed="1") == here
    assert digests_in_a_fresh_process(rendered, warm_up=True, hash_seed="2") == here


# --- Markdown -------------------------------------------------------------------------------------


def test_markdown_lists_failures_first(suite):
    md = render_markdown(suite)
    verdict = "**ERROR** · 4 of 6 cases passed · 1 failed · 1 errored · 16 checks\\: 10 passed"
    assert md.startswith(f"# Suite: capitals (logit lens)\n\n{verdict}")
    failures = md.split("**Failures**:\n")[1].split("\n## ")[0]
    failed = "- **italy-02** (failed, line 16)\n  - italy-02\\: tuned final top-1 is ' Milan'"
    assert failed in failures
    assert "- **uk-03** (error, line 22): could not run: model 2" in failures
    rendered = github_like().render(md)
    table = _rows(re.findall(r"<table>.*?</table>", rendered, re.S)[0])
    statuses = [re.sub("<[^>]+>", "", row[0]).replace("changed", "passed") for row in table[1:]]
    assert statuses == sorted(statuses, key=lambda s: STATUS_ORDER[s]) and statuses[:2] == ["error", "failed"]
    assert len({len(r) for r in table}) == 1 and len(table) == 1 + len(suite.cases)
    assert "**Suite file:** suites/capitals.yaml (sha256 5e5e5e5e5e5e)" in md
    assert "**Models:** base: smollm2-135m-instruct (llama, 30 layers" in md


def test_markdown_truncates_beyond_20_cases_and_fits_a_pr_comment(big):
    md = render_markdown(big)
    rendered = github_like().render(md)
    table = _rows(re.findall(r"<table>.*?</table>", rendered, re.S)[0])
    assert len(table) == 1 + MAX_CASES == 21
    assert f"… and {len(big.cases) - MAX_CASES} more cases (see the HTML report)" in md
    # Every failing case comes before any passing one, even when the table is cut.
    failing = sum(1 for c in big.cases if c.status in (FAILED, ERROR))
    statuses = [re.sub("<[^>]+>", "", row[0]) for row in table[1 : failing + 1]]
    assert statuses == ["error"] + ["failed"] * (failing - 1)
    assert len(md) < 20_000  # a GitHub comment holds 65,536 characters
    assert render_markdown(make_suite(60)).count("\n- **") <= MAX_CASES + 1


def test_summary_at_the_top_of_the_page_is_the_markdown_summary(pages, suite):
    items = [li.text() for li in parse(pages["interactive"]).find("section", id="summary").find_all("li")]
    assert items[0].startswith("italy-02 (failed, line 16)")
    assert "italy-02: tuned final top-1 is ' Milan', expected ' Rome'" in items


# --- terminal text ----------------------------------------------------------------------------------


def test_suite_text(suite):
    text = render_suite_text(suite)
    lines = text.splitlines()
    assert lines[0] == "Suite: capitals (suites/capitals.yaml, sha256 5e5e5e5e5e5e)"
    assert lines[1] == "Models: base = smollm2-135m-instruct · tuned = smollm2-135m-instruct + adapters/weather"
    case_lines = [line for line in lines if line.startswith(("  PASS", "  FAIL", "  ERROR"))]
    assert len(case_lines) == 6
    js = build_suite_report(suite).cases[2].final_js
    assert re.match(
        rf"  FAIL   italy-02 +' Rome' / ' Milan' +target ' Rome': 16 / never; JS {js:.3f}, top-1 changed$",
        case_lines[2],
    )
    assert re.match(r"  ERROR  uk-03 +could not run$", case_lines[3])
    assert re.search(r"no target; JS [0-9.]+(, top-1 changed)?$", case_lines[5])
    # The expectation's line (as in the JSON and JUnit), not the case's (16)
    assert "  italy-02 (line 18) FAIL italy-02: tuned final top-1 is ' Milan', expected ' Rome'" in lines
    error = next(line for line in lines if line.startswith("  uk-03 (line 22) ERROR could not run: model 2 ("))
    assert error.endswith("the prompt is longer than the model's context (8192 tokens)")
    counts = "4 of 6 cases passed · 1 failed · 1 errored · 16 checks: 10 passed, 3 failed, 2 skipped, 1 error"
    assert lines[-1] == f"ERROR: {counts}"


# --- one model, sizes ---------------------------------------------------------------------------------


def test_one_model_suite_renders_everywhere():
    suite = make_suite(5, two_models=False, role_checked="tuned")
    doc = parse(render_html(suite))
    header = [th.text().strip() for th in doc.find("table", id="cases-table").find("thead").find_all("th")]
    assert header == ["Status", "Case", "Target", "Top-1 model", "Layer model", "P model", "Failing"]
    details = doc.find_all("details", cls="case")
    assert len(details) == 5
    first = doc.find("details", id=build_suite_report(suite).cases[0].anchor)  # sections come failures first
    assert first.find("section", id="c0-run0-final") and first.find("section", id="c0-run0-layers")
    assert doc.find("figure", id="c0-trajectory")
    spec = _patched(doc, "c1-trajectory")
    assert spec["datasets"]["d"][0]["token"] == ["␣Berlin"] * 30 + ["␣Munich"] * 30
    md = render_markdown(suite)
    assert "also checked as tuned" in md and "| Status | Case | Final top-1 | Target: P(target) |" in md
    text = render_suite_text(suite)
    assert "(also checked as tuned)" in text and "target ' Rome': never" in text


def test_50_case_report_stays_under_budget(big):
    interactive = len(render_html(big).encode("utf-8"))
    static = len(render_html(big, static=True).encode("utf-8"))
    print(f"50-case two-model suite report: interactive {interactive:,} bytes, static {static:,} bytes")
    assert interactive < SUITE_INTERACTIVE_BUDGET - 150_000  # a margin: real prompts and tokens vary
    assert static < interactive - 800_000
