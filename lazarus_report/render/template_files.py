"""Where the report templates are: the installed ``lazarus_report.templates``, or a checkout's ``templates/``."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

TEMPLATE_PACKAGE = "lazarus_report.templates"


@functools.cache
def template_root() -> Path:
    """The directory holding ``html/`` and ``markdown/``, looked up next to this very package, so a checkout
    never picks up another copy's templates: ``lazarus_report/templates`` in an installed wheel, the
    checkout's top-level ``templates/`` when run from a checkout (editable install or ``PYTHONPATH=.``), else
    wherever the package ``lazarus_report.templates`` is importable from."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "templates", package.parent / "templates"):
        if (candidate / "html" / "page.html.j2").is_file():
            return candidate
    spec = importlib.util.find_spec(TEMPLATE_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    raise RuntimeError(f"report templates not found: {TEMPLATE_PACKAGE} is not installed")
