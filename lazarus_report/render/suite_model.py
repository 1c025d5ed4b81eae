"""The report model of a suite run: a ``SuiteResult`` prepared for display, as plain data.

Like ``report_model`` for one prompt, this decides *what* a suite report says (the verdict, which
cases come first, each case's target, final top-1 and emergence per model, the anchors); the HTML,
Markdown and terminal renderers only lay it out. Each case that ran carries the single-prompt
report model of its run (``CaseView.report``), so the HTML page reuses the single-report parts.

A case's *target* is its first tracked token (``analysis.token_evolutions[0]``, or
``comparison.tracked[0]``); a case that tracks nothing has none.

Every string here has been through ``clean_text`` or ``token_view`` (see ``report_model``).
"""

from __future__ import annotations

import dataclasses
import math
import re
import unicodedata
from dataclasses import dataclass

from lazarus_report.render.formatting import clean_text, finite, fmt_seconds, visible_token
from lazarus_report.render.lens_view import lens_name, trust_sentences
from lazarus_report.render.report_model import (
    InfoRow,
    ReportModel,
    TokenView,
    build_comparison_report,
    build_report,
    token_view,
)
from lazarus_report.results.analysis import AnalysisResult
from lazarus_report.results.suite import ERROR, FAILED, PASSED, SKIPPED, SuiteCase, SuiteResult

# Failures first: the order of the Markdown table and of "failures first" lists.
STATUS_ORDER = {ERROR: 0, FAILED: 1, SKIPPED: 2, PASSED: 3}
MESSAGE_MAX_CHARS = 300  # a check message or case error, as one line of a PR comment
ANCHOR_MAX_CHARS = 48
# Cases shown in full (the single-prompt report: final predictions, trajectory chart, layer table), failing
# first; the others are shown in brief (checks, prompt, the overview row). A full case costs ~18 KB of HTML
# and a chart: at 1,000 cases the page would be ~20 MB and take minutes to render (docs/suites.md, budgets).
DETAIL_LIMIT = 50


@dataclass(frozen=True)
class CheckView:
    """One check of a case, as shown."""

    name: str
    check: str
    side: str
    expected: str
    actual: str
    status: str
    message: str  # one line, clipped to MESSAGE_MAX_CHARS
    line: int

    @property
    def failing(self) -> bool:
        return self.status in (FAILED, ERROR)

    @property
    def about_answer(self) -> bool:
        """A check on the case's whole answer (``answer_*``, ``generated_*``, ``no_regression_of answer_logprob``)."""
        return is_answer_check(self.check, self.name)


@dataclass(frozen=True)
class SideView:
    """One model's outcome for one case (a cell group of the overview table, a point of the chart)."""

    final: TokenView  # the model's final top-1
    final_prob: float | None
    num_layers: int
    has_target: bool
    target_emergence: int | None  # first layer where the target is top-1 (None: never, or no target)
    target_depth: float | None  # the same as relative depth, (layer + 1) / layers
    target_prob: float | None  # the target's final probability
    target_rank: int | None

    @property
    def emergence_text(self) -> str:
        """The layer from which the target is top-1: ``17``, ``never``, or ``—`` without a target."""
        if not self.has_target:
            return "—"
        return "never" if self.target_emergence is None else str(self.target_emergence)


@dataclass(frozen=True)
class CaseView:
    """One case of the suite."""

    index: int  # position in the suite file
    key: str  # prefix of every id inside the case's section: "c3"
    anchor: str  # the section's id, "case-<slug>": unique, ASCII, stable for the same ids
    id: str  # on one line (↵ for a newline); ∅ for an empty id
    status: str  # passed | failed | skipped | error
    prompt: str
    line: int
    error: str | None  # why the case could not run (one line)
    checks: list[CheckView]
    failing: int  # failed and errored checks (1 for a case that could not run)
    target: TokenView | None  # the first tracked token, as the user wrote it
    sides: list[SideView]  # one per model; empty when the case could not run
    delta: float | None  # tuned − base final probability of the target (two models)
    report: ReportModel | None  # the single-prompt report of the case's run
    group: str | None = None  # the suite file's ``group``
    final_js: float | None = None  # two models: JS between their final distributions (last position)
    top1_changed: bool | None = None  # two models: the final top-1 differs
    js_by_layer: list[float] | None = None  # two models, same depth: JS per layer (the sparkline)
    sparkline: str = ""  # SVG polyline points of js_by_layer, 80 x 16, JS / ln 2 upwards
    diverges_from: int | None = None
    carriers: str | None = None  # --attribution: the layers carrying the change ("22, 27-29"), "" for none
    tolerance: float | None = None  # no_regression_of final_prob on the target: how far tuned may drop
    detailed: bool = True  # shown in full (``report`` built); False: in brief, beyond ``DETAIL_LIMIT``
    answers: list[str] = dataclasses.field(default_factory=list)  # per model: its answer in one line (answer_line)

    @property
    def answer_checks(self) -> list[CheckView]:
        return [c for c in self.checks if c.about_answer]

    @property
    def changed_but_passing(self) -> bool:
        """Passed, but the final top-1 changed between the models: worth a look."""
        return self.status == PASSED and bool(self.top1_changed)

    @property
    def open(self) -> bool:
        """Shown expanded: the cases someone has to look at."""
        return self.status in (FAILED, ERROR)

    @property
    def failing_checks(self) -> list[CheckView]:
        return [c for c in self.checks if c.failing]


