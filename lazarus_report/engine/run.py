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
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.runtime import versions
from ..results.analysis import (
    AnalysisConfigRecord,
    AnalysisResult,
    LayerPrediction,
    LensView,
    PositionGrid,
    TokenEvolution,
    TrackedAtLayer,
    TrackedToken,
)
from ..results.codec import first_layer_where, true_from_layer
from ..results.provenance import TokenProb
from .prompt import Decoder, PreparedPrompt, check_length, format_prompt, track_tokens

if TYPE_CHECKING:
    import numpy as np

    from ..core.config import AnalysisConfig
    from ..lens.learned.artefact import Lens
    from ..lens.readout import LastPositionStats
    from ..models.loader import LoadedModel
    from ..results.answer import AnswerReading
    from .answer import AnswerPlan


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
    position_log_probs: Any = None  # [L, P, V] float32 on disk (SpilledLogProbs) at kept_positions
    kept_positions: list[int] | None = None
    user_positions: list[int] | None = None  # where the user's own text is in the prompt
    positions_note: str = ""
    block_outputs: np.ndarray | None = None  # [num_layers, T, H] float32: every block's output
    embedding_factor: float | None = None  # multiplier applied to embeddings on the way in
    decode: Any = None  # token id -> text (this model's tokenizer)
    # With ``position_log_probs``: a digest of what the head read at each (prefill chunk start, captured layer),
    # so a second model's run can tell which of its layers are bit for bit this run's (``analyze``'s ``reference``).
    layer_digests: dict[tuple[int, int], bytes] | None = None
    # Indices of the captured layers whose spilled log-probabilities are the reference run's, not written in
    # ``position_log_probs`` (read them from the reference: ``change_map.build_change_map``'s ``same_layers``).
    same_layers_as_reference: list[int] = dataclasses.field(default_factory=list)

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


def analyze(
    loaded: LoadedModel,
    prompt: str,
    config: AnalysisConfig,
    *,
    prepared: PreparedPrompt | None = None,
    lens: Lens | None = None,
    views: tuple[list[str], list[Lens]] | None = None,
    spill: str | None = None,
    keep_block_outputs: bool = False,
    reference: LensRun | None = None,
) -> LensRun:
    """Run the lens of ``config`` over ``prompt`` with ``loaded`` and return the ``LensRun``.

    ``prepared``: an already formatted and tokenized prompt (benchmarks feed token ids directly);
    by default ``prompt`` is formatted with ``format_prompt``. ``lens``: the lens ``config.lens``
    names, already resolved for ``loaded`` (callers that run many prompts resolve it once); by
    default it is resolved here. A learned lens maps each captured layer's residual stream
    (``Lens.translate``) before the model's own final norm and head; the last layer is never mapped.
    ``views``: the other lenses read from the same pass (``result.lens_views``), resolved (see ``_plan``).
    ``spill``: a directory; when given, the lens log-probabilities at several positions (see
    ``positions_to_keep``) are written there (``SpilledLogProbs``), for the change map.
    ``keep_block_outputs``: keep every block's output ``[num_layers, T, H]`` (causal attribution).
    ``reference``: another model's run with ``spill`` over the same tokens (model 1 of a comparison). Where a
    captured layer's lens input is bit for bit the reference's (checked by digest: the layers under a LoRA
    adapter's first block), its spilled log-probabilities are copied from the reference instead of computed
    at the positions the grid does not show: the same values this run would compute, without their head pass.
    """
    from ..lens.readout import last_position_stats, mx

    config.validate(loaded.info.num_layers, loaded.info.vocab_size)
    t0 = time.perf_counter()
    plan = _plan(loaded, prompt, config, prepared, lens, views)
    ids, lens, layers, n_layers = plan.prepared.token_ids, plan.lens, plan.layers, loaded.info.num_layers
    answer = plan.answer
    t1 = time.perf_counter()

    capture = sorted(set(layers) | set(range(n_layers))) if keep_block_outputs else layers
    decode = Decoder(loaded.tokenizer)
    # What the change map (spill) and attribution (keep_block_outputs) need; filled chunk by chunk.
    extras = _comparison_extras(loaded, layers, n_layers, plan.prepared, prompt, decode, spill, keep_block_outputs)
    keep = (extras["kept_positions"], extras["position_log_probs"]) if spill is not None else None
    # The grid's positions (all, or the last ones an HTML-only run shows) and the change map's, in one pass.
    shown = grid_positions(len(ids), config.grid_last_positions) if config.compute_grid else []
    reader = _ChunkReader(loaded, config, plan, shown, grid_computed(shown, keep), keep, reference)
    sink = _forward(loaded, plan, capture, reader, extras if keep_block_outputs else None)
    final_last = sink[n_layers - 1][0, -1:]
    hidden_last = mx.stack([lens.translate(i, sink[i][0, -1]) for i in layers])
    stats = last_position_stats(loaded.parts, hidden_last, final_last, config.top_k, [t.token_id for t in plan.tracked])
    same_layers = _settle_reused(reader.reused, reference, keep, len(layers)) if reader.reused else []
    if keep is not None:
        keep[1].flush()
    t2 = time.perf_counter()

    grid, view_grids = reader.grids(decode) if config.compute_grid else (None, [None] * len(plan.views))
    lens_views = [
        _lens_view(loaded, config, plan, v, sink, final_last, decode, g) for v, g in zip(plan.views, view_grids)
    ]
    r0 = time.perf_counter()
    reading = answer.reading(loaded, lens, layers, decode, plan.factor) if answer is not None else None
    t3 = time.perf_counter()
    t2 -= reader.seconds  # "lens": the forward pass and the last position; "grid": the per-position work
    del sink
    timings = {"load": loaded.load_seconds, "tokenize": t1 - t0, "lens": t2 - t1, "grid": t3 - t2}
    if answer is not None:  # the answer's own time (tokenizing or generating it, reading it), apart
        timings.update(tokenize=t1 - t0 - answer.seconds, grid=r0 - t2, answer=answer.seconds + t3 - r0)
    result = _analysis_result(prompt, config, plan, stats, decode, grid, lens_views, timings, reading)
    return LensRun(
        result=result,
        log_probs=stats.log_probs,
        tokenizer_fingerprint=loaded.tokenizer.fingerprint(),
        single_token=[len(loaded.tokenizer.encode_plain(t)) == 1 for t in config.track_tokens],
        load_seconds=float(loaded.load_seconds),
        log_sum_exp=stats.lse,
        embedding_factor=plan.factor,
        decode=decode,
        layer_digests=reader.digests if keep is not None else None,
        same_layers_as_reference=same_layers,
        **extras,
    )


