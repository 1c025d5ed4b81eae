"""A run diffed against its baseline (``lazarus report diff BASELINE CANDIDATE``): plain data, and the pure
function that builds it from two results of the same kind (suite, comparison or analysis).

Cases are matched by id (suites; a repeated id by its occurrence) or, for a single analysis or comparison, by
its prompt and tracked strings. Per matched case: the status transition (newly failing, newly passing, still
failing), and for each model (matched by role; the *subject* is the last one: the tuned model of a two-model run,
model 2 of a comparison, the one model of an analysis) the target's final probability and rank, where it
emerges, the final top-1 and the whole-answer log-probability; for two models the final JS between them and the
attribution's carrier layers.

Verdict of a case (``tolerance``: absolute probability, default ``DEFAULT_TOLERANCE``):

* ``worse``: newly failing, or the subject's P(target) fell by more than ``tolerance``;
* ``better``: otherwise, newly passing, or P(target) rose by more than ``tolerance``;
* ``unchanged``: otherwise (rank, emergence, JS, carriers and the answer log-probability are reported, not
  judged).

A case is a *regression* under ``fail_on``: ``"any-drop"`` (the default) when its verdict is worse;
``"new-failures"`` only when it is newly failing. Added and removed cases are listed, never regressions.

The diff reads the parsed JSON directly (``digest_result``): only the fields it needs, each checked (building the
full result objects of two 1,000-case suites takes tens of seconds; parsing their JSON is most of what is left).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..core.version import __version__
from .codec import (
    SCHEMA_VERSION,
    JsonFile,
    ResultFormatError,
    build_dataclass,
    check_header,
    plain_dict,
    with_header,
)

DIFF_KIND = "lazarus-report/diff"
DEFAULT_TOLERANCE = 0.02
FAIL_ON = ("any-drop", "new-failures")
WORSE, BETTER, UNCHANGED = "worse", "better", "unchanged"
NEWLY_FAILING, NEWLY_PASSING, STILL_FAILING, PASSING = "newly failing", "newly passing", "still failing", "passing"
_FAILING = ("failed", "error")
_EPS = 1e-12  # a change of exactly ``tolerance`` is within it, whatever the float round-off

_KINDS = {
    "lazarus-report/suite": "suite",
    "lazarus-report/comparison": "comparison",
    "lazarus-report/analysis": "analysis",
}


# --- the result --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SideDiff:
    """One model's reading of one case, in the baseline (``*_before``) and the candidate (``*_after``)."""

    role: str
    target: str | None  # the target (first tracked string) in the candidate (else the baseline)
    target_changed: bool  # the two runs track a different first string: probabilities are not compared
    prob_before: float | None
    prob_after: float | None
    rank_before: int | None
    rank_after: int | None
    emergence_before: int | None  # first layer where the target is top-1 (None: never)
    emergence_after: int | None
    top1_before: str | None  # the final top-1 token
    top1_after: str | None
    answer_logprob_before: float | None  # the whole answer's log-probability (None: no answer read)
    answer_logprob_after: float | None

    @property
    def prob_delta(self) -> float | None:
        if self.target_changed or self.prob_before is None or self.prob_after is None:
            return None
        return self.prob_after - self.prob_before

    @property
    def answer_logprob_delta(self) -> float | None:
        if self.answer_logprob_before is None or self.answer_logprob_after is None:
            return None
        return self.answer_logprob_after - self.answer_logprob_before


@dataclass(frozen=True)
class CaseDiff:
    """One case present in both runs."""

    id: str  # the case id (suites), or "prompt" (an analysis or comparison)
    prompt: str
    group: str | None
    status_before: str | None  # passed | failed | skipped | error; None without checks (analysis, comparison)
    status_after: str | None
    transition: str | None  # newly failing | newly passing | still failing | passing; None without checks
    newly_failing_checks: list[str]
    newly_passing_checks: list[str]
    sides: list[SideDiff]  # per model, roles order; the last is the subject
    js_before: float | None  # two models: JS between their final distributions, nats
    js_after: float | None
    carriers_before: list[int] | None  # --attribution: the layers carrying the change
    carriers_after: list[int] | None
    verdict: str  # worse | better | unchanged
    regression: bool  # counts against the gate under the diff's ``fail_on``
    reasons: list[str]  # one line each: why the verdict

    @property
    def subject(self) -> SideDiff | None:
        return self.sides[-1] if self.sides else None


