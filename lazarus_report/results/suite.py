"""The result of a suite run: cases, their checks and outcomes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .analysis import AnalysisResult
from .codec import (
    SCHEMA_VERSION,
    JsonFile,
    MalformedField,
    ResultFormatError,
    build_dataclass,
    check_header,
    nested_result,
    plain_dict,
    with_header,
)
from .comparison import ComparisonResult
from .drift import DriftResult

SUITE_KIND = "lazarus-report/suite"


# Status of one check, and of a case (the worst of its checks, or "error" when it could not run).
PASSED, FAILED, SKIPPED, ERROR = "passed", "failed", "skipped", "error"


@dataclass(frozen=True)
class CheckOutcome:
    """One expectation of one suite case, evaluated against the run.

    ``side`` says what it was checked on: ``"base"`` (model 1), ``"tuned"`` (model 2), ``"model"`` (the
    one model of a one-model run) or ``"comparison"`` (base vs tuned, e.g. ``no_regression_of``).
    ``expected`` / ``actual`` are short human-readable phrases; ``message`` is the one line a CI log or
    a JUnit failure shows. ``line`` is where the expectation is written in the suite file.
    """

    name: str  # unique within its case and stable across runs, e.g. "tuned final_top1"
    check: str  # final_top1 | not_top1 | final_prob_at_least | final_prob_at_most | emerges_by_layer | no_regression
    side: str
    expected: str
    actual: str
    status: str  # passed | failed | skipped | error
    message: str
    line: int
    # As data, for charts: the token a probability check is about, and a no_regression check's
    # tolerance (tuned may sit this far below base). None where the check has neither.
    token: str | None = None
    tolerance: float | None = None


@dataclass(frozen=True)
class SuiteCase:
    """One prompt of a suite: its run (an analysis, or a comparison of two models) and its checks."""

    id: str
    prompt: str
    line: int  # where the case starts in the suite file
    analysis: AnalysisResult | None  # one-model run
    comparison: ComparisonResult | None  # two-model run
    checks: list[CheckOutcome]
    error: str | None = None  # why the case could not run (then analysis and comparison are None)
    group: str | None = None  # the suite file's ``group`` of the case

    @property
    def status(self) -> str:
        if self.error is not None or any(c.status == ERROR for c in self.checks):
            return ERROR
        if any(c.status == FAILED for c in self.checks):
            return FAILED
        if self.checks and all(c.status == SKIPPED for c in self.checks):
            return SKIPPED
        return PASSED

    @property
    def results(self) -> list[AnalysisResult]:
        """The case's analyses: [model] or [base, tuned] (empty when the case errored)."""
        if self.comparison is not None:
            return list(self.comparison.results)
        return [self.analysis] if self.analysis is not None else []


@dataclass(frozen=True)
class SuiteExecution:
    """How a suite's cases ran through each model: several per forward pass (batched) or one at a time."""

    batched: bool
    batch_size: int | None  # --batch-size as given; None: chosen automatically from the prompts' lengths
    forward_passes: list[int]  # per model, roles order
    note: str | None = None  # why the cases ran one at a time although batching was not turned off


