"""The Jinja environments: set up here once, with every formatter registered once as a filter.

Templates live in the top-level ``templates/`` directory, installed as the package
``lazarus_report.templates`` (see pyproject ``package-dir``; ``template_root`` also finds them in a plain
checkout with nothing installed), grouped by role:

    html/page.html.j2         page shell (head, styles, scripts, embedded data)
    html/sections/*.html.j2   one file per report section
    html/components/*.html.j2 macros (token chips, info lists, chart figures)
    markdown/*.md.j2          the Markdown report and its summary

HTML: autoescape is switched on for *every* template (``autoescape=True``), not chosen by file
extension — ``select_autoescape()`` would leave ``*.html.j2`` unescaped. Data reaches scripts only
through ``|tojson`` (which escapes ``< > & '``), configured for compact, key-order-preserving output.

Markdown has no autoescape in Jinja, so the Markdown environment gets one through ``finalize``:
every ``{{ value }}`` is escaped with ``md_escape`` unless it is ``MarkdownSafe`` (already
escaped, e.g. by the ``md_token`` filter, or produced by a number formatter).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import jinja2
from markupsafe import Markup

from lazarus_report.render import formatting as f
from lazarus_report.render.template_cache import VerifiedBytecodeCache

from .template_files import template_root


def _md_safe(fn: Callable[..., str]) -> Callable[..., f.MarkdownSafe]:
    """A formatter whose output is our own (numbers, units): safe as Markdown as is."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> f.MarkdownSafe:
        return f.MarkdownSafe(fn(*args, **kwargs))

    return wrapper


FILTERS: dict[str, Callable[..., Any]] = {
    "prob": _md_safe(f.fmt_prob),
    "nats": _md_safe(f.fmt_nats),
    "nats4": _md_safe(lambda x: f.fmt_nats(x, 4)),
    "rank": _md_safe(f.fmt_rank),
    "seconds": _md_safe(f.fmt_seconds),
    "delta": _md_safe(f.fmt_delta),
    "bar_width": f.bar_width,
    "visible": f.visible_token,
    "md": f.md_escape,
    "md_token": f.md_token,
    "md_block": f.md_fenced_block,
}


def _md_finalize(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (f.MarkdownSafe, int, float)):
        return value
    return f.md_escape(value)


def _configure(env: jinja2.Environment) -> jinja2.Environment:
    env.filters.update(FILTERS)
    # Compact JSON in key order; ensure_ascii stays on (json's default), so a lone surrogate
    # in a token becomes the escape "\\ud800" instead of bytes that are not UTF-8.
    env.policies["json.dumps_kwargs"] = {"sort_keys": False, "separators": (",", ":"), "allow_nan": False}
    return env


class _AssetLoader(jinja2.FileSystemLoader):
    """Templates as written, except the page's own stylesheets and scripts (``html/assets/*.css|js``), which
    every report inlines: their indentation and whole-line comments are left out (a few kB a page). Only
    leading whitespace and lines that are nothing but a comment go, so no code or string changes."""

    def get_source(self, environment: jinja2.Environment, template: str) -> Any:
        source, filename, uptodate = super().get_source(environment, template)
        if template.startswith("html/assets/") and template.endswith((".css", ".js")):
            source = compact_asset(source, css=template.endswith(".css"))
        return source, filename, uptodate


_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.S)


def compact_asset(source: str, *, css: bool) -> str:
    """``source`` without indentation, blank lines and whole-line comments (``/* */`` in CSS, ``//`` in JS)."""
    if css:
        source = _CSS_COMMENT.sub("", source)
    lines = (line.strip() for line in source.splitlines())
    return "\n".join(line for line in lines if line and not (not css and line.startswith("//"))) + "\n"


@functools.cache
def html_environment() -> jinja2.Environment:
    return _configure(
        jinja2.Environment(
            loader=_AssetLoader(template_root()),
            bytecode_cache=VerifiedBytecodeCache(),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
    )


@functools.cache
def markdown_environment() -> jinja2.Environment:
    return _configure(
        jinja2.Environment(
            loader=jinja2.FileSystemLoader(template_root()),
            bytecode_cache=VerifiedBytecodeCache(),
            autoescape=False,
            finalize=_md_finalize,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
    )


def html_json(value: Any) -> Markup:
    """JSON as ``|tojson`` writes it (safe inside ``<script>``), for data serialized before the page renders."""
    env = html_environment()
    return jinja2.utils.htmlsafe_json_dumps(
        value, dumps=env.policies["json.dumps_function"], **env.policies["json.dumps_kwargs"]
    )