@dataclass(frozen=True)
class CaseRef:
    """A case in one run only."""

    id: str
    prompt: str
    status: str | None


@dataclass(frozen=True)
class SetupChange:
    """Something about how the two runs were made that differs (``warning``: it may explain the diff away)."""

    what: str  # "model (tuned)", "lens (tuned)", "chat template (base)", "lazarus-report version" ...
    before: str
    after: str
    warning: bool


@dataclass(frozen=True)
class DiffInput:
    """One side of the diff: which run it is."""

    path: str | None  # as given on the command line
    name: str  # the suite's name, or the prompt
    labels: list[str]  # the models, roles order
    status: str | None  # a suite's overall status
    cases: int


@dataclass(frozen=True)
class DiffResult(JsonFile):
    """A candidate run diffed against its baseline."""

    source_kind: str  # suite | comparison | analysis
    roles: list[str]  # the candidate's
    baseline: DiffInput
    candidate: DiffInput
    tolerance: float
    fail_on: str
    setup: list[SetupChange]
    warnings: list[str]  # lens or chat-template mismatches: shown at the top of every output
    cases: list[CaseDiff]  # matched cases, in the candidate's order
    added: list[CaseRef]
    removed: list[CaseRef]
    versions: dict[str, str]
    schema_version: int = SCHEMA_VERSION

    @property
    def regressions(self) -> list[CaseDiff]:
        return [c for c in self.cases if c.regression]

    @property
    def regressed(self) -> bool:
        return any(c.regression for c in self.cases)

    def count(self, verdict: str) -> int:
        return sum(1 for c in self.cases if c.verdict == verdict)

    def transitions(self, transition: str) -> int:
        return sum(1 for c in self.cases if c.transition == transition)

    @property
    def summary(self) -> str:
        """One line: ``2 regressions · 14 cases: 2 worse, 1 better, 11 unchanged · 1 newly failing · 1 added``."""
        n = len(self.regressions)
        parts = [f"{n} regression{'s' if n != 1 else ''}" if n else "no regression"]
        total = len(self.cases)
        parts.append(
            f"{total} matched case{'s' if total != 1 else ''}: {self.count(WORSE)} worse, {self.count(BETTER)} better, "
            f"{self.count(UNCHANGED)} unchanged"
        )
        for t in (NEWLY_FAILING, NEWLY_PASSING, STILL_FAILING):
            if self.transitions(t):
                parts.append(f"{self.transitions(t)} {t}")
        if self.added:
            parts.append(f"{len(self.added)} added")
        if self.removed:
            parts.append(f"{len(self.removed)} removed")
        return " · ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return with_header(DIFF_KIND, plain_dict(self))

    @classmethod
    def from_dict(cls, data: Any) -> DiffResult:
        check_header(data, DIFF_KIND, "diff")
        try:
            return build_dataclass(cls, {k: v for k, v in data.items() if k != "kind"})
        except (KeyError, TypeError, ValueError) as exc:
            raise ResultFormatError(f"malformed diff result: {exc}") from None


# --- what the diff reads of a result ---------------------------------------------------------------


@dataclass(frozen=True)
class SideReading:
    """One model's numbers for one case."""

    target: str | None
    prob: float | None
    rank: int | None
    emergence: int | None
    top1: str | None
    answer_logprob: float | None


@dataclass(frozen=True)
class CaseReading:
    id: str
    prompt: str
    group: str | None
    status: str | None
    checks: dict[str, str]  # check name -> status
    sides: list[SideReading]
    js: float | None
    carriers: list[int] | None
    formatted: list[str | None]  # per model: the formatted prompt (chat template applied or not)


@dataclass(frozen=True)
class ModelReading:
    model_id: str
    adapter: str | None
    precision: str
    lens: str  # "logit", "tuned (sha256 1a2b3c4d5e6f)" ...
    chat_template: str  # "applied" | "not applied"


@dataclass(frozen=True)
class ResultDigest:
    """What the diff reads of one result."""

    kind: str  # suite | comparison | analysis
    name: str
    roles: list[str]
    labels: list[str]
    status: str | None
    cases: list[CaseReading]
    models: list[ModelReading] | None  # from the first case that ran (None: no case ran)
    version: str
    schema_version: int
    source_sha256: str | None


