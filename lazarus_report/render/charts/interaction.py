"""What the line charts share for reading values: the probability axis (log by default, linear one click
away) and the nearest-layer crosshair (a rule and a tooltip with every series at the layer under the pointer).

The probability axis is one Vega-Lite parameter (``pscale``, bound to a radio input under the chart) that a
calculate transform reads: in log mode the plotted value is log10(p) (floored at ``PROB_FLOOR``), drawn on a
linear scale whose tick labels turn back into percentages. Vega-Lite cannot switch a scale's type at run time,
and this keeps one chart (the static SVG is its default, log view).

The crosshair is a ``nearest`` point selection on one row per layer (the ``cursor`` dataset, built in Python:
per series its probability and rank as text, printed as the tables print them), so the tooltip lists every series at once. The page
script listens to the selection (signal ``cursor_tuple``) to highlight the same layer in the layer table.
"""

from __future__ import annotations

import math
from typing import Any

import altair as alt

from lazarus_report.render.formatting import fmt_prob, fmt_rank

PROB_FLOOR = 1e-6  # log view: smaller probabilities are drawn at this floor (their rank panel says the rest)

PROB_SCALE = "pscale"

CURSOR = "cursor"

CURSOR_RULE = "#555555"


def prob_scale_param() -> alt.Parameter:
    """The radio input that switches the probability panel between a log and a linear axis."""
    return alt.param(
        name=PROB_SCALE,
        value="log",
        bind=alt.binding_radio(options=["log", "linear"], labels=["log", "linear"], name="Probability axis: "),
    )


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


def cursor_param() -> alt.Parameter:
    """The nearest-layer selection (one per chart; each panel's rule uses it)."""
    return alt.selection_point(
        name=CURSOR, nearest=True, on="pointerover", clear="pointerout", fields=["c"], empty=False
    )


def crosshair(cursor: alt.Parameter, x: alt.X, tooltip: list[alt.Tooltip], *, select: bool) -> alt.Chart:
    """A vertical rule at the layer nearest the pointer, over the ``cursor`` dataset (one row per layer, its
    x position in the x field and its key in ``c``), with a tooltip of every series there. ``select``: this
    panel defines the selection (the first panel); the others only show it."""
    rule = (
        alt.Chart(alt.NamedData("cursor"))
        .mark_rule(color=CURSOR_RULE, strokeWidth=1)
        .encode(
            x=x,
            opacity=alt.when(cursor).then(alt.value(0.7)).otherwise(alt.value(0)),
            tooltip=tooltip,
        )
    )
    return rule.add_params(cursor) if select else rule


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
