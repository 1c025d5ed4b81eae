"""The layers x positions heatmap drawn by hand as SVG (vl-convert measures text glyph by glyph, which took
1-2 s for a heatmap's token labels), laid out like the Vega-Lite spec (``heatmap``) with the same ten colour
bins, and the chart's description. No Altair here (``--static`` pages never import it)."""

from __future__ import annotations

import bisect
import dataclasses
from typing import Any

from lazarus_report.render.charts.background import PendingChart
from lazarus_report.render.charts.scales import round_value
from lazarus_report.render.charts.style import (
    CELL_HEIGHT,
    CELL_WIDTH,
    HEATMAP_BINS,
    HEATMAP_COLORS,
    HEATMAP_DARK_TEXT_ABOVE,
    HEATMAP_THRESHOLDS,
    escape_xml,
    shorten,
)
from lazarus_report.render.charts.svg_sanitize import SVG_NS, checked_svg, short_number
from lazarus_report.render.report_model import ComparisonView, GridView, RunReport


def comparison_heatmap_args(
    comparison: ComparisonView, runs: list[RunReport]
) -> tuple[list[tuple[str, RunReport]], dict[str, Any]] | None:
    """The comparison heatmap's panels (each model with a grid, titled "M1 · name") and the keywords of
    ``heatmap_chart`` / ``heatmap.heatmap_spec``; None when neither model has a grid."""
    panels = [(f"{tag} · {label}", run) for tag, label, run in zip(comparison.tags, comparison.labels, runs)]
    with_grid = [(title, run) for title, run in panels if run.grid is not None]
    if not with_grid:
        return None
    return with_grid, {
        "chart_id": "comparison-heatmap",
        "title": "Top-1 prediction by layer and position, both models",
        "names": [tag for (_, run), tag in zip(panels, comparison.tags) if run.grid is not None],
        "by_depth": comparison.alignment != "layer",
    }


def heatmap_chart(
    panels: list[tuple[str, RunReport]],
    *,
    chart_id: str,
    title: str = "Top-1 prediction by layer and position",
    names: list[str] | None = None,
    by_depth: bool = False,
) -> PendingChart:
    """The heatmap's static chart (no spec): its description and SVG (arguments as ``heatmap.heatmap_spec``)."""
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
    grids = [(panel_title, run.grid) for panel_title, run in panels]
    svg = checked_svg(heatmap_svg(grids, by_depth=by_depth))  # type: ignore[arg-type]

    def narrow() -> str:
        return checked_svg(heatmap_svg_narrow(grids, by_depth=by_depth))  # type: ignore[arg-type]

    return PendingChart(chart_id, title, description, None, svg, fit=False, narrow=narrow)


NEXT_LABEL_ROOM = 50  # px above the cells for the rotated next-token labels


def next_token_labels(grid: GridView) -> list[str]:
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
        f'<svg xmlns="{SVG_NS}" width="{total_w}" height="{total_h}" viewBox="0 0 {total_w} {total_h}" '
        'font-family="sans-serif" font-size="10px">'
        f'<rect width="{total_w}" height="{total_h}" fill="white"/>{"".join(parts)}'
        f'<g transform="translate({legend_x},{top})">'
        f'<text y="10" font-size="12px" font-weight="bold">Top-1 probability</text>{swatches}{labels}</g></svg>'
    )


