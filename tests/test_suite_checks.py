"""Expectation checks on synthetic results: what passes, what fails, what is skipped, and what they say.

``make_result()`` imitates SmolLM2 (30 layers) on "The capital of France is": top-1 ' Paris'
(77.2%), tracking ' Paris' and ' Lyonnais' (3 tokens: the lens follows ' Ly', never top-1).
Tests pin the values they depend on with the helpers below, so they do not rely on the factory's noise.
"""

from __future__ import annotations

import dataclasses

import pytest
from factories import answer_of_pieces, make_comparison, make_result

from lazarus_report.results.analysis import AnalysisResult
from lazarus_report.results.comparison import ComparisonResult
from lazarus_report.results.provenance import TokenProb
from lazarus_report.results.suite import ERROR, FAILED, PASSED, SKIPPED, CheckOutcome
from lazarus_report.suites.checks import evaluate_case
from lazarus_report.suites.spec import CaseSpec, parse_suite

KEEP = object()


def case_of(body: str, *, track: str = '[" Paris", " Lyonnais"]') -> CaseSpec:
    """One case: id ``c``, the given track list, then ``body`` (YAML case keys, 2-space indented)."""
    text = f"- id: c\n  prompt: The capital of France is\n  track: {track}\n{body}"
    return parse_suite(text, "suite.yaml").cases[0]


def with_tracked(result: AnalysisResult, text: str, *, emergence=KEEP, final_prob=KEEP) -> AnalysisResult:
    """``result`` with the evolution of tracked string ``text`` changed."""
    evolutions = []
    for e in result.token_evolutions:
        if e.text == text:
            if final_prob is not KEEP:
                e = dataclasses.replace(e, probs=[*e.probs[:-1], final_prob])
            if emergence is not KEEP:
                e = dataclasses.replace(e, emergence_layer=emergence)
        evolutions.append(e)
    return dataclasses.replace(result, token_evolutions=evolutions)


def with_top1(result: AnalysisResult, token: str, prob: float) -> AnalysisResult:
    """``result`` whose final layer's top-1 is ``token``."""
    last = result.layer_predictions[-1]
    top = [TokenProb(token_id=7, token=token, prob=prob)] + [t for t in last.top_tokens if t.token != token]
    predictions = [*result.layer_predictions[:-1], dataclasses.replace(last, top_tokens=top[: len(last.top_tokens)])]
    return dataclasses.replace(result, layer_predictions=predictions)


def with_results(comparison: ComparisonResult, base: AnalysisResult, tuned: AnalysisResult) -> ComparisonResult:
    return dataclasses.replace(comparison, results=[base, tuned])


def by_name(outcomes: list[CheckOutcome]) -> dict[str, CheckOutcome]:
    names = [o.name for o in outcomes]
    assert len(names) == len(set(names)), names
    return {o.name: o for o in outcomes}


def statuses(outcomes: list[CheckOutcome]) -> dict[str, str]:
    return {o.name: o.status for o in by_name(outcomes).values()}


@pytest.fixture(scope="module")
def result() -> AnalysisResult:
    r = make_result()
    assert r.final_top_token == " Paris" and r.model.num_layers == 30
    return with_tracked(r, " Paris", emergence=20, final_prob=0.7725)


@pytest.fixture(scope="module")
def comparison() -> ComparisonResult:
    c = make_comparison("same_tokenizer")
    base = with_tracked(c.results[0], " Paris", emergence=17, final_prob=0.7725)
    tuned = with_tracked(c.results[1], " Paris", emergence=23, final_prob=0.52)
    return with_results(c, base, tuned)


# --- one model: final top-1 ----------------------------------------------------------------


