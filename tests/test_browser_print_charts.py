"""The charts on paper and on a phone, in a real browser (headless Debian Chromium via Playwright, offline), on
the committed sample results (issue 23):

* printed, every chart keeps its drawn size up to the column's width (A4 less 10 mm margins: 718 px), an
  analysis or comparison page's line charts fill it, so the smallest chart text is at least 8 px; no form
  control prints (the charts' log/linear and colour switches, the suite's filters and pagers; a sortable
  table's header buttons print as plain header text); the 14-case suite prints on at most 10 A4 pages;
* the interactive chart's emergence notes never overlap (at 1280 and 390 px): the spec places them with the
  static SVG's own plan;
* at 390 px the charts' titles and the key to the models wrap instead of being cut to "…", and nothing scrolls
  the page sideways.

Printing is emulated as Chromium prints a page opened on a desktop: the charts are drawn for the 1280 px
window, then the page is laid out again at the paper's width with print styles (no resize event: a print
does not re-run the page script's layout)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from conftest import CHROMIUM

from lazarus_report.render.html import render_html
from lazarus_report.render.packing import load_result_file

SAMPLES = Path(__file__).resolve().parents[1] / "sample_reports"
PAGES = [
    "analyze-capital-raw",
    "analyze-capital-raw-tuned",
    "compare-base-vs-weather-adapter",
    "compare-base-vs-weather-adapter-tuned",
    "suite-weather-adapter",
]
PRINTED = ["analyze-capital-raw", "compare-base-vs-weather-adapter", "suite-weather-adapter"]
A4_COLUMN = 718  # px: 190 mm at 96 px per inch (A4 less the 10 mm side margins of @page)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} not installed (apt-get install chromium)"),
]

# Every chart outside a closed <details> has been drawn by vegaEmbed.
# (Outside closed parts and outside the lens tabs not chosen: a lens's charts are drawn when its tab is chosen.)
SHOWN_LIVE = (
    "[...document.querySelectorAll('figure.chart[data-spec]')].filter(f => !f.closest('details:not([open])'))"
    ".filter(f => !f.closest('.lens-panel') || f.closest('.lens-panel').getClientRects().length)"
    ".every(f => f.classList.contains('is-live'))"
)
# Every live chart drawn wider than paper allows has its copy for paper (drawn once the page is idle), or none
# (data-paper="no": a single panel).
PAPER_READY = (
    "[...document.querySelectorAll('figure.chart.is-live')].every(f => { const s = f.querySelector('.chart-live svg');"
    " return !s || +s.getAttribute('width') <= 780 || f.hasAttribute('data-paper'); })"
)
OPEN_ALL = "document.querySelectorAll('details').forEach(d => { d.open = true; })"
NO_RESIZE = "window.addEventListener('resize', e => e.stopImmediatePropagation(), true)"

# Per chart shown (outside closed parts): its SVG's drawn and shown width, the box it sits in, the smallest
# text as shown (font size times the SVG's scale) and that text.
CHART_TEXT = """() => [...document.querySelectorAll('figure.chart')]
  .filter(f => !f.closest('details:not([open])') && f.getBoundingClientRect().width > 0)
  .map(f => {
    const svg = [...f.querySelectorAll('.chart-body svg')].find(s => s.getBoundingClientRect().width > 0);
    const drawn = parseFloat(svg.getAttribute('width'));
    const shown = svg.getBoundingClientRect().width;
    let smallest = Infinity, which = '';
    svg.querySelectorAll('text').forEach(t => {
      if (!t.textContent.trim() || !t.getBoundingClientRect().height) { return; }
      const px = parseFloat(getComputedStyle(t).fontSize) * shown / drawn;
      if (px < smallest) { smallest = px; which = t.textContent; }
    });
    return {id: f.id, drawn, shown, box: f.querySelector('.chart-body').getBoundingClientRect().width,
            fit: !!f.querySelector('.chart-body.fit'), smallest, which};
  })"""

# Form controls a reader would see: anything of non-zero size that is not hidden.
CONTROLS = """() => [...document.querySelectorAll('input, select, textarea, button')]
  .filter(e => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0 &&
                 getComputedStyle(e).visibility !== 'hidden'; })
  .map(e => { const s = getComputedStyle(e);
    return {tag: e.tagName, type: e.type || '', inHeader: !!e.closest('th'), text: e.textContent.trim(),
            border: s.borderTopWidth, background: s.backgroundColor}; })"""

NOTES = """() => [...document.querySelectorAll('figure.chart.is-live')]
  .filter(f => !f.closest('details:not([open])') && f.getClientRects().length)
  .map(f => { const svg = f.querySelector('.chart-live svg'); const frame = svg.getBoundingClientRect();
    return {id: f.id, frame: [frame.left, frame.top, frame.right, frame.bottom],
      notes: [...svg.querySelectorAll('text')].filter(t => /top-1 at L\\d+$/.test(t.textContent))
        .map(t => { const r = t.getBoundingClientRect();
          return {text: t.textContent, box: [r.left, r.top, r.right, r.bottom]}; })}; })"""

TITLES = """() => [...document.querySelectorAll('figure.chart.is-live .chart-live svg .role-title text')]
  .map(t => t.textContent)"""


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("print-chart-pages")
    files = {}
    for name in PAGES:
        result = load_result_file(SAMPLES / f"{name}.json")
        for static in (False, True):
            path = out / f"{name}{'.static' if static else ''}.html"
            path.write_text(render_html(result, static=static), encoding="utf-8")
            files[path.stem] = path
    return files


def _open(chromium, path: Path, width: int, errors: list[str], *, wait: bool = True):
    ctx = chromium.new_context(viewport={"width": width, "height": 900}, offline=True)
    page = ctx.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    if wait:
        page.wait_for_function(SHOWN_LIVE, timeout=60_000)
    return ctx, page


def _printed(page) -> None:
    """The page as printed on A4: the print-time script (parts opened for paper), print styles, the column's width."""
    page.wait_for_function(PAPER_READY, timeout=60_000)
    page.evaluate(NO_RESIZE)
    page.evaluate("window.dispatchEvent(new Event('beforeprint'))")
    page.emulate_media(media="print")
    page.set_viewport_size({"width": A4_COLUMN, "height": 1000})


