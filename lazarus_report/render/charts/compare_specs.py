"""A comparison's charts as Altair specs: both models' trajectories, entropy/KL, divergence between them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import altair as alt

from lazarus_report.render.charts.background import ChartView, PendingChart, finish, unvalidated
from lazarus_report.render.charts.datasets import dataset_chart, lookup_fields, stored_rows
from lazarus_report.render.charts.heatmap import heatmap_spec
from lazarus_report.render.charts.heatmap_svg import comparison_heatmap_args
from lazarus_report.render.charts.interaction import (
    ENTROPY_KL_EXPR,
    Composed,
    concat,
    crosshair,
    cursor_row,
    cursor_tooltip,
    layered,
    pivoted_cursor,
    plotted_prob,
    prob_rank_cell,
    prob_y,
    stacked,
    with_bands,
)
from lazarus_report.render.charts.line_charts import (
    compare_entropy_kl_chart,
    compare_trajectory_chart,
    comparison_trust_bands,
    divergence_chart,
    unique_labels,
)
from lazarus_report.render.charts.run_specs import rank_y, trust_band_layers, trust_band_rows
from lazarus_report.render.charts.scales import round_prob, round_value
from lazarus_report.render.charts.style import (
    DASHES,
    LINE_HEIGHT,
    LINE_WIDTH,
    MAX_LAYERS_WITH_POINTS,
    MODEL_OPACITY,
    MODEL_STROKES,
    PALETTE,
)
from lazarus_report.render.formatting import fmt_nats
from lazarus_report.render.report_model import ComparisonView, ReportModel, RunReport


def comparison_charts(report: ReportModel) -> dict[str, list[ChartView]]:
    """The charts of a comparison report: ``{"comparison": [...], "heatmaps": [...]}``."""
    return finish(start_comparison_charts(report))


@unvalidated
def start_comparison_charts(report: ReportModel) -> dict[str, list[PendingChart]]:
    comparison = report.comparison
    assert comparison is not None
    lines = [compare_trajectory_spec(report.runs, comparison), _compare_entropy_kl(report.runs, comparison)]
    if comparison.has_divergences:
        lines.append(_divergence(comparison, report.runs))
    plan = comparison_heatmap_args(comparison, report.runs)
    heatmaps = [heatmap_spec(plan[0], **plan[1])] if plan else []
    return {"comparison": lines, "heatmaps": heatmaps}


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


def _with_trust_bands(runs: list[RunReport], comparison: ComparisonView, datasets: dict[str, Any]) -> Any:
    """Adds both models' grey bands (``line_charts.comparison_trust_bands``) to ``datasets``; returns a function
    giving the band layers for a panel's x encoding."""
    bands = comparison_trust_bands(runs, comparison)
    if bands and comparison.alignment == "layer":
        xs = [x for values in comparison.x_values for x in values]
        datasets["unreliable"] = trust_band_rows(bands, "l", (min(xs), max(xs)))
    elif bands:
        datasets["unreliable"] = trust_band_rows(bands, "x", (0.0, 1.0))
    return lambda x: trust_band_layers(bands, x)


def _compare_row(comparison: ComparisonView, layer: int, x: float, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"l": layer}
    if comparison.alignment != "layer":
        row["x"] = round_value(x)
    row.update(values)
    return row


def _model_legend() -> alt.Legend:
    # One legend object for every channel on the model field: Vega-Lite merges them into one legend
    # (differing legend settings, such as legend=None on one channel, are a console warning).
    return alt.Legend(orient="top", direction="horizontal", title="Model")


def _model_encodings(comparison: ComparisonView) -> dict[str, Any]:
    """Colour = model; model 1 drawn wide and pale under model 2, so identical lines both show. The models
    are named by their short tags (M1, M2 or base, tuned); ``model_key`` gives the full names."""
    tags = comparison.tags
    return {
        # sort=tags: strokeWidth and opacity on an unsorted nominal field are a console warning.
        "color": alt.Color("m:N", sort=tags, scale=alt.Scale(domain=tags, range=PALETTE[:2]), legend=_model_legend()),
        "strokeWidth": alt.StrokeWidth(
            "m:N", sort=tags, scale=alt.Scale(domain=tags, range=MODEL_STROKES), legend=_model_legend()
        ),
        "opacity": alt.Opacity(
            "m:N", sort=tags, scale=alt.Scale(domain=tags, range=MODEL_OPACITY), legend=_model_legend()
        ),
    }