def test_final_top1_passes_and_fails_with_readable_messages(result):
    case = case_of('  expect:\n    final_top1: " Paris"\n  expect_base:\n    final_top1: " London"\n')
    ok, bad = evaluate_case(case, analysis=result, role_checked="base")
    assert ok == CheckOutcome(
        name="model final_top1",
        check="final_top1",
        side="model",
        expected="top-1 ' Paris'",
        actual="top-1 ' Paris' (77.2%)",
        status=PASSED,
        message="model: final top-1 is ' Paris' (77.2%), as expected",
        line=5,
        token=" Paris",
    )
    assert (bad.name, bad.side, bad.status, bad.line) == ("base final_top1", "base", FAILED, 7)
    assert bad.message == "base: final top-1 is ' Paris' (77.2%), expected ' London'"


def test_final_top1_is_exact_about_whitespace(result):
    case = case_of('  expect: {final_top1: "Paris"}\n')
    [outcome] = evaluate_case(case, analysis=result)
    assert outcome.status == FAILED and outcome.message.endswith("expected 'Paris'")


def test_not_top1_list_gives_one_check_per_token(result):
    case = case_of('  expect:\n    not_top1: [" London", " Paris", "\\n"]\n')
    outcomes = evaluate_case(case, analysis=result)
    assert statuses(outcomes) == {
        "model not_top1 ' London'": PASSED,
        "model not_top1 ' Paris'": FAILED,
        "model not_top1 '\\n'": PASSED,
    }
    assert outcomes[1].message == "model: final top-1 is ' Paris' (77.2%), which it must not be"
    assert outcomes[1].expected == "top-1 not ' Paris'"


# --- one model: probabilities ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("check", "bound", "final_prob", "status"),
    [
        ("final_prob_at_least", 0.3, 0.7725, PASSED),
        ("final_prob_at_least", 0.8, 0.7725, FAILED),
        ("final_prob_at_least", 0.3, 0.3, PASSED),  # equality passes
        ("final_prob_at_least", 0.3, 0.29999999, FAILED),
        ("final_prob_at_most", 0.3, 0.3, PASSED),
        ("final_prob_at_most", 0.5, 0.7725, FAILED),
        ("final_prob_at_most", 0.9, 0.7725, PASSED),
        ("final_prob_at_least", 0.0, 0.0, PASSED),
        ("final_prob_at_most", 1.0, 1.0, PASSED),
    ],
)
def test_final_probability_bounds(result, check, bound, final_prob, status):
    case = case_of(f"  expect:\n    {check}: {bound}\n")
    [outcome] = evaluate_case(case, analysis=with_tracked(result, " Paris", final_prob=final_prob))
    assert outcome.status == status
    assert outcome.name == f"model {check} ' Paris'"


def test_probability_messages_show_enough_digits_near_the_bound(result):
    case = case_of("  expect:\n    final_prob_at_least: 0.3\n")
    [outcome] = evaluate_case(case, analysis=with_tracked(result, " Paris", final_prob=0.29999999))
    assert outcome.expected == "p(' Paris') >= 30%"
    assert outcome.actual == "p(' Paris') = 29.999999%"  # not "30%", which would look like a pass
    assert outcome.message == "model: p(' Paris') = 29.999999%, expected >= 30%"
    [outcome] = evaluate_case(case, analysis=with_tracked(result, " Paris", final_prob=0.41234))
    assert outcome.actual == "p(' Paris') = 41.2%"


def test_mapping_form_and_multi_token_strings(result):
    case = case_of(
        '  expect:\n    final_prob_at_most: {" Lyonnais": 0.01}\n    final_prob_at_least: {" Lyonnais": 0.5}\n'
    )
    low = with_tracked(result, " Lyonnais", final_prob=0.00012)
    at_most, at_least = evaluate_case(case, analysis=low)
    assert (at_most.status, at_least.status) == (PASSED, FAILED)
    assert at_most.expected == "p(' Lyonnais') <= 1%"
    # The lens follows the first token of a multi-token string, and says so.
    assert at_most.actual == "p(' Ly') = 0.012% (first of 3 tokens of ' Lyonnais')"
    assert at_least.message == "model: p(' Ly') = 0.012% (first of 3 tokens of ' Lyonnais'), expected >= 50%"


