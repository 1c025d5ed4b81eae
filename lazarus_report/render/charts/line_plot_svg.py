"""Static line charts drawn by hand as SVG: the live charts' default view (legends, axis titles and ticks, the
unreliable-layer grey bands, emergence marks) in a few kB, without vl-convert (whose JavaScript engine costs
0.6 s to start and 40-100 ms per chart).

Two kinds of plot, one layout (legends on top, panels stacked over one shared x axis, labelled under the last):

* ``Plot`` (``plot_svg``): a trajectory, the probability panel (log axis, the live default) over the rank
  panel (reversed log axis, 1 at the top);
* ``LinearPlot`` (``linear_svg``): panels on linear axes from zero (entropy, KL to final, divergences).

No Altair here (``--static`` pages never import it)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

from lazarus_report.render.charts.scales import rank_top, tick_step
from lazarus_report.render.charts.style import LINE_HEIGHT, LINE_WIDTH, PROB_FLOOR, UNRELIABLE_FILL, escape_xml, shorten
from lazarus_report.render.charts.svg_sanitize import SVG_NS, short_number


@dataclass(frozen=True)
class PlotLine:
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
class PlotAxis:
    """An x axis: its domain and the ticks drawn on it, each with its label."""

    domain: tuple[float, float]
    ticks: list[float]
    labels: list[str]


Legends = list[tuple[str, list[tuple[str, PlotLine]]]]  # (title, [(label, line style)])


@dataclass(frozen=True)
class Plot:
    """A trajectory plot (``plot_svg``): probability and rank panels over one x axis, one ``PlotLine`` per token."""

    lines: list[PlotLine]
    x: PlotAxis
    x_title: str
    max_rank: int
    legends: Legends
    key: list[str] = dataclasses.field(default_factory=list)  # lines over the legends (the models' full names)
    bands: list[tuple[float, float]] = dataclasses.field(default_factory=list)  # grey x ranges (unreliable lens)
    points: bool = False  # a dot at every point (few layers), as the live chart


@dataclass(frozen=True)
class PlotSeries:
    """One line of a linear panel: (x, y or None) points, styled as in the live chart."""

    values: list[tuple[float, float | None]]
    color: str
    dash: list[float] = dataclasses.field(default_factory=lambda: [1, 0])
    width: float = 2.0
    opacity: float = 1.0


@dataclass(frozen=True)
class LinearPanel:
    """One panel of a ``LinearPlot``: a linear y axis (entropy, KL...) with its series and marks."""

    title: str  # the y axis title
    height: int
    series: list[PlotSeries]
    domain: tuple[float, float] | None = None  # None: from zero to the data's maximum, made nice
    rules: list[tuple[float, str]] = dataclasses.field(default_factory=list)  # dashed vertical marks (x, colour)
    note: tuple[float, str] | None = None  # (x, text) at the bottom of the panel, beside the rule there


@dataclass(frozen=True)
class LinearPlot:
    """A plot of linear panels stacked over one x axis (``linear_svg``), with legends under a key."""

    panels: list[LinearPanel]
    x: PlotAxis
    x_title: str
    legends: Legends
    key: list[str] = dataclasses.field(default_factory=list)
    bands: list[tuple[float, float]] = dataclasses.field(default_factory=list)
    points: bool = False


def layer_axis(layers: list[int]) -> PlotAxis:
    """Whole layers, a tick about every 80 px (half as many as the live chart)."""
    lo, hi = min(layers), max(layers)
    step = max(1, round(tick_step(lo, hi, math.ceil(LINE_WIDTH / 80))))
    ticks = list(range(math.ceil(lo / step) * step, hi + 1, step))
    return PlotAxis((lo, max(hi, lo + 1)), [float(t) for t in ticks], [str(t) for t in ticks])


def relative_axis() -> PlotAxis:
    """Relative depth (layer / last layer), 0 to 1 in tenths: models of different depths line up."""
    ticks = [k / 10 for k in range(11)]
    return PlotAxis((0.0, 1.0), ticks, [f"{t:.1f}" for t in ticks])


_PLOT_LEFT = 70


_PLOT_GAP = 14


_LEGEND_ROW = 18


_KEY_ROW = 15


_CHAR_PX = 6.2  # average width of an 11 px sans-serif character, for laying out legend entries


_POINT_R = 2.5  # the live chart's point markers (size 30)


@dataclass(frozen=True)
class _Layout:
    """Where a plot's parts go and how large its text is: ``WIDE`` (the page's default, 650 px) or ``NARROW``
    (340 px, for phones: the page shows it under its 640 px breakpoint, at its own size, so text stays >= 11 px)."""

    width: int  # a panel's plot area
    line_height: int  # a trajectory panel's height
    left: int  # room for the y axis labels and title
    right: int
    header_left: int  # the key and legends start here and wrap at ``header_width``
    header_width: int
    note_px: int  # the emergence and largest-change notes
    note_char: float  # their average character width
    min_tick_px: float  # x ticks closer than this are thinned (every second, third ...)
    wrap_key: bool  # key lines longer than the header wrap (never shortened)
    y_title_x: int = -52


WIDE = _Layout(LINE_WIDTH, LINE_HEIGHT, _PLOT_LEFT, 20, _PLOT_LEFT, LINE_WIDTH, 10, 5.6, 0.0, False)


NARROW = _Layout(264, 160, 64, 12, 6, 328, 11, 6.2, 36.0, True)


@dataclass(frozen=True)
class _PlotScale:
    """Data to pixels inside one panel (LINE_WIDTH x LINE_HEIGHT), as the live chart's scales do."""

    x0: float
    x1: float
    p_decades: int  # the probability axis, logarithmic: 10^-p_decades (bottom) to 100% (top), as the live default
    rank_top: int  # the rank axis: 1 (top) to a power of ten (bottom), logarithmic
    width: float = LINE_WIDTH
    height: float = LINE_HEIGHT

    @classmethod
    def of(cls, plot: Plot, layout: _Layout = WIDE) -> _PlotScale:
        known = [max(p, PROB_FLOOR) for line in plot.lines for _, p, _ in line.points if p is not None]
        decades = max(1, math.ceil(-math.log10(min(known)) - 1e-9)) if known else 1
        return cls(*plot.x.domain, decades, max(10, rank_top([plot.max_rank])), layout.width, layout.line_height)

    def x(self, x: float) -> float:
        return (x - self.x0) / (self.x1 - self.x0) * self.width

    def y(self, kind: str, p: float | None, rank: int) -> float | None:
        if kind == "rank":
            return math.log10(max(1, rank)) / math.log10(self.rank_top) * self.height
        return None if p is None else -math.log10(max(p, PROB_FLOOR)) / self.p_decades * self.height

    def y_ticks(self, kind: str) -> list[tuple[float, str]]:
        if kind == "rank":
            return [(self.y("rank", None, 10**k) or 0.0, f"{10**k:,}") for k in range(len(str(self.rank_top)))]
        return [
            (self.y("prob", 10.0**-k, 1) or 0.0, f"{round(100 * 10.0**-k, 6):g}%") for k in range(self.p_decades + 1)
        ]