def model_key(comparison: ComparisonView) -> alt.TitleParams:
    """The chart's key to the short model tags: one line per model with its full name (never truncated)."""
    lines = [f"{tag}: {label}" for tag, label in zip(comparison.tags, comparison.labels)]
    return alt.TitleParams(lines, anchor="start", fontSize=11, fontWeight="normal", limit=0, color="#333333")


@dataclass
class _TrajectoryData:
    """The comparison trajectory's data: ``rows`` (one per model, token and layer) keyed by ``keys`` (one
    per line: model tag, series name, token, emergence layer), the distinct series names (one dash each), and
    each line's cursor cells and name."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    keys: list[dict[str, Any]] = field(default_factory=list)
    series_names: list[str] = field(default_factory=list)
    cursor_series: list[tuple[list[float], list[str]]] = field(default_factory=list)
    cursor_names: list[str] = field(default_factory=list)


def _trajectory_data(runs: list[RunReport], comparison: ComparisonView, tracked: bool) -> _TrajectoryData:
    """Both models' lines; ``tracked``: the series are the tracked tokens (named as typed), else each
    model's final top-1 tokens."""
    data = _TrajectoryData()
    for run, label, xs in zip(runs, comparison.tags, comparison.x_values):
        x_of = dict(zip(run.captured_layers, xs))
        names = [t.text.visible for t in comparison.tracked] if tracked else [s.label for s in run.series]
        for name, s in zip(unique_labels(names), run.series):
            if name not in data.series_names:
                data.series_names.append(name)
            k = len(data.keys)
            data.keys.append({"k": k, "m": label, "s": name, "tok": s.label, "e": s.emergence_layer})
            data.rows += [
                _compare_row(comparison, layer, x_of[layer], k=k, p=round_prob(p), r=r)
                for layer, p, r in zip(s.layers, s.probs, s.ranks)
            ]
            data.cursor_series.append(
                ([x_of[layer] for layer in s.layers], [prob_rank_cell(p, r) for p, r in zip(s.probs, s.ranks)])
            )
            data.cursor_names.append(f"{label} {s.label}")
    return data


def _series_dash(series_names: list[str], tracked: bool) -> alt.StrokeDash:
    """One dash pattern per series name (the same token dashed alike in both models)."""
    dash_range = DASHES[: len(series_names)] if len(series_names) <= len(DASHES) else None
    return alt.StrokeDash(
        "s:N",
        title="Tracked" if tracked else "Final top-1",
        scale=alt.Scale(domain=series_names, range=dash_range),
        legend=alt.Legend(orient="top", direction="horizontal", symbolStrokeWidth=2),
    )


