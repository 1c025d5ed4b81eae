"""The HTML reports (one analysis, and a comparison) in a real browser: headless Debian Chromium
driven by Playwright.

Uses the system Chromium (/usr/bin/chromium) and never downloads a browser. Checks that every chart
upgrades to an interactive vegaEmbed chart with no console errors and no network requests, that
with JavaScript off every chart still shows as SVG, and that the page fits a phone-width screen.
Screenshots go to build/ (report-*.png, compare-*.png) for a human to look at.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from factories import make_comparison, make_hostile_result, make_result
from lazarus_report.render.html import render_html

CHROMIUM = "/usr/bin/chromium"
BUILD = Path(__file__).resolve().parents[1] / "build"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} not installed (apt-get install chromium)"),
]

ALL_LIVE = (
    "document.querySelectorAll('figure.chart').length > 0 && "
    "document.querySelectorAll('figure.chart.is-live').length === document.querySelectorAll('figure.chart').length"
)


@pytest.fixture(scope="module")
def playwright():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture()
def browser_context(playwright, tmp_path):
    """A factory for fresh persistent contexts (a new --user-data-dir each time)."""
    contexts = []

    def make(*, javascript: bool = True, width: int = 1280, height: int = 900, color_scheme: str = "light"):
        ctx = playwright.chromium.launch_persistent_context(
            str(tmp_path / f"profile{len(contexts)}"),
            executable_path=CHROMIUM,
            args=ARGS,
            headless=True,
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


@pytest.mark.parametrize("name", ["demo", "hostile", "demo-static", "compare", "compare-tokenizers-static", "compare-hostile"])
def test_charts_show_as_svg_without_javascript(browser_context, report_files, name):
    page, watch = _open(browser_context(javascript=False), report_files[name], wait_live=False)
    figures = page.locator("figure.chart")
    assert figures.count() == CHARTS[name.removesuffix("-static")]
    for i in range(figures.count()):
        svg = figures.nth(i).locator(".chart-static svg")
        assert svg.count() == 1
        box = svg.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 150
    assert watch.foreign_requests(report_files[name].as_uri()) == []
    if name.startswith("compare"):
        page.screenshot(path=str(BUILD / f"{name.removesuffix('-static')}-nojs.png"), full_page=True)


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
    assert page.locator(".chart-static svg").count() == 3
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
    assert chart_panel == "rgb(255, 255, 255)"  # charts keep their light panel
    page.screenshot(path=str(BUILD / "report-desktop-dark.png"), full_page=False)


def test_print_media_expands_scroll_boxes(browser_context, report_files):
    page, _ = _open(browser_context(), report_files["demo"], wait_live=True)
    page.emulate_media(media="print")
    overflow = page.evaluate("getComputedStyle(document.querySelector('.table-scroll')).overflowX")
    assert overflow == "visible"


@pytest.fixture(scope="module", autouse=True)
def _build_dir():
    BUILD.mkdir(exist_ok=True)