def _get(data: Any, key: str, where: str, types: Any, optional: bool = False) -> Any:
    if not isinstance(data, dict):
        raise ResultFormatError(f"{where}: expected an object")
    if key not in data:
        if optional:
            return None
        raise ResultFormatError(f"field {where + '.' if where else ''}{key!r} is missing")
    value = data[key]
    if value is None and optional:
        return None
    if not isinstance(value, types):
        expected = {list: "a list", dict: "an object", str: "a string"}.get(types, "another type")
        raise ResultFormatError(f"field {where + '.' if where else ''}{key}: expected {expected}")
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _last(values: Any) -> Any:
    return values[-1] if isinstance(values, list) and values else None


def _analysis_side(a: dict, where: str) -> SideReading:
    evolutions = _get(a, "token_evolutions", where, list)
    layers = _get(a, "layer_predictions", where, list)
    top = _get(_last(layers) or {}, "top_tokens", f"{where}.layer_predictions[-1]", list) if layers else []
    answer = _get(a, "answer", where, dict, optional=True)
    ev = evolutions[0] if evolutions and isinstance(evolutions[0], dict) else None
    return SideReading(
        target=ev.get("text") if ev is not None and isinstance(ev.get("text"), str) else None,
        prob=_number(_last(ev.get("probs"))) if ev is not None else None,
        rank=_int(_last(ev.get("ranks"))) if ev is not None else None,
        emergence=_int(ev.get("emergence_layer")) if ev is not None else None,
        top1=top[0].get("token") if top and isinstance(top[0], dict) else None,
        answer_logprob=_number(answer.get("sequence_logprob")) if answer is not None else None,
    )


def _comparison_sides(c: dict, where: str) -> tuple[list[SideReading], float | None, list[int] | None]:
    results = _get(c, "results", where, list)
    if len(results) != 2:
        raise ResultFormatError(f"field {where + '.' if where else ''}results must hold the two models' analyses")
    sides = [_analysis_side(r, f"{where}.results[{i}]" if where else f"results[{i}]") for i, r in enumerate(results)]
    tracked = _get(c, "tracked", where, list)
    if tracked and isinstance(tracked[0], dict):  # the comparison's own tracked readings (decoded per model)
        t = tracked[0]
        for m in range(2):
            sides[m] = dataclasses.replace(
                sides[m],
                target=t.get("text") if isinstance(t.get("text"), str) else None,
                prob=_number(_pick(t.get("final_probs"), m)),
                rank=_int(_pick(t.get("final_ranks"), m)),
                emergence=_int(_pick(t.get("emergence_layers"), m)),
            )
    divergences = _get(c, "divergences", where, list)
    js = _number(_last(divergences).get("js")) if divergences and isinstance(_last(divergences), dict) else None
    attribution = _get(c, "attribution", where, dict, optional=True)
    carriers = None
    if attribution is not None:
        raw = attribution.get("carriers")
        carriers = [x for x in raw if _int(x) is not None] if isinstance(raw, list) else None
    return sides, js, carriers


def _pick(values: Any, i: int) -> Any:
    return values[i] if isinstance(values, list) and len(values) > i else None


def _model(a: dict) -> ModelReading:
    model: dict = a["model"] if isinstance(a.get("model"), dict) else {}
    lens = a.get("lens") if isinstance(a.get("lens"), dict) else None
    lens_text = "logit"
    if lens is not None:
        lens_text = str(lens.get("kind", "logit"))
        if isinstance(lens.get("digest"), str):
            lens_text += f" (sha256 {lens['digest'][:12]})"
    return ModelReading(
        model_id=str(model.get("model_id", "")),
        adapter=model.get("adapter") if isinstance(model.get("adapter"), str) else None,
        precision=str(model.get("precision", "")),
        lens=lens_text,
        chat_template="applied" if a.get("chat_template_applied") is True else "not applied",
    )


def _status(checks: list[dict], error: Any) -> str:
    """As ``SuiteCase.status``."""
    statuses = [c.get("status") for c in checks]
    if error is not None or "error" in statuses:
        return "error"
    if "failed" in statuses:
        return "failed"
    if statuses and all(s == "skipped" for s in statuses):
        return "skipped"
    return "passed"


