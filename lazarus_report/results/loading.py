"""Any result from its JSON, and results with their wall-clock measurements removed."""

from __future__ import annotations

import dataclasses
from typing import Any

from .analysis import RESULT_KIND, AnalysisResult
from .codec import ResultFormatError
from .comparison import COMPARISON_KIND, ComparisonResult
from .drift import DRIFT_KIND, DriftResult
from .suite import SUITE_KIND, SuiteResult
from .sweep import SWEEP_KIND, SweepResult


def without_timings(result: Any) -> Any:
    """The result with every wall-clock measurement removed, for reports that must be byte-identical from run
    to run (HTML and Markdown without ``--timings``): analyses' ``timings`` and a comparison's or suite's
    ``load_seconds`` become empty, a suite's ``timings`` too, an attribution's ``seconds`` None. Everything
    else (the numbers of the analysis) is kept. Any other value is returned as it is."""
    if isinstance(result, AnalysisResult):
        return dataclasses.replace(result, timings={})
    if isinstance(result, ComparisonResult):
        attribution = result.attribution
        if attribution is not None:
            attribution = dataclasses.replace(attribution, seconds=None)
        return dataclasses.replace(
            result,
            results=[without_timings(r) for r in result.results],
            load_seconds=[],
            attribution=attribution,
        )
    if isinstance(result, SuiteResult):
        cases = [
            dataclasses.replace(
                case, analysis=without_timings(case.analysis), comparison=without_timings(case.comparison)
            )
            for case in result.cases
        ]
        return dataclasses.replace(result, cases=cases, load_seconds=[], timings={})
    if isinstance(result, SweepResult):
        return result.without_timings()
    if isinstance(result, DriftResult):
        return dataclasses.replace(result, timings={})
    return result


def load_any_result(data: Any) -> AnalysisResult | ComparisonResult | SuiteResult | SweepResult | DriftResult:
    """An analysis, a comparison, a suite run, a checkpoint sweep or a drift measurement, from
    parsed JSON."""
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind == SWEEP_KIND:
        return SweepResult.from_dict(data)
    if kind == SUITE_KIND:
        return SuiteResult.from_dict(data)
    if kind == COMPARISON_KIND:
        return ComparisonResult.from_dict(data)
    if kind == RESULT_KIND:
        return AnalysisResult.from_dict(data)
    if kind == DRIFT_KIND:
        return DriftResult.from_dict(data)
    raise ResultFormatError("not a lazarus-report analysis, comparison, suite or drift result")
