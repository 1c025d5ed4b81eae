"""A long suite's report in a real browser (headless Debian Chromium via Playwright, offline): the case
table shows 50 rows a page and the case list 25 cases, filters and sorting work across every page, a link
to a case on another page turns to it and opens it, and the summary charts over all cases draw live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import CHROMIUM
from factories import make_suite

from lazarus_report.render.html import render_html

N_CASES = 130

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} not installed (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def long_suite(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("paging") / "suite.html"
    path.write_text(render_html(make_suite(N_CASES, two_models=True)), encoding="utf-8")
    return path


@pytest.fixture()
def page(chromium, long_suite):
    ctx = chromium.new_context(viewport={"width": 1280, "height": 900}, offline=True)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(long_suite.as_uri())
    yield page
    assert errors == []
    ctx.close()


SHOWN_ROWS = (
    "Array.from(document.querySelectorAll('#cases-table tbody tr'))"
    ".filter(r => !r.hidden && r.style.display !== 'none').map(r => r.querySelector('th').textContent)"
)
SHOWN_CASES = (
    "Array.from(document.querySelectorAll('details.case')).filter(d => d.style.display !== 'none').map(d => d.id)"
)


def test_table_pages_through_every_case_with_filter_and_sort(page):
    pager = page.locator("#cases-pager")
    assert pager.is_visible()
    assert pager.inner_text().count("page 1 of 3 (cases 1–50 of 130)") == 1
    first = page.evaluate(SHOWN_ROWS)
    assert len(first) == 50
    pager.get_by_role("button", name="next ›").click()
    second = page.evaluate(SHOWN_ROWS)
    assert len(second) == 50 and not set(first) & set(second)
    pager.get_by_role("button", name="next ›").click()
    third = page.evaluate(SHOWN_ROWS)
    assert len(third) == N_CASES - 100 and pager.get_by_role("button", name="next ›").is_disabled()
    assert len(set(first + second + third)) == N_CASES  # every case on exactly one page
    # A filter applies to every page, then paging starts again on what it leaves.
    page.fill("#cases-filter", "italy")
    matching = page.evaluate(SHOWN_ROWS)
    assert matching and all("italy" in case_id for case_id in matching)
    assert "page 1 of" in pager.inner_text()
    page.fill("#cases-filter", "")
    # Sorting reorders every row, then shows the first page of the new order.
    failing = page.locator("#cases-table thead th", has_text="Failing")
    failing.locator("button").click()
    failing.locator("button").click()  # descending: the most failing checks first
    counts = page.evaluate(
        "Array.from(document.querySelectorAll('#cases-table tbody tr'))"
        ".filter(r => r.style.display !== 'none').map(r => +r.lastElementChild.textContent)"
    )
    assert len(counts) == 50 and counts == sorted(counts, reverse=True) and counts[0] > 0


def test_case_list_is_paged_and_a_link_turns_to_the_case(page):
    shown = page.evaluate(SHOWN_CASES)
    assert len(shown) == 25
    assert "page 1 of 6" in page.locator("#case-pager").inner_text()
    # The last case of the file is in brief (beyond the 50 shown in full) and on a later page of the list.
    last = page.evaluate("document.querySelector('#cases-table tbody tr:last-child a').getAttribute('href')")
    target = last[1:]
    assert target not in shown
    page.locator("#cases-pager").get_by_role("button", name="next ›").click()
    page.locator("#cases-pager").get_by_role("button", name="next ›").click()
    page.locator(f"#cases-table a[href='{last}']").click()
    page.wait_for_function(f"document.getElementById('{target}').style.display !== 'none'")
    assert page.evaluate(f"document.getElementById('{target}').open")
    assert target in page.evaluate(SHOWN_CASES) and len(page.evaluate(SHOWN_CASES)) <= 25


def test_summary_charts_over_all_cases_draw_live(page):
    page.wait_for_function("document.querySelectorAll('#emergence figure.chart.is-live').length === 2", timeout=60_000)
    # One bar group per layer, not a column per case: the chart fits the page.
    width = page.evaluate("document.querySelector('#emergence figure.chart').getBoundingClientRect().width")
    assert width <= 1280
