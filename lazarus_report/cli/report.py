"""``lazarus report``: work with saved results."""

from __future__ import annotations

from pathlib import Path

import click

from ..core.errors import LazarusError
from .common import CONTEXT, TIMINGS_OPTION, check_output_paths, emit, run_guarded


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
