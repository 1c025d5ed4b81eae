"""What the line charts share for reading values: the probability axis (log by default, linear one click
away) and the nearest-layer crosshair (a rule and a tooltip with every series at the layer under the pointer).

The probability axis is one Vega-Lite parameter (``pscale``, bound to a radio input under the chart) that a
calculate transform reads: in log mode the plotted value is log10(p) (floored at ``PROB_FLOOR``), drawn on a
linear scale whose tick labels turn back into percentages. Vega-Lite cannot switch a scale's type at run time,
and this keeps one chart (the static SVG is its default, log view).

The crosshair is a point selection on one row per layer (the ``cursor`` dataset, built in Python: per series
its probability and rank as text, printed as the tables print them), so the tooltip lists every series at once. The page
script listens to the selection (signal ``cursor_tuple``) to highlight the same layer in the layer table.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import altair as alt

from lazarus_report.render.charts.style import PROB_FLOOR
from lazarus_report.render.formatting import fmt_prob, fmt_rank

PROB_SCALE = "pscale"

CURSOR = "cursor"

CURSOR_RULE = "#555555"

# Set (true) by the page script when it lays a chart out narrower than drawn (report.js ``shrink``): the
# emergence notes then take the rows planned for the narrowest layout (see ``run_specs._note_rows``).
NOTES_NARROW = "notes_narrow"

# The narrowest a line chart's plot gets in the page script's layouts (report.js ``fitted``: floor 0.4).
NARROWEST_PLOT = 0.4


def notes_param() -> dict[str, Any]:
    """The parameter that picks the emergence notes' rows: the wide plan (false) or the narrow one."""
    return {"name": NOTES_NARROW, "value": False}


def prob_scale_param() -> dict[str, Any]:
    """The radio input that switches the probability panel between a log and a linear axis."""
    return {
        "name": PROB_SCALE,
        "value": "log",
        "bind": {
            "input": "radio",
            "options": ["log", "linear"],
            "labels": ["log", "linear"],
            "name": "Probability axis: ",
        },
    }


def plotted_prob(field: str = "p", out: str = "py") -> dict[str, str]:
    """The calculate transform (``{out: expression}``) giving the plotted probability: log10 or linear."""
    floor = math.log10(PROB_FLOOR)
    expr = (
        f"datum.{field} == null ? null : {PROB_SCALE} == 'log' ? "
        f"max(log(max(datum.{field}, {PROB_FLOOR})) / LN10, {floor}) : datum.{field}"
    )
    return {out: expr}


def prob_y(out: str = "py") -> alt.Y:
    """The probability axis: zero-based either way (log: up to 100% at log10 1 = 0; linear: from 0%, not
    stretched to 100%, so a tracked token at 0.4% still shows its shape). Log ticks are labelled at powers of ten."""
    label = (
        f"{PROB_SCALE} == 'log' ? (datum.value == round(datum.value) ? format(pow(10, datum.value), '~%') : '') "
        ": format(datum.value, '.2~p')"
    )
    return alt.Y(f"{out}:Q", title="Probability", scale=alt.Scale(zero=True, nice=True), axis=alt.Axis(labelExpr=label))


def cursor_param(views: list[str]) -> dict[str, Any]:
    """The layer under the pointer: a point selection on the cursor rows' key ``c``, set by the pointer bands
    of ``views`` (every panel's, so one cursor moves in all of them)."""
    select = {"type": "point", "on": "pointerover", "clear": "pointerout", "fields": ["c"]}
    return {"name": CURSOR, "select": select, "views": views}


