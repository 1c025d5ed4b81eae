"""The engine: one lens pass of one loaded model over one prompt -> ``LensRun``.

Every caller (``ModelAnalyzer``, ``compare``, the suite runner, the benchmarks) goes through
``analyze``; nobody rebuilds capture -> stack -> statistics by hand.

Shapes (L captured layers, V vocabulary, T prompt tokens):

* ``LensRun.log_probs`` is numpy ``[L, V]`` float32: the lens log-probabilities at the last prompt
  position, one row per captured layer in ``result.captured_layers`` order (the last row is the
  model's own next-token distribution). ``compare`` measures divergences between models from it.
* ``LensRun.single_token`` has one flag per tracked string (``config.track_tokens`` order): whether
  it is a single token in this model's vocabulary.

MLX runs here (through ``lens``); nothing here formats prose.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import LazarusError
from .result import (
    AnalysisResult,
    LayerPrediction,
    LogitView,
    PositionGrid,
    TokenEvolution,
    TokenProb,
    TrackedAtLayer,
    TrackedToken,
    first_layer_where,
    true_from_layer,
)

if TYPE_CHECKING:
    import numpy as np

    from .api import AnalysisConfig
    from .lens import LastPositionStats
    from .lenses.artefact import Lens
    from .models.loader import LoadedModel


@dataclass(frozen=True)
class LensRun:
    """One model's lens over one prompt: the result plus what comparing models needs."""

    result: AnalysisResult
    log_probs: np.ndarray  # [L, V] float32, last position, one row per captured layer
    tokenizer_fingerprint: str  # equal fingerprints = same vocabulary and merges
    single_token: list[bool]  # per tracked string: one token in this vocabulary?
    load_seconds: float  # the model's load (0 when its weights were reused)
    # For comparing where two models part (``change_map``) and causal attribution (``attribution``);
    # filled only when ``analyze`` is asked for them.
    log_sum_exp: np.ndarray | None = None  # [L] float64, last position: raw logit = log-prob + this
    position_log_probs: Any = None  # [L, P, V] float32 on disk (change_map.SpilledLogProbs) at kept_positions
    kept_positions: list[int] | None = None
    user_positions: list[int] | None = None  # where the user's own text is in the prompt
    positions_note: str = ""
    block_outputs: np.ndarray | None = None  # [num_layers, T, H] float32: every block's output
    embedding_factor: float | None = None  # multiplier applied to embeddings on the way in
    decode: Any = None  # token id -> text (this model's tokenizer)

    def __post_init__(self) -> None:
        layers = len(self.result.captured_layers)
        shape = getattr(self.log_probs, "shape", None)
        if shape is None or len(shape) != 2 or shape[0] != layers:
            raise ValueError(f"log_probs must be [{layers}, vocab] (one row per captured layer), got {shape}")
        if len(self.single_token) != len(self.result.config.track_tokens):
            raise ValueError("single_token needs one flag per tracked string")

    @property
    def timings(self) -> dict[str, float]:
        """Seconds: load, tokenize, lens, grid (as in ``result.timings``)."""
        return dict(self.result.timings)

    @property
    def engine_seconds(self) -> float:
        """The lens work alone (tokenize + lens + grid), without the load."""
        return sum(self.result.timings.get(k, 0.0) for k in ("tokenize", "lens", "grid"))


@dataclass(frozen=True)
class PreparedPrompt:
    """What a prompt becomes for one model, before any forward pass."""

    text: str  # what is tokenized (chat template applied or not)
    chat_template_applied: bool
    token_ids: list[int]


def format_prompt(loaded: LoadedModel, prompt: str, use_chat_template: bool = True) -> PreparedPrompt:
    """Apply the chat template (when asked and the tokenizer has one) and tokenize."""
    if not prompt or not prompt.strip():
        raise LazarusError("the prompt is empty")
    tok = loaded.tokenizer
    if use_chat_template and tok.chat_template:
        try:
            formatted = tok.apply_chat_template(prompt)
        except LazarusError:
            raise
        except Exception as exc:
            raise LazarusError(
                f"the model's chat template failed: {exc}; use --raw to analyze the prompt as is"
            ) from None
        # The template writes BOS itself where the model wants one.
        return PreparedPrompt(formatted, True, tok.encode_plain(formatted))
    return PreparedPrompt(prompt, False, tok.encode(prompt))