@dataclass(frozen=True)
class _LinearScale:
    """A linear y axis from ``lo`` (bottom) to ``hi`` (top) over ``height`` px, ticks at ``step``."""

    lo: float
    hi: float
    step: float
    height: int

    @classmethod
    def of(cls, panel: LinearPanel) -> _LinearScale:
        count = math.ceil(panel.height / 40)  # Vega-Lite's default y tick count
        if panel.domain is not None:
            lo, hi = panel.domain
            return cls(lo, hi, tick_step(lo, hi, count), panel.height)
        top = max([0.0, *(y for s in panel.series for _, y in s.values if y is not None)])
        if top <= 0:
            return cls(0.0, 1.0, tick_step(0, 1, count), panel.height)
        step = tick_step(0, top, count)
        return cls(0.0, math.ceil(top / step - 1e-9) * step, step, panel.height)

    def y(self, value: float) -> float:
        return (self.hi - value) / (self.hi - self.lo) * self.height

    def ticks(self) -> list[tuple[float, str]]:
        first = math.ceil(self.lo / self.step - 1e-9)
        last = math.floor(self.hi / self.step + 1e-9)
        return [(self.y(k * self.step), _tick_label(k * self.step)) for k in range(first, last + 1)]


def _tick_label(value: float) -> str:
    return f"{round(value, 10):,g}"