@dataclass(frozen=True)
class ModelView:
    """One model of the suite run (read from the first case that ran)."""

    tag: str  # role: base, tuned, model
    label: str
    family: str | None
    num_layers: int | None
    precision: str | None


@dataclass(frozen=True)
class GroupView:
    """Cases that share a ``group``: how they fared."""

    name: str
    cases: int
    passed: int
    top1_changed: int  # two models: cases whose final top-1 changed


@dataclass(frozen=True)
class SuiteReport:
    """A whole suite report."""

    title: str
    generator: str
    name: str
    source: str
    source_sha256: str
    tags: list[str]  # the roles: ["base", "tuned"] or ["model"]
    labels: list[str]
    models: list[ModelView]
    role_checked: str | None
    two_models: bool
    status: str  # the suite's: error > failed > passed > skipped
    verdict: str  # "PASSED", "FAILED", "ERROR" (a case could not run or a check errored), "SKIPPED"
    counts_line: str  # "18 of 20 cases passed · 2 failed · 41 checks: 38 passed, 2 failed, 1 skipped"
    case_counts: dict[str, int]
    check_counts: dict[str, int]
    cases: list[CaseView]
    by_depth: bool  # the models differ in depth: emergence is compared as relative depth
    facts: list[InfoRow]  # the suite file and the models
    versions: list[InfoRow]
    timings: list[InfoRow]

    groups: list[GroupView] = dataclasses.field(default_factory=list)  # by ``group``, in file order
    carrier_layers: str = ""  # --attribution: how many cases each layer carries, "22 (14), 27 (12)"
    detail_limit: int = DETAIL_LIMIT  # cases shown in full, failing first
    lens: str = "Logit lens"  # the lens every case was read through (capitalized), in titles and headings
    trust: list[str] = dataclasses.field(default_factory=list)  # the lens and which layers to trust

    @property
    def brief_count(self) -> int:
        """Cases that ran but are shown in brief (beyond ``detail_limit``)."""
        return sum(1 for c in self.cases if not c.detailed)

    @property
    def failures(self) -> list[CaseView]:
        return [c for c in self.cases if c.status in (FAILED, ERROR)]

    @property
    def has_answers(self) -> bool:
        """Some case has an answer (the overview gets an Answer column)."""
        return any(c.answers or c.answer_checks for c in self.cases)

    @property
    def two_model_columns(self) -> bool:
        return any(c.final_js is not None for c in self.cases)

    @property
    def failures_first(self) -> list[CaseView]:
        return sorted(self.cases, key=lambda c: (STATUS_ORDER[c.status], c.index))

    @property
    def verdict_order(self) -> list[CaseView]:
        """Failing cases first, then passing cases whose final top-1 changed, then the rest (file order within)."""
        return sorted(self.cases, key=lambda c: (STATUS_ORDER[c.status], not c.changed_but_passing, c.index))

    @property
    def changed_but_passing(self) -> list[CaseView]:
        return [c for c in self.cases if c.changed_but_passing]

    @property
    def with_target(self) -> list[CaseView]:
        return [c for c in self.cases if c.target is not None and c.sides]