def track_tokens(loaded: LoadedModel, texts: Sequence[str]) -> list[TrackedToken]:
    """The tracked strings as this model's tokenizer sees them (the first token of each is followed)."""
    out = []
    for text in texts:
        if text == "":
            raise LazarusError("cannot track an empty string")
        ids = loaded.tokenizer.encode_plain(text)
        if not ids:
            raise LazarusError(f"tracked token {text!r} encodes to no tokens for this model")
        out.append(
            TrackedToken(text=text, token_id=ids[0], token=loaded.tokenizer.token_to_str(ids[0]), num_tokens=len(ids))
        )
    return out


def _check_length(loaded: LoadedModel, n_tokens: int) -> None:
    if not n_tokens:
        raise LazarusError("the prompt encodes to no tokens")
    if loaded.context_length and n_tokens > loaded.context_length:
        raise LazarusError(
            f"the prompt is {n_tokens} tokens, longer than the model's context of {loaded.context_length}"
        )
    if loaded.unsupported_window and n_tokens > loaded.unsupported_window:
        raise LazarusError(
            f"the prompt is {n_tokens} tokens, longer than this model's sliding attention window of "
            f"{loaded.unsupported_window}, which mlx-lm does not implement for {loaded.info.family}: "
            "the lens would be wrong; use a shorter prompt"
        )


# Where an imported module states its distribution's version: read there, ``importlib.metadata`` (whose
# import, with the ``email`` package it needs, costs 30-50 ms) is only the fallback.
_VERSION_MODULES = {
    "lazarus-report": "lazarus_report",
    "mlx": "mlx.core",
    "mlx-lm": "mlx_lm._version",
    "tokenizers": "tokenizers",
}


