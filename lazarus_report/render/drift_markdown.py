"""The Markdown of a drift result: the summary, the models and corpus, the per-layer table, then at most
``MAX_ROWS`` promoted tokens and top positions (sized for a pull-request comment)."""

from __future__ import annotations

from ..results.drift import DriftResult
from .drift_view import build_drift_view
from .environment import markdown_environment

MAX_ROWS = 20


def render_drift_markdown(result: DriftResult) -> str:
    template = markdown_environment().get_template("markdown/drift.md.j2")
    return template.render(view=build_drift_view(result), max_rows=MAX_ROWS)
