"""The layers x positions heatmap's Vega-Lite spec; its hand-drawn SVG and description are in ``heatmap_svg``
(no Altair there); both use the same ten colour bins."""

from __future__ import annotations

from typing import Any

import altair as alt

from lazarus_report.render.charts.background import PendingChart
from lazarus_report.render.charts.heatmap_svg import (
    NEXT_LABEL_ROOM,
    UNRELIABLE_MARK,
    heatmap_chart,
    heatmap_svg,
    next_token_labels,
)
from lazarus_report.render.charts.interaction import WithParams, concat, layered
from lazarus_report.render.charts.scales import round_value
from lazarus_report.render.charts.style import (
    CELL_HEIGHT,
    CELL_WIDTH,
    HEATMAP_COLORS,
    HEATMAP_DARK_TEXT_ABOVE,
)
from lazarus_report.render.report_model import GridView, RunReport

__all__ = ["NEXT_LABEL_ROOM", "UNRELIABLE_MARK", "heatmap_svg"]

CELL_PLACES = 3  # a cell's colour and tooltip need 0.1% steps (the exact values are in the result JSON)


def heatmap_spec(
    panels: list[tuple[str, RunReport]],
    *,
    chart_id: str,
    title: str = "Top-1 prediction by layer and position",
    names: list[str] | None = None,
    by_depth: bool = False,
) -> PendingChart:
    """Layers x positions heatmap: one panel per run (a comparison shows both models side by side,
    sharing one colour legend); ``panels`` pairs a panel title ("" for none) with its run; ``names``: each
    panel's short name for sentences (M1, M2); ``by_depth``: the panels share one height, so rows line up by
    relative depth (a comparison of models of different depths)."""
    tallest = max(len(run.grid.layers) for _, run in panels if run.grid is not None)
    # Colour by the model's final answer too (a switch under the chart) when every panel's result has it.
    answer_mode = all(run.grid is not None and run.grid.has_answer_probs for _, run in panels)
    charts, datasets = [], {}
    for k, (panel_title, run) in enumerate(panels):
        grid = run.grid
        assert grid is not None
        datasets.update(_panel_datasets(k, grid, answer_mode))
        height = CELL_HEIGHT * (tallest if by_depth else len(grid.layers))
        charts.append(_heatmap_panel(k, grid, panel_title, height, answer_mode))
    chart: Any = charts[0] if len(charts) == 1 else concat("hconcat", *charts, spacing=24, shared=["color"])
    if answer_mode:
        chart = WithParams(chart, [_heatmap_mode_param()])
    static = heatmap_chart(panels, chart_id=chart_id, title=title, names=names, by_depth=by_depth)
    return static.with_spec(chart, datasets)


def _panel_datasets(k: int, grid: GridView, answer_mode: bool) -> dict[str, list[dict[str, Any]]]:
    """Panel ``k``'s named datasets: its cells (``d{k}``), position labels (``pos{k}``) and, where the
    prompt goes on, the next-token labels over the columns (``next{k}``)."""
    index = {pos: j for j, pos in enumerate(grid.positions)}
    # The biggest dataset of a page, so stored compactly: one row per layer holding arrays
    # (flattened in the browser), the position labels once (joined by lookup).
    by_layer: dict[int, dict[str, Any]] = {}
    for c in grid.cells:
        row = by_layer.setdefault(
            c.layer, {"l": c.layer, "i": [], "t": [], "p": [], **({"a": []} if answer_mode else {})}
        )
        row["i"].append(index[c.position])
        row["t"].append(c.token)
        row["p"].append(round_value(c.prob, CELL_PLACES))
        if answer_mode:
            row["a"].append(round_value(c.answer_prob, CELL_PLACES))
    datasets = {
        f"d{k}": list(by_layer.values()),
        f"pos{k}": [
            {"i": j, "pos": label, **({"ans": grid.answers[j]} if answer_mode else {})}
            for j, label in enumerate(grid.position_labels)
        ],
    }
    nexts = next_token_labels(grid)
    if nexts:
        datasets[f"next{k}"] = [{"pos": label, "nx": nx} for label, nx in zip(grid.position_labels, nexts)]
    return datasets