def test_a_string_the_run_did_not_track_is_an_error(result):
    case = case_of('  expect:\n    final_prob_at_least: {" Berlin": 0.1}\n    emerges_by_layer: {" Rome": 3}\n')
    outcomes = evaluate_case(case, analysis=result)
    assert [o.status for o in outcomes] == [ERROR, ERROR]
    assert outcomes[0].actual == "not tracked"
    assert outcomes[0].message == "model: ' Berlin' was not tracked in this run (tracked: ' Paris', ' Lyonnais')"


# --- one model: emergence --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bound", "emergence", "status"),
    [
        ("20", 20, PASSED),  # absolute, at the bound
        ("20", 19, PASSED),
        ("20", 21, FAILED),
        ("0", 0, PASSED),
        ("0.7", 20, PASSED),  # relative: 0.7 * 29 = 20.3 -> layers 0..20
        ("0.7", 21, FAILED),
        ('"70%"', 20, PASSED),
        ('"70%"', 21, FAILED),
        ("1.0", 29, PASSED),  # 100% depth: emerging at all is enough
        ("1", 29, FAILED),  # ... whereas 1 is layer 1
        ("1", 1, PASSED),
        ("0.0", 0, PASSED),
        ("0.0", 1, FAILED),
        ("29", None, FAILED),  # never emerging fails
        ('"100%"', None, FAILED),
    ],
)
def test_emerges_by_layer_absolute_and_relative(result, bound, emergence, status):
    case = case_of(f"  expect:\n    emerges_by_layer: {bound}\n")
    [outcome] = evaluate_case(case, analysis=with_tracked(result, " Paris", emergence=emergence))
    assert outcome.status == status, outcome.message


def test_emergence_phrases(result):
    case = case_of('  expect:\n    emerges_by_layer: {" Paris": "70%", " Lyonnais": 20}\n')
    relative, absolute = evaluate_case(case, analysis=with_tracked(result, " Paris", emergence=24))
    assert relative.expected == "emerges by layer 20 (depth 70% of layers 0..29)"
    assert relative.actual == "emerges at layer 24 (depth 82.8%)"
    assert relative.message == (
        "model: ' Paris' emerges at layer 24 (depth 82.8%), expected by layer 20 (depth 70% of layers 0..29)"
    )
    assert (absolute.status, absolute.expected) == (FAILED, "emerges by layer 20")
    assert absolute.actual == "never top-1 (first of 3 tokens of ' Lyonnais')"
    assert absolute.message == (
        "model: ' Lyonnais' is never top-1 (first of 3 tokens of ' Lyonnais'), expected by layer 20"
    )


def test_an_absolute_layer_beyond_the_model_is_an_error(result):
    [outcome] = evaluate_case(case_of("  expect: {emerges_by_layer: 30}\n"), analysis=result)
    assert outcome.status == ERROR
    assert outcome.message == (
        "model: emerges_by_layer 30 is beyond this model's layers 0..29 (use a relative depth such as '100%')"
    )
    [outcome] = evaluate_case(case_of("  expect: {emerges_by_layer: 29}\n"), analysis=result)
    assert outcome.status == PASSED


# --- one model: sides --------------------------------------------------------------------------

SIDES = (
    '  expect: {final_top1: " Paris"}\n'
    "  expect_base: {final_prob_at_least: 0.5}\n"
    "  expect_tuned: {final_prob_at_least: 0.9}\n"
    "  no_regression_of: final_prob\n"
)