def _forward(
    loaded: LoadedModel, plan: _Plan, capture: list[int], reader: _ChunkReader, extras: dict[str, Any] | None
) -> dict[int, Any]:
    """The forward pass in prefill chunks through the KV cache (one piece for short prompts), each chunk handed
    to ``reader`` (the grid and the change map's positions), so no [L, T, H] or [L, T, V] is ever held; every
    block's output kept into ``extras`` (attribution) when given. Returns the last chunk's captured rows."""
    from ..lens.readout import STREAMED_PREFILL_CHUNK, forward_chunks

    ids, answer, n_layers = plan.prepared.token_ids, plan.answer, loaded.info.num_layers
    chunk = STREAMED_PREFILL_CHUNK if getattr(loaded, "execution", "float32") == "streamed" else None
    chunks = forward_chunks(loaded.parts, ids if answer is None else answer.run_ids, capture, plan.factor, chunk)
    if answer is not None:  # the answer rides on the prompt's pass; the loop below sees the prompt's rows only
        chunks = answer.collect(chunks, plan.layers, n_layers)
    sink: dict[int, Any] = {}
    for start, sink in chunks:
        g0 = time.perf_counter()
        reader.read(start, sink)
        if extras is not None:
            _keep_blocks(extras, sink, n_layers, start, len(ids))
        reader.seconds += time.perf_counter() - g0
    return sink


@dataclass(frozen=True)
class _Plan:
    """What ``analyze`` settles before the forward pass."""

    prepared: PreparedPrompt
    tracked: list[TrackedToken]
    lens: Lens
    views: list[Lens]  # the other lenses read from the same pass (``LensView``), in order
    view_specs: list[str]  # ``config.extra_lenses`` as resolved (``all`` expanded)
    layers: list[int]  # the captured layers
    factor: float | None  # the embedding multiplier of ``forward_chunks`` (None: none)
    info: Any  # the ``ModelInfo`` to record (with the embedding scale used)
    answer: AnswerPlan | None  # the answer to read after the prompt (``engine.answer``), None without one