def plot_svg(plot: Plot, layout: _Layout = WIDE) -> str:
    """A trajectory chart as compact SVG (about 4 kB): the live chart's layout (legend on top; the
    probability panel over the rank panel on a reversed log axis, 1 at the top; the shared x axis under
    the rank panel) with fewer bytes: one path per line and per grid, whole-pixel line points."""
    scale = _PlotScale.of(plot, layout)
    x_axis = _thinned(plot.x, layout)
    header, top = _header(plot.key, plot.legends, layout)
    panels = []
    y0 = top
    for kind in ("prob", "rank"):
        panels.append(_trajectory_panel(plot, scale, kind, y0, layout, x_axis))
        y0 += layout.line_height + _PLOT_GAP
    return _frame(header, "".join(panels), x_axis, scale.x, plot.x_title, y0 - _PLOT_GAP, layout)


def linear_svg(plot: LinearPlot, layout: _Layout = WIDE) -> str:
    """Panels on linear axes (entropy, KL, divergences), laid out as ``plot_svg``."""
    header, top = _header(plot.key, plot.legends, layout)
    x0, x1 = plot.x.domain
    x_axis = _thinned(plot.x, layout)
    w = layout.width

    def x_px(x: float) -> float:
        return (x - x0) / (x1 - x0) * w

    panels = []
    y0 = top
    for panel in plot.panels:
        scale = _LinearScale.of(panel)
        lines = []
        for s in panel.series:
            pts = [None if y is None else (x_px(x), scale.y(y)) for x, y in s.values]
            lines.append((_style(s.color, s.width, s.dash, s.opacity), s.color, s.opacity, pts))
        extra = []
        for x, color in panel.rules:
            ex = short_number(x_px(x), 1)
            extra.append(f'<line x1="{ex}" x2="{ex}" y2="{panel.height}" stroke="{color}" stroke-dasharray="4,3"/>')
        if panel.note is not None:
            x, text = panel.note
            left = x_px(x) <= w / 2
            extra.append(
                f'<text x="{short_number(x_px(x) + (4 if left else -4), 1)}" y="{panel.height - 4}" '
                f'font-size="{layout.note_px}px" text-anchor="{"start" if left else "end"}" fill="#333333">'
                f"{escape_xml(text)}</text>"
            )
        bands = [(x_px(a), x_px(b)) for a, b in plot.bands]
        panels.append(
            _panel(
                y0,
                panel.height,
                panel.title,
                scale.ticks(),
                x_axis,
                x_px,
                bands,
                lines,
                "".join(extra),
                plot.points,
                layout,
            )
        )
        y0 += panel.height + _PLOT_GAP
    return _frame(header, "".join(panels), x_axis, x_px, plot.x_title, y0 - _PLOT_GAP, layout)


def _thinned(axis: PlotAxis, layout: _Layout) -> PlotAxis:
    """``axis`` with every k-th tick only, so that ticks are at least ``layout.min_tick_px`` apart."""
    if len(axis.ticks) < 2 or not layout.min_tick_px:
        return axis
    x0, x1 = axis.domain
    apart = (axis.ticks[1] - axis.ticks[0]) / (x1 - x0) * layout.width
    k = max(1, math.ceil(layout.min_tick_px / apart - 1e-9))
    return axis if k == 1 else PlotAxis(axis.domain, axis.ticks[::k], axis.labels[::k])