def test_one_model_without_role_skips_base_tuned_and_comparison(result):
    outcomes = evaluate_case(case_of(SIDES), analysis=result)
    assert [(o.name, o.side, o.status) for o in outcomes] == [
        ("model final_top1", "model", PASSED),
        ("base final_prob_at_least ' Paris'", "base", SKIPPED),
        ("tuned final_prob_at_least ' Paris'", "tuned", SKIPPED),
        ("comparison no_regression final_prob ' Paris'", "comparison", SKIPPED),
    ]
    base, tuned, comparison = outcomes[1:]
    assert base.message == "expect_base: this run has one model; pass --role base to check it on this model"
    assert tuned.message == "expect_tuned: this run has one model; pass --role tuned to check it on this model"
    assert comparison.message == "no_regression_of: needs two models (-m1 BASE -m2 TUNED); this run has one"
    assert (base.expected, base.actual) == ("p(' Paris') >= 50%", "not checked")
    assert comparison.expected == "tuned p(' Paris') >= base - 5%"
    assert [o.line for o in outcomes] == [4, 5, 6, 7]


@pytest.mark.parametrize("role", ["base", "tuned"])
def test_one_model_with_role_checks_that_side(result, role):
    outcomes = evaluate_case(case_of(SIDES), analysis=result, role_checked=role)
    other = "tuned" if role == "base" else "base"
    checked = {o.side: o for o in outcomes}
    assert checked["model"].status == PASSED
    # p(' Paris') = 0.7725: >= 0.5 (base) passes, >= 0.9 (tuned) fails.
    assert checked[role].status == (PASSED if role == "base" else FAILED)
    assert checked[role].message.startswith(f"{role}: p(' Paris') = 77.2%")
    assert checked[other].status == SKIPPED
    assert checked[other].message == f"expect_{other}: this run checks its one model as {role} (--role {role})"
    assert checked["comparison"].status == SKIPPED


def test_arguments_are_checked(result, comparison):
    case = case_of(SIDES)
    with pytest.raises(ValueError):
        evaluate_case(case)
    with pytest.raises(ValueError):
        evaluate_case(case, analysis=result, comparison=comparison)
    with pytest.raises(ValueError):
        evaluate_case(case, analysis=result, role_checked="model")


# --- two models --------------------------------------------------------------------------------


def test_two_models_expect_checks_each_model(comparison):
    outcomes = evaluate_case(case_of(SIDES), comparison=comparison)
    assert [(o.name, o.side, o.status) for o in outcomes] == [
        ("base final_top1", "base", PASSED),
        ("tuned final_top1", "tuned", PASSED),
        ("base final_prob_at_least ' Paris'", "base", PASSED),  # 0.7725 >= 0.5
        ("tuned final_prob_at_least ' Paris'", "tuned", FAILED),  # 0.52 < 0.9
        ("comparison no_regression final_prob ' Paris'", "comparison", FAILED),  # 0.52 < 0.7725 - 0.05
    ]
    assert outcomes[1].message == "tuned: final top-1 is ' Paris' (52%), as expected"


def test_names_are_unique_within_a_case(comparison):
    case = case_of("  expect: {final_prob_at_least: 0.3}\n  expect_tuned: {final_prob_at_least: 0.5}\n")
    names = [o.name for o in evaluate_case(case, comparison=comparison)]
    assert names == [
        "base final_prob_at_least ' Paris'",
        "tuned final_prob_at_least ' Paris'",
        "tuned final_prob_at_least ' Paris' #2",
    ]


def test_relative_emergence_uses_each_models_depth():
    c = make_comparison("depths")  # 30 vs 18 layers
    assert [r.model.num_layers for r in c.results] == [30, 18]
    base = with_tracked(c.results[0], " Paris", emergence=20)
    c = with_results(c, base, with_tracked(c.results[1], " Paris", emergence=12))
    outcomes = evaluate_case(case_of('  expect: {emerges_by_layer: "70%"}\n'), comparison=c)
    # 70%: layers 0..20 of 30 (20 passes), layers 0..11 of 18 (12 fails).
    assert [(o.side, o.status) for o in outcomes] == [("base", PASSED), ("tuned", FAILED)]
    assert outcomes[1].expected == "emerges by layer 11 (depth 70% of layers 0..17)"