def _heatmap_panel(k: int, grid: GridView, panel_title: str, height: int, answer_mode: bool) -> Any:
    """Panel ``k``: coloured cells, their top-1 tokens and the next-token labels over the columns."""
    x = alt.X(
        "pos:O",
        title="Prompt position (predicting the next token)",
        sort=grid.position_labels,
        axis=alt.Axis(labelAngle=-45, labelLimit=90, labelFontSize=10),
    )
    y = alt.Y("l:O", title="Layer", sort="descending")
    if grid.unreliable_layers:  # (axis=None would hide the axis)
        y = alt.Y("l:O", title="Layer", sort="descending", axis=_unreliable_layer_axis(grid))
    layers = _cell_layers(k, x, y, answer_mode)
    nexts = next_token_labels(grid)
    if nexts:
        # The token that comes next in the prompt, over each column (starred where the model predicts it).
        layers.append(
            alt.Chart(alt.NamedData(f"next{k}"))
            .mark_text(angle=315, align="left", baseline="middle", dx=2, dy=-6, fontSize=10, limit=90)
            .encode(x=x, y=alt.YValue(0), text=alt.Text("nx:N"), color=alt.ColorValue("#1a1a1a"))
        )
    width = CELL_WIDTH * len(grid.positions)
    props: dict[str, Any] = {"width": width, "height": height}
    if panel_title:
        offset = NEXT_LABEL_ROOM if nexts else 0
        props["title"] = alt.TitleParams(panel_title, anchor="start", fontSize=12, limit=width, offset=offset)
    return layered(*layers, **props)


def _cell_layers(k: int, x: alt.X, y: alt.Y, answer_mode: bool) -> list[Any]:
    """Panel ``k``'s coloured cells and, over them, each cell's top-1 token (both with the cell's tooltip)."""
    tooltip = [
        alt.Tooltip("l:O", title="Layer"),
        alt.Tooltip("pos:O", title="Position"),
        alt.Tooltip("t:N", title="Top-1"),
        alt.Tooltip("p:Q", title="Probability", format=".3~p"),
    ]
    if answer_mode:
        tooltip += [
            alt.Tooltip("ans:N", title="Final answer"),
            alt.Tooltip("a:Q", title="P(final answer)", format=".3~p"),
        ]
    rect = (
        _heatmap_base(k, x, y, answer_mode)
        .mark_rect()
        .encode(
            color=alt.Color(
                "v:Q",
                title="Top-1 probability" if not answer_mode else "Probability",
                scale=alt.Scale(type="quantize", domain=[0, 1], range=HEATMAP_COLORS),
                legend=alt.Legend(format="%", orient="right"),
            ),
            tooltip=tooltip,
        )
    )
    text = (
        _heatmap_base(k, x, y, answer_mode)
        .mark_text(fontSize=9, limit=CELL_WIDTH - 4)
        .encode(
            text=alt.Text("t:N"),
            tooltip=tooltip,  # the label covers most of its cell
            # Channel objects, not alt.value()/alt.condition() dicts: Altair matches a dict against
            # every channel schema (~50 ms each).
            color=alt.ColorValue(
                "#1a1a1a", condition={"test": f"datum.v > {HEATMAP_DARK_TEXT_ABOVE}", "value": "white"}
            ),
        )
    )
    return [rect, text]


def _unreliable_layer_axis(grid: GridView) -> alt.Axis:
    """The layer axis with unreliable layers' labels marked ``≈``."""
    bad = ",".join(str(layer) for layer in grid.unreliable_layers)
    return alt.Axis(labelExpr=f"indexof([{bad}], datum.value) >= 0 ? datum.value + ' {UNRELIABLE_MARK}' : datum.value")


HEATMAP_MODE = "hmode"


def _heatmap_mode_param() -> dict[str, Any]:
    """The switch between colouring each cell by its top-1's probability (default) and by the probability of
    the model's final answer at that position (where the answer forms, as nostalgebraist's plots show it)."""
    labels = ["top-1 probability", "P(final answer)"]
    bind = {"input": "radio", "options": ["top1", "answer"], "labels": labels, "name": "Colour: "}
    return {"name": HEATMAP_MODE, "value": "top1", "bind": bind}


def _heatmap_base(k: int, x: alt.X, y: alt.Y, answer_mode: bool = False) -> alt.Chart:
    """Panel ``k``'s cells: its per-layer rows flattened, joined with the position labels; ``v`` is the
    coloured value (the top-1's probability, or with ``answer_mode`` the switch's choice)."""
    fields = ["pos", "ans"] if answer_mode else ["pos"]
    positions = alt.LookupData(data=alt.NamedData(f"pos{k}"), key="i", fields=fields)
    chart = (
        alt.Chart(alt.NamedData(f"d{k}"))
        .transform_flatten(["i", "t", "p", "a"] if answer_mode else ["i", "t", "p"])
        .transform_lookup(lookup="i", from_=positions)
    )
    value = f"{HEATMAP_MODE} == 'answer' ? datum.a : datum.p" if answer_mode else "datum.p"
    return chart.transform_calculate(v=value).encode(x=x, y=y)
