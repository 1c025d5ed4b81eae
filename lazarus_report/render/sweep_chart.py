"""The sweep page's charts, drawn by hand as static SVG (no scripts): one compact chart per measure over the
training steps. Cases are lines coloured by their verdict at the last step (passing green, failing red), the
cases whose verdict changes over the steps drawn on top; the last step is marked (the step cursor).
Every text in a chart goes through ``escape_xml``."""

from __future__ import annotations

from collections.abc import Sequence

from ..results.sweep import SweepResult
from .charts.style import escape_xml, shorten
from .charts.svg_sanitize import SVG_NS, short_number

STATUS_COLORS = {"passed": "#1e7d3c", "failed": "#c0362c", "error": "#8e5bb5", "skipped": "#7a7a7a"}
_W, _H, _LEFT, _RIGHT, _TOP, _BOTTOM = 330, 170, 44, 12, 26, 34
MAX_LINES = 60  # cases drawn per chart (those whose verdict changes first); the case table lists every case


def sweep_charts(result: SweepResult) -> list[tuple[str, str, str]]:
    """(chart id, title, SVG) for each measure the sweep holds: cases passing, P(target), emergence layer,
    final JS to the base and, with attribution, carrier layers."""
    labels = [s.label for s in result.steps]
    series = result.case_series()
    order = sorted(range(len(series)), key=lambda i: (len(set(series[i].statuses)) > 1, i))[-MAX_LINES:]
    colors = [STATUS_COLORS.get(s.statuses[-1] if s.statuses else "", "#7a7a7a") for s in series]
    passing = [float(step.counts()["passed"]) for step in result.steps]
    out = [
        (
            "sweep-passing",
            "Cases passing",
            line_chart(
                labels, [("cases passing", passing, "#1f6fb4")], 0.0, float(max(1, len(result.cases))), "{:.0f}"
            ),
        )
    ]
    measures: list[tuple[str, str, list[list[float | None]], float, float, str]] = [
        ("sweep-p", "P(target), tuned", [s.p_target for s in series], 0.0, 1.0, "{:.0%}"),
        (
            "sweep-emergence",
            "Emergence layer of the target",
            [[float(x) if x is not None else None for x in s.emergence_layer] for s in series],
            0.0,
            float(max([x for s in series for x in s.emergence_layer if x is not None] or [1])),
            "{:.0f}",
        ),
        (
            "sweep-js",
            "Final-layer JS to the base (nats)",
            [s.final_js for s in series],
            0.0,
            max([x for s in series for x in s.final_js if x is not None] or [0.01]),
            "{:.2f}",
        ),
    ]
    for chart_id, title, values, lo, hi, fmt in measures:
        lines = [(series[i].id, values[i], colors[i]) for i in order]
        out.append((chart_id, title, line_chart(labels, lines, lo, hi, fmt)))
    if result.attribution:
        out.append(("sweep-carriers", "Carrier layers (cases per layer)", carrier_chart(result)))
    return out