def _suite_case(c: Any, i: int) -> tuple[CaseReading, list[dict]]:
    where = f"cases[{i}]"
    case_id = _get(c, "id", where, str)
    checks = _get(c, "checks", where, list)
    for j, check in enumerate(checks):
        _get(check, "name", f"{where}.checks[{j}]", str)
        _get(check, "status", f"{where}.checks[{j}]", str)
    analysis = _get(c, "analysis", where, dict, optional=True)
    comparison = _get(c, "comparison", where, dict, optional=True)
    runs: list[dict] = []
    js, carriers = None, None
    if comparison is not None:
        sides, js, carriers = _comparison_sides(comparison, f"{where}.comparison")
        runs = comparison["results"]
    elif analysis is not None:
        sides, runs = [_analysis_side(analysis, f"{where}.analysis")], [analysis]
    else:
        sides = []
    group = c.get("group")
    reading = CaseReading(
        id=case_id,
        prompt=_get(c, "prompt", where, str),
        group=group if isinstance(group, str) else None,
        status=_status(checks, c.get("error")),
        checks={check["name"]: check["status"] for check in checks},
        sides=sides,
        js=js,
        carriers=carriers,
        formatted=[r.get("formatted_prompt") if isinstance(r.get("formatted_prompt"), str) else None for r in runs],
    )
    return reading, runs


def digest_result(data: Any) -> ResultDigest:
    """What the diff reads of a result: parsed JSON (fast: no result objects are built) or a result object.
    Raises ``ResultFormatError`` naming the field for anything it cannot read."""
    if hasattr(data, "to_dict") and not isinstance(data, dict):
        data = data.to_dict()
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind not in _KINDS:
        what = (
            f"a {kind.split('/')[-1]} result" if isinstance(kind, str) and kind.startswith("lazarus-report/") else None
        )
        raise ResultFormatError(
            f"{what or 'not a lazarus-report result'}: report diff reads suite, comparison and analysis results"
        )
    check_header(data, kind, _KINDS[kind])
    versions = data.get("versions") if isinstance(data.get("versions"), dict) else {}
    common = dict(kind=_KINDS[kind], schema_version=data["schema_version"])
    if kind == "lazarus-report/suite":
        cases, first = [], None
        for i, c in enumerate(_get(data, "cases", "", list)):
            reading, runs = _suite_case(c, i)
            cases.append(reading)
            if first is None and runs:
                first = runs
        roles, labels = _get(data, "roles", "", list), _get(data, "labels", "", list)
        return ResultDigest(
            name=_get(data, "name", "", str),
            roles=[str(r) for r in roles],
            labels=[str(x) for x in labels],
            status=_suite_status([c.status for c in cases]),
            cases=cases,
            models=[_model(r) for r in first] if first else None,
            version=str(versions.get("lazarus-report", "")),
            source_sha256=data.get("source_sha256") if isinstance(data.get("source_sha256"), str) else None,
            **common,
        )
    if kind == "lazarus-report/comparison":
        sides, js, carriers = _comparison_sides(data, "")
        runs = data["results"]
        labels = [str(x) for x in _get(data, "labels", "", list)]
        roles = ["model 1", "model 2"]
        versions = runs[0].get("versions") if isinstance(runs[0].get("versions"), dict) else {}
    else:
        sides, js, carriers, runs = [_analysis_side(data, "")], None, None, [data]
        model = _model(data)
        labels = [f"{model.model_id} + {model.adapter}" if model.adapter else model.model_id]
        roles = ["model"]
    prompt = _get(runs[0], "prompt", "results[0]" if len(runs) > 1 else "", str)
    tracked = [s.target or "" for s in sides[:1]]
    reading = CaseReading(
        id="prompt",
        prompt=prompt,
        group=None,
        status=None,
        checks={},
        sides=sides,
        js=js,
        carriers=carriers,
        formatted=[r.get("formatted_prompt") if isinstance(r.get("formatted_prompt"), str) else None for r in runs],
    )
    return ResultDigest(
        name=prompt + (f" (tracking {tracked[0]!r})" if tracked and tracked[0] else ""),
        roles=roles,
        labels=labels,
        status=None,
        cases=[reading],
        models=[_model(r) for r in runs],
        version=str(versions.get("lazarus-report", "")),
        source_sha256=None,
        **common,
    )


def _suite_status(statuses: list[str | None]) -> str:
    for s in ("error", "failed", "passed"):
        if s in statuses:
            return s
    return "skipped" if statuses else "passed"


# --- the diff ----------------------------------------------------------------------------------------


