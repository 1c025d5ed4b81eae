"""Evaluating a case's expectations on its results: ``CaseSpec`` + results -> ``CheckOutcome`` list.

Conventions, stated once:

* A two-model run is a ``ComparisonResult``: ``results[0]`` is the base (-m1), ``results[1]`` the tuned
  model (-m2). ``expect`` is checked on both (one outcome each), ``expect_base`` / ``expect_tuned`` on
  one, ``no_regression_of`` on the pair (side ``"comparison"``).
* A one-model run is an ``AnalysisResult``: ``expect`` is checked with side ``"model"``; the side named by
  ``role_checked`` (``--role base|tuned``) is checked on the model too; the other side and
  ``no_regression_of`` are ``skipped``, with the reason in the message.
* Relative depth of a layer is ``layer / (num_layers - 1)``: 0 is the first block, 1 the last.
* Tracked tokens are looked up by the string the suite tracks (``TokenEvolution.text``). A string the
  run did not track is an ``error`` outcome; a string that is several tokens for a model is followed
  by its first token, which ``actual`` says.
* Stored values are compared as they are, with ``EPSILON`` in favour of passing at equality.
* Answer checks (``answer_*``, ``generated_*``, ``no_regression_of: answer_logprob``) read
  ``AnalysisResult.answer``; answer tokens are numbered from 1 in messages ("token 3 of 8"), and a failure
  names the first failing token with its rank (at the final layer, or at the layer it had to be top-1 by).
  Log-probabilities are natural (nats).
* Tokens are shown as ASCII-safe Python literals (``ascii``: ``' Paris'``, ``'\\n'``), as in the
  terminal view; ``expected`` / ``actual`` are short phrases and ``message`` is one line.

Pure Python: nothing heavy is imported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from lazarus_report.results.analysis import AnalysisResult, TokenEvolution
from lazarus_report.results.answer import AnswerReading, AnswerToken
from lazarus_report.results.comparison import ComparisonResult
from lazarus_report.results.drift import DriftResult
from lazarus_report.results.suite import ERROR, FAILED, PASSED, SKIPPED, CheckOutcome
from lazarus_report.suites.spec import ANSWER_CHECKS, GENERATED_CHECKS, CaseSpec, DriftLimit, Expectation

ATTRIBUTION_TOLERANCE = 0.05  # changes_only_in_layers: the largest effect allowed outside the layers
TEXT_SHOWN = 80  # characters of a generated answer shown in a message

EPSILON = 1e-9
BLOCK_NAMES = {"all": "expect", "base": "expect_base", "tuned": "expect_tuned", "comparison": "no_regression_of"}


def evaluate_case(
    case: CaseSpec,
    *,
    analysis: AnalysisResult | None = None,
    comparison: ComparisonResult | None = None,
    role_checked: str | None = None,
) -> list[CheckOutcome]:
    """Every expectation of ``case`` on a one-model run (``analysis``) or a two-model run (``comparison``).

    Outcomes come in the case's expectation order (base before tuned for ``expect``); names are unique
    within the case.
    """
    if (analysis is None) == (comparison is None):
        raise ValueError("evaluate_case needs exactly one of analysis (one model) or comparison (two models)")
    if role_checked not in (None, "base", "tuned"):
        raise ValueError(f"role_checked must be None, 'base' or 'tuned', got {role_checked!r}")
    outcomes: list[CheckOutcome] = []
    for exp in case.expectations:
        if comparison is not None:
            base, tuned = comparison.results[0], comparison.results[1]
            if exp.check == "changes_only_in_layers":
                outcomes.append(_outcome(exp, "comparison", _check_layers(exp, comparison)))
            elif exp.side == "comparison":
                outcomes.append(_outcome(exp, "comparison", _check_regression(exp, base, tuned)))
            else:
                for side in ("base", "tuned") if exp.side == "all" else (exp.side,):
                    result = base if side == "base" else tuned
                    outcomes.append(_outcome(exp, side, _check_model(exp, side, result)))
        else:
            assert analysis is not None
            if exp.side == "all":
                outcomes.append(_outcome(exp, "model", _check_model(exp, "model", analysis)))
            elif exp.side == role_checked:
                outcomes.append(_outcome(exp, exp.side, _check_model(exp, exp.side, analysis)))
            else:
                outcomes.append(_outcome(exp, exp.side, _skipped(exp, role_checked)))
    return _unique_names(outcomes)


# --- outcomes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Verdict:
    status: str
    expected: str
    actual: str
    message: str


def _outcome(exp: Expectation, side: str, verdict: _Verdict) -> CheckOutcome:
    return CheckOutcome(
        name=_name(exp, side),
        check=exp.check,
        side=side,
        expected=verdict.expected,
        actual=verdict.actual,
        status=verdict.status,
        message=verdict.message,
        line=exp.line,
        token=None if exp.token is None else str(exp.token),
        tolerance=exp.tolerance if exp.check == "no_regression" and exp.value == "final_prob" else None,
    )


def _name(exp: Expectation, side: str) -> str:
    """``tuned final_top1``, ``base final_prob_at_least ' Paris'``, ``comparison no_regression final_prob ' Paris'``."""
    parts = [side, exp.check]
    if exp.check == "no_regression":
        parts.append(str(exp.value))
    if exp.token is not None and exp.check != "final_top1":
        parts.append(_q(exp.token))
    return " ".join(parts)


def _unique_names(outcomes: list[CheckOutcome]) -> list[CheckOutcome]:
    seen: dict[str, int] = {}
    out = []
    for o in outcomes:
        seen[o.name] = seen.get(o.name, 0) + 1
        if seen[o.name] > 1:
            o = replace(o, name=f"{o.name} #{seen[o.name]}")
        out.append(o)
    return out


def _skipped(exp: Expectation, role_checked: str | None) -> _Verdict:
    block = BLOCK_NAMES[exp.side]
    if exp.side == "comparison":
        reason = f"{block}: needs two models (-m1 BASE -m2 TUNED); this run has one"
    elif role_checked is None:
        reason = f"{block}: this run has one model; pass --role {exp.side} to check it on this model"
    else:
        reason = f"{block}: this run checks its one model as {role_checked} (--role {role_checked})"
    return _Verdict(SKIPPED, _expected_phrase(exp), "not checked", reason)


# --- formatting -----------------------------------------------------------------------------


def _q(token: str) -> str:
    return ascii(token)


def _num(x: float) -> str:
    """A probability bound or tolerance as a percentage, every digit the user wrote: 0.3 is 30%, 0.05 is 5%."""
    return f"{round(100 * x, 10):g}%"


def _prob(p: float, bound: float | None = None) -> str:
    """A probability as a percentage with three significant digits (as the reports' tables print it), or
    with every stored digit when rounding would move it to the other side of ``bound`` (0.29999999 is
    "29.999999%", not "30%")."""
    text = "0" if p == 0 else f"{100 * p:.3g}"
    shown = float(text) / 100
    if bound is not None and ((shown < bound) != (p < bound) or (shown > bound) != (p > bound)):
        text = f"{100 * p:.8g}"
    return text + "%"


def _pct(depth: float) -> str:
    return f"{100 * depth:.1f}".rstrip("0").rstrip(".") + "%"


def _depth(layer: int, num_layers: int) -> float:
    return layer / (num_layers - 1) if num_layers > 1 else 1.0


def _first_token_note(result: AnalysisResult, text: str) -> str:
    """`` (first of 3 tokens of ' Lyonnais')`` when the lens follows only the first token of ``text``."""
    for t in result.tracked_tokens:
        if t.text == text and t.multi_token:
            return f" (first of {t.num_tokens} tokens of {_q(text)})"
    return ""


def _expected_phrase(exp: Expectation, num_layers: int | None = None) -> str:
    """What ``exp`` asks for, without model data (``num_layers`` makes relative depths concrete)."""
    if exp.check == "changes_only_in_layers":
        return f"the change is in layers {layer_ranges(exp.value)} only"
    if exp.check in ANSWER_CHECKS or exp.check in GENERATED_CHECKS:
        return _answer_expected(exp, num_layers)
    if exp.value == "answer_logprob":
        tol = f" - {exp.tolerance:g} nats" if exp.tolerance else ""
        return f"tuned log p(answer) >= base{tol}"
    if exp.check == "final_top1":
        return f"top-1 {_q(str(exp.token))}"
    if exp.check == "not_top1":
        return f"top-1 not {_q(str(exp.token))}"
    if exp.check == "final_prob_at_least":
        return f"p({_q(str(exp.token))}) >= {_num(exp.value)}"
    if exp.check == "final_prob_at_most":
        return f"p({_q(str(exp.token))}) <= {_num(exp.value)}"
    if exp.check == "emerges_by_layer":
        if isinstance(exp.value, int):
            return f"emerges by layer {exp.value}"
        if num_layers is None:
            return f"emerges by depth {_pct(exp.value)}"
        last = int(exp.value * (num_layers - 1) + EPSILON)
        return f"emerges by layer {last} (depth {_pct(exp.value)} of layers 0..{num_layers - 1})"
    if exp.value == "final_top1":
        return "tuned top-1 = base top-1"
    if exp.value == "final_prob":
        return f"tuned p({_q(str(exp.token))}) >= base{f' - {_num(exp.tolerance)}' if exp.tolerance else ''}"
    return f"tuned emerges no later than base (relative depth, tolerance {_pct(exp.tolerance or 0.0)})"


# --- one model ------------------------------------------------------------------------------


def _evolution(result: AnalysisResult, text: str) -> TokenEvolution | None:
    return next((e for e in result.token_evolutions if e.text == text), None)


def _not_tracked(side: str, text: str, result: AnalysisResult, expected: str) -> _Verdict:
    tracked = ", ".join(_q(e.text) for e in result.token_evolutions) or "nothing"
    return _Verdict(
        ERROR,
        expected,
        "not tracked",
        f"{side}: {_q(text)} was not tracked in this run (tracked: {tracked})",
    )


def _check_model(exp: Expectation, side: str, result: AnalysisResult) -> _Verdict:
    top = result.final_prediction[0]
    top_phrase = f"top-1 {_q(top.token)} ({_prob(top.prob)})"
    token = str(exp.token)
    if exp.check in ANSWER_CHECKS or exp.check in GENERATED_CHECKS:
        return _check_answer(exp, side, result)
    if exp.check in ("final_top1", "not_top1"):
        expected = _expected_phrase(exp)
        if exp.check == "final_top1":
            ok = top.token == token
            message = f"final top-1 is {_q(top.token)} ({_prob(top.prob)})" + (
                ", as expected" if ok else f", expected {_q(token)}"
            )
        else:
            ok = top.token != token
            message = f"final top-1 is {_q(top.token)} ({_prob(top.prob)})" + (
                f", not {_q(token)}" if ok else ", which it must not be"
            )
        return _Verdict(PASSED if ok else FAILED, expected, top_phrase, f"{side}: {message}")

    num_layers = result.model.num_layers
    expected = _expected_phrase(exp, num_layers)
    evo = _evolution(result, token)
    if evo is None:
        return _not_tracked(side, token, result, expected)
    note = _first_token_note(result, token)

    if exp.check in ("final_prob_at_least", "final_prob_at_most"):
        p, bound = evo.final_prob, float(exp.value)
        at_least = exp.check == "final_prob_at_least"
        ok = p >= bound - EPSILON if at_least else p <= bound + EPSILON
        actual = f"p({_q(evo.token)}) = {_prob(p, bound)}{note}"
        op = ">=" if at_least else "<="
        return _Verdict(PASSED if ok else FAILED, expected, actual, f"{side}: {actual}, expected {op} {_num(bound)}")

    assert exp.check == "emerges_by_layer"
    if isinstance(exp.value, int) and exp.value >= num_layers:
        return _Verdict(
            ERROR,
            expected,
            f"the model has layers 0..{num_layers - 1}",
            f"{side}: emerges_by_layer {exp.value} is beyond this model's layers 0..{num_layers - 1} "
            f"(use a relative depth such as '100%')",
        )
    limit = float(exp.value) if isinstance(exp.value, int) else exp.value * (num_layers - 1)
    emerged = evo.emergence_layer
    if emerged is None:
        actual = f"never top-1{note}"
        ok = False
    else:
        actual = f"emerges at layer {emerged} (depth {_pct(_depth(emerged, num_layers))}){note}"
        ok = emerged <= limit + EPSILON
    verb = "is " if emerged is None else ""
    wanted = expected.replace("emerges ", "", 1)
    message = f"{side}: {_q(token)} {verb}{actual}, expected {wanted}"
    return _Verdict(PASSED if ok else FAILED, expected, actual, message)


# --- base vs tuned --------------------------------------------------------------------------


def layer_ranges(layers: list[int]) -> str:
    """[22, 23, 24, 26] -> "22-24, 26"."""
    runs: list[list[int]] = []
    for layer in sorted(layers):
        if runs and runs[-1][-1] == layer - 1:
            runs[-1].append(layer)
        else:
            runs.append([layer])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


def _check_layers(exp: Expectation, c: ComparisonResult) -> _Verdict:
    """The change from base to tuned lies in ``exp.value`` (layers).

    With ``--attribution``: every layer outside carries at most ``ATTRIBUTION_TOLERANCE`` of the change
    and the carriers are inside. Without: by divergence at the last position, the models are identical
    (JS at most the noise floor) before the first allowed layer (later layers cannot be told apart this way:
    a change spreads upwards).
    """
    allowed = set(exp.value)
    expected = _expected_phrase(exp)
    a = c.attribution
    if a is not None:
        outside = [x for x in a.layers if x.layer not in allowed and abs(x.effect) > ATTRIBUTION_TOLERANCE]
        stray = [layer for layer in a.carriers if layer not in allowed]
        carried = f"carried by layers {layer_ranges(a.carriers)}" if a.carriers else "nothing to attribute"
        actual = f"{carried} ({a.method})"
        if not outside and not stray:
            return _Verdict(
                PASSED, expected, actual, f"comparison: the change is {actual}, within {layer_ranges(exp.value)}"
            )
        bad = sorted({x.layer for x in outside} | set(stray))
        worst = max((abs(x.effect) for x in a.layers if x.layer in bad), default=0.0)
        return _Verdict(
            FAILED,
            expected,
            actual,
            f"comparison: {'layer' if len(bad) == 1 else 'layers'} {layer_ranges(bad)} outside "
            f"{layer_ranges(exp.value)} {'carries' if len(bad) == 1 else 'carry'} part of the change "
            f"(effect up to {worst:.3f}, tolerance {ATTRIBUTION_TOLERANCE:g}; {a.method})",
        )
    s = c.change_summary
    if s is None:
        why = c.attribution_note or "the models' distributions cannot be compared (different tokenizers)"
        return _Verdict(
            ERROR, expected, "not measurable", f"comparison: changes_only_in_layers cannot be checked: {why}"
        )
    first = min(allowed)
    if s.diverges_from is None:
        return _Verdict(PASSED, expected, "no change", "comparison: the models are identical at every layer")
    actual = f"diverges from layer {s.diverges_from} (by divergence; --attribution checks causally)"
    ok = s.diverges_from >= first
    verdict = "within" if ok else "before"
    return _Verdict(
        PASSED if ok else FAILED,
        expected,
        actual,
        f"comparison: the models diverge from layer {s.diverges_from}, {verdict} {layer_ranges(exp.value)} "
        "(last position, by divergence; run with --attribution for the causal check)",
    )


def _check_regression(exp: Expectation, base: AnalysisResult, tuned: AnalysisResult) -> _Verdict:
    metric = exp.value
    side = "comparison"
    if metric == "final_top1":
        b, t = base.final_prediction[0], tuned.final_prediction[0]
        expected = f"top-1 {_q(b.token)} (base's)"
        actual = f"top-1 {_q(t.token)} ({_prob(t.prob)})"
        ok = t.token == b.token
        relation = "the same as" if ok else "but"
        return _Verdict(
            PASSED if ok else FAILED,
            expected,
            actual,
            f"{side}: tuned final top-1 is {_q(t.token)} ({_prob(t.prob)}), {relation} base's "
            f"{_q(b.token)} ({_prob(b.prob)})",
        )

    if metric == "answer_logprob":
        return _check_answer_regression(exp, base, tuned)
    token = str(exp.token)
    tol = float(exp.tolerance or 0.0)
    generic = _expected_phrase(exp)
    for role, result in (("base", base), ("tuned", tuned)):
        if _evolution(result, token) is None:
            return _not_tracked(f"{side} ({role})", token, result, generic)
    eb, et = _evolution(base, token), _evolution(tuned, token)
    assert eb is not None and et is not None
    notes = _first_token_note(base, token) or _first_token_note(tuned, token)

    if metric == "final_prob":
        pb, pt = eb.final_prob, et.final_prob
        floor = pb - tol
        ok = pt >= floor - EPSILON
        expected = f"p({_q(token)}) >= {_num(max(floor, 0.0))} (base {_num(pb)} - tolerance {_num(tol)})"
        actual = f"p({_q(et.token)}) = {_prob(pt, floor)}{notes}"
        change = pt - pb
        if ok:
            detail = f"change {100 * change:+.3g} points, tolerance {_num(tol)}"
        else:
            detail = f"dropped {-100 * change:.3g} points, more than the tolerance {_num(tol)}"
        return _Verdict(
            PASSED if ok else FAILED,
            expected,
            actual,
            f"{side}: tuned p({_q(et.token)}) = {_prob(pt, floor)}, base {_prob(pb)} ({detail}){notes}",
        )

    assert metric == "emergence"
    nb, nt = base.model.num_layers, tuned.model.num_layers
    lb, lt = eb.emergence_layer, et.emergence_layer
    tuned_phrase = (
        "never top-1" if lt is None else f"emerges at layer {lt} of 0..{nt - 1} (depth {_pct(_depth(lt, nt))})"
    )
    actual = tuned_phrase + notes
    if lb is None:
        return _Verdict(
            PASSED,
            f"no constraint: base never makes {_q(token)} top-1",
            actual,
            f"{side}: base never makes {_q(token)} top-1, so the tuned model cannot regress (tuned: {tuned_phrase})",
        )
    db = _depth(lb, nb)
    expected = f"emerges by depth {_pct(min(1.0, db + tol))} (base: layer {lb} of 0..{nb - 1}, depth {_pct(db)}; tolerance {_pct(tol)})"
    ok = lt is not None and _depth(lt, nt) <= db + tol + EPSILON
    return _Verdict(
        PASSED if ok else FAILED,
        expected,
        actual,
        f"{side}: tuned {_q(token)} {tuned_phrase}; base emerges at layer {lb} of 0..{nb - 1} "
        f"(depth {_pct(db)}), tolerance {_pct(tol)} of depth{notes}",
    )


# --- whole answers --------------------------------------------------------------------------


def _answer_expected(exp: Expectation, num_layers: int | None) -> str:
    if exp.check == "answer_top1":
        return "every answer token top-1 (greedy writes the answer)"
    if exp.check == "answer_logprob_at_least":
        return f"log p(answer) >= {exp.value:g}"
    if exp.check == "answer_emerges_by_layer":
        if isinstance(exp.value, int):
            return f"every answer token top-1 by layer {exp.value}"
        if num_layers is None:
            return f"every answer token top-1 by depth {_pct(exp.value)}"
        last = int(exp.value * (num_layers - 1) + EPSILON)
        return f"every answer token top-1 by layer {last} (depth {_pct(exp.value)} of layers 0..{num_layers - 1})"
    if exp.check == "generated_startswith":
        return f"generated text starts with {_q(str(exp.value))}"
    return f"generated text matches {_q(str(exp.value))}"


def _clip(text: str) -> str:
    return _q(text if len(text) <= TEXT_SHOWN else text[: TEXT_SHOWN - 1] + "\u2026")


def _tok(answer: AnswerReading, k: int) -> str:
    """``token 3 of 8 ' wet'`` (numbered from 1)."""
    return f"token {k + 1} of {len(answer.tokens)} {_q(answer.tokens[k].token)}"


def _generated_actual(answer: AnswerReading) -> str:
    n = len(answer.tokens)
    return f"generated {_clip(answer.text)} ({n} token{'s' if n != 1 else ''}, stopped: {answer.stop_reason})"


def _check_answer(exp: Expectation, side: str, result: AnalysisResult) -> _Verdict:
    num_layers = result.model.num_layers
    expected = _expected_phrase(exp, num_layers)
    answer = result.answer
    if answer is None or not answer.tokens:
        why = "no answer was read" if answer is None else "the answer has no tokens"
        return _Verdict(ERROR, expected, "no answer", f"{side}: {exp.check} cannot be checked: {why} in this run")
    if exp.check in GENERATED_CHECKS:
        if answer.source != "generated":
            return _Verdict(
                ERROR, expected, "not generated", f"{side}: {exp.check} needs a generated answer (generate: N)"
            )
        return _check_generated(exp, side, answer, expected)
    if exp.check == "answer_top1":
        k = answer.divergence_index
        if k is None:
            actual = f"all {len(answer.tokens)} tokens top-1"
            return _Verdict(PASSED, expected, actual, f"{side}: greedy decoding reproduces the answer ({actual})")
        t = answer.tokens[k]
        top = t.final_top
        actual = f"{_tok(answer, k)} is rank {t.final_rank}"
        return _Verdict(
            FAILED,
            expected,
            actual,
            f"{side}: {_tok(answer, k)} is rank {t.final_rank} at the final layer (needs top-1; "
            f"the model writes {_q(top.token)} ({_prob(top.prob)}) there)",
        )
    if exp.check == "answer_logprob_at_least":
        total, bound = answer.sequence_logprob, float(exp.value)
        ok = total >= bound - EPSILON
        actual = f"log p(answer) = {total:.4g}"
        message = f"{side}: log p(answer) = {total:.4g} ({len(answer.tokens)} tokens), expected >= {bound:g}"
        if not ok:
            k = min(range(len(answer.tokens)), key=lambda i: answer.tokens[i].logprob)
            t = answer.tokens[k]
            message += f"; the least likely is {_tok(answer, k)}: log p {t.logprob:.3g}, rank {t.final_rank}"
        return _Verdict(PASSED if ok else FAILED, expected, actual, message)
    return _check_answer_emergence(exp, side, result, answer, expected)


def _check_answer_emergence(
    exp: Expectation, side: str, result: AnalysisResult, answer: AnswerReading, expected: str
) -> _Verdict:
    num_layers = result.model.num_layers
    if isinstance(exp.value, int) and exp.value >= num_layers:
        return _Verdict(
            ERROR,
            expected,
            f"the model has layers 0..{num_layers - 1}",
            f"{side}: answer_emerges_by_layer {exp.value} is beyond this model's layers 0..{num_layers - 1} "
            f"(use a relative depth such as '100%')",
        )
    limit = float(exp.value) if isinstance(exp.value, int) else exp.value * (num_layers - 1)
    layers = result.captured_layers
    for k, t in enumerate(answer.tokens):
        if t.emergence_layer is not None and t.emergence_layer <= limit + EPSILON:
            continue
        # its rank at the last captured layer within the limit: how far from top-1 it was there
        at = max((i for i, layer in enumerate(layers) if layer <= limit + EPSILON), default=0)
        when = "never top-1" if t.emergence_layer is None else f"first top-1 at layer {t.emergence_layer}"
        actual = f"{_tok(answer, k)} {when}"
        return _Verdict(
            FAILED,
            expected,
            actual,
            f"{side}: {_tok(answer, k)} is rank {t.ranks[at]} at layer {layers[at]} "
            f"(needs top-1 by layer {int(limit + EPSILON)}; {when})",
        )
    latest = max(int(t.emergence_layer or 0) for t in answer.tokens)
    actual = f"every token top-1 by layer {latest} (depth {_pct(_depth(latest, num_layers))})"
    return _Verdict(PASSED, expected, actual, f"{side}: {actual}, expected {expected.replace('every answer ', '')}")


def _token_at_char(tokens: list[AnswerToken], char: int) -> int:
    """The index of the token whose decoded piece covers character ``char`` of the joined pieces."""
    end = 0
    for k, t in enumerate(tokens):
        end += len(t.token)
        if char < end:
            return k
    return len(tokens) - 1


def _check_generated(exp: Expectation, side: str, answer: AnswerReading, expected: str) -> _Verdict:
    actual = _generated_actual(answer)
    text, want = answer.text, str(exp.value)
    if exp.check == "generated_matches":
        ok = re.search(want, text) is not None
        verb = "matches" if ok else "does not match"
        return _Verdict(PASSED if ok else FAILED, expected, actual, f"{side}: {actual} {verb} {_q(want)}")
    if text.startswith(want):
        return _Verdict(PASSED, expected, actual, f"{side}: {actual} starts with {_q(want)}")
    char = next((i for i, (a, b) in enumerate(zip(text, want)) if a != b), min(len(text), len(want)))
    if char >= len(text):
        where = f"it ends after {char} characters ({answer.stop_reason})"
    else:
        k = _token_at_char(answer.tokens, char)
        t = answer.tokens[k]
        where = (
            f"it differs at character {char + 1}, in {_tok(answer, k)} (rank {t.final_rank}, p {_prob(t.final_prob)})"
        )
    return _Verdict(FAILED, expected, actual, f"{side}: {actual} does not start with {_q(want)}: {where}")


def _check_answer_regression(exp: Expectation, base: AnalysisResult, tuned: AnalysisResult) -> _Verdict:
    side = "comparison"
    tol = float(exp.tolerance or 0.0)
    expected = _expected_phrase(exp)
    for role, result in (("base", base), ("tuned", tuned)):
        if result.answer is None or not result.answer.tokens:
            return _Verdict(
                ERROR,
                expected,
                "no answer",
                f"{side} ({role}): no answer was read, so answer_logprob cannot be compared",
            )
    a, b = base.answer, tuned.answer
    assert a is not None and b is not None
    lb, lt = a.sequence_logprob, b.sequence_logprob
    floor = lb - tol
    ok = lt >= floor - EPSILON
    expected = f"log p(answer) >= {floor:.4g} (base {lb:.4g} - tolerance {tol:g} nats)"
    actual = f"log p(answer) = {lt:.4g}"
    change = lt - lb
    if ok:
        return _Verdict(
            PASSED,
            expected,
            actual,
            f"{side}: tuned log p(answer) = {lt:.4g}, base {lb:.4g} (change {change:+.3g} nats, tolerance {tol:g})",
        )
    detail = ""
    if [t.token_id for t in a.tokens] == [t.token_id for t in b.tokens]:
        k = min(range(len(b.tokens)), key=lambda i: b.tokens[i].logprob - a.tokens[i].logprob)
        tb, tt = a.tokens[k], b.tokens[k]
        detail = (
            f"; most at {_tok(b, k)}: log p {tt.logprob:.3g} (base {tb.logprob:.3g}), "
            f"rank {tt.final_rank} (base {tb.final_rank})"
        )
    return _Verdict(
        FAILED,
        expected,
        actual,
        f"{side}: tuned log p(answer) = {lt:.4g}, base {lb:.4g} (dropped {-change:.3g} nats, more than the "
        f"tolerance {tol:g}){detail}",
    )


# --- max_drift_js (suite --drift) ------------------------------------------------------------------


def evaluate_drift(limits: list[DriftLimit], drift: DriftResult | None, why_not: str = "") -> list[CheckOutcome]:
    """The suite's ``max_drift_js`` limits against the drift measured once for the run (``suite --drift``).

    Each limit passes when its statistic (mean, p90, p99 or max of JS over the corpus positions) is at most
    ``js`` at every captured layer of its range; it fails naming the worst layer. Without a measurement
    (``drift`` None: no ``--drift``, or a one-model run, ``why_not`` says) every limit is skipped; a range with no
    captured layer is an error."""
    out = []
    for i, limit in enumerate(limits):
        name = f"drift max_drift_js {layer_ranges(limit.layers)}" + (f" #{i + 1}" if len(limits) > 1 else "")
        stat = limit.stat
        expected = f"{stat} JS <= {_nats(limit.js)} nats at layers {layer_ranges(limit.layers)}"
        if drift is None:
            verdict = _Verdict(SKIPPED, expected, "not measured", f"drift: max_drift_js not checked: {why_not}")
        else:
            rows = [row for row in drift.layers if row.layer in set(limit.layers)]
            if not rows:
                verdict = _Verdict(
                    ERROR, expected, "no such layer", "drift: max_drift_js names no captured layer of the run"
                )
            else:
                attr = "js_mean" if limit.stat == "mean" else f"js_{limit.stat}"
                worst = max(rows, key=lambda r: (getattr(r, attr), -r.layer))
                value = getattr(worst, attr)
                actual = f"{stat} JS {_nats(value)} nats at layer {worst.layer}"
                ok = value <= limit.js + EPSILON
                message = f"drift: {actual} ({'within' if ok else 'above'} the limit {_nats(limit.js)})"
                verdict = _Verdict(PASSED if ok else FAILED, expected, actual, message)
        out.append(
            CheckOutcome(
                name=name,
                check="max_drift_js",
                side="drift",
                expected=verdict.expected,
                actual=verdict.actual,
                status=verdict.status,
                message=verdict.message,
                line=limit.line,
                tolerance=limit.js,
            )
        )
    return out


def _nats(x: float) -> str:
    return f"{x:.4g}"