@pytest.mark.parametrize(
    ("body", "tuned_prob", "status"),
    [
        ("  no_regression_of: final_prob\n", 0.52, FAILED),  # default tolerance 0.05
        ("  no_regression_of: final_prob\n", 0.7225, PASSED),  # exactly base - 0.05
        ("  no_regression_of: final_prob\n", 0.7224, FAILED),
        ("  no_regression_of: final_prob\n", 0.9, PASSED),  # improving is fine
        ("  no_regression_of: final_prob\n  tolerance: 0.3\n", 0.52, PASSED),
        ("  no_regression_of: {final_prob: 0}\n", 0.7725, PASSED),
        ("  no_regression_of: {final_prob: 0}\n", 0.7724, FAILED),
        ("  no_regression_of: {final_prob: 0.3}\n  tolerance: 0.01\n", 0.52, PASSED),  # the mapping wins
    ],
)
def test_no_regression_of_final_prob(comparison, body, tuned_prob, status):
    tuned = with_tracked(comparison.results[1], " Paris", final_prob=tuned_prob)
    c = with_results(comparison, comparison.results[0], tuned)
    [outcome] = evaluate_case(case_of(body), comparison=c)
    assert (outcome.name, outcome.side, outcome.check) == (
        "comparison no_regression final_prob ' Paris'",
        "comparison",
        "no_regression",
    )
    assert outcome.status == status, outcome.message


def test_no_regression_of_final_prob_tolerance_from_defaults(comparison):
    text = "defaults: {track: ' Paris', tolerance: 0.3}\ncases:\n  - {id: a, prompt: p, no_regression_of: final_prob}\n"
    case = parse_suite(text, "suite.yaml").cases[0]
    [outcome] = evaluate_case(case, comparison=comparison)
    assert outcome.status == PASSED
    assert outcome.line == 3
    assert (outcome.token, outcome.tolerance) == (" Paris", 0.3)  # as data, for the suite chart's band


def test_no_regression_of_final_prob_messages(comparison):
    [outcome] = evaluate_case(case_of("  no_regression_of: final_prob\n"), comparison=comparison)
    assert outcome.expected == "p(' Paris') >= 72.25% (base 77.25% - tolerance 5%)"
    assert (outcome.token, outcome.tolerance) == (" Paris", 0.05)
    assert outcome.actual == "p(' Paris') = 52%"
    assert outcome.message == (
        "comparison: tuned p(' Paris') = 52%, base 77.2% (dropped 25.2 points, more than the tolerance 5%)"
    )


def test_no_regression_of_final_top1(comparison):
    case = case_of("  no_regression_of: [final_top1]\n")
    [same] = evaluate_case(case, comparison=comparison)
    assert (same.name, same.status) == ("comparison no_regression final_top1", PASSED)
    changed = with_results(comparison, comparison.results[0], with_top1(comparison.results[1], " the", 0.4))
    [outcome] = evaluate_case(case, comparison=changed)
    assert outcome.status == FAILED
    assert (outcome.expected, outcome.actual) == ("top-1 ' Paris' (base's)", "top-1 ' the' (40%)")
    assert outcome.message == "comparison: tuned final top-1 is ' the' (40%), but base's ' Paris' (77.2%)"