def _heatmap_panel(
    title: str,
    grid: GridView,
    height: int,
    row_h: float = CELL_HEIGHT,
    *,
    cell_w: int = CELL_WIDTH,
    cell_chars: int = HEATMAP_CELL_CHARS,
    label_chars: int = HEATMAP_LABEL_CHARS,
    narrow: bool = False,
) -> str:
    """One panel at (0, 0) = its top left cell. ``narrow``: the layer axis titled over its labels (not beside
    them: a narrow margin), the heading from the SVG's left edge, and no x axis title (the caller draws one)."""
    n_rows = len(grid.layers)
    width = cell_w * len(grid.positions)
    row_of = {layer: n_rows - 1 - i for i, layer in enumerate(grid.layers)}  # last layer on top
    col_of = {pos: j for j, pos in enumerate(grid.positions)}
    cells: list[list[str]] = [[] for _ in HEATMAP_COLORS]
    dark: list[str] = []
    light: list[str] = []
    for c in grid.cells:
        x, y = cell_w * col_of[c.position], short_number(row_h * row_of[c.layer], 1)
        p = round_value(c.prob)
        p = 0.0 if p is None else p
        cells[bisect.bisect_right(HEATMAP_THRESHOLDS, p)].append(
            f"M{x},{y}h{cell_w}v{short_number(row_h, 1)}h-{cell_w}z"
        )
        text = f'<text x="{x + cell_w // 2}" y="{short_number(row_h * row_of[c.layer] + row_h / 2 + 3, 1)}">{escape_xml(shorten(c.token, cell_chars))}</text>'
        (dark if p > HEATMAP_DARK_TEXT_ABOVE else light).append(text)
    rows_h = round(row_h * n_rows)
    rects = "".join(f'<path fill="{color}" d="{"".join(d)}"/>' for color, d in zip(HEATMAP_COLORS, cells) if d)
    bad = set(grid.unreliable_layers)
    y_labels = "".join(
        f'<text x="-5" y="{short_number(row_h * row_of[layer] + row_h / 2 + 4, 1)}">{layer}{" " + UNRELIABLE_MARK if layer in bad else ""}</text>'
        for layer in grid.layers
    )
    x_labels = "".join(
        f'<text transform="translate({cell_w * j + cell_w // 2 + 3},{rows_h + 7}) rotate(-45)">'
        f"{escape_xml(shorten(label, label_chars))}</text>"
        for j, label in enumerate(grid.position_labels)
    )
    heading = ""
    if title:
        title_y = -8 - (NEXT_LABEL_ROOM if grid.next_tokens else 14 if narrow else 0)  # narrow: over "Layer"
        at = f' x="{6 - _NARROW_LEFT}"' if narrow else ""
        chars = (_NARROW_WIDTH - 12) // 7 if narrow else width // 7
        heading = (
            f'<text{at} y="{title_y}" font-size="12px" font-weight="bold">{escape_xml(shorten(title, chars))}</text>'
        )
    next_labels = "".join(
        f'<text transform="translate({cell_w * j + cell_w // 2 + 2},-6) rotate(-45)">'
        f"{escape_xml(shorten(label, label_chars))}</text>"
        for j, label in enumerate(next_token_labels(grid))
        if label
    )
    body = (
        f'{heading}<g>{rects}</g><g fill="#1a1a1a">{next_labels}</g>'
        f'<g font-size="9px" text-anchor="middle" fill="#1a1a1a">{"".join(light)}</g>'
        f'<g font-size="9px" text-anchor="middle" fill="white">{"".join(dark)}</g>'
        f'<rect width="{width}" height="{rows_h}" fill="none" stroke="#cccccc"/>'
        f'<g text-anchor="end">{y_labels}{x_labels}</g>'
    )
    if narrow:
        return body + '<text x="-5" y="-5" font-size="11px" font-weight="bold" text-anchor="end">Layer</text>'
    return (
        body + '<g font-size="12px" font-weight="bold" text-anchor="middle">'
        f'<text transform="translate(-38,{rows_h // 2}) rotate(-90)">Layer</text>'
        f'<text x="{width // 2}" y="{height + 86}">Prompt position (predicting the next token)</text></g>'
    )


NARROW_CELL_WIDTH = 35  # px per column in the narrow heatmap (8 columns fit a phone)


NARROW_CELL_CHARS = 6  # token characters that fit a narrow cell at 9 px


NARROW_LABEL_CHARS = 10  # the rotated position and next-token labels


_NARROW_LEFT = 36  # the layer labels (the axis title sits over them)


_NARROW_RIGHT = 24  # room for the last column's rotated next-token label


