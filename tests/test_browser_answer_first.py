"""Issue 23 in a real browser (headless Debian Chromium via Playwright, never a downloaded browser), on the
committed sample results: the compare page answers first (its verdict within the first screen at 1280 px and
the first two at 390 px, the whole page at most 8 phone screens), and dark-mode chart text is readable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import CHROMIUM
from helpers import render_samples_to

SAMPLES = Path(__file__).resolve().parents[1] / "sample_reports"
PAGES = [
    "compare-base-vs-weather-adapter-tuned",
    "compare-base-vs-weather-adapter",
    "suite-weather-adapter",
    "analyze-capital-raw",
]
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
    return render_samples_to(tmp_path_factory.mktemp("answer-first"), PAGES, SAMPLES)


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


# Every text of every drawn chart with the colour behind it (the topmost filled shape under its centre, else
# the chart's background) and their WCAG contrast ratio.
CONTRASTS = r"""(background) => {
  const rgb = (c) => { const m = (c || "").match(/[\d.]+/g); return m ? m.slice(0, 3).map(Number) : null; };
  const lin = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  const lum = (c) => 0.2126 * lin(c[0]) + 0.7152 * lin(c[1]) + 0.0722 * lin(c[2]);
  const out = [];
  document.querySelectorAll("figure.chart.is-live .chart-live svg").forEach((svg) => {
    const shapes = [...svg.querySelectorAll("path, rect")].filter((e) => !e.closest(".role-axis, .role-legend, .role-title"));
    svg.querySelectorAll("text").forEach((t) => {
      const st = getComputedStyle(t);
      const fill = rgb(st.fill);
      const box = t.getBoundingClientRect();
      if (!fill || !t.textContent.trim() || box.width === 0 || +st.opacity === 0) return;
      const x = box.left + box.width / 2, y = box.top + box.height / 2;
      let bg = background, onShape = false;
      for (const e of shapes) {
        const r = e.getBoundingClientRect(), fs = getComputedStyle(e), c = rgb(fs.fill);
        if (c && fs.fill !== "none" && +(fs.fillOpacity || 1) > 0.5 && r.width < 2000 &&
            x >= r.left && x <= r.right && y >= r.top && y <= r.bottom) { bg = c; onShape = true; }
      }
      const a = lum(fill), b = lum(bg);
      out.push([svg.closest("figure").id, t.textContent.slice(0, 24), onShape, (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)]);
    });
  });
  return out;
}"""


@pytest.mark.parametrize("name", ["compare-base-vs-weather-adapter-tuned", "analyze-capital-raw"])
def test_dark_mode_chart_text_is_readable(chromium, pages, name):
    ctx, page = _open(chromium, pages[name], 1280, color_scheme="dark")
    try:
        texts = page.evaluate(CONTRASTS, [26, 26, 26])  # the dark chart background, #1a1a1a
    finally:
        ctx.close()
    assert len(texts) > 50
    # Labels, keys and titles on the chart's background (heatmap column labels, the compare key, emergence
    # labels): WCAG AA, 4.5:1. Text inside a heatmap cell: 4.4:1 (the 60-70% bin is 4.47:1 with dark text).
    faint = [t for t in texts if t[3] < (4.4 if t[2] else 4.5)]
    assert not faint, faint[:10]