def _plan(
    loaded: LoadedModel,
    prompt: str,
    config: AnalysisConfig,
    prepared: PreparedPrompt | None,
    lens: Lens | None,
    views: tuple[list[str], list[Lens]] | None,
) -> _Plan:
    """The prompt formatted and checked (unless ``prepared``), the tracked tokens, the lens (resolved unless
    given), the other lenses (``views``: (their specs, the lenses) of ``config.extra_lenses`` as
    ``store.expand_lens_list`` resolves them, unless given; plus the plain logit lens beside a learned lens with a
    grid), the captured layers, the embedding scale and the answer (``config.answer`` tokenized, or
    ``config.generate``'s tokens written)."""
    from ..core.config import check_text, select_layers
    from ..lens.learned.store import expand_lens_list, resolve_lens
    from .answer import plan_answer

    if prepared is None:
        check_text(prompt, "the prompt")
        prepared = format_prompt(loaded, prompt, config.use_chat_template)
    check_length(loaded, len(prepared.token_ids))
    tracked = track_tokens(loaded, config.track_tokens)
    if lens is None:
        lens = resolve_lens(config.lens, loaded)
    view_specs, view_lenses = views or expand_lens_list(list(config.extra_lenses), loaded, named=(config.lens,))
    view_lenses = list(view_lenses)
    # Beside a learned lens with a grid, the plain logit lens's reading too (reports show both).
    if lens.kind != "logit" and config.compute_grid and all(v.kind != "logit" for v in view_lenses):
        view_lenses.append(resolve_lens("logit", loaded))
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
    answer = plan_answer(loaded, prepared, config, factor)  # a generated answer is written here
    return _Plan(prepared, tracked, lens, view_lenses, list(view_specs), layers, factor, info, answer)


class _ChunkReader:
    """The per-chunk work of ``analyze``'s forward pass: the layers x positions grid (and the other lenses'
    grids: ``plan.views``) and the change map's log-probabilities (``keep``) at the chunk's positions.
    Where a captured layer's lens input is bit for bit the ``reference`` run's, its spilled rows are the
    reference's (``reused``)."""

    def __init__(
        self,
        loaded: LoadedModel,
        config: AnalysisConfig,
        plan: _Plan,
        shown: list[int],
        computed: list[int],
        keep: Any,
        reference: LensRun | None,
    ) -> None:
        layers = plan.layers
        self.loaded, self.config, self.lens, self.layers, self.views = loaded, config, plan.lens, layers, plan.views
        self.shown, self.computed, self.keep, self.reference = shown, computed, keep, reference
        self.n_layers = loaded.info.num_layers
        self.grid_parts: list[Any] = []
        self.view_grid_parts: list[list[Any]] = [[] for _ in plan.views]
        self.seconds = 0.0  # the per-position work ("grid" in the timings)
        self.digests: dict[tuple[int, int], bytes] = {}
        self.reused: set[tuple[int, int]] = set()  # (chunk start, layer index) whose spilled rows are the reference's
        self.reusable = (
            keep is not None
            and reference is not None
            and reference.layer_digests is not None
            and reference.position_log_probs is not None
            and reference.kept_positions == keep[0]
            and list(reference.result.captured_layers) == list(layers)
            and reference.position_log_probs.shape == keep[1].shape
        )

    def read(self, start: int, sink: dict[int, Any]) -> None:
        """The chunk of prompt positions from ``start``: ``sink`` holds each captured block's ``[1, c, H]``."""
        from ..lens.readout import position_log_probs

        keep = self.keep
        # Each captured layer's residual stream as the lens reads it, at this chunk's positions.
        n_rows = sink[self.n_layers - 1].shape[1]
        if self.config.compute_grid:
            here = any(start <= p < start + n_rows for p in self.computed)
        else:
            here = keep is not None
        if not here:
            return
        lensed = [self.lens.translate(i, sink[i][0]) for i in self.layers]
        if keep is not None:
            self.digests.update(((start, i), _digest(h)) for i, h in zip(self.layers, lensed))
        if self.config.compute_grid:
            self._grid_part(start, sink, lensed)
        elif keep is not None:
            position_log_probs(self.loaded.parts, lensed, keep[0], keep[1], offset=start)

    def _grid_part(self, start: int, sink: dict[int, Any], lensed: list[Any]) -> None:
        loaded, layers, keep, reference = self.loaded, self.layers, self.keep, self.reference
        computed, shown = self.computed, self.shown
        final = sink[self.n_layers - 1][0]
        same = [
            j
            for j, i in enumerate(layers)
            if self.reusable and reference.layer_digests.get((start, i)) == self.digests[(start, i)]  # type: ignore[union-attr]
        ]
        if same and keep is not None and reference is not None:
            self.grid_parts.append(_grid_reusing(loaded, lensed, final, computed, shown, keep, same, start))
            self.reused.update((start, j) for j in same)
        else:
            self.grid_parts.append(
                _grid_stats(loaded, lensed, final, computed, log_probs_out=keep, offset=start, shown=shown)
            )
        for view, parts in zip(self.views, self.view_grid_parts):  # the other lenses' readings of the same pass
            hidden = [view.translate(i, sink[i][0]) for i in layers]
            parts.append(_grid_stats(loaded, hidden, final, shown, offset=start))

    def grids(self, decode: Decoder) -> tuple[PositionGrid, list[PositionGrid | None]]:
        """The grid, and each other lens's (``views``) at the shown positions."""
        from ..lens.readout import GridStats

        layers = self.layers
        grid = _as_position_grid(GridStats.joined(self.grid_parts), layers, self.computed, self.shown, decode)
        views: list[PositionGrid | None] = [
            _as_position_grid(GridStats.joined(parts), layers, self.shown, self.shown, decode)
            for parts in self.view_grid_parts
        ]
        return grid, views


