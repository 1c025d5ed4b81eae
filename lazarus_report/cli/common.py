"""What every command shares: the error guard and exit codes, output-path checks, shared options, emitting results."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

from ..core.errors import LazarusError, printable
from ..models.distributed import is_output_rank, launch_rank

# Exit codes: 0 success, 1 suite expectations failed, 2 usage or input error, 3 internal error
# (kept apart from 1 so a CI gate never mistakes a crash for a verdict), 130 interrupted (SIGINT),
# 143 terminated (SIGTERM).
INTERNAL_ERROR = 3


TERMINATED = 143


# OSErrors that say what the environment lacks (room, a writable mount), not a defect: exit 2 like bad input.
_ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})


class Terminated(KeyboardInterrupt):
    """SIGTERM (how CI runners stop a job), raised in the main thread as SIGINT raises ``KeyboardInterrupt``:
    every ``with`` and ``finally`` that removes temporary files on Ctrl-C runs alike."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Any:
    """While the body runs, SIGTERM raises ``Terminated`` (once: a second SIGTERM during the clean-up is
    ignored, so the clean-up finishes). Main thread only (Python delivers signals there)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def fail(message: str, code: int = 2) -> None:
    rank = launch_rank()  # under mlx.launch every rank reports its own failure, rank 0 unprefixed
    click.echo(f"Error: {f'rank {rank}: ' if rank else ''}{printable(message)}", err=True)
    sys.exit(code)


def show_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    """Warnings (a damaged cache entry rebuilt ...) as one line on stderr, not Python's two-line form.
    Under mlx.launch rank 0 alone speaks: the other ranks see the same warnings. (Asked at each warning:
    the rank is known only once ``join_ranks`` has joined the group.)"""
    if not is_output_rank():
        return
    click.echo(f"Warning: {printable(str(message))}", err=True)


def run_guarded(fn: Callable[[], Any]) -> Any:
    """Run a command body: user errors become one line on stderr and a non-zero exit."""
    import warnings

    from ..results.codec import ResultFormatError

    shown = warnings.showwarning
    warnings.showwarning = show_warning
    try:
        with sigterm_as_interrupt():
            return fn()
    except (LazarusError, ResultFormatError) as exc:
        fail(str(exc))
    except Terminated:
        fail("terminated (SIGTERM)", TERMINATED)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except MemoryError:
        fail("out of memory (try a shorter prompt or fewer layers)", INTERNAL_ERROR)
    except OSError as exc:
        if exc.errno not in _ENVIRONMENT_ERRNOS:  # a full disk or read-only mount where no check named it
            _internal(exc)
        where = f"{exc.filename}: " if exc.filename else ""
        fail(f"{where}{exc.strerror or exc}")
    except Exception as exc:
        _internal(exc)
    finally:
        warnings.showwarning = shown


def _internal(exc: Exception) -> None:
    if os.environ.get("LAZARUS_DEBUG"):
        raise exc
    first = (str(exc).strip().splitlines() or [""])[0]
    fail(f"internal error: {type(exc).__name__}: {first} (set LAZARUS_DEBUG=1 for the traceback)", INTERNAL_ERROR)


def check_output_path(path: str | None, option: str) -> None:
    """Fail before any model work when an output file could not be written: a temporary file is
    really created (and removed) in the target's directory."""
    if path is None:
        return
    if not is_output_rank():  # under mlx.launch only rank 0 writes (its host may be the only one with the path)
        return
    from ..core.files import OutputPathError, probe_writable

    try:
        probe_writable(path)
    except OutputPathError as exc:
        raise LazarusError(f"{option} {path}: {exc}" if path else f"{option}: the file name is empty") from None
    except OSError as exc:
        raise LazarusError(f"{option} {path}: {exc.strerror or exc}") from None


def check_output_paths(*pairs: tuple[str | None, str]) -> None:
    """Each output path writable, and no file named by two options (one would overwrite the other)."""
    seen: dict[str, str] = {}
    for path, option in pairs:
        check_output_path(path, option)
        if path is None:
            continue
        real = os.path.realpath(path)
        if real in seen and not _is_write_through(real):
            raise LazarusError(f"{seen[real]} and {option} name the same file {path}: give each output its own file")
        seen[real] = option


def _is_write_through(path: str) -> bool:
    """A FIFO or character device (``/dev/null``): several outputs may share it."""
    import stat

    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def check_text(text: str, what: str) -> None:
    from ..core.config import check_text as check

    check(text, what)