def _wrapped(line: str, chars: int) -> list[str]:
    """``line`` in pieces of at most ``chars`` characters, broken after a space or "/" where there is one."""
    out = []
    while len(line) > chars:
        cut = max(line.rfind(" ", 0, chars + 1), line.rfind("/", 0, chars) + 1)
        cut = cut if cut > chars // 3 else chars
        out.append(line[:cut].rstrip())
        line = line[cut:].lstrip()
    out.append(line)
    return out


def _header(key: list[str], legends: Legends, layout: _Layout = WIDE) -> tuple[str, float]:
    """The key lines and legend rows over the panels, and where the first panel starts."""
    if layout.wrap_key:  # never shortened: the only place that tells the models apart by name
        key = [piece for line in key for piece in _wrapped(line, int(layout.header_width / _CHAR_PX))]
    parts = [f'<text y="{12 + _KEY_ROW * i}" fill="#333333">{escape_xml(line)}</text>' for i, line in enumerate(key)]
    legend_top = _KEY_ROW * len(key)
    legend, rows = _plot_legends(legends, legend_top, layout.header_width)
    parts.append(legend)
    header = f'<g transform="translate({layout.header_left},0)">{"".join(parts)}</g>'
    return header, 8 + legend_top + _LEGEND_ROW * rows + 12


def _frame(
    header: str,
    panels: str,
    x: PlotAxis,
    x_px: Callable[[float], float],
    x_title: str,
    bottom: float,
    layout: _Layout = WIDE,
) -> str:
    """The whole SVG: white background, header, panels, the x axis labels and title under the last panel."""
    w = layout.width
    x_labels = "".join(
        f'<text x="{short_number(x_px(t), 1)}" y="16">{escape_xml(label)}</text>' for t, label in zip(x.ticks, x.labels)
    )
    total_w = layout.left + w + layout.right
    # A long title (relative depth) wraps where it would not fit the narrow drawing (12 px bold: ~7.2 px a character).
    rows = _wrapped(x_title, int((total_w - 8) / 7.2)) if layout.wrap_key else [x_title]
    total_h = round(bottom + 40 + 14 * (len(rows) - 1))
    middle = total_w // 2 - layout.left if layout.wrap_key else w // 2  # narrow: centred on the whole drawing
    title = "".join(
        f'<text x="{middle}" y="{32 + 14 * i}" font-size="12px" font-weight="bold">{escape_xml(row)}</text>'
        for i, row in enumerate(rows)
    )
    return (
        f'<svg xmlns="{SVG_NS}" width="{total_w}" height="{total_h}" viewBox="0 0 {total_w} {total_h}" '
        'font-family="sans-serif" font-size="11px">'
        f'<rect width="{total_w}" height="{total_h}" fill="white"/>{header}{panels}'
        f'<g transform="translate({layout.left},{short_number(bottom, 1)})" text-anchor="middle">{x_labels}{title}</g></svg>'
    )


Line = tuple[str, str, float, list[tuple[float, float] | None]]  # (stroke attributes, colour, opacity, points)


