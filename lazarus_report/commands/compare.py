"""Compare two models on one prompt: load each in turn, run the lens, then compare the runs."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..core.config import AnalysisConfig, LayerStrategy
from ..core.errors import LazarusError
from .analyzer import each_model

if TYPE_CHECKING:
    from ..engine.run import LensRun
    from ..results.comparison import Attribution, ComparisonResult


def compare_models(
    model1: str,
    model2: str,
    prompt: str,
    config: AnalysisConfig | None = None,
    *,
    adapter1: str | None = None,
    adapter2: str | None = None,
    embedding_scales: tuple[float | None, float | None] = (None, None),
    precision: str = "auto",
    attribution: bool = False,
    change_map: bool | None = None,
    max_memory: int | str | None = None,
) -> ComparisonResult:
    """Analyze ``prompt`` with two models and compare them (``ComparisonResult``).

    The models load one after the other and the first is released before the second loads, so the
    peak memory is that of the larger model, not the sum.

    ``attribution``: also attribute the change to layers causally (``attribution.attribute``).
    ``change_map``: compare the models at several positions, not only the last (the layers x
    positions map; default: when ``config.compute_grid``). Model 1's distributions wait for model 2
    in a file in a temporary directory (at most ``change_map.POSITION_BUDGET_BYTES``).

    ``config.answer``: both models read the same answer. ``config.generate``: each model writes its own, and each
    reads the other's (``ComparisonResult.answer_cross``): model 2 reads model 1's while it is loaded; model 1
    reads model 2's only when the two answers differ, loading again after model 2 (in the same load as the
    reverse activation patching of ``attribution``, when there is one).
    """
    import tempfile

    from ..compare.layers import compare_models_from_runs

    config = config or AnalysisConfig(layer_strategy=LayerStrategy.ALL)
    if not prompt or not prompt.strip():
        raise LazarusError("the prompt is empty")
    if any(t == "" for t in config.track_tokens):
        raise LazarusError("cannot track an empty string")
    want_map = config.compute_grid if change_map is None else change_map
    # Base vs base + adapter: the change map's rows are computed from both runs' lens inputs when it reads them.
    from_hidden = want_map and _map_from_lens_inputs(model1, model2, (adapter1, adapter2), embedding_scales, config)
    runs: list[LensRun] = []
    heads: list[Any] = []
    cross: list[float | None] = [None, None]  # compare --generate: ComparisonResult.answer_cross
    attributed: tuple[Any, str | None] = (None, None)
    with tempfile.TemporaryDirectory(prefix="lazarus-compare-") as spill:
        for side in each_model((model1, model2), (adapter1, adapter2), embedding_scales, precision, max_memory):
            if side.number == 1 and from_hidden:
                from_hidden = _lens_inputs_fit(side.analyzer, prompt, config)
            spilled = spill if want_map and not from_hidden else None
            runs.append(_run_side(side, prompt, config, spilled, attribution or from_hidden, runs))
            if from_hidden:  # (only then: holding model 1's parts would keep two different models in memory)
                heads.append(side.analyzer.loaded.parts)
            if attribution and side.number == 2:
                from ..compare.attribution import attribute

                attributed = attribute(side.analyzer.loaded, runs[0], runs[1])
            if config.generate is not None and side.number == 2:  # model 2 reads model 1's answer now
                cross[1] = _cross(side.analyzer.loaded, runs[1], runs[0])
        if config.generate is not None and _same_answer(runs):  # model 1 read model 2's answer already
            cross[0] = runs[0].result.answer.sequence_logprob  # type: ignore[union-attr]
        read_cross = config.generate is not None and cross[0] is None
        if is_patched(attributed) or read_cross:  # model 1 again, once, for both
            model = (model1, adapter1, embedding_scales[0])
            cases = [(runs[0], runs[1], attributed[0])] if is_patched(attributed) else []

            def read(loaded: Any, own: LensRun = runs[0], other: LensRun = runs[1]) -> None:
                cross[0] = _cross(loaded, own, other)  # model 1's log-probability of model 2's generated answer

            reversed_ = reverse_patched(model, precision, max_memory, cases, also=read if read_cross else None)
            attributed = (reversed_[0], None) if reversed_ else attributed
        if from_hidden:
            runs = map_from_lens_inputs(runs, heads, prompt, keep_block_outputs=attribution)
        comparison = compare_models_from_runs(runs, attribution=attributed[0], attribution_note=attributed[1])
        del runs  # the memory maps go before their directory
    if config.generate is not None:
        comparison = dataclasses.replace(comparison, answer_cross=[float(x) for x in cross])  # type: ignore[arg-type]
    return comparison


def _run_side(
    side: Any, prompt: str, config: AnalysisConfig, spill: str | None, keep_blocks: bool, runs: list[LensRun]
) -> LensRun:
    """One side's lens run (``spill``: the change map's rows spilled there; model 2 then reuses model 1's under an
    adapter), its errors naming the side."""
    try:
        return side.run(
            prompt,
            config,
            spill=spill,
            keep_block_outputs=keep_blocks,
            reference=runs[0] if runs and spill is not None else None,
        )
    except LazarusError as exc:
        raise LazarusError(f"model {side.number} ({side.model_id}): {exc}") from None


# The lens inputs of model 1 kept for the change map (``map_from_lens_inputs``), at most this many bytes.
LENS_INPUTS_BUDGET_BYTES = 64 * 2**20


def _map_from_lens_inputs(
    model1: str,
    model2: str,
    adapters: tuple[str | None, str | None],
    scales: tuple[float | None, float | None],
    config: AnalysisConfig,
) -> bool:
    """Whether the change map can read both models' rows from their lens inputs (``map_from_lens_inputs``): model 2
    is model 1's weights plus a LoRA adapter on its blocks (the same final norm and head), read with the logit lens,
    with no answer (the checks that need no weights; ``_lens_inputs_fit`` checks the prompt's size)."""
    from pathlib import Path

    from ..models.adapters import adapter_files, tensor_shapes

    if model1 != model2 or adapters[0] is not None or adapters[1] is None or scales[0] != scales[1]:
        return False
    if config.lens != "logit" or config.answer is not None or config.generate is not None:
        return False
    try:
        names = tensor_shapes(Path(adapter_files(adapters[1])[1]))
    except LazarusError:
        return False  # reported when the adapter is applied
    block = re.compile(r"(model\.)?layers\.\d+\.[\w.]+\.(lora_a|lora_b|m)")
    return bool(names) and all(block.fullmatch(name) for name in names)


def _lens_inputs_fit(analyzer: Any, prompt: str, config: AnalysisConfig) -> bool:
    """Model 1's block outputs (``keep_block_outputs``) of this prompt fit ``LENS_INPUTS_BUDGET_BYTES``, and the
    model runs whole in float32 on this process (not sharded, not streamed: its block outputs are what the lens
    reads)."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    loaded = analyzer.loaded
    if loaded.parts.shard is not None or getattr(loaded, "execution", "float32") != "float32":
        return False
    modules = (loaded.parts.norm, loaded.parts.backbone.embed_tokens)
    arrays: list[Any] = [kv[1] for m in modules for kv in tree_flatten(m.parameters())]
    if any(v.dtype != mx.float32 for v in arrays):
        return False  # the block outputs are kept as float32: the lens must have read float32 too
    ids = analyzer.format_prompt(prompt, config.use_chat_template)[2]
    size = 4 * loaded.info.num_layers * len(ids) * int(loaded.parts.args.hidden_size)
    return size <= LENS_INPUTS_BUDGET_BYTES


def map_from_lens_inputs(runs: list[LensRun], heads: list[Any], prompt: str, keep_block_outputs: bool) -> list[LensRun]:
    """Both runs with the change map's ``position_log_probs`` computed when read (``HeadLogProbs``) from their
    block outputs at the kept positions, instead of spilled: the same positions, note and values as a spilled run's;
    model 2's layers whose lens inputs are bit for bit model 1's are its ``same_layers_as_reference`` (their rows are
    model 1's: the same head). ``heads``: each run's ``LensParts``."""
    import numpy as np

    from ..engine.spill import HeadLogProbs, positions_to_keep, user_span

    r1 = runs[0].result
    layers = list(r1.captured_layers)
    user = user_span(r1.tokens, r1.formatted_prompt, prompt)
    kept, note = positions_to_keep(len(r1.tokens), user, len(layers), heads[0].args.vocab_size)
    hidden = [np.ascontiguousarray(run.block_outputs[layers][:, kept]) for run in runs]  # type: ignore[index]
    bits = [h.view(np.uint32) for h in hidden]
    same = [j for j in range(len(layers)) if np.array_equal(bits[0][j], bits[1][j])]
    out = []
    for run, parts, h, same_layers in zip(runs, heads, hidden, ([], same)):
        out.append(
            dataclasses.replace(
                run,
                position_log_probs=HeadLogProbs(parts, h),
                kept_positions=kept,
                user_positions=user,
                positions_note=note,
                same_layers_as_reference=same_layers,
                block_outputs=run.block_outputs if keep_block_outputs else None,
            )
        )
    return out


def _cross(loaded: Any, own: LensRun, other: LensRun) -> float:
    """``own``'s model's log-probability of ``other``'s generated answer (``ComparisonResult.answer_cross``)."""
    from ..engine.answer import cross_logprob

    same = own.tokenizer_fingerprint == other.tokenizer_fingerprint
    return cross_logprob(loaded, own.result, other.result, same, own.embedding_factor)


def _same_answer(runs: list[LensRun]) -> bool:
    """Both models wrote the same tokens (same tokenizer) after the same prompt tokens: each one's probability of
    the other's answer is its own."""
    a1, a2 = (r.result.answer for r in runs)
    return (
        a1 is not None
        and a2 is not None
        and runs[0].tokenizer_fingerprint == runs[1].tokenizer_fingerprint
        and runs[0].result.token_ids == runs[1].result.token_ids
        and [t.token_id for t in a1.tokens] == [t.token_id for t in a2.tokens]
    )


def is_patched(attributed: tuple[Attribution | None, str | None]) -> bool:
    """An attribution by activation patching (``attribution.attribute``'s answer): its reverse direction
    needs model 1 loaded again (``reverse_patched``)."""
    return attributed[0] is not None and attributed[0].method == "activation-patching"


def reverse_patched(
    model1: tuple[str, str | None, float | None],
    precision: str,
    max_memory: int | str | None,
    cases: Sequence[tuple[LensRun, LensRun, Attribution]],
    also: Callable[[Any], None] | None = None,
) -> list[Attribution]:
    """Each ``(model 1's run, model 2's run, forward attribution)`` of ``cases`` completed with its reverse
    direction (``attribution.reverse_patching``: model 2's block outputs patched into model 1). Model 1
    (``model1``: id, adapter, embedding scale) loads once more, for all of them."""
    from ..compare.attribution import reverse_patching

    model, adapter, scale = model1
    out: list[Attribution] = []
    for side in each_model((model,), (adapter,), (scale,), precision, max_memory):
        out = [reverse_patching(side.analyzer.loaded, first, second, forward) for first, second, forward in cases]
        if also is not None:
            also(side.analyzer.loaded)
    return out
