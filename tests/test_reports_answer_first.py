"""Issue 23, "reports that answer first", on the committed sample results (real SmolLM2 runs): the lens named
in every title and heading, Markdown that renders in a pull-request comment (checked by rendering it with a
GitHub-like markdown-it-py), the verdict before the details, trust marks on compare and suite pages."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest
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


# --- 2. Markdown that renders in a pull-request comment ---------------------------------------------------

MARKDOWN_SAMPLES = [COMPARE_TUNED, COMPARE, "compare-smollm2-vs-gemma3", SUITE, "analyze-weather-chat-tuned"]
MAX_COLUMNS = 6  # a 760 px pull-request comment


def _tables(html: str) -> list[list[list[str]]]:
    """Each table's rows, each row's cell texts."""
    out = []
    for table in re.findall(r"<table>.*?</table>", html, re.S):
        rows = re.findall(r"<tr>(.*?)</tr>", table, re.S)
        out.append(
            [
                [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r, re.S)]
                for r in rows
            ]
        )
    return out


@pytest.mark.parametrize("name", MARKDOWN_SAMPLES)
def test_markdown_renders_without_literal_markup_and_fits_a_comment(name):
    html = markdown_html(name)
    text = re.sub(r"<[^>]+>", "", html)
    assert "**" not in text and "\\*" not in text
    for table in _tables(html) if name.startswith(("compare", "suite")) else []:  # analyze: issue 23, still open
        assert max(len(row) for row in table) <= MAX_COLUMNS, table[0]


def test_suite_markdown_separates_paragraphs_and_marks_changed_cases():
    html = markdown_html(SUITE)
    paragraphs = [re.sub(r"<[^>]+>", "", p) for p in re.findall(r"<p>(.*?)</p>", html, re.S)]
    groups = next(p for p in paragraphs if p.startswith("Groups:"))
    assert "Layers that carry the change" not in groups
    assert any(p.startswith("Layers that carry the change") for p in paragraphs)
    cases = _tables(html)[0]
    statuses = [row[0] for row in cases[1:]]
    assert statuses == sorted(statuses, key=["failed", "changed", "passed"].index)
    assert statuses.count("changed") == sum(
        1
        for c in sample(SUITE).cases
        if c.status == "passed" and any(not d.top1_agree for d in c.comparison.divergences[-1:])
    )
    assert "<strong>failed</strong>" in html


def _last_unreliable() -> int:
    """The tuned-lens sample's unreliable layers are 0..u (from the shipped lens's held-out fidelity); u < 21."""
    bad = sorted(sample(COMPARE_TUNED).results[1].unreliable_layers)
    assert bad == list(range(bad[-1] + 1)) and bad[-1] < 21
    return bad[-1]


def test_compare_markdown_folds_identical_layers_and_leads_the_map_with_the_last_position():
    html = markdown_html(COMPARE_TUNED)
    tables = _tables(html)
    layers = next(t for t in tables if t[0][0] == "Layer" and "JS" in t[0])
    # 0-21 identical: folded, in two rows as the lens is unreliable at 0-u and not at u+1..21; then 22-29
    u = _last_unreliable()
    assert [row[0] for row in layers[1:4]] == [f"0-{u} ≈", f"{u + 1}-21", "22"]
    assert len(layers) == 1 + 2 + 8
    change_map = next(t for t in tables if t[0][0] == "Layer" and t[0][1].startswith("36:"))
    assert len(change_map[0]) <= MAX_COLUMNS
    shifts = [t for t in tables if t[0][0] in ("Promoted", "Suppressed")]
    assert shifts and all(len(t) <= 1 + 3 for t in shifts)
    for t in shifts:
        assert not any(row[1] == row[2] == "<0.01%" for row in t[1:])
    assert "more suppressed (see the HTML report)" in html


# --- 4. trust on every page -------------------------------------------------------------------------------


def test_compare_page_says_which_layers_to_trust():
    doc = parse(html_of(COMPARE_TUNED))
    trust = doc.find("p", cls="trust").text()
    assert f"tuned lens: unreliable at layers 0-{_last_unreliable()}" in trust and "held-out fidelity" in trust
    assert doc.find("details", cls="how-to-read")
    bad = set(sample(COMPARE_TUNED).results[1].unreliable_layers)
    rows = doc.find("table", cls="pairs").find("tbody").find_all("tr")
    marked = {r.find("th").text().split()[0] for r in rows if "unreliable" in r.attrs.get("class", "")}
    assert marked and all(label.split("-")[0].isdigit() and int(label.split("-")[-1]) in bad for label in marked)
    assert all("≈" in r.find("th").text() for r in rows if "unreliable" in r.attrs.get("class", ""))
    md = render_markdown(sample(COMPARE_TUNED))
    assert f"| 0-{_last_unreliable()} ≈ |" in md and "not from this prompt" in md


def test_missing_fidelity_is_said_and_suite_pages_name_their_trust():
    trust = parse(html_of(COMPARE)).find("p", cls="trust").text()
    assert "no fidelity data" in trust
    doc = parse(html_of(SUITE))
    assert "Read through the logit lens" in doc.find("p", cls="trust").text()
    assert doc.find("details", cls="how-to-read")


# --- 6. attribution as shares with bars scaled to the largest; one token notation -----------------------------


def test_attribution_bars_scale_to_the_largest_effect_and_read_as_percentages():
    doc = parse(html_of(COMPARE_TUNED))
    table = doc.find("table", cls="attribution")
    styles = [s.attrs.get("style") or "" for s in table.find_all("span")]
    widths = [float(m.group(1)) for st in styles if (m := re.search(r"width:\s*([\d.]+)%", st))]
    assert widths and max(widths) == 100.0
    effects = [s.text() for s in table.find_all("span", cls="num")]
    assert all(re.fullmatch(r"[+-]\d+\.\d\d%", e) for e in effects), effects
    assert "| +1.83% |" in render_markdown(sample(COMPARE_TUNED))


def test_tokens_are_written_one_way():
    doc = parse(html_of(COMPARE_TUNED))
    shift_tokens = [c.text() for t in doc.find_all("table", cls="shifts") for c in t.find_all("code")]
    assert shift_tokens and not any(t.startswith("'") for t in shift_tokens)
    heads = [c.text() for c in doc.find("table", cls="attribution").find("thead").find_all("code")]
    assert heads == ["get_weather", "I"]
    md = render_markdown(sample(COMPARE_TUNED))
    assert "p('get" not in md and "p(`get_weather`) after" in md


def test_terminal_folds_identical_layers():
    text = render_comparison_text(sample(COMPARE_TUNED))
    assert "      0-21  identical in both models (KL and JS exactly 0)" in text
    assert "\n         3  " not in text
