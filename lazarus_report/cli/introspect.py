"""``lazarus introspect``: analyze one model, compare two, run a suite."""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import click

from ..core.errors import LazarusError, printable
from ..models.distributed import is_output_rank
from .common import (
    CONTEXT,
    answer_options,
    check_output_paths,
    check_text,
    distributed_option,
    emit,
    join_ranks,
    keep_until_exit,
    lens_option,
    limit_grid_to_heatmap,
    memory_option,
    note_lens_all,
    one_lens,
    output_options,
    parse_layers,
    parse_max_memory,
    parse_track_list,
    prefetch_html,
    preflight,
    run_guarded,
)
from .drift import compare_or_drift, drift_options, with_drift_request


@click.group()
def introspect() -> None:
    """Look inside a model: analyze one, compare two, run a suite of prompts."""


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
@answer_options
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
    answer: str | None,
    generate: int | None,
    stop: tuple[str, ...],
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
    from ..core.config import split_lens_spec

    lens_list = split_lens_spec("logit" if lens is None else lens)

    from ..commands.analyzer import ModelAnalyzer
    from ..core.config import AnalysisConfig, LayerStrategy

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
        lens=lens_list[0],
        extra_lenses=lens_list[1],
        answer=answer,
        generate=generate,
        stop=list(stop),
    )
    if adapter is not None:
        from ..models.adapters import check_adapter

        check_adapter(adapter)
    depths = preflight([model], config)
    limit_grid_to_heatmap(config, depths, output=output, html=html, two=False)
    prefetch_html(html, static)
    # No `with`: the process ends right after, and releasing the model first would only cost time.
    analyzer = ModelAnalyzer.load(model, adapter=adapter, precision=precision, max_memory=budget)
    result = analyzer.run(prompt, config)
    keep_until_exit(analyzer)
    note_lens_all(config, [result], quiet)
    emit(result, output=output, html=html, markdown=markdown, static=static, quiet=quiet, timings=timings)


