"""A ``DiffResult`` prepared for display, shared by the terminal, Markdown, HTML and JUnit renderers.

Every string from a user or a model is made visible here (``clean_text``, ``visible_token``, ``one_line``);
escaping is each format's own (Jinja autoescape, the Markdown environment's ``md_escape``, ElementTree).
Regressions come first, then worse, better and unchanged cases, each in the candidate's order.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..results.diff import BETTER, UNCHANGED, WORSE, CaseDiff, DiffResult, SideDiff
from .formatting import clean_text, fmt_delta, fmt_prob, visible_token

_ORDER = {WORSE: 1, BETTER: 2, UNCHANGED: 3}
PROMPT_CHARS = 120


def one_line(text: str, limit: int = 300) -> str:
    """User text on one visible line (newlines and tabs as markers), clipped to ``limit`` characters."""
    if text.isascii() and text.isprintable():  # nothing to mark (most ids and prompts): 20x faster
        line = text
    else:
        line = clean_text(text).replace("\n", "↵").replace("\t", "⇥")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def arrow(before: object, after: object, none: str = "—") -> str:
    """``before → after``, or the one value when both are the same."""
    x = none if before is None else str(before)
    y = none if after is None else str(after)
    return x if x == y else f"{x} → {y}"


def layers_text(layers: list[int] | None) -> str | None:
    """``22, 27-29`` (runs of consecutive layers); None when there is no attribution."""
    if layers is None:
        return None
    runs: list[list[int]] = []
    for layer in sorted(layers):
        if runs and runs[-1][-1] == layer - 1:
            runs[-1].append(layer)
        else:
            runs.append([layer])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs) or "none"


@dataclass(frozen=True)
class CaseRow:
    """One matched case, as shown."""

    index: int  # in the candidate's order (stable anchor: ``diff-<index>``)
    id: str
    prompt: str
    group: str
    verdict: str
    regression: bool
    transition: str  # "newly failing", "passing", "—" without checks
    status: str  # "passed → failed", "passed"
    role: str  # the subject's role
    target: str | None  # visible token
    prob_before: float | None
    prob_after: float | None
    prob: str  # "81.2% → 64.0%"
    delta: float | None
    delta_text: str  # "−17.2 pp"
    rank: str
    emergence: str
    top1: str
    js: str
    carriers: str
    answer: str  # "-3.21 → -4.02 (−0.81)" or "—"
    reasons: list[str]


def _emergence(side: SideDiff) -> str:
    if side.target is None:
        return "—"
    return arrow(
        "never" if side.emergence_before is None else side.emergence_before,
        "never" if side.emergence_after is None else side.emergence_after,
    )


def _answer(side: SideDiff) -> str:
    if side.answer_logprob_before is None and side.answer_logprob_after is None:
        return "—"
    fmt = "{:.2f}".format
    text = arrow(
        None if side.answer_logprob_before is None else fmt(side.answer_logprob_before),
        None if side.answer_logprob_after is None else fmt(side.answer_logprob_after),
    )
    d = side.answer_logprob_delta
    return text if d is None or d == 0 else f"{text} ({d:+.2f})"


def _top1(side: SideDiff | None) -> str:
    if side is None:
        return "—"
    b, a = side.top1_before, side.top1_after
    return arrow(None if b is None else visible_token(b), None if a is None else visible_token(a))


def _nats(x: float | None) -> str | None:
    return None if x is None else f"{x:.4f}"


def case_row(index: int, case: CaseDiff) -> CaseRow:
    side = case.subject
    has_target = side is not None and side.target is not None
    return CaseRow(
        index=index,
        id=one_line(case.id, 120) or "∅",
        prompt=one_line(case.prompt, PROMPT_CHARS),
        group=one_line(case.group, 60) if case.group else "",
        verdict=case.verdict,
        regression=case.regression,
        transition=case.transition or "—",
        status=arrow(case.status_before, case.status_after),
        role=clean_text(side.role) if side is not None else "",
        target=visible_token(side.target) if side is not None and side.target is not None else None,
        prob_before=side.prob_before if has_target and side is not None else None,
        prob_after=side.prob_after if has_target and side is not None else None,
        prob=arrow(fmt_prob(side.prob_before), fmt_prob(side.prob_after)) if has_target and side else "—",
        delta=side.prob_delta if side is not None else None,
        delta_text=fmt_delta(side.prob_delta) if side is not None and side.prob_delta is not None else "—",
        rank=arrow(side.rank_before, side.rank_after) if has_target and side else "—",
        emergence=_emergence(side) if side is not None else "—",
        top1=_top1(side),
        js=arrow(_nats(case.js_before), _nats(case.js_after)),
        carriers=arrow(layers_text(case.carriers_before), layers_text(case.carriers_after)),
        answer=_answer(side) if side is not None else "—",
        reasons=[one_line(r) for r in case.reasons],
    )


@dataclass(frozen=True)
class DiffView:
    title: str
    generator: str
    kind: str
    summary: str
    verdict: str  # "REGRESSION" | "NO REGRESSION"
    regressed: bool
    warnings: list[str]
    baseline: str  # "baseline.json: capitals (14 cases, failed)"
    candidate: str
    policy: str  # "fails on: a newly failing case or a drop of P(target) beyond 0.02"
    setup: list[tuple[str, str, str, bool]]  # (what, before, after, warning)
    rows: list[CaseRow]  # regressions first, then worse, better, unchanged
    added: list[tuple[str, str, str]]  # (id, prompt, status)
    removed: list[tuple[str, str, str]]
    all_unchanged: bool
    has_js: bool
    has_carriers: bool
    has_answer: bool
    has_checks: bool

    @property
    def regressions(self) -> list[CaseRow]:
        return [r for r in self.rows if r.regression]

    @property
    def others(self) -> list[CaseRow]:
        return [r for r in self.rows if not r.regression]


def _input_line(d: DiffResult, which: str) -> str:
    i = d.baseline if which == "baseline" else d.candidate
    where = f"{one_line(i.path, 200)}: " if i.path else ""
    status = f", {i.status}" if i.status else ""
    return f"{where}{one_line(i.name, 200)} ({i.cases} case{'s' if i.cases != 1 else ''}{status}) · " + " / ".join(
        one_line(label, 200) for label in i.labels
    )


def policy_text(d: DiffResult) -> str:
    if d.fail_on == "new-failures":
        return f"Fails on a newly failing case (drops of P(target) beyond {d.tolerance:g} are shown, not failed)"
    return f"Fails on a newly failing case or a drop of P(target) by more than {d.tolerance:g}"


_LAST: list[tuple[DiffResult, DiffView]] = []  # the last view built: every output of one diff shares it


def build_diff_view(d: DiffResult) -> DiffView:
    """The diff as shown (built once per diff: the renderers of one command share it)."""
    if _LAST and _LAST[0][0] is d:
        return _LAST[0][1]
    view = _build(d)
    _LAST[:] = [(d, view)]
    return view


def _build(d: DiffResult) -> DiffView:
    rows = [case_row(i, c) for i, c in enumerate(d.cases)]
    rows.sort(key=lambda r: (0 if r.regression else _ORDER[r.verdict], r.index))
    version = d.versions.get("lazarus-report", "")
    return DiffView(
        title=f"Diff: {one_line(d.candidate.name, 80)}",
        generator=clean_text(f"lazarus-report {version}".strip()),
        kind=d.source_kind,
        summary=d.summary,
        verdict="REGRESSION" if d.regressed else "NO REGRESSION",
        regressed=d.regressed,
        warnings=[one_line(w) for w in d.warnings],
        baseline=_input_line(d, "baseline"),
        candidate=_input_line(d, "candidate"),
        policy=policy_text(d),
        setup=[(one_line(s.what), one_line(s.before), one_line(s.after), s.warning) for s in d.setup],
        rows=rows,
        added=[(one_line(c.id, 120), one_line(c.prompt, PROMPT_CHARS), c.status or "—") for c in d.added],
        removed=[(one_line(c.id, 120), one_line(c.prompt, PROMPT_CHARS), c.status or "—") for c in d.removed],
        all_unchanged=all(c.verdict == UNCHANGED for c in d.cases) and not d.added and not d.removed,
        has_js=any(c.js_before is not None or c.js_after is not None for c in d.cases),
        has_carriers=any(c.carriers_before is not None or c.carriers_after is not None for c in d.cases),
        has_answer=any(r.answer != "—" for r in rows),
        has_checks=any(c.transition is not None for c in d.cases),
    )
