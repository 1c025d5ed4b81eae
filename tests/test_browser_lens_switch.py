"""The lens switch in a real browser (headless Debian Chromium via Playwright): on the committed tuned-lens
sample (a learned lens with the logit lens read beside it), choosing a lens's tab shows that lens's heatmap and
layer table and hides the others', its charts are drawn when shown, on a desktop and at 390 px."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import CHROMIUM

from lazarus_report.render.html import render_html
from lazarus_report.results.analysis import AnalysisResult

SAMPLES = Path(__file__).resolve().parents[1] / "sample_reports"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} not installed (apt-get install chromium)"),
]

VISIBLE = "(sel) => { const e = document.querySelector(sel); return !!e && e.getClientRects().length > 0; }"


@pytest.fixture(scope="module")
def page_path(tmp_path_factory) -> Path:
    result = AnalysisResult.load(SAMPLES / "analyze-capital-raw-tuned.json")
    path = tmp_path_factory.mktemp("lens-switch") / "page.html"
    path.write_text(render_html(result), encoding="utf-8")
    return path


@pytest.mark.parametrize("width", [1280, 390])
def test_a_tab_shows_its_lens_and_hides_the_others(chromium, page_path, width):
    ctx = chromium.new_context(viewport={"width": width, "height": 800}, offline=True)
    page = ctx.new_page()
    try:
        page.goto(page_path.as_uri())
        page.wait_for_function("document.querySelectorAll('figure.chart.is-live').length > 0")
        assert page.evaluate(VISIBLE, "#run0-heatmap") and page.evaluate(VISIBLE, "#run0-layers")
        assert not page.evaluate(VISIBLE, "#run0-lens1-heatmap") and not page.evaluate(VISIBLE, "#run0-lens1-layers")
        # the hidden lens's charts wait for their tab
        assert not page.evaluate("() => document.querySelector('#run0-lens1-trajectory').classList.contains('is-live')")
        page.click("label[for='run0-lens1-tab']")
        assert page.evaluate(VISIBLE, "#run0-lens1-heatmap") and page.evaluate(VISIBLE, "#run0-lens1-layers")
        assert not page.evaluate(VISIBLE, "#run0-heatmap") and not page.evaluate(VISIBLE, "#run0-layers")
        page.wait_for_function("document.querySelector('#run0-lens1-trajectory').classList.contains('is-live')")
        width_used = page.evaluate(
            "() => document.querySelector('#run0-lens1-trajectory').getBoundingClientRect().width"
        )
        assert 0 < width_used <= width
        assert page.evaluate("() => document.documentElement.scrollWidth") <= width  # no sideways page scroll
        page.click("label[for='run0-tab']")
        assert page.evaluate(VISIBLE, "#run0-heatmap") and not page.evaluate(VISIBLE, "#run0-lens1-heatmap")
    finally:
        ctx.close()


def test_paper_shows_every_lens(chromium, page_path):
    ctx = chromium.new_context(viewport={"width": 1280, "height": 800}, offline=True)
    page = ctx.new_page()
    try:
        page.goto(page_path.as_uri())
        page.emulate_media(media="print")
        assert page.evaluate(VISIBLE, "#run0-heatmap") and page.evaluate(VISIBLE, "#run0-lens1-heatmap")
        assert not page.evaluate(VISIBLE, "label[for='run0-lens1-tab']")
    finally:
        ctx.close()


@pytest.mark.parametrize("width", [1280, 390])
def test_compare_switches_both_models_together(chromium, tmp_path, width):
    from lazarus_report.results.comparison import ComparisonResult

    result = ComparisonResult.load(SAMPLES / "compare-base-vs-weather-adapter-tuned.json")
    path = tmp_path / "compare.html"
    path.write_text(render_html(result), encoding="utf-8")
    ctx = chromium.new_context(viewport={"width": width, "height": 800}, offline=True)
    page = ctx.new_page()
    try:
        page.goto(path.as_uri())
        page.evaluate(
            "document.querySelectorAll('details.lens-fold').forEach(d => { d.open = true; })"
        )  # folded on a phone
        primary = ["#run0-lens-heatmap", "#run1-lens-heatmap"]
        logit = ["#run0-lens1-lens-heatmap", "#run1-lens1-lens-heatmap"]
        page.wait_for_function("document.querySelector('#run1-lens-heatmap').classList.contains('is-live')")
        assert all(page.evaluate(VISIBLE, s) for s in primary) and not any(page.evaluate(VISIBLE, s) for s in logit)
        page.click("label[for='lens-tab-1']")
        assert all(page.evaluate(VISIBLE, s) for s in logit) and not any(page.evaluate(VISIBLE, s) for s in primary)
        for sel in logit:  # both models' heatmaps through the logit lens, drawn once shown
            page.wait_for_function(f"document.querySelector('{sel}').classList.contains('is-live')")
        assert page.evaluate("() => document.documentElement.scrollWidth") <= width
    finally:
        ctx.close()