def crosshair(x: alt.X, tooltip: list[alt.Tooltip], source: Callable[[], alt.Chart], *, panel: str) -> list[alt.Chart]:
    """The crosshair layers over ``source()`` (one row per layer: key ``c``, the x field, the band ``b0``-``b1``
    around it, a text per series): invisible full-height bands that catch the pointer and carry the tooltip of
    every series there (Vega-Lite's ``nearest`` voronoi reads nominal tooltip fields from the wrong datum),
    and a rule at the selected layer. ``panel`` names the bands' view (``cursor_<panel>``, for ``stacked``;
    a fixed name, not Altair's hash of the spec, keeps the suite's per-case spec patches small)."""
    band_x = x.copy()
    band_x.shorthand = "b0:Q"
    bands = (
        source().mark_rect(color="#000000", opacity=0, clip=True).encode(x=band_x, x2=alt.X2("b1:Q"), tooltip=tooltip)
    )
    bands["name"] = f"cursor_{panel}"  # set on the fresh chart: .properties() copies it and validates the name
    shown = {"param": CURSOR, "value": 0.7, "empty": False}
    rule = (
        source().mark_rule(color=CURSOR_RULE, strokeWidth=1).encode(x=x, opacity=alt.OpacityValue(0, condition=shown))
    )
    return [rule, bands]


# A probability and rank as the tables print them (``prob_rank_cell``), in Vega's expression language.
_CELL_EXPR = (
    "(datum.p == null ? 'n/a' : datum.p == 0 ? '0%' : datum.p < 1e-4 ? '<0.01%' : format(datum.p, '.3~p'))"
    " + ' (rank ' + format(datum.r, ',') + ')'"
)


# Entropy and KL to final as ``compare_specs`` prints them in Python, for the browser-built rows.
ENTROPY_KL_EXPR = "'entropy ' + format(datum.h, '.2f') + ', KL to final ' + format(datum.kl, '.2f') + ' nats'"


def pivoted_cursor(chart: alt.Chart, layer: str = "l", cell: str = _CELL_EXPR) -> alt.Chart:
    """The cursor rows computed in the browser from one row per (series ``k``, layer) (by default with ``p``
    and ``r``; ``cell`` is the text expression): the same rows as built in Python, without their bytes."""
    return (
        chart.transform_calculate(t=cell, sk="'s' + datum.k")
        .transform_pivot("sk", value="t", groupby=[layer], op="max")  # one text each (max of one)
        .transform_calculate(c=f"datum.{layer}", b0=f"datum.{layer} - 0.5", b1=f"datum.{layer} + 0.5")
    )


class Composed:
    """A layered or concatenated chart as Altair would write it, without Altair's copies: ``alt.layer``,
    ``alt.vconcat`` / ``hconcat``, ``.properties()`` and ``.resolve_scale()`` copy every sub-chart (some
    several times, deep) and validate each property, most of the time a page's specs took. This only
    writes each part's ``to_dict`` into the container's dict, in Altair's key order (the container's list,
    then its properties alphabetically; at the top level the theme's ``config`` first and ``$schema``
    last), and names a concatenated layer's named views by position as Altair does (``cursor_p_0``)."""

    def __init__(self, key: str, parts: list[Any], **props: Any) -> None:
        self.key = key
        self.parts = parts
        self.props = props
        # As Altair: when every part has the very same data object, it moves up to the container.
        first = _data(parts[0]) if parts else None
        self.data = first if first is not None and all(_data(p) is first for p in parts) else None

    def to_dict(self, validate: bool = False, context: dict[str, Any] | None = None) -> dict[str, Any]:
        top_level = context is None or context.get("top_level", True)
        concat = self.key != "layer" and len(self.parts) > 1
        parts = []
        for i, part in enumerate(self.parts):
            spec = part.to_dict(validate=False, context={"top_level": False})
            if self.data is not None:
                spec.pop("data", None)
            if concat:
                for unit in spec.get("layer", []):
                    if isinstance(unit.get("name"), str):
                        unit["name"] = f"{_view_base(unit['name'])}_{i}"
            parts.append(spec)
        body = {self.key: parts}
        props = dict(self.props)
        if self.data is not None:
            props["data"] = self.data
        for name in sorted(props):
            value = props[name]
            body[name] = value.to_dict(validate=False) if hasattr(value, "to_dict") else value
        if not top_level:
            return body
        return {"config": {}, **body, "$schema": alt.SCHEMA_URL}  # config: set by the caller (charts.background)


def _data(part: Any) -> Any:
    """A part's own data object (None when it has none)."""
    data = part.data if isinstance(part, Composed) else getattr(part, "data", None)
    return None if data is None or data is alt.Undefined else data


