"""The ``lazarus`` command: a thin layer over the Python API.

Parse options, call the API, pick renderers, map errors to one line and an exit code.
Heavy modules (mlx, mlx-lm, transformers, altair) are imported inside the commands, so
``lazarus --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from .distributed import is_output_rank, launch_rank
from .errors import LazarusError, printable

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


def _fail(message: str, code: int = 2) -> None:
    rank = launch_rank()  # under mlx.launch every rank reports its own failure, rank 0 unprefixed
    click.echo(f"Error: {f'rank {rank}: ' if rank else ''}{printable(message)}", err=True)
    sys.exit(code)


def _show_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    """Warnings (a damaged cache entry rebuilt ...) as one line on stderr, not Python's two-line form.
    Under mlx.launch rank 0 alone speaks: the other ranks see the same warnings. (Asked at each warning:
    the rank is known only once ``join_ranks`` has joined the group.)"""
    if not is_output_rank():
        return
    click.echo(f"Warning: {printable(str(message))}", err=True)


def run_guarded(fn: Callable[[], Any]) -> Any:
    """Run a command body: user errors become one line on stderr and a non-zero exit."""
    import warnings

    from .result import ResultFormatError

    shown = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        with sigterm_as_interrupt():
            return fn()
    except (LazarusError, ResultFormatError) as exc:
        _fail(str(exc))
    except Terminated:
        _fail("terminated (SIGTERM)", TERMINATED)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except MemoryError:
        _fail("out of memory (try a shorter prompt or fewer layers)", INTERNAL_ERROR)
    except OSError as exc:
        if exc.errno not in _ENVIRONMENT_ERRNOS:  # a full disk or read-only mount where no check named it
            _internal(exc)
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"{where}{exc.strerror or exc}")
    except Exception as exc:
        _internal(exc)
    finally:
        warnings.showwarning = shown


def _internal(exc: Exception) -> None:
    if os.environ.get("LAZARUS_DEBUG"):
        raise exc
    first = (str(exc).strip().splitlines() or [""])[0]
    _fail(f"internal error: {type(exc).__name__}: {first} (set LAZARUS_DEBUG=1 for the traceback)", INTERNAL_ERROR)


def check_output_path(path: str | None, option: str) -> None:
    """Fail before any model work when an output file could not be written: a temporary file is
    really created (and removed) in the target's directory."""
    if path is None:
        return
    if not is_output_rank():  # under mlx.launch only rank 0 writes (its host may be the only one with the path)
        return
    from .result import OutputPathError, probe_writable

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
    from .api import check_text as check

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
    from .api import LENS_KINDS, check_embedding_scale
    from .models.resolve import model_dimensions, resolve_model

    config.validate()
    for scale, option in scales:
        check_embedding_scale(scale, option)
    if config.lens not in LENS_KINDS:  # a lens directory: verify the artefact before any model loads
        from .lenses import Lens

        Lens.load(config.lens)
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
    from .api import select_layers
    from .render.report_model import COMPARE_HEATMAP_MAX_CELLS, HEATMAP_MAX_CELLS, heatmap_positions

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
    from .distributed import MODES

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
    from . import distributed

    mode = opts.pop("distributed")
    if mode != "auto" or distributed.launched():
        distributed.enable(mode)
    return opts


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
    from .models.streamed import parse_size

    return parse_size(text)