def compare_trajectory_spec(
    runs: list[RunReport], comparison: ComparisonView, *, chart_id: str = "comparison-trajectory", compact: bool = False
) -> PendingChart:
    """Both models' tracked tokens across layers (``compact`` as for ``trajectory_spec``)."""
    tracked = bool(comparison.tracked) and all(run.series_are_tracked for run in runs)
    lines = _trajectory_data(runs, comparison, tracked)
    rows = lines.rows
    enc = _model_encodings(comparison)
    dash = _series_dash(lines.series_names, tracked)
    tooltip = [
        alt.Tooltip("m:N", title="Model"),
        alt.Tooltip("tok:N", title="Token"),
        alt.Tooltip("l:Q", title="Layer"),
        alt.Tooltip("p:Q", title="Probability", format=".3~p"),
        alt.Tooltip("r:Q", title="Rank", format=","),
    ]
    shape = alt.Shape(
        "m:N",
        sort=comparison.tags,
        legend=_model_legend(),
        scale=alt.Scale(domain=comparison.tags, range=["circle", "diamond"]),
    )
    cursor_rows, cursor_first = _cursor_rows(comparison, lines.cursor_series)
    cursor_tip = cursor_tooltip(cursor_first, lines.cursor_names)
    datasets: dict[str, Any] = {"d": stored_rows(rows, compact), "keys": lines.keys}
    bands = _with_trust_bands(runs, comparison, datasets)
    if comparison.alignment == "layer":  # the rows pivoted in the browser (fewer bytes)

        def cursor_source() -> alt.Chart:
            return pivoted_cursor(dataset_chart("d", rows, compact))

    else:
        datasets["cursor"] = cursor_rows

        def cursor_source() -> alt.Chart:
            return alt.Chart(alt.NamedData("cursor"))

    def panel(y: alt.Y, x: alt.X, *, prob: bool) -> Composed:
        def data(fields: list[str]) -> alt.Chart:
            chart = lookup_fields(dataset_chart("d", rows, compact), "keys", fields)
            return chart.transform_calculate(**plotted_prob()) if prob else chart

        line = data(["m", "s", "tok"]).mark_line().encode(x=x, y=y, strokeDash=dash, tooltip=tooltip, **enc)
        emergence = (
            data(["m", "s", "tok", "e"])
            # Shown at the layer where the token first becomes top-1. Not a filter: a token that never
            # becomes top-1 would leave the layer empty, and an empty layer's extent is a console warning.
            .mark_point(filled=True, size=70)
            .encode(
                x=x,
                y=y,
                color=enc["color"],
                shape=shape,
                opacity=alt.when("datum.l === datum.e").then(alt.value(1)).otherwise(alt.value(0)),
            )
        )
        return layered(
            *bands(x),
            line,
            emergence,
            *crosshair(x, cursor_tip, cursor_source, panel="p" if prob else "r"),
            width=LINE_WIDTH,
            height=LINE_HEIGHT,
        )

    prob = panel(prob_y(), _compare_x(comparison, labelled=False), prob=True)
    rank = panel(rank_y("r:Q", [row["r"] for row in rows]), _compare_x(comparison), prob=False)
    chart = stacked(
        prob,
        rank,
        spacing=14,
        title=model_key(comparison),
        views=["cursor_p", "cursor_r"],
        prob_axis=True,
        shared=["color", "strokeDash"],
    )
    return compare_trajectory_chart(runs, comparison, chart_id=chart_id).with_spec(chart, datasets)


def _cursor_rows(
    comparison: ComparisonView, series: list[tuple[list[float], list[str]]]
) -> tuple[list[dict[str, Any]], alt.Tooltip]:
    """The crosshair's rows: one per x position of either model, each series (x positions, tooltip texts) at
    its point nearest that x (the same layer when the models are aligned by layer). Also the tooltip's first
    row (layer or depth)."""
    positions = sorted({x for xs, _ in series for x in xs})
    rows = []
    for x in positions:
        cells = [texts[min(range(len(xs)), key=lambda j: abs(xs[j] - x))] if xs else "n/a" for xs, texts in series]
        if comparison.alignment == "layer":
            rows.append(cursor_row(round(x), cells, l=round(x)))
        else:
            rows.append(cursor_row(round_value(x), cells, x=round_value(x)))
    rows = with_bands(rows, "l" if comparison.alignment == "layer" else "x")
    if comparison.alignment == "layer":
        return rows, alt.Tooltip("l:Q", title="Layer")
    return rows, alt.Tooltip("x:Q", title="Relative depth", format=".2f")


