"""Charts for one run of the report model: Altair specs plus their static SVG.

Plots only; every number comes from ``report_model`` (nothing is computed here). Each chart is
returned as a ``ChartView`` holding the Vega-Lite spec (for the interactive vegaEmbed chart) and
an SVG rendered offline by vl-convert (shown when scripts are off, fail, or are stripped).

vl-convert numbers SVG clip/gradient ids from a process-global counter, so the ids depend on how
many charts the process rendered before. ``_renumber_ids`` rewrites them per chart
(``<chart id>-1``, ``-2`` ...): output is byte-identical across processes and ids never collide.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

import altair as alt
import vl_convert as vlc

from lazarus_report.render.report_model import RunReport

LINE_WIDTH = 560
LINE_HEIGHT = 190
CELL_WIDTH = 46
CELL_HEIGHT = 16
MAX_LAYERS_WITH_POINTS = 16
PALETTE = ["#1f6fb4", "#d6562b", "#2a9d55", "#8e5bb5", "#b8860b", "#c2185b", "#00838f", "#5d6d7e"]


def _vl_version() -> str:
    """The Vega-Lite version Altair targets, as vl-convert names it ("6.4")."""
    major_minor = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    available = vlc.get_vegalite_versions()
    return major_minor if major_minor in available else available[-1]


VL_VERSION = _vl_version()


@dataclass(frozen=True)
class ChartView:
    """One chart of one run, ready for the page."""

    chart_id: str  # unique in the page, e.g. "run0-trajectory"
    title: str
    description: str  # what the chart shows, for captions and screen readers
    spec: dict[str, Any]  # Vega-Lite spec for vegaEmbed
    svg: str  # static rendering of the same spec
    fit: bool = True  # may shrink to the page width (the heatmap scrolls instead: its text must stay legible)


@functools.lru_cache(maxsize=1)
def vega_bundle() -> str:
    """Vega + Vega-Lite + vega-embed as one script (about 900 KB; cached per process)."""
    return vlc.javascript_bundle(vl_version=VL_VERSION)


def run_charts(run: RunReport) -> list[ChartView]:
    """The charts shown for one run, in page order."""
    charts = [_trajectory(run), _entropy_kl(run)]
    if run.grid is not None:
        charts.append(_heatmap(run))
    return charts


# --- the charts -------------------------------------------------------------------


def _config(chart: alt.TopLevelMixin) -> alt.TopLevelMixin:
    # aria=False: no per-mark ARIA labels (they tripled the SVG size); the page gives every chart
    # a caption and an aria-label, and the tables hold the same numbers as text.
    return chart.configure(background="white", font="sans-serif", aria=False).configure_axis(
        labelFontSize=11, titleFontSize=12, gridColor="#e6e6e6"
    ).configure_axisX(grid=False).configure_legend(labelFontSize=11, titleFontSize=12, labelLimit=220).configure_view(stroke="#cccccc")


def _layer_x(run: RunReport, *, labelled: bool = True) -> alt.X:
    scale = alt.Scale(domain=[run.captured_layers[0], run.captured_layers[-1]], nice=False)
    if labelled:
        return alt.X("layer:Q", title="Layer", scale=scale, axis=alt.Axis(tickMinStep=1, format="d"))
    return alt.X("layer:Q", title=None, scale=scale, axis=alt.Axis(tickMinStep=1, labels=False))


def _unique_labels(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return out


def _trajectory(run: RunReport) -> ChartView:
    labels = _unique_labels([s.label for s in run.series])
    rows, marks = [], []
    for label, s in zip(labels, run.series):
        for layer, p, r in zip(s.layers, s.probs, s.ranks):
            rows.append({"layer": layer, "token": label, "p": _round(p), "rank": r})
        if s.emergence_layer is not None:
            marks.append({"layer": s.emergence_layer, "token": label, "note": f"{label} top-1 at L{s.emergence_layer}"})
    color = alt.Color(
        "token:N",
        title="Token",
        scale=alt.Scale(domain=labels, range=PALETTE[: len(labels)] if 0 < len(labels) <= len(PALETTE) else None),
        legend=alt.Legend(orient="top", direction="horizontal"),
    )
    tooltip = [alt.Tooltip("token:N", title="Token"), alt.Tooltip("layer:Q", title="Layer"),
               alt.Tooltip("p:Q", title="Probability", format=".3~p"), alt.Tooltip("rank:Q", title="Rank", format=",")]
    # Point markers show which layers were captured; with many layers the line says it and the
    # markers would double the static SVG.
    points = len(run.captured_layers) <= MAX_LAYERS_WITH_POINTS
    data = alt.Data(values=rows)

    def panel(y: alt.Y, x: alt.X, *, notes: bool) -> alt.LayerChart:
        layers: list[Any] = [alt.Chart(data).mark_line(point=points).encode(x=x, y=y, color=color, tooltip=tooltip)]
        if marks:
            rule_data = alt.Data(values=marks)
            layers.append(alt.Chart(rule_data).mark_rule(strokeDash=[4, 3], strokeWidth=1.5).encode(x=x, color=color))
        if marks and notes:
            # Labels right of the line in the left half, left of it in the right half: they stay inside.
            middle = (run.captured_layers[0] + run.captured_layers[-1]) / 2
            for side, align, dx in (("left", "left", 4), ("right", "right", -4)):
                chosen = [m for m in marks if (m["layer"] <= middle) == (side == "left")]
                if chosen:
                    layers.append(
                        alt.Chart(alt.Data(values=chosen))
                        .mark_text(align=align, dx=dx, dy=-4, baseline="bottom", fontSize=10)
                        .encode(x=x, y=alt.value(0), text="note:N", color=color)
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
        alt.Y("rank:Q", title="Rank (log, 1 = top)", scale=alt.Scale(type="log", reverse=True, domainMin=1)),
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
    return _view(run, "trajectory", "Token probability and rank across layers", description, chart)


def _entropy_kl(run: RunReport) -> ChartView:
    rows = []
    for layer, h, kl in zip(run.captured_layers, run.entropy, run.kl_to_final):
        rows.append({"layer": layer, "metric": "Entropy", "nats": _round(h)})
        rows.append({"layer": layer, "metric": "KL to final", "nats": _round(kl)})
    chart = (
        alt.Chart(alt.Data(values=rows))
        .mark_line(point=len(run.captured_layers) <= MAX_LAYERS_WITH_POINTS)
        .encode(
            x=_layer_x(run),
            y=alt.Y("nats:Q", title="nats"),
            color=alt.Color("metric:N", title=None, scale=alt.Scale(domain=["Entropy", "KL to final"], range=PALETTE[:2]),
                            legend=alt.Legend(orient="top", direction="horizontal")),
            strokeDash=alt.StrokeDash("metric:N", title=None, scale=alt.Scale(domain=["Entropy", "KL to final"], range=[[1, 0], [5, 3]]),
                                      legend=alt.Legend(orient="top", direction="horizontal")),
            tooltip=[alt.Tooltip("metric:N", title="Measure"), alt.Tooltip("layer:Q", title="Layer"),
                     alt.Tooltip("nats:Q", title="nats", format=".3f")],
        )
        .properties(width=LINE_WIDTH, height=LINE_HEIGHT)
    )
    description = (
        "Entropy of each layer's lens distribution and its KL divergence from the final distribution "
        "(KL(final || layer)), in nats, at the last prompt position."
    )
    return _view(run, "entropy-kl", "Entropy and KL to final across layers", description, chart)


def _heatmap(run: RunReport) -> ChartView:
    grid = run.grid
    assert grid is not None
    label_of = dict(zip(grid.positions, grid.position_labels))
    rows = [
        {"layer": c.layer, "pos": label_of[c.position], "token": c.token, "p": _round(c.prob)}
        for c in grid.cells
    ]
    x = alt.X("pos:O", title="Prompt position (predicting the next token)", sort=grid.position_labels,
              axis=alt.Axis(labelAngle=-45, labelLimit=90, labelFontSize=10))
    y = alt.Y("layer:O", title="Layer", sort="descending")
    base = alt.Chart(alt.Data(values=rows)).encode(x=x, y=y)
    rect = base.mark_rect(aria=False).encode(
        color=alt.Color("p:Q", title="Top-1 probability", scale=alt.Scale(scheme="blues", domain=[0, 1]),
                        legend=alt.Legend(format="%", orient="right", gradientLength=160)),
        tooltip=[alt.Tooltip("layer:O", title="Layer"), alt.Tooltip("pos:O", title="Position"),
                 alt.Tooltip("token:N", title="Top-1"), alt.Tooltip("p:Q", title="Probability", format=".3~p")],
    )
    text = base.mark_text(aria=False, fontSize=9, limit=CELL_WIDTH - 4).encode(
        text="token:N",
        color=alt.condition("datum.p > 0.55", alt.value("white"), alt.value("#1a1a1a")),
    )
    chart = alt.layer(rect, text).properties(
        width=CELL_WIDTH * len(grid.positions), height=CELL_HEIGHT * len(grid.layers)
    )
    shown = (
        f"the last {len(grid.positions)} of {grid.total_positions} prompt positions"
        if grid.truncated
        else f"all {grid.total_positions} prompt positions"
    )
    description = (
        f"Top-1 lens prediction at every captured layer (rows, last layer on top) for {shown} (columns); "
        "colour is the top-1 probability, the text is the predicted token."
    )
    return _view(run, "heatmap", "Top-1 prediction by layer and position", description, chart, fit=False)


# --- helpers ------------------------------------------------------------------------


def _round(x: float | None) -> float | None:
    # Plot data needs no 17-digit floats; the exact values are in the embedded result JSON.
    return None if x is None else round(x, 4)


def _view(run: RunReport, name: str, title: str, description: str, chart: Any, *, fit: bool = True) -> ChartView:
    chart_id = f"{run.key}-{name}"
    spec = _config(chart.properties(description=description)).to_dict()
    svg = _checked(_compact_svg(_renumber_ids(vlc.vegalite_to_svg(spec, vl_version=VL_VERSION), chart_id)))
    return ChartView(chart_id=chart_id, title=title, description=description, spec=spec, svg=svg, fit=fit)


# What vl-convert's SVG may contain. The SVG goes into the page as markup, so check it rather than
# trust it: every model string inside must have arrived as escaped text.
_SVG_ELEMENTS = {"svg", "g", "path", "rect", "line", "text", "defs", "linearGradient", "stop", "clipPath", "title"}


def _checked(svg: str) -> str:
    root = ElementTree.fromstring(svg)
    for el in root.iter():
        tag = el.tag.rpartition("}")[2]
        if tag not in _SVG_ELEMENTS:
            raise ValueError(f"unexpected <{tag}> in chart SVG")
        for name, value in el.attrib.items():
            local = name.rpartition("}")[2].lower()
            if local.startswith("on") or (local == "href" and not value.startswith("#")):
                raise ValueError(f"unexpected attribute {name}={value!r} in chart SVG")
    return svg


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


_TRANSFORM = re.compile(r'transform="([^"]*)"')
_LONG_DECIMAL = re.compile(r"-?\d+\.\d{3,}")
_TEXT_TAG = re.compile(r"<text\b[^>]*>")


def _compact_svg(svg: str) -> str:
    """Size cuts for vl-convert's SVG that do not change the picture (the heatmap has hundreds of texts).

    * a font-family / font-size that (nearly) every <text> repeats moves to the root <svg>: vega
      writes both on every text element, so the ones that keep theirs are unaffected and the rest
      inherit the same value;
    * ``opacity="1"`` (the default, and not inherited) is dropped;
    * coordinates inside ``transform`` are rounded to 1/100 px.
    """
    for attr in ("font-family", "font-size"):
        pattern = re.compile(rf' {attr}="([^"]*)"')
        texts = _TEXT_TAG.findall(svg)
        values = [pattern.search(t) for t in texts]
        if not texts or any(v is None for v in values):
            continue
        counts: dict[str, int] = {}
        for v in values:
            counts[v.group(1)] = counts.get(v.group(1), 0) + 1  # type: ignore[union-attr]
        common = max(sorted(counts), key=lambda k: counts[k])
        svg = _TEXT_TAG.sub(lambda m: m.group(0).replace(f' {attr}="{common}"', "", 1), svg)
        svg = svg.replace("<svg ", f'<svg {attr}="{common}" ', 1)
    svg = svg.replace(' opacity="1"', "")
    return _TRANSFORM.sub(
        lambda m: 'transform="' + _LONG_DECIMAL.sub(lambda d: _short(float(d.group())), m.group(1)) + '"', svg
    )


def _short(x: float) -> str:
    text = f"{x:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text
