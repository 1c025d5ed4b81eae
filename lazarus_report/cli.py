"""The ``lazarus`` command: a thin layer over the Python API.

Parse options, call the API, pick renderers, map errors to one line and an exit code.
Heavy modules (mlx, mlx-lm, transformers, altair) are imported inside the commands, so
``lazarus --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .errors import LazarusError

# Exit codes: 0 success, 1 suite expectations failed, 2 usage or input error, 3 internal error
# (kept apart from 1 so a CI gate never mistakes a crash for a verdict), 130 interrupted.
INTERNAL_ERROR = 3

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def run_guarded(fn: Callable[[], Any]) -> Any:
    """Run a command body: user errors become one line on stderr and a non-zero exit."""
    from .result import ResultFormatError

    try:
        return fn()
    except (LazarusError, ResultFormatError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except MemoryError:
        _fail("out of memory (try a shorter prompt or fewer layers)", INTERNAL_ERROR)
    except Exception as exc:
        if os.environ.get("LAZARUS_DEBUG"):
            raise
        first = (str(exc).strip().splitlines() or [""])[0]
        _fail(f"internal error: {type(exc).__name__}: {first} (set LAZARUS_DEBUG=1 for the traceback)", INTERNAL_ERROR)


def check_output_path(path: str | None, option: str) -> None:
    """Fail before any model work when an output file could not be written."""
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise LazarusError(f"{option} {path}: is a directory")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise LazarusError(f"{option} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise LazarusError(f"{option} {path}: not writable")


def parse_layers(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x != ""]
    except ValueError:
        raise LazarusError(f"--layers {text!r}: expected comma-separated layer indices, e.g. 0,4,8") from None


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="lazarus-report", prog_name="lazarus")
def main() -> None:
    """Logit-lens analysis of language models: terminal, JSON, Markdown and HTML reports."""


@main.group()
def introspect() -> None:
    """Look inside a model: analyze one, compare two, run a suite of prompts."""


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
@click.option(
    "--precision",
    type=click.Choice(["auto", "float32", "native"]),
    default="auto",
    show_default=True,
    help="auto: float32 on CPU (dequantized), as stored on GPU.",
)
@output_options
def analyze(**opts: Any) -> None:
    """Logit lens: what the model would predict after each layer."""
    run_guarded(lambda: _analyze(**opts))


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
    precision: str,
    output: str | None,
    html: str | None,
    markdown: str | None,
    static: bool,
    quiet: bool,
) -> None:
    for path, option in ((output, "-o"), (html, "--html"), (markdown, "--markdown")):
        check_output_path(path, option)
    custom = parse_layers(layers)
    strategy = "all" if all_layers else (layer_strategy or ("custom" if custom else "evenly_spaced"))
    if not prompt.strip():
        raise LazarusError("the prompt is empty")

    from .api import AnalysisConfig, LayerStrategy, ModelAnalyzer

    config = AnalysisConfig(
        layer_strategy=LayerStrategy(strategy),
        layer_step=layer_step,
        custom_layers=custom,
        top_k=top_k,
        track_tokens=list(track),
        use_chat_template=not raw,
        embedding_scale=embedding_scale,
        # The grid feeds the HTML heatmap and the JSON; the terminal view does not show it.
        compute_grid=bool(output or html),
    )
    # No `with`: the process ends right after, and releasing the model first would only cost time.
    result = ModelAnalyzer.load(model, adapter=adapter, precision=precision).run(prompt, config)
    emit(result, output=output, html=html, markdown=markdown, static=static, quiet=quiet)


def emit(result: Any, *, output: str | None, html: str | None, markdown: str | None, static: bool, quiet: bool) -> None:
    """Write the requested files (each atomically) and print the text view."""
    from .result import ComparisonResult, SuiteResult

    if output:
        result.save(output)
    if html or markdown:
        from .render import write_report_files

        write_report_files(result, html_path=html, markdown_path=markdown, static=static)
    if not quiet:
        from .render.text import render_comparison_text, render_suite_text, render_text

        if isinstance(result, SuiteResult):
            text = render_suite_text(result)
        elif isinstance(result, ComparisonResult):
            text = render_comparison_text(result)
        else:
            text = render_text(result)
        click.echo(text, nl=False)


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
    default="all",
    show_default=True,
    help="Layer selection strategy.",
)
@click.option("-s", "--layer-step", type=int, default=4, show_default=True, help="Step for evenly_spaced.")
@click.option("--layers", "--custom-layers", "layers", metavar="LIST", help="Custom layers, e.g. 0,4,8.")
@click.option("--raw", is_flag=True, help="Analyze the exact prompt, without chat templates.")
@click.option("--adapter1", metavar="DIR", help="mlx-lm LoRA adapter for model 1.")
@click.option("--adapter2", metavar="DIR", help="mlx-lm LoRA adapter for model 2.")
@click.option("--embedding-scale1", type=float, default=None, help="Embedding scale override for model 1.")
@click.option("--embedding-scale2", type=float, default=None, help="Embedding scale override for model 2.")
@click.option("--precision", type=click.Choice(["auto", "float32", "native"]), default="auto", show_default=True)
@click.option(
    "--attribution",
    is_flag=True,
    help="Also find which layers cause the change (adapter ablation or activation patching; docs/reports.md).",
)
@output_options
def compare(**opts: Any) -> None:
    """Compare two models on one prompt: base vs fine-tuned, or model vs model."""
    run_guarded(lambda: _compare(**opts))


def _compare(
    model1: str,
    model2: str,
    prompt: str,
    track: tuple[str, ...],
    top_k: int,
    layer_strategy: str,
    layer_step: int,
    layers: str | None,
    raw: bool,
    adapter1: str | None,
    adapter2: str | None,
    embedding_scale1: float | None,
    embedding_scale2: float | None,
    precision: str,
    attribution: bool,
    output: str | None,
    html: str | None,
    markdown: str | None,
    static: bool,
    quiet: bool,
) -> None:
    for path, option in ((output, "-o"), (html, "--html"), (markdown, "--markdown")):
        check_output_path(path, option)
    custom = parse_layers(layers)
    from .api import AnalysisConfig, LayerStrategy, compare_models

    config = AnalysisConfig(
        layer_strategy=LayerStrategy("custom" if custom else layer_strategy),
        layer_step=layer_step,
        custom_layers=custom,
        top_k=top_k,
        track_tokens=parse_track_list(track),
        use_chat_template=not raw,
        compute_grid=bool(output or html),
    )
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
        change_map=bool(output or html or markdown),
    )
    emit(comparison, output=output, html=html, markdown=markdown, static=static, quiet=quiet)


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
@click.option("--precision", type=click.Choice(["auto", "float32", "native"]), default="auto", show_default=True)
@click.option("--junit", "junit", metavar="FILE", help="Write JUnit XML (one test case per expectation).")
@click.option("--validate", "validate_only", is_flag=True, help="Only check the suite file, load no model.")
@click.option(
    "--attribution", is_flag=True, help="Two models: also find which layers cause each case's change (docs/suites.md)."
)
@output_options
def suite(**opts: Any) -> None:
    """Run a suite of prompts with expectations: exit 0 if all hold, 1 if some fail, 2 on bad input.

    One model (-m MODEL [--adapter DIR]) or two (-m1 BASE -m2 TUNED [--adapter2 DIR]).
    The suite file (YAML or JSONL) is described in docs/suites.md.
    """
    code = run_guarded(lambda: _suite(**opts))
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
    precision: str,
    junit: str | None,
    validate_only: bool,
    attribution: bool,
    output: str | None,
    html: str | None,
    markdown: str | None,
    static: bool,
    quiet: bool,
) -> int:
    from .suites.spec import load_suite

    for path, option in ((output, "-o"), (html, "--html"), (markdown, "--markdown"), (junit, "--junit")):
        check_output_path(path, option)
    one = (model, adapter, role, embedding_scale)
    two = (model1, model2, adapter1, adapter2, embedding_scale1, embedding_scale2)
    if any(v is not None for v in one) and any(v is not None for v in two):
        raise LazarusError("use -m MODEL for one model, or -m1 BASE -m2 TUNED for two, not both")
    spec = load_suite(suite_file)  # every suite-file error comes before any model loads
    if validate_only:
        n = len(spec.cases)
        if not quiet:
            click.echo(
                f"{suite_file}: {n} case{'s' if n != 1 else ''}, "
                f"{sum(len(c.expectations) for c in spec.cases)} expectations, valid"
            )
        return 0
    if model is not None:
        models, adapters, scales = [model], [adapter], [embedding_scale]
    elif model1 is not None and model2 is not None:
        models, adapters, scales = [model1, model2], [adapter1, adapter2], [embedding_scale1, embedding_scale2]
    else:
        raise LazarusError("give a model: -m MODEL, or -m1 BASE -m2 TUNED")

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
            attribution=attribution,
        )
    if junit:
        from .result import write_text_atomic
        from .suites.junit import render_junit

        write_text_atomic(junit, render_junit(result))
    emit(result, output=output, html=html, markdown=markdown, static=static, quiet=quiet)
    status = result.status
    return 2 if status == "error" else 1 if status == "failed" else 0


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
@click.option("-q", "--quiet", is_flag=True, help="Do not print the text report.")
def render(source: str, html: str | None, markdown: str | None, static: bool, quiet: bool) -> None:
    """Render a saved result (an -o JSON, or a report HTML) as HTML, Markdown and text."""

    def body() -> None:
        for path, option in ((html, "--html"), (markdown, "--markdown")):
            check_output_path(path, option)
        if not Path(source).is_file():
            raise LazarusError(f"no such file: {source}")
        from .render import load_result_file

        result = load_result_file(source)
        emit(result, output=None, html=html, markdown=markdown, static=static, quiet=quiet)

    run_guarded(body)


def entry() -> None:
    """Console-script entry point: run the command, then leave without tearing the interpreter down.

    Freeing a loaded model object by object at exit costs ~0.1 s of the 1 s a whole analysis takes;
    the operating system reclaims the memory at once. Output is flushed first; files were already
    written atomically. (Tests that call ``main`` in-process are unaffected.)
    """
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
    entry()
