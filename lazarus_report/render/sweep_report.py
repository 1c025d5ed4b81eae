"""A checkpoint sweep as text, Markdown, HTML and JUnit (``introspect sweep``; ``report render`` of its JSON).

The HTML is self-contained and static (no scripts): the steps, what started to pass or fail, one compact chart
per measure over the steps (``sweep_chart``), and the case table. The sweep is embedded as JSON
(``script#lazarus-result``), so ``report render`` reads the page back like the result file."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET

from markupsafe import Markup

from ..results.sweep import SweepResult
from .environment import html_environment, html_json, markdown_environment
from .formatting import clean_text
from .sweep_chart import sweep_charts
from .sweep_view import build_sweep_view

MAX_MARKDOWN_CASES = 100


def render_sweep_html(result: SweepResult) -> str:
    view = build_sweep_view(result)
    version = result.versions.get("lazarus-report", "")
    report = {
        **{f.name: getattr(view, f.name) for f in dataclasses.fields(view)},
        "generator": clean_text(f"lazarus-report {version}".strip()),
    }
    charts = [(chart_id, title, Markup(svg)) for chart_id, title, svg in sweep_charts(result)]  # texts escaped
    return (
        html_environment()
        .get_template("html/sweep.html.j2")
        .render(
            report=report,
            charts=charts,
            result_json=html_json(result.to_dict()),
            result_script_id="lazarus-result",
            static=True,
            specs={},
            vega_bundle=None,
            summary_html="",
        )
    )


def render_sweep_markdown(result: SweepResult) -> str:
    template = markdown_environment().get_template("markdown/sweep.md.j2")
    return template.render(view=build_sweep_view(result), max_cases=MAX_MARKDOWN_CASES)


def render_sweep_text(result: SweepResult) -> str:
    """The terminal view: the verdict, cases by verdict per step, and the cases whose verdict changed."""
    view = build_sweep_view(result)
    lines = [f"Checkpoint sweep: {view.title}", f"{view.verdict}: {view.summary} ({view.policy})", ""]
    width = max([len(s.label) for s in view.steps] + [4])
    lines.append(f"{'step':<{width}}  passed  failed  errors")
    for s in view.steps:
        lines.append(f"{s.label:<{width}}  {s.passed:>6}  {s.failed:>6}  {s.errors:>6}")
    changed = [c for c in view.cases if c.changed]
    if changed:
        lines += ["", "Cases whose verdict changed over the steps:"]
        for c in changed:
            when = (
                f"passes from {c.started_passing}"
                if c.started_passing
                else f"fails from {c.started_failing}"
                if c.started_failing
                else "changes"
            )
            lines.append(f"  {c.id}: {' '.join(c.marks)}  P(target) {' -> '.join(c.probs)}  ({when})")
    else:
        lines += ["", "No case changed its verdict over the steps."]
    return "\n".join(clean_text(line) for line in lines) + "\n"


def render_sweep_junit(result: SweepResult) -> str:
    """JUnit XML: one ``<testsuite>`` per step, one ``<testcase>`` per expectation (``classname`` SUITE.CASE).
    With ``fail_on="last"`` only the last step's failures are failures; earlier steps' are reported as
    skipped with their message, so a CI system shows the history without failing on it."""
    root = ET.Element("testsuites", {"name": f"lazarus sweep {result.name}"})
    for k, step in enumerate(result.steps):
        gating = result.fail_on == "any" or k == len(result.steps) - 1
        ts = ET.SubElement(root, "testsuite", {"name": f"{result.name} @ {step.label}"})
        for case in step.cases:
            for check in case.checks or []:
                tc = ET.SubElement(ts, "testcase", {"classname": f"{result.name}.{case.id}", "name": check.name})
                if check.status in ("failed", "error") and gating:
                    ET.SubElement(
                        tc, "failure" if check.status == "failed" else "error", {"message": clean_text(check.message)}
                    )
                elif check.status != "passed":
                    ET.SubElement(tc, "skipped", {"message": clean_text(check.message)})
            if case.error is not None and not case.checks:
                tc = ET.SubElement(ts, "testcase", {"classname": f"{result.name}.{case.id}", "name": "run"})
                ET.SubElement(tc, "error" if gating else "skipped", {"message": clean_text(case.error)})
        ts.set("tests", str(len(ts)))
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
