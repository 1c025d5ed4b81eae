"""A suite's drift figures (``suite --drift``) and its ``max_drift_js`` checks, in the suite's terminal text,
Markdown and HTML: the summary sentences, the checks, and (HTML) the drift page's body."""

from __future__ import annotations

from markupsafe import Markup

from ..core.errors import printable
from ..results.suite import PASSED, SuiteResult
from .drift_chart import drift_chart_html
from .drift_markdown import render_drift_markdown
from .drift_view import build_drift_view
from .environment import html_environment
from .formatting import md_escape


def has_drift(suite: SuiteResult) -> bool:
    return suite.drift is not None or bool(suite.drift_checks)


def suite_drift_text(suite: SuiteResult) -> list[str]:
    """Lines for the terminal (empty without drift figures or checks)."""
    if not has_drift(suite):
        return []
    lines = ["", "Drift on neutral text:"]
    if suite.drift is not None:
        view = build_drift_view(suite.drift)
        lines += [f"  {s}" for s in view.summary]
    for c in suite.drift_checks:
        lines.append(f"  {c.status.upper() if c.status != PASSED else 'ok':<7} (line {c.line}) {c.message}")
    return [printable(line) for line in lines]


def suite_drift_markdown(suite: SuiteResult) -> str:
    """A Markdown section (empty without drift figures or checks)."""
    if not has_drift(suite):
        return ""
    out = ["", "### Drift on neutral text", ""]
    if suite.drift_checks:
        out += ["| Check | Status | Expected | Actual |", "|---|---|---|---|"]
        out += [
            f"| {md_escape(c.name)} | {c.status} | {md_escape(c.expected)} | {md_escape(c.actual)} |"
            for c in suite.drift_checks
        ]
        out.append("")
    if suite.drift is None:
        out.append("Not measured: run the suite with `--drift` (two models).")
    else:  # the drift report, one heading level down
        body = render_drift_markdown(suite.drift)
        out.append("\n".join(("#" + line) if line.startswith("##") else line for line in body.splitlines()))
    return "\n".join(out) + "\n"


def suite_drift_html(suite: SuiteResult) -> Markup:
    """The HTML section (empty without drift figures or checks); every string escaped by the template."""
    if not has_drift(suite):
        return Markup("")
    view = build_drift_view(suite.drift) if suite.drift is not None else None
    chart = Markup(drift_chart_html(suite.drift)) if suite.drift is not None else Markup("")
    template = html_environment().get_template("html/drift_suite.html.j2")
    return Markup(template.render(report=view, checks=suite.drift_checks, chart_svg=chart))


def with_drift_section(page: str, suite: SuiteResult) -> str:
    """The suite page with its drift section at the end of the main part."""
    if not has_drift(suite):
        return page
    head, sep, tail = page.partition("</main>")  # user strings are escaped: the first one is the page's own
    return head + str(suite_drift_html(suite)) + sep + tail