def build_suite_report(suite: SuiteResult, detail_limit: int = DETAIL_LIMIT) -> SuiteReport:
    """Prepare a suite run for display: the first ``detail_limit`` cases in failures-first order in full,
    the others in brief."""
    tags = [clean_text(r) for r in suite.roles]
    labels = [clean_text(label) for label in suite.labels]
    anchors = case_anchors([c.id for c in suite.cases])
    ran = [i for i, case in enumerate(suite.cases) if case.results]  # a case that could not run has no details
    detailed = set(sorted(ran, key=lambda i: (STATUS_ORDER[suite.cases[i].status], i))[: max(0, detail_limit)])
    cases = [_case_view(i, case, anchors[i], tags, i in detailed) for i, case in enumerate(suite.cases)]
    first_run = next((c.results for c in suite.cases if c.results), [])
    models = [
        ModelView(
            tag=tag,
            label=label,
            family=clean_text(first_run[m].model.family) if m < len(first_run) else None,
            num_layers=first_run[m].model.num_layers if m < len(first_run) else None,
            precision=clean_text(first_run[m].model.precision) if m < len(first_run) else None,
        )
        for m, (tag, label) in enumerate(zip(tags, labels))
    ]
    depths = {side.num_layers for c in cases for side in c.sides}
    case_counts = {s: sum(1 for c in cases if c.status == s) for s in (PASSED, FAILED, SKIPPED, ERROR)}
    check_counts = suite.counts()
    version = suite.versions.get("lazarus-report", "")
    name = clean_text(suite.name)
    lens = suite_lens(suite)
    return SuiteReport(
        title=f"Suite: {name} ({lens.lower()})",
        generator=clean_text(f"lazarus-report {version}".strip()),
        name=name,
        source=clean_text(suite.source),
        source_sha256=clean_text(suite.source_sha256),
        tags=tags,
        labels=labels,
        models=models,
        role_checked=clean_text(suite.role_checked) if suite.role_checked else None,
        two_models=suite.two_models,
        status=suite.status,
        verdict=suite.status.upper(),
        counts_line=counts_line(case_counts, check_counts),
        case_counts=case_counts,
        check_counts=check_counts,
        cases=cases,
        by_depth=len(depths) > 1,
        facts=[
            InfoRow("Suite file", clean_text(suite.source)),
            InfoRow("SHA-256", clean_text(suite.source_sha256)),
            *(InfoRow(tag, label) for tag, label in zip(tags, labels)),
            *([] if suite.two_models else [InfoRow("Also checked as", clean_text(suite.role_checked or "none"))]),
            *([InfoRow("Forward passes", execution_text(suite))] if suite.execution is not None else []),
            InfoRow("Schema version", str(suite.schema_version)),
        ],
        versions=[InfoRow(clean_text(k), clean_text(v)) for k, v in suite.versions.items()],
        timings=[InfoRow(clean_text(k), fmt_seconds(v)) for k, v in suite.timings.items()]
        + [InfoRow(f"load {tag}", fmt_seconds(s)) for tag, s in zip(tags, suite.load_seconds)],
        groups=_groups(cases),
        carrier_layers=_carrier_layers(suite),
        detail_limit=detail_limit,
        lens=lens,
        trust=[clean_text(t) for t in trust_sentences(first_run, tags)] if first_run else [],
    )


def suite_lens(suite: SuiteResult) -> str:
    """The lens the suite's cases were read through: ``Tuned lens`` (``Logit lens`` when no case ran)."""
    kinds = list(dict.fromkeys(r.lens_kind for case in suite.cases for r in case.results)) or ["logit"]
    return " / ".join(lens_name(k) for k in kinds).capitalize()


def execution_text(suite: SuiteResult) -> str:
    """How the cases ran: ``batched: 4 passes for 96 cases (automatic size)``, or one at a time and why."""
    e = suite.execution
    if e is None:
        return ""
    ran = sum(1 for c in suite.cases if c.results)
    passes = " / ".join(str(n) for n in e.forward_passes)
    if e.batched:
        size = "automatic size" if e.batch_size is None else f"at most {e.batch_size} per pass"
        return clean_text(f"batched: {passes} passes for {ran} cases ({size})")
    return clean_text(f"one case at a time ({passes} passes)" + (f": {e.note}" if e.note else ""))


def _groups(cases: list[CaseView]) -> list[GroupView]:
    names = list(dict.fromkeys(c.group for c in cases if c.group is not None))
    return [
        GroupView(
            name=name,
            cases=sum(1 for c in cases if c.group == name),
            passed=sum(1 for c in cases if c.group == name and c.status == PASSED),
            top1_changed=sum(1 for c in cases if c.group == name and c.top1_changed),
        )
        for name in names
    ]


