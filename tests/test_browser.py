"""The HTML reports (one analysis, a comparison, a suite run) in a real browser: headless Debian
Chromium driven by Playwright.

Uses the system Chromium (/usr/bin/chromium) and never downloads a browser. Checks that every chart
upgrades to an interactive vegaEmbed chart with no console errors and no network requests, that
with JavaScript off every chart still shows as SVG, and that the page fits a phone-width screen; for
a suite, that the case table sorts and filters, and that a closed case draws its chart when opened.
Screenshots go to build/ (report-*.png, compare-*.png, suite-*.png) for a human to look at.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from conftest import CHROMIUM
from factories import HOSTILE_STRINGS, make_comparison, make_hostile_result, make_result, make_suite

from lazarus_report.render.html import render_html

BUILD = Path(__file__).resolve().parents[1] / "build"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} not installed (apt-get install chromium)"),
]

ALL_LIVE = (
    "document.querySelectorAll('figure.chart').length > 0 && "
    "document.querySelectorAll('figure.chart.is-live').length === document.querySelectorAll('figure.chart').length"
)
# On a phone a comparison starts with its heatmaps folded (issue 23): open them, wait for every chart.
OPEN_FOLDED = "document.querySelectorAll('details.fold-narrow').forEach(d => { d.open = true; })"


@pytest.fixture()
def browser_context(chromium):
    """A factory for fresh browser contexts (the module's one Chromium; nothing shared between tests)."""
    contexts = []

    def make(*, javascript: bool = True, width: int = 1280, height: int = 900, color_scheme: str = "light"):
        ctx = chromium.new_context(
            java_script_enabled=javascript,
            viewport={"width": width, "height": height},
            color_scheme=color_scheme,
            offline=True,
        )
        contexts.append(ctx)
        return ctx

    yield make
    for ctx in contexts:
        ctx.close()


@pytest.fixture(scope="module")
def report_files(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("reports")
    files = {}
    reports = (
        ("demo", make_result()),
        ("hostile", make_hostile_result()),
        ("compare", make_comparison("same_tokenizer")),
        ("compare-tokenizers", make_comparison("tokenizers")),
        ("compare-hostile", make_comparison("hostile")),
        ("suite", make_suite(12)),
        ("suite-hostile", make_suite(len(HOSTILE_STRINGS) + 2, hostile=True)),
    )
    for name, result in reports:
        for static in (False, True):
            path = out / f"{name}{'-static' if static else ''}.html"
            path.write_text(render_html(result, static=static), encoding="utf-8")
            files[path.stem] = path
    return files


class PageWatch:
    """Console errors, uncaught exceptions, dialogs and every request a page makes."""

    def __init__(self, page) -> None:
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))

    def foreign_requests(self, own_url: str) -> list[str]:
        return [u for u in self.requests if u != own_url]


def _open(ctx, path: Path, *, wait_live: bool):
    page = ctx.new_page()
    watch = PageWatch(page)
    page.goto(path.as_uri())
    if wait_live:
        page.evaluate(OPEN_FOLDED)
        page.wait_for_function(ALL_LIVE, timeout=30_000)
    return page, watch


CHARTS = {"demo": 3, "hostile": 3, "compare": 4, "compare-tokenizers": 3, "compare-hostile": 4}


@pytest.mark.parametrize("name", ["demo", "hostile", "compare", "compare-tokenizers", "compare-hostile"])
def test_every_chart_renders_interactively_offline(browser_context, report_files, name):
    path = report_files[name]
    page, watch = _open(browser_context(), path, wait_live=True)
    charts = page.locator("figure.chart").count()
    assert charts == CHARTS[name]
    rendered = page.evaluate(
        "document.querySelectorAll('.chart-live.vega-embed > svg, .chart-live.vega-embed > canvas').length"
    )
    assert rendered == charts
    assert page.locator(".chart-static").count() == 0  # replaced by the live charts
    assert watch.errors == []
    assert watch.dialogs == []  # no injected alert() ran
    assert watch.foreign_requests(path.as_uri()) == []
    if name == "demo":
        page.screenshot(path=str(BUILD / "report-desktop.png"), full_page=True)
    if name.startswith("compare"):
        page.screenshot(path=str(BUILD / f"{name}-desktop.png"), full_page=True)


