"""Renderers: ``AnalysisResult``, ``ComparisonResult`` or ``SuiteResult`` -> terminal text, Markdown and
self-contained HTML.

Data flows one way: result -> report model (``report_model``) -> templates and charts -> text.
Nothing here imports MLX; importing this package loads only the standard library and ``result``
(Jinja, Altair and vl-convert load when a report is rendered).

Public API (each takes an analysis, a comparison or a suite run):
    ``lazarus_report.render.html.render_html(result, *, static=False) -> str``
    ``lazarus_report.render.html.render_notebook_html(result, *, static=False)`` (Jupyter: ``_repr_html_``)
    ``lazarus_report.render.markdown.render_markdown(result) -> str``
    ``load_result_file(path) -> AnalysisResult | ComparisonResult | SuiteResult`` (result JSON or HTML report)
    ``write_report_files(result, *, html_path=None, markdown_path=None, static=False)`` (both or neither)
Terminal text: ``lazarus_report.render.text``: ``render_text`` (an analysis), ``render_comparison_text``,
``render_suite_text``.
"""

from lazarus_report.render.files import write_report_files
from lazarus_report.render.packing import load_result_file
from lazarus_report.results.codec import ResultFormatError

__all__ = ["ResultFormatError", "load_result_file", "write_report_files"]