def _lens_view(
    loaded: LoadedModel,
    config: AnalysisConfig,
    plan: _Plan,
    view: Lens,
    sink: dict[int, Any],
    final_last: Any,
    decode: Decoder,
    grid: PositionGrid | None,
) -> LensView:
    """The run through another lens ``view``: its statistics at the last position (the captured rows of the same
    pass), its grid (computed chunk by chunk with the primary's), and its record. The logit lens's record takes
    the primary lens's measurement of the logit lens on the same held-out text when it has none of its own."""
    from ..lens.readout import last_position_stats, mx

    layers, tracked = plan.layers, plan.tracked
    hidden = mx.stack([view.translate(i, sink[i][0, -1]) for i in layers])
    stats = last_position_stats(loaded.parts, hidden, final_last, config.top_k, [t.token_id for t in tracked])
    record = view.record()
    primary = plan.lens.record()
    if view.kind == "logit" and not record.fidelity and primary.logit_fidelity:
        record = dataclasses.replace(record, fidelity=list(primary.logit_fidelity), corpus=primary.corpus)
    return LensView(
        lens=record,
        layer_predictions=layer_predictions_of(stats, layers, decode),
        token_evolutions=token_evolutions_of(stats, layers, tracked),
        grid=grid,
    )


def _analysis_result(
    prompt: str,
    config: AnalysisConfig,
    plan: _Plan,
    stats: LastPositionStats,
    decode: Decoder,
    grid: PositionGrid | None,
    lens_views: list[LensView],
    timings: dict[str, float],
    answer: AnswerReading | None,
) -> AnalysisResult:
    """The ``AnalysisResult`` of ``analyze`` (``timings`` in seconds, rounded here)."""
    ids = plan.prepared.token_ids
    return AnalysisResult(
        model=plan.info,
        prompt=prompt,
        formatted_prompt=plan.prepared.text,
        chat_template_applied=plan.prepared.chat_template_applied,
        token_ids=list(ids),
        tokens=[decode(i) for i in ids],
        config=dataclasses.replace(AnalysisConfigRecord.of(config), extra_lenses=list(plan.view_specs)),
        captured_layers=list(plan.layers),
        layer_predictions=layer_predictions_of(stats, plan.layers, decode),
        tracked_tokens=plan.tracked,
        token_evolutions=token_evolutions_of(stats, plan.layers, plan.tracked),
        grid=grid,
        versions=versions(),
        timings={name: round(seconds, 4) for name, seconds in timings.items()},
        lens=plan.lens.record(),
        lens_views=lens_views,
        answer=answer,
    )


def layer_predictions_of(stats: LastPositionStats, layers: list[int], decode: Decoder) -> list[LayerPrediction]:
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


def token_evolutions_of(
    stats: LastPositionStats, layers: list[int], tracked: list[TrackedToken]
) -> list[TokenEvolution]:
    return [
        _evolution(
            t,
            layers,
            [stats.tracked_probs[j][k] for j in range(len(layers))],
            [stats.tracked_ranks[j][k] for j in range(len(layers))],
        )
        for k, t in enumerate(tracked)
    ]


def _digest(hidden: Any) -> bytes:
    """A digest of an evaluated ``[c, H]`` array's bytes (equal digests: bit-identical arrays)."""
    import hashlib

    import numpy as np

    from ..lens.readout import mx

    return hashlib.blake2b(np.asarray(hidden.view(mx.uint8)).tobytes(), digest_size=16).digest()


