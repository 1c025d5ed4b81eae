"""Issue 23 in a real browser (headless Debian Chromium via Playwright), on the committed analysis samples: the
analyze page answers first. The verdict (final prediction, where it emerges, the lens and how far to trust it)
ends within the first screen at 1280 px and within the first two at 390 px, before the model and prompt; the
"How to read this page" box is folded, three sentences, and the lens evaluation page opens with its verdict too."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from conftest import CHROMIUM
from helpers import render_samples_to
from test_browser_answer_first import SCREEN, TOP, _open

SAMPLES = Path(__file__).resolve().parents[1] / "sample_reports"
PAGES = ["analyze-capital-raw-tuned", "analyze-weather-chat", "analyze-weather-generated"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} not installed (apt-get install chromium)"),
]

# The summary's bullets in order: (label, bottom of the bullet in page coordinates).
BULLETS = """() => [...document.querySelectorAll('#summary li')].map(li => {
  const b = li.getBoundingClientRect(); const s = li.querySelector('strong');
  return [s ? s.textContent : '', b.bottom + scrollY]; })"""


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    return render_samples_to(tmp_path_factory.mktemp("analyze-first"), PAGES, SAMPLES)


@pytest.mark.parametrize("name", PAGES)
@pytest.mark.parametrize("width, screens", [(1280, 1), (390, 2)])
def test_analyze_verdict_comes_first(chromium, pages, name, width, screens):
    ctx, page = _open(chromium, pages[name], width)
    try:
        bullets = page.evaluate(BULLETS)
        labels = [label for label, _ in bullets]
        assert labels[:3] == ["Final prediction:", "Emergence:", "Lens:"], labels
        verdict_bottom = bullets[2][1]
        assert verdict_bottom <= screens * SCREEN, f"the verdict ends at {verdict_bottom:.0f} px at {width} px"
        assert 0 <= page.evaluate(TOP, "#summary") < page.evaluate(TOP, "section.overview")
        lens = page.evaluate("() => [...document.querySelectorAll('#summary li')][2].textContent")
        assert re.search(r"reliable (from layer \d+|only at the last layer|at every captured layer)", lens), lens
    finally:
        ctx.close()


def test_how_to_read_is_folded_and_three_sentences(chromium, pages):
    ctx, page = _open(chromium, pages["analyze-capital-raw-tuned"], 1280)
    try:
        assert page.evaluate("() => document.querySelector('#summary details.how-to-read').open") is False
        text = page.evaluate("() => document.querySelector('#summary details.how-to-read p').textContent")
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]
        assert len(sentences) == 3, sentences
        assert "tuned lens" in text
    finally:
        ctx.close()


def test_lens_eval_page_opens_with_its_verdict(chromium, tmp_path):
    from lazarus_report.render.lens_report import render_lens_eval_html
    from lazarus_report.results.lens_eval import LensEvalResult

    path = tmp_path / "lens-eval.html"
    result = LensEvalResult.load(SAMPLES / "lens-eval-smollm2-tuned.json")
    path.write_text(render_lens_eval_html(result), encoding="utf-8")
    for width, screens in ((1280, 1), (390, 2)):
        ctx, page = _open(chromium, path, width)
        try:
            paragraphs = page.evaluate(
                "() => [...document.querySelectorAll('#summary > p')].map(p => [p.textContent, p.getBoundingClientRect().bottom + scrollY])"
            )
            assert paragraphs[0][0].startswith("The tuned lens is the most faithful lens here")
            assert any(text.startswith("From layer ") for text, _ in paragraphs)
            assert max(bottom for _, bottom in paragraphs) <= screens * SCREEN
            assert page.evaluate(TOP, "#summary") < page.evaluate(TOP, "#lens-kl")
        finally:
            ctx.close()
