"""Whole answers in suites (issue 19): the answer checks in JUnit, the Markdown step summary and the suite HTML,
on constructed results (no model), and one real suite run on SmolLM2 (marker ``slow``)."""

from __future__ import annotations

import dataclasses
import html
import re
from xml.etree import ElementTree

import pytest
from factories import HOSTILE_STRINGS, answer_of_pieces, make_suite
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
    base = answer_of_pieces(base, pieces, logprobs=[-0.1] * len(pieces))
    tuned = answer_of_pieces(tuned, pieces, final_ranks=tuned_ranks, greedy=[" wether"] * len(pieces))
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


# --- on the real model ---------------------------------------------------------------------------------------

SMOLLM2_SUITE = """\
defaults:
  group: answers
cases:
  - id: capital
    prompt: The capital of France is
    raw: true
    answer: " Paris, and the capital of Germany is Berlin."
    expect:
      answer_logprob_at_least: -30
      answer_emerges_by_layer: "100%"
  - id: capital-top1
    prompt: The capital of France is
    raw: true
    answer: " Paris"
    track: [" Paris"]
    expect:
      final_top1: " Paris"
      answer_top1: true
  - id: counting
    prompt: One, two, three, four,
    raw: true
    generate: 6
    stop: ","
    expect:
      generated_startswith: " five"
      generated_matches: '^ five$'
  - id: chat
    prompt: What is the capital of France?
    answer: The capital of France is Paris.
    expect:
      answer_top1: true
  - id: plain
    prompt: The opposite of hot is
    raw: true
    track: [" cold"]
    expect:
      final_top1: " cold"
"""


def _answer_config(raw: bool, **answer):
    from lazarus_report.core.config import AnalysisConfig, LayerStrategy

    return AnalysisConfig(
        layer_strategy=LayerStrategy.ALL, top_k=3, use_chat_template=not raw, compute_grid=False, **answer
    )


def _assert_same_answers(alone, got) -> None:
    import numpy as np

    for i, run in enumerate(alone):
        a, b = run.result, got[i].result
        assert [p.top_tokens[0].token_id for p in b.layer_predictions] == [
            p.top_tokens[0].token_id for p in a.layer_predictions
        ]
        if a.answer is None:
            assert b.answer is None
            continue
        assert b.answer is not None
        x, y = a.answer, b.answer
        assert (y.text, y.start, y.source, y.stop_reason) == (x.text, x.start, x.source, x.stop_reason)
        assert [t.token_id for t in y.tokens] == [t.token_id for t in x.tokens] and y.tokens
        assert y.divergence_index == x.divergence_index
        assert abs(y.sequence_logprob - x.sequence_logprob) < 1e-3
        for s, t in zip(x.tokens, y.tokens, strict=True):
            assert t.position == s.position
            assert np.allclose(t.probs, s.probs, atol=1e-4, rtol=0)
            assert t.ranks[-1] == s.ranks[-1] and t.emergence_layer == s.emergence_layer
            assert np.allclose(t.kl_to_final, s.kl_to_final, atol=1e-4, rtol=1e-4)


def test_batched_answers_equal_each_case_alone_on_a_tiny_model(tmp_path):
    """A tiny random llama (no weights to download): teacher-forced and generated answers, raw and chat
    prompts sharing a chat prefix, in one batch and in batches of two, equal each case alone."""
    from tiny_models import build_tiny_model, save_tiny_tokenizer

    from lazarus_report.commands.analyzer import ModelAnalyzer
    from lazarus_report.engine import batched
    from lazarus_report.engine.run import analyze

    chat = (
        "{% for m in messages %}<s>system\nYou are a helpful assistant; the capital of France is Paris</s>\n"
        "<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}<s>assistant\n"
    )
    build_tiny_model("llama", tmp_path, seed=4)
    save_tiny_tokenizer(tmp_path, chat_template=chat)
    analyzer = ModelAnalyzer.load(str(tmp_path))
    lens = analyzer.lens("logit")
    prompts = ["the capital of France is", "what is the weather in Paris", "what is the weather", "hello", "one two"]
    configs = [
        _answer_config(True, answer=" Paris and the river"),
        _answer_config(False, answer="the weather in Paris is mild"),
        _answer_config(False, generate=6),
        _answer_config(False),
        _answer_config(True, generate=3),
    ]
    alone = [analyze(analyzer.loaded, p, c, lens=lens) for p, c in zip(prompts, configs)]
    for size in (None, 2):
        _assert_same_answers(
            alone, dict(batched.analyze_many(analyzer.loaded, prompts, configs, lens=lens, batch_size=size))
        )


@pytest.mark.slow
def test_batched_answers_equal_each_case_alone(smollm2_gguf):
    """Answers in a batch (teacher-forced and generated, raw and chat, with a shared chat prefix) read the same
    rows as each case alone through ``engine.analyze``, within float32 rounding."""

    from lazarus_report.commands.analyzer import ModelAnalyzer
    from lazarus_report.engine import batched
    from lazarus_report.engine.run import analyze

    analyzer = ModelAnalyzer.load("smollm2-135m-instruct")
    lens = analyzer.lens("logit")
    prompts = [
        "The capital of France is",
        "What's the weather in Paris?",
        "What's the weather in London?",  # shares its chat prefix with the one above
        "One, two, three, four,",
        "Hi",
    ]
    configs = [
        _answer_config(True, answer=" Paris, and the capital of Germany is Berlin."),
        _answer_config(False, answer='get_weather(city="Paris")'),
        _answer_config(False, generate=8, stop=["\n"]),
        _answer_config(True, generate=5),
        _answer_config(False),
    ]
    alone = [analyze(analyzer.loaded, p, c, lens=lens) for p, c in zip(prompts, configs)]
    for size in (None, 2):
        _assert_same_answers(
            alone, dict(batched.analyze_many(analyzer.loaded, prompts, configs, lens=lens, batch_size=size))
        )


@pytest.mark.slow
def test_a_suite_with_answers_runs_batched_on_smollm2(smollm2_gguf, tmp_path):
    from lazarus_report.commands.suite import run_suite

    spec = parse_suite(SMOLLM2_SUITE, str(tmp_path / "answers.yaml"))
    suite = run_suite(spec, ["smollm2-135m-instruct"])
    assert suite.execution is not None and suite.execution.batched and suite.execution.note is None
    by_id = {c.id: c for c in suite.cases}
    capital = by_id["capital"].analysis
    assert capital.answer is not None and capital.answer.source == "teacher-forced"
    assert [t.token for t in capital.answer.tokens][:3] == [" Paris", ",", " and"]
    assert capital.answer.tokens[0].probs[-1] == pytest.approx(capital.layer_predictions[-1].top_tokens[0].prob)
    counting = by_id["counting"].analysis.answer
    assert counting.source == "generated" and counting.text == " five" and counting.stop_reason == "stop"
    statuses = {(c.id, k.name): k.status for c in suite.cases for k in c.checks}
    assert statuses[("capital-top1", "model answer_top1")] == PASSED
    assert statuses[("counting", "model generated_startswith")] == PASSED
    assert statuses[("counting", "model generated_matches")] == PASSED
    assert statuses[("plain", "model final_top1")] == PASSED
    # The whole sentence is not what greedy writes: the failure names the first token it departs at, and its rank.
    chat = next(k for k in by_id["chat"].checks if k.check == "answer_top1")
    if chat.status == FAILED:
        assert chat.message.startswith("model: token ") and " is rank " in chat.message
    junit = render_junit(suite)
    assert "answer (model): " in junit or all(k.status == PASSED for c in suite.cases for k in c.checks)
