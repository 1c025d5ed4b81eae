"""Chart values and their background rendering: ``PendingChart`` / ``ChartView``, the spec wrapper, and
the one vl-convert thread that draws the suite overview charts' static SVG while the page does its other work.

Neither Altair nor vl-convert is imported here at module level: a static page uses ``PendingChart`` and
``ChartView`` only, and an analysis or comparison page never starts vl-convert (its SVGs are hand-drawn)."""

from __future__ import annotations

import dataclasses
import functools
import re
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from lazarus_report.render.charts.style import CONFIG, PAPER_WIDTH
from lazarus_report.render.charts.svg_sanitize import checked_svg, compact_svg, renumber_ids


@dataclass(frozen=True)
class ChartView:
    """One chart, ready for the page."""

    chart_id: str  # unique in the page, e.g. "run0-trajectory"
    title: str
    description: str  # what the chart shows, for captions and screen readers
    spec: dict[str, Any] | None  # Vega-Lite spec for vegaEmbed (None: a static page builds none)
    svg: str  # static rendering of the same chart
    fit: bool = True  # may shrink to the page width (the heatmap scrolls instead: its text must stay legible)
    narrow: str = ""  # the same chart drawn for a phone (shown under the page's 640 px breakpoint), or ""

    @property
    def paper_narrow(self) -> bool:
        """Paper shows the phone variant: the wide drawing is wider than an A4 column (it would shrink there,
        its text under 8 px), and the narrow one keeps its text at full size."""
        match = re.search(r'<svg[^>]*\swidth="([\d.]+)"', self.svg)
        return bool(self.narrow) and match is not None and float(match.group(1)) > PAPER_WIDTH


@dataclass(frozen=True)
class PendingChart:
    """A chart whose static SVG may still be drawing (see ``result``)."""

    chart_id: str
    title: str
    description: str
    spec: dict[str, Any] | None
    svg: Future[str] | str
    fit: bool = True
    narrow: Callable[[], str] | None = None  # draws the phone variant (only for pages that show it)

    def with_spec(self, chart: Any, datasets: dict[str, Any]) -> PendingChart:
        """This chart with the Vega-Lite spec of the Altair ``chart`` over ``datasets``."""
        return dataclasses.replace(self, spec=_spec(chart, self.description, datasets))

    def result(self, *, narrow: bool = False) -> ChartView:
        """The chart, with its phone variant when ``narrow`` (and it has one)."""
        svg = self.svg if isinstance(self.svg, str) else self.svg.result()
        phone = self.narrow() if narrow and self.narrow is not None else ""
        return ChartView(self.chart_id, self.title, self.description, self.spec, svg, self.fit, phone)


_bundle_lock = threading.Lock()  # the CLI's prefetch thread and the render may ask at once: build or read once


def vega_bundle() -> str:
    """Vega + Vega-Lite + vega-embed as one script (about 900 KB; cached per process and on disk: see ``bundle``)."""
    with _bundle_lock:
        return _vega_bundle()


@functools.lru_cache(maxsize=1)
def _vega_bundle() -> str:
    from lazarus_report.render.charts.bundle import cached_bundle
    from lazarus_report.render.charts.style import requested_vl_version

    return cached_bundle(requested_vl_version())


@functools.lru_cache(maxsize=1)
def _svg_thread() -> ThreadPoolExecutor:
    # One worker: vl-convert converts one chart at a time anyway; the thread lets Python work overlap.
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="lazarus-vl-convert")


# A one-point chart: converting it starts vl-convert's JavaScript engine (the first conversion in a process
# costs 0.3 s or more; later ones ~40 ms).
_WARM_UP_SPEC = {
    "data": {"values": [{"x": 0}]},
    "mark": "point",
    "encoding": {"x": {"field": "x", "type": "quantitative"}},
}


def warm_up() -> Future[str]:
    """Start vl-convert's engine on the SVG thread (queued before any chart, so charts never wait twice)."""
    return _svg_thread().submit(_vl_svg_raw, _WARM_UP_SPEC)


def unvalidated(fn: Any) -> Any:
    """Build specs without Altair's JSON-schema validation (its "debug mode" validates every object
    as it is created: most of the time a chart took). The tests validate every spec instead.
    The switch is process-wide while ``fn`` runs (Altair has no other)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from altair.utils.schemapi import debug_mode

        with debug_mode(False):
            return fn(*args, **kwargs)

    return wrapper


def finish(pending: dict[str, list[PendingChart]], *, narrow: bool = False) -> dict[str, list[ChartView]]:
    """Every chart drawn (``narrow``: with its phone variant, where it has one)."""
    return {key: [c.result(narrow=narrow) for c in charts] for key, charts in pending.items()}


def _spec(chart: Any, description: str, datasets: dict[str, Any]) -> dict[str, Any]:
    spec = chart.to_dict(validate=False)
    spec["description"] = description
    spec["config"] = CONFIG
    spec["datasets"] = datasets
    return spec


def line_view(
    chart_id: str, title: str, description: str, chart: Any, datasets: dict[str, Any], *, svg: str | None = None
) -> PendingChart:
    """A chart whose static SVG vl-convert draws in the background (or ``svg``, already drawn)."""
    spec = _spec(chart, description, datasets)
    if svg is not None:
        return PendingChart(chart_id, title, description, spec, renumber_ids(checked_svg(svg), chart_id))
    return PendingChart(chart_id, title, description, spec, _svg_thread().submit(_vl_svg, spec, chart_id))


def _vl_svg_raw(spec: dict[str, Any]) -> str:
    import vl_convert as vlc

    from lazarus_report.render.charts.style import VL_VERSION

    return vlc.vegalite_to_svg(spec, vl_version=VL_VERSION)


def _vl_svg(spec: dict[str, Any], chart_id: str) -> str:
    return compact_svg(renumber_ids(_vl_svg_raw(spec), chart_id))
