"""Compare two models on one prompt: load each in turn, run the lens, then compare the runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..core.config import AnalysisConfig, LayerStrategy
from ..core.errors import LazarusError
from .analyzer import each_model

if TYPE_CHECKING:
    from ..engine.run import LensRun
    from ..results.comparison import ComparisonResult


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
        if attributed[0] is not None and attributed[0].method == "activation-patching":
            # The reverse direction patches model 2's block outputs into model 1: load model 1 again.
            from ..compare.attribution import reverse_patching

            for side in each_model((model1,), (adapter1,), embedding_scales[:1], precision, max_memory):
                attributed = (reverse_patching(side.analyzer.loaded, runs[0], runs[1], attributed[0]), None)
        comparison = compare_models_from_runs(runs, attribution=attributed[0], attribution_note=attributed[1])
        del runs  # the memory maps go before their directory
    return comparison
