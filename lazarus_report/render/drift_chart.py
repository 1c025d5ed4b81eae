"""The drift page's chart, static SVG (``charts.line_plot_svg``): mean, 90th and 99th percentile of JS per layer."""

from __future__ import annotations

from ..results.drift import DriftResult
from .charts.line_plot_svg import NARROW, LinearPanel, LinearPlot, PlotLine, PlotSeries, layer_axis, linear_svg
from .charts.style import PALETTE

LINES: tuple[tuple[str, str, list[float]], ...] = (
    ("mean", "js_mean", [1.0, 0.0]),
    ("90th percentile", "js_p90", [6.0, 3.0]),
    ("99th percentile", "js_p99", [2.0, 2.0]),
)


def drift_svg(result: DriftResult, narrow: bool = False) -> str:
    """One panel, JS in nats from 0, one line per statistic; identical layers lie on 0. ``narrow``: laid out for a
    phone (the page shows it below 640 px, as the other static charts)."""
    series = []
    legend = []
    for k, (name, attr, dash) in enumerate(LINES):
        color = PALETTE[k % len(PALETTE)]
        series.append(PlotSeries([(float(r.layer), float(getattr(r, attr))) for r in result.layers], color, dash))
        legend.append((name, PlotLine([], color, dash)))
    layers = [r.layer for r in result.layers]
    panel = LinearPanel("JS(base, tuned), nats", 160 if narrow else 220, series)
    plot = LinearPlot([panel], layer_axis(layers), "Layer", [("", legend)], points=len(layers) <= 40)
    return linear_svg(plot, NARROW) if narrow else linear_svg(plot)


def drift_chart_html(result: DriftResult) -> str:
    """Both layouts, as the other static charts: the wide one, and the narrow one a phone shows (styles.css)."""
    return (
        f'<div class="chart-static"><div class="svg-wide">{drift_svg(result)}</div>'
        f'<div class="svg-narrow">{drift_svg(result, narrow=True)}</div></div>'
    )