@pytest.mark.parametrize(
    ("body", "base_layer", "tuned_layer", "status"),
    [
        ("  no_regression_of: emergence\n", 17, 17, PASSED),
        ("  no_regression_of: emergence\n", 17, 12, PASSED),  # earlier is better
        ("  no_regression_of: emergence\n", 17, 18, FAILED),  # default tolerance 0
        ("  no_regression_of: emergence\n  tolerance: 0.5\n", 17, 18, FAILED),  # tolerance is final_prob's
        ("  no_regression_of: {emergence: 0.05}\n", 17, 18, PASSED),  # 1/29 = 3.4% <= 5%
        ("  no_regression_of: {emergence: 0.05}\n", 17, 19, FAILED),  # 2/29 = 6.9%
        ("  no_regression_of: emergence\n", None, 25, PASSED),  # base never: nothing to regress from
        ("  no_regression_of: emergence\n", None, None, PASSED),
        ("  no_regression_of: emergence\n", 17, None, FAILED),  # base did, tuned never does
    ],
)
def test_no_regression_of_emergence(comparison, body, base_layer, tuned_layer, status):
    c = with_results(
        comparison,
        with_tracked(comparison.results[0], " Paris", emergence=base_layer),
        with_tracked(comparison.results[1], " Paris", emergence=tuned_layer),
    )
    [outcome] = evaluate_case(case_of(body), comparison=c)
    assert outcome.name == "comparison no_regression emergence ' Paris'"
    assert outcome.status == status, outcome.message


def test_no_regression_of_emergence_compares_relative_depths():
    c = make_comparison("depths")  # base 30 layers, tuned 18
    base = with_tracked(c.results[0], " Paris", emergence=20)  # 20/29 = 69.0%
    case = case_of("  no_regression_of: emergence\n")
    for tuned_layer, status in ((11, PASSED), (12, FAILED)):  # 11/17 = 64.7%, 12/17 = 70.6%
        pair = with_results(c, base, with_tracked(c.results[1], " Paris", emergence=tuned_layer))
        [outcome] = evaluate_case(case, comparison=pair)
        assert outcome.status == status, outcome.message
    assert outcome.expected == "emerges by depth 69% (base: layer 20 of 0..29, depth 69%; tolerance 0%)"
    assert outcome.actual == "emerges at layer 12 of 0..17 (depth 70.6%)"


def test_no_regression_of_an_untracked_target_is_an_error(comparison):
    tuned = dataclasses.replace(
        comparison.results[1],
        token_evolutions=[e for e in comparison.results[1].token_evolutions if e.text != " Paris"],
    )
    c = with_results(comparison, comparison.results[0], tuned)
    [outcome] = evaluate_case(case_of("  no_regression_of: final_prob\n"), comparison=c)
    assert outcome.status == ERROR
    assert outcome.message == "comparison (tuned): ' Paris' was not tracked in this run (tracked: ' Lyonnais')"


def test_every_comparison_kind_evaluates(comparison):
    body = (
        '  expect: {final_top1: " Paris", final_prob_at_least: 0.1, emerges_by_layer: "100%"}\n'
        "  no_regression_of: [final_prob, final_top1, emergence]\n"
    )
    for kind in ("same_tokenizer", "depths", "tokenizers", "same_model"):
        outcomes = evaluate_case(case_of(body), comparison=make_comparison(kind))
        assert len(outcomes) == 9
        assert all(o.status in (PASSED, FAILED) for o in outcomes), [o.message for o in outcomes]
        assert all("\n" not in o.message for o in outcomes)
    same = evaluate_case(case_of(body), comparison=make_comparison("same_model"))
    assert all(o.status == PASSED for o in same if o.side == "comparison")


def test_hostile_tokens_stay_on_one_ascii_line():
    c = make_comparison("hostile")
    token = c.results[0].final_top_token
    case = parse_suite("- {id: h, prompt: p, expect: {not_top1: x}}", "s.yaml").cases[0]
    case = dataclasses.replace(case, expectations=[dataclasses.replace(case.expectations[0], token="\u202e\n<b>")])
    outcomes = evaluate_case(case, comparison=c)
    for o in outcomes:
        for text in (o.name, o.expected, o.actual, o.message):
            assert text.isascii() and "\n" not in text, text
    assert outcomes[0].name == "base not_top1 '\\u202e\\n<b>'"
    assert ascii(token) in outcomes[0].actual


# --- whole answers (issue 19) ------------------------------------------------------------------

WEATHER = ["get", "_weather", "(", "city", '="', "Paris", '")']