def diff_results(
    baseline: Any,
    candidate: Any,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    fail_on: str = "any-drop",
    paths: tuple[str | None, str | None] = (None, None),
) -> DiffResult:
    """Diff ``candidate`` against ``baseline`` (parsed JSON, result objects or ``ResultDigest``\\ s of the
    same kind). Raises ``ResultFormatError`` for unreadable input or two kinds, ``ValueError`` for bad settings."""
    if not (math.isfinite(tolerance) and 0 <= tolerance <= 1):
        raise ValueError(f"the tolerance must be a probability in [0, 1], not {tolerance!r}")
    if fail_on not in FAIL_ON:
        raise ValueError(f"fail_on must be one of {', '.join(FAIL_ON)}, not {fail_on!r}")
    before = baseline if isinstance(baseline, ResultDigest) else digest_result(baseline)
    after = candidate if isinstance(candidate, ResultDigest) else digest_result(candidate)
    if before.kind != after.kind:
        raise ResultFormatError(
            f"the baseline is {_a(before.kind)} result and the candidate {_a(after.kind)} result: "
            "diff two results of the same kind"
        )
    matched, added, removed = _match(before.cases, after.cases, before.kind)
    cases = [_case_diff(b, a, after.roles, tolerance, fail_on) for b, a in matched]
    setup = _setup_changes(before, after)
    warnings = [
        f"the {s.what} differs ({s.before} → {s.after}): differences may come from it" for s in setup if s.warning
    ]
    formats = sum(
        1
        for b, a in matched
        if b.prompt == a.prompt
        and any(x is not None and y is not None and x != y for x, y in zip(b.formatted, a.formatted))
    )
    if formats:
        warnings.append(
            f"the prompt format (chat template) differs in {formats} matched case{'s' if formats != 1 else ''}: "
            "the same prompt was tokenized from different text"
        )
    return DiffResult(
        source_kind=after.kind,
        roles=list(after.roles),
        baseline=_input(before, paths[0]),
        candidate=_input(after, paths[1]),
        tolerance=tolerance,
        fail_on=fail_on,
        setup=setup,
        warnings=warnings,
        cases=cases,
        added=[CaseRef(c.id, c.prompt, c.status) for c in added],
        removed=[CaseRef(c.id, c.prompt, c.status) for c in removed],
        versions={"lazarus-report": __version__},
    )


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _input(d: ResultDigest, path: str | None) -> DiffInput:
    return DiffInput(path=path, name=d.name, labels=list(d.labels), status=d.status, cases=len(d.cases))


def _match(
    before: list[CaseReading], after: list[CaseReading], kind: str
) -> tuple[list[tuple[CaseReading, CaseReading]], list[CaseReading], list[CaseReading]]:
    """Pairs in the candidate's order, then the candidate's unmatched cases (added), the baseline's (removed)."""

    def keys(cases: list[CaseReading]) -> list[tuple[str, ...]]:
        seen: dict[tuple[str, ...], int] = {}
        out = []
        for c in cases:
            base = (c.id,) if kind == "suite" else (c.prompt, *(s.target or "" for s in c.sides[-1:]))
            seen[base] = seen.get(base, 0) + 1
            out.append((*base, str(seen[base])))
        return out

    by_key = dict(zip(keys(before), before))
    after_keys = keys(after)
    matched = [(by_key[k], c) for k, c in zip(after_keys, after) if k in by_key]
    added = [c for k, c in zip(after_keys, after) if k not in by_key]
    taken = set(after_keys)
    removed = [c for k, c in zip(keys(before), before) if k not in taken]
    return matched, added, removed


def _transition(before: str | None, after: str | None) -> str | None:
    if before is None or after is None:
        return None
    was, now = before in _FAILING, after in _FAILING
    if now:
        return STILL_FAILING if was else NEWLY_FAILING
    return NEWLY_PASSING if was else PASSING


def _side_diff(role: str, b: SideReading, a: SideReading) -> SideDiff:
    changed = b.target is not None and a.target is not None and b.target != a.target
    return SideDiff(
        role=role,
        target=a.target if a.target is not None else b.target,
        target_changed=changed or (b.target is None) != (a.target is None),
        prob_before=b.prob,
        prob_after=a.prob,
        rank_before=b.rank,
        rank_after=a.rank,
        emergence_before=b.emergence,
        emergence_after=a.emergence,
        top1_before=b.top1,
        top1_after=a.top1,
        answer_logprob_before=b.answer_logprob,
        answer_logprob_after=a.answer_logprob,
    )