def test_tooltips_work_on_the_live_chart(browser_context, report_files):
    page, watch = _open(browser_context(), report_files["demo"], wait_live=True)
    chart = page.locator("#run0-heatmap .chart-live svg")
    chart.scroll_into_view_if_needed()
    box = chart.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.3)
    page.wait_for_selector("#vg-tooltip-element.visible", timeout=5_000)
    assert "Top-1" in page.locator("#vg-tooltip-element").inner_text()
    assert watch.errors == []


@pytest.mark.parametrize(
    "name", ["demo", "hostile", "demo-static", "compare", "compare-tokenizers-static", "compare-hostile"]
)
def test_charts_show_as_svg_without_javascript(browser_context, report_files, name):
    page, watch = _open(browser_context(javascript=False), report_files[name], wait_live=False)
    assert _static_charts_shown(page) == CHARTS[name.removesuffix("-static")]
    assert watch.foreign_requests(report_files[name].as_uri()) == []
    if name.startswith("compare"):
        page.screenshot(path=str(BUILD / f"{name.removesuffix('-static')}-nojs.png"), full_page=True)


def _static_charts_shown(page) -> int:
    """Every chart figure shows its static SVG at a readable size; returns how many there are."""
    figures = page.locator("figure.chart")
    for i in range(figures.count()):
        svg = figures.nth(i).locator(".chart-static svg:visible")  # one of a static page's two drawings
        assert svg.count() == 1
        box = svg.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 150
    return figures.count()


def test_compare_tooltips_and_notes(browser_context, report_files):
    page, watch = _open(browser_context(), report_files["compare-tokenizers"], wait_live=True)
    notes = page.locator("#models .notes")
    assert notes.is_visible() and "not possible" in notes.inner_text()
    chart = page.locator("#comparison-heatmap .chart-live svg")
    chart.scroll_into_view_if_needed()
    box = chart.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.3)
    page.wait_for_selector("#vg-tooltip-element.visible", timeout=5_000)
    assert "Top-1" in page.locator("#vg-tooltip-element").inner_text()
    assert watch.errors == []


