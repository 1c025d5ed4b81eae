"""The HTML page of a diff (``report diff --html``): self-contained and static (no scripts), in the page shell and
styles of the other reports; warnings first, the runs and their setup differences, the regressions, the chart of
P(target) baseline -> candidate (hand-drawn SVG, ``diff_chart``), then every other case. Strings are escaped by
Jinja's autoescape; the diff is embedded as JSON (``script#lazarus-result``)."""

from __future__ import annotations

from markupsafe import Markup

from ..results.diff import DiffResult
from .diff_chart import chart_rows, dumbbell_svg
from .diff_view import build_diff_view
from .environment import html_environment, html_json


def render_diff_html(d: DiffResult) -> str:
    view = build_diff_view(d)
    rows = chart_rows(view.rows)
    return (
        html_environment()
        .get_template("html/diff.html.j2")
        .render(
            report=view,
            chart_rows=rows,
            chart_svg=Markup(dumbbell_svg(rows)),  # every text in it went through escape_xml
            result_json=html_json(d.to_dict()),
            result_script_id="lazarus-result",
            static=True,
            specs={},
            vega_bundle=None,
            summary_html="",
        )
    )