def _sides(b: CaseReading, a: CaseReading, roles: list[str]) -> list[SideDiff]:
    """Models matched by position; a one-model run against a two-model one compares the subjects only."""
    if len(b.sides) == len(a.sides):
        pairs = list(zip(b.sides, a.sides))
        names = roles[-len(pairs) :] if pairs else []
    elif b.sides and a.sides:
        pairs, names = [(b.sides[-1], a.sides[-1])], roles[-1:]
    else:
        return []
    names = names if len(names) == len(pairs) else [f"model {i + 1}" for i in range(len(pairs))]
    return [_side_diff(name, x, y) for name, (x, y) in zip(names, pairs)]


def _case_diff(b: CaseReading, a: CaseReading, roles: list[str], tolerance: float, fail_on: str) -> CaseDiff:
    transition = _transition(b.status, a.status)
    sides = _sides(b, a, roles)
    newly_failing = [n for n, s in a.checks.items() if s in _FAILING and b.checks.get(n) not in (None, *_FAILING)]
    newly_passing = [n for n, s in a.checks.items() if s == "passed" and b.checks.get(n) in _FAILING]
    reasons: list[str] = []
    worse = transition == NEWLY_FAILING
    better = transition == NEWLY_PASSING
    if worse:
        reasons.append("newly failing" + (f": {', '.join(newly_failing)}" if newly_failing else ""))
    if better:
        reasons.append("newly passing" + (f": {', '.join(newly_passing)}" if newly_passing else ""))
    subject = sides[-1] if sides else None
    if subject is not None:
        delta = subject.prob_delta
        if delta is not None and abs(delta) > tolerance + _EPS:
            reasons.append(
                f"P({subject.target!r}) in the {subject.role} model {'fell' if delta < 0 else 'rose'} "
                f"{_pct(subject.prob_before)} → {_pct(subject.prob_after)} ({delta:+.3f}, tolerance {tolerance:g})"
            )
            worse = worse or delta < 0
            better = better or delta > 0
        if subject.target_changed:
            reasons.append("the target changed: its probabilities are not compared")
    if b.prompt != a.prompt:
        reasons.append("the prompt changed")
    verdict = WORSE if worse else BETTER if better else UNCHANGED
    regression = transition == NEWLY_FAILING if fail_on == "new-failures" else verdict == WORSE
    return CaseDiff(
        id=a.id,
        prompt=a.prompt,
        group=a.group,
        status_before=b.status,
        status_after=a.status,
        transition=transition,
        newly_failing_checks=newly_failing,
        newly_passing_checks=newly_passing,
        sides=sides,
        js_before=b.js,
        js_after=a.js,
        carriers_before=b.carriers,
        carriers_after=a.carriers,
        verdict=verdict,
        regression=regression,
        reasons=reasons,
    )


def _pct(p: float | None) -> str:
    return "n/a" if p is None else f"{100 * p:.3g}%"


def _setup_changes(before: ResultDigest, after: ResultDigest) -> list[SetupChange]:
    out: list[SetupChange] = []

    def add(what: str, x: Any, y: Any, warning: bool = False) -> None:
        if x != y:
            out.append(
                SetupChange(what, "none" if x in (None, "") else str(x), "none" if y in (None, "") else str(y), warning)
            )

    add("roles", " / ".join(before.roles), " / ".join(after.roles))
    if before.models is not None and after.models is not None:
        pairs = list(zip(before.models, after.models))
        names = after.roles if len(before.models) == len(after.models) == len(after.roles) else None
        if len(before.models) != len(after.models):
            pairs, names = [(before.models[-1], after.models[-1])], after.roles[-1:]
        for i, (x, y) in enumerate(pairs):
            role = names[i] if names and i < len(names) else f"model {i + 1}"
            add(f"model ({role})", x.model_id, y.model_id)
            add(f"adapter ({role})", x.adapter, y.adapter)
            add(f"precision ({role})", x.precision, y.precision)
            add(f"lens ({role})", x.lens, y.lens, warning=True)
            add(f"chat template ({role})", x.chat_template, y.chat_template, warning=True)
    else:
        add("models", " / ".join(before.labels), " / ".join(after.labels))
    add("lazarus-report version", before.version, after.version)
    add("result schema version", before.schema_version, after.schema_version)
    if before.kind == "suite":
        add("suite name", before.name, after.name)
        add("suite file (sha256)", (before.source_sha256 or "")[:12], (after.source_sha256 or "")[:12])
    return out