def answer_case(body: str, *, answer: str = 'get_weather(city="Paris")') -> CaseSpec:
    key = "generate: 16" if answer == "" else f"answer: {answer!r}"
    text = f"- id: c\n  prompt: What is the weather in Paris?\n  {key}\n{body}"
    return parse_suite(text, "suite.yaml").cases[0]


def test_answer_top1_names_the_first_token_greedy_would_not_write():
    case = answer_case("  expect:\n    answer_top1: true\n")
    ok = answer_of_pieces(make_result(), WEATHER)
    [passed] = evaluate_case(case, analysis=ok)
    assert (passed.name, passed.status, passed.actual) == ("model answer_top1", PASSED, "all 7 tokens top-1")
    bad = answer_of_pieces(make_result(), WEATHER, final_ranks=[1, 3, 1, 4, 1, 1, 1], greedy=[""] + [" wether"] * 6)
    [failed] = evaluate_case(case, analysis=bad)
    assert failed.status == FAILED
    assert failed.message == (
        "model: token 2 of 7 '_weather' is rank 3 at the final layer (needs top-1; the model writes ' wether' (50%) "
        "there)"
    )
    assert failed.actual == "token 2 of 7 '_weather' is rank 3"
    assert failed.expected == "every answer token top-1 (greedy writes the answer)"


def test_answer_logprob_at_least_names_the_least_likely_token():
    case = answer_case("  expect:\n    answer_logprob_at_least: -2.5\n")
    lps = [-0.1, -0.2, -0.05, -1.9, -0.1, -0.3, -0.1]  # sum -2.75
    [failed] = evaluate_case(
        case, analysis=answer_of_pieces(make_result(), WEATHER, logprobs=lps, final_ranks=[1, 1, 1, 2, 1, 1, 1])
    )
    assert failed.status == FAILED
    assert failed.message == (
        "model: log p(answer) = -2.75 (7 tokens), expected >= -2.5; the least likely is token 4 of 7 'city': "
        "log p -1.9, rank 2"
    )
    lps[3] = -1.6  # sum -2.45
    [passed] = evaluate_case(case, analysis=answer_of_pieces(make_result(), WEATHER, logprobs=lps))
    assert passed.status == PASSED and passed.actual == "log p(answer) = -2.45"


@pytest.mark.parametrize(
    "bound, status, message",
    [
        ("20", PASSED, "model: every token top-1 by layer 20 (depth 69%), expected token top-1 by layer 20"),
        (
            "19",
            FAILED,
            "model: token 3 of 7 '(' is rank 2 at layer 19 (needs top-1 by layer 19; first top-1 at layer 20)",
        ),
        ("'50%'", FAILED, "model: token 2 of 7 '_weather' is rank 2 at layer 14 (needs top-1 by layer 14; first"),
        ("0.9", FAILED, "model: token 7 of 7 '\")' is rank 5 at layer 26 (needs top-1 by layer 26; never top-1)"),
    ],
)
def test_answer_emerges_by_layer_names_the_first_late_token(bound, status, message):
    case = answer_case(f"  expect:\n    answer_emerges_by_layer: {bound}\n")
    emergence = [3, 15, 20, 10, 4, 12, 18]
    if bound == "0.9":
        result = answer_of_pieces(make_result(), WEATHER, emergence=[*emergence[:6], None], final_ranks=[1] * 6 + [5])
    else:
        result = answer_of_pieces(make_result(), WEATHER, emergence=emergence)
    [outcome] = evaluate_case(case, analysis=result)
    assert outcome.status == status
    assert outcome.message.startswith(message), outcome.message


def test_answer_emerges_beyond_the_model_is_an_error():
    case = answer_case("  expect:\n    answer_emerges_by_layer: 40\n")
    [outcome] = evaluate_case(case, analysis=answer_of_pieces(make_result(), WEATHER))
    assert outcome.status == ERROR and "beyond this model's layers 0..29" in outcome.message


