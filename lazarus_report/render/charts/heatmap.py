"""The layers x positions heatmap: its Vega-Lite spec and its hand-drawn SVG (vl-convert measures text glyph
by glyph, which took 1-2 s for a heatmap's token labels); both use the same ten colour bins."""

from __future__ import annotations

import bisect
from typing import Any

import altair as alt

from lazarus_report.render.charts.background import PendingChart, _spec
from lazarus_report.render.charts.datasets import _round
from lazarus_report.render.charts.interaction import WithParams
from lazarus_report.render.charts.style import (
    _HEATMAP_THRESHOLDS,
    CELL_HEIGHT,
    CELL_WIDTH,
    HEATMAP_BINS,
    HEATMAP_COLORS,
    HEATMAP_DARK_TEXT_ABOVE,
    _esc,
    _shorten,
)
from lazarus_report.render.charts.svg_sanitize import _SVG_NS, _checked, _short
from lazarus_report.render.report_model import GridView, RunReport

CELL_PLACES = 3  # a cell's colour and tooltip need 0.1% steps (the exact values are in the result JSON)


def _heatmap(
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
    charts, datasets, shown = [], {}, []
    for k, (panel_title, run) in enumerate(panels):
        grid = run.grid
        assert grid is not None
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
            row["p"].append(_round(c.prob, CELL_PLACES))
            if answer_mode:
                row["a"].append(_round(c.answer_prob, CELL_PLACES))
        datasets[f"d{k}"] = list(by_layer.values())
        datasets[f"pos{k}"] = [
            {"i": j, "pos": label, **({"ans": grid.answers[j]} if answer_mode else {})}
            for j, label in enumerate(grid.position_labels)
        ]
        nexts = _next_labels(grid)
        if nexts:
            datasets[f"next{k}"] = [{"pos": label, "nx": nx} for label, nx in zip(grid.position_labels, nexts)]
        x = alt.X(
            "pos:O",
            title="Prompt position (predicting the next token)",
            sort=grid.position_labels,
            axis=alt.Axis(labelAngle=-45, labelLimit=90, labelFontSize=10),
        )
        y = alt.Y("l:O", title="Layer", sort="descending")
        if grid.unreliable_layers:  # (axis=None would hide the axis)
            y = alt.Y("l:O", title="Layer", sort="descending", axis=_unreliable_layer_axis(grid))

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
        layers = [rect, text]
        if nexts:
            # The token that comes next in the prompt, over each column (starred where the model predicts it).
            layers.append(
                alt.Chart(alt.NamedData(f"next{k}"))
                .mark_text(angle=315, align="left", baseline="middle", dx=2, dy=-6, fontSize=10, limit=90)
                .encode(x=x, y=alt.YValue(0), text=alt.Text("nx:N"), color=alt.ColorValue("#1a1a1a"))
            )
        panel = alt.layer(*layers).properties(
            width=CELL_WIDTH * len(grid.positions), height=CELL_HEIGHT * (tallest if by_depth else len(grid.layers))
        )
        if panel_title:
            offset = NEXT_LABEL_ROOM if nexts else 0
            panel = panel.properties(
                title=alt.TitleParams(panel_title, anchor="start", fontSize=12, limit=panel.width, offset=offset)
            )
        charts.append(panel)
        shown.append(
            f"the last {len(grid.positions)} of {grid.total_positions} prompt positions"
            if grid.truncated
            else f"all {grid.total_positions} prompt positions"
        )
    chart = charts[0] if len(charts) == 1 else alt.hconcat(*charts, spacing=24).resolve_scale(color="shared")
    if answer_mode:
        chart = WithParams(chart, [_heatmap_mode_param()])
    if len(set(shown)) == 1:
        where = shown[0]
    else:  # one clause per model: "M1: all 5 prompt positions; M2: all 6 prompt positions"
        where = "; ".join(f"{name}: {s}" for name, s in zip(names or [t for t, _ in panels], shown))
        where = f"the prompt positions ({where})"
    description = (
        f"Top-1 lens prediction at every captured layer (rows, last layer on top) for {where} (columns); "
        "colour is the top-1 probability, the text is the predicted token."
    )
    if answer_mode:
        description += (
            " A switch colours the cells by the probability of the model's final answer at that position "
            "instead (where the answer forms)."
        )
    if any(run.grid is not None and run.grid.next_tokens for _, run in panels):
        description += (
            " Above each column, the token that actually comes next in the prompt (★: the model's top-1 at "
            "its last layer is that token)."
        )
    if len(panels) > 1:
        description = "Each model's " + description[0].lower() + description[1:]
    if by_depth:
        description += " The panels have one height, so their rows line up by relative depth."
    spec = _spec(chart, description, datasets)
    svg = _checked(heatmap_svg([(panel_title, run.grid) for panel_title, run in panels], by_depth=by_depth))  # type: ignore[misc]
    return PendingChart(chart_id, title, description, spec, svg, fit=False)


NEXT_LABEL_ROOM = 50  # px above the cells for the rotated next-token labels


def _next_labels(grid: GridView) -> list[str]:
    """Each column's next prompt token (★ where the model predicts it); [] when the grid has none."""
    if not grid.next_tokens:
        return []
    return [f"{tok} ★" if hit else tok for tok, hit in zip(grid.next_tokens, grid.next_predicted)]


UNRELIABLE_MARK = "\u2248"  # ≈ after a layer label: the lens is unreliable at that layer


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


HEATMAP_CELL_CHARS = 8  # token characters that fit a cell at 9 px (longer ones end in "…")


HEATMAP_LABEL_CHARS = 14


_HEATMAP_LEFT = 52  # room for the layer labels and the axis title


_HEATMAP_GAP = 24


def heatmap_svg(panels: list[tuple[str, GridView]], *, by_depth: bool = False) -> str:
    """The heatmap as SVG, laid out like the Vega-Lite spec: per panel, rows are layers (last on top),
    columns positions, colour the top-1 probability (same bins), text the top-1 token (shortened to
    fit a cell), the next prompt token over each column; one colour legend on the right."""
    titled = any(title for title, _ in panels)
    nexts = any(grid.next_tokens for _, grid in panels)
    top = (26 if titled else 6) + (NEXT_LABEL_ROOM if nexts else 0)
    height = max(CELL_HEIGHT * len(grid.layers) for _, grid in panels)
    parts, x0 = [], 0
    for title, grid in panels:
        row_h = height / len(grid.layers) if by_depth else CELL_HEIGHT
        panel = _heatmap_panel(title, grid, height, row_h)
        parts.append(f'<g transform="translate({x0 + _HEATMAP_LEFT},{top})">{panel}</g>')
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


def _heatmap_panel(title: str, grid: GridView, height: int, row_h: float = CELL_HEIGHT) -> str:
    n_rows = len(grid.layers)
    width = CELL_WIDTH * len(grid.positions)
    row_of = {layer: n_rows - 1 - i for i, layer in enumerate(grid.layers)}  # last layer on top
    col_of = {pos: j for j, pos in enumerate(grid.positions)}
    cells: list[list[str]] = [[] for _ in HEATMAP_COLORS]
    dark: list[str] = []
    light: list[str] = []
    for c in grid.cells:
        x, y = CELL_WIDTH * col_of[c.position], _short(row_h * row_of[c.layer], 1)
        p = _round(c.prob)
        p = 0.0 if p is None else p
        cells[bisect.bisect_right(_HEATMAP_THRESHOLDS, p)].append(
            f"M{x},{y}h{CELL_WIDTH}v{_short(row_h, 1)}h-{CELL_WIDTH}z"
        )
        text = f'<text x="{x + CELL_WIDTH // 2}" y="{_short(row_h * row_of[c.layer] + row_h / 2 + 3, 1)}">{_esc(_shorten(c.token, HEATMAP_CELL_CHARS))}</text>'
        (dark if p > HEATMAP_DARK_TEXT_ABOVE else light).append(text)
    rows_h = round(row_h * n_rows)
    rects = "".join(f'<path fill="{color}" d="{"".join(d)}"/>' for color, d in zip(HEATMAP_COLORS, cells) if d)
    bad = set(grid.unreliable_layers)
    y_labels = "".join(
        f'<text x="-5" y="{_short(row_h * row_of[layer] + row_h / 2 + 4, 1)}">{layer}{" " + UNRELIABLE_MARK if layer in bad else ""}</text>'
        for layer in grid.layers
    )
    x_labels = "".join(
        f'<text transform="translate({CELL_WIDTH * j + CELL_WIDTH // 2 + 3},{rows_h + 7}) rotate(-45)">'
        f"{_esc(_shorten(label, HEATMAP_LABEL_CHARS))}</text>"
        for j, label in enumerate(grid.position_labels)
    )
    heading = ""
    if title:
        title_y = -8 - (NEXT_LABEL_ROOM if grid.next_tokens else 0)
        heading = f'<text y="{title_y}" font-size="12px" font-weight="bold">{_esc(_shorten(title, width // 7))}</text>'
    next_labels = "".join(
        f'<text transform="translate({CELL_WIDTH * j + CELL_WIDTH // 2 + 2},-6) rotate(-45)">'
        f"{_esc(_shorten(label, HEATMAP_LABEL_CHARS))}</text>"
        for j, label in enumerate(_next_labels(grid))
        if label
    )
    return (
        f'{heading}<g>{rects}</g><g fill="#1a1a1a">{next_labels}</g>'
        f'<g font-size="9px" text-anchor="middle" fill="#1a1a1a">{"".join(light)}</g>'
        f'<g font-size="9px" text-anchor="middle" fill="white">{"".join(dark)}</g>'
        f'<rect width="{width}" height="{rows_h}" fill="none" stroke="#cccccc"/>'
        f'<g text-anchor="end">{y_labels}{x_labels}</g>'
        '<g font-size="12px" font-weight="bold" text-anchor="middle">'
        f'<text transform="translate(-38,{rows_h // 2}) rotate(-90)">Layer</text>'
        f'<text x="{width // 2}" y="{height + 86}">Prompt position (predicting the next token)</text></g>'
    )