def versions() -> dict[str, str]:
    """Python, platform and the versions of the packages that shape a result."""
    import sys

    out = {"python": platform.python_version(), "platform": f"{platform.system()} {platform.machine()}"}
    for dist, module_name in _VERSION_MODULES.items():
        package = module_name.split(".")[0]
        module = sys.modules.get(module_name)
        if module is None and package in sys.modules and package != module_name:
            # mlx_lm._version imports nothing (with mlx-lm's package, real or light, already loaded)
            import importlib

            try:
                module = importlib.import_module(module_name)
            except ImportError:
                module = None
        version = getattr(module, "__version__", None)
        if isinstance(version, str):
            out[dist] = version
            continue
        from importlib import metadata

        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def analyze(
    loaded: LoadedModel,
    prompt: str,
    config: AnalysisConfig,
    *,
    prepared: PreparedPrompt | None = None,
    lens: Lens | None = None,
    spill: str | None = None,
    keep_block_outputs: bool = False,
) -> LensRun:
    """Run the lens of ``config`` over ``prompt`` with ``loaded`` and return the ``LensRun``.

    ``prepared``: an already formatted and tokenized prompt (benchmarks feed token ids directly);
    by default ``prompt`` is formatted with ``format_prompt``. ``lens``: the lens ``config.lens``
    names, already resolved for ``loaded`` (callers that run many prompts resolve it once); by
    default it is resolved here. A learned lens maps each captured layer's residual stream
    (``Lens.translate``) before the model's own final norm and head; the last layer is never mapped.
    ``spill``: a directory; when given, the lens log-probabilities at several positions (see
    ``change_map.positions_to_keep``) are written there (``change_map.SpilledLogProbs``), for the change map.
    ``keep_block_outputs``: keep every block's output ``[num_layers, T, H]`` (causal attribution).
    """
    from .api import check_text, select_layers
    from .lens import capture_hidden, last_position_stats, mx
    from .lenses.store import resolve_lens

    config.validate(loaded.info.num_layers, loaded.info.vocab_size)
    t0 = time.perf_counter()
    tok = loaded.tokenizer
    if prepared is None:
        check_text(prompt, "the prompt")
        prepared = format_prompt(loaded, prompt, config.use_chat_template)
    ids = prepared.token_ids
    _check_length(loaded, len(ids))
    tracked = track_tokens(loaded, config.track_tokens)
    if lens is None:
        lens = resolve_lens(config.lens, loaded)
    n_layers = loaded.info.num_layers
    layers = select_layers(config.layer_strategy, n_layers, config.layer_step, config.custom_layers)
    factor = None
    info = loaded.info
    # Default: the reference implementation's scale where mlx-lm's differs (Gemma 3 in float32).
    scale = config.embedding_scale if config.embedding_scale is not None else loaded.parts.reference_embedding_scale
    if scale is not None:
        builtin = loaded.parts.builtin_embedding_scale or 1.0
        factor = scale / builtin
        info = dataclasses.replace(info, embedding_scale=scale)
    t1 = time.perf_counter()

    capture = sorted(set(layers) | set(range(n_layers))) if keep_block_outputs else layers
    sink = capture_hidden(loaded.parts, ids, capture, factor)
    final_last = sink[n_layers - 1][0, -1:]
    tracked_ids = [t.token_id for t in tracked]
    hidden_last = mx.stack([lens.translate(i, sink[i][0, -1]) for i in layers])
    stats = last_position_stats(loaded.parts, hidden_last, final_last, config.top_k, tracked_ids)
    t2 = time.perf_counter()

    decode = _Decoder(tok)
    predictions = _predictions(stats, layers, decode)
    evolutions = _evolutions(stats, layers, tracked)
    grid = None
    logit_view = None
    # Each captured layer's residual stream as the lens reads it, at every position (grid and change map).
    lensed = [lens.translate(i, sink[i][0]) for i in layers] if config.compute_grid or spill is not None else []
    extras = _comparison_extras(
        loaded, sink, lensed, layers, n_layers, prepared, prompt, decode, spill, keep_block_outputs, config.compute_grid
    )
    if config.compute_grid:
        keep = (extras["kept_positions"], extras["position_log_probs"]) if spill is not None else None
        shown = grid_positions(len(ids), config.grid_last_positions)
        grid = _grid(loaded, lensed, sink[n_layers - 1][0], layers, decode, log_probs_out=keep, positions=shown)
        if keep is not None:
            keep[1].flush()
        if lens.kind != "logit":  # keep the plain logit lens's reading beside the learned one (reports show both)
            raw = last_position_stats(
                loaded.parts, mx.stack([sink[i][0, -1] for i in layers]), final_last, config.top_k, tracked_ids
            )
            logit_view = LogitView(
                layer_predictions=_predictions(raw, layers, decode),
                token_evolutions=_evolutions(raw, layers, tracked),
                grid=_grid(
                    loaded, [sink[i][0] for i in layers], sink[n_layers - 1][0], layers, decode, positions=shown
                ),
            )
    t3 = time.perf_counter()
    del sink
    result = AnalysisResult(
        model=info,
        prompt=prompt,
        formatted_prompt=prepared.text,
        chat_template_applied=prepared.chat_template_applied,
        token_ids=list(ids),
        tokens=[decode(i) for i in ids],
        config=config.record(),
        captured_layers=list(layers),
        layer_predictions=predictions,
        tracked_tokens=tracked,
        token_evolutions=evolutions,
        grid=grid,
        versions=versions(),
        timings={
            "load": round(loaded.load_seconds, 4),
            "tokenize": round(t1 - t0, 4),
            "lens": round(t2 - t1, 4),
            "grid": round(t3 - t2, 4),
        },
        lens=lens.record(),
        logit_view=logit_view,
    )
    return LensRun(
        result=result,
        log_probs=stats.log_probs,
        tokenizer_fingerprint=tok.fingerprint(),
        single_token=[len(tok.encode_plain(t)) == 1 for t in config.track_tokens],
        load_seconds=float(loaded.load_seconds),
        log_sum_exp=stats.lse,
        embedding_factor=factor,
        decode=decode,
        **extras,
    )


def _predictions(stats: LastPositionStats, layers: list[int], decode: _Decoder) -> list[LayerPrediction]:
    return [
        LayerPrediction(
            layer_idx=layer,
            top_tokens=[TokenProb(i, decode(i), p) for i, p in zip(stats.top_ids[j], stats.top_probs[j])],
            entropy=stats.entropy[j],
            kl_to_final=stats.kl_to_final[j],
            final_token_rank=stats.final_token_rank[j],
            tracked=[TrackedAtLayer(p, r) for p, r in zip(stats.tracked_probs[j], stats.tracked_ranks[j])],
        )
        for j, layer in enumerate(layers)
    ]


def _evolutions(stats: LastPositionStats, layers: list[int], tracked: list[TrackedToken]) -> list[TokenEvolution]:
    return [
        _evolution(
            t,
            layers,
            [stats.tracked_probs[j][k] for j in range(len(layers))],
            [stats.tracked_ranks[j][k] for j in range(len(layers))],
        )
        for k, t in enumerate(tracked)
    ]


