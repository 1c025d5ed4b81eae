"""``lazarus report``: work with saved results."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from ..core.errors import LazarusError
from .common import CONTEXT, TIMINGS_OPTION, append_step_summary, check_output_paths, emit, run_guarded


@click.group()
def report() -> None:
    """Work with saved results."""


@report.command(context_settings=CONTEXT)
@click.argument("source", metavar="RESULT")
@click.option("--html", "html", metavar="FILE", help="Write a self-contained HTML report.")
@click.option(
    "--markdown",
    "markdown",
    metavar="FILE",
    help="Write a Markdown report (also appended to $GITHUB_STEP_SUMMARY when set).",
)
@click.option("--static", is_flag=True, help="HTML without scripts (static SVG charts only).")
@TIMINGS_OPTION
@click.option("-q", "--quiet", is_flag=True, help="Do not print the text report.")
def render(source: str, html: str | None, markdown: str | None, static: bool, timings: bool, quiet: bool) -> None:
    """Render a saved result (an -o JSON, or a report HTML) as HTML, Markdown and text."""

    def body() -> None:
        check_output_paths((html, "--html"), (markdown, "--markdown"))
        if Path(source).is_dir():
            raise LazarusError(f"{source} is a directory, not a result file (an -o JSON or a report HTML)")
        if not Path(source).is_file():
            raise LazarusError(f"no such file: {source}")
        from ..render import load_result_file

        result = load_result_file(source)
        emit(result, output=None, html=html, markdown=markdown, static=static, quiet=quiet, timings=timings)

    run_guarded(body)


@report.command(context_settings=CONTEXT)
@click.argument("baseline", metavar="BASELINE")
@click.argument("candidate", metavar="CANDIDATE")
@click.option("-o", "--output", "output", metavar="FILE", help="Save the diff as JSON.")
@click.option("--html", "html", metavar="FILE", help="Write a self-contained HTML page (static, with a chart).")
@click.option(
    "--markdown",
    "markdown",
    metavar="FILE",
    help="Write Markdown sized for a pull-request comment (also appended to $GITHUB_STEP_SUMMARY when set).",
)
@click.option("--junit", "junit", metavar="FILE", help="Write JUnit XML: one test case per case, regressions fail.")
@click.option(
    "--tolerance",
    type=click.FloatRange(0.0, 1.0),
    default=0.02,
    show_default=True,
    help="A change of P(target) up to this much (absolute probability) counts as unchanged.",
)
@click.option(
    "--fail-on",
    "fail_on",
    type=click.Choice(["any-drop", "new-failures"]),
    default="any-drop",
    show_default=True,
    help="Exit 1 on a newly failing case or a P(target) drop beyond --tolerance (any-drop), "
    "or on newly failing cases only (new-failures).",
)
@click.option("-q", "--quiet", is_flag=True, help="Do not print the text view.")
def diff(
    baseline: str,
    candidate: str,
    output: str | None,
    html: str | None,
    markdown: str | None,
    junit: str | None,
    tolerance: float,
    fail_on: str,
    quiet: bool,
) -> None:
    """Diff a result (suite, compare or analyze JSON) against its baseline.

    Exit 0: no regression; 1: a regression (see --fail-on); 2: bad input. Cases are matched by id (suites) or by
    prompt and tracked tokens; added and removed cases are listed; docs/usage.md describes the verdicts.
    """

    def body() -> int:
        outputs = ((output, "-o"), (html, "--html"), (markdown, "--markdown"), (junit, "--junit"))
        check_output_paths(*outputs)
        inputs = {os.path.realpath(baseline): "BASELINE", os.path.realpath(candidate): "CANDIDATE"}
        for path, option in outputs:
            if path is not None and os.path.realpath(path) in inputs:
                what = inputs[os.path.realpath(path)]
                raise LazarusError(f"{option} {path} is the {what} file: the diff never overwrites its inputs")
        from ..results.diff import diff_results

        before = _read_for_diff(baseline, "BASELINE")
        after = _read_for_diff(candidate, "CANDIDATE")
        result = diff_results(before, after, tolerance=tolerance, fail_on=fail_on, paths=(baseline, candidate))
        _emit_diff(result, output=output, html=html, markdown=markdown, junit=junit, quiet=quiet)
        return 1 if result.regressed else 0

    sys.exit(run_guarded(body))


def _read_for_diff(path: str, what: str) -> Any:
    """What the diff reads of a result file: a result JSON (read as parsed JSON: fast) or an HTML report."""
    import json

    from ..results.codec import ResultFormatError
    from ..results.diff import digest_result

    p = Path(path)
    if p.is_dir():
        raise LazarusError(f"{what} {path} is a directory, not a result file")
    if not p.is_file():
        raise LazarusError(f"{what}: no such file: {path}")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise LazarusError(f"{what} {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
        if text.lstrip()[:1] == "<":  # an HTML report with its result embedded
            from ..render import load_result_file

            return digest_result(load_result_file(path))
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ResultFormatError(f"not JSON: {exc}") from None
        return digest_result(data)
    except UnicodeDecodeError:
        raise LazarusError(f"{what} {path}: not a UTF-8 text file (expected a result JSON)") from None
    except ResultFormatError as exc:
        raise LazarusError(f"{what} {path}: {str(exc).removeprefix(f'{path}: ')}") from None


def _emit_diff(
    result: Any, *, output: str | None, html: str | None, markdown: str | None, junit: str | None, quiet: bool
) -> None:
    """Render every requested file, write them all or none, append the Markdown to the step summary, print."""
    from ..core.files import write_files_atomic

    files: dict[Any, bytes] = {}
    if output:
        files[output] = (result.to_json() + "\n").encode("utf-8")
    if html:
        from ..render.diff_html import render_diff_html

        files[html] = render_diff_html(result).encode("utf-8")
    if markdown:
        from ..render.diff_markdown import render_diff_markdown

        files[markdown] = render_diff_markdown(result).encode("utf-8")
    if junit:
        from ..render.diff_junit import render_diff_junit

        files[junit] = render_diff_junit(result).encode("utf-8")
    write_files_atomic(files)
    if markdown:
        append_step_summary(files[markdown].decode("utf-8"))
    if not quiet:
        from ..render.diff_text import render_diff_text

        click.echo(render_diff_text(result), nl=False)
