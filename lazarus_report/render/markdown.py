"""Markdown report: result -> report model -> ``templates/markdown/*.md.j2``.

``render_markdown`` takes an ``AnalysisResult``, a ``ComparisonResult`` or a ``SuiteResult``. A
comparison's report is kept short enough for a pull-request comment: both models' final top-1,
emergence layers, where the models differ, the notes, then compact tables. So is a suite's: the
verdict, the failures first (each failing check's one-line message under its case), then a table of
at most ``MAX_CASES`` cases (failures first; a count of the others), the models and the suite file.

Every model or user string is escaped by the Markdown environment (see ``environment``): tokens are
code spans with visible whitespace (``|`` escaped inside tables), other text has its Markdown
punctuation backslash-escaped, so nothing a model emits can become a link, image, raw HTML or an
extra table cell.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lazarus_report.render.environment import markdown_environment
from lazarus_report.render.lens_view import MARK_LEGEND
from lazarus_report.render.report_model import (
    LayerRow,
    ReportModel,
    RunReport,
    build_comparison_report,
    build_report,
)
from lazarus_report.render.suite_model import SuiteReport, build_suite_report
from lazarus_report.results.analysis import AnalysisResult
from lazarus_report.results.answer import AnswerReading
from lazarus_report.results.comparison import ComparisonResult
from lazarus_report.results.drift import DriftResult
from lazarus_report.results.suite import SuiteResult

MAX_CASES = 20  # a suite's Markdown lists at most this many cases (and this many failing cases)
MAX_COLUMNS = 6  # a Markdown table fits a 760 px pull-request comment with at most this many columns
MAIN_SERIES = MAX_COLUMNS - 4  # the analysis layer table: Layer, Top-1, Entropy, KL, then this many series


@dataclass(frozen=True)
class LayerRun:
    """Consecutive layers whose Markdown rows read the same (one row, labelled "first-last")."""

    rows: list[LayerRow]

    @property
    def first(self) -> LayerRow:
        return self.rows[0]

    @property
    def label(self) -> str:
        first, last = self.rows[0].layer, self.rows[-1].layer
        return str(first) if first == last else f"{first}-{last}"


def fold_layer_rows(run: RunReport) -> list[LayerRun]:
    """``run.layer_rows`` with runs of consecutive layers that show the same values folded into one row: the
    same top-1 token, and every number the same as printed (probabilities, entropy, KL, ranks), the same
    reliability; a row where a token first becomes top-1 (★) is never folded."""
    from .formatting import fmt_nats, fmt_prob

    def shown(row: LayerRow) -> tuple:
        return (
            row.top.visible,
            fmt_prob(row.top_prob),
            fmt_nats(row.entropy),
            fmt_nats(row.kl_to_final),
            row.final_token_rank,
            tuple((fmt_prob(c.prob), c.rank) for c in row.tracked),
            row.unreliable,
        )

    out: list[LayerRun] = []
    for row in run.layer_rows:
        if out and not row.emerging and not out[-1].rows[-1].emerging and shown(row) == shown(out[-1].rows[-1]):
            out[-1].rows.append(row)
        else:
            out.append(LayerRun([row]))
    return out


def render_markdown(result: AnalysisResult | ComparisonResult | SuiteResult | DriftResult) -> str:
    """The Markdown report: for one analysis, summary, final top-k, layer table and run details;
    for a comparison, the summary of what differs and compact comparison tables; for a suite, the
    verdict, the failures and a compact table of cases; for a drift result, its own (``drift_markdown``)."""
    if isinstance(result, DriftResult):
        from .drift_markdown import render_drift_markdown

        return render_drift_markdown(result)
    if isinstance(result, SuiteResult):
        from .drift_suite import suite_drift_markdown  # suite --drift

        return render_suite_markdown(build_suite_report(result)) + suite_drift_markdown(result)
    if isinstance(result, ComparisonResult):
        answers = [r.answer for r in result.results]
        return render_report_markdown(build_comparison_report(result), answers, result.answer_cross)
    if isinstance(result, AnalysisResult):
        return render_report_markdown(build_report([result]), [result.answer])
    raise TypeError(f"expected an AnalysisResult, a ComparisonResult or a SuiteResult, got {type(result).__name__}")


def render_report_markdown(
    report: ReportModel, answers: Sequence[AnswerReading | None] = (), answer_cross: list[float] | None = None
) -> str:
    """``answers``: each run's whole answer (``AnalysisResult.answer``), shown as a table after the layers;
    ``answer_cross``: a comparison's log-probability of each model's answer under the other."""
    name = "markdown/compare.md.j2" if report.comparison is not None else "markdown/report.md.j2"
    answers = list(answers) or [None] * len(report.runs)
    layer_runs = [fold_layer_rows(run) for run in report.runs] if report.comparison is None else []
    return _render(
        name,
        report=report,
        answers=answers,
        answer_cross=answer_cross,
        layer_runs=layer_runs,
        main_series=MAIN_SERIES,
        max_columns=MAX_COLUMNS,
        mark_legend=MARK_LEGEND,
    )


def render_summary_markdown(report: ReportModel, *, with_notes: bool = True) -> str:
    """Only the short summary (the HTML report renders this at its top). ``with_notes=False`` leaves a
    comparison's notes out (the HTML page shows them in their own box)."""
    name = "markdown/compare_summary.md.j2" if report.comparison is not None else "markdown/summary.md.j2"
    return _render(name, report=report, with_notes=with_notes)


def render_suite_markdown(report: SuiteReport, *, max_cases: int = MAX_CASES) -> str:
    return _render("markdown/suite.md.j2", report=report, max_cases=max_cases)


def render_suite_summary_markdown(report: SuiteReport, *, max_cases: int = MAX_CASES) -> str:
    """The verdict and the failures (the top of the suite's HTML report)."""
    return _render("markdown/suite_summary.md.j2", report=report, max_cases=max_cases)


def _render(name: str, **context: Any) -> str:
    return _tidy(markdown_environment().get_template(name).render(**context))


def _tidy(text: str) -> str:
    # Templates stay readable with blank lines around blocks; collapse runs of them here.
    lines = [line.rstrip() for line in text.splitlines()]
    out: list[str] = []
    for line in lines:
        if line == "" and (not out or out[-1] == ""):
            continue
        out.append(line)
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"