def test_compare_phone_width_layout(browser_context, report_files):
    page, watch = _open(browser_context(width=390, height=844), report_files["compare"], wait_live=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    # The two models stack; wide tables and the heatmaps scroll inside their boxes.
    cards = page.locator("#models .model-card")
    first, second = cards.nth(0).bounding_box(), cards.nth(1).bounding_box()
    assert first is not None and second is not None and second["y"] > first["y"] + first["height"] - 1
    for selector in ("#comparison .table-scroll >> nth=1", "#comparison-heatmap .chart-body"):
        box = page.locator(selector).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    page.screenshot(path=str(BUILD / "compare-phone.png"), full_page=True)
    assert watch.errors == []


def test_static_report_runs_no_script(browser_context, report_files):
    page, watch = _open(browser_context(), report_files["demo-static"], wait_live=False)
    assert page.evaluate("typeof window.vegaEmbed") == "undefined"
    assert page.locator(".chart-static svg:visible").count() == 3
    assert watch.errors == [] and watch.foreign_requests(report_files["demo-static"].as_uri()) == []


def test_phone_width_layout(browser_context, report_files):
    page, watch = _open(browser_context(width=390, height=844), report_files["demo"], wait_live=True)
    # The page itself never scrolls sideways; wide tables and the heatmap scroll inside their boxes.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    for selector in ("#run0-layers .table-scroll", "#run0-heatmap .chart-body"):
        box = page.locator(selector).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    # Line charts shrink to fit.
    line_chart = page.locator("#run0-entropy-kl .chart-live svg").bounding_box()
    assert line_chart is not None and line_chart["width"] <= 390
    page.screenshot(path=str(BUILD / "report-phone.png"), full_page=True)
    assert watch.errors == []


def test_dark_mode_changes_the_page_colours(browser_context, report_files):
    page, _ = _open(browser_context(color_scheme="dark"), report_files["demo"], wait_live=True)
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(20, 23, 28)"
    chart_panel = page.evaluate("getComputedStyle(document.querySelector('.chart-body')).backgroundColor")
    assert chart_panel == "rgb(26, 26, 26)"  # the charts' panel is dark too (no white glare)
    page.screenshot(path=str(BUILD / "report-desktop-dark.png"), full_page=False)


def test_print_media_expands_scroll_boxes(browser_context, report_files):
    page, _ = _open(browser_context(), report_files["demo"], wait_live=True)
    page.emulate_media(media="print")
    overflow = page.evaluate("getComputedStyle(document.querySelector('.table-scroll')).overflowX")
    assert overflow == "visible"


@pytest.fixture(scope="module", autouse=True)
def _build_dir():
    BUILD.mkdir(exist_ok=True)


# --- suites ------------------------------------------------------------------------------------------

OPEN_ALL_CASES = "document.querySelectorAll('details.case').forEach(function (d) { d.open = true; })"


def _case_rows(page) -> list[str]:
    """The visible rows of the case table, as their case ids, in page order."""
    return page.evaluate(
        "Array.from(document.querySelectorAll('#cases-table tbody tr')).filter(r => !r.hidden)"
        ".map(r => r.querySelector('th').textContent)"
    )


@pytest.mark.parametrize("name", ["suite", "suite-hostile"])
def test_suite_charts_render_interactively_when_their_case_opens(browser_context, report_files, name):
    path = report_files[name]
    page, watch = _open(browser_context(), path, wait_live=False)
    # The overview charts (emergence; P(target) base to tuned) and the open (failing) cases' charts draw at
    # once; closed cases wait.
    overview = page.locator("#emergence figure.chart").count()
    assert overview == 2
    opened = page.locator("details.case[open] figure.chart").count()
    page.wait_for_function(
        f"document.querySelectorAll('figure.chart.is-live').length === {opened + overview}", timeout=30_000
    )
    closed = page.locator("details.case:not([open]) figure.chart")
    assert closed.count() > 0 and page.locator("details.case:not([open]) figure.chart.is-live").count() == 0
    page.locator("details.case:not([open]) > summary").first.click()
    page.wait_for_function(f"document.querySelectorAll('figure.chart.is-live').length === {opened + overview + 1}")
    page.evaluate(OPEN_ALL_CASES)
    page.wait_for_function(ALL_LIVE, timeout=60_000)
    figures = page.locator("figure.chart").count()
    rendered = page.evaluate("document.querySelectorAll('.chart-live.vega-embed > svg').length")
    assert rendered == figures == overview + page.locator("details.case figure.chart").count()
    assert watch.errors == []
    assert watch.dialogs == []  # no injected alert() ran
    assert watch.foreign_requests(path.as_uri()) == []
    if name == "suite":
        page.locator("details.case").nth(0).scroll_into_view_if_needed()
        page.screenshot(path=str(BUILD / "suite-desktop.png"), full_page=True)


def test_suite_table_sorts_and_filters(browser_context, report_files):
    page, watch = _open(browser_context(), report_files["suite"], wait_live=False)
    assert page.locator("#cases-controls").is_visible()
    in_file_order = _case_rows(page)
    assert len(in_file_order) == 12
    failing = page.locator("#cases-table thead th", has_text="Failing")
    failing.locator("button").click()
    assert failing.get_attribute("aria-sort") == "ascending"
    counts = page.evaluate(
        "Array.from(document.querySelectorAll('#cases-table tbody tr')).map(r => +r.lastElementChild.textContent)"
    )
    assert counts == sorted(counts) and counts[-1] > 0
    failing.locator("button").click()
    assert failing.get_attribute("aria-sort") == "descending"
    assert _case_rows(page)[0] != in_file_order[0]
    # Emergence: numbers ascending, "never" after every layer, no target last either way.
    layer = page.locator("#cases-table thead th", has_text="Layer tuned")
    layer.locator("button").click()
    cells = page.evaluate(
        "Array.from(document.querySelectorAll('#cases-table tbody tr')).map(r => r.cells[6] && r.cells[6].textContent)"
    )
    numbers = [int(c) for c in cells if c.isdigit()]
    never = cells.count("never")
    assert numbers == sorted(numbers) and never > 0
    assert cells[len(numbers) : len(numbers) + never] == ["never"] * never
    assert set(cells[len(numbers) + never :]) <= {"—", ""}  # no target, could not run: last
    # Filter by text, then by status.
    page.fill("#cases-filter", "ITALY")
    assert sorted(_case_rows(page)) == ["italy-02", "italy-09"]
    assert page.locator("#cases-shown").inner_text() == "2 of 12 cases shown"
    page.fill("#cases-filter", "")
    page.select_option("#cases-status", "failed")
    failed = _case_rows(page)
    assert 0 < len(failed) == page.locator("#cases-table tbody tr[data-status='failed']").count() < 12
    page.select_option("#cases-status", "")
    assert len(_case_rows(page)) == 12
    # A case link jumps to its section and opens it.
    assert page.locator("#case-france-00").get_attribute("open") is None
    page.locator("#cases-table a", has_text="france-00").click()
    assert page.evaluate("location.hash") == "#case-france-00"
    page.wait_for_function("document.getElementById('case-france-00').open")
    page.wait_for_selector("#c0-trajectory.is-live", timeout=30_000)  # its chart draws once open
    page.screenshot(path=str(BUILD / "suite-table.png"))
    assert watch.errors == []


@pytest.mark.parametrize("name", ["suite", "suite-static", "suite-hostile"])
def test_suite_without_javascript_shows_the_svg_charts_and_the_full_table(browser_context, report_files, name):
    page, watch = _open(browser_context(javascript=False), report_files[name], wait_live=False)
    rows = page.locator("#cases-table tbody tr")
    assert rows.count() == page.locator("details.case").count() and rows.count() >= 12
    for i in range(rows.count()):
        assert rows.nth(i).is_visible()
    assert not page.locator("#cases-controls").is_visible()  # hidden (interactive) or absent (static)
    summaries = page.locator("details.case:not([open]) > summary")
    for _ in range(summaries.count()):
        summaries.nth(0).click()  # opening needs no script; the list shrinks as cases open
    overview = page.locator("#emergence figure.chart").count()
    assert _static_charts_shown(page) == overview + page.locator("details.case figure.chart").count()
    assert watch.foreign_requests(report_files[name].as_uri()) == []
    if name == "suite":
        page.screenshot(path=str(BUILD / "suite-nojs.png"), full_page=True)


def test_suite_phone_width_layout(browser_context, report_files):
    page, watch = _open(browser_context(width=390, height=844), report_files["suite"], wait_live=False)
    page.evaluate(OPEN_ALL_CASES)
    page.wait_for_function(ALL_LIVE, timeout=60_000)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    box = page.locator("#overview .table-scroll").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    page.screenshot(path=str(BUILD / "suite-phone.png"), full_page=False)
    assert watch.errors == []


# --- where the models part (a real comparison of a tiny model and its LoRA adapter) -----------------


@pytest.fixture(scope="module")
def change_report(tmp_path_factory) -> Path:
    from test_attribution import N_LAYERS, write_tiny_adapter
    from tiny_models import build_tiny_model

    from lazarus_report.commands.compare import compare_models
    from lazarus_report.core.config import AnalysisConfig, LayerStrategy

    root = tmp_path_factory.mktemp("change-browser")
    build_tiny_model("llama", root / "a", seed=1, num_hidden_layers=N_LAYERS)
    adapter = write_tiny_adapter(str(root / "a"), root / "lora", num_layers=3, zero_b=set())
    config = AnalysisConfig(layer_strategy=LayerStrategy.ALL, use_chat_template=False, track_tokens=[" Paris"])
    c = compare_models(str(root / "a"), str(root / "a"), "The capital of France is", config,
                       adapter2=str(adapter), attribution=True)  # fmt: skip
    path = root / "change.html"
    path.write_text(render_html(c), encoding="utf-8")
    return path


@pytest.mark.parametrize("width", [1280, 390])
def test_change_map_cells_show_both_models_on_focus_and_fit_the_page(browser_context, change_report, width):
    page, watch = _open(browser_context(width=width, height=900), change_report, wait_live=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    box = page.locator("#change .table-scroll").first.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
    cell = page.locator("table.changemap td.cell").first
    cell.focus()  # keyboard users reach every cell; its title is the tooltip
    assert page.evaluate("document.activeElement.classList.contains('cell')")
    title = cell.get_attribute("title")
    assert "base:" in title and "tuned:" in title and "JS" in title  # a model and its adapter
    flips = page.locator("table.changemap td.flip")
    if flips.count():
        outline = flips.first.evaluate("e => getComputedStyle(e).outlineStyle")
        assert outline == "solid"
    shaded = page.locator("table.changemap tr.adapted th").first.evaluate("e => getComputedStyle(e).backgroundColor")
    plain = page.locator("table.changemap thead th").first.evaluate("e => getComputedStyle(e).backgroundColor")
    assert shaded != plain
    page.screenshot(path=str(BUILD / f"compare-change-{width}.png"), full_page=False)
    assert watch.errors == [] and watch.foreign_requests(change_report.as_uri()) == []


# --- layout of the committed sample reports: 1280 px, 390 px, dark, A4 ---------------------------------

SAMPLES = Path(__file__).resolve().parents[1] / "sample_reports"
SAMPLE_NAMES = sorted(p.stem for p in SAMPLES.glob("*.json"))
SHOTS = BUILD / "screenshots"

OPEN_ALL = "document.querySelectorAll('details').forEach(function (d) { d.open = true; })"

# Every table wider than its box (the scroll box or, failing that, its parent), as [class, width, box].
TOO_WIDE_TABLES = """(ratio) => Array.from(document.querySelectorAll('table')).map(t => {
  const w = t.getBoundingClientRect().width, box = t.parentElement.getBoundingClientRect().width;
  return [t.className, Math.round(w), Math.round(box)];
}).filter(([, w, box]) => w > box * ratio + 1)"""

# Each chart's drawn width against its figure, and the smallest text it draws (font size times the SVG's scale):
# the SVG on screen (a static chart drawn twice shows one of its drawings; the other has no box).
CHART_SIZES = """() => Array.from(document.querySelectorAll('figure.chart')).map(f => {
  const svg = Array.from(f.querySelectorAll('.chart-body svg')).find(s => s.getBoundingClientRect().width > 0);
  const shown = svg.getBoundingClientRect().width;
  const scale = shown / (parseFloat(svg.getAttribute('width')) || shown);
  let smallest = Infinity;
  svg.querySelectorAll('text').forEach(t => {
    if (!t.textContent.trim() || !t.getBoundingClientRect().height) { return; }
    smallest = Math.min(smallest, parseFloat(getComputedStyle(t).fontSize) * scale);
  });
  return {id: f.id, live: f.classList.contains('is-live'), fit: !!f.querySelector('.chart-body.fit'),
          narrow: !!svg.closest('.svg-narrow'), width: parseFloat(svg.getAttribute('width')),
          ratio: shown / f.getBoundingClientRect().width, smallest: smallest};
})"""


def _sample_result(name: str):
    import json

    from lazarus_report.results.lens_eval import LensEvalResult
    from lazarus_report.results.loading import load_any_result

    path = SAMPLES / f"{name}.json"
    if name.startswith("lens-eval"):
        return LensEvalResult.load(path)
    return load_any_result(json.loads(path.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def sample_files(tmp_path_factory) -> dict[str, Path]:
    """Every committed sample result (sample_reports/*.json) rendered by this checkout, interactive and static."""
    from lazarus_report.render.lens_report import render_lens_eval_html

    out = tmp_path_factory.mktemp("samples")
    files = {}
    for name in SAMPLE_NAMES:
        result = _sample_result(name)
        render = render_lens_eval_html if name.startswith("lens-eval") else render_html
        for static in (False, True):
            path = out / f"{name}{'.static' if static else ''}.html"
            path.write_text(render(result, static=static), encoding="utf-8")
            files[path.stem] = path
    SHOTS.mkdir(parents=True, exist_ok=True)
    return files


# Charts outside closed parts and unchosen lens tabs are interactive.
SHOWN_LIVE = (
    "[...document.querySelectorAll('figure.chart[data-spec]')].filter(f => !f.closest('details:not([open])'))"
    ".filter(f => !f.closest('.lens-panel') || f.closest('.lens-panel').getClientRects().length)"
    ".every(f => f.classList.contains('is-live'))"
)
# Every lens of a lens switch shown stacked (as on a static page), to measure them all.
SHOW_ALL_LENSES = "document.querySelectorAll('.lens-switch.tabs').forEach(s => s.classList.remove('tabs'))"


def _open_everything(page) -> None:
    """Open every collapsed part and wait until every chart is interactive (when the page has scripts): each lens
    tab is chosen in turn (its charts draw when shown), then every lens is shown stacked."""
    page.evaluate(OPEN_ALL)
    if page.locator("figure.chart[data-spec]").count():
        for label in page.query_selector_all("label.lens-tab"):
            label.click()
            page.wait_for_function(SHOWN_LIVE, timeout=120_000)
        page.wait_for_function(ALL_LIVE, timeout=120_000)
    page.evaluate(SHOW_ALL_LENSES)


def test_the_samples_cover_every_kind_of_page():
    kinds = {name.split("-")[0] for name in SAMPLE_NAMES}
    assert {"analyze", "compare", "suite", "lens"} <= kinds


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_sample_tables_fit_their_box_at_1280(browser_context, sample_files, name):
    page, watch = _open(browser_context(width=1280), sample_files[name], wait_live=False)
    page.evaluate(OPEN_ALL)
    assert page.locator("table").count() > 0
    assert page.evaluate(TOO_WIDE_TABLES, 1.0) == []
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    if name.startswith("suite"):
        page.evaluate("document.querySelectorAll('details').forEach(function (d) { d.open = false; })")
        page.locator("#overview").screenshot(path=str(SHOTS / f"{name}-cases-1280.png"))
    assert watch.errors == []


def test_suite_case_table_fits_1280_with_every_column(browser_context, sample_files):
    page, _ = _open(browser_context(width=1280), sample_files["suite-weather-adapter"], wait_live=False)
    table = page.locator("#cases-table").bounding_box()
    box = page.locator("#overview .table-scroll").bounding_box()
    assert table is not None and box is not None
    assert table["width"] <= box["width"] + 0.5
    # The last columns (the change and the failing checks) are on screen, not scrolled off.
    for heading in ("Δ P", "Failing"):
        cell = page.locator("#cases-table thead th", has_text=heading).bounding_box()
        assert cell is not None and cell["x"] + cell["width"] <= box["x"] + box["width"] + 0.5


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_sample_fits_a_phone(browser_context, sample_files, name):
    page, watch = _open(browser_context(width=390, height=844), sample_files[name], wait_live=False)
    _open_everything(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scroll of the page
    assert page.evaluate(TOO_WIDE_TABLES, 1.35) == []
    # Wide data tables become stacked rows: one block per row, each cell labelled (from the header row).
    stacked = page.evaluate(
        "Array.from(document.querySelectorAll('table.data:not(.topk) tbody tr:not(.in-fold) td'))"
        ".filter(td => td.textContent.trim())"
        ".map(td => [getComputedStyle(td).display, td.getAttribute('data-label')])"
    )
    assert stacked and all(display == "block" and label for display, label in stacked)
    charts = page.evaluate(CHART_SIZES)
    # (a drift page, compare --drift, and a sweep page are static by design: their charts are hand-drawn SVG)
    assert charts and all(c["live"] or name.startswith(("drift-", "sweep-")) for c in charts)
    for chart in charts:
        assert chart["ratio"] <= 1.35, chart  # laid out again, not a 2.7x-wide heatmap
        assert chart["smallest"] >= 9, chart  # text keeps its size (it was ~5 px when scaled to fit)
    page.screenshot(path=str(SHOTS / f"{name}-390.png"), full_page=True)
    assert watch.errors == []


STATIC_ON_A_PHONE = [
    "analyze-capital-raw",
    "analyze-weather-chat-tuned",
    "compare-base-vs-weather-adapter",
    "compare-smollm2-vs-gemma3",
    "suite-weather-adapter",
]


@pytest.mark.parametrize("name", STATIC_ON_A_PHONE)
def test_static_sample_fits_a_phone(browser_context, sample_files, name):
    page, watch = _open(browser_context(width=390, height=844), sample_files[f"{name}.static"], wait_live=False)
    page.evaluate(OPEN_ALL)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    # Without a script only the tables labelled in the page stack; the rest scroll sideways inside their box.
    assert (
        page.evaluate(TOO_WIDE_TABLES.replace("querySelectorAll('table')", "querySelectorAll('table.stack')"), 1.35)
        == []
    )
    boxes = page.evaluate(
        "Array.from(document.querySelectorAll('.table-scroll')).map(b => [getComputedStyle(b).overflowX,"
        " b.getBoundingClientRect().right])"
    )
    assert boxes and all(overflow == "auto" and right <= 390 for overflow, right in boxes)
    # Without a script the charts cannot be laid out again: the page shows their narrow drawings (340 px, the
    # heatmap's columns in stacked blocks), at most 1.35x their box (in fact inside it) with text >= 9 px.
    charts = page.evaluate(CHART_SIZES)
    drawn_twice = [c for c in charts if not c["id"].startswith("suite-")]  # the suite overview: vl-convert's
    assert drawn_twice and all(c["narrow"] and c["width"] <= 340 for c in drawn_twice), drawn_twice
    for chart in drawn_twice:
        assert chart["ratio"] <= 1.0 and chart["smallest"] >= 9, chart
    # The suite overview charts (vl-convert's SVG, one drawing) still scale down by at most 1/1.35.
    for chart in (c for c in charts if c not in drawn_twice):
        assert chart["ratio"] <= 1.35 + 0.01 and chart["smallest"] >= 7, chart
    if name.startswith(("analyze", "compare")):
        page.screenshot(path=str(SHOTS / f"{name}.static-390.png"), full_page=True)
    assert watch.errors == []


@pytest.mark.parametrize("name", ["analyze-capital-raw", "compare-base-vs-weather-adapter"])
def test_static_phone_charts_print_wide_and_invert_when_dark(browser_context, sample_files, name):
    path = sample_files[f"{name}.static"]
    page, watch = _open(browser_context(width=390, height=844, color_scheme="dark"), path, wait_live=False)
    shown = (
        "Array.from(document.querySelectorAll('.chart-static svg')).filter(s => s.getBoundingClientRect().width > 0)"
    )
    filters = page.evaluate(f"{shown}.map(s => [!!s.closest('.svg-narrow'), getComputedStyle(s).filter])")
    assert filters and all(narrow and "invert" in f for narrow, f in filters)  # dark: the narrow ones, inverted
    # On paper (even from a phone) the wide drawings print, unfiltered; one wider than an A4 column prints its
    # narrow drawing instead (r19-charts: the comparison heatmap's 986 px would print its text at 6.5 px).
    page.emulate_media(media="print")
    printed = page.evaluate(
        f"{shown}.map(s => [!!s.closest('.svg-narrow'), getComputedStyle(s).filter, !!s.closest('.paper-narrow')])"
    )
    assert len(printed) == len(filters) and all(narrow == paper and f == "none" for narrow, f, paper in printed)
    assert [paper for _, _, paper in printed].count(True) == (1 if name.startswith("compare") else 0)
    page.emulate_media(media="screen")
    page.screenshot(path=str(SHOTS / f"{name}.static-390-dark.png"), full_page=True)
    assert watch.errors == []


def test_compare_heatmap_panels_stack_on_a_phone(browser_context, sample_files):
    path = sample_files["compare-base-vs-weather-adapter"]
    page, _ = _open(browser_context(width=390, height=844), path, wait_live=True)
    panels = page.evaluate(
        "Array.from(document.querySelectorAll('#comparison-heatmap .chart-live svg g.mark-group.role-scope'))"
        ".map(g => g.getBoundingClientRect()).filter(r => r.width > 100).map(r => [r.x, r.y, r.width, r.height])"
    )
    assert len(panels) >= 2
    (x1, y1, _, h1), (x2, y2, _, _) = panels[0], panels[1]
    assert y2 >= y1 + h1 - 1 and abs(x2 - x1) < 40  # model 2 under model 1, not off-screen to the right
    page.locator("#comparison-heatmap").screenshot(path=str(SHOTS / "compare-heatmap-390.png"))


def test_suite_sample_prints_on_at_most_10_a4_pages(browser_context, sample_files):
    page, watch = _open(browser_context(width=1280), sample_files["suite-weather-adapter"], wait_live=False)
    page.wait_for_function("document.querySelectorAll('#emergence figure.chart.is-live').length === 2")
    pdf = page.pdf(format="A4", print_background=True)
    (SHOTS / "suite-weather-adapter.pdf").write_bytes(pdf)
    pages = len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", pdf))
    assert 1 < pages <= 10  # it was 35 with every case expanded, 13 with each failing case's change map (issue 23)
    # The failing cases print (all but their per-layer table and change map: its summary line says where the
    # models part), the passing ones as one line each; the page returns to how it was.
    page.emulate_media(media="print")
    page.evaluate("window.dispatchEvent(new Event('beforeprint'))")
    states = page.evaluate(
        "Array.from(document.querySelectorAll('details.case')).map(d => [d.dataset.status, d.open,"
        " Array.from(d.querySelectorAll('details:not(.case-layers):not(.case-change)')).every(inner => inner.open),"
        " Array.from(d.querySelectorAll('details.case-layers, details.case-change')).some(inner => inner.open)])"
    )
    assert {status for status, _, _, _ in states} == {"passed", "failed"}
    for status, is_open, inner_open, layers_open in states:
        assert is_open == (status == "failed")
        assert inner_open == (status == "failed")
        assert not layers_open
    arrow = page.evaluate(
        "getComputedStyle(document.querySelector('#cases-table th[aria-sort] button'), '::after').content"
    )
    assert arrow == "none"  # no sort arrows on paper
    page.evaluate("window.dispatchEvent(new Event('afterprint'))")
    assert page.locator("details.case[data-status='failed'] details[open]").count() == 0
    assert watch.errors == []


def test_compare_prints_model_details_in_the_footer_not_on_page_1(browser_context, sample_files):
    page, _ = _open(browser_context(width=1280), sample_files["compare-base-vs-weather-adapter"], wait_live=True)
    page.emulate_media(media="print")
    assert not page.locator("#models details.model-details").first.is_visible()
    footer = page.locator(".page-footer .model-print")
    assert footer.is_visible() and "BLAS" in footer.inner_text()
    page.pdf(path=str(SHOTS / "compare-base-vs-weather-adapter.pdf"), format="A4", print_background=True)


def _mean_colour(page, png: bytes) -> list[float]:
    """The mean RGB of a PNG, decoded by the browser (a canvas), 0-255."""
    import base64

    return page.evaluate(
        """async (data) => {
          const img = new Image(); img.src = 'data:image/png;base64,' + data; await img.decode();
          const canvas = document.createElement('canvas'); canvas.width = img.width; canvas.height = img.height;
          const ctx = canvas.getContext('2d'); ctx.drawImage(img, 0, 0);
          const px = ctx.getImageData(0, 0, img.width, img.height).data; const sum = [0, 0, 0];
          for (let i = 0; i < px.length; i += 4) { sum[0] += px[i]; sum[1] += px[i + 1]; sum[2] += px[i + 2]; }
          return sum.map(s => s / (px.length / 4));
        }""",
        base64.b64encode(png).decode(),
    )


@pytest.mark.parametrize("static", [False, True])
def test_dark_mode_charts_are_dark(browser_context, sample_files, static):
    name = "compare-base-vs-weather-adapter" + (".static" if static else "")
    light, _ = _open(browser_context(), sample_files[name], wait_live=not static)
    dark, watch = _open(browser_context(color_scheme="dark"), sample_files[name], wait_live=not static)
    # Mean brightness of the chart box, light page vs dark page: the white panel no longer glares (the
    # heatmap keeps its coloured cells, so only its background darkens).
    for chart_id, most in (("comparison-trajectory", 60), ("comparison-heatmap", 120)):
        shots = [p.locator(f"#{chart_id} .chart-body").screenshot() for p in (light, dark)]
        bright, dim = (sum(_mean_colour(dark, png)) / 3 for png in shots)
        assert bright > 170 and dim < most, (chart_id, bright, dim)
    if not static:
        # The interactive charts get a dark theme (background, axis text), not just a filter.
        background = dark.evaluate(
            "getComputedStyle(document.querySelector('#comparison-trajectory .chart-live svg')).backgroundColor"
        )
        label = dark.evaluate(
            "getComputedStyle(document.querySelector('#comparison-trajectory .chart-live svg .role-axis-label text')).fill"
        )
        assert background == "rgb(26, 26, 26)" and sum(int(v) for v in re.findall(r"\d+", label)[:3]) > 450
    dark.locator("#comparison-trajectory").screenshot(path=str(SHOTS / f"{name}-chart-dark.png"))
    assert watch.errors == []


def test_charts_lay_out_again_when_the_window_changes_width(browser_context, sample_files):
    path = sample_files["compare-base-vs-weather-adapter"]
    page, watch = _open(browser_context(width=1280), path, wait_live=True)
    ratio = (
        "(() => { const f = document.getElementById('comparison-heatmap');"
        " return f.querySelector('.chart-live svg').getBoundingClientRect().width / f.getBoundingClientRect().width; })()"
    )
    wide = page.evaluate(ratio)
    assert wide <= 1.0
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_function(f"{ratio} <= 1.35", timeout=30_000)  # was 2.7x before it was laid out again
    page.set_viewport_size({"width": 1280, "height": 900})
    page.wait_for_function(f"Math.abs({ratio} - {wide}) < 0.02", timeout=30_000)  # back to side by side
    assert watch.errors == []


@pytest.mark.parametrize("name", ["suite-weather-adapter", "compare-base-vs-weather-adapter-tuned"])
def test_sample_tables_fit_an_a4_page(browser_context, sample_files, name):
    # 718 px: A4's 210 mm less the 10 mm side margins, at 96 px per inch (the page's @page rule).
    page, watch = _open(browser_context(width=718), sample_files[name], wait_live=False)
    page.emulate_media(media="print")
    page.evaluate("window.dispatchEvent(new Event('beforeprint'))")
    assert page.evaluate(TOO_WIDE_TABLES, 1.0) == []  # on paper a table cannot scroll: it would be cut off
    assert watch.errors == []
