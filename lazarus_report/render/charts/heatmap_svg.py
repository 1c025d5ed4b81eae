"""The layers x positions heatmap drawn by hand as SVG (vl-convert measures text glyph by glyph, which took
1-2 s for a heatmap's token labels), laid out like the Vega-Lite spec (``heatmap``) with the same ten colour
bins, and the chart's description. No Altair here (``--static`` pages never import it)."""

from __future__ import annotations

import bisect

from lazarus_report.render.charts.background import PendingChart
from lazarus_report.render.charts.scales import _round
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


def heatmap_chart(
    panels: list[tuple[str, RunReport]],
    *,
    chart_id: str,
    title: str = "Top-1 prediction by layer and position",
    names: list[str] | None = None,
    by_depth: bool = False,
) -> PendingChart:
    """The heatmap's static chart (no spec): its description and SVG (arguments as ``heatmap._heatmap``)."""
    answer_mode = all(run.grid is not None and run.grid.has_answer_probs for _, run in panels)
    shown = []
    for _, run in panels:
        grid = run.grid
        assert grid is not None
        shown.append(
            f"the last {len(grid.positions)} of {grid.total_positions} prompt positions"
            if grid.truncated
            else f"all {grid.total_positions} prompt positions"
        )
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
    svg = _checked(heatmap_svg([(panel_title, run.grid) for panel_title, run in panels], by_depth=by_depth))  # type: ignore[misc]
    return PendingChart(chart_id, title, description, None, svg, fit=False)


NEXT_LABEL_ROOM = 50  # px above the cells for the rotated next-token labels


def _next_labels(grid: GridView) -> list[str]:
    """Each column's next prompt token (★ where the model predicts it); [] when the grid has none."""
    if not grid.next_tokens:
        return []
    return [f"{tok} ★" if hit else tok for tok, hit in zip(grid.next_tokens, grid.next_predicted)]


UNRELIABLE_MARK = "\u2248"  # ≈ after a layer label: the lens is unreliable at that layer


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
