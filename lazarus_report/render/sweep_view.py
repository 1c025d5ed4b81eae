"""A checkpoint sweep prepared for display (plain data; the text, Markdown and HTML renderers share it)."""

from __future__ import annotations

from dataclasses import dataclass

from ..results.sweep import SweepResult
from .formatting import fmt_prob, token_repr

STATUS_MARKS = {"passed": "✓", "failed": "✗", "error": "!", "skipped": "–"}


@dataclass(frozen=True)
class StepRow:
    index: int
    label: str
    source: str  # the checkpoint file, adapter folder or model
    passed: int
    failed: int
    errors: int
    skipped: int
    status: str


@dataclass(frozen=True)
class CaseRow:
    index: int  # in the suite (the HTML's anchor: case-INDEX)
    id: str
    group: str
    target: str
    base_p: str
    marks: list[str]  # per step: ✓ ✗ ! –
    statuses: list[str]
    probs: list[str]  # per step: P(target) as text
    started_passing: str  # the step label, or "" (the last step does not pass)
    started_failing: str
    changed: bool  # the verdict differs between some steps


@dataclass(frozen=True)
class SweepView:
    title: str
    base: str
    suite: str
    verdict: str  # PASSED / FAILED / ERROR
    summary: str  # one line
    policy: str  # what decides the exit status
    steps: list[StepRow]
    cases: list[CaseRow]
    attribution: bool
    collateral: list[CaseRow]  # cases that passed at the first step and fail at the last
    learned: list[CaseRow]  # cases that failed at the first step and pass at the last


def build_sweep_view(result: SweepResult) -> SweepView:
    series = result.case_series()
    labels = [s.label for s in result.steps]
    steps = []
    for k, step in enumerate(result.steps):
        counts = step.counts()
        steps.append(
            StepRow(
                index=k,
                label=step.label,
                source=step.adapter or step.model or "",
                passed=counts["passed"],
                failed=counts["failed"],
                errors=counts["error"],
                skipped=counts["skipped"],
                status=step.status,
            )
        )
    cases = []
    for index, (case, s) in enumerate(zip(result.cases, series)):
        cases.append(
            CaseRow(
                index=index,
                id=case.id,
                group=case.group or "",
                target=token_repr(case.target) if case.target is not None else "",
                base_p=fmt_prob(case.base_p_target) if case.base_p_target is not None else "–",
                marks=[STATUS_MARKS.get(x, "?") for x in s.statuses],
                statuses=list(s.statuses),
                probs=[fmt_prob(p) if p is not None else "–" for p in s.p_target],
                started_passing=labels[s.started_passing] if s.started_passing is not None else "",
                started_failing=labels[s.started_failing] if s.started_failing is not None else "",
                changed=len(set(s.statuses)) > 1,
            )
        )
    last = steps[-1] if steps else None
    n = len(result.cases)
    summary = (
        f"{len(steps)} steps, {n} cases; last step ({last.label}): {last.passed} passed, {last.failed} failed"
        + (f", {last.errors} errors" if last.errors else "")
        if last is not None
        else "no steps"
    )
    ok = {"passed": "PASSED", "skipped": "PASSED", "failed": "FAILED", "error": "ERROR"}[result.status]
    policy = (
        "the last step's expectations decide the exit status"
        if result.fail_on == "last"
        else "every step's expectations decide the exit status"
    )
    return SweepView(
        title=f"{result.name}: {result.base_label} over {len(steps)} checkpoints",
        base=result.base_label,
        suite=result.source,
        verdict=ok,
        summary=summary,
        policy=policy,
        steps=steps,
        cases=cases,
        attribution=result.attribution,
        collateral=[c for c in cases if c.statuses and c.statuses[0] == "passed" and c.statuses[-1] != "passed"],
        learned=[c for c in cases if c.statuses and c.statuses[0] != "passed" and c.statuses[-1] == "passed"],
    )
