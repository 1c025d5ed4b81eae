"""The charts' look: sizes, palettes, the heatmap's colour bins, the Vega-Lite config and version, label shortening.

No Altair or vl-convert at import (static pages import this): ``VL_VERSION`` is computed on first use."""

from __future__ import annotations

import functools
import html
from typing import Any

LINE_WIDTH = 560


LINE_HEIGHT = 190


CELL_WIDTH = 46


CELL_HEIGHT = 16


MAX_LAYERS_WITH_POINTS = 16


# The widest chart that prints with its text at 8 px or more (px): an A4 column is 718 px (190 mm), about 700
# inside the chart box, and a chart's smallest text is 9 px (heatmap cells), so it may shrink to 8/9 of its
# size there: 700 * 9 / 8 ~ 780. A wider drawing prints another way: the page script draws it once more with its
# panels stacked, for paper only (report.js, PAPER); a static page prints its phone variant.
PAPER_WIDTH = 780


PALETTE = ["#1f6fb4", "#d6562b", "#2a9d55", "#8e5bb5", "#b8860b", "#c2185b", "#00838f", "#5d6d7e"]


# Line styles for the tracked tokens of a comparison (colour is the model there).
DASHES: list[list[float]] = [[1, 0], [6, 3], [2, 2], [8, 3, 2, 3], [12, 4], [1, 3]]


# Two models drawn over each other stay visible: model 1 wide and pale, model 2 narrow on top.
MODEL_STROKES = [4.0, 1.6]


MODEL_OPACITY = [0.55, 1.0]


# The heatmap colours: ten bins of 10% each (a quantize scale) along Vega's "blues" scheme. Bins
# keep the drawn SVG small (one path per colour) and match the live chart exactly.
_BLUES = [
    "#cfe1f2", "#bed8ec", "#a8cee5", "#8fc1de", "#74b2d7", "#5ba3cf",
    "#4592c6", "#3181bd", "#206fb2", "#125ca4", "#0a4a90",
]  # fmt: skip


HEATMAP_BINS = 10


HEATMAP_DARK_TEXT_ABOVE = (
    0.7  # white text on cells darker than this probability (contrast >= 4.5:1 there, 4.47 for dark text below)
)


def _blues(t: float) -> str:
    """Vega's blues scheme at ``t`` in [0, 1] (piecewise-linear RGB between its stops)."""
    n = len(_BLUES) - 1
    i = min(n - 1, int(t * n))
    f = t * n - i
    a, b = _BLUES[i], _BLUES[i + 1]
    channels = [round(int(a[k : k + 2], 16) * (1 - f) + int(b[k : k + 2], 16) * f) for k in (1, 3, 5)]
    return "#" + "".join(f"{c:02x}" for c in channels)


HEATMAP_COLORS = [_blues(i / (HEATMAP_BINS - 1)) for i in range(HEATMAP_BINS)]


# d3's quantize scale over [0, 1]: value x takes colour bisect_right(thresholds, x).
HEATMAP_THRESHOLDS = [(i + 1) / HEATMAP_BINS for i in range(HEATMAP_BINS - 1)]


# Chart styling; set on the spec directly (Altair's .configure() deep-copies the chart each call).
# aria=False: no per-mark ARIA labels (they tripled the SVG size); the page gives every chart a
# caption and an aria-label, and the tables hold the same numbers as text.
CONFIG: dict[str, Any] = {
    "background": "white",
    "font": "sans-serif",
    "aria": False,
    "axis": {"labelFontSize": 11, "titleFontSize": 12, "gridColor": "#e6e6e6"},
    "axisX": {"grid": False},
    "legend": {"labelFontSize": 11, "titleFontSize": 12, "labelLimit": 220},
    "view": {"stroke": "#cccccc"},
}


PROB_FLOOR = 1e-6  # log view: smaller probabilities are drawn at this floor (their rank panel says the rest)


UNRELIABLE_FILL = "#9aa4b1"  # the grey bands over the layers where the lens is unreliable


def requested_vl_version() -> str:
    """The Vega-Lite version Altair targets ("6.4"); imports Altair, not vl-convert."""
    import altair as alt

    return ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])


@functools.lru_cache(maxsize=1)
def _vl_version() -> str:
    """The Vega-Lite version Altair targets, as vl-convert names it ("6.4")."""
    import vl_convert as vlc

    return resolve_vl_version(requested_vl_version(), vlc.get_vegalite_versions())


def resolve_vl_version(requested: str, available: list[str]) -> str:
    return requested if requested in available else available[-1]


def __getattr__(name: str) -> Any:
    if name == "VL_VERSION":  # computed on first use: it needs Altair and vl-convert
        return _vl_version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending in "…" when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def escape_xml(text: str) -> str:
    """``text`` escaped for SVG/HTML text and attribute values (quotes too)."""
    return html.escape(text, quote=True)
