"""Charts of the report model: Vega-Lite specs (Altair) plus a static SVG of each.

Plots only; every number comes from ``report_model`` (nothing is computed here). Each chart is a
``ChartView`` holding the Vega-Lite spec (for the interactive vegaEmbed chart) and an SVG (shown
when scripts are off, fail, or are stripped).

Speed (see docs/reports.md):

* Specs are built with their data as named datasets (``alt.NamedData``) attached after ``to_dict``,
  and without Altair's JSON-schema validation (the tests validate every spec): Altair otherwise
  deep-copies every data row several times and validates every object it creates, 0.1-0.2 s per chart.
  Each sub-chart gets its own ``NamedData`` object: when sub-charts share one, Altair hoists it and
  names each view by hashing its repr (~20 ms per view).
* Every static SVG of an analysis or comparison page is drawn here by hand: the line charts by
  ``line_plot_svg`` (via ``line_charts``), the heatmap by ``heatmap_svg``. vl-convert (whose JavaScript
  engine costs 0.6 s to start, then 40-100 ms per chart) is not loaded for them; only a suite page's
  overview charts still use it, on one background thread (``start_*`` returns ``PendingChart``s at once).
* ``start_report_charts(report, static=True)`` builds no spec at all: a ``--static`` page imports neither
  Altair nor vl-convert. This package imports them only when a spec module is first used (the names
  below that need them load on first access).

vl-convert numbers SVG clip/gradient ids from a process-global counter, so the ids depend on how
many charts the process rendered before. ``renumber_ids`` rewrites them per chart
(``<chart id>-1``, ``-2`` ...): output is byte-identical across processes and ids never collide.

Layout of this package (every name other modules use is re-exported here):

* ``style``: sizes, palettes, the heatmap's colour bins, the Vega-Lite config and version;
* ``run_specs`` / ``compare_specs`` / ``suite_specs``: the Altair specs of one run, a comparison, a suite;
* ``heatmap``: the heatmap's spec; ``heatmap_svg``: its hand-drawn SVG and description;
* ``line_charts``: the line charts' ids, titles, descriptions and SVGs; ``line_plot_svg``: the drawing;
* ``svg_sanitize``: SVG checking, per-chart ids and compaction; ``spec_patches``: one base spec plus patches;
* ``background``: ``PendingChart``/``ChartView`` and the vl-convert thread; ``datasets``/``scales``: shared helpers.
"""

from __future__ import annotations

import importlib
from typing import Any

from lazarus_report.render.charts.background import ChartView, PendingChart, finish, vega_bundle
from lazarus_report.render.charts.heatmap_svg import comparison_heatmap_args, heatmap_chart, heatmap_svg
from lazarus_report.render.charts.line_charts import comparison_line_charts, run_line_charts
from lazarus_report.render.charts.spec_patches import shared_specs, spec_patch
from lazarus_report.render.charts.style import (
    CELL_HEIGHT,
    CELL_WIDTH,
    CONFIG,
    HEATMAP_BINS,
    HEATMAP_COLORS,
    LINE_HEIGHT,
    LINE_WIDTH,
    PALETTE,
)
from lazarus_report.render.charts.svg_sanitize import checked_svg, compact_svg, renumber_ids
from lazarus_report.render.report_model import ReportModel

# Names whose modules import Altair (or vl-convert): loaded on first access.
_LAZY = {
    "comparison_charts": "compare_specs",
    "start_comparison_charts": "compare_specs",
    "run_charts": "run_specs",
    "start_run_charts": "run_specs",
    "SUITE_CHART_ID": "suite_specs",
    "start_suite_charts": "suite_specs",
    "VL_VERSION": "style",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CELL_HEIGHT",
    "CELL_WIDTH",
    "CONFIG",
    "HEATMAP_BINS",
    "HEATMAP_COLORS",
    "LINE_HEIGHT",
    "LINE_WIDTH",
    "PALETTE",
    "SUITE_CHART_ID",
    "VL_VERSION",
    "ChartView",
    "PendingChart",
    "checked_svg",
    "compact_svg",
    "comparison_charts",
    "finish",
    "heatmap_svg",
    "renumber_ids",
    "run_charts",
    "shared_specs",
    "spec_patch",
    "start_comparison_charts",
    "start_report_charts",
    "start_run_charts",
    "start_suite_charts",
    "vega_bundle",
]


def start_report_charts(report: ReportModel, *, static: bool = False) -> dict[str, list[PendingChart]]:
    """Every chart of a report, keyed by page section (``static``: SVGs only, no Vega-Lite spec)."""
    if report.comparison is not None:
        if static:
            charts = _static_comparison_charts(report)
        else:
            from lazarus_report.render.charts.compare_specs import start_comparison_charts

            charts = start_comparison_charts(report)
        # The lens switch: each model's heatmap through every lens read (the comparison's charts stay the
        # primary lens's).
        for run in report.runs:
            for view in [run, *run.lens_views] if run.lens_views else []:
                if view.grid is not None:
                    charts[f"{view.key}-lens"] = [_lens_heatmap(view, static)]
        return charts
    if static:
        start = _static_run_charts
    else:
        from lazarus_report.render.charts.run_specs import start_run_charts as start
    charts = {}
    for run in report.runs:
        charts[run.key] = start(run)
        for view in run.lens_views:
            charts[view.key] = start(view)
    return charts


def _lens_heatmap(view: Any, static: bool) -> PendingChart:
    """One model's heatmap through one lens, for a comparison's lens switch."""
    chart_id = f"{view.key}-lens-heatmap"
    if static:
        return heatmap_chart([("", view)], chart_id=chart_id)
    from lazarus_report.render.charts.heatmap import heatmap_spec

    return heatmap_spec([("", view)], chart_id=chart_id)


def _static_run_charts(run: Any) -> list[PendingChart]:
    charts = run_line_charts(run)
    if run.grid is not None:
        charts.append(heatmap_chart([("", run)], chart_id=f"{run.key}-heatmap"))
    return charts


def _static_comparison_charts(report: ReportModel) -> dict[str, list[PendingChart]]:
    """As ``compare_specs.start_comparison_charts``, without the specs."""
    comparison = report.comparison
    assert comparison is not None
    plan = comparison_heatmap_args(comparison, report.runs)
    heatmaps = [heatmap_chart(plan[0], **plan[1])] if plan else []
    return {"comparison": comparison_line_charts(report.runs, comparison), "heatmaps": heatmaps}