def _view_base(name: str) -> str:
    head, _, tail = name.rpartition("_")
    return head if head and tail.isdigit() else name


def layered(*charts: Any, **props: Any) -> Composed:
    """``alt.layer(*charts).properties(**props)``, as a ``Composed``."""
    return Composed("layer", list(charts), **props)


def concat(key: str, *charts: Any, shared: list[str] | None = None, **props: Any) -> Composed:
    """``alt.vconcat`` or ``alt.hconcat`` (``key``) of ``charts`` with ``props``; ``shared``: the scales
    resolved as shared (``.resolve_scale``)."""
    if shared:
        props["resolve"] = {"scale": dict.fromkeys(sorted(shared), "shared")}
    return Composed(key, list(charts), **props)


class WithParams:
    """A chart whose top-level parameters are added to its spec after ``to_dict``. Altair's ``add_params``
    on layered and concatenated charts deep-copies every sub-chart to merge parameters (about 0.5 s per
    chart here); the specs need the parameters only at the top."""

    def __init__(self, chart: Any, params: list[dict[str, Any]]) -> None:
        self.chart = chart
        self.params = params

    def to_dict(self, validate: bool = False) -> dict[str, Any]:
        spec = self.chart.to_dict(validate=validate)
        params = [dict(p) for p in self.params]
        for p in params:
            if "views" in p:  # Altair suffixes a concatenated view's name with its index: match by prefix
                p["views"] = [name for name in _view_names(spec) if any(name.startswith(v) for v in p["views"])]
        spec["params"] = [*spec.get("params", []), *params]
        return spec


def _view_names(spec: Any) -> list[str]:
    """Every named unit view in ``spec``, in document order."""
    if isinstance(spec, list):
        return [name for item in spec for name in _view_names(item)]
    if not isinstance(spec, dict):
        return []
    own = [spec["name"]] if "mark" in spec and isinstance(spec.get("name"), str) else []
    return own + [name for key, value in spec.items() if key not in ("datasets", "data") for name in _view_names(value)]


def stacked(
    *panels: Any, views: list[str], prob_axis: bool = False, shared: list[str] | None = None, **kwargs: Any
) -> WithParams:
    """Panels one over the other, sharing one layer cursor (the bands of ``views``); ``prob_axis``: with the
    probability axis switch; ``shared``: scales the panels share (colour, line style)."""
    chart = concat("vconcat", *panels, shared=shared, **kwargs)
    return WithParams(chart, [cursor_param(views), *([prob_scale_param()] if prob_axis else [])])


def with_bands(rows: list[dict[str, Any]], field: str) -> list[dict[str, Any]]:
    """``rows`` (sorted by ``field``, the x position) with the band ``b0``-``b1`` each covers: halfway to
    its neighbours (at the ends, as far out as inside)."""
    xs = [row[field] for row in rows]
    out = []
    for i, row in enumerate(rows):
        left = (xs[i] - xs[i - 1]) / 2 if i > 0 else (xs[1] - xs[0]) / 2 if len(xs) > 1 else 0.5
        right = (xs[i + 1] - xs[i]) / 2 if i + 1 < len(xs) else left
        out.append({**row, "b0": round(xs[i] - left, 4), "b1": round(xs[i] + right, 4)})
    return out


def cursor_tooltip(first: alt.Tooltip, names: list[str]) -> list[alt.Tooltip]:
    """Tooltip rows: ``first`` (the layer), then one per series (``names`` in order; fields ``s0``, ``s1`` ...)."""
    return [first, *(alt.Tooltip(f"s{i}:N", title=name) for i, name in enumerate(names))]


def cursor_row(key: Any, cells: list[str], **x_fields: Any) -> dict[str, Any]:
    """One cursor row: key ``c``, its x field(s) as the chart's x encoding names them, and per series the
    text its tooltip row shows."""
    return {"c": key, **x_fields, **{f"s{i}": cell for i, cell in enumerate(cells)}}


def prob_rank_cell(p: float | None, rank: int | None) -> str:
    """A series at the cursor: probability (as the tables print it) and rank."""
    return f"{fmt_prob(p)} (rank {fmt_rank(rank)})"