def _compare_entropy_kl(runs: list[RunReport], comparison: ComparisonView) -> PendingChart:
    rows = []
    series: list[tuple[list[float], list[str]]] = []
    for k, (run, xs) in enumerate(zip(runs, comparison.x_values)):
        for layer, x, h, kl in zip(run.captured_layers, xs, run.entropy, run.kl_to_final):
            rows.append(_compare_row(comparison, layer, x, k=k, h=round_value(h), kl=round_value(kl)))
        texts = [
            f"entropy {fmt_nats(h)}, KL to final {fmt_nats(kl)} nats" for h, kl in zip(run.entropy, run.kl_to_final)
        ]
        series.append((list(xs), texts))
    keys = [{"k": k, "m": tag} for k, tag in enumerate(comparison.tags)]
    enc = _model_encodings(comparison)
    tooltip = [
        alt.Tooltip("m:N", title="Model"),
        alt.Tooltip("l:Q", title="Layer"),
        alt.Tooltip("h:Q", title="Entropy (nats)", format=".3f"),
        alt.Tooltip("kl:Q", title="KL to final (nats)", format=".3f"),
    ]
    # The crosshair's rows: both models' entropy and KL at each x (the nearest layer of each model).
    cursor_rows, first = _cursor_rows(comparison, series)
    cursor_tip = cursor_tooltip(first, list(comparison.tags))
    datasets: dict[str, Any] = {"d": rows, "keys": keys}
    bands = _with_trust_bands(runs, comparison, datasets)
    if comparison.alignment == "layer":  # the rows pivoted in the browser (fewer bytes)

        def cursor_source() -> alt.Chart:
            return pivoted_cursor(alt.Chart(alt.NamedData("d")), cell=ENTROPY_KL_EXPR)

    else:
        datasets["cursor"] = cursor_rows

        def cursor_source() -> alt.Chart:
            return alt.Chart(alt.NamedData("cursor"))

    def panel(field: str, title: str, x: alt.X) -> Composed:
        line = (
            lookup_fields(alt.Chart(alt.NamedData("d")), "keys", ["m"])
            .mark_line()
            .encode(x=x, y=alt.Y(f"{field}:Q", title=title), tooltip=tooltip, **enc)
        )
        return layered(
            *bands(x), line, *crosshair(x, cursor_tip, cursor_source, panel=field), width=LINE_WIDTH, height=150
        )

    chart = stacked(
        panel("h", "Entropy (nats)", _compare_x(comparison, labelled=False)),
        panel("kl", "KL to final (nats)", _compare_x(comparison)),
        spacing=14,
        title=model_key(comparison),
        views=["cursor_h", "cursor_kl"],
        shared=["color"],
    )
    return compare_entropy_kl_chart(runs, comparison).with_spec(chart, datasets)


def _divergence(comparison: ComparisonView, runs: list[RunReport]) -> PendingChart:
    m1, m2 = comparison.tags
    kls = [f"KL({m1} || {m2})", f"KL({m2} || {m1})"]
    rows = [
        _compare_row(
            comparison,
            r.layer2,
            r.x,
            pair=r.label,
            js=round_value(r.js),
            **{kls[0]: round_value(r.kl_12), kls[1]: round_value(r.kl_21)},
        )
        for r in comparison.rows
    ]
    x_unlabelled, x = _compare_x(comparison, labelled=False), _compare_x(comparison)
    points = len(comparison.rows) <= MAX_LAYERS_WITH_POINTS
    pair = alt.Tooltip("pair:N", title="Layer")
    datasets: dict[str, Any] = {"d": rows}
    bands = _with_trust_bands(runs, comparison, datasets)
    # JS (bounded by ln 2) on its own panel: on the KL scale it would be a flat line near zero.
    js: list[Any] = [
        *bands(x_unlabelled),
        alt.Chart(alt.NamedData("d"))
        .mark_line(point=points, color="#1a1a1a", strokeWidth=2)
        .encode(
            x=x_unlabelled,
            y=alt.Y("js:Q", title="JS (nats)", scale=alt.Scale(domain=[0, 0.7], nice=False)),
            tooltip=[pair, alt.Tooltip("js:Q", title="Jensen-Shannon (nats)", format=".4f")],
        ),
    ]
    kl: list[Any] = [
        *bands(x),
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
        ),
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
    chart = concat(
        "vconcat",
        layered(*js, width=LINE_WIDTH, height=110),  # 110: see the label's y above
        layered(*kl, width=LINE_WIDTH, height=LINE_HEIGHT - 30),
        spacing=14,
    )
    return divergence_chart(comparison, runs).with_spec(chart, datasets)