def test_answer_checks_without_an_answer_in_the_run_are_errors():
    case = answer_case("  expect:\n    answer_top1: true\n")
    [outcome] = evaluate_case(case, analysis=make_result())
    assert outcome.status == ERROR
    assert outcome.message == "model: answer_top1 cannot be checked: no answer was read in this run"


def test_generated_startswith_and_matches():
    case = answer_case(
        "  expect:\n    generated_startswith: get_weather(\n    generated_matches: 'city=\"(Paris|Lyon)\"'\n",
        answer="",
    )
    good = answer_of_pieces(make_result(), WEATHER, source="generated", stop_reason="eos")
    starts, matches = evaluate_case(case, analysis=good)
    assert (starts.name, starts.status) == ("model generated_startswith", PASSED)
    assert starts.actual == "generated 'get_weather(city=\"Paris\")' (7 tokens, stopped: eos)"
    assert matches.status == PASSED
    typo = ["get", "_w", "ether", "(", "city", '="', "Paris", '")']
    bad = answer_of_pieces(make_result(), typo, source="generated", stop_reason="length")
    starts, matches = evaluate_case(case, analysis=bad)
    assert starts.status == FAILED
    assert starts.message == (
        "model: generated 'get_wether(city=\"Paris\")' (8 tokens, stopped: length) does not start with "
        "'get_weather(': it differs at character 7, in token 3 of 8 'ether' (rank 1, p 90%)"
    )
    assert matches.status == PASSED
    short = answer_of_pieces(make_result(), ["get"], source="generated", stop_reason="stop")
    starts, matches = evaluate_case(case, analysis=short)
    assert starts.message.endswith("does not start with 'get_weather(': it ends after 3 characters (stop)")
    assert matches.status == FAILED and matches.message.endswith("does not match 'city=\"(Paris|Lyon)\"'")


def test_generated_checks_on_a_teacher_forced_answer_are_errors():
    case = answer_case("  expect:\n    generated_startswith: get\n", answer="")
    [outcome] = evaluate_case(case, analysis=answer_of_pieces(make_result(), WEATHER))
    assert outcome.status == ERROR and "needs a generated answer" in outcome.message


def test_no_regression_of_answer_logprob():
    c = make_comparison("same_tokenizer")
    case = answer_case("  no_regression_of: {answer_logprob: 0.5}\n")
    base = answer_of_pieces(c.results[0], WEATHER, logprobs=[-0.1] * 7)  # -0.7
    ok = answer_of_pieces(c.results[1], WEATHER, logprobs=[-0.1] * 6 + [-0.5])  # -1.1: dropped 0.4
    [passed] = evaluate_case(case, comparison=with_results(c, base, ok))
    assert passed.name == "comparison no_regression answer_logprob"
    assert passed.status == PASSED
    assert passed.message == "comparison: tuned log p(answer) = -1.1, base -0.7 (change -0.4 nats, tolerance 0.5)"
    worse = answer_of_pieces(
        c.results[1], WEATHER, logprobs=[-0.1, -0.1, -1.2, -0.1, -0.1, -0.1, -0.1], final_ranks=[1, 1, 3, 1, 1, 1, 1]
    )
    [failed] = evaluate_case(case, comparison=with_results(c, base, worse))
    assert failed.status == FAILED
    assert failed.message == (
        "comparison: tuned log p(answer) = -1.8, base -0.7 (dropped 1.1 nats, more than the tolerance 0.5); "
        "most at token 3 of 7 '(': log p -1.2 (base -0.1), rank 3 (base 1)"
    )
    assert failed.expected == "log p(answer) >= -1.2 (base -0.7 - tolerance 0.5 nats)"
    # one model: the comparison check is skipped, the reason says why
    [skipped] = evaluate_case(case, analysis=base)
    assert skipped.status == SKIPPED and "needs two models" in skipped.message