def lens_option(default: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--lens KIND|DIR`` (``default`` says what applies without it)."""
    return click.option(
        "--lens",
        "lens",
        default=None,
        metavar="KIND|DIR",
        help=f"{default}, linear or tuned (fitted with `lazarus lens fit`), or a lens directory.",
    )


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="lazarus-report", prog_name="lazarus")
def main() -> None:
    """Logit-lens analysis of language models: terminal, JSON, Markdown and HTML reports."""


@main.group()
def introspect() -> None:
    """Look inside a model: analyze one, compare two, run a suite of prompts."""


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
        from .render.prefetch import start_html_prefetch

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


@introspect.command(context_settings=CONTEXT)
@click.option(
    "-m",
    "--model",
    "model",
    required=True,
    metavar="MODEL",
    help="Alias (smollm2-135m-instruct), .gguf file, model directory or Hugging Face ID.",
)
@click.option("-p", "--prompt", required=True, help="Prompt to analyze.")
@click.option("--all-layers", is_flag=True, help="Capture all layers (overrides --layer-strategy).")
@click.option("-s", "--layer-step", type=int, default=4, show_default=True, help="Capture every Nth layer.")
@click.option(
    "--layer-strategy",
    type=click.Choice(["all", "evenly_spaced", "first_last", "custom"]),
    default=None,
    help="Layer selection strategy [default: evenly_spaced].",
)
@click.option("--layers", "--custom-layers", "layers", metavar="LIST", help="Custom layers, e.g. 0,4,8.")
@click.option("-t", "--track", multiple=True, metavar="TOKEN", help="Track a token across layers (repeatable).")
@click.option("--top-k", type=int, default=5, show_default=True, help="Top predictions to show.")
@click.option("--embedding-scale", type=float, default=None, help="Embedding scale (auto-detected for Gemma).")
@click.option("--raw", is_flag=True, help="Analyze the exact prompt, without the chat template.")
@click.option("--adapter", metavar="DIR", help="Apply an mlx-lm LoRA adapter directory.")
@lens_option("logit (default)")
@click.option(
    "--precision",
    type=click.Choice(["auto", "float32", "native"]),
    default="auto",
    show_default=True,
    help="auto: float32 on CPU (dequantized), as stored on GPU.",
)
@memory_option
@distributed_option
@output_options
def analyze(**opts: Any) -> None:
    """Logit lens: what the model would predict after each layer."""
    run_guarded(lambda: _analyze(**join_ranks(opts)))


def _analyze(
    model: str,
    prompt: str,
    all_layers: bool,
    layer_step: int,
    layer_strategy: str | None,
    layers: str | None,
    track: tuple[str, ...],
    top_k: int,
    embedding_scale: float | None,
    raw: bool,
    adapter: str | None,
    lens: str | None,
    precision: str,
    max_memory: str | None,
    output: str | None,
    html: str | None,
    markdown: str | None,
    static: bool,
    timings: bool,
    quiet: bool,
) -> None:
    check_output_paths((output, "-o"), (html, "--html"), (markdown, "--markdown"))
    budget = parse_max_memory(max_memory)
    check_text(model, "-m")
    check_text(prompt, "the prompt (-p)")
    if not prompt.strip():
        raise LazarusError("the prompt is empty")
    custom = parse_layers(layers)
    if all_layers and layer_strategy not in (None, "all"):
        raise LazarusError(f"--all-layers and --layer-strategy {layer_strategy} contradict each other")
    strategy = "all" if all_layers else (layer_strategy or ("custom" if custom else "evenly_spaced"))

    from .api import AnalysisConfig, LayerStrategy, ModelAnalyzer

    config = AnalysisConfig(
        layer_strategy=LayerStrategy(strategy),
        layer_step=layer_step,
        custom_layers=custom,
        top_k=top_k,
        track_tokens=list(track),
        use_chat_template=not raw,
        embedding_scale=embedding_scale,
        # The grid feeds the HTML heatmap and the JSON; the terminal view does not show it. (Under
        # mlx.launch the other ranks write nothing: they skip it; no forward pass depends on it.)
        compute_grid=bool(output or html) and is_output_rank(),
        lens="logit" if lens is None else lens,
    )
    if adapter is not None:
        from .models.adapters import check_adapter

        check_adapter(adapter)
    depths = preflight([model], config)
    limit_grid_to_heatmap(config, depths, output=output, html=html, two=False)
    prefetch_html(html, static)
    # No `with`: the process ends right after, and releasing the model first would only cost time.
    analyzer = ModelAnalyzer.load(model, adapter=adapter, precision=precision, max_memory=budget)
    result = analyzer.run(prompt, config)
    keep_until_exit(analyzer)
    emit(result, output=output, html=html, markdown=markdown, static=static, quiet=quiet, timings=timings)


_FAST_EXIT = False  # set by ``entry``: the process leaves with os._exit, nothing is torn down
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
    from .render.files import render_report_files
    from .result import ComparisonResult, SuiteResult, write_files_atomic

    files: dict[Any, bytes] = {}
    if output:
        files[output] = (result.to_json() + "\n").encode("utf-8")
    if junit:
        from .suites.junit import render_junit

        files[junit] = render_junit(result).encode("utf-8")
    files.update(render_report_files(result, html_path=html, markdown_path=markdown, static=static, timings=timings))
    write_files_atomic(files)
    if markdown:
        append_step_summary(files[markdown].decode("utf-8"))
    if not quiet:
        from .render.text import render_comparison_text, render_suite_text, render_text

        if isinstance(result, SuiteResult):
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


@introspect.command(context_settings=CONTEXT)
@click.option("-m1", "--model1", "model1", required=True, metavar="MODEL", help="First model (e.g. the base).")
@click.option("-m2", "--model2", "model2", required=True, metavar="MODEL", help="Second model (e.g. the fine-tune).")
@click.option("-p", "--prompt", required=True, help="Prompt to analyze with both models.")
@click.option("--track", "track", multiple=True, metavar="TOKENS", help="Comma-separated tokens to track (repeatable).")
@click.option("--top-k", type=int, default=5, show_default=True, help="Top predictions per layer.")
@click.option(
    "--layer-strategy",
    type=click.Choice(["all", "evenly_spaced", "first_last", "custom"]),
    default=None,
    help="Layer selection strategy [default: all; custom with --layers].",
)
@click.option("-s", "--layer-step", type=int, default=4, show_default=True, help="Step for evenly_spaced.")
@click.option("--layers", "--custom-layers", "layers", metavar="LIST", help="Custom layers, e.g. 0,4,8.")
@click.option("--raw", is_flag=True, help="Analyze the exact prompt, without chat templates.")
@click.option("--adapter1", metavar="DIR", help="mlx-lm LoRA adapter for model 1.")
@click.option("--adapter2", metavar="DIR", help="mlx-lm LoRA adapter for model 2.")
@click.option("--embedding-scale1", type=float, default=None, help="Embedding scale override for model 1.")
@click.option("--embedding-scale2", type=float, default=None, help="Embedding scale override for model 2.")
@lens_option("logit (default)")
@click.option("--precision", type=click.Choice(["auto", "float32", "native"]), default="auto", show_default=True)
@click.option(
    "--attribution",
    is_flag=True,
    help="Also find which layers cause the change (adapter ablation or activation patching; docs/reports.md).",
)
@memory_option
@distributed_option
@output_options
def compare(**opts: Any) -> None:
    """Compare two models on one prompt: base vs fine-tuned, or model vs model."""
    run_guarded(lambda: _compare(**join_ranks(opts)))


def _compare(
    model1: str,
    model2: str,
    prompt: str,
    track: tuple[str, ...],
    top_k: int,
    layer_strategy: str | None,
    layer_step: int,
    layers: str | None,
    raw: bool,
    adapter1: str | None,
    adapter2: str | None,
    embedding_scale1: float | None,
    embedding_scale2: float | None,
    lens: str | None,
    precision: str,
    attribution: bool,
    max_memory: str | None,
    output: str | None,
    html: str | None,
    markdown: str | None,
    static: bool,
    timings: bool,
    quiet: bool,
) -> None:
    check_output_paths((output, "-o"), (html, "--html"), (markdown, "--markdown"))
    budget = parse_max_memory(max_memory)
    for value, what in ((model1, "-m1"), (model2, "-m2"), (prompt, "the prompt (-p)")):
        check_text(value, what)
    if not prompt.strip():
        raise LazarusError("the prompt is empty")
    custom = parse_layers(layers)
    from .api import AnalysisConfig, LayerStrategy, compare_models

    config = AnalysisConfig(
        # --layers with another --layer-strategy is refused by validate(), as in analyze
        layer_strategy=LayerStrategy(layer_strategy or ("custom" if custom else "all")),
        layer_step=layer_step,
        custom_layers=custom,
        top_k=top_k,
        track_tokens=parse_track_list(track),
        use_chat_template=not raw,
        compute_grid=bool(output or html) and is_output_rank(),
        lens="logit" if lens is None else lens,
    )
    for adapter in (adapter1, adapter2):
        if adapter is not None:
            from .models.adapters import check_adapter

            check_adapter(adapter)
    depths = preflight(
        [model1, model2],
        config,
        [(embedding_scale1, "--embedding-scale1"), (embedding_scale2, "--embedding-scale2")],
    )
    limit_grid_to_heatmap(config, depths, output=output, html=html, two=True)
    prefetch_html(html, static)
    comparison = compare_models(
        model1,
        model2,
        prompt,
        config,
        adapter1=adapter1,
        adapter2=adapter2,
        embedding_scales=(embedding_scale1, embedding_scale2),
        precision=precision,
        attribution=attribution,
        change_map=bool(output or html or markdown) and is_output_rank(),
        max_memory=budget,
    )
    emit(comparison, output=output, html=html, markdown=markdown, static=static, quiet=quiet, timings=timings)


@introspect.command(context_settings=CONTEXT)
@click.argument("suite_file", metavar="SUITE_FILE")
@click.option("-m", "--model", "model", metavar="MODEL", help="Run the suite on one model.")
@click.option("--adapter", metavar="DIR", help="mlx-lm LoRA adapter for the one model.")
@click.option(
    "--role",
    type=click.Choice(["base", "tuned"]),
    default=None,
    help="One model: also check the suite's expect_base or expect_tuned on it.",
)
@click.option("-m1", "--model1", "model1", metavar="MODEL", help="Base model (two-model run).")
@click.option("-m2", "--model2", "model2", metavar="MODEL", help="Tuned model (two-model run).")
@click.option("--adapter1", metavar="DIR", help="mlx-lm LoRA adapter for model 1.")
@click.option("--adapter2", metavar="DIR", help="mlx-lm LoRA adapter for model 2 (base vs fine-tuned).")
@click.option("--embedding-scale", "embedding_scale", type=float, default=None, help="Embedding scale (one model).")
@click.option("--embedding-scale1", type=float, default=None, help="Embedding scale override for model 1.")
@click.option("--embedding-scale2", type=float, default=None, help="Embedding scale override for model 2.")
@lens_option("logit (default: the suite file's defaults.lens, else logit)")
@click.option("--precision", type=click.Choice(["auto", "float32", "native"]), default="auto", show_default=True)
@click.option("--junit", "junit", metavar="FILE", help="Write JUnit XML (one test case per expectation).")
@click.option("--validate", "validate_only", is_flag=True, help="Only check the suite file, load no model.")
@click.option(
    "--attribution", is_flag=True, help="Two models: also find which layers cause each case's change (docs/suites.md)."
)
@memory_option
@distributed_option
@click.option(
    "--batch-size",
    "batch_size",
    type=int,
    default=None,
    metavar="N",
    help="Cases per forward pass (default: automatic, from the prompts' lengths; 1: one at a time).",
)
@output_options
def suite(**opts: Any) -> None:
    """Run a suite of prompts with expectations: exit 0 if all hold, 1 if some fail, 2 on bad input.

    One model (-m MODEL [--adapter DIR]) or two (-m1 BASE -m2 TUNED [--adapter2 DIR]).
    The suite file (YAML or JSONL) is described in docs/suites.md.
    """
    code = run_guarded(lambda: _suite(**join_ranks(opts)))
    sys.exit(code)


def _suite(
    suite_file: str,
    model: str | None,
    adapter: str | None,
    role: str | None,
    model1: str | None,
    model2: str | None,
    adapter1: str | None,
    adapter2: str | None,
    embedding_scale: float | None,
    embedding_scale1: float | None,
    embedding_scale2: float | None,
    lens: str | None,
    precision: str,
    junit: str | None,
    validate_only: bool,
    attribution: bool,
    batch_size: int | None,
    max_memory: str | None,
    output: str | None,
    html: str | None,
    markdown: str | None,
    static: bool,
    timings: bool,
    quiet: bool,
) -> int:
    from .api import LENS_KINDS, check_lens_spec
    from .suites.spec import load_suite, verify_lens

    check_output_paths((output, "-o"), (html, "--html"), (markdown, "--markdown"), (junit, "--junit"))
    from .batched import check_batch_size

    check_batch_size(batch_size)
    budget = parse_max_memory(max_memory)
    one = (model, adapter, role, embedding_scale)
    two = (model1, model2, adapter1, adapter2, embedding_scale1, embedding_scale2)
    if any(v is not None for v in one) and any(v is not None for v in two):
        raise LazarusError("use -m MODEL for one model, or -m1 BASE -m2 TUNED for two, not both")
    spec = load_suite(suite_file)  # every suite-file error comes before any model loads
    lens = lens if lens is not None else spec.lens or "logit"
    if validate_only:
        check_lens_spec(lens)
        if lens == spec.lens:
            verify_lens(spec)  # a lens directory the suite names: verified as the run would
        elif lens not in LENS_KINDS:
            from .lenses import Lens

            Lens.load(lens)
        n = len(spec.cases)
        if not quiet:
            click.echo(
                f"{printable(suite_file)}: {n} case{'s' if n != 1 else ''}, "
                f"{sum(len(c.expectations) for c in spec.cases)} expectations, valid"
            )
        return 0
    if model is not None:
        models, adapters, scales = [model], [adapter], [embedding_scale]
    elif model1 is not None and model2 is not None:
        models, adapters, scales = [model1, model2], [adapter1, adapter2], [embedding_scale1, embedding_scale2]
    else:
        raise LazarusError("give a model: -m MODEL, or -m1 BASE -m2 TUNED")
    options = ["--embedding-scale"] if model is not None else ["--embedding-scale1", "--embedding-scale2"]
    for value in models:
        check_text(value, "the model")
    for adapter_dir in adapters:
        if adapter_dir is not None:
            from .models.adapters import check_adapter

            check_adapter(adapter_dir)
    from .api import AnalysisConfig

    preflight(models, AnalysisConfig(top_k=1, lens=lens), list(zip(scales, options)))
    prefetch_html(html, static, suite=True)

    from .suites.runner import run_suite

    show_bar = not quiet and sys.stderr.isatty()
    bar = click.progressbar(length=len(spec.cases) * len(models), label="cases", file=sys.stderr, show_pos=True)
    with bar if show_bar else contextlib.nullcontext():
        result = run_suite(
            spec,
            models,
            adapters=adapters,
            embedding_scales=scales,
            precision=precision,
            role=role,
            progress=bar.update if show_bar else None,
            lens=lens,
            attribution=attribution,
            batch_size=batch_size,
            max_memory=budget,
        )
    emit(result, output=output, html=html, markdown=markdown, static=static, quiet=quiet, junit=junit, timings=timings)
    status = result.status
    if status == "error" and is_output_rank():
        # The reason goes to stderr, one line, whatever -q says (the text report on stdout has the details).
        click.echo(f"Error: {printable(suite_error_line(result))}", err=True)
    return 2 if status == "error" else 1 if status == "failed" else 0


def suite_error_line(result: Any) -> str:
    """One line for a suite with cases that could not run: how many, and the first one's reason."""
    errored = [case for case in result.cases if case.status == "error"]
    first = errored[0]
    reason = first.error or next(
        (f"{c.name}: {c.message}" for c in first.checks if c.status == "error"), "the case could not be checked"
    )
    more = f" (and {len(errored) - 1} more)" if len(errored) > 1 else ""
    n = len(errored)
    line = first.line
    return f"{n} case{'s' if n != 1 else ''} could not run; case {first.id!r} (line {line}): {reason}{more}"


@main.group()
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
        from .render import load_result_file

        result = load_result_file(source)
        emit(result, output=None, html=html, markdown=markdown, static=static, quiet=quiet, timings=timings)

    run_guarded(body)


if __name__ != "__main__":  # under `python -m lazarus_report.cli` the block at the end runs the real module
    from .cli_lens import lens as _lens_group

    main.add_command(_lens_group)


def entry() -> None:
    """Console-script entry point: run the command, then leave without tearing the interpreter down.

    Freeing a loaded model object by object at exit costs ~0.1 s of the 1 s a whole analysis takes;
    the operating system reclaims the memory at once. Output is flushed first; files were already
    written atomically. (Tests that call ``main`` in-process are unaffected.)
    """
    global _FAST_EXIT
    _FAST_EXIT = True
    code = 0
    try:
        main(standalone_mode=False)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except click.exceptions.Abort:
        click.echo("Aborted!", err=True)
        code = 1
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    # The subcommand modules import ``lazarus_report.cli``: run that module, not this ``__main__`` copy.
    from lazarus_report.cli import entry as _entry

    _entry()