def _frame(labels: Sequence[str], lo: float, hi: float, fmt: str, height: int = _H) -> list[str]:
    parts = [
        f'<svg xmlns="{SVG_NS}" width="{_W}" height="{height}" viewBox="0 0 {_W} {height}" '
        'font-family="sans-serif" font-size="10px" role="img">',
        f'<rect width="{_W}" height="{height}" fill="white"/>',
    ]
    bottom = height - _BOTTOM
    for k in range(3):
        v = lo + (hi - lo) * k / 2
        y = short_number(bottom - (bottom - _TOP) * k / 2, 1)
        parts.append(
            f'<path d="M{_LEFT},{y}H{_W - _RIGHT}" stroke="#e6e6e6"/>'
            f'<text x="{_LEFT - 4}" y="{y}" text-anchor="end" dy="3">{escape_xml(fmt.format(v))}</text>'
        )
    n = len(labels)
    every = max(1, (n + 5) // 6)
    for k, label in enumerate(labels):
        if k % every and k != n - 1:
            continue
        x = short_number(_x(k, n), 1)
        anchor = "end" if k == n - 1 and n > 1 else "start" if k == 0 and n > 1 else "middle"
        parts.append(f'<text x="{x}" y="{bottom + 14}" text-anchor="{anchor}">{escape_xml(shorten(label, 12))}</text>')
    if n:
        x = short_number(_x(n - 1, n), 1)  # the step cursor: the last step, whose verdict decides the exit status
        parts.append(f'<path d="M{x},{_TOP - 4}V{bottom}" stroke="#333333" stroke-dasharray="3 2"/>')
    return parts


def _x(k: int, n: int) -> float:
    return _LEFT + (_W - _LEFT - _RIGHT) * (k / (n - 1) if n > 1 else 0.5)


def line_chart(
    labels: Sequence[str], lines: Sequence[tuple[str, Sequence[float | None], str]], lo: float, hi: float, fmt: str
) -> str:
    """Lines over the steps (``None`` values leave a gap), y from ``lo`` to ``hi``."""
    n = len(labels)
    bottom = _H - _BOTTOM
    span = (hi - lo) or 1.0
    parts = _frame(labels, lo, hi, fmt)
    for name, values, color in lines:
        points = [
            (short_number(_x(k, n), 1), short_number(bottom - (bottom - _TOP) * (min(hi, max(lo, v)) - lo) / span, 1))
            for k, v in enumerate(values)
            if v is not None
        ]
        if not points:
            continue
        title = f"<title>{escape_xml(shorten(name, 60))}</title>"
        if len(points) > 1:
            d = "M" + "L".join(f"{x},{y}" for x, y in points)
            parts.append(
                f'<path d="{d}" fill="none" stroke="{color}" stroke-width="1.5" stroke-opacity="0.8">{title}</path>'
            )
        for x, y in points:
            parts.append(f'<circle cx="{x}" cy="{y}" r="2.2" fill="{color}"/>')
    parts.append("</svg>")
    return "".join(parts)


def carrier_chart(result: SweepResult) -> str:
    """Steps x layers: how many cases name each layer a carrier at each step (darker: more cases)."""
    layers = sorted({x for step in result.steps for c in step.cases for x in (c.carriers or [])})
    n = len(result.steps)
    rows = max(1, len(layers))
    height = _TOP + 12 * rows + _BOTTOM
    parts = _frame([s.label for s in result.steps], 0, 0, "", height)[:2]
    bottom = height - _BOTTOM
    cell = (_W - _LEFT - _RIGHT) / max(1, n)
    top = max(
        1,
        max(
            (sum(1 for c in step.cases if layer in (c.carriers or [])) for step in result.steps for layer in layers),
            default=1,
        ),
    )
    for r, layer in enumerate(layers):
        y = _TOP + 12 * r
        parts.append(f'<text x="{_LEFT - 4}" y="{y + 9}" text-anchor="end">L{layer}</text>')
        for k, step in enumerate(result.steps):
            count = sum(1 for c in step.cases if layer in (c.carriers or []))
            if count:
                parts.append(
                    f'<rect x="{short_number(_LEFT + k * cell + 1, 1)}" y="{y}" width="{short_number(cell - 2, 1)}" '
                    f'height="10" fill="#1f6fb4" fill-opacity="{short_number(0.15 + 0.85 * count / top, 2)}">'
                    f"<title>{escape_xml(step.label)}: layer {layer}, {count} cases</title></rect>"
                )
    for k, step in enumerate(result.steps):
        if k % max(1, (n + 5) // 6) == 0 or k == n - 1:
            x = short_number(_LEFT + (k + 0.5) * cell, 1)
            parts.append(
                f'<text x="{x}" y="{bottom + 14}" text-anchor="middle">{escape_xml(shorten(step.label, 12))}</text>'
            )
    if not layers:
        parts.append(f'<text x="{_LEFT}" y="{_TOP + 9}">no carrier layers</text>')
    parts.append("</svg>")
    return "".join(parts)
