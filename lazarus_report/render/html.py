"""Self-contained HTML report: result -> report model -> Jinja templates + Altair charts.

``render_html`` takes an ``AnalysisResult`` (one model) or a ``ComparisonResult`` (two models).
One file, no network at view time:

* the Vega/Vega-Lite/vega-embed bundle (from vl-convert) is inlined once, and each chart's spec sits
  in its own ``<script type="application/json">``; a small page script calls ``vegaEmbed`` per chart;
* every chart is also inlined as a static SVG, shown until the interactive chart replaces it, so the
  page reads fine with JavaScript off or blocked;
* ``static=True`` leaves out every script except the embedded result JSON (SVG charts only);
* the result itself (the analysis, or the whole comparison with both analyses) is embedded once as
  ``<script type="application/json" id="lazarus-result">`` so ``load_result_file`` can re-render a
  report from the HTML alone.

Output is deterministic: the same result gives the same bytes in any process.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from markupsafe import Markup

from lazarus_report.render.environment import html_environment, html_json
from lazarus_report.render.files import RESULT_SCRIPT_ID, pack_result
from lazarus_report.render.markdown import render_summary_markdown
from lazarus_report.render.report_model import ReportModel, build_comparison_report, build_report
from lazarus_report.result import AnalysisResult, ComparisonResult


def render_html(result: AnalysisResult | ComparisonResult, *, static: bool = False) -> str:
    """The HTML report for one analysis or one comparison (``static=True``: no scripts, SVG charts only)."""
    if isinstance(result, ComparisonResult):
        report = build_comparison_report(result)
    elif isinstance(result, AnalysisResult):
        report = build_report([result])
    else:
        raise TypeError(f"expected an AnalysisResult or a ComparisonResult, got {type(result).__name__}")
    return render_report_html(report, result, static=static)


def render_report_html(
    report: ReportModel, result: AnalysisResult | ComparisonResult, *, static: bool = False
) -> str:
    """Render a prepared report of ``result`` (which the page embeds, packed: see ``files.pack_result``)."""
    from lazarus_report.render import charts as chart_module  # Altair/vl-convert load only when needed

    # The line charts' SVGs draw on a background thread meanwhile (see charts).
    pending = chart_module.start_report_charts(report)
    summary_html = _summary_html(report)
    result_json = html_json(pack_result(result.to_dict()))
    bundle = None if static else _vega_bundle_markup()
    specs = {} if static else {c.chart_id: html_json(c.spec) for group in pending.values() for c in group}
    charts = chart_module.finish(pending)
    return html_environment().get_template("html/page.html.j2").render(
        report=report,
        charts=charts,
        specs=specs,
        summary_html=summary_html,
        result_json=result_json,
        result_script_id=RESULT_SCRIPT_ID,
        static=static,
        vega_bundle=bundle,
    )


@functools.lru_cache(maxsize=1)
def _markdown_it() -> Any:
    from markdown_it import MarkdownIt

    # js-default: raw HTML off. Links, images and autolinks off too: the summary never needs them,
    # and a report must not point anywhere.
    return MarkdownIt("js-default").disable(["link", "image", "autolink"])


def _summary_html(report: ReportModel) -> Markup:
    return Markup(_markdown_it().render(render_summary_markdown(report, with_notes=False)))


_SCRIPT_BREAKERS = re.compile(r"</script|<!--|<script", re.IGNORECASE)


@functools.lru_cache(maxsize=1)
def _vega_bundle_markup() -> Markup:
    from lazarus_report.render.charts import vega_bundle

    bundle = vega_bundle()
    # Inlined verbatim inside <script>: it must not be able to end or comment out the element.
    if _SCRIPT_BREAKERS.search(bundle):
        raise RuntimeError("the vl-convert JavaScript bundle contains </script> or <!--; cannot inline it safely")
    return Markup(bundle)