@pytest.mark.parametrize("static", [False, True], ids=["live", "static"])
@pytest.mark.parametrize("name", PRINTED)
def test_printed_charts_keep_their_size_and_text_of_8px_or_more(chromium, pages, name, static):
    errors: list[str] = []
    ctx, page = _open(chromium, pages[f"{name}{'.static' if static else ''}"], 1280, errors, wait=not static)
    _printed(page)
    charts = page.evaluate(CHART_TEXT)
    ctx.close()
    assert charts and errors == []
    for chart in charts:
        assert chart["smallest"] >= 8, chart
        # Shown at the size it was drawn, or the column's whole width when it was drawn wider (never 0.6x);
        # an analysis or comparison page's line charts across the whole column.
        assert chart["shown"] >= min(chart["drawn"], chart["box"] - 4) - 1, chart
        if re.fullmatch(r"(run\d+|comparison)-(trajectory|entropy-kl|divergence)", chart["id"]):
            assert chart["shown"] >= chart["box"] - 6, chart


@pytest.mark.parametrize("name", PRINTED)
def test_no_form_control_prints(chromium, pages, name):
    errors: list[str] = []
    ctx, page = _open(chromium, pages[name], 1280, errors)
    before = page.evaluate(CONTROLS)
    _printed(page)
    controls = page.evaluate(CONTROLS)
    ctx.close()
    assert any(c["type"] == "radio" for c in before)  # on screen, the charts' switches are there
    # A sortable column's header is a button: on paper it is the header's text, drawn as text.
    assert [c for c in controls if not c["inHeader"]] == []
    assert all(c["border"] == "0px" and c["background"] == "rgba(0, 0, 0, 0)" for c in controls)
    assert errors == []


def test_the_suite_prints_on_at_most_10_a4_pages(chromium, pages):
    errors: list[str] = []
    ctx, page = _open(chromium, pages["suite-weather-adapter"], 1280, errors)
    page.wait_for_function(PAPER_READY, timeout=60_000)
    pdf = page.pdf(format="A4", print_background=True)
    ctx.close()
    assert 1 < len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", pdf)) <= 10
    assert errors == []


def _overlap(a: list[float], b: list[float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@pytest.mark.parametrize("width", [1280, 390])
def test_interactive_emergence_notes_do_not_overlap(chromium, pages, width):
    """The tuned-lens sample's logit-lens view's notes (" the" top-1 at L24, " Paris" at L29, close together
    right of the middle) and its tuned view's (" Paris" at L23): staggered as in the static SVG, inside the
    chart, at a desktop's and a phone's width."""
    errors: list[str] = []
    ctx, page = _open(chromium, pages["analyze-capital-raw-tuned"], width, errors)
    page.evaluate(OPEN_ALL)
    page.wait_for_function(SHOWN_LIVE, timeout=60_000)
    charts = [c for c in page.evaluate(NOTES) if c["notes"]]
    page.click("label[for='run0-lens1-tab']")  # the logit lens's tab (its charts are drawn when shown)
    page.wait_for_function(SHOWN_LIVE, timeout=60_000)
    charts += [c for c in page.evaluate(NOTES) if c["notes"]]
    ctx.close()
    assert sorted(c["id"] for c in charts) == ["run0-lens1-trajectory", "run0-trajectory"]
    counts = {c["id"]: len(c["notes"]) for c in charts}
    assert counts == {"run0-lens1-trajectory": 2, "run0-trajectory": 1}, counts
    for chart in charts:
        notes = chart["notes"]
        for i, a in enumerate(notes):
            left, top, right, _ = chart["frame"]
            assert left <= a["box"][0] and a["box"][2] <= right + 1 and top <= a["box"][1], (chart["id"], a)
            for b in notes[i + 1 :]:
                assert not _overlap(a["box"], b["box"]), (chart["id"], a, b)
    assert errors == []


@pytest.mark.parametrize("name", ["compare-base-vs-weather-adapter-tuned", "compare-base-vs-weather-adapter"])
def test_phone_chart_titles_and_model_key_wrap_instead_of_being_cut(chromium, pages, name):
    errors: list[str] = []
    ctx, page = _open(chromium, pages[name], 390, errors)
    page.evaluate(OPEN_ALL)
    page.wait_for_function(SHOWN_LIVE, timeout=60_000)
    titles = page.evaluate(TITLES)
    scroll = page.evaluate("document.documentElement.scrollWidth")
    labels = page.evaluate("[...document.querySelectorAll('h1 .model-id')].map(e => e.textContent)")
    ctx.close()
    assert titles and not [t for t in titles if "…" in t]
    # The key to the models (on each line chart) and the heatmap's panel titles name each model in full.
    joined = "".join(titles).replace(" ", "")
    for tag, label in zip(("base", "tuned"), labels):
        assert joined.count(f"{tag}:{label}".replace(" ", "")) >= 2, (tag, label)
        assert f"{tag}·{label}".replace(" ", "") in joined, (tag, label)
    assert scroll <= 390
    assert errors == []
