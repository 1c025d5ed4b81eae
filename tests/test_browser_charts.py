"""The charts in a real browser (headless Debian Chromium via Playwright), on the committed sample results
(real SmolLM2 / Gemma 3 runs): no Vega console warnings or errors on any page type, the nearest-layer
crosshair lists every series, the layer cursor highlights the layer-table row, the probability axis
switches between log and linear, and layer rows can be linked to. Never downloads a browser."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import render_samples_to

CHROMIUM = "/usr/bin/chromium"
SAMPLES = Path(__file__).resolve().parents[1] / "sample_reports"
# One of each page type: analyze (logit lens), analyze through a tuned lens (with the logit-lens view),
# compare base vs adapter (aligned by layer), compare of two families (by relative depth), a suite.
PAGES = [
    "analyze-capital-raw",
    "analyze-weather-chat-tuned",
    "compare-base-vs-weather-adapter",
    "compare-smollm2-vs-gemma3",
    "suite-weather-adapter",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} not installed (apt-get install chromium)"),
]

# Every chart outside a closed <details> has been drawn by vegaEmbed.
SHOWN_LIVE = (
    "[...document.querySelectorAll('figure.chart')].filter(f => !f.closest('details:not([open])'))"
    ".filter(f => !f.closest('.lens-panel') || f.closest('.lens-panel').getClientRects().length)"
    ".every(f => f.classList.contains('is-live'))"
)


@pytest.fixture(scope="module")
def browser(chromium):
    return chromium  # the module's one Chromium (conftest); each page opens in a new context


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    return render_samples_to(tmp_path_factory.mktemp("chart-pages"), PAGES, SAMPLES)


def _open(browser, path: Path, console: list[str]):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type in ("warning", "error") else None)
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    page.goto(path.as_uri())
    page.wait_for_function(SHOWN_LIVE, timeout=30_000)
    return page


def _hover(page, chart_id: str, fx: float, dy: float = 200) -> None:
    fig = page.query_selector(f"#{chart_id}")
    fig.scroll_into_view_if_needed()
    box = fig.query_selector(".chart-live svg").bounding_box()
    page.mouse.move(box["x"] + box["width"] * fx, box["y"] + dy)
    page.wait_for_timeout(200)


def _tooltip(page) -> list[str]:
    text = page.evaluate("(document.getElementById('vg-tooltip-element') || {}).innerText || ''")
    return [line.strip() for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("name", PAGES)
def test_no_console_warnings_or_errors(browser, pages, name):
    console: list[str] = []
    page = _open(browser, pages[name], console)
    # Closed sections (suite cases, the logit-lens view) draw their charts when opened: open them all.
    page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")
    page.wait_for_function(SHOWN_LIVE, timeout=60_000)
    for label in page.query_selector_all("label.lens-tab"):  # each lens's charts are drawn when its tab is chosen
        label.click()
        page.wait_for_function(SHOWN_LIVE, timeout=60_000)
    page.close()
    assert console == []


def test_crosshair_lists_every_tracked_token_and_highlights_the_layer_row(browser, pages):
    console: list[str] = []
    page = _open(browser, pages["analyze-capital-raw"], console)
    _hover(page, "run0-trajectory", 0.5)
    lines = _tooltip(page)
    assert lines[0] == "Layer"
    layer = int(lines[1])
    # One row per tracked token, printed as the tables print it.
    assert lines[2::2] == ["␣Paris", "␣the"] and all("(rank " in v for v in lines[3::2])
    cells = page.evaluate(f"[...document.getElementById('run0-layer-{layer}').cells].map(c => c.innerText)")
    assert lines[3] == f"{cells[5]} (rank {cells[6]})"  # P(␣Paris), Rank of ␣Paris in the table
    highlighted = page.evaluate("[...document.querySelectorAll('tr.is-cursor')].map(r => r.id)")
    assert highlighted == [f"run0-layer-{layer}"]
    page.close()
    assert console == []


def test_compare_crosshair_names_both_models(browser, pages):
    console: list[str] = []
    page = _open(browser, pages["compare-base-vs-weather-adapter"], console)
    _hover(page, "comparison-trajectory", 0.6, dy=230)
    lines = _tooltip(page)
    assert lines[0] == "Layer" and lines[2].startswith("base ") and any(line.startswith("tuned ") for line in lines)
    layer = int(lines[1])
    assert page.evaluate("[...document.querySelectorAll('tr.is-cursor')].map(r => r.id)") == [f"layer-{layer}"]
    page.close()


def test_pointing_at_a_layer_row_puts_the_cursor_on_that_layer_in_every_chart(browser, pages):
    """One layer cursor for the charts and the table, both ways: a row under the pointer shows the charts' rule at
    its layer (in every panel of both line charts) and is highlighted through the charts' own selection."""
    console: list[str] = []
    page = _open(browser, pages["analyze-capital-raw"], console)
    page.wait_for_function(
        "document.querySelectorAll('#run0-entropy-kl.is-live, #run0-trajectory.is-live').length === 2",
        timeout=30_000,
    )

    def shown_rules(chart_id: str) -> list[int]:  # indexes (= layers here) of the cursor rules drawn opaque
        return page.evaluate(
            f"[...document.querySelectorAll('#{chart_id} .chart-live svg .mark-rule line')]"
            ".filter(e => e.getAttribute('stroke') === '#555555')"
            ".map(e => Number(e.getAttribute('opacity') || 1))"
        )

    layers = len(shown_rules("run0-trajectory")) // 2  # one rule per layer in each of the two panels
    assert layers == 30 and set(shown_rules("run0-trajectory")) == {0}
    page.hover("#run0-layer-12 th")
    page.wait_for_timeout(300)
    for chart_id in ("run0-trajectory", "run0-entropy-kl"):
        opacities = shown_rules(chart_id)
        assert [i % layers for i, o in enumerate(opacities) if o > 0] == [12, 12], chart_id
    assert page.evaluate("[...document.querySelectorAll('tr.is-cursor')].map(r => r.id)") == ["run0-layer-12"]
    page.mouse.move(1270, 5)  # off the table: the cursor goes
    page.wait_for_timeout(300)
    assert set(shown_rules("run0-trajectory")) == {0}
    assert page.evaluate("document.querySelectorAll('tr.is-cursor').length") == 0
    page.close()
    assert console == []


def test_probability_axis_is_log_with_a_linear_switch(browser, pages):
    page = _open(browser, pages["analyze-capital-raw"], [])
    fig = page.query_selector("#run0-trajectory")

    def y_labels() -> list[str]:
        texts = fig.evaluate("f => [...f.querySelectorAll('.chart-live svg text')].map(t => t.textContent)")
        return [t for t in texts if t.endswith("%")]

    log_labels = y_labels()
    assert {"100%", "10%", "1%", "0.1%"} <= set(log_labels)
    fig.query_selector("input[type=radio][value=linear]").check()
    page.wait_for_timeout(300)
    linear_labels = y_labels()
    assert "0%" in linear_labels and "0.1%" not in linear_labels
    page.close()


def test_a_layer_row_can_be_linked_to(browser, pages):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(pages["analyze-capital-raw"].as_uri() + "#run0-layer-23")
    assert page.evaluate("document.querySelector('tr:target').id") == "run0-layer-23"
    assert page.evaluate("document.querySelector('tr:target').cells[0].innerText").startswith("23")
    page.close()