def _panel(
    y0: float,
    h: int,
    title: str,
    y_ticks: list[tuple[float, str]],
    x: PlotAxis,
    x_px: Callable[[float], float],
    bands: list[tuple[float, float]],
    lines: list[Line],
    extra: str,
    points: bool,
    layout: _Layout = WIDE,
) -> str:
    """One panel at ``y0``: grey bands, grid, frame, axes, the lines (with dots when ``points``), ``extra`` marks."""
    w = layout.width
    ticks = "".join(f"M{round(x_px(t))},{h}v5" for t in x.ticks) + "".join(
        f"M0,{short_number(y, 1)}h-5" for y, _ in y_ticks
    )
    out = [f'<g transform="translate({layout.left},{short_number(y0, 1)})">']
    shown = [(max(a, 0.0), min(b, float(w))) for a, b in bands]
    shown = [(a, b) for a, b in shown if b > a]
    if shown:
        d = "".join(f"M{short_number(a, 1)},0H{short_number(b, 1)}V{h}H{short_number(a, 1)}z" for a, b in shown)
        out.append(f'<path fill="{UNRELIABLE_FILL}" fill-opacity="0.18" d="{d}"/>')
    out += [
        f'<path stroke="#e6e6e6" d="{"".join(f"M0,{short_number(y, 1)}h{w}" for y, _ in y_ticks)}"/>',
        f'<rect width="{w}" height="{h}" fill="none" stroke="#cccccc"/>',
        '<g text-anchor="end">'
        + "".join(f'<text x="-7" y="{short_number(y + 3, 1)}">{escape_xml(label)}</text>' for y, label in y_ticks)
        + "</g>",
        f'<path stroke="#888888" d="{ticks}"/>',
        f'<text transform="translate({layout.y_title_x},{h // 2}) rotate(-90)" text-anchor="middle" font-size="12px" '
        f'font-weight="bold">{escape_xml(title)}</text>',
    ]
    for style, color, opacity, pts in lines:
        d = _polyline(pts)
        if d:
            out.append(f'<path fill="none" {style} d="{d}"/>')
        if points:
            dots = "".join(_circle_d(px, py, _POINT_R) for pt in pts if pt is not None for px, py in [pt])
            if dots:
                fill_opacity = "" if opacity == 1 else f' fill-opacity="{short_number(opacity, 2)}"'
                out.append(f'<path fill="{color}"{fill_opacity} d="{dots}"/>')
    out.append(extra)
    out.append("</g>")
    return "".join(out)


def _style(color: str, width: float, dash: list[float], opacity: float) -> str:
    style = f'stroke="{color}" stroke-width="{short_number(width, 1)}"' + _dashes(dash)
    if opacity != 1:
        style += f' stroke-opacity="{short_number(opacity, 2)}"'
    return style


def _trajectory_panel(
    plot: Plot, scale: _PlotScale, kind: str, y0: float, layout: _Layout = WIDE, x_axis: PlotAxis | None = None
) -> str:
    """One panel of a trajectory ("prob" or "rank"): every line with its emergence mark."""
    h = layout.line_height
    lines: list[Line] = []
    extra = []
    noted = [line for line in plot.lines if line.emergence is not None and line.marker == "rule" and line.note]
    places = iter(
        note_places([(scale.x(line.emergence or 0.0), line.note) for line in noted], layout.width, layout.note_char)
    )
    for line in plot.lines:
        pts = [(scale.x(x), scale.y(kind, p, r)) for x, p, r in line.points]
        lines.append(
            (
                _style(line.color, line.width, line.dash, line.opacity),
                line.color,
                line.opacity,
                [None if y is None else (x, y) for x, y in pts],
            )
        )
        if line.emergence is None:
            continue
        ex = short_number(scale.x(line.emergence), 1)
        if line.marker == "rule":
            extra.append(
                f'<line x1="{ex}" x2="{ex}" y2="{h}" stroke="{line.color}" stroke-width="1.5" stroke-dasharray="4,3"/>'
            )
            place = next(places) if line.note else None
            if kind == "prob" and place is not None:
                at, left, row = place
                extra.append(
                    f'<text x="{short_number(at, 1)}" y="{-4 + (layout.note_px + 2) * row}" '
                    f'font-size="{layout.note_px}px" text-anchor="{"start" if left else "end"}" fill="{line.color}">'
                    f"{escape_xml(line.note)}</text>"
                )
        else:
            hits = [pt for (x, _, _), pt in zip(line.points, pts) if x == line.emergence and pt[1] is not None]
            if hits:
                hx, hy = hits[0]
                extra.append(_marker_path(line.marker, hx, hy or 0.0, 4.2, line.color))
    bands = [(scale.x(a), scale.x(b)) for a, b in plot.bands]
    title = "Probability" if kind == "prob" else "Rank (log, 1 = top)"
    return _panel(
        y0,
        h,
        title,
        scale.y_ticks(kind),
        x_axis or plot.x,
        scale.x,
        bands,
        lines,
        "".join(extra),
        plot.points,
        layout,
    )


