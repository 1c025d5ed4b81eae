"""``lazarus introspect compare --drift``: the options and the command body (imports stay light until it runs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ..core.errors import LazarusError


def drift_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--drift`` [``--corpus FILE`` ...] [``--drift-tokens N``]."""
    for decorator in reversed(
        [
            click.option(
                "--drift",
                is_flag=True,
                help="No prompt: read neutral text through both models and report where the fine-tune leaks "
                "(JS per layer over every position; docs/drift.md).",
            ),
            click.option(
                "--corpus",
                "corpus",
                multiple=True,
                metavar="FILE",
                help="--drift: the text to read (.txt or .jsonl, repeatable) [default: the held-out split of "
                "the built-in lens corpus].",
            ),
            click.option(
                "--drift-tokens",
                "drift_tokens",
                type=int,
                default=None,
                metavar="N",
                help="--drift: corpus positions to read [default: 4096].",
            ),
        ]
    ):
        fn = decorator(fn)
    return fn


# compare's options that mean nothing without a prompt, with how the user named them
_PROMPT_ONLY = {
    "track": "--track",
    "attribution": "--attribution",
    "answer": "--answer",
    "generate": "--generate",
    "stop": "--stop",
    "raw": "--raw",
    "embedding_scale1": "--embedding-scale1",
    "embedding_scale2": "--embedding-scale2",
}


def run_drift(**opts: Any) -> None:
    """``compare --drift``: check every option and the corpus (no model loads before), measure, write, print."""
    from .common import check_output_paths, check_text, emit, parse_layers, parse_max_memory, preflight

    drift, prompt, corpus, tokens = opts["drift"], opts["prompt"], opts["corpus"], opts["drift_tokens"]
    if not drift:
        if prompt is None:
            raise LazarusError("compare needs a prompt (-p), or --drift to read neutral text")
        raise LazarusError("--corpus and --drift-tokens go with --drift")
    if prompt is not None:
        raise LazarusError("--drift reads a corpus, not a prompt: drop -p (or drop --drift)")
    for name, option in _PROMPT_ONLY.items():
        if opts.get(name) not in (None, False, (), []):
            raise LazarusError(f"{option} does not go with --drift (there is no prompt)")
    if tokens is not None and tokens < 1:
        raise LazarusError(f"--drift-tokens must be at least 1 (got {tokens})")
    output, html, markdown = opts["output"], opts["html"], opts["markdown"]
    check_output_paths((output, "-o"), (html, "--html"), (markdown, "--markdown"))
    budget = parse_max_memory(opts["max_memory"])
    model1, model2 = opts["model1"], opts["model2"]
    for value, what in ((model1, "-m1"), (model2, "-m2")):
        check_text(value, what)
    from ..commands.drift import DRIFT_TOKENS, measure_drift
    from ..core.config import AnalysisConfig, LayerStrategy
    from ..lens.learned.corpus import read_corpus_files

    custom = parse_layers(opts["layers"])
    lens = opts["lens"]
    config = AnalysisConfig(
        layer_strategy=LayerStrategy(opts["layer_strategy"] or ("custom" if custom else "all")),
        layer_step=opts["layer_step"],
        custom_layers=custom,
        lens="logit" if lens is None else lens,
        compute_grid=False,
    )
    text = read_corpus_files(list(corpus))  # checked (files, UTF-8, some text) before any model loads
    for adapter in (opts["adapter1"], opts["adapter2"]):
        if adapter is not None:
            from ..models.adapters import check_adapter

            check_adapter(adapter)
    depths = preflight([model1, model2], config)
    if None not in depths and depths[0] != depths[1]:
        raise LazarusError(
            f"--drift compares layer by layer: model 1 has {depths[0]} layers, model 2 {depths[1]} (the same depth is needed)"
        )
    result = measure_drift(
        model1,
        model2,
        config,
        adapter1=opts["adapter1"],
        adapter2=opts["adapter2"],
        corpus=text,
        tokens=DRIFT_TOKENS if tokens is None else tokens,
        precision=opts["precision"],
        max_memory=budget,
    )
    emit(
        result,
        output=output,
        html=html,
        markdown=markdown,
        static=opts["static"],
        quiet=opts["quiet"],
        timings=opts["timings"],
    )


def compare_or_drift(opts: dict[str, Any], compare: Callable[..., None]) -> None:
    """``compare``'s body: with ``--drift`` (or without a prompt, or with a drift-only option), ``run_drift``."""
    drift = {k: opts.pop(k) for k in ("drift", "corpus", "drift_tokens")}
    if drift["drift"] or drift["corpus"] or drift["drift_tokens"] is not None or opts["prompt"] is None:
        run_drift(**opts, **drift)
    else:
        compare(**opts)


def with_drift_request(opts: dict[str, Any]) -> dict[str, Any]:
    """``suite``'s options with ``--drift``/``--corpus``/``--drift-tokens`` replaced by ``drift`` (``drift_request``)."""
    drift, corpus, tokens = (opts.pop(k) for k in ("drift", "corpus", "drift_tokens"))
    opts["drift"] = drift_request(drift, corpus, tokens, two=opts["model1"] is not None or opts["model2"] is not None)
    return opts


def drift_request(drift: bool, corpus: tuple[str, ...], tokens: int | None, *, two: bool) -> Any:
    """``suite --drift``'s options checked (the corpus read and validated) before any model loads: a
    ``commands.suite.DriftRequest``, or None without ``--drift``."""
    if not drift:
        if corpus or tokens is not None:
            raise LazarusError("--corpus and --drift-tokens go with --drift")
        return None
    if not two:
        raise LazarusError("--drift needs two models (-m1 BASE -m2 TUNED)")
    if tokens is not None and tokens < 1:
        raise LazarusError(f"--drift-tokens must be at least 1 (got {tokens})")
    from ..commands.suite import DriftRequest
    from ..lens.learned.corpus import read_corpus_files

    return DriftRequest(corpus=read_corpus_files(list(corpus)), tokens=tokens)
