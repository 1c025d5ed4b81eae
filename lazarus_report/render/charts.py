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
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import html
import json
import math
import re
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

import altair as alt
import vl_convert as vlc
from altair.utils.schemapi import debug_mode

from lazarus_report.render.report_model import ComparisonView, GridView, ReportModel, RunReport
from lazarus_report.render.suite_model import SuiteReport

LINE_WIDTH = 560
LINE_HEIGHT = 190
CELL_WIDTH = 46
CELL_HEIGHT = 16
MAX_LAYERS_WITH_POINTS = 16
PALETTE = ["#1f6fb4", "#d6562b", "#2a9d55", "#8e5bb5", "#b8860b", "#c2185b", "#00838f", "#5d6d7e"]
# Line styles for the tracked tokens of a comparison (colour is the model there).
DASHES = [[1, 0], [6, 3], [2, 2], [8, 3, 2, 3], [12, 4], [1, 3]]
# Two models drawn over each other stay visible: model 1 wide and pale, model 2 narrow on top.
MODEL_STROKES = [4.0, 1.6]
MODEL_OPACITY = [0.55, 1.0]

# The heatmap colours: ten bins of 10% each (a quantize scale) along Vega's "blues" scheme. Bins
# keep the drawn SVG small (one path per colour) and match the live chart exactly.
_BLUES = [
    "#cfe1f2", "#bed8ec", "#a8cee5", "#8fc1de", "#74b2d7", "#5ba3cf",
    "#4592c6", "#3181bd", "#206fb2", "#125ca4", "#0a4a90",
]  # fmt: skip
HEATMAP_BINS = 10
HEATMAP_DARK_TEXT_ABOVE = 0.55  # white text on cells darker than this probability


def _blues(t: float) -> str:
    """Vega's blues scheme at ``t`` in [0, 1] (piecewise-linear RGB between its stops)."""
    n = len(_BLUES) - 1
    i = min(n - 1, int(t * n))
    f = t * n - i
    a, b = _BLUES[i], _BLUES[i + 1]
    channels = [round(int(a[k : k + 2], 16) * (1 - f) + int(b[k : k + 2], 16) * f) for k in (1, 3, 5)]
    return "#" + "".join(f"{c:02x}" for c in channels)


HEATMAP_COLORS = [_blues(i / (HEATMAP_BINS - 1)) for i in range(HEATMAP_BINS)]
# d3's quantize scale over [0, 1]: value x takes colour bisect_right(thresholds, x).
_HEATMAP_THRESHOLDS = [(i + 1) / HEATMAP_BINS for i in range(HEATMAP_BINS - 1)]


# Chart styling; set on the spec directly (Altair's .configure() deep-copies the chart each call).
# aria=False: no per-mark ARIA labels (they tripled the SVG size); the page gives every chart a
# caption and an aria-label, and the tables hold the same numbers as text.
CONFIG: dict[str, Any] = {
    "background": "white",
    "font": "sans-serif",
    "aria": False,
    "axis": {"labelFontSize": 11, "titleFontSize": 12, "gridColor": "#e6e6e6"},
    "axisX": {"grid": False},
    "legend": {"labelFontSize": 11, "titleFontSize": 12, "labelLimit": 220},
    "view": {"stroke": "#cccccc"},
}


def _vl_version() -> str:
    """The Vega-Lite version Altair targets, as vl-convert names it ("6.4")."""
    major_minor = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    available = vlc.get_vegalite_versions()
    return major_minor if major_minor in available else available[-1]


VL_VERSION = _vl_version()


@dataclass(frozen=True)
class ChartView:
    """One chart, ready for the page."""

    chart_id: str  # unique in the page, e.g. "run0-trajectory"
    title: str
    description: str  # what the chart shows, for captions and screen readers
    spec: dict[str, Any]  # Vega-Lite spec for vegaEmbed
    svg: str  # static rendering of the same chart
    fit: bool = True  # may shrink to the page width (the heatmap scrolls instead: its text must stay legible)


@dataclass(frozen=True)
class PendingChart:
    """A chart whose static SVG may still be drawing (see ``result``)."""

    chart_id: str
    title: str
    description: str
    spec: dict[str, Any]
    svg: Future[str] | str
    fit: bool = True

    def result(self) -> ChartView:
        svg = self.svg if isinstance(self.svg, str) else self.svg.result()
        return ChartView(self.chart_id, self.title, self.description, self.spec, svg, self.fit)


@functools.lru_cache(maxsize=1)
def vega_bundle() -> str:
    """Vega + Vega-Lite + vega-embed as one script (about 900 KB; cached per process)."""
    return vlc.javascript_bundle(vl_version=VL_VERSION)


@functools.lru_cache(maxsize=1)
def _svg_thread() -> ThreadPoolExecutor:
    # One worker: vl-convert converts one chart at a time anyway; the thread lets Python work overlap.
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="lazarus-vl-convert")


def run_charts(run: RunReport) -> list[ChartView]:
    """The charts shown for one run, in page order."""
    return [c.result() for c in start_run_charts(run)]