def _carrier_layers(suite: SuiteResult) -> str:
    counts: dict[int, int] = {}
    for case in suite.cases:
        a = case.comparison.attribution if case.comparison is not None else None
        for layer in a.carriers if a is not None else []:
            counts[layer] = counts.get(layer, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{layer} ({n})" for layer, n in ranked)


def counts_line(cases: dict[str, int], checks: dict[str, int]) -> str:
    """``18 of 20 cases passed · 2 failed · 41 checks: 38 passed, 2 failed, 1 skipped``."""
    total = sum(cases.values())
    parts = [f"{cases[PASSED]} of {total} case{'s' if total != 1 else ''} passed"]
    for status, words in ((FAILED, "failed"), (ERROR, "errored"), (SKIPPED, "skipped")):
        if cases[status]:
            parts.append(f"{cases[status]} {words}")
    n_checks = sum(checks.values())
    errors = "error" if checks[ERROR] == 1 else "errors"
    check_words = ((PASSED, "passed"), (FAILED, "failed"), (SKIPPED, "skipped"), (ERROR, errors))
    by_status = [f"{checks[s]} {word}" for s, word in check_words if checks[s] or s == PASSED]
    parts.append(f"{n_checks} check{'s' if n_checks != 1 else ''}: " + ", ".join(by_status))
    return " · ".join(parts)


def case_anchors(ids: list[str]) -> list[str]:
    """One HTML id per case: ``case-`` + an ASCII slug of the case id (lowercase letters, digits and
    ``-``; accents folded, anything else a dash), made unique with ``-2``, ``-3`` ...; ``case-<n>``
    for an id with no letters or digits."""
    out: list[str] = []
    taken: set[str] = set()
    for i, case_id in enumerate(ids):
        folded = unicodedata.normalize("NFKD", case_id).encode("ascii", "ignore").decode("ascii").lower()
        slug = re.sub(r"[^a-z0-9]+", "-", folded).strip("-")[:ANCHOR_MAX_CHARS].strip("-") or str(i + 1)
        anchor, n = f"case-{slug}", 2
        while anchor in taken:
            anchor, n = f"case-{slug}-{n}", n + 1
        taken.add(anchor)
        out.append(anchor)
    return out


def target_text(case: SuiteCase) -> str | None:
    """The case's target as the user wrote it: its first tracked string (None when it tracks nothing)."""
    if case.comparison is not None:
        return case.comparison.tracked[0].text if case.comparison.tracked else None
    if case.analysis is not None and case.analysis.token_evolutions:
        return case.analysis.token_evolutions[0].text
    return None


def is_answer_check(check: str, name: str) -> bool:
    """``answer_*`` and ``generated_*`` checks, and ``no_regression_of: answer_logprob`` (named so)."""
    return check.startswith(("answer_", "generated_")) or (check == "no_regression" and "answer_logprob" in name)


def answer_line(result: AnalysisResult) -> str | None:
    """A run's answer in one plain line (None without one), e.g. ``7 tokens, log p -1.23, greedy writes it``,
    ``7 tokens, log p -7.9, greedy departs at token 3 '(' (rank 4)`` or
    ``generated 'get_weather(' (4 tokens, stop), log p -0.41``. Tokens and text as ASCII-safe literals."""
    a = result.answer
    if a is None:
        return None
    n = len(a.tokens)
    counted = f"{n} token{'s' if n != 1 else ''}"
    if a.source == "generated":
        text = a.text if len(a.text) <= 60 else a.text[:59] + "\u2026"
        return f"generated {text!a} ({counted}, {a.stop_reason}), log p {a.sequence_logprob:.3g}"
    k = a.divergence_index
    if k is None or k >= n:
        return f"{counted}, log p {a.sequence_logprob:.3g}, greedy writes it"
    t = a.tokens[k]
    return (
        f"{counted}, log p {a.sequence_logprob:.3g}, greedy departs at token {k + 1} {t.token!a} (rank {t.final_rank})"
    )


def one_line(text: str, limit: int = MESSAGE_MAX_CHARS) -> str:
    """User text as one visible line (newlines and tabs as markers), clipped to ``limit`` characters."""
    line = clean_text(text).replace("\n", "↵").replace("\t", "⇥")
    return line if len(line) <= limit else line[: limit - 1] + "…"


# --- pieces -------------------------------------------------------------------------------------


def _case_view(index: int, case: SuiteCase, anchor: str, tags: list[str], detailed: bool = True) -> CaseView:
    key = f"c{index}"
    checks = [
        CheckView(
            name=clean_text(c.name),
            check=clean_text(c.check),
            side=clean_text(c.side),
            expected=clean_text(c.expected),
            actual=clean_text(c.actual),
            status=c.status,
            message=one_line(c.message),
            line=c.line,
        )
        for c in case.checks
    ]
    report: ReportModel | None = None
    sides: list[SideView] = []
    text = target_text(case)
    target = token_view(text) if text is not None else None
    if case.comparison is not None:
        if detailed:
            report = build_comparison_report(case.comparison, key_prefix=f"{key}-", tags=tags)
        tracked = case.comparison.tracked[0] if case.comparison.tracked else None
        for m, result in enumerate(case.comparison.results):
            sides.append(
                _side(
                    result,
                    tracked is not None,
                    tracked.emergence_layers[m] if tracked else None,
                    tracked.final_probs[m] if tracked else None,
                    tracked.final_ranks[m] if tracked else None,
                )
            )
    elif case.analysis is not None:
        if detailed:
            report = build_report([case.analysis], key_prefix=f"{key}-")
        evolution = case.analysis.token_evolutions[0] if case.analysis.token_evolutions else None
        sides.append(
            _side(
                case.analysis,
                evolution is not None,
                evolution.emergence_layer if evolution else None,
                evolution.final_prob if evolution else None,
                evolution.ranks[-1] if evolution and evolution.ranks else None,
            )
        )
    probs = [s.target_prob for s in sides]
    delta = probs[1] - probs[0] if len(probs) == 2 and None not in probs else None  # type: ignore[operator]
    failing = sum(1 for c in checks if c.failing) + (1 if case.error is not None and not checks else 0)
    return CaseView(
        index=index,
        key=key,
        anchor=anchor,
        id=_case_id(case.id),
        status=case.status,
        prompt=clean_text(case.prompt),
        line=case.line,
        error=one_line(case.error) if case.error is not None else None,
        checks=checks,
        failing=failing,
        target=target,
        sides=sides,
        delta=finite(delta),
        report=report,
        group=clean_text(case.group) if case.group is not None else None,
        tolerance=next((c.tolerance for c in case.checks if c.tolerance is not None and c.token == text), None),
        detailed=detailed or not case.results,
        answers=[one_line(line) for r in case.results if (line := answer_line(r)) is not None],
        **_change_fields(case),
    )


def _change_fields(case: SuiteCase) -> dict:
    """Final-layer JS, top-1 changed, the JS-by-layer sparkline and the carriers of a two-model case."""
    c = case.comparison
    if c is None or not c.divergences:
        return {}
    last = c.divergences[-1]
    out: dict = {"final_js": finite(last.js), "top1_changed": not last.top1_agree}
    js = [finite(d.js) for d in c.divergences]
    if all(x is not None for x in js) and len(js) > 1:
        values = [float(x) for x in js]  # type: ignore[arg-type]
        step = 80 / (len(values) - 1)
        out["js_by_layer"] = values
        out["sparkline"] = " ".join(
            f"{i * step:.1f},{16 - 15 * min(1.0, v / math.log(2)):.1f}" for i, v in enumerate(values)
        )
    if c.change_summary is not None:
        out["diverges_from"] = c.change_summary.diverges_from
    if c.attribution is not None:
        runs: list[list[int]] = []
        for layer in sorted(c.attribution.carriers):
            if runs and runs[-1][-1] == layer - 1:
                runs[-1].append(layer)
            else:
                runs.append([layer])
        out["carriers"] = ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)
    return out


def _case_id(case_id: str) -> str:
    """A case id on one visible line; one of only whitespace (or empty) with whitespace markers."""
    line = one_line(case_id, ANCHOR_MAX_CHARS * 4)
    return line if line.strip() else visible_token(case_id)


def _side(result, has_target: bool, emergence: int | None, prob: float | None, rank: int | None) -> SideView:
    top = result.final_prediction[0]
    n = result.model.num_layers
    return SideView(
        final=token_view(top.token, top.token_id),
        final_prob=finite(top.prob),
        num_layers=n,
        has_target=has_target,
        target_emergence=emergence,
        target_depth=None if emergence is None else (emergence + 1) / max(1, n),
        target_prob=finite(prob),
        target_rank=rank,
    )
