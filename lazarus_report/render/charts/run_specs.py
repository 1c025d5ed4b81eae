"""One run's charts as Altair specs: token probability and rank across layers, entropy and KL to final."""

from __future__ import annotations

from typing import Any

import altair as alt

from lazarus_report.render.charts.background import ChartView, PendingChart, unvalidated
from lazarus_report.render.charts.datasets import dataset_chart, stored_rows
from lazarus_report.render.charts.heatmap import heatmap_spec
from lazarus_report.render.charts.interaction import (
    NARROWEST_PLOT,
    NOTES_NARROW,
    Composed,
    crosshair,
    cursor_row,
    cursor_tooltip,
    layered,
    notes_param,
    plotted_prob,
    prob_rank_cell,
    prob_y,
    stacked,
    with_bands,
)
from lazarus_report.render.charts.line_charts import (
    TrustBand,
    entropy_kl_chart,
    run_trust_bands,
    trajectory_chart,
    unique_labels,
)
from lazarus_report.render.charts.line_plot_svg import WIDE, note_places
from lazarus_report.render.charts.scales import rank_top, round_prob, round_value
from lazarus_report.render.charts.style import (
    LINE_HEIGHT,
    LINE_WIDTH,
    MAX_LAYERS_WITH_POINTS,
    PALETTE,
    UNRELIABLE_FILL,
)
from lazarus_report.render.report_model import RunReport


def run_charts(run: RunReport) -> list[ChartView]:
    """The charts shown for one run, in page order."""
    return [c.result() for c in start_run_charts(run)]


@unvalidated
def start_run_charts(run: RunReport) -> list[PendingChart]:
    charts = [trajectory_spec(run), _entropy_kl(run)]
    if run.grid is not None:
        charts.append(heatmap_spec([("", run)], chart_id=f"{run.key}-heatmap"))
    return charts


__all__ = ["UNRELIABLE_FILL", "run_charts", "start_run_charts", "unique_labels"]


def _layer_x(run: RunReport, *, labelled: bool = True) -> alt.X:
    scale = alt.Scale(domain=[run.captured_layers[0], run.captured_layers[-1]], nice=False)
    if labelled:
        return alt.X("layer:Q", title="Layer", scale=scale, axis=alt.Axis(tickMinStep=1, format="d"))
    return alt.X("layer:Q", title=None, scale=scale, axis=alt.Axis(tickMinStep=1, labels=False))


def trust_band_layers(bands: list[TrustBand], x: alt.X) -> list[Any]:
    """Grey bands over the layers where the lens is unreliable (``line_charts.trust_bands``; none when all are
    fine or unknown), over the named dataset ``unreliable`` (``trust_band_rows``). Every line chart's bands."""
    if not bands:
        return []
    band = (
        alt.Chart(alt.NamedData("unreliable"))
        .mark_rect(color=UNRELIABLE_FILL, opacity=0.18, clip=True)
        .encode(
            x=x,
            x2=alt.X2("to:Q"),
            tooltip=[alt.Tooltip("note:N", title="Lens")],
        )
    )
    return [band]


def trust_band_rows(bands: list[TrustBand], field: str, domain: tuple[float, float]) -> list[dict[str, Any]]:
    """The ``unreliable`` dataset: each band from ``field`` (the chart's x field) to ``to``, with its note, cut
    to the x axis's ``domain`` (as the static SVG cuts them: no band reaches under the axis labels)."""
    lo, hi = domain
    return [{field: max(b.x0, lo), "to": min(b.x1, hi), "note": b.note} for b in bands if b.x1 > lo and b.x0 < hi]


def _unreliable_bands(run: RunReport, x: alt.X) -> list[Any]:
    return trust_band_layers(run_trust_bands(run), x)


def _unreliable_data(run: RunReport) -> list[dict[str, Any]]:
    return trust_band_rows(run_trust_bands(run), "layer", (run.captured_layers[0], run.captured_layers[-1]))


