"""Charts of the report model: Vega-Lite specs (Altair) plus a static SVG of each.

Plots only; every number comes from ``report_model`` (nothing is computed here). Each chart is a
``ChartView`` holding the Vega-Lite spec (for the interactive vegaEmbed chart) and an SVG (shown
when scripts are off, fail, or are stripped).

Speed (a 30-layer compare report renders in about 0.4 s warm; see docs/reports.md):

* Specs are built with their data as named datasets (``alt.NamedData``) attached after ``to_dict``,
  and without Altair's JSON-schema validation (the tests validate every spec): Altair otherwise
  deep-copies every data row several times and validates every object it creates, 0.1-0.2 s per chart.
  Each sub-chart gets its own ``NamedData`` object: when sub-charts share one, Altair hoists it and
  names each view by hashing its repr (~20 ms per view).
* The line charts' SVG comes from vl-convert, on one background thread: ``start_*`` queues the
  conversions and returns ``PendingChart``s at once, so the page's other work (report JSON, summary,
  the heatmaps) overlaps with them (vl-convert releases the GIL; it runs one conversion at a time).
* The heatmap's SVG is drawn here, not by vl-convert: vl-convert measures text glyph by glyph, and a
  heatmap's few hundred token labels took it 1–2 s. The drawing follows the Vega-Lite spec's
  layout and colour scale (the same ten colour bins), so the static and live charts match.

vl-convert numbers SVG clip/gradient ids from a process-global counter, so the ids depend on how
many charts the process rendered before. ``_renumber_ids`` rewrites them per chart
(``<chart id>-1``, ``-2`` ...): output is byte-identical across processes and ids never collide.

Layout of this package (every name other modules use is re-exported here):

* ``style``: sizes, palettes, the heatmap's colour bins, the Vega-Lite config and version;
* ``run_specs`` / ``compare_specs`` / ``suite_specs``: the Altair specs of one run, a comparison, a suite;
* ``heatmap``: the heatmap's spec and its hand-drawn SVG; ``line_plot_svg``: hand-drawn compact line plots;
* ``svg_sanitize``: SVG checking, per-chart ids and compaction; ``spec_patches``: one base spec plus patches;
* ``background``: ``PendingChart``/``ChartView`` and the vl-convert thread; ``datasets``/``scales``: shared helpers.
"""

from __future__ import annotations

from lazarus_report.render.charts.background import ChartView, PendingChart, finish, vega_bundle
from lazarus_report.render.charts.compare_specs import comparison_charts, start_comparison_charts
from lazarus_report.render.charts.heatmap import heatmap_svg
from lazarus_report.render.charts.run_specs import run_charts, start_run_charts
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
    VL_VERSION,
)
from lazarus_report.render.charts.suite_specs import SUITE_CHART_ID, start_suite_charts
from lazarus_report.render.charts.svg_sanitize import _checked, _compact_svg, _renumber_ids
from lazarus_report.render.report_model import ReportModel

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
    "_checked",
    "_compact_svg",
    "_renumber_ids",
    "comparison_charts",
    "finish",
    "heatmap_svg",
    "run_charts",
    "shared_specs",
    "spec_patch",
    "start_comparison_charts",
    "start_report_charts",
    "start_run_charts",
    "start_suite_charts",
    "vega_bundle",
]


def start_report_charts(report: ReportModel) -> dict[str, list[PendingChart]]:
    """Every chart of a report, keyed by page section; SVG conversions run in the background."""
    if report.comparison is not None:
        return start_comparison_charts(report)
    return {run.key: start_run_charts(run) for run in report.runs}