def parse_layers(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        layers = [int(x) for x in text.replace(" ", "").split(",") if x != ""]
    except ValueError:
        raise LazarusError(f"--layers {text!r}: expected comma-separated layer indices, e.g. 0,4,8") from None
    if not layers:
        raise LazarusError(f"--layers {text!r}: no layer index given (e.g. --layers 0,4,8)")
    return layers


def preflight(models: list[str], config: Any, scales: Sequence[tuple[float | None, str]] = ()) -> list[int | None]:
    """Everything that needs no weights, before any model loads: the settings, each model found,
    layer indices and ``--top-k`` against each model's header or config. Returns each model's number of layers
    (None where its header or config does not say)."""
    from ..core.config import LENS_ALL, LENS_KINDS, check_embedding_scale
    from ..models.resolve import model_dimensions, resolve_model

    config.validate()
    for scale, option in scales:
        check_embedding_scale(scale, option)
    for spec in [config.lens, *getattr(config, "extra_lenses", [])]:
        if spec not in (*LENS_KINDS, LENS_ALL):  # a lens directory: verify the artefact before any model loads
            from ..lens.learned import Lens

            Lens.load(spec)
    depths: list[int | None] = []
    for n, model_id in enumerate(models, start=1):
        try:
            num_layers, vocab_size = model_dimensions(resolve_model(model_id))
            config.validate(num_layers, vocab_size)
        except LazarusError as exc:
            raise LazarusError(f"model {n} ({model_id}): {exc}" if len(models) > 1 else str(exc)) from None
        depths.append(num_layers)
    return depths


def limit_grid_to_heatmap(
    config: Any, depths: list[int | None], *, output: str | None, html: str | None, two: bool
) -> None:
    """--html without -o: the grid only at the last positions the HTML heatmap shows (the JSON's grid covers
    every position, so with -o the whole grid is computed; the Markdown and the terminal show no grid).
    A model whose depth is unknown before loading keeps the whole grid."""
    if not html or output or any(depth is None for depth in depths):
        return
    from ..core.config import select_layers
    from ..render.report_model import COMPARE_HEATMAP_MAX_CELLS, HEATMAP_MAX_CELLS, heatmap_positions

    cells = COMPARE_HEATMAP_MAX_CELLS if two else HEATMAP_MAX_CELLS
    config.grid_last_positions = max(
        heatmap_positions(
            len(select_layers(config.layer_strategy, depth, config.layer_step, config.custom_layers)), cells
        )
        for depth in depths
        if depth is not None
    )


def distributed_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--distributed MODE``: how models are sharded when the command runs under ``mlx.launch``."""
    from ..models.distributed import MODES

    return click.option(
        "--distributed",
        "distributed",
        type=click.Choice(MODES),
        default="auto",
        show_default=True,
        help="Under mlx.launch: shard the model over the ranks, tensor parallel or pipeline "
        "(auto: tensor where the model allows it; docs/distributed.md).",
    )(fn)


def join_ranks(opts: dict[str, Any]) -> dict[str, Any]:
    """Pop ``--distributed``; started by ``mlx.launch`` (or asked for a mode), join the ranks so models
    load sharded over them."""
    from ..models import distributed

    mode = opts.pop("distributed")
    if mode != "auto" or distributed.launched():
        distributed.enable(mode)
    return opts


def answer_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--answer TEXT`` | ``--generate N`` [``--stop S`` ...]: a whole answer after the prompt, read token by token."""
    fn = click.option(
        "--stop",
        "stop",
        multiple=True,
        metavar="TEXT",
        help="With --generate: end the answer before this text (repeatable).",
    )(fn)
    fn = click.option(
        "--generate",
        "generate",
        type=int,
        default=None,
        metavar="N",
        help="Let the model write up to N tokens greedily (stops at its end-of-sequence token) and read them.",
    )(fn)
    return click.option(
        "--answer",
        "answer",
        metavar="TEXT",
        default=None,
        help="Read this answer after the prompt, token by token (teacher-forced).",
    )(fn)


def memory_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--max-memory",
        "max_memory",
        metavar="SIZE",
        help="Memory the model may use (e.g. 250MB, 2GB): beyond it, weights stay as stored and each block "
        "is dequantized to float32 as it runs.",
    )(fn)


def parse_max_memory(text: str | None) -> int | None:
    """``--max-memory`` in bytes (None when not given); a bad size is a one-line error before any load."""
    if text is None:
        return None
    from ..models.streamed import parse_size

    return parse_size(text)