class _LayerRows:
    """``out[layers[j], cols] = rows``: a ``position_grid`` writing into some layers of a ``[L, P, V]`` array."""

    def __init__(self, out: Any, layers: list[int]) -> None:
        self.out, self.layers = out, layers

    def __setitem__(self, key: tuple[int, Any], rows: Any) -> None:
        self.out[self.layers[key[0]], key[1]] = rows


def _grid_reusing(
    loaded: LoadedModel,
    lensed: list[Any],
    final: Any,
    computed: list[int],
    shown: list[int],
    keep: tuple[list[int], Any],
    same: list[int],
    start: int,
) -> Any:
    """``_grid_stats`` for one prefill chunk when the captured layers ``same`` (indices into ``lensed``) read
    exactly what the reference run's did: their spilled rows are the reference's (not written here: see
    ``_settle_reused``), so their head pass covers only the shown positions (their statistics still use this
    model's own final layer)."""
    n_rows = final.shape[0]
    here = [p for p in computed if start <= p < start + n_rows]
    if not here:
        return None
    other = [j for j in range(len(lensed)) if j not in same]
    shown_here = [p for p in shown if start <= p < start + n_rows]
    groups = [(same, _grid_stats(loaded, [lensed[j] for j in same], final, shown, None, start), shown_here)]
    if other:
        sub = (keep[0], _LayerRows(keep[1], other))
        groups.append(
            (other, _grid_stats(loaded, [lensed[j] for j in other], final, computed, sub, start, shown), here)
        )
    return _merge_layers(groups, len(lensed), here)


def _settle_reused(
    reused: set[tuple[int, int]], reference: LensRun | None, keep: tuple[list[int], Any] | None, n_layers: int
) -> list[int]:
    """The layers whose spilled rows are the reference's in every prefill chunk (left unwritten); a layer that
    was the reference's in some chunks only gets those chunks' rows copied from the reference."""
    import numpy as np

    assert reference is not None and keep is not None
    starts = sorted({start for start, _ in reused} | {start for start, _ in reference.layer_digests or {}})
    everywhere = [j for j in range(n_layers) if all((start, j) in reused for start in starts)]
    kept, out = keep
    bounds = [*starts[1:], max(kept) + 1]
    for start, j in sorted(reused):
        if j in everywhere:
            continue
        stop = bounds[starts.index(start)]
        cols = [c for c, p in enumerate(kept) if start <= p < stop]
        if cols:
            rows = reference.position_log_probs.read(j, np.empty((len(cols), out.shape[2]), np.float32), cols)
            out[j, cols[0] : cols[-1] + 1] = rows
    return everywhere


def _merge_layers(groups: list[tuple[list[int], Any, list[int]]], n_layers: int, here: list[int]) -> Any:
    """One chunk's grid statistics on the columns ``here`` from groups of layers ``(layer indices, their grid
    statistics or None, the positions those cover)``; 0 where a group has no value (columns that are there only
    for the change map)."""
    from ..lens.readout import GridStats

    index = {p: k for k, p in enumerate(here)}
    merged: dict[str, list[list[Any]] | None] = {}
    for field in ("top_ids", "top_probs", "entropy", "kl_to_final", "top_k_ids", "answer_probs"):
        values = [getattr(g, field) for _, g, _ in groups if g is not None]
        if any(v is None for v in values) or (not values and field == "top_k_ids"):  # top_k_ids: top-k > 1 only
            merged[field] = None
            continue
        rows: list[list[Any]] = [[0] * len(here) for _ in range(n_layers)]
        for layer_ids, g, positions in groups:
            for k, j in enumerate(layer_ids if g is not None else []):
                for p, value in zip(positions, getattr(g, field)[k]):
                    rows[j][index[p]] = value
        merged[field] = rows
    return GridStats(**merged)  # type: ignore[arg-type]  # the fields left None are the optional ones


def grid_positions(n_tokens: int, last: int | None) -> list[int]:
    """The prompt positions the grid covers: all ``n_tokens``, or only the ``last`` ones."""
    return list(range(0 if last is None else max(0, n_tokens - last), n_tokens))


def grid_computed(shown: list[int], log_probs_out: Any = None) -> list[int]:
    """The positions a grid pass computes: those it shows and those the change map keeps (same head pass)."""
    return shown if log_probs_out is None else sorted(set(shown) | set(log_probs_out[0]))


