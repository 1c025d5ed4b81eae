"""Self-contained HTML report: ``AnalysisResult`` -> report model -> Jinja templates + Altair charts.

One file, no network at view time:

* the Vega/Vega-Lite/vega-embed bundle (from vl-convert) is inlined once, and each chart's spec sits
  in its own ``<script type="application/json">``; a small page script calls ``vegaEmbed`` per chart;
* every chart is also inlined as a static SVG (rendered offline by vl-convert), shown until the
  interactive chart replaces it, so the page reads fine with JavaScript off or blocked;
* ``static=True`` leaves out every script except the embedded result JSON (SVG charts only);
* the analysis result itself is embedded as ``<script type="application/json" id="lazarus-result">``
  so ``load_result_file`` can re-render a report from the HTML alone.

Output is deterministic: the same result gives the same bytes in any process.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Sequence

from markupsafe import Markup

from lazarus_report.render.environment import html_environment
from lazarus_report.render.files import RESULT_SCRIPT_ID
from lazarus_report.render.markdown import render_summary_markdown
from lazarus_report.render.report_model import ReportModel, build_report
from lazarus_report.result import AnalysisResult


def render_html(result: AnalysisResult, *, static: bool = False) -> str:
    """The HTML report for one run (``static=True``: no scripts, SVG charts only)."""
    return render_runs_html([result], static=static)


def render_runs_html(
    results: Sequence[AnalysisResult],
    *,
    static: bool = False,
    comparison: Any | None = None,
    comparison_charts: Sequence[Any] = (),
) -> str:
    """The HTML report for one or more runs.

    ``compare`` passes two results, its comparison (rendered by
    ``templates/html/sections/comparison.html.j2``) and that section's charts (``ChartView``s,
    available to the template as ``charts["comparison"]`` and upgraded like every other chart).
    """
    report = build_report(results, comparison=comparison)
    return render_report_html(report, results, static=static, comparison_charts=comparison_charts)


def render_report_html(
    report: ReportModel,
    results: Sequence[AnalysisResult],
    *,
    static: bool = False,
    comparison_charts: Sequence[Any] = (),
) -> str:
    from lazarus_report.render import charts as chart_module  # Altair/vl-convert load only when needed

    charts = {run.key: chart_module.run_charts(run) for run in report.runs}
    if comparison_charts:
        charts["comparison"] = list(comparison_charts)
    return html_environment().get_template("html/page.html.j2").render(
        report=report,
        charts=charts,
        summary_html=_summary_html(report),
        results=[r.to_dict() for r in results],
        result_script_id=RESULT_SCRIPT_ID,
        static=static,
        vega_bundle=None if static else _vega_bundle_markup(),
    )


@functools.lru_cache(maxsize=1)
def _markdown_it() -> Any:
    from markdown_it import MarkdownIt

    # js-default: raw HTML off. Links, images and autolinks off too: the summary never needs them,
    # and a report must not point anywhere.
    return MarkdownIt("js-default").disable(["link", "image", "autolink"])


def _summary_html(report: ReportModel) -> Markup:
    return Markup(_markdown_it().render(render_summary_markdown(report)))


_SCRIPT_BREAKERS = re.compile(r"</script|<!--|<script", re.IGNORECASE)


@functools.lru_cache(maxsize=1)
def _vega_bundle_markup() -> Markup:
    from lazarus_report.render.charts import vega_bundle

    bundle = vega_bundle()
    # Inlined verbatim inside <script>: it must not be able to end or comment out the element.
    if _SCRIPT_BREAKERS.search(bundle):
        raise RuntimeError("the vl-convert JavaScript bundle contains </script> or <!--; cannot inline it safely")
    return Markup(bundle)