_NARROW_WIDTH = 340  # the narrow SVG at most: a 390 px phone's chart box


_NARROW_BELOW = 62  # under a block's cells: the rotated position labels


def heatmap_svg_narrow(panels: list[tuple[str, GridView]], *, by_depth: bool = False) -> str:
    """The heatmap for a phone (at most 340 px wide, text at its full size): each panel's columns in blocks of at
    most 8 positions, stacked (model 1's blocks over model 2's), the colour legend across the bottom."""
    per_block = (_NARROW_WIDTH - _NARROW_LEFT - _NARROW_RIGHT) // NARROW_CELL_WIDTH
    height = max(CELL_HEIGHT * len(grid.layers) for _, grid in panels)
    widest = max(min(len(grid.positions), per_block) for _, grid in panels)
    total_w = max(_NARROW_LEFT + NARROW_CELL_WIDTH * widest + _NARROW_RIGHT, 300)
    parts, y = [], 0
    for title, grid in panels:
        row_h = height / len(grid.layers) if by_depth else CELL_HEIGHT
        rows_h = round(row_h * len(grid.layers))
        blocks = -(-len(grid.positions) // per_block)
        size = -(-len(grid.positions) // blocks)  # blocks of equal size (the last may be smaller)
        for b in range(blocks):
            part = _columns(grid, b * size, min(len(grid.positions), (b + 1) * size))
            heading = title
            if blocks > 1:  # "M1 · smollm2… · positions 7–13", or "Positions 7–13" in a one-model page
                span = f"positions {part.positions[0]}\u2013{part.positions[-1]}"
                room = (_NARROW_WIDTH - 12) // 7 - len(span) - 3
                heading = f"{shorten(title, room)} \u00b7 {span}" if title else span.capitalize()
            top = (26 if heading else 4) + (NEXT_LABEL_ROOM if part.next_tokens else 16)
            panel = _heatmap_panel(
                heading,
                part,
                rows_h,
                row_h,
                cell_w=NARROW_CELL_WIDTH,
                cell_chars=NARROW_CELL_CHARS,
                label_chars=NARROW_LABEL_CHARS,
                narrow=True,
            )
            parts.append(f'<g transform="translate({_NARROW_LEFT},{short_number(y + top, 1)})">{panel}</g>')
            y += top + rows_h + _NARROW_BELOW
    swatch = 28
    swatches = "".join(
        f'<rect x="{swatch * k}" y="18" width="{swatch}" height="12" fill="{color}"/>'
        for k, color in enumerate(HEATMAP_COLORS)
    )
    labels = "".join(
        f'<text x="{swatch * (k + 1)}" y="42">{100 * (k + 1) // HEATMAP_BINS}%</text>' for k in range(HEATMAP_BINS - 1)
    )
    total_h = y + 72
    return (
        f'<svg xmlns="{SVG_NS}" width="{total_w}" height="{total_h}" viewBox="0 0 {total_w} {total_h}" '
        'font-family="sans-serif" font-size="10px">'
        f'<rect width="{total_w}" height="{total_h}" fill="white"/>{"".join(parts)}'
        f'<text x="6" y="{y + 4}" font-size="12px" font-weight="bold">Prompt position (predicting the next token)</text>'
        f'<g transform="translate(6,{y + 14})"><text y="10" font-size="12px" font-weight="bold">Top-1 probability</text>'
        f'{swatches}<g text-anchor="middle">{labels}</g></g></svg>'
    )


def _columns(grid: GridView, start: int, stop: int) -> GridView:
    """``grid`` with only its columns ``start`` to ``stop`` (exclusive)."""
    positions = grid.positions[start:stop]
    kept = set(positions)
    return dataclasses.replace(
        grid,
        positions=positions,
        position_labels=grid.position_labels[start:stop],
        cells=[c for c in grid.cells if c.position in kept],
        next_tokens=grid.next_tokens[start:stop],
        next_predicted=grid.next_predicted[start:stop],
        answers=grid.answers[start:stop],
    )