def _unvalidated(fn: Any) -> Any:
    """Build specs without Altair's JSON-schema validation (its "debug mode" validates every object
    as it is created: most of the time a chart took). The tests validate every spec instead.
    The switch is process-wide while ``fn`` runs (Altair has no other)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with debug_mode(False):
            return fn(*args, **kwargs)

    return wrapper


@_unvalidated
def start_run_charts(run: RunReport) -> list[PendingChart]:
    charts = [_trajectory(run), _entropy_kl(run)]
    if run.grid is not None:
        charts.append(_heatmap([("", run)], chart_id=f"{run.key}-heatmap"))
    return charts


def comparison_charts(report: ReportModel) -> dict[str, list[ChartView]]:
    """The charts of a comparison report: ``{"comparison": [...], "heatmaps": [...]}``."""
    return finish(start_comparison_charts(report))


@_unvalidated
def start_comparison_charts(report: ReportModel) -> dict[str, list[PendingChart]]:
    comparison = report.comparison
    assert comparison is not None
    lines = [_compare_trajectory(report.runs, comparison), _compare_entropy_kl(report.runs, comparison)]
    if comparison.has_divergences:
        lines.append(_divergence(comparison))
    panels = [(f"{tag} · {label}", run) for tag, label, run in zip(comparison.tags, comparison.labels, report.runs)]
    with_grid = [(title, run) for title, run in panels if run.grid is not None]
    heatmaps = []
    if with_grid:
        title = "Top-1 prediction by layer and position, both models"
        heatmaps.append(_heatmap(with_grid, chart_id="comparison-heatmap", title=title))
    return {"comparison": lines, "heatmaps": heatmaps}


def start_report_charts(report: ReportModel) -> dict[str, list[PendingChart]]:
    """Every chart of a report, keyed by page section; SVG conversions run in the background."""
    if report.comparison is not None:
        return start_comparison_charts(report)
    return {run.key: start_run_charts(run) for run in report.runs}


def finish(pending: dict[str, list[PendingChart]]) -> dict[str, list[ChartView]]:
    return {key: [c.result() for c in charts] for key, charts in pending.items()}


# --- suites -------------------------------------------------------------------------------------

SUITE_CHART_ID = "suite-emergence"
CASE_LABEL_CHARS = 28


@_unvalidated
def start_suite_charts(suite: SuiteReport) -> dict[str, list[PendingChart]]:
    """A suite report's charts: ``{"suite": [emergence across cases], <case key>: [trajectory], ...}``.

    Each case's trajectory is the single-prompt chart (``_compare_trajectory`` or ``_trajectory``) with
    a compact static SVG (``_plot_svg``); the page stores the cases' specs as patches of one shared
    spec (``shared_specs``)."""
    out: dict[str, list[PendingChart]] = {}
    if suite.with_target:
        out["suite"] = [_emergence(suite)]
    for case in suite.cases:
        report = case.report
        if report is None:
            continue
        chart_id = f"{case.key}-trajectory"
        if report.comparison is not None:
            out[case.key] = [_compare_trajectory(report.runs, report.comparison, chart_id=chart_id, compact=True)]
        else:
            out[case.key] = [_trajectory(report.runs[0], chart_id=chart_id, compact=True)]
    return out


def _emergence(suite: SuiteReport) -> PendingChart:
    """Where each case's target first becomes top-1, per model, across the cases (in suite order).
    A target that never becomes top-1 sits in a "never" band above the last layer; with models of
    different depths the y axis is relative depth."""
    cases = suite.with_target
    if suite.by_depth:
        top, never, ticks = 1.0, 1.15, [0, 0.2, 0.4, 0.6, 0.8, 1.0]
        y_title, label = "Target top-1 from (relative depth)", "format(datum.value, '.1f')"
    else:
        top = max(side.num_layers for case in cases for side in case.sides) - 1
        step = max(1, round(_tick_step(0, top, 6)))
        never, ticks = top + 2.5, list(range(0, top + 1, step))
        y_title, label = "Target top-1 from layer", "datum.value"
    band = [{"y": top + (never - top) * 0.3, "y2": never + (never - top) * 0.6}]
    rows, pairs = [], []
    for case in cases:
        x = f"{case.index + 1}. {_shorten(case.id, CASE_LABEL_CHARS)}"
        ys = []
        for tag, side in zip(suite.tags, case.sides):
            value = side.target_depth if suite.by_depth else side.target_emergence
            y = never if value is None else _round(value)
            ys.append(y)
            rows.append({"x": x, "m": tag, "y": y, "e": side.emergence_text, "id": case.id, "s": case.status})
        if len(ys) == 2:
            pairs.append({"x": x, "y": ys[0], "y2": ys[1]})
    order = [f"{case.index + 1}. {_shorten(case.id, CASE_LABEL_CHARS)}" for case in cases]
    x = alt.X("x:N", title="Case (suite order)", sort=order, axis=alt.Axis(labelAngle=-50, labelLimit=140))
    y = alt.Y(
        "y:Q",
        title=y_title,
        scale=alt.Scale(domain=[0, never + (never - top) * 0.6], nice=False),
        axis=alt.Axis(values=[*ticks, never], labelExpr=f"datum.value > {top} ? 'never' : {label}"),
    )
    tooltip = [
        alt.Tooltip("id:N", title="Case"),
        alt.Tooltip("m:N", title="Model"),
        alt.Tooltip("e:N", title="Target top-1 from"),
        alt.Tooltip("s:N", title="Status"),
    ]
    layers: list[Any] = [
        alt.Chart(alt.NamedData("band")).mark_rect(color="#eeeeee").encode(y=y, y2="y2:Q"),
    ]
    if pairs:
        layers.append(alt.Chart(alt.NamedData("pairs")).mark_rule(color="#aaaaaa").encode(x=x, y=y, y2="y2:Q"))
    tags = list(suite.tags)
    layers.append(
        alt.Chart(alt.NamedData("d"))
        .mark_point(filled=True, size=60, opacity=0.9)
        .encode(
            x=x,
            y=y,
            tooltip=tooltip,
            color=alt.Color(
                "m:N",
                title="Model",
                scale=alt.Scale(domain=tags, range=PALETTE[: len(tags)]),
                legend=alt.Legend(orient="top", direction="horizontal"),
            ),
            shape=alt.Shape(
                "m:N", title="Model", scale=alt.Scale(domain=tags, range=["circle", "diamond"][: len(tags)])
            ),
        )
    )
    chart = alt.layer(*layers).properties(width=max(360, 18 * len(cases)), height=220)
    who = "each model" if len(tags) == 2 else "the model"
    description = (
        f"For each case with a target (its first tracked token), the {'relative depth' if suite.by_depth else 'layer'} "
        f"where the target first becomes the top-1 prediction in {who}; the band at the top holds the cases where it "
        "never does."
    )
    if len(tags) == 2:
        description += " A grey line joins a case's base and tuned points."
    return _line_view(
        SUITE_CHART_ID,
        "Where the target emerges, across cases",
        description,
        chart,
        {"band": band, "pairs": pairs, "d": rows},
    )


def shared_specs(charts: list[PendingChart], base_id: str) -> dict[str, Any]:
    """Specs for the page, stored compactly: ``{base_id: the first chart's spec, chart id: patch}``, where a
    patch is ``{"lazarus-patch": {"base": "spec-<base_id>", "ops": [...]}}`` (see ``spec_patch``). The
    page script rebuilds each spec from the base before drawing it. Charts of one kind share most of
    their spec; only their data and a few scale domains differ."""
    if not charts:
        return {}
    base = charts[0].spec
    out: dict[str, Any] = {base_id: base}
    for chart in charts:
        out[chart.chart_id] = {"lazarus-patch": {"base": f"spec-{base_id}", "ops": spec_patch(base, chart.spec)}}
    return out


def spec_patch(base: Any, spec: Any, path: tuple[Any, ...] = ()) -> list[list[Any]]:
    """Operations that turn ``base`` into ``spec``: ``[path, value]`` sets the value at ``path`` (a list
    of object keys and array indices; ``[]`` is the whole spec), ``[path]`` deletes an object key.
    Objects are patched key by key; an array of the same length element by element when that is
    shorter than replacing it whole."""
    if base == spec:
        return []
    whole: list[list[Any]] = [[list(path), spec]]
    if isinstance(base, dict) and isinstance(spec, dict):
        ops: list[list[Any]] = []
        for key, value in spec.items():
            ops += spec_patch(base[key], value, (*path, key)) if key in base else [[[*path, key], value]]
        ops += [[[*path, key]] for key in base if key not in spec]
    elif isinstance(base, list) and isinstance(spec, list) and len(base) == len(spec):
        ops = [op for i, (b, s) in enumerate(zip(base, spec)) for op in spec_patch(b, s, (*path, i))]
    else:
        return whole
    return ops if _json_size(ops) < _json_size(whole) else whole


def _json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


# --- one run --------------------------------------------------------------------------


def _layer_x(run: RunReport, *, labelled: bool = True) -> alt.X:
    scale = alt.Scale(domain=[run.captured_layers[0], run.captured_layers[-1]], nice=False)
    if labelled:
        return alt.X("layer:Q", title="Layer", scale=scale, axis=alt.Axis(tickMinStep=1, format="d"))
    return alt.X("layer:Q", title=None, scale=scale, axis=alt.Axis(tickMinStep=1, labels=False))


def _rank_top(ranks: list[int]) -> int:
    """The rank axis goes from 1 to the next power of ten (at least 10)."""
    top = 1
    while top < max([1, *ranks]):
        top *= 10
    return top


def _rank_y(field: str, ranks: list[int]) -> alt.Y:
    """Rank on a reversed log axis (1 at the top) from 1 to the next power of ten, ticks at powers of ten."""
    top = _rank_top(ranks)
    ticks = [10**k for k in range(len(str(top)))]
    scale = alt.Scale(type="log", reverse=True, domain=[1, max(top, 10)])
    axis = alt.Axis(values=ticks if top > 1 else [1, 10], format=",")
    return alt.Y(field, title="Rank (log, 1 = top)", scale=scale, axis=axis)


def _unique_labels(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return out


def _palette(n: int) -> list[str] | None:
    return PALETTE[:n] if 0 < n <= len(PALETTE) else None


def _trajectory(run: RunReport, *, chart_id: str | None = None, compact: bool = False) -> PendingChart:
    """The tracked tokens' probability and rank across layers. ``compact``: the static SVG is drawn
    here (``_plot_svg``, a few kB) instead of by vl-convert (for pages with a chart per suite case)."""
    labels = _unique_labels([s.label for s in run.series])
    rows, marks, lines = [], [], []
    for i, (label, s) in enumerate(zip(labels, run.series)):
        for layer, p, r in zip(s.layers, s.probs, s.ranks):
            rows.append({"layer": layer, "token": label, "p": _round(p), "rank": r})
        if s.emergence_layer is not None:
            marks.append({"layer": s.emergence_layer, "token": label, "note": f"{label} top-1 at L{s.emergence_layer}"})
        lines.append(
            _PlotLine(
                list(zip(s.layers, s.probs, s.ranks)),
                PALETTE[i % len(PALETTE)],
                emergence=s.emergence_layer,
                note=f"{label} top-1 at L{s.emergence_layer}",
            )
        )
    color = alt.Color(
        "token:N",
        title="Token",
        scale=alt.Scale(domain=labels, range=_palette(len(labels))),
        legend=alt.Legend(orient="top", direction="horizontal"),
    )
    tooltip = [
        alt.Tooltip("token:N", title="Token"),
        alt.Tooltip("layer:Q", title="Layer"),
        alt.Tooltip("p:Q", title="Probability", format=".3~p"),
        alt.Tooltip("rank:Q", title="Rank", format=","),
    ]
    # Point markers show which layers were captured; with many layers the line says it and the
    # markers would double the static SVG.
    points = len(run.captured_layers) <= MAX_LAYERS_WITH_POINTS
    middle = (run.captured_layers[0] + run.captured_layers[-1]) / 2
    datasets: dict[str, Any] = {"d": _stored(rows, compact), "marks": marks}
    # Labels right of the line in the left half, left of it in the right half: they stay inside.
    sides = []
    for side, align, dx in (("left", "left", 4), ("right", "right", -4)):
        chosen = [m for m in marks if (m["layer"] <= middle) == (side == "left")]
        if chosen:
            datasets[side] = chosen
            sides.append((side, align, dx))

    def panel(y: alt.Y, x: alt.X, *, notes: bool) -> alt.LayerChart:
        layers: list[Any] = [
            _rows("d", rows, compact).mark_line(point=points).encode(x=x, y=y, color=color, tooltip=tooltip)
        ]
        if marks:
            layers.append(
                alt.Chart(alt.NamedData("marks")).mark_rule(strokeDash=[4, 3], strokeWidth=1.5).encode(x=x, color=color)
            )
        if notes:
            for side, align, dx in sides:
                layers.append(
                    alt.Chart(alt.NamedData(side))
                    .mark_text(align=align, dx=dx, dy=-4, baseline="bottom", fontSize=10)
                    .encode(x=x, y=alt.YValue(0), text=alt.Text("note:N"), color=color)
                )
        return alt.layer(*layers).properties(width=LINE_WIDTH, height=LINE_HEIGHT)

    # Both panels share the layer axis; it is labelled once, under the rank panel.
    prob = panel(
        # Zero-based but not stretched to 100%: a tracked token at 0.4% should still show its shape.
        alt.Y("p:Q", title="Probability", scale=alt.Scale(zero=True, nice=True), axis=alt.Axis(format=".2~p")),
        _layer_x(run, labelled=False),
        notes=True,
    )
    rank = panel(
        _rank_y("rank:Q", [r for series in run.series for r in series.ranks]),
        _layer_x(run),
        notes=False,
    )
    chart = alt.vconcat(prob, rank, spacing=14).resolve_scale(color="shared")
    who = "Tracked tokens" if run.series_are_tracked else "The final top-1 token"
    description = (
        f"{who} at the last prompt position: probability (top) and rank on a log axis (bottom) "
        "at each captured layer; dashed lines mark the layer where a token first becomes top-1."
    )
    if not run.series_are_tracked:
        description += " Its probability is shown where it is in a layer's top-k."
    svg = None
    if compact:
        legend = [("Token", [(label, line) for label, line in zip(labels, lines)])]
        ranks = [r for series in run.series for r in series.ranks]
        svg = _plot_svg(_Plot(lines, _layer_axis(run.captured_layers), "Layer", max([1, *ranks]), legend))
    return _line_view(
        chart_id or f"{run.key}-trajectory",
        "Token probability and rank across layers",
        description,
        chart,
        datasets,
        svg=svg,
    )


def _entropy_kl(run: RunReport) -> PendingChart:
    rows = []
    for layer, h, kl in zip(run.captured_layers, run.entropy, run.kl_to_final):
        rows.append({"layer": layer, "metric": "Entropy", "nats": _round(h)})
        rows.append({"layer": layer, "metric": "KL to final", "nats": _round(kl)})
    metrics = ["Entropy", "KL to final"]
    chart = (
        alt.Chart(alt.NamedData("d"))
        .mark_line(point=len(run.captured_layers) <= MAX_LAYERS_WITH_POINTS)
        .encode(
            x=_layer_x(run),
            y=alt.Y("nats:Q", title="nats"),
            color=alt.Color(
                "metric:N",
                title=None,
                scale=alt.Scale(domain=metrics, range=PALETTE[:2]),
                legend=alt.Legend(orient="top", direction="horizontal"),
            ),
            strokeDash=alt.StrokeDash(
                "metric:N",
                title=None,
                scale=alt.Scale(domain=metrics, range=[[1, 0], [5, 3]]),
                legend=alt.Legend(orient="top", direction="horizontal"),
            ),
            tooltip=[
                alt.Tooltip("metric:N", title="Measure"),
                alt.Tooltip("layer:Q", title="Layer"),
                alt.Tooltip("nats:Q", title="nats", format=".3f"),
            ],
        )
        .properties(width=LINE_WIDTH, height=LINE_HEIGHT)
    )
    description = (
        "Entropy of each layer's lens distribution and its KL divergence from the final distribution "
        "(KL(final || layer)), in nats, at the last prompt position."
    )
    return _line_view(f"{run.key}-entropy-kl", "Entropy and KL to final across layers", description, chart, {"d": rows})


# --- compact static line plots (a chart per suite case) ----------------------------------------


@dataclass(frozen=True)
class _PlotLine:
    """One token's line in both panels of a trajectory plot, styled as in the live chart."""

    points: list[tuple[float, float | None, int]]  # (x, probability or None where unknown, rank)
    color: str
    dash: list[float] = dataclasses.field(default_factory=lambda: [1, 0])
    width: float = 2.0
    opacity: float = 1.0
    emergence: float | None = None  # x where the token first becomes top-1
    marker: str = "rule"  # at the emergence: "rule" (dashed line, with ``note``), "circle" or "diamond"
    note: str = ""


@dataclass(frozen=True)
class _Axis:
    domain: tuple[float, float]
    ticks: list[float]
    labels: list[str]


@dataclass(frozen=True)
class _Plot:
    lines: list[_PlotLine]
    x: _Axis
    x_title: str
    max_rank: int
    legends: list[tuple[str, list[tuple[str, _PlotLine]]]]  # (title, [(label, line style)])


def _tick_step(lo: float, hi: float, count: int) -> float:
    """d3's tick increment: a 1, 2 or 5 times a power of ten, about ``count`` ticks over [lo, hi]."""
    step = (hi - lo) / max(1, count)
    if step <= 0:
        return 1.0
    power = math.floor(math.log10(step))
    error = step / 10**power
    factor = 10 if error >= math.sqrt(50) else 5 if error >= math.sqrt(10) else 2 if error >= math.sqrt(2) else 1
    return factor * 10.0**power


def _layer_axis(layers: list[int]) -> _Axis:
    """Whole layers, a tick about every 80 px (half as many as the live chart)."""
    lo, hi = min(layers), max(layers)
    step = max(1, round(_tick_step(lo, hi, math.ceil(LINE_WIDTH / 80))))
    ticks = list(range(math.ceil(lo / step) * step, hi + 1, step))
    return _Axis((lo, max(hi, lo + 1)), [float(t) for t in ticks], [str(t) for t in ticks])


def _relative_axis() -> _Axis:
    ticks = [k / 10 for k in range(11)]
    return _Axis((0.0, 1.0), ticks, [f"{t:.1f}" for t in ticks])


_PLOT_LEFT = 70
_PLOT_GAP = 14
_LEGEND_ROW = 18
_CHAR_PX = 6.2  # average width of an 11 px sans-serif character, for laying out legend entries


@dataclass(frozen=True)
class _PlotScale:
    """Data to pixels inside one panel (LINE_WIDTH x LINE_HEIGHT), as the live chart's scales do."""

    x0: float
    x1: float
    p_max: float  # the probability axis: 0 to a "nice" maximum
    rank_top: int  # the rank axis: 1 (top) to a power of ten (bottom), logarithmic

    @classmethod
    def of(cls, plot: _Plot) -> _PlotScale:
        known = [p for line in plot.lines for _, p, _ in line.points if p is not None]
        p_max = max([0.0, *known]) or 1.0
        step = _tick_step(0, p_max, 10)
        return cls(*plot.x.domain, math.ceil(p_max / step - 1e-9) * step, max(10, _rank_top([plot.max_rank])))

    def x(self, x: float) -> float:
        return (x - self.x0) / (self.x1 - self.x0) * LINE_WIDTH

    def y(self, kind: str, p: float | None, rank: int) -> float | None:
        if kind == "rank":
            return math.log10(max(1, rank)) / math.log10(self.rank_top) * LINE_HEIGHT
        return None if p is None else LINE_HEIGHT - p / self.p_max * LINE_HEIGHT

    def y_ticks(self, kind: str) -> list[tuple[float, str]]:
        if kind == "rank":
            return [(self.y("rank", None, 10**k) or 0.0, f"{10**k:,}") for k in range(len(str(self.rank_top)))]
        step = _tick_step(0, self.p_max, math.ceil(LINE_HEIGHT / 40))
        values = [k * step for k in range(int(self.p_max / step + 1e-9) + 1)]
        return [(self.y("prob", v, 1) or 0.0, f"{round(100 * v, 6):g}%") for v in values]


def _plot_svg(plot: _Plot) -> str:
    """A trajectory chart as compact SVG (about 4 kB): the live chart's layout (legend on top; the
    probability panel over the rank panel on a reversed log axis, 1 at the top; the shared x axis under
    the rank panel) with fewer bytes: one path per line and per grid, whole-pixel line points."""
    scale = _PlotScale.of(plot)
    w, h = LINE_WIDTH, LINE_HEIGHT
    top = 8 + _LEGEND_ROW * len(plot.legends) + 12
    rank_y0 = top + h + _PLOT_GAP
    x_labels = "".join(
        f'<text x="{_short(scale.x(t), 1)}" y="{h + 16}">{_esc(label)}</text>'
        for t, label in zip(plot.x.ticks, plot.x.labels)
    )
    total_w, total_h = _PLOT_LEFT + w + 20, rank_y0 + h + 40
    return (
        f'<svg xmlns="{_SVG_NS}" width="{total_w}" height="{total_h}" viewBox="0 0 {total_w} {total_h}" '
        'font-family="sans-serif" font-size="11px">'
        f'<rect width="{total_w}" height="{total_h}" fill="white"/>'
        f'<g transform="translate({_PLOT_LEFT},0)">{_plot_legends(plot.legends)}</g>'
        f"{_plot_panel(plot, scale, 'prob', top)}{_plot_panel(plot, scale, 'rank', rank_y0)}"
        f'<g transform="translate({_PLOT_LEFT},{rank_y0})" text-anchor="middle">{x_labels}'
        f'<text x="{w // 2}" y="{h + 32}" font-size="12px" font-weight="bold">{_esc(plot.x_title)}</text></g></svg>'
    )


def _plot_panel(plot: _Plot, scale: _PlotScale, kind: str, y0: float) -> str:
    """One panel ("prob" or "rank"): grid, frame, axes and every line with its emergence mark."""
    w, h = LINE_WIDTH, LINE_HEIGHT
    y_ticks = scale.y_ticks(kind)
    ticks = "".join(f"M{round(scale.x(t))},{h}v5" for t in plot.x.ticks) + "".join(
        f"M0,{_short(y, 1)}h-5" for y, _ in y_ticks
    )
    title = "Probability" if kind == "prob" else "Rank (log, 1 = top)"
    out = [
        f'<g transform="translate({_PLOT_LEFT},{_short(y0, 1)})">',
        f'<path stroke="#e6e6e6" d="{"".join(f"M0,{_short(y, 1)}h{w}" for y, _ in y_ticks)}"/>',
        f'<rect width="{w}" height="{h}" fill="none" stroke="#cccccc"/>',
        '<g font-size="11px" text-anchor="end">'
        + "".join(f'<text x="-7" y="{_short(y + 3, 1)}">{_esc(label)}</text>' for y, label in y_ticks)
        + "</g>",
        f'<path stroke="#888888" d="{ticks}"/>',
        f'<text transform="translate(-52,{h // 2}) rotate(-90)" text-anchor="middle" font-size="12px" '
        f'font-weight="bold">{title}</text>',
    ]
    for line in plot.lines:
        points = [(scale.x(x), scale.y(kind, p, r)) for x, p, r in line.points]
        style = f'stroke="{line.color}" stroke-width="{_short(line.width, 1)}"' + _dashes(line.dash)
        if line.opacity != 1:
            style += f' stroke-opacity="{_short(line.opacity, 2)}"'
        d = _polyline([None if y is None else (x, y) for x, y in points])
        if d:
            out.append(f'<path fill="none" {style} d="{d}"/>')
        if line.emergence is None:
            continue
        ex = _short(scale.x(line.emergence), 1)
        if line.marker == "rule":
            out.append(
                f'<line x1="{ex}" x2="{ex}" y2="{h}" stroke="{line.color}" stroke-width="1.5" stroke-dasharray="4,3"/>'
            )
            if kind == "prob" and line.note:
                left = scale.x(line.emergence) <= w / 2  # the note stays inside the panel
                out.append(
                    f'<text x="{_short(scale.x(line.emergence) + (4 if left else -4), 1)}" y="-4" '
                    f'font-size="10px" text-anchor="{"start" if left else "end"}" fill="{line.color}">'
                    f"{_esc(line.note)}</text>"
                )
        else:
            at = [pt for (x, _, _), pt in zip(line.points, points) if x == line.emergence and pt[1] is not None]
            if at:
                out.append(_marker_path(line.marker, at[0][0], at[0][1], 4.2, line.color))  # type: ignore[arg-type]
    out.append("</g>")
    return "".join(out)


def _plot_legends(legends: list[tuple[str, list[tuple[str, _PlotLine]]]]) -> str:
    """One row per legend: its title, then each entry's symbol (marker or line style) and label."""
    parts = []
    for row, (title, entries) in enumerate(legends):
        y = 17 + _LEGEND_ROW * row
        parts.append(f'<text y="{y + 1}" font-size="12px" font-weight="bold">{_esc(title)}</text>')
        x = len(title) * 7.5 + 10
        for label, style in entries:
            label = _shorten(label, 40)
            if style.marker in ("circle", "diamond"):
                parts.append(_marker_path(style.marker, x + 5, y - 3, 5, style.color, style.opacity))
            else:
                parts.append(
                    f'<path d="M{_short(x, 1)},{y - 3}h14" stroke="{style.color}" stroke-width="2"'
                    f"{_dashes(style.dash)}/>"
                )
            parts.append(f'<text x="{_short(x + 18, 1)}" y="{y + 1}">{_esc(label)}</text>')
            x += 18 + len(label) * _CHAR_PX + 12
    return "".join(parts)


def _dashes(dash: list[float]) -> str:
    return "" if dash == [1, 0] else f' stroke-dasharray="{",".join(_short(v, 1) for v in dash)}"'


def _polyline(points: list[tuple[float, float] | None]) -> str:
    """Path data through ``points`` (None breaks the line), in whole pixels (a fallback picture) and
    relative steps, a horizontal run as one ``h``: about half the bytes of absolute coordinates."""
    out: list[str] = []
    last: tuple[int, int] | None = None
    for point in points:
        if point is None:
            last = None
            continue
        x, y = round(point[0]), round(point[1])
        if last is None:
            out.append(f"M{x},{y}")
        elif y == last[1] and out[-1].startswith("h"):
            out[-1] = f"h{int(out[-1][1:]) + x - last[0]}"
        elif y == last[1]:
            out.append(f"h{x - last[0]}")
        else:
            out.append(f"l{x - last[0]},{y - last[1]}")
        last = (x, y)
    return "".join(out)


def _marker_path(shape: str, x: float, y: float, r: float, color: str, opacity: float = 1.0) -> str:
    if shape == "circle":
        d = f"M{_short(x + r, 1)},{_short(y, 1)}a{r},{r} 0 1 1 {-2 * r},0a{r},{r} 0 1 1 {2 * r},0"
    else:
        d = f"M{_short(x - r, 1)},{_short(y, 1)}l{r},{-r}l{r},{r}l{-r},{r}z"
    fill_opacity = "" if opacity == 1 else f' fill-opacity="{_short(opacity, 2)}"'
    return f'<path fill="{color}"{fill_opacity} d="{d}"/>'


# --- heatmap (one run; a comparison shows one per model) ---------------------------------------


def _heatmap(
    panels: list[tuple[str, RunReport]], *, chart_id: str, title: str = "Top-1 prediction by layer and position"
) -> PendingChart:
    """Layers x positions heatmap: one panel per run (a comparison shows both models side by side,
    sharing one colour legend); ``panels`` pairs a panel title ("" for none) with its run."""
    charts, datasets, shown = [], {}, []
    for k, (panel_title, run) in enumerate(panels):
        grid = run.grid
        assert grid is not None
        index = {pos: j for j, pos in enumerate(grid.positions)}
        # The biggest dataset of a page, so stored compactly: one row per layer holding arrays
        # (flattened in the browser), the position labels once (joined by lookup).
        by_layer: dict[int, dict[str, Any]] = {}
        for c in grid.cells:
            row = by_layer.setdefault(c.layer, {"l": c.layer, "i": [], "t": [], "p": []})
            row["i"].append(index[c.position])
            row["t"].append(c.token)
            row["p"].append(_round(c.prob))
        datasets[f"d{k}"] = list(by_layer.values())
        datasets[f"pos{k}"] = [{"i": j, "pos": label} for j, label in enumerate(grid.position_labels)]
        x = alt.X(
            "pos:O",
            title="Prompt position (predicting the next token)",
            sort=grid.position_labels,
            axis=alt.Axis(labelAngle=-45, labelLimit=90, labelFontSize=10),
        )
        y = alt.Y("l:O", title="Layer", sort="descending")

        tooltip = [
            alt.Tooltip("l:O", title="Layer"),
            alt.Tooltip("pos:O", title="Position"),
            alt.Tooltip("t:N", title="Top-1"),
            alt.Tooltip("p:Q", title="Probability", format=".3~p"),
        ]
        rect = (
            _heatmap_base(k, x, y)
            .mark_rect()
            .encode(
                color=alt.Color(
                    "p:Q",
                    title="Top-1 probability",
                    scale=alt.Scale(type="quantize", domain=[0, 1], range=HEATMAP_COLORS),
                    legend=alt.Legend(format="%", orient="right"),
                ),
                tooltip=tooltip,
            )
        )
        text = (
            _heatmap_base(k, x, y)
            .mark_text(fontSize=9, limit=CELL_WIDTH - 4)
            .encode(
                text=alt.Text("t:N"),
                tooltip=tooltip,  # the label covers most of its cell
                # Channel objects, not alt.value()/alt.condition() dicts: Altair matches a dict against
                # every channel schema (~50 ms each).
                color=alt.ColorValue(
                    "#1a1a1a", condition={"test": f"datum.p > {HEATMAP_DARK_TEXT_ABOVE}", "value": "white"}
                ),
            )
        )
        panel = alt.layer(rect, text).properties(
            width=CELL_WIDTH * len(grid.positions), height=CELL_HEIGHT * len(grid.layers)
        )
        if panel_title:
            panel = panel.properties(title=alt.TitleParams(panel_title, anchor="start", fontSize=12, limit=panel.width))
        charts.append(panel)
        shown.append(
            f"the last {len(grid.positions)} of {grid.total_positions} prompt positions"
            if grid.truncated
            else f"all {grid.total_positions} prompt positions"
        )
    chart = charts[0] if len(charts) == 1 else alt.hconcat(*charts, spacing=24).resolve_scale(color="shared")
    where = shown[0] if len(set(shown)) == 1 else " and ".join(shown)
    description = (
        f"Top-1 lens prediction at every captured layer (rows, last layer on top) for {where} (columns); "
        "colour is the top-1 probability, the text is the predicted token."
    )
    if len(panels) > 1:
        description = "Each model's " + description[0].lower() + description[1:]
    spec = _spec(chart, description, datasets)
    svg = _checked(heatmap_svg([(panel_title, run.grid) for panel_title, run in panels]))  # type: ignore[misc]
    return PendingChart(chart_id, title, description, spec, svg, fit=False)


def _heatmap_base(k: int, x: alt.X, y: alt.Y) -> alt.Chart:
    """Panel ``k``'s cells: its per-layer rows flattened, joined with the position labels."""
    positions = alt.LookupData(data=alt.NamedData(f"pos{k}"), key="i", fields=["pos"])
    return (
        alt.Chart(alt.NamedData(f"d{k}"))
        .transform_flatten(["i", "t", "p"])
        .transform_lookup(lookup="i", from_=positions)
        .encode(x=x, y=y)
    )


HEATMAP_CELL_CHARS = 8  # token characters that fit a cell at 9 px (longer ones end in "…")
HEATMAP_LABEL_CHARS = 14
_HEATMAP_LEFT = 52  # room for the layer labels and the axis title
_HEATMAP_GAP = 24


def heatmap_svg(panels: list[tuple[str, GridView]]) -> str:
    """The heatmap as SVG, laid out like the Vega-Lite spec: per panel, rows are layers (last on top),
    columns positions, colour the top-1 probability (same bins), text the top-1 token (shortened to
    fit a cell); one colour legend on the right."""
    titled = any(title for title, _ in panels)
    top = 26 if titled else 6
    height = max(CELL_HEIGHT * len(grid.layers) for _, grid in panels)
    parts, x0 = [], 0
    for title, grid in panels:
        parts.append(f'<g transform="translate({x0 + _HEATMAP_LEFT},{top})">{_heatmap_panel(title, grid, height)}</g>')
        x0 += _HEATMAP_LEFT + CELL_WIDTH * len(grid.positions) + _HEATMAP_GAP
    legend_x = x0 - _HEATMAP_GAP + 18
    total_w, total_h = legend_x + 104, top + height + 92
    swatch = 14
    swatches = "".join(
        f'<rect y="{18 + swatch * (HEATMAP_BINS - 1 - k)}" width="14" height="{swatch}" fill="{color}"/>'
        for k, color in enumerate(HEATMAP_COLORS)
    )
    labels = "".join(
        f'<text x="19" y="{18 + swatch * (HEATMAP_BINS - 1 - k) + 4}">{100 * (k + 1) // HEATMAP_BINS}%</text>'
        for k in range(HEATMAP_BINS - 1)
    )
    return (
        f'<svg xmlns="{_SVG_NS}" width="{total_w}" height="{total_h}" viewBox="0 0 {total_w} {total_h}" '
        'font-family="sans-serif" font-size="10px">'
        f'<rect width="{total_w}" height="{total_h}" fill="white"/>{"".join(parts)}'
        f'<g transform="translate({legend_x},{top})">'
        f'<text y="10" font-size="12px" font-weight="bold">Top-1 probability</text>{swatches}{labels}</g></svg>'
    )


def _heatmap_panel(title: str, grid: GridView, height: int) -> str:
    n_rows = len(grid.layers)
    width = CELL_WIDTH * len(grid.positions)
    row_of = {layer: n_rows - 1 - i for i, layer in enumerate(grid.layers)}  # last layer on top
    col_of = {pos: j for j, pos in enumerate(grid.positions)}
    cells: list[list[str]] = [[] for _ in HEATMAP_COLORS]
    dark, light = [], []
    for c in grid.cells:
        x, y = CELL_WIDTH * col_of[c.position], CELL_HEIGHT * row_of[c.layer]
        p = _round(c.prob)
        p = 0.0 if p is None else p
        cells[bisect.bisect_right(_HEATMAP_THRESHOLDS, p)].append(f"M{x},{y}h{CELL_WIDTH}v{CELL_HEIGHT}h-{CELL_WIDTH}z")
        text = f'<text x="{x + CELL_WIDTH // 2}" y="{y + 11}">{_esc(_shorten(c.token, HEATMAP_CELL_CHARS))}</text>'
        (dark if p > HEATMAP_DARK_TEXT_ABOVE else light).append(text)
    rows_h = CELL_HEIGHT * n_rows
    rects = "".join(f'<path fill="{color}" d="{"".join(d)}"/>' for color, d in zip(HEATMAP_COLORS, cells) if d)
    y_labels = "".join(f'<text x="-5" y="{CELL_HEIGHT * row_of[layer] + 12}">{layer}</text>' for layer in grid.layers)
    x_labels = "".join(
        f'<text transform="translate({CELL_WIDTH * j + CELL_WIDTH // 2 + 3},{rows_h + 7}) rotate(-45)">'
        f"{_esc(_shorten(label, HEATMAP_LABEL_CHARS))}</text>"
        for j, label in enumerate(grid.position_labels)
    )
    heading = ""
    if title:
        heading = f'<text y="-8" font-size="12px" font-weight="bold">{_esc(_shorten(title, width // 7))}</text>'
    return (
        f"{heading}<g>{rects}</g>"
        f'<g font-size="9px" text-anchor="middle" fill="#1a1a1a">{"".join(light)}</g>'
        f'<g font-size="9px" text-anchor="middle" fill="white">{"".join(dark)}</g>'
        f'<rect width="{width}" height="{rows_h}" fill="none" stroke="#cccccc"/>'
        f'<g text-anchor="end">{y_labels}{x_labels}</g>'
        '<g font-size="12px" font-weight="bold" text-anchor="middle">'
        f'<text transform="translate(-38,{rows_h // 2}) rotate(-90)">Layer</text>'
        f'<text x="{width // 2}" y="{height + 86}">Prompt position (predicting the next token)</text></g>'
    )


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


# --- comparison ---------------------------------------------------------------------------


def _compare_x(comparison: ComparisonView, *, labelled: bool = True) -> alt.X:
    """The shared x axis of the comparison charts: the layer, or relative depth (0 to 1) for different depths."""
    title = comparison.x_title if labelled else None
    if comparison.alignment == "layer":
        xs = [x for values in comparison.x_values for x in values]
        return alt.X(
            "l:Q",
            title=title,
            scale=alt.Scale(domain=[min(xs), max(xs)], nice=False),
            axis=alt.Axis(tickMinStep=1, format="d", labels=labelled),
        )
    return alt.X(
        "x:Q",
        title=title,
        scale=alt.Scale(domain=[0, 1], nice=False),
        axis=alt.Axis(values=[k / 10 for k in range(11)], format=".1f", labels=labelled),
    )


def _compare_row(comparison: ComparisonView, layer: int, x: float, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"l": layer}
    if comparison.alignment != "layer":
        row["x"] = _round(x)
    row.update(values)
    return row


def _model_encodings(comparison: ComparisonView) -> dict[str, Any]:
    """Colour = model; model 1 drawn wide and pale under model 2, so identical lines both show."""
    labels = comparison.labels
    return {
        "color": alt.Color(
            "m:N",
            title="Model",
            scale=alt.Scale(domain=labels, range=PALETTE[:2]),
            legend=alt.Legend(orient="top", direction="horizontal"),
        ),
        "strokeWidth": alt.StrokeWidth("m:N", scale=alt.Scale(domain=labels, range=MODEL_STROKES), legend=None),
        "opacity": alt.Opacity("m:N", scale=alt.Scale(domain=labels, range=MODEL_OPACITY), legend=None),
    }


def _stored(rows: list[dict[str, Any]], columns: bool) -> list[dict[str, Any]]:
    """A dataset as stored in the spec: its rows, or (``columns``, for pages with many charts) one row
    of columns, which ``_rows`` flattens back in the browser (about half the bytes)."""
    if not columns or not rows:
        return rows
    return [{key: [row.get(key) for row in rows] for key in rows[0]}]


def _rows(name: str, rows: list[dict[str, Any]], columns: bool) -> alt.Chart:
    """A chart over the named dataset stored by ``_stored(rows, columns)``."""
    chart = alt.Chart(alt.NamedData(name))
    return chart.transform_flatten(list(rows[0])) if columns and rows else chart


def _lookup(chart: alt.Chart, dataset: str, fields: list[str]) -> alt.Chart:
    # Rows carry a small key ("k"); the long strings (model labels, tokens) sit once in ``dataset``.
    return chart.transform_lookup(lookup="k", from_=alt.LookupData(data=alt.NamedData(dataset), key="k", fields=fields))


def _compare_trajectory(
    runs: list[RunReport], comparison: ComparisonView, *, chart_id: str = "comparison-trajectory", compact: bool = False
) -> PendingChart:
    """Both models' tracked tokens across layers (``compact`` as for ``_trajectory``)."""
    tracked = bool(comparison.tracked) and all(run.series_are_tracked for run in runs)
    rows: list[dict[str, Any]] = []
    keys: list[dict[str, Any]] = []
    series_names: list[str] = []
    lines: list[_PlotLine] = []  # for the compact SVG
    for m, (run, label, xs) in enumerate(zip(runs, comparison.labels, comparison.x_values)):
        x_of = dict(zip(run.captured_layers, xs))
        names = [t.text.visible for t in comparison.tracked] if tracked else [s.label for s in run.series]
        for name, s in zip(_unique_labels(names), run.series):
            if name not in series_names:
                series_names.append(name)
            k = len(keys)
            keys.append({"k": k, "m": label, "s": name, "tok": s.label, "e": s.emergence_layer})
            rows += [
                _compare_row(comparison, layer, x_of[layer], k=k, p=_round(p), r=r)
                for layer, p, r in zip(s.layers, s.probs, s.ranks)
            ]
            emergence = x_of.get(s.emergence_layer) if s.emergence_layer is not None else None
            points = [(x_of[layer], p, r) for layer, p, r in zip(s.layers, s.probs, s.ranks)]
            lines.append(
                _PlotLine(
                    points,
                    PALETTE[m],
                    DASHES[series_names.index(name) % len(DASHES)],
                    MODEL_STROKES[m],
                    MODEL_OPACITY[m],
                    emergence,
                    marker=("circle", "diamond")[m],
                )
            )
    enc = _model_encodings(comparison)
    dash_range = DASHES[: len(series_names)] if len(series_names) <= len(DASHES) else None
    dash = alt.StrokeDash(
        "s:N",
        title="Tracked" if tracked else "Final top-1",
        scale=alt.Scale(domain=series_names, range=dash_range),
        legend=alt.Legend(orient="top", direction="horizontal", symbolStrokeWidth=2),
    )
    tooltip = [
        alt.Tooltip("m:N", title="Model"),
        alt.Tooltip("tok:N", title="Token"),
        alt.Tooltip("l:Q", title="Layer"),
        alt.Tooltip("p:Q", title="Probability", format=".3~p"),
        alt.Tooltip("r:Q", title="Rank", format=","),
    ]
    shape = alt.Shape("m:N", legend=None, scale=alt.Scale(domain=comparison.labels, range=["circle", "diamond"]))

    def panel(y: alt.Y, x: alt.X) -> alt.LayerChart:
        line = (
            _lookup(_rows("d", rows, compact), "keys", ["m", "s", "tok"])
            .mark_line()
            .encode(x=x, y=y, strokeDash=dash, tooltip=tooltip, **enc)
        )
        emergence = (
            _lookup(_rows("d", rows, compact), "keys", ["m", "s", "tok", "e"])
            .transform_filter("datum.l === datum.e")  # the layer where the token first becomes top-1
            .mark_point(filled=True, size=70, opacity=1)
            .encode(x=x, y=y, color=enc["color"], shape=shape, tooltip=tooltip)
        )
        return alt.layer(line, emergence).properties(width=LINE_WIDTH, height=LINE_HEIGHT)

    prob = panel(
        alt.Y("p:Q", title="Probability", scale=alt.Scale(zero=True, nice=True), axis=alt.Axis(format=".2~p")),
        _compare_x(comparison, labelled=False),
    )
    rank = panel(_rank_y("r:Q", [row["r"] for row in rows]), _compare_x(comparison))
    chart = alt.vconcat(prob, rank, spacing=14).resolve_scale(color="shared", strokeDash="shared")
    who = "Each tracked token" if tracked else "Each model's final top-1 token"
    description = (
        f"{who} in both models (colour: model; line style: token) at the last prompt position: probability "
        "(top) and rank on a log axis (bottom); a filled marker is where the token first becomes top-1."
    )
    if not tracked:
        description += " Its probability is shown where it is in a layer's top-k."
    if comparison.alignment != "layer":
        description += " The models have different depths: the x axis is relative depth."
    svg = None
    if compact:
        axis = (
            _relative_axis()
            if comparison.alignment != "layer"
            else _layer_axis([round(x) for values in comparison.x_values for x in values])
        )
        models = [
            (label, _PlotLine([], PALETTE[m], opacity=MODEL_OPACITY[m], marker=("circle", "diamond")[m]))
            for m, label in enumerate(comparison.labels)
        ]
        dashes = [(name, _PlotLine([], "#888888", DASHES[i % len(DASHES)])) for i, name in enumerate(series_names)]
        legend = [("Model", models), ("Tracked" if tracked else "Final top-1", dashes)]
        svg = _plot_svg(_Plot(lines, axis, comparison.x_title, max([1, *(row["r"] for row in rows)]), legend))
    return _line_view(
        chart_id,
        "Token probability and rank, both models",
        description,
        chart,
        {"d": _stored(rows, compact), "keys": keys},
        svg=svg,
    )


def _compare_entropy_kl(runs: list[RunReport], comparison: ComparisonView) -> PendingChart:
    rows = []
    for k, (run, xs) in enumerate(zip(runs, comparison.x_values)):
        for layer, x, h, kl in zip(run.captured_layers, xs, run.entropy, run.kl_to_final):
            rows.append(_compare_row(comparison, layer, x, k=k, h=_round(h), kl=_round(kl)))
    keys = [{"k": k, "m": label} for k, label in enumerate(comparison.labels)]
    enc = _model_encodings(comparison)
    tooltip = [
        alt.Tooltip("m:N", title="Model"),
        alt.Tooltip("l:Q", title="Layer"),
        alt.Tooltip("h:Q", title="Entropy (nats)", format=".3f"),
        alt.Tooltip("kl:Q", title="KL to final (nats)", format=".3f"),
    ]

    def base() -> alt.Chart:
        return _lookup(alt.Chart(alt.NamedData("d")), "keys", ["m"]).mark_line()

    entropy = (
        base()
        .encode(
            x=_compare_x(comparison, labelled=False), y=alt.Y("h:Q", title="Entropy (nats)"), tooltip=tooltip, **enc
        )
        .properties(width=LINE_WIDTH, height=150)
    )
    kl = (
        base()
        .encode(x=_compare_x(comparison), y=alt.Y("kl:Q", title="KL to final (nats)"), tooltip=tooltip, **enc)
        .properties(width=LINE_WIDTH, height=150)
    )
    chart = alt.vconcat(entropy, kl, spacing=14).resolve_scale(color="shared")
    description = (
        "Entropy of each layer's lens distribution (top) and its KL divergence from the same model's final "
        "distribution, KL(final || layer) (bottom), in nats, at the last prompt position; colour is the model."
    )
    return _line_view(
        "comparison-entropy-kl", "Entropy and KL to final, both models", description, chart, {"d": rows, "keys": keys}
    )


def _divergence(comparison: ComparisonView) -> PendingChart:
    m1, m2 = comparison.tags
    kls = [f"KL({m1} || {m2})", f"KL({m2} || {m1})"]
    rows = [
        _compare_row(
            comparison,
            r.layer2,
            r.x,
            pair=r.label,
            js=_round(r.js),
            **{kls[0]: _round(r.kl_12), kls[1]: _round(r.kl_21)},
        )
        for r in comparison.rows
    ]
    x_unlabelled, x = _compare_x(comparison, labelled=False), _compare_x(comparison)
    points = len(comparison.rows) <= MAX_LAYERS_WITH_POINTS
    pair = alt.Tooltip("pair:N", title="Layer")
    datasets: dict[str, Any] = {"d": rows}
    # JS (bounded by ln 2) on its own panel: on the KL scale it would be a flat line near zero.
    js: list[Any] = [
        alt.Chart(alt.NamedData("d"))
        .mark_line(point=points, color="#1a1a1a", strokeWidth=2)
        .encode(
            x=x_unlabelled,
            y=alt.Y("js:Q", title="JS (nats)", scale=alt.Scale(domain=[0, 0.7], nice=False)),
            tooltip=[pair, alt.Tooltip("js:Q", title="Jensen-Shannon (nats)", format=".4f")],
        )
    ]
    kl: list[Any] = [
        alt.Chart(alt.NamedData("d"))
        .transform_fold(kls, as_=["measure", "v"])
        .mark_line(point=points)
        .encode(
            x=x,
            y=alt.Y("v:Q", title="KL (nats)"),
            color=alt.Color(
                "measure:N",
                title=None,
                legend=alt.Legend(orient="top", direction="horizontal"),
                scale=alt.Scale(domain=kls, range=PALETTE[:2]),
            ),
            strokeDash=alt.StrokeDash(
                "measure:N",
                title=None,
                legend=alt.Legend(orient="top", direction="horizontal"),
                scale=alt.Scale(domain=kls, range=[[1, 0], [6, 3]]),
            ),
            tooltip=[pair, alt.Tooltip("measure:N", title="Measure"), alt.Tooltip("v:Q", title="nats", format=".4f")],
        )
    ]
    largest = comparison.largest_change
    if largest is not None:
        note = f"largest JS: layer {largest.label}"
        datasets["marks"] = [_compare_row(comparison, largest.layer2, largest.x, note=note)]
        first, last = comparison.rows[0].x, comparison.rows[-1].x
        align, dx = ("left", 4) if largest.x <= (first + last) / 2 else ("right", -4)
        for layers, axis in ((js, x_unlabelled), (kl, x)):
            rule = alt.Chart(alt.NamedData("marks")).mark_rule(strokeDash=[4, 3], color="#888888")
            layers.append(rule.encode(x=axis))
        js.append(
            alt.Chart(alt.NamedData("marks"))
            # At the bottom of the panel: the line peaks at the top here, by definition.
            .mark_text(align=align, dx=dx, dy=-4, baseline="bottom", fontSize=10, color="#333333")
            .encode(x=x_unlabelled, y=alt.YValue(110), text=alt.Text("note:N"))
        )
    chart = alt.vconcat(
        alt.layer(*js).properties(width=LINE_WIDTH, height=110),  # 110: see the label's y above
        alt.layer(*kl).properties(width=LINE_WIDTH, height=LINE_HEIGHT - 30),
        spacing=14,
    )
    description = (
        f"How far apart the two models' next-token distributions are at each matched layer (last prompt "
        f"position), in nats: Jensen-Shannon divergence (top; symmetric, at most ln 2 = 0.69) and KL both ways "
        f"(bottom; KL({m1} || {m2}) weighs by what {m1} believes)."
    )
    if largest is not None:
        description += f" The dashed line marks the largest JS divergence (layer {largest.label})."
    return _line_view(
        "comparison-divergence", "Divergence between the models across layers", description, chart, datasets
    )


# --- helpers ------------------------------------------------------------------------


def _round(x: float | None) -> float | None:
    # Plot data needs no 17-digit floats; the exact values are in the embedded result JSON.
    return None if x is None else round(x, 4)


def _spec(chart: Any, description: str, datasets: dict[str, Any]) -> dict[str, Any]:
    spec = chart.to_dict(validate=False)
    spec["description"] = description
    spec["config"] = CONFIG
    spec["datasets"] = datasets
    return spec


def _line_view(
    chart_id: str, title: str, description: str, chart: Any, datasets: dict[str, Any], *, svg: str | None = None
) -> PendingChart:
    """A chart whose static SVG vl-convert draws in the background (or ``svg``, already drawn)."""
    spec = _spec(chart, description, datasets)
    if svg is not None:
        return PendingChart(chart_id, title, description, spec, _renumber_ids(_checked(svg), chart_id))
    return PendingChart(chart_id, title, description, spec, _svg_thread().submit(_vl_svg, spec, chart_id))


def _vl_svg(spec: dict[str, Any], chart_id: str) -> str:
    return _compact_svg(_renumber_ids(vlc.vegalite_to_svg(spec, vl_version=VL_VERSION), chart_id))


# What a chart SVG may contain. The SVG goes into the page as markup, so check it rather than
# trust it: every model string inside must have arrived as escaped text.
_SVG_ELEMENTS = {"svg", "g", "path", "rect", "line", "text", "defs", "linearGradient", "stop", "clipPath", "title"}
_SVG_NS = "http://www.w3.org/2000/svg"
_XLINK_NS = "http://www.w3.org/1999/xlink"


def _checked(svg: str) -> str:
    _check_tree(ElementTree.fromstring(svg))
    return svg


def _check_tree(root: ElementTree.Element) -> None:
    for el in root.iter():
        tag = el.tag.rpartition("}")[2]
        if tag not in _SVG_ELEMENTS:
            raise ValueError(f"unexpected <{tag}> in chart SVG")
        for name, value in el.attrib.items():
            local = name.rpartition("}")[2].lower()
            if local.startswith("on") or (local == "href" and not value.startswith("#")):
                raise ValueError(f"unexpected attribute {name}={value!r} in chart SVG")


_ID = re.compile(r'\bid="([^"]+)"')


def _renumber_ids(svg: str, chart_id: str) -> str:
    """Give every id in ``svg`` a per-chart name and update its references."""
    mapping: dict[str, str] = {}
    for old in _ID.findall(svg):
        mapping.setdefault(old, f"{chart_id}-{len(mapping) + 1}")
    if not mapping:
        return svg
    names = "|".join(re.escape(k) for k in sorted(mapping, key=len, reverse=True))
    pattern = re.compile(rf'(\bid="|url\(#|href="#)({names})(?=[")])')
    return pattern.sub(lambda m: m.group(1) + mapping[m.group(2)], svg)


# Attributes for scripts and assistive technology on the live chart; the static picture has no use
# for them (the figure carries role="img" and a text alternative).
_INERT = {"class", "role", "pointer-events", "version"}
# Presentation attributes that children inherit: a value every child of a group repeats can sit on
# the group once instead.
_INHERITED = (
    "fill", "fill-opacity", "stroke", "stroke-width", "stroke-opacity", "stroke-dasharray", "stroke-linecap",
    "stroke-linejoin", "stroke-miterlimit", "font-family", "font-size", "font-weight", "font-style", "text-anchor",
)  # fmt: skip
_EMPTY_PATH_DATA = {"", "M0,0h0v0h0Z"}
_LONG_DECIMAL = re.compile(r"-?\d+\.\d{3,}")
_PATH_DECIMAL = re.compile(r"-?\d+\.\d{2,}")


def _compact_svg(svg: str) -> str:
    """vl-convert's SVG, checked (see ``_check_tree``) and made smaller without changing the picture.

    * ``class``, ``role``, ``aria-*``, ``pointer-events`` and ``version`` attributes go, and with them
      the empty background/foreground paths vega adds to every group (``display="none"`` or no area);
    * default values go: ``opacity="1"`` (not inherited), zero line coordinates, ``translate(0,0)``;
    * groups without attributes are unwrapped;
    * an inherited presentation attribute that every child of a group repeats (the stroke of 30 tick
      lines, the font of the axis labels) moves to the group;
    * coordinates inside ``transform`` are rounded to 1/100 px, inside path data to 1/10 px.

    The tests rasterize the SVG before and after and compare the pixels.
    """
    root = ElementTree.fromstring(svg)
    _check_tree(root)
    _strip(root)
    _hoist(root)  # before unwrapping: vega's groups hold one kind of mark each (ticks, labels ...)
    _unwrap_groups(root)
    return _serialize(root)


def _strip(el: ElementTree.Element) -> None:
    for child in list(el):
        local = child.tag.rpartition("}")[2]
        d = child.get("d")
        if child.get("display") == "none" or (local == "path" and d in _EMPTY_PATH_DATA and len(child) == 0):
            _remove(el, child)
            continue
        _strip(child)
    for name in list(el.attrib):
        value = el.attrib[name]
        if (
            name in _INERT
            or name.startswith("aria-")
            or (name == "opacity" and value == "1")
            or (el.tag.endswith("}line") and name in ("x1", "y1", "x2", "y2") and value == "0")
        ):
            del el.attrib[name]
        elif name == "d":
            el.attrib[name] = _PATH_DECIMAL.sub(lambda x: _short(float(x.group()), 1), value)
        elif name == "transform":
            if value == "translate(0,0)":
                del el.attrib[name]
            else:
                el.attrib[name] = _LONG_DECIMAL.sub(lambda x: _short(float(x.group())), value)


def _remove(parent: ElementTree.Element, child: ElementTree.Element) -> None:
    if child.tail and child.tail.strip():
        raise ValueError("unexpected text in chart SVG")
    parent.remove(child)


def _unwrap_groups(el: ElementTree.Element) -> None:
    children: list[ElementTree.Element] = []
    for child in el:
        _unwrap_groups(child)
        bare = child.tag.endswith("}g") and not child.attrib and not (child.text or "").strip()
        if bare and not (child.tail or "").strip():
            children.extend(child)
        else:
            children.append(child)
    el[:] = children


def _hoist(el: ElementTree.Element) -> None:
    for child in el:
        _hoist(child)
    kids = list(el)
    if not el.tag.endswith(("}g", "}svg")) or len(kids) < 2 or any(len(k) for k in kids):
        return
    for name in _INHERITED:
        values = {k.get(name) for k in kids}
        if len(values) == 1 and None not in values:
            el.set(name, values.pop())  # type: ignore[arg-type]
            for k in kids:
                del k.attrib[name]


def _serialize(root: ElementTree.Element) -> str:
    out: list[str] = []
    uses_xlink = any(n.startswith("{" + _XLINK_NS) for el in root.iter() for n in el.attrib)

    def attr_name(name: str) -> str:
        if name.startswith("{" + _XLINK_NS + "}"):
            return "xlink:" + name.rpartition("}")[2]
        return name

    def write(el: ElementTree.Element, top: bool) -> None:
        tag = el.tag.rpartition("}")[2]
        attrs = "".join(f' {attr_name(k)}="{html.escape(v, quote=True)}"' for k, v in el.attrib.items())
        if top:
            attrs = f' xmlns="{_SVG_NS}"' + (f' xmlns:xlink="{_XLINK_NS}"' if uses_xlink else "") + attrs
        if len(el) == 0 and not el.text:
            out.append(f"<{tag}{attrs}/>")
        else:
            out.append(f"<{tag}{attrs}>")
            if el.text:
                out.append(html.escape(el.text, quote=False))
            for child in el:
                write(child, False)
            out.append(f"</{tag}>")
        if el.tail and not top:
            out.append(html.escape(el.tail, quote=False))

    write(root, True)
    return "".join(out)


def _short(x: float, digits: int = 2) -> str:
    text = f"{x:.{digits}f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text
