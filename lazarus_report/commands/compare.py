"""Compare two models on one prompt: load each in turn, run the lens, then compare the runs."""

from __future__ import annotations

from collections.abc import Sequence
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
    """
    import tempfile

    from ..compare.layers import compare_models_from_runs

    config = config or AnalysisConfig(layer_strategy=LayerStrategy.ALL)
    if not prompt or not prompt.strip():
        raise LazarusError("the prompt is empty")
    if any(t == "" for t in config.track_tokens):
        raise LazarusError("cannot track an empty string")
    want_map = config.compute_grid if change_map is None else change_map
    runs: list[LensRun] = []
    attributed: tuple[Any, str | None] = (None, None)
    with tempfile.TemporaryDirectory(prefix="lazarus-compare-") as spill:
        for side in each_model((model1, model2), (adapter1, adapter2), embedding_scales, precision, max_memory):
            try:
                runs.append(
                    side.run(
                        prompt,
                        config,
                        spill=spill if want_map else None,
                        keep_block_outputs=attribution,
                        reference=runs[0] if runs and want_map else None,  # its layers under an adapter: copied
                    )
                )
            except LazarusError as exc:
                raise LazarusError(f"model {side.number} ({side.model_id}): {exc}") from None
            if attribution and side.number == 2:
                from ..compare.attribution import attribute

                attributed = attribute(side.analyzer.loaded, runs[0], runs[1])
        if is_patched(attributed):
            model = (model1, adapter1, embedding_scales[0])
            (reverse,) = reverse_patched(model, precision, max_memory, [(runs[0], runs[1], attributed[0])])
            attributed = (reverse, None)
        comparison = compare_models_from_runs(runs, attribution=attributed[0], attribution_note=attributed[1])
        del runs  # the memory maps go before their directory
    return comparison


def is_patched(attributed: tuple[Attribution | None, str | None]) -> bool:
    """An attribution by activation patching (``attribution.attribute``'s answer): its reverse direction
    needs model 1 loaded again (``reverse_patched``)."""
    return attributed[0] is not None and attributed[0].method == "activation-patching"


def reverse_patched(
    model1: tuple[str, str | None, float | None],
    precision: str,
    max_memory: int | str | None,
    cases: Sequence[tuple[LensRun, LensRun, Attribution]],
) -> list[Attribution]:
    """Each ``(model 1's run, model 2's run, forward attribution)`` of ``cases`` completed with its reverse
    direction (``attribution.reverse_patching``: model 2's block outputs patched into model 1). Model 1
    (``model1``: id, adapter, embedding scale) loads once more, for all of them."""
    from ..compare.attribution import reverse_patching

    model, adapter, scale = model1
    out: list[Attribution] = []
    for side in each_model((model,), (adapter,), (scale,), precision, max_memory):
        out = [reverse_patching(side.analyzer.loaded, first, second, forward) for first, second, forward in cases]
    return out
