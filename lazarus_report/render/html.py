"""Self-contained HTML report: result -> report model -> Jinja templates + Altair charts.

``render_html`` takes an ``AnalysisResult`` (one model), a ``ComparisonResult`` (two models) or a
``SuiteResult`` (a prompt suite: an overview of every case, then one collapsible section per case
built from the single-prompt report parts). One file, no network at view time:

* the Vega/Vega-Lite/vega-embed bundle (from vl-convert, cached on disk) is inlined once, and each chart's
  spec sits in its own ``<script type="application/json">``; a small page script calls ``vegaEmbed`` per chart;
* every chart is also inlined as a static SVG, shown until the interactive chart replaces it, so the
  page reads fine with JavaScript off or blocked (an analysis or comparison's SVGs are drawn by hand;
  vl-convert is not loaded for them);
* ``static=True`` leaves out every script except the embedded result JSON (SVG charts only); for an
  analysis or a comparison no Vega-Lite spec is built, and neither Altair nor vl-convert is imported;
* the result itself (the analysis, or the whole comparison with both analyses, or the whole suite) is
  embedded once as ``<script type="application/json" id="lazarus-result">`` so ``load_result_file``
  can re-render a report from the HTML alone;
* a suite has a chart per case: their specs are stored as patches of one shared spec, each drawn when
  its case is opened, and their static SVGs are drawn compactly (see ``charts``).

Output is deterministic: the same result gives the same bytes in any process.
"""

from __future__ import annotations

import functools
import html
import re
from typing import Any

from markupsafe import Markup

from lazarus_report.render.environment import html_environment, html_json
from lazarus_report.render.markdown import render_suite_summary_markdown, render_summary_markdown
from lazarus_report.render.packing import RESULT_SCRIPT_ID, pack_result
from lazarus_report.render.report_model import ReportModel, build_comparison_report, build_report
from lazarus_report.render.suite_model import SuiteReport, build_suite_report
from lazarus_report.results.analysis import AnalysisResult
from lazarus_report.results.comparison import ComparisonResult
from lazarus_report.results.drift import DriftResult
from lazarus_report.results.suite import SuiteResult
from lazarus_report.results.sweep import SweepResult

SHARED_CASE_SPEC = "case-trajectory"  # the spec the suite cases' trajectory specs patch


def render_html(
    result: AnalysisResult | ComparisonResult | SuiteResult | DriftResult | SweepResult, *, static: bool = False
) -> str:
    """The HTML report for one analysis, one comparison or a suite run (``static=True``: no scripts,
    SVG charts only); a drift result's and a sweep's pages are always static (``drift_html``, ``sweep_report``)."""
    if isinstance(result, DriftResult):
        from lazarus_report.render.drift_html import render_drift_html

        return render_drift_html(result)
    if isinstance(result, SweepResult):
        from lazarus_report.render.sweep_report import render_sweep_html

        return render_sweep_html(result)
    if isinstance(result, SuiteResult):
        return render_suite_html(build_suite_report(result), result, static=static)
    if isinstance(result, ComparisonResult):
        report = build_comparison_report(result)
    elif isinstance(result, AnalysisResult):
        report = build_report([result])
    else:
        raise TypeError(f"expected an AnalysisResult, a ComparisonResult or a SuiteResult, got {type(result).__name__}")
    return render_report_html(report, result, static=static)


def render_notebook_html(
    result: AnalysisResult | ComparisonResult | SuiteResult, *, static: bool = False, height: int = 720
) -> str:
    """The report for a notebook cell (``_repr_html_``): the whole page in an ``<iframe srcdoc>``, so its
    styles and scripts stay inside it, sandboxed (scripts run, for the charts, but in an opaque origin:
    no access to the notebook, its cookies or its kernel). ``srcdoc`` holds the page HTML-escaped."""
    page = render_html(result, static=static)
    sandbox = "" if static else "allow-scripts"
    title = {
        AnalysisResult: "Logit-lens report",
        ComparisonResult: "Comparison report",
        DriftResult: "Drift report",
    }.get(type(result), "Suite report")
    return (
        f'<iframe srcdoc="{html.escape(page, quote=True)}" sandbox="{sandbox}" title="{title}" '
        f'style="width:100%;height:{int(height)}px;border:1px solid #ddd;resize:vertical"></iframe>'
    )


def render_report_html(report: ReportModel, result: AnalysisResult | ComparisonResult, *, static: bool = False) -> str:
    """Render a prepared report of ``result`` (which the page embeds, packed: see ``files.pack_result``)."""
    from lazarus_report.render import charts as chart_module  # Altair loads only for the specs (not when static)

    pending = chart_module.start_report_charts(report, static=static)
    specs = {} if static else {c.chart_id: c.spec for group in pending.values() for c in group if c.spec is not None}
    summary = render_summary_markdown(report, with_notes=False)
    return _render_page("html/page.html.j2", report, result, pending, specs, summary, static)


def render_suite_html(report: SuiteReport, suite: SuiteResult, *, static: bool = False) -> str:
    """Render a prepared suite report of ``suite`` (which the page embeds, packed)."""
    from lazarus_report.render import charts as chart_module

    pending = chart_module.start_suite_charts(report)
    specs = {c.chart_id: c.spec for c in pending.get("suite", [])}
    if not static:
        case_charts = [c for key, group in pending.items() if key != "suite" for c in group]
        specs.update(chart_module.shared_specs(case_charts, SHARED_CASE_SPEC))
    summary = render_suite_summary_markdown(report)
    page = _render_page("html/suite.html.j2", report, suite, pending, specs, summary, static)
    from lazarus_report.render.drift_suite import with_drift_section  # suite --drift

    return with_drift_section(page, suite)


def _render_page(
    template: str,
    report: ReportModel | SuiteReport,
    result: AnalysisResult | ComparisonResult | SuiteResult,
    pending: dict[str, Any],
    specs: dict[str, Any],
    summary_markdown: str,
    static: bool,
) -> str:
    from lazarus_report.render import charts as chart_module

    summary_html = Markup(_markdown_it().render(summary_markdown))
    result_json = html_json(pack_result(result.to_dict()))
    bundle = None if static else vega_bundle_markup()
    spec_json = {} if static else {chart_id: html_json(spec) for chart_id, spec in specs.items()}
    charts = chart_module.finish(pending, narrow=static)  # phone variants: see docs/reports.md
    return (
        html_environment()
        .get_template(template)
        .render(
            report=report,
            charts=charts,
            specs=spec_json,
            summary_html=summary_html,
            result_json=result_json,
            result_script_id=RESULT_SCRIPT_ID,
            static=static,
            vega_bundle=bundle,
        )
    )


@functools.lru_cache(maxsize=1)
def _markdown_it() -> Any:
    from markdown_it import MarkdownIt

    # js-default: raw HTML off. Links, images and autolinks off too: the summary never needs them,
    # and a report must not point anywhere.
    return MarkdownIt("js-default").disable(["link", "image", "autolink"])


_SCRIPT_BREAKERS = re.compile(r"</script|<!--|<script", re.IGNORECASE)


@functools.lru_cache(maxsize=1)
def vega_bundle_markup() -> Markup:
    """The Vega/Vega-Lite/vegaEmbed JavaScript bundle, safe to inline in a ``<script>`` element (cached)."""
    from lazarus_report.render.charts import vega_bundle

    bundle = vega_bundle()
    # Inlined verbatim inside <script>: it must not be able to end or comment out the element.
    if _SCRIPT_BREAKERS.search(bundle):
        raise RuntimeError("the vl-convert JavaScript bundle contains </script> or <!--; cannot inline it safely")
    return Markup(bundle)
