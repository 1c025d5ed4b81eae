"""``lazarus lens``: fit, evaluate, import and export learned lenses (a thin layer over ``lenses``).

Everything that needs no weights (corpus files, --tokens, output paths, the lens directory) is
checked before a model loads. A progress bar goes to stderr when it is a terminal.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from ..core.errors import LazarusError
from .common import CONTEXT

MODEL_HELP = "Alias (smollm2-135m-instruct), .gguf file, model directory or Hugging Face ID."


@click.group(context_settings=CONTEXT)
def lens() -> None:
    """Learned lenses: fit a linear, tuned or Jacobian lens for a model (or import a published one), measure how faithful it is."""


@contextlib.contextmanager
def progress_bars(enabled: bool) -> Iterator[Callable[[str, int, int], None] | None]:
    """A ``progress(stage, done, total)`` callback drawing one bar per stage on stderr (TTY only)."""
    if not enabled:
        yield None
        return
    state: dict[str, Any] = {"name": None, "bar": None}
    labels = {
        "collect": "collecting states",
        "solve": "solving (linear)",
        "train": "training (tuned)",
        "jacobian": "Jacobian rows",
        "measure": "held-out fidelity",
    }

    def progress(stage: str, done: int, total: int) -> None:
        if state["name"] != stage:
            if state["bar"] is not None:
                state["bar"].render_finish()
            state["name"] = stage
            state["bar"] = click.progressbar(
                length=max(1, total), label=labels.get(stage, stage), file=sys.stderr, show_eta=True
            )
            state["bar"].render_progress()
        if done:
            state["bar"].update(done)

    try:
        yield progress
    finally:
        if state["bar"] is not None:
            state["bar"].render_finish()


def check_lens_out(path: str | None) -> None:
    """Before any model work: ``--out`` must be new, an empty directory or a lens directory holding
    nothing else, in a directory where one can really be created; without ``--out`` the user cache
    must be writable."""
    if path is None:
        from ..lens.learned.store import probe_cache

        probe_cache()
        return
    from ..lens.learned.artefact import probe_lens_destination

    if path == "":
        raise LazarusError("--out: the directory name is empty")
    probe_lens_destination(path)


@lens.command(context_settings=CONTEXT)
@click.option("-m", "--model", "model", required=True, metavar="MODEL", help=MODEL_HELP)
@click.option("--kind", type=click.Choice(["linear", "tuned", "jacobian"]), default="linear", show_default=True)
@click.option(
    "--corpus",
    multiple=True,
    metavar="FILE",
    help='.txt or .jsonl ({"text": ...} or {"messages": [...]}); repeatable. Default: built in.',
)
@click.option(
    "--tokens",
    type=int,
    default=None,
    metavar="N",
    help="Fit on the first N tokens (default: 49152; jacobian: 3 prompts of 128 tokens).",
)
@click.option(
    "--steps",
    type=int,
    default=None,
    metavar="N",
    help="Tuned lens: Adam steps of 128 positions (default: one epoch, at most 144).",
)
@click.option("--out", "out", metavar="DIR", help="Write the lens here (default: the user cache, for --lens KIND).")
@click.option("--adapter", metavar="DIR", help="Fit on the model with this mlx-lm LoRA adapter applied.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar, no summary.")
def fit(**opts: Any) -> None:
    """Fit a linear, tuned or Jacobian lens and save it (the user cache unless --out)."""
    from .common import run_guarded

    run_guarded(lambda: _fit(**opts))


def _check_tokens(tokens: int | None, kind: str = "linear") -> None:
    from ..lens.learned.fit import MIN_FIT_TOKENS

    if kind == "jacobian":
        from ..lens.learned.jacobian import SKIP_FIRST

        if tokens is not None and tokens < SKIP_FIRST + 1:
            raise LazarusError(f"--tokens {tokens}: a Jacobian lens needs at least {SKIP_FIRST + 1} tokens to fit")
        return
    if tokens is not None and tokens < MIN_FIT_TOKENS:
        raise LazarusError(f"--tokens {tokens}: a lens needs at least {MIN_FIT_TOKENS} tokens to fit")


def _fit(
    model: str,
    kind: str,
    corpus: tuple[str, ...],
    tokens: int | None,
    steps: int | None,
    out: str | None,
    adapter: str | None,
    quiet: bool,
) -> None:
    _check_tokens(tokens, kind)
    if steps is not None and steps < 1:
        raise LazarusError(f"--steps {steps}: must be at least 1")
    check_lens_out(out)
    from ..lens.learned.corpus import read_corpus_files

    text = read_corpus_files(list(corpus))  # every corpus problem before the model loads
    from ..lens.learned.fit import TunedSettings, fit_lens
    from ..models.loader import load_model

    loaded = load_model(model, adapter=adapter)
    with progress_bars(not quiet and sys.stderr.isatty()) as progress:
        lens_obj = fit_lens(
            loaded, kind, corpus=text, tokens=tokens, tuned=TunedSettings(steps=steps), progress=progress
        )
    target = _save(lens_obj, out, loaded, kind)
    if not quiet:
        from ..render.lens_text import render_fit_summary

        click.echo(render_fit_summary(lens_obj.record(), lens_obj.meta, str(target), cached=not out), nl=False)


def _save(lens_obj: Any, out: str | None, loaded: Any, kind: str) -> Path:
    """Save to ``--out`` or, without it, to the user cache (where ``--lens KIND`` finds it)."""
    if out:
        return Path(lens_obj.save(out))
    from ..lens.learned.store import cache_path, save_in_cache

    return save_in_cache(lens_obj, cache_path(loaded, kind, lens_obj.meta["model"]))


@lens.command(name="eval", context_settings=CONTEXT)
@click.option("-m", "--model", "model", required=True, metavar="MODEL", help=MODEL_HELP)
@click.option(
    "--lens",
    "lens_spec",
    multiple=True,
    metavar="KIND|DIR",
    help="linear, tuned, jacobian (from the cache), logit or a lens directory; repeatable. "
    "Default: every lens fitted for the model. The logit lens is always evaluated.",
)
@click.option(
    "--corpus", multiple=True, metavar="FILE", help="Evaluate on the held-out split of these files (default: built in)."
)
@click.option(
    "--tokens",
    type=int,
    default=None,
    metavar="N",
    help="Evaluate on the first N held-out tokens (default: 2x those a fit measures: 4096, fewer for large vocabularies).",
)
@click.option("--adapter", metavar="DIR", help="Apply an mlx-lm LoRA adapter to the model.")
@click.option("-o", "--output", "output", metavar="FILE", help="Save the evaluation as JSON.")
@click.option("--html", "html", metavar="FILE", help="Write an HTML page with the per-layer fidelity charts.")
@click.option("-q", "--quiet", is_flag=True, help="Do not print the text table.")
def eval_(**opts: Any) -> None:
    """Measure every lens fitted for the model (or those given) against the logit lens on held-out text, side by
    side per layer: KL to final, top-1 agreement, cross-entropy, each with a bootstrap 95% interval."""
    from .common import run_guarded

    run_guarded(lambda: _eval(**opts))


def _check_lens_spec(spec: str) -> None:
    if spec in ("logit", "linear", "tuned", "jacobian"):
        return
    if not Path(spec).exists():
        raise LazarusError(f"unknown --lens {spec!r}: choose logit, linear, tuned, jacobian or a lens directory")
    from ..lens.learned.artefact import Lens

    Lens.load(spec)  # a damaged lens fails before the model loads


def _eval(
    model: str,
    lens_spec: tuple[str, ...],
    corpus: tuple[str, ...],
    tokens: int | None,
    adapter: str | None,
    output: str | None,
    html: str | None,
    quiet: bool,
) -> None:
    from .common import check_output_path

    for path, option in ((output, "-o"), (html, "--html")):
        check_output_path(path, option)
    if tokens is not None and tokens < 1:
        raise LazarusError(f"--tokens {tokens}: must be at least 1")
    for spec in lens_spec:
        _check_lens_spec(spec)
    from ..lens.learned.corpus import read_corpus_files

    text = read_corpus_files(list(corpus))
    from ..lens.learned.eval import evaluate
    from ..lens.learned.store import save_logit_fidelity
    from ..models.loader import load_model

    loaded = load_model(model, adapter=adapter)
    lenses = _lenses_to_evaluate(list(dict.fromkeys(lens_spec)), loaded)
    with progress_bars(not quiet and sys.stderr.isatty()) as progress:
        result = evaluate(loaded, lenses, text, tokens=tokens, progress=progress)
    if not corpus:
        with contextlib.suppress(OSError):
            save_logit_fidelity(loaded, result.logit, result.corpus)
    if output:
        with _written(output, "-o"):
            result.save(output)
    if html:
        from ..core.files import write_text_atomic
        from ..render.lens_report import render_lens_eval_html

        page = render_lens_eval_html(result)
        with _written(html, "--html"):
            write_text_atomic(html, page)
    if not quiet:
        from ..render.lens_text import render_eval_text

        click.echo(render_eval_text(result), nl=False)


def _lenses_to_evaluate(specs: list[str], loaded: Any) -> list[Any]:
    """The lenses named by ``--lens``, or (none named) every learned lens fitted for the model; none: an error."""
    from ..lens.learned.store import resolve_lens

    if specs:
        return [resolve_lens(spec, loaded) for spec in specs]
    found = []
    for kind in ("linear", "tuned", "jacobian"):
        try:
            found.append(resolve_lens(kind, loaded))
        except LazarusError as exc:
            if not str(exc).startswith("no fitted"):
                click.echo(f"Warning: {kind} lens skipped: {exc}", err=True)
    if not found:
        hint = f"-m {loaded.info.model_id}" + (f" --adapter {loaded.info.adapter}" if loaded.info.adapter else "")
        raise LazarusError(
            f"no lens fitted for {loaded.info.model_id}: run `lazarus lens fit {hint} --kind tuned` first, "
            "or pass --lens logit (or --lens DIR) to say which to evaluate"
        )
    return found


@contextlib.contextmanager
def _written(path: str, option: str) -> Iterator[None]:
    """A write error (full disk, read-only file system) as one line naming the option, path and cause."""
    try:
        yield
    except OSError as exc:
        cause = getattr(exc, "cause", "") or exc.strerror or exc
        raise LazarusError(f"{option} {path}: cannot write it ({cause})") from None


@lens.command(name="export", context_settings=CONTEXT)
@click.argument("source", metavar="LENS_DIR")
@click.argument("dest", metavar="OUT")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["tuned-lens", "jlens"]),
    default="tuned-lens",
    show_default=True,
    help="tuned-lens: a checkpoint folder (config.json + params.pt); jlens: a Jacobian-lens .pt file.",
)
def export_(source: str, dest: str, fmt: str) -> None:
    """Write a lens as a tuned-lens checkpoint folder or a Jacobian-lens .pt file (needs PyTorch)."""
    from .common import run_guarded

    def body() -> None:
        from ..lens.learned.artefact import Lens

        lens_obj = Lens.load(source)
        if fmt == "jlens":
            from ..lens.learned.jlens_io import export_jlens

            path = export_jlens(lens_obj, dest)
            click.echo(f"wrote Jacobian-lens file {path}")
            return
        from ..lens.learned.tuned_lens_io import export_tuned_lens

        path = export_tuned_lens(lens_obj, dest)
        click.echo(f"wrote tuned-lens checkpoint {path} (translator 0, the embeddings, is the identity)")

    run_guarded(body)


@lens.command(name="import", context_settings=CONTEXT)
@click.option("-m", "--model", "model", required=True, metavar="MODEL", help=MODEL_HELP)
@click.argument("source", metavar="FILE|DIR")
@click.option("--out", "out", metavar="DIR", help="Write the lens here (default: the user cache, for --lens KIND).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar, no summary.")
def import_(model: str, source: str, out: str | None, quiet: bool) -> None:
    """Import a published lens for MODEL: a Jacobian-lens .pt FILE or a tuned-lens checkpoint DIR;
    measures its held-out fidelity (needs PyTorch)."""
    from .common import run_guarded

    def body() -> None:
        check_lens_out(out)
        if not (Path(source).is_file() or source.endswith(".pt")):  # a folder (or a missing one): tuned-lens
            from ..lens.learned.tuned_lens_io import import_tuned_lens, read_tuned_lens

            checkpoint: Any = read_tuned_lens(source)
            convert: Callable[[Any, Any], Any]  # config, shapes, NaN/Inf: checked before the model loads
            convert, kind = import_tuned_lens, "tuned"
        else:
            from ..lens.learned.jlens_io import import_jlens, read_jlens

            checkpoint = read_jlens(source)
            convert, kind = import_jlens, "jacobian"
        from ..lens.learned.fit import heldout_fidelity
        from ..models.loader import load_model

        loaded = load_model(model)
        lens_obj = convert(checkpoint, loaded)
        with progress_bars(not quiet and sys.stderr.isatty()) as progress:
            heldout_fidelity(loaded, lens_obj, progress=progress)
        target = _save(lens_obj, out, loaded, kind)
        if not quiet:
            from ..render.lens_text import render_fit_summary

            click.echo(render_fit_summary(lens_obj.record(), lens_obj.meta, str(target), cached=not out), nl=False)

    run_guarded(body)
