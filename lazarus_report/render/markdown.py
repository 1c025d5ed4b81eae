"""Markdown report: ``AnalysisResult`` -> report model -> ``templates/markdown/*.md.j2``.

Every model or user string is escaped by the Markdown environment (see ``environment``): tokens are
code spans with visible whitespace (``|`` escaped inside tables), other text has its Markdown
punctuation backslash-escaped, so nothing a model emits can become a link, image, raw HTML or an
extra table cell.
"""

from __future__ import annotations

from typing import Any, Sequence

from lazarus_report.render.environment import markdown_environment
from lazarus_report.render.report_model import ReportModel, build_report
from lazarus_report.result import AnalysisResult


def render_markdown(result: AnalysisResult) -> str:
    """The Markdown report for one run: summary, final top-k, layer table, run details."""
    return render_runs_markdown([result])


def render_runs_markdown(results: Sequence[AnalysisResult], *, comparison: Any | None = None) -> str:
    """The Markdown report for one or more runs (``compare`` passes two)."""
    return render_report_markdown(build_report(results, comparison=comparison))


def render_report_markdown(report: ReportModel) -> str:
    return _tidy(markdown_environment().get_template("markdown/report.md.j2").render(report=report))


def render_summary_markdown(report: ReportModel) -> str:
    """Only the short summary (the HTML report renders this at its top)."""
    return _tidy(markdown_environment().get_template("markdown/summary.md.j2").render(report=report))


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