def _grid_stats(
    loaded: LoadedModel,
    hidden: list[Any],
    final_hidden: Any,
    computed: list[int],
    log_probs_out: Any = None,
    offset: int = 0,
    shown: list[int] | None = None,
) -> Any:
    """``lens.position_grid`` over ``hidden`` (one ``[c, H]`` per captured layer: prompt positions ``offset ..
    offset + c - 1``) at the prompt positions of ``computed`` inside it; None when there are none. ``shown``: the
    positions whose statistics are kept (default all of ``computed``; the others only feed ``log_probs_out``)."""
    from ..lens import readout as lens

    n_rows = final_hidden.shape[0]
    local = [p - offset for p in computed if offset <= p < offset + n_rows]
    if not local:
        return None
    long = offset > 0 or n_rows >= lens.PREFILL_CHUNK  # part of a prompt prefilled in chunks
    # Streamed weights decode the head in every head matmul: larger row blocks, and the final rows with the layers'.
    is_streamed = getattr(loaded, "execution", "float32") == "streamed"
    if is_streamed:
        budget = lens.STREAMED_GRID_BUDGET_BYTES
    else:
        budget = lens.CHUNKED_GRID_BUDGET_BYTES if long else lens.GRID_BUDGET_BYTES
    return lens.position_grid(
        loaded.parts,
        hidden,
        final_hidden,
        log_probs_out=log_probs_out,
        offset=offset,
        budget_bytes=budget,
        positions=None if local == list(range(n_rows)) else local,
        stats_positions=None if shown is None else [p - offset for p in shown if offset <= p < offset + n_rows],
        one_head_pass=is_streamed,
    )


def _as_position_grid(
    g: Any, layers: list[int], computed: list[int], shown: list[int], decode: Decoder
) -> PositionGrid:
    """A ``PositionGrid`` at ``shown`` from grid statistics whose columns are ``computed`` (a superset)."""
    index = {p: j for j, p in enumerate(computed)}
    columns = [index[p] for p in shown]

    def keep(rows: list[list[Any]]) -> list[list[Any]]:
        return rows if len(columns) == len(computed) else [[row[j] for j in columns] for row in rows]

    top_ids = keep(g.top_ids)
    return PositionGrid(
        layers=list(layers),
        positions=list(shown),
        top_token_ids=top_ids,
        top_tokens=[[decode(i) for i in row] for row in top_ids],
        top_probs=keep(g.top_probs),
        entropy=keep(g.entropy),
        kl_to_final=keep(g.kl_to_final),
        answer_probs=keep(g.answer_probs) if g.answer_probs is not None else None,
    )


def _comparison_extras(
    loaded: LoadedModel,
    layers: list[int],
    n_layers: int,
    prepared: PreparedPrompt,
    prompt: str,
    decode: Any,
    spill: str | None,
    keep_block_outputs: bool,
) -> dict[str, Any]:
    """Where the change map (``spill``) and causal attribution (``keep_block_outputs``) collect what they
    need of this run, filled chunk by chunk by ``analyze``: the spilled lens log-probabilities at the kept
    positions (written by the grid when there is one, else by ``lens.position_log_probs``), and every
    block's raw output ``[num_layers, T, H]``."""
    import numpy as np

    from .spill import positions_to_keep, spill_array, user_span

    out: dict[str, Any] = {}
    if spill is not None:
        tokens = [decode(i) for i in prepared.token_ids]
        user = user_span(tokens, prepared.text, prompt)
        kept, note = positions_to_keep(len(tokens), user, len(layers), loaded.parts.args.vocab_size)
        name = f"positions-{time.perf_counter_ns()}"
        arr = spill_array(spill, name, (len(layers), len(kept), loaded.parts.args.vocab_size))
        out.update(position_log_probs=arr, kept_positions=kept, user_positions=user, positions_note=note)
    if keep_block_outputs:
        hidden = int(loaded.parts.args.hidden_size)
        out["block_outputs"] = np.empty((n_layers, len(prepared.token_ids), hidden), dtype=np.float32)
    return out


def _keep_blocks(extras: dict[str, Any], sink: dict[int, Any], n_layers: int, start: int, n_tokens: int) -> None:
    """Copy one prefill chunk's block outputs into ``extras["block_outputs"]`` (float32)."""
    import numpy as np

    from ..lens.readout import mx

    stacked = mx.stack([sink[i][0] for i in range(n_layers)]).astype(mx.float32)
    mx.eval(stacked)
    extras["block_outputs"][:, start : start + stacked.shape[1]] = np.asarray(stacked)


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