def grid_positions(n_tokens: int, last: int | None) -> list[int]:
    """The prompt positions the grid covers: all ``n_tokens``, or only the ``last`` ones."""
    return list(range(0 if last is None else max(0, n_tokens - last), n_tokens))


def _grid(
    loaded: LoadedModel,
    hidden: list[Any],
    final_hidden: Any,
    layers: list[int],
    decode: _Decoder,
    log_probs_out: Any = None,
    positions: list[int] | None = None,
) -> PositionGrid:
    """The layers x positions grid of ``hidden`` (one ``[T, H]`` per captured layer, as the lens reads them)
    at ``positions`` (default: all); ``log_probs_out``: see ``lens.position_grid`` (its positions are computed
    in the same head pass, whether the grid keeps them or not)."""
    from .lens import position_grid

    n_tokens = final_hidden.shape[0]
    shown = list(range(n_tokens)) if positions is None else list(positions)
    computed = shown if log_probs_out is None else sorted(set(shown) | set(log_probs_out[0]))
    g = position_grid(
        loaded.parts,
        hidden,
        final_hidden,
        log_probs_out=log_probs_out,
        positions=None if computed == list(range(n_tokens)) else computed,
    )
    index = {p: j for j, p in enumerate(computed)}
    columns = [index[p] for p in shown]

    def keep(rows: list[list[Any]]) -> list[list[Any]]:
        return rows if len(columns) == len(computed) else [[row[j] for j in columns] for row in rows]

    top_ids = keep(g.top_ids)
    return PositionGrid(
        layers=list(layers),
        positions=shown,
        top_token_ids=top_ids,
        top_tokens=[[decode(i) for i in row] for row in top_ids],
        top_probs=keep(g.top_probs),
        entropy=keep(g.entropy),
        kl_to_final=keep(g.kl_to_final),
        answer_probs=keep(g.answer_probs) if g.answer_probs is not None else None,
    )


def _comparison_extras(
    loaded: LoadedModel,
    sink: dict[int, Any],
    lensed: list[Any],
    layers: list[int],
    n_layers: int,
    prepared: PreparedPrompt,
    prompt: str,
    decode: Any,
    spill: str | None,
    keep_block_outputs: bool,
    grid_writes: bool,
) -> dict[str, Any]:
    """What the change map (``spill``) and causal attribution (``keep_block_outputs``) need of this run.
    ``lensed``: each captured layer's ``[T, H]`` as the lens reads it (the change map compares lens readings;
    attribution keeps the raw block outputs).
    ``grid_writes``: the position grid will fill the spilled log-probabilities (one head pass for both)."""
    import numpy as np

    from . import change_map, lens

    out: dict[str, Any] = {}
    if spill is not None:
        tokens = [decode(i) for i in prepared.token_ids]
        user = change_map.user_span(tokens, prepared.text, prompt)
        kept, note = change_map.positions_to_keep(len(tokens), user, len(layers), loaded.parts.args.vocab_size)
        name = f"positions-{time.perf_counter_ns()}"
        arr = change_map.spill_array(spill, name, (len(layers), len(kept), loaded.parts.args.vocab_size))
        if not grid_writes:
            lens.position_log_probs(loaded.parts, lensed, kept, arr)
            arr.flush()
        out.update(position_log_probs=arr, kept_positions=kept, user_positions=user, positions_note=note)
    if keep_block_outputs:
        stacked = lens.mx.stack([sink[i][0] for i in range(n_layers)]).astype(lens.mx.float32)
        lens.mx.eval(stacked)
        out["block_outputs"] = np.asarray(stacked)
    return out


def _evolution(tracked: TrackedToken, layers: list[int], probs: list[float], ranks: list[int]) -> TokenEvolution:
    top1 = [r == 1 for r in ranks]
    return TokenEvolution(
        token=tracked.token,
        token_id=tracked.token_id,
        text=tracked.text,
        layers=list(layers),
        probs=list(probs),
        ranks=list(ranks),
        emergence_layer=first_layer_where(layers, top1),
        stable_from_layer=true_from_layer(layers, top1),
    )


class _Decoder:
    """token id -> text, memoised (grids repeat the same ids many times)."""

    def __init__(self, tokenizer: Any):
        self._tok = tokenizer
        self._cache: dict[int, str] = {}

    def __call__(self, token_id: int) -> str:
        s = self._cache.get(token_id)
        if s is None:
            s = self._cache[token_id] = self._tok.token_to_str(token_id)
        return s
