"""Axis arithmetic shared by the Vega-Lite specs and the hand-drawn SVGs (d3's tick steps, the rank axis, rounding)."""

from __future__ import annotations

import math


def rank_top(ranks: list[int]) -> int:
    """The rank axis goes from 1 to the next power of ten (at least 10)."""
    top = 1
    while top < max([1, *ranks]):
        top *= 10
    return top


def tick_step(lo: float, hi: float, count: int) -> float:
    """d3's tick increment: a 1, 2 or 5 times a power of ten, about ``count`` ticks over [lo, hi]."""
    step = (hi - lo) / max(1, count)
    if step <= 0:
        return 1.0
    power = math.floor(math.log10(step))
    error = step / 10**power
    factor = 10 if error >= math.sqrt(50) else 5 if error >= math.sqrt(10) else 2 if error >= math.sqrt(2) else 1
    return factor * 10.0**power


def round_value(x: float | None, places: int = 4) -> float | None:
    """``x`` rounded to ``places`` decimals for plot data (None stays None): plots need no 17-digit floats;
    the exact values are in the embedded result JSON."""
    return None if x is None else round(x, places)


def round_prob(p: float | None) -> float | None:
    """A probability for plot data to four significant digits, not places: the log-probability axis
    reaches down to 1e-6 (None stays None)."""
    return None if p is None else float(f"{p:.4g}")