def lens_option(default: str, several: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--lens KIND|DIR`` (``default`` says what applies without it); ``several``: a comma list or ``all`` too
    (the first is the primary lens, the others are shown beside it)."""
    more = (
        " Several: tuned,linear (the first is the primary; the report can switch between them), or all"
        " (logit and every lens fitted or shipped for the model)."
        if several
        else ""
    )
    return click.option(
        "--lens",
        "lens",
        default=None,
        metavar="KIND|DIR" + ("[,...]|all" if several else ""),
        help=f"{default}, linear, tuned or jacobian (fitted with `lazarus lens fit`, or shipped), or a lens directory."
        + more,
    )


def note_lens_all(config: Any, results: Sequence[Any], quiet: bool) -> None:
    """``--lens all`` found nothing but the logit lens for a model: say so on stderr (the report shows one lens)."""
    from ..core.config import LENS_ALL

    if quiet or LENS_ALL not in config.extra_lenses:
        return
    for result in results:
        if not result.lens_views and result.lens_kind == "logit":
            click.echo(
                f"note: --lens all: no learned lens is fitted or shipped for {printable(result.model.model_id)}; "
                "showing the logit lens only (lazarus lens fit --kind tuned fits one)",
                err=True,
            )


def one_lens(lens: str | None, default: str | None) -> str:
    """``suite``'s ``--lens`` (else the suite file's ``default``, else logit): every case is read through one lens,
    so a list or ``all`` is refused (exit 2)."""
    if lens is not None and ("," in lens or lens == "all"):
        raise LazarusError(
            f"suite reads every case through one lens: --lens takes one kind or lens directory here (got {lens!r})"
        )
    return lens if lens is not None else default or "logit"


TIMINGS_OPTION = click.option(
    "--timings",
    is_flag=True,
    help="Show load and run times in the HTML and Markdown reports (without it, the same analysis writes "
    "the same bytes every run; -o JSON always has them).",
)


def prefetch_html(html: str | None, static: bool, suite: bool = False) -> None:
    """With --html, start loading what the report needs (charts code, vl-convert, templates, the Vega bundle)
    on a background thread while the model loads and runs."""
    if html:
        from ..render.prefetch import start_html_prefetch

        start_html_prefetch(static=static, suite=suite)


def output_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for decorator in reversed(
        [
            click.option("-o", "--output", "output", metavar="FILE", help="Save the result as JSON."),
            click.option("--html", "html", metavar="FILE", help="Write a self-contained HTML report."),
            click.option(
                "--markdown",
                "markdown",
                metavar="FILE",
                help="Write a Markdown report (also appended to $GITHUB_STEP_SUMMARY when set).",
            ),
            click.option("--static", is_flag=True, help="HTML without scripts (static SVG charts only)."),
            TIMINGS_OPTION,
            click.option("-q", "--quiet", is_flag=True, help="Do not print the text report."),
        ]
    ):
        fn = decorator(fn)
    return fn


_FAST_EXIT = False  # set by ``entry``: the process leaves with os._exit, nothing is torn down


def enable_fast_exit() -> None:
    """The process will leave with ``os._exit`` (``main.entry``): objects kept until exit are never freed."""
    global _FAST_EXIT
    _FAST_EXIT = True


_KEPT: list[Any] = []


def keep_until_exit(obj: Any) -> None:
    """Under ``entry`` keep ``obj`` (a loaded model) alive: freeing a model's arrays costs 60-140 ms that
    the exit would spare. In-process callers of ``main`` (tests) free it as usual."""
    if _FAST_EXIT:
        _KEPT.append(obj)


def emit(
    result: Any,
    *,
    output: str | None,
    html: str | None,
    markdown: str | None,
    static: bool,
    quiet: bool,
    junit: str | None = None,
    timings: bool = False,
) -> None:
    """Render every requested file, write them all or none, append the Markdown to
    ``$GITHUB_STEP_SUMMARY`` (best effort), then print the text view. Under ``mlx.launch`` only rank 0 does.
    The HTML and Markdown show timings only with ``timings`` (the JSON and the text view always do)."""
    if not is_output_rank():
        return
    from ..core.files import write_files_atomic
    from ..render.files import render_report_files
    from ..results.comparison import ComparisonResult
    from ..results.suite import SuiteResult

    files: dict[Any, bytes] = {}
    if output:
        files[output] = (result.to_json() + "\n").encode("utf-8")
    if junit:
        from ..render.junit import render_junit
        from ..render.sweep_report import render_sweep_junit
        from ..results.sweep import SweepResult

        files[junit] = (render_sweep_junit if isinstance(result, SweepResult) else render_junit)(result).encode("utf-8")
    files.update(render_report_files(result, html_path=html, markdown_path=markdown, static=static, timings=timings))
    write_files_atomic(files)
    if markdown:
        append_step_summary(files[markdown].decode("utf-8"))
    if not quiet:
        from ..render.text import render_comparison_text, render_suite_text, render_text
        from ..results.drift import DriftResult
        from ..results.sweep import SweepResult

        if isinstance(result, SweepResult):
            from ..render.sweep_report import render_sweep_text

            text = render_sweep_text(result)
        elif isinstance(result, DriftResult):
            from ..render.drift_text import render_drift_text

            text = render_drift_text(result)
        elif isinstance(result, SuiteResult):
            text = render_suite_text(result)
        elif isinstance(result, ComparisonResult):
            text = render_comparison_text(result)
        else:
            text = render_text(result)
        click.echo(text, nl=False)


def append_step_summary(markdown: str) -> None:
    """On GitHub Actions (``$GITHUB_STEP_SUMMARY`` names a file) append the Markdown report there.
    Best effort: a summary that cannot be written is a warning, never a failed run."""
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
    if not summary_file:
        return
    try:
        with open(summary_file, "a", encoding="utf-8") as fh:
            fh.write(markdown + "\n")
    except OSError as exc:
        click.echo(
            f"Warning: {printable(f'cannot append to $GITHUB_STEP_SUMMARY ({summary_file}): {exc.strerror or exc}')}",
            err=True,
        )


def parse_track_list(values: tuple[str, ...]) -> list[str]:
    """`--track a,b --track c` -> ["a", "b", "c"]; a bare comma-free value is kept whole."""
    out: list[str] = []
    for v in values:
        out.extend(v.split(",") if "," in v else [v])
    return out
