"""Renderers: ``AnalysisResult`` or ``ComparisonResult`` -> terminal text, Markdown and self-contained HTML.

Data flows one way: result -> report model (``report_model``) -> templates and charts -> text.
Nothing here imports MLX; importing this package loads only the standard library and ``result``
(Jinja, Altair and vl-convert load when a report is rendered).

Public API (each takes an analysis or a comparison):
    ``lazarus_report.render.html.render_html(result, *, static=False) -> str``
    ``lazarus_report.render.markdown.render_markdown(result) -> str``
    ``load_result_file(path) -> AnalysisResult | ComparisonResult`` (result JSON or HTML report)
    ``write_report_files(result, *, html_path=None, markdown_path=None, static=False)``
"""

from lazarus_report.render.files import load_result_file, write_report_files
from lazarus_report.result import ResultFormatError

__all__ = ["ResultFormatError", "load_result_file", "write_report_files"]
