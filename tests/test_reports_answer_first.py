"""Issue 23, "reports that answer first", on the committed sample results (real SmolLM2 runs): the lens named
in every title and heading, Markdown that renders in a pull-request comment (checked by rendering it with a
GitHub-like markdown-it-py), the verdict before the details, trust marks on compare and suite pages."""

from __future__ import annotations

import functools
from pathlib import Path

from helpers import github_like, parse

from lazarus_report.render.html import render_html
from lazarus_report.render.markdown import render_markdown
from lazarus_report.render.packing import load_result_file
from lazarus_report.render.text import render_comparison_text, render_suite_text

SAMPLES = Path(__file__).resolve().parents[1] / "sample_reports"
COMPARE_TUNED = "compare-base-vs-weather-adapter-tuned"
COMPARE = "compare-base-vs-weather-adapter"
SUITE = "suite-weather-adapter"


@functools.cache
def sample(name: str):
    return load_result_file(SAMPLES / f"{name}.json")


@functools.cache
def html_of(name: str, static: bool = True) -> str:
    return render_html(sample(name), static=static)


@functools.cache
def markdown_html(name: str) -> str:
    """The sample's Markdown as a GitHub-like renderer turns it into HTML."""
    return github_like().render(render_markdown(sample(name)))


# --- 1. the lens in the title, the Markdown heading and the terminal header ----------------------------------


def test_compare_title_names_the_lens_it_was_read_through():
    title = parse(html_of(COMPARE_TUNED)).find("title").text()
    assert title.startswith("Tuned lens: "), title
    assert render_markdown(sample(COMPARE_TUNED)).startswith("# Tuned lens: ")
    assert "Lens: tuned lens" in render_comparison_text(sample(COMPARE_TUNED))
    assert parse(html_of(COMPARE)).find("title").text().startswith("Logit lens: ")


def test_suite_title_heading_and_terminal_name_the_lens():
    suite = sample(SUITE)
    kinds = {r.lens_kind for case in suite.cases for r in case.results}
    lens = f"{kinds.pop()} lens"
    assert lens in parse(html_of(SUITE)).find("title").text()
    assert render_markdown(suite).splitlines()[0].endswith(f"({lens})")
    assert f"Lens: {lens}" in render_suite_text(suite)
