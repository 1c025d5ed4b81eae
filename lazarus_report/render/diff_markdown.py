"""The Markdown of a diff: sized for a pull-request comment (GitHub's limit is 65,536 characters): the warnings,
the verdict and one-line summary, the regressions (at most ``MAX_REGRESSIONS``), the added and removed cases,
then a collapsed ``<details>`` table of the other cases (at most ``MAX_OTHERS``)."""

from __future__ import annotations

from ..results.diff import DiffResult
from .diff_view import build_diff_view
from .environment import markdown_environment

MAX_REGRESSIONS = 50
MAX_OTHERS = 100


def render_diff_markdown(d: DiffResult) -> str:
    template = markdown_environment().get_template("markdown/diff.md.j2")
    return template.render(view=build_diff_view(d), max_regressions=MAX_REGRESSIONS, max_others=MAX_OTHERS)