@introspect.command(context_settings=CONTEXT)
@click.option("-m1", "--model1", "model1", required=True, metavar="MODEL", help="First model (e.g. the base).")
@click.option("-m2", "--model2", "model2", required=True, metavar="MODEL", help="Second model (e.g. the fine-tune).")
@click.option("-p", "--prompt", default=None, help="Prompt to analyze with both models (required unless --drift).")
@click.option("--track", "track", multiple=True, metavar="TOKENS", help="Comma-separated tokens to track (repeatable).")
@click.option("--top-k", type=int, default=5, show_default=True, help="Top predictions per layer.")
@drift_options
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
@answer_options
@memory_option
@distributed_option
@output_options
def compare(**opts: Any) -> None:
    """Compare two models on one prompt (base vs fine-tuned, or model vs model), or on neutral text (--drift)."""
    run_guarded(lambda: compare_or_drift(join_ranks(opts), _compare))


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
    answer: str | None,
    generate: int | None,
    stop: tuple[str, ...],
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
    from ..commands.compare import compare_models
    from ..core.config import AnalysisConfig, LayerStrategy, split_lens_spec

    custom, lens_list = parse_layers(layers), split_lens_spec("logit" if lens is None else lens)
    config = AnalysisConfig(
        # --layers with another --layer-strategy is refused by validate(), as in analyze
        layer_strategy=LayerStrategy(layer_strategy or ("custom" if custom else "all")),
        layer_step=layer_step,
        custom_layers=custom,
        top_k=top_k,
        track_tokens=parse_track_list(track),
        use_chat_template=not raw,
        compute_grid=bool(output or html) and is_output_rank(),
        lens=lens_list[0],
        extra_lenses=lens_list[1],
        answer=answer,
        generate=generate,
        stop=list(stop),
    )
    for adapter in (adapter1, adapter2):
        if adapter is not None:
            from ..models.adapters import check_adapter

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
    note_lens_all(config, comparison.results, quiet)
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
@lens_option("logit (default: the suite file's defaults.lens, else logit)", several=False)
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
@drift_options
@output_options
def suite(**opts: Any) -> None:
    """Run a suite of prompts with expectations: exit 0 if all hold, 1 if some fail, 2 on bad input.

    One model (-m MODEL [--adapter DIR]) or two (-m1 BASE -m2 TUNED [--adapter2 DIR]).
    The suite file (YAML or JSONL) is described in docs/suites.md.
    """
    code = run_guarded(lambda: _suite(**with_drift_request(join_ranks(opts))))
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
    drift: Any = None,
) -> int:
    from ..suites.spec import load_suite

    check_output_paths((output, "-o"), (html, "--html"), (markdown, "--markdown"), (junit, "--junit"))
    from ..engine.batched import check_batch_size

    check_batch_size(batch_size)
    budget = parse_max_memory(max_memory)
    one = (model, adapter, role, embedding_scale)
    two = (model1, model2, adapter1, adapter2, embedding_scale1, embedding_scale2)
    if any(v is not None for v in one) and any(v is not None for v in two):
        raise LazarusError("use -m MODEL for one model, or -m1 BASE -m2 TUNED for two, not both")
    spec = load_suite(suite_file)  # every suite-file error comes before any model loads
    lens = one_lens(lens, spec.lens)
    if validate_only:
        return _validate_suite(suite_file, spec, lens, quiet)
    if model is not None:
        models, adapters, scales = [model], [adapter], [embedding_scale]
    elif model1 is not None and model2 is not None:
        models, adapters, scales = [model1, model2], [adapter1, adapter2], [embedding_scale1, embedding_scale2]
    else:
        raise LazarusError("give a model: -m MODEL, or -m1 BASE -m2 TUNED")
    options = ["--embedding-scale"] if model is not None else ["--embedding-scale1", "--embedding-scale2"]
    _check_models(models, adapters)
    from ..core.config import AnalysisConfig

    preflight(models, AnalysisConfig(top_k=1, lens=lens), list(zip(scales, options)))
    prefetch_html(html, static, suite=True)

    from ..commands.suite import run_suite

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
            drift=drift,
        )
    emit(result, output=output, html=html, markdown=markdown, static=static, quiet=quiet, junit=junit, timings=timings)
    status = result.status
    if status == "error" and is_output_rank():
        # The reason goes to stderr, one line, whatever -q says (the text report on stdout has the details).
        click.echo(f"Error: {printable(suite_error_line(result))}", err=True)
    return 2 if status == "error" else 1 if status == "failed" else 0


def _validate_suite(suite_file: str, spec: Any, lens: str, quiet: bool) -> int:
    """``suite --validate``: the suite file and its lens checked, no model loaded."""
    from ..core.config import LENS_KINDS, check_lens_spec
    from ..suites.spec import verify_lens

    check_lens_spec(lens)
    if lens == spec.lens:
        verify_lens(spec)  # a lens directory the suite names: verified as the run would
    elif lens not in LENS_KINDS:
        from ..lens.learned import Lens

        Lens.load(lens)
    n = len(spec.cases)
    if not quiet:
        click.echo(
            f"{printable(suite_file)}: {n} case{'s' if n != 1 else ''}, "
            f"{sum(len(c.expectations) for c in spec.cases)} expectations, valid"
        )
    return 0


def _check_models(models: list[str], adapters: list[str | None]) -> None:
    """The model names and adapter folders checked before any model loads."""
    for value in models:
        check_text(value, "the model")
    for adapter_dir in adapters:
        if adapter_dir is not None:
            from ..models.adapters import check_adapter

            check_adapter(adapter_dir)


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


# --- checkpoint sweep (issue 20 part 2: cli/sweep.py) ---
from .sweep import sweep as _sweep_command  # noqa: E402

introspect.add_command(_sweep_command)
