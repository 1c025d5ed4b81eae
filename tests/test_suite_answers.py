"""Whole answers in suites (issue 19): the answer checks in JUnit, the Markdown step summary and the suite HTML,
on constructed results (no model), and one real suite run on SmolLM2 (marker ``slow``)."""

from __future__ import annotations

import dataclasses
import html
import re
from xml.etree import ElementTree

import pytest
from factories import HOSTILE_STRINGS, make_answer, make_suite
from helpers import github_like

from lazarus_report.render.html import render_html
from lazarus_report.render.junit import render_junit
from lazarus_report.render.markdown import render_markdown
from lazarus_report.render.suite_model import build_suite_report
from lazarus_report.results.suite import FAILED, PASSED, SuiteResult
from lazarus_report.suites.checks import evaluate_case
from lazarus_report.suites.spec import parse_suite

WEATHER = ["get", "_weather", "(", "city", '="', "Paris", '")']
CASE = """\
- id: weather-call
  prompt: What is the weather in Paris?
  answer: 'get_weather(city="Paris")'
  expect:
    answer_top1: true
  no_regression_of: {answer_logprob: 0.5}
"""


def with_answer_case(suite: SuiteResult, pieces: list[str], tuned_ranks: list[int]) -> SuiteResult:
    """``suite`` whose first case is an answer case: base writes the answer, tuned departs where ranks say."""
    spec = parse_suite(CASE, "suite.yaml").cases[0]
    case = suite.cases[0]
    assert case.comparison is not None
    base, tuned = case.comparison.results
    base = make_answer(base, pieces, logprobs=[-0.1] * len(pieces))
    tuned = make_answer(tuned, pieces, final_ranks=tuned_ranks, greedy=[" wether"] * len(pieces))
    comparison = dataclasses.replace(case.comparison, results=[base, tuned])
    checks = evaluate_case(spec, comparison=comparison)
    first = dataclasses.replace(case, id=spec.id, comparison=comparison, checks=checks)
    return dataclasses.replace(suite, cases=[first, *suite.cases[1:]])


@pytest.fixture(scope="module")
def suite() -> SuiteResult:
    return with_answer_case(make_suite(4), WEATHER, [1, 3, 1, 1, 1, 1, 1])


def test_answer_checks_fail_with_the_first_failing_token(suite):
    statuses = {c.name: c.status for c in suite.cases[0].checks}
    assert statuses == {
        "base answer_top1": PASSED,
        "tuned answer_top1": FAILED,
        "comparison no_regression answer_logprob": FAILED,
    }


def test_junit_carries_the_message_and_each_models_answer(suite):
    root = ElementTree.fromstring(render_junit(suite))
    failures = {
        tc.get("name"): tc.find("failure")
        for tc in root.iter("testcase")
        if tc.get("classname").endswith("weather-call")
    }
    top1 = failures["tuned answer_top1"]
    assert top1.get("type") == "answer_top1"
    assert top1.get("message") == (
        "tuned: token 2 of 7 '_weather' is rank 3 at the final layer (needs top-1; the model writes ' wether' (50%) "
        "there)"
    )
    assert "answer (base): 7 tokens, log p -0.7, greedy writes it" in top1.text
    assert "answer (tuned): 7 tokens, log p " in top1.text
    assert "greedy departs at token 2 '_weather' (rank 3)" in top1.text
    assert failures["base answer_top1"] is None  # passed


def test_markdown_summary_lists_the_failure_and_the_table_the_answers(suite):
    md = render_markdown(suite).replace("\\", "")  # Markdown punctuation is backslash-escaped
    assert "  - tuned: token 2 of 7 '_weather' is rank 3 at the final layer (needs top-1;" in md
    header = next(line for line in md.splitlines() if line.startswith("| Status"))
    assert "| Answer |" in header
    row = next(line for line in md.splitlines() if "weather-call" in line and line.startswith("|"))
    assert "✓ base answer_top1; ✗ tuned answer_top1; ✗ comparison no_regression answer_logprob;" in row
    assert "greedy departs at token 2 '_weather' (rank 3)" in row


def test_html_case_row_shows_the_answer_checks(suite):
    report = build_suite_report(suite)
    assert report.has_answers
    view = next(c for c in report.cases if c.id == "weather-call")
    assert [c.name for c in view.answer_checks] == [
        "base answer_top1",
        "tuned answer_top1",
        "comparison no_regression answer_logprob",
    ]
    assert view.answers[0] == "7 tokens, log p -0.7, greedy writes it"
    for static in (False, True):
        page = render_html(suite, static=static)
        overview = page[page.index('id="cases-table"') : page.index("</table>", page.index('id="cases-table"'))]
        assert ">Answer</th>" in overview
        rows = overview.split("<tr")
        row = next(r for r in rows if "weather-call" in r)
        assert "tuned answer_top1" in row and "status-failed" in row
        assert "greedy departs at token 2 '_weather' (rank 3)" in html.unescape(row)
        # every row has the same number of cells (sortable), the answer column included
        counts = {r.count("<td") + r.count("<th") for r in rows[2:]}
        assert len(counts) == 1, counts


def test_a_suite_without_answers_has_no_answer_column():
    plain = make_suite(4)
    assert not build_suite_report(plain).has_answers
    assert "| Answer |" not in render_markdown(plain)
    assert ">Answer</th>" not in render_html(plain, static=True)


def test_hostile_answer_tokens_stay_text():
    pieces = [s for s in HOSTILE_STRINGS if s]
    hostile = with_answer_case(make_suite(2), pieces, [1, 2] + [1] * (len(pieces) - 2))
    page = render_html(hostile, static=True)
    assert "<script>alert(1)" not in page and "<img src=x" not in page
    rendered = github_like().render(render_markdown(hostile))
    tags = set(re.findall(r"<([a-zA-Z][a-zA-Z0-9]*)", rendered))
    assert tags <= {"h1", "h2", "p", "strong", "code", "ul", "li", "table", "thead", "tbody", "tr", "th", "td"}, tags
    assert "<img" not in rendered and "href" not in rendered
    for table in re.findall(r"<table>.*?</table>", rendered, re.S):
        rows = [re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", tr, re.S) for tr in re.findall(r"<tr>(.*?)</tr>", table, re.S)]
        assert len({len(r) for r in rows}) == 1  # no "|" made an extra cell
    ElementTree.fromstring(render_junit(hostile))  # well-formed XML
