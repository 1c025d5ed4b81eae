"""The result of a checkpoint sweep: one suite run against the base at every training step.

Per step it keeps what a reader follows over training (each case's verdict and checks, the tuned model's
P(target), its rank, the emergence layer, the final-layer JS divergence to the base and, with attribution,
the carrier layers), not the steps' whole comparisons: a sweep of 10 steps stays small. Per case, what
changes over the steps (``SweepResult.case_series``) is derived from the steps, never stored apart from them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .codec import (
    SCHEMA_VERSION,
    JsonFile,
    ResultFormatError,
    build_dataclass,
    check_header,
    plain_dict,
    with_header,
)
from .suite import ERROR, FAILED, PASSED, SKIPPED, CheckOutcome

SWEEP_KIND = "lazarus-report/sweep"
FAIL_ON = ("last", "any")  # which steps' failed expectations make the sweep exit 1


@dataclass(frozen=True)
class StepCase:
    """One case at one step: its verdict and the tuned model's numbers (None where the case has no target or
    could not run). ``final_js``: JS(base, tuned) at the last layer, in nats."""

    id: str
    status: str  # passed | failed | skipped | error
    checks: list[CheckOutcome]
    p_target: float | None
    rank: int | None
    emergence_layer: int | None
    final_js: float | None
    carriers: list[int] | None  # with --attribution: the layers that carry the change
    top1: str | None
    error: str | None = None


@dataclass(frozen=True)
class SweepStep:
    """One checkpoint (or model) of the sweep and its suite run against the base."""

    label: str  # "step 100", "final", or the path given
    step: int | None  # the training iteration (from the checkpoint's file name)
    adapter: str | None  # the checkpoint file or adapter folder applied to the base
    model: str | None  # a model of its own (--models)
    sha256: str | None  # of the adapter weights: what a resumed sweep matches
    model_label: str  # how the suite run named the tuned side
    cases: list[StepCase]
    seconds: float | None = None  # wall-clock for this step (None without timings)

    @property
    def status(self) -> str:
        statuses = {c.status for c in self.cases}
        for s in (ERROR, FAILED, PASSED):
            if s in statuses:
                return s
        return SKIPPED if statuses else PASSED

    def counts(self) -> dict[str, int]:
        """Cases by status."""
        out = {PASSED: 0, FAILED: 0, SKIPPED: 0, ERROR: 0}
        for c in self.cases:
            out[c.status] += 1
        return out


@dataclass(frozen=True)
class SweepCase:
    """A case of the suite as the base model sees it (the same at every step)."""

    id: str
    prompt: str
    group: str | None
    target: str | None
    base_p_target: float | None
    base_emergence_layer: int | None


@dataclass(frozen=True)
class CaseSeries:
    """One case over the steps (lists are indexed like ``SweepResult.steps``)."""

    id: str
    statuses: list[str]
    p_target: list[float | None]
    emergence_layer: list[int | None]
    final_js: list[float | None]
    carriers: list[list[int] | None]
    started_passing: int | None  # index of the step from which the case passes at every later step
    started_failing: int | None  # index of the step from which it fails (or errs) at every later step


@dataclass(frozen=True)
class SweepResult(JsonFile):
    """A suite run against a base at each training checkpoint: ``steps`` in training order."""

    name: str
    source: str
    source_sha256: str
    base: str  # the base model as given
    base_label: str
    lens: str
    attribution: bool
    cases: list[SweepCase]
    steps: list[SweepStep]
    fail_on: str  # last | any
    load_seconds: list[float]  # the base's load, then each step's (0 when swapped in place)
    timings: dict[str, float]  # seconds: "base" (the base's pass), "steps", "total"
    versions: dict[str, str]
    schema_version: int = SCHEMA_VERSION

    @property
    def status(self) -> str:
        """The sweep's verdict: the last step's (``fail_on="last"``) or the worst of every step's."""
        if not self.steps:
            return PASSED
        statuses = [self.steps[-1].status] if self.fail_on == "last" else [s.status for s in self.steps]
        for s in (ERROR, FAILED, PASSED):
            if s in statuses:
                return s
        return SKIPPED

    def case_series(self) -> list[CaseSeries]:
        """Each case over the steps, with the step from which it passes (or fails) for good."""
        out = []
        for i, case in enumerate(self.cases):
            at = [step.cases[i] for step in self.steps]
            statuses = [c.status for c in at]
            out.append(
                CaseSeries(
                    id=case.id,
                    statuses=statuses,
                    p_target=[c.p_target for c in at],
                    emergence_layer=[c.emergence_layer for c in at],
                    final_js=[c.final_js for c in at],
                    carriers=[c.carriers for c in at],
                    started_passing=_holds_from(statuses, lambda s: s == PASSED),
                    started_failing=_holds_from(statuses, lambda s: s in (FAILED, ERROR)),
                )
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        d = with_header(SWEEP_KIND, plain_dict(self))
        # For readers of the JSON: each case over the steps (derived from ``steps``; ignored when read back).
        d["series"] = [plain_dict(s) for s in self.case_series()]
        return d

    @classmethod
    def from_dict(cls, data: Any) -> SweepResult:
        check_header(data, SWEEP_KIND, "sweep")
        try:
            rest = {k: v for k, v in data.items() if k not in ("kind", "series")}
            built = build_dataclass(cls, rest)
        except (KeyError, TypeError, ValueError) as exc:
            raise ResultFormatError(f"malformed sweep result: {exc}") from None
        if built.fail_on not in FAIL_ON:
            raise ResultFormatError(f"malformed sweep result: fail_on must be one of {', '.join(FAIL_ON)}")
        n = len(built.cases)
        for j, step in enumerate(built.steps):
            if [c.id for c in step.cases] != [c.id for c in built.cases]:
                raise ResultFormatError(
                    f"malformed sweep result: steps[{j}].cases must hold the suite's {n} cases in order"
                )
        return built

    def without_timings(self) -> SweepResult:
        """The sweep without wall-clock measurements (for byte-identical reports and resumed runs)."""
        return dataclasses.replace(
            self,
            steps=[dataclasses.replace(s, seconds=None) for s in self.steps],
            load_seconds=[],
            timings={},
        )


def _holds_from(statuses: list[str], good: Any) -> int | None:
    """The first index from which ``good`` holds through the last step (None when the last step is not good)."""
    start = None
    for i in range(len(statuses) - 1, -1, -1):
        if not good(statuses[i]):
            break
        start = i
    return start


__all__ = [
    "FAIL_ON",
    "SWEEP_KIND",
    "CaseSeries",
    "StepCase",
    "SweepCase",
    "SweepResult",
    "SweepStep",
]
