"""Issue 23 in a real browser (headless Debian Chromium via Playwright, never a downloaded browser), on the
committed sample results: the compare page answers first (its verdict within the first screen at 1280 px and
the first two at 390 px, the whole page at most 8 phone screens), and dark-mode chart text is readable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import CHROMIUM

from lazarus_report.render.html import render_html
from lazarus_report.render.packing import load_result_file

SAMPLES = Path(__file__).resolve().parents[1] / "sample_reports"
PAGES = ["compare-base-vs-weather-adapter-tuned", "compare-base-vs-weather-adapter", "suite-weather-adapter"]
SCREEN = 800

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} not installed (apt-get install chromium)"),
]

# The top of an element in page coordinates, and the page's height.
TOP = "(sel) => { const e = document.querySelector(sel); return e ? e.getBoundingClientRect().top + scrollY : -1; }"
HEIGHT = "() => document.documentElement.scrollHeight"


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("answer-first")
    files = {}
    for name in PAGES:
        path = out / f"{name}.html"
        path.write_text(render_html(load_result_file(SAMPLES / f"{name}.json")), encoding="utf-8")
        files[name] = path
    return files


def _open(chromium, path: Path, width: int, color_scheme: str = "light"):
    ctx = chromium.new_context(viewport={"width": width, "height": SCREEN}, color_scheme=color_scheme, offline=True)
    page = ctx.new_page()
    page.goto(path.as_uri())
    page.wait_for_function("document.querySelectorAll('figure.chart.is-live').length > 0")
    return ctx, page


@pytest.mark.parametrize("name", PAGES[:2])
def test_compare_verdict_comes_first_and_the_phone_page_is_short(chromium, pages, name):
    ctx, page = _open(chromium, pages[name], 1280)
    try:
        assert 0 <= page.evaluate(TOP, "#summary") <= SCREEN
        assert 0 <= page.evaluate(TOP, "#change") < page.evaluate(TOP, "#models")
    finally:
        ctx.close()
    ctx, page = _open(chromium, pages[name], 390)
    try:
        assert 0 <= page.evaluate(TOP, "#summary") <= 2 * SCREEN
        assert 0 <= page.evaluate(TOP, "#change") <= 2 * SCREEN
        height = page.evaluate(HEIGHT)
        assert height <= 8 * SCREEN, f"{height / SCREEN:.1f} screens at 390 px"
        # The change map opens on the last position: its first column, visible without scrolling.
        first = page.evaluate("() => document.querySelector('table.changemap thead th:nth-child(2) .pos').textContent")
        last = page.evaluate(
            "() => Math.max(...[...document.querySelectorAll('table.changemap thead .pos')].map(e => +e.textContent))"
        )
        assert int(first) == last
    finally:
        ctx.close()


def test_suite_lists_failing_then_changed_cases_first(chromium, pages):
    ctx, page = _open(chromium, pages["suite-weather-adapter"], 1280)
    try:
        rows = page.evaluate(
            "() => [...document.querySelectorAll('#cases-table tbody tr')].map(r => r.dataset.status + (r.classList.contains('changed') ? '+changed' : ''))"
        )
        order = {"failed": 0, "passed+changed": 1, "passed": 2}
        assert rows == sorted(rows, key=order.__getitem__) and rows[0] == "failed" and "passed+changed" in rows
        assert 0 <= page.evaluate(TOP, "#summary") <= SCREEN
    finally:
        ctx.close()
