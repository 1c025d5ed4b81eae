"""``lazarus introspect sweep``: a suite against a base at every training checkpoint (registered on the
``introspect`` group by ``cli/introspect.py``)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import click

from ..core.errors import LazarusError, printable
from .common import (
    CONTEXT,
    check_output_paths,
    emit,
    lens_option,
    memory_option,
    output_options,
    parse_max_memory,
    preflight,
    run_guarded,
)


@click.command(context_settings=CONTEXT)
@click.argument("suite_file", metavar="SUITE_FILE")
@click.argument("rest", nargs=-1, metavar="")
@click.option("-m", "--model", "model", metavar="BASE", help="The base model every checkpoint is compared with.")
@click.option(
    "--adapters",
    "adapters",
    multiple=True,
    metavar="DIR|FILE...",
    help="An mlx-lm adapter folder (every checkpoint in it, in training order), or several adapter folders or "
    "checkpoint files in the order given (--adapters A B C).",
)
@click.option(
    "--models", "models", multiple=True, metavar="MODEL...", help="Whole models as the steps (--models M1 M2 ...)."
)
@click.option("--embedding-scale", "embedding_scale", type=float, default=None, help="Embedding scale override.")
@lens_option("logit (default: the suite file's defaults.lens, else logit)", several=False)
@click.option("--precision", type=click.Choice(["auto", "float32", "native"]), default="auto", show_default=True)
@click.option("--junit", "junit", metavar="FILE", help="Write JUnit XML (a test suite per step).")
@click.option("--attribution", is_flag=True, help="Also find which layers carry each case's change, at each step.")
@click.option(
    "--fail-on",
    type=click.Choice(["last", "any"]),
    default="last",
    show_default=True,
    help="Exit 1 when the last step fails an expectation (last), or when any step does (any).",
)
@click.option("--no-resume", is_flag=True, help="Run every step, even those already in the -o file.")
@memory_option
@click.option("--batch-size", "batch_size", type=int, default=None, metavar="N", help="Cases per forward pass.")
@output_options
def sweep(**opts: Any) -> None:
    """Run a suite against a base at every checkpoint: exit 0 if the last step passes, 1 if it fails, 2 on bad input.

    `sweep SUITE -m BASE --adapters DIR` reads every checkpoint of an mlx-lm adapter folder
    (0000100_adapters.safetensors, ...) in training order. With -o FILE from an earlier sweep, the steps already
    in it (matched by the checkpoint's sha256) are read, not run again. docs/sweep.md.
    """
    sys.exit(run_guarded(lambda: _sweep(**opts)))


def _steps(adapters: tuple[str, ...], models: tuple[str, ...], argv_rest: list[str]) -> list[Any]:
    """The steps named on the command line (extra arguments after --adapters/--models extend their list)."""
    from ..models.checkpoints import folder_checkpoints, listed_checkpoints, model_steps

    if adapters and models:
        raise LazarusError("give --adapters or --models, not both")
    if models:
        return model_steps([*models, *argv_rest])
    if argv_rest and not adapters:
        raise LazarusError(f"unexpected argument {argv_rest[0]!r} (steps follow --adapters or --models)")
    if not adapters:
        raise LazarusError("give the checkpoints: --adapters DIR (or A B C), or --models M1 M2 ...")
    names = [*adapters, *argv_rest]
    if len(names) == 1 and Path(names[0]).is_dir():
        return folder_checkpoints(names[0])  # every checkpoint of one adapter folder
    return listed_checkpoints(names)


def _previous(output: str | None, no_resume: bool) -> Any:
    """The earlier sweep in ``-o`` (to resume), or None. A file there that is not a sweep is never replaced."""
    if output is None or no_resume or not Path(output).is_file():
        return None
    from ..results.codec import ResultFormatError
    from ..results.sweep import SweepResult

    try:
        return SweepResult.load(output)
    except (ResultFormatError, UnicodeDecodeError, OSError) as exc:
        raise LazarusError(
            f"-o {output} exists and is not a sweep result ({exc}); remove it or choose another file"
        ) from None


def _sweep(
    suite_file: str,
    model: str | None,
    adapters: tuple[str, ...],
    models: tuple[str, ...],
    embedding_scale: float | None,
    lens: str | None,
    precision: str,
    junit: str | None,
    attribution: bool,
    fail_on: str,
    no_resume: bool,
    max_memory: str | None,
    batch_size: int | None,
    output: str | None,
    html: str | None,
    markdown: str | None,
    static: bool,
    timings: bool,
    quiet: bool,
    rest: tuple[str, ...] = (),
) -> int:
    from ..core.config import AnalysisConfig
    from ..engine.batched import check_batch_size
    from ..models.checkpoints import check_checkpoints
    from ..suites.spec import load_suite

    check_output_paths((output, "-o"), (html, "--html"), (markdown, "--markdown"), (junit, "--junit"))
    check_batch_size(batch_size)
    budget = parse_max_memory(max_memory)
    if model is None:
        raise LazarusError("give the base model: -m BASE")
    spec = load_suite(suite_file)  # every suite-file error comes before any model loads
    lens = lens if lens is not None else spec.lens or "logit"
    steps = _steps(adapters, models, list(rest))
    check_checkpoints(steps)
    previous = _previous(output, no_resume)
    preflight([model, *[s.model for s in steps if s.model]], AnalysisConfig(top_k=1, lens=lens))

    from ..commands.sweep import resumable, run_sweep

    to_run = len(steps)
    if previous is not None:
        if resumable(previous, spec, model, lens, attribution):
            done = {s.sha256 for s in previous.steps if s.sha256 is not None}
            to_run = sum(1 for s in steps if s.sha256 is None or s.sha256 not in done)
        elif not quiet:
            click.echo(
                f"Note: {printable(str(output))} holds a sweep of another suite, base, lens, attribution or lazarus version: "
                "every step runs again",
                err=True,
            )
    show_bar = not quiet and sys.stderr.isatty()
    bar = click.progressbar(length=len(spec.cases) * (1 + to_run), label="cases", file=sys.stderr, show_pos=True)
    with bar if show_bar else contextlib.nullcontext():
        result = run_sweep(
            spec,
            model,
            steps,
            embedding_scale=embedding_scale,
            precision=precision,
            lens=lens,
            attribution=attribution,
            batch_size=batch_size,
            max_memory=budget,
            fail_on=fail_on,
            resume=previous,
            progress=bar.update if show_bar else None,
        )
    emit(result, output=output, html=html, markdown=markdown, static=static, quiet=quiet, junit=junit, timings=timings)
    status = result.status
    if status == "error":
        click.echo(f"Error: {printable('a case could not run at a step (see the report)')}", err=True)
    return 2 if status == "error" else 1 if status == "failed" else 0
