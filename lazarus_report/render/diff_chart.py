"""The diff page's chart, drawn by hand as static SVG (no scripts): P(target) in the baseline and in the candidate,
one row per case (a dumbbell: a hollow dot for the baseline, a filled dot for the candidate, the bar between them
coloured by the case's verdict), regressions first. At most ``CHART_MAX_CASES`` rows: the largest changes after
the regressions; the case table lists every case."""

from __future__ import annotations

from .charts.style import escape_xml, shorten
from .charts.svg_sanitize import SVG_NS, short_number
from .diff_view import CaseRow

CHART_MAX_CASES = 80
VERDICT_COLORS = {"worse": "#c0362c", "better": "#1e7d3c", "unchanged": "#7a7a7a"}
_LABEL_W, _PLOT_W, _RIGHT, _ROW, _TOP = 190, 400, 24, 16, 46


def chart_rows(rows: list[CaseRow]) -> list[CaseRow]:
    """The cases the chart shows: those with a target in both runs, regressions first, then by the size of the
    change (largest first), at most ``CHART_MAX_CASES``; in the table's order within each group."""
    drawable = [r for r in rows if r.prob_before is not None or r.prob_after is not None]
    ranked = sorted(drawable, key=lambda r: (not r.regression, -abs(r.delta or 0.0), r.index))
    keep = {r.index for r in ranked[:CHART_MAX_CASES]}
    return [r for r in drawable if r.index in keep]


def _x(p: float) -> float:
    return _LABEL_W + max(0.0, min(1.0, p)) * _PLOT_W


def dumbbell_svg(rows: list[CaseRow]) -> str:
    """One row per case; the x axis is P(target), 0 to 100%, with ticks every 25%."""
    width = _LABEL_W + _PLOT_W + _RIGHT
    height = _TOP + _ROW * max(1, len(rows)) + 10
    parts = [
        f'<svg xmlns="{SVG_NS}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'font-family="sans-serif" font-size="11px" role="img" aria-labelledby="diff-chart-cap">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        # legend
        '<circle cx="196" cy="10" r="4" fill="white" stroke="#333333" stroke-width="1.5"/>'
        '<text x="204" y="14">baseline</text>'
        '<circle cx="266" cy="10" r="4" fill="#333333"/><text x="274" y="14">candidate</text>',
    ]
    x = 350.0
    for verdict, color in VERDICT_COLORS.items():
        parts.append(
            f'<path d="M{short_number(x, 1)},10h14" stroke="{color}" stroke-width="3"/>'
            f'<text x="{short_number(x + 18, 1)}" y="14">{verdict}</text>'
        )
        x += 24 + 6.2 * len(verdict) + 10
    bottom = height - 10
    for k in range(5):
        p = k / 4
        px = short_number(_x(p), 1)
        parts.append(
            f'<path d="M{px},{_TOP - 6}V{bottom}" stroke="#e6e6e6"/>'
            f'<text x="{px}" y="{_TOP - 10}" text-anchor="middle">{k * 25}%</text>'
        )
    for i, r in enumerate(rows):
        y = _TOP + _ROW * i + _ROW / 2
        color = VERDICT_COLORS.get(r.verdict, "#7a7a7a")
        label = escape_xml(shorten(r.id, 30))
        weight = ' font-weight="bold"' if r.regression else ""
        parts.append(f'<text x="{_LABEL_W - 8}" y="{short_number(y + 4, 1)}" text-anchor="end"{weight}>{label}</text>')
        ys = short_number(y, 1)
        if r.prob_before is not None and r.prob_after is not None:
            parts.append(
                f'<path d="M{short_number(_x(r.prob_before), 1)},{ys}H{short_number(_x(r.prob_after), 1)}" '
                f'stroke="{color}" stroke-width="3" stroke-opacity="0.7"/>'
            )
        if r.prob_before is not None:
            parts.append(
                f'<circle cx="{short_number(_x(r.prob_before), 1)}" cy="{ys}" r="4" fill="white" '
                f'stroke="{color}" stroke-width="1.5"/>'
            )
        if r.prob_after is not None:
            parts.append(f'<circle cx="{short_number(_x(r.prob_after), 1)}" cy="{ys}" r="4" fill="{color}"/>')
    parts.append("</svg>")
    return "".join(parts)