def rank_y(field: str, ranks: list[int]) -> alt.Y:
    """Rank on a reversed log axis (1 at the top) from 1 to the next power of ten, ticks at powers of ten."""
    top = rank_top(ranks)
    ticks = [10**k for k in range(len(str(top)))]
    scale = alt.Scale(type="log", reverse=True, domain=[1, max(top, 10)])
    axis = alt.Axis(values=ticks if top > 1 else [1, 10], format=",")
    return alt.Y(field, title="Rank (log, 1 = top)", scale=scale, axis=axis)


def _palette(n: int) -> list[str] | None:
    return PALETTE[:n] if 0 < n <= len(PALETTE) else None


def trajectory_spec(run: RunReport, *, chart_id: str | None = None, compact: bool = False) -> PendingChart:
    """The tracked tokens' probability and rank across layers. ``compact``: the data are stored as columns
    (for pages with a chart per suite case). The static SVG is drawn by hand (``line_charts``)."""
    labels = unique_labels([s.label for s in run.series])
    rows, marks = _trajectory_rows(run, labels)
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
    datasets: dict[str, Any] = {"d": stored_rows(rows, compact), "marks": marks}
    if run.unreliable_layers:
        datasets["unreliable"] = _unreliable_data(run)
    _note_rows(run, marks)
    sides = _note_sides(run, marks, datasets)
    cursor_rows = with_bands(
        [
            cursor_row(layer, [prob_rank_cell(s.probs[i], s.ranks[i]) for s in run.series], layer=layer)
            for i, layer in enumerate(run.captured_layers)
        ],
        "layer",
    )
    datasets["cursor"] = stored_rows(cursor_rows, compact)
    cursor_tip = cursor_tooltip(alt.Tooltip("layer:Q", title="Layer"), labels)

    def panel(y: alt.Y, x: alt.X, *, notes: bool, prob: bool) -> Composed:
        line = dataset_chart("d", rows, compact)
        if prob:
            line = line.transform_calculate(**plotted_prob())
        layers: list[Any] = [
            *_unreliable_bands(run, x),
            line.mark_line(point=points).encode(x=x, y=y, color=color, tooltip=tooltip),
        ]
        if marks:
            layers.append(
                alt.Chart(alt.NamedData("marks")).mark_rule(strokeDash=[4, 3], strokeWidth=1.5).encode(x=x, color=color)
            )
        if notes:
            for side, align, dx in sides:
                # The row's pixel offset (``_note_rows``): the wide plan, or the narrow one once the page
                # script has laid the chart out narrower.
                layers.append(
                    alt.Chart(alt.NamedData(side))
                    .transform_calculate(ny=f"{NOTES_NARROW} ? datum.yn : datum.yw")
                    .mark_text(align=align, dx=dx, dy=-4, baseline="bottom", fontSize=WIDE.note_px)
                    .encode(x=x, y=alt.Y("ny:Q", scale=None, axis=None), text=alt.Text("note:N"), color=color)
                )
        layers += crosshair(
            x, cursor_tip, lambda: dataset_chart("cursor", cursor_rows, compact), panel="p" if prob else "r"
        )
        return layered(*layers, width=LINE_WIDTH, height=LINE_HEIGHT)

    # Both panels share the layer axis; it is labelled once, under the rank panel.
    prob = panel(prob_y(), _layer_x(run, labelled=False), notes=True, prob=True)
    rank = panel(
        rank_y("rank:Q", [r for series in run.series for r in series.ranks]),
        _layer_x(run),
        notes=False,
        prob=False,
    )
    chart = stacked(prob, rank, spacing=14, views=["cursor_p", "cursor_r"], prob_axis=True, shared=["color"])
    if marks:
        chart.params.append(notes_param())
    return trajectory_chart(run, chart_id=chart_id).with_spec(chart, datasets)


