"""Compact static line plots drawn by hand as SVG (a chart per suite case): the live trajectory chart's
layout in a few kB, instead of vl-convert's drawing."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from lazarus_report.render.charts.interaction import PROB_FLOOR
from lazarus_report.render.charts.scales import _rank_top, _tick_step
from lazarus_report.render.charts.style import LINE_HEIGHT, LINE_WIDTH, _esc, _shorten
from lazarus_report.render.charts.svg_sanitize import _SVG_NS, _short


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
    p_decades: int  # the probability axis, logarithmic: 10^-p_decades (bottom) to 100% (top), as the live default
    rank_top: int  # the rank axis: 1 (top) to a power of ten (bottom), logarithmic

    @classmethod
    def of(cls, plot: _Plot) -> _PlotScale:
        known = [max(p, PROB_FLOOR) for line in plot.lines for _, p, _ in line.points if p is not None]
        decades = max(1, math.ceil(-math.log10(min(known)) - 1e-9)) if known else 1
        return cls(*plot.x.domain, decades, max(10, _rank_top([plot.max_rank])))

    def x(self, x: float) -> float:
        return (x - self.x0) / (self.x1 - self.x0) * LINE_WIDTH

    def y(self, kind: str, p: float | None, rank: int) -> float | None:
        if kind == "rank":
            return math.log10(max(1, rank)) / math.log10(self.rank_top) * LINE_HEIGHT
        return None if p is None else -math.log10(max(p, PROB_FLOOR)) / self.p_decades * LINE_HEIGHT

    def y_ticks(self, kind: str) -> list[tuple[float, str]]:
        if kind == "rank":
            return [(self.y("rank", None, 10**k) or 0.0, f"{10**k:,}") for k in range(len(str(self.rank_top)))]
        return [
            (self.y("prob", 10.0**-k, 1) or 0.0, f"{round(100 * 10.0**-k, 6):g}%") for k in range(self.p_decades + 1)
        ]


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
