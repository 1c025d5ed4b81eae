"""The HTML page of a drift result (``compare --drift --html``): self-contained and static (no scripts), in the
page shell of the other reports: the summary, the JS-per-layer chart (hand-drawn SVG, ``drift_chart``) and table,
the promoted tokens, the top positions with their context. Strings are escaped by Jinja's autoescape (the SVG's by
``escape_xml``); the result is embedded (``script#lazarus-result``), so ``report render`` reads the page back."""

from __future__ import annotations

from markupsafe import Markup

from ..results.drift import DriftResult
from .drift_chart import drift_chart_html
from .drift_view import build_drift_view
from .environment import html_environment, html_json
from .packing import RESULT_SCRIPT_ID, pack_result


def render_drift_html(result: DriftResult) -> str:
    return (
        html_environment()
        .get_template("html/drift.html.j2")
        .render(
            report=build_drift_view(result),
            chart_svg=Markup(drift_chart_html(result)),  # every text in it went through escape_xml
            result_json=html_json(pack_result(result.to_dict())),
            result_script_id=RESULT_SCRIPT_ID,
            static=True,
            specs={},
            vega_bundle=None,
            summary_html="",
        )
    )