def _note_rows(run: RunReport, marks: list[dict[str, Any]]) -> None:
    """Each emergence note's row as a pixel offset, placed by the static SVG's own plan (``note_places``,
    at its 10 px notes): ``yw`` at the drawn width (as the static SVG), ``yn`` at the narrowest width the page
    script lays the chart out at (a plan free of overlaps there is free of them at every wider width)."""
    lo = run.captured_layers[0]
    hi = max(run.captured_layers[-1], lo + 1)
    for key, width in (("yw", WIDE.width), ("yn", round(WIDE.width * NARROWEST_PLOT))):
        places = note_places([((m["layer"] - lo) / (hi - lo) * width, m["note"]) for m in marks], width, WIDE.note_char)
        for mark, (_, _, row) in zip(marks, places):
            mark[key] = (WIDE.note_px + 2) * row


def _trajectory_rows(run: RunReport, labels: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The trajectory's rows (one per token and layer: probability and rank) and its emergence marks (one
    per token that becomes top-1, at the first layer where it does); ``labels``: the tokens' legend labels."""
    rows: list[dict[str, Any]] = []
    marks: list[dict[str, Any]] = []
    for label, s in zip(labels, run.series):
        for layer, p, r in zip(s.layers, s.probs, s.ranks):
            rows.append({"layer": layer, "token": label, "p": round_prob(p), "rank": r})
        if s.emergence_layer is not None:
            marks.append({"layer": s.emergence_layer, "token": label, "note": f"{label} top-1 at L{s.emergence_layer}"})
    return rows, marks


def _note_sides(run: RunReport, marks: list[dict[str, Any]], datasets: dict[str, Any]) -> list[tuple[str, str, int]]:
    """Where the emergence notes go: right of their rule in the left half of the layers, left of it in the
    right half, so they stay inside. Adds each side's marks to ``datasets`` (``left``, ``right``) and returns
    (dataset, align, dx) for each side that has any."""
    middle = (run.captured_layers[0] + run.captured_layers[-1]) / 2
    sides = []
    for side, align, dx in (("left", "left", 4), ("right", "right", -4)):
        chosen = [m for m in marks if (m["layer"] <= middle) == (side == "left")]
        if chosen:
            datasets[side] = chosen
            sides.append((side, align, dx))
    return sides


def _entropy_kl(run: RunReport) -> PendingChart:
    """Entropy and KL to final on separate panels (KL reaches 30 nats where entropy stays under 5)."""
    rows = [
        {"layer": layer, "h": round_value(h), "kl": round_value(kl)}
        for layer, h, kl in zip(run.captured_layers, run.entropy, run.kl_to_final)
    ]
    points = len(run.captured_layers) <= MAX_LAYERS_WITH_POINTS
    tooltip = [
        alt.Tooltip("layer:Q", title="Layer"),
        alt.Tooltip("h:Q", title="Entropy (nats)", format=".3f"),
        alt.Tooltip("kl:Q", title="KL to final (nats)", format=".3f"),
    ]
    cursor_rows = with_bands([{"c": row["layer"], **row} for row in rows], "layer")
    datasets: dict[str, Any] = {"d": rows, "cursor": cursor_rows}

    def panel(field: str, title: str, color: str, x: alt.X) -> Composed:
        line = (
            alt.Chart(alt.NamedData("d"))
            .mark_line(point=points, color=color)
            .encode(x=x, y=alt.Y(f"{field}:Q", title=title), tooltip=tooltip)
        )
        layers = [
            *_unreliable_bands(run, x),
            line,
            *crosshair(x, tooltip, lambda: alt.Chart(alt.NamedData("cursor")), panel=field),
        ]
        return layered(*layers, width=LINE_WIDTH, height=150)

    chart = stacked(
        panel("h", "Entropy (nats)", PALETTE[0], _layer_x(run, labelled=False)),
        panel("kl", "KL to final (nats)", PALETTE[1], _layer_x(run)),
        spacing=14,
        views=["cursor_h", "cursor_kl"],
    )
    if run.unreliable_layers:
        datasets["unreliable"] = _unreliable_data(run)
    return entropy_kl_chart(run).with_spec(chart, datasets)