NOTE_GAP = 4  # px kept free between two notes on one row


def note_places(notes: list[tuple[float, str]], width: float, char_px: float) -> list[tuple[float, bool, int]]:
    """Where the emergence notes go, so that none overlaps another: for each (x of its rule in px, text), the
    x its text is anchored at (4 px beside the rule), whether it runs rightwards (a rule in the left half; in
    the right half it runs leftwards, so it stays inside the panel), and its row: 0 over the panel, 1, 2...
    inside it, the first row where it overlaps no note placed before it (texts ``char_px`` a character). The
    static SVG (``plot_svg``) and the live chart's spec (``run_specs``) both place their notes with this."""
    taken: list[tuple[float, float, int]] = []  # the notes placed so far: (x from, x to, row)
    out = []
    for x, text in notes:
        left = x <= width / 2
        at = x + (4 if left else -4)
        size = len(text) * char_px
        span = (at, at + size) if left else (at - size, at)
        row = 0
        while any(r == row and a < span[1] + NOTE_GAP and span[0] < b + NOTE_GAP for a, b, r in taken):
            row += 1
        taken.append((*span, row))
        out.append((at, left, row))
    return out


def _plot_legends(legends: Legends, top: float = 0, width: float = LINE_WIDTH) -> tuple[str, int]:
    """The legends from ``top`` down: each legend's title, then each entry's symbol (marker or line style) and
    label, wrapped onto further rows where ``width`` ends. Also the number of rows."""
    parts = []
    row = 0
    for title, entries in legends:
        y = top + 17 + _LEGEND_ROW * row
        if title:
            parts.append(
                f'<text y="{short_number(y + 1, 1)}" font-size="12px" font-weight="bold">{escape_xml(title)}</text>'
            )
        start = len(title) * 7.5 + 10 if title else 0
        x = start
        for label, style in entries:
            label = shorten(label, 40)
            entry = 18 + len(label) * _CHAR_PX
            if x > start and x + entry > width:
                row += 1
                x, y = start, top + 17 + _LEGEND_ROW * row
            if style.marker in ("circle", "diamond"):
                parts.append(_marker_path(style.marker, x + 5, y - 3, 5, style.color, style.opacity))
            else:
                stroke = f' stroke-opacity="{short_number(style.opacity, 2)}"' if style.opacity != 1 else ""
                parts.append(
                    f'<path d="M{short_number(x, 1)},{short_number(y - 3, 1)}h14" stroke="{style.color}" '
                    f'stroke-width="{short_number(min(style.width, 4), 1)}"{_dashes(style.dash)}{stroke}/>'
                )
            parts.append(f'<text x="{short_number(x + 18, 1)}" y="{short_number(y + 1, 1)}">{escape_xml(label)}</text>')
            x += entry + 12
        row += 1
    return "".join(parts), row


def _dashes(dash: list[float]) -> str:
    return "" if dash == [1, 0] else f' stroke-dasharray="{",".join(short_number(v, 1) for v in dash)}"'


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


def _circle_d(x: float, y: float, r: float) -> str:
    return f"M{short_number(x + r, 1)},{short_number(y, 1)}a{r},{r} 0 1 1 {-2 * r},0a{r},{r} 0 1 1 {2 * r},0"


def _marker_path(shape: str, x: float, y: float, r: float, color: str, opacity: float = 1.0) -> str:
    if shape == "circle":
        d = _circle_d(x, y, r)
    else:
        d = f"M{short_number(x - r, 1)},{short_number(y, 1)}l{r},{-r}l{r},{r}l{-r},{r}z"
    fill_opacity = "" if opacity == 1 else f' fill-opacity="{short_number(opacity, 2)}"'
    return f'<path fill="{color}"{fill_opacity} d="{d}"/>'
