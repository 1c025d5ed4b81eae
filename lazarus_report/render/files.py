"""Reading results back (from result JSON or from a report's embedded JSON) and writing report files.

Imports stay light (no Jinja, Altair or MLX until a report is actually rendered).
"""

from __future__ import annotations

import os
from pathlib import Path

from lazarus_report.core.files import write_files_atomic
from lazarus_report.results.analysis import AnalysisResult
from lazarus_report.results.comparison import ComparisonResult
from lazarus_report.results.drift import DriftResult
from lazarus_report.results.loading import without_timings
from lazarus_report.results.suite import SuiteResult
from lazarus_report.results.sweep import SweepResult


def render_report_files(
    result: AnalysisResult | ComparisonResult | SuiteResult | DriftResult,
    *,
    html_path: str | os.PathLike[str] | None = None,
    markdown_path: str | os.PathLike[str] | None = None,
    static: bool = False,
    timings: bool = True,
) -> dict[str | os.PathLike[str], bytes]:
    """The HTML and/or Markdown report of a result as ``{path: bytes}``, rendered but not written
    (for :func:`lazarus_report.core.files.write_files_atomic`, which writes them all or none).

    ``timings=False`` (the command line's default; ``--timings`` sets it) renders the result without its
    wall-clock measurements (not even in the HTML's embedded result: see
    :func:`lazarus_report.results.loading.without_timings`), so two runs of the same analysis write the same bytes."""
    files: dict[str | os.PathLike[str], bytes] = {}
    if not timings:
        result = without_timings(result)
    if isinstance(result, SweepResult):
        return _sweep_files(result, html_path, markdown_path)
    if html_path is not None:
        from lazarus_report.render.html import render_html

        files[html_path] = render_html(result, static=static).encode("utf-8")
    if markdown_path is not None:
        from lazarus_report.render.markdown import render_markdown

        files[markdown_path] = render_markdown(result).encode("utf-8")
    return files


def _sweep_files(
    result: SweepResult, html_path: str | os.PathLike[str] | None, markdown_path: str | os.PathLike[str] | None
) -> dict[str | os.PathLike[str], bytes]:
    from lazarus_report.render.sweep_report import render_sweep_html, render_sweep_markdown

    files: dict[str | os.PathLike[str], bytes] = {}
    if html_path is not None:
        files[html_path] = render_sweep_html(result).encode("utf-8")
    if markdown_path is not None:
        files[markdown_path] = render_sweep_markdown(result).encode("utf-8")
    return files


def write_report_files(
    result: AnalysisResult | ComparisonResult | SuiteResult | DriftResult,
    *,
    html_path: str | os.PathLike[str] | None = None,
    markdown_path: str | os.PathLike[str] | None = None,
    static: bool = False,
    timings: bool = True,
) -> None:
    """Write the HTML and/or Markdown report of an analysis, a comparison or a suite run, both or
    neither: everything is rendered first, then written atomically (missing parent directories are
    created). No other side effects (the command line, not this function, appends to
    ``$GITHUB_STEP_SUMMARY``). ``timings``: show the run's timings (see :func:`render_report_files`).
    """
    files = render_report_files(
        result, html_path=html_path, markdown_path=markdown_path, static=static, timings=timings
    )
    for path in files:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_files_atomic(files)