@dataclass(frozen=True)
class SuiteResult(JsonFile):
    """A suite run: every case with its checks, for one model or two (base vs tuned)."""

    name: str
    source: str  # the suite file as given on the command line
    source_sha256: str
    roles: list[str]  # ["base", "tuned"], or for one model ["model"]
    labels: list[str]  # how outputs name each model, same order as roles
    role_checked: str | None  # one-model runs: "base" / "tuned" when that side's expectations were checked
    cases: list[SuiteCase]
    load_seconds: list[float]  # one load per model
    timings: dict[str, float]  # seconds: "engine" (sum of per-case lens work), "compare", "total"
    versions: dict[str, str]
    schema_version: int = SCHEMA_VERSION
    execution: SuiteExecution | None = None  # None in results written before batching existed
    # suite --drift: the drift of model 2 on neutral text (two models), and the suite's max_drift_js checks
    # (skipped without --drift); both left out of the JSON when absent.
    drift: DriftResult | None = None
    drift_checks: list[CheckOutcome] = dataclasses.field(default_factory=list)

    @property
    def two_models(self) -> bool:
        return len(self.roles) == 2

    def counts(self) -> dict[str, int]:
        """Checks by status (passed, failed, skipped, error) plus case errors."""
        out = {PASSED: 0, FAILED: 0, SKIPPED: 0, ERROR: 0}
        for case in self.cases:
            for c in case.checks:
                out[c.status] += 1
            if case.error is not None and not case.checks:
                out[ERROR] += 1
        for c in self.drift_checks:
            out[c.status] += 1
        return out

    @property
    def status(self) -> str:
        statuses = {case.status for case in self.cases} | {c.status for c in self.drift_checks}
        for s in (ERROR, FAILED, PASSED):
            if s in statuses:
                return s
        return SKIPPED if statuses else PASSED

    def to_dict(self) -> dict[str, Any]:
        d = plain_dict(self, skip=("cases", "drift"))
        if self.drift is None:
            del d["drift"]
        else:
            d["drift"] = self.drift.to_dict()
        if not self.drift_checks:
            del d["drift_checks"]
        d["cases"] = [
            {
                **plain_dict(case, skip=("analysis", "comparison")),
                "analysis": case.analysis.to_dict() if case.analysis is not None else None,
                "comparison": case.comparison.to_dict() if case.comparison is not None else None,
            }
            for case in self.cases
        ]
        return with_header(SUITE_KIND, d)

    @classmethod
    def from_dict(cls, data: Any) -> SuiteResult:
        check_header(data, SUITE_KIND, "suite")
        try:
            cases = []
            if not isinstance(data.get("cases"), list):
                raise MalformedField("field 'cases' is missing or not a list")
            for i, c in enumerate(data["cases"]):
                if not isinstance(c, dict):
                    raise MalformedField(f"cases[{i}]: expected an object")
                plain = {k: v for k, v in c.items() if k not in ("analysis", "comparison")}
                built = build_dataclass(_SuiteCaseFields, plain, f"cases[{i}]")
                analysis, comparison = c.get("analysis"), c.get("comparison")
                cases.append(
                    SuiteCase(
                        analysis=nested_result(AnalysisResult, analysis, f"cases[{i}].analysis") if analysis else None,
                        comparison=(
                            nested_result(ComparisonResult, comparison, f"cases[{i}].comparison")
                            if comparison
                            else None
                        ),
                        **{f.name: getattr(built, f.name) for f in dataclasses.fields(built)},
                    )
                )
            rest = {k: v for k, v in data.items() if k not in ("kind", "cases", "drift")}
            built = build_dataclass(_SuiteFields, rest)
            drift = nested_result(DriftResult, data["drift"], "drift") if data.get("drift") is not None else None
            fields = {f.name: getattr(built, f.name) for f in dataclasses.fields(built)}
            return cls(cases=cases, drift=drift, **fields)
        except (KeyError, TypeError, ValueError) as exc:
            raise ResultFormatError(f"malformed suite result: {exc}") from None


@dataclass(frozen=True)
class _SuiteCaseFields:
    id: str
    prompt: str
    line: int
    checks: list[CheckOutcome]
    error: str | None = None
    group: str | None = None


@dataclass(frozen=True)
class _SuiteFields:
    name: str
    source: str
    source_sha256: str
    roles: list[str]
    labels: list[str]
    role_checked: str | None
    load_seconds: list[float]
    timings: dict[str, float]
    versions: dict[str, str]
    schema_version: int = SCHEMA_VERSION
    execution: SuiteExecution | None = None
    drift_checks: list[CheckOutcome] = dataclasses.field(default_factory=list)
