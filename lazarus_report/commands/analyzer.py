"""The Python API: ``ModelAnalyzer``, ``AnalysisConfig``, ``LayerStrategy``.

::

    async with ModelAnalyzer.from_pretrained("smollm2-135m-instruct") as analyzer:
        result = await analyzer.analyze("The capital of France is", AnalysisConfig(track_tokens=[" Paris"]))
    for layer in result.layer_predictions:
        print(layer.layer_idx, repr(layer.top_token), layer.top_prob)

Synchronous use: ``analyzer = ModelAnalyzer.load(model_id)`` then ``analyzer.run(prompt, config)``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ..core.config import AnalysisConfig
from ..core.errors import LazarusError
from ..results.analysis import AnalysisResult, TrackedToken

if TYPE_CHECKING:
    from ..engine.run import LensRun


_T = TypeVar("_T")


# MLX evaluation is not safe from several threads at once (a shared command encoder on Metal), so
# the async API's worker threads take turns on it; the event loop itself never waits.
_MLX_TURN = threading.Lock()


async def _in_thread(fn: Callable[..., _T], *args: Any) -> _T:
    def serialized() -> _T:
        with _MLX_TURN:
            return fn(*args)

    return await asyncio.to_thread(serialized)


class ModelAnalyzer:
    """A loaded model and the logit lens over it."""

    def __init__(
        self,
        loaded: Any = None,
        *,
        model_id: str | None = None,
        adapter: str | None = None,
        precision: str = "auto",
        max_memory: int | str | None = None,
    ):
        self._loaded = loaded
        self._lenses: dict[str, Any] = {}  # --lens value -> the Lens resolved for this model
        self._views: dict[tuple[str, ...], Any] = {}  # (primary, *others) -> the others resolved (``lens_views``)
        self._model_id = model_id
        self._adapter = adapter
        self._precision = precision
        self._max_memory = max_memory

    # --- loading ---------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        model_id: str,
        *,
        adapter: str | None = None,
        precision: str = "auto",
        max_memory: int | str | None = None,
    ) -> ModelAnalyzer:
        """An analyzer that loads ``model_id`` when entered (``async with`` or ``with``).

        ``max_memory``: bytes or a size ("250MB", "2GB") the model may use; a model whose float32
        weights do not fit runs streamed (weights as stored, each block dequantized as it runs;
        ``info.execution == "streamed"``), one whose stored weights do not fit raises ``LazarusError``.
        """
        return cls(model_id=model_id, adapter=adapter, precision=precision, max_memory=max_memory)

    @classmethod
    def load(
        cls,
        model_id: str,
        *,
        adapter: str | None = None,
        precision: str = "auto",
        max_memory: int | str | None = None,
    ) -> ModelAnalyzer:
        """Load now (synchronous API)."""
        return cls.from_pretrained(
            model_id, adapter=adapter, precision=precision, max_memory=max_memory
        )._ensure_loaded()

    def _ensure_loaded(self) -> ModelAnalyzer:
        if self._loaded is None:
            if self._model_id is None:
                raise LazarusError("ModelAnalyzer has no model")
            from ..models.loader import load_model

            self._loaded = load_model(
                self._model_id, adapter=self._adapter, precision=self._precision, max_memory=self._max_memory
            )
        return self

    def close(self) -> None:
        """Release the model's memory (so a second model can load in its place)."""
        self._loaded = None
        self._lenses.clear()
        self._views.clear()
        import gc

        gc.collect()
        import mlx.core as mx

        mx.clear_cache()

    def __enter__(self) -> ModelAnalyzer:
        return self._ensure_loaded()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> ModelAnalyzer:
        return self._ensure_loaded()

    async def __aexit__(self, *exc: Any) -> None:
        self.close()

    @property
    def loaded(self) -> Any:
        return self._ensure_loaded()._loaded

    @property
    def info(self):
        return self.loaded.info

    @property
    def tokenizer(self):
        return self.loaded.tokenizer

    # --- analysis --------------------------------------------------------------------------

    async def analyze(self, prompt: str, config: AnalysisConfig | None = None) -> AnalysisResult:
        """``run`` in a worker thread: the event loop stays free while the model works, so several
        analyzers can be awaited together (their MLX work takes turns; see ``_MLX_TURN``)."""
        return await _in_thread(self.run, prompt, config)

    def format_prompt(self, prompt: str, use_chat_template: bool = True) -> tuple[str, bool, list[int]]:
        """(text that is tokenized, whether the chat template was applied, token ids)."""
        from ..engine.prompt import format_prompt

        p = format_prompt(self.loaded, prompt, use_chat_template)
        return p.text, p.chat_template_applied, p.token_ids

    def track(self, texts: Sequence[str]) -> list[TrackedToken]:
        """The tracked strings as this model's tokenizer sees them."""
        from ..engine.prompt import track_tokens

        return track_tokens(self.loaded, texts)

    def run(self, prompt: str, config: AnalysisConfig | None = None) -> AnalysisResult:
        """Run the lens on ``prompt`` and return the structured result."""
        return self.lens_run(prompt, config).result

    def lens_run(self, prompt: str, config: AnalysisConfig | None = None, **options: Any) -> LensRun:
        """``run``, plus what comparing models needs (``engine.LensRun``: the last-position
        log-probabilities ``[L, V]``, the tokenizer fingerprint, single-token flags). ``options``:
        ``engine.analyze``'s keywords (``spill``, ``keep_block_outputs``)."""
        from ..engine.run import analyze

        config = config or AnalysisConfig()
        views = self.lens_views(config.lens, config.extra_lenses) if config.extra_lenses else None
        return analyze(self.loaded, prompt, config, lens=self.lens(config.lens), views=views, **options)

    def lens(self, spec: str = "logit") -> Any:
        """The ``Lens`` that ``spec`` names ("logit", "linear", "tuned" or a lens directory), checked
        against this model and kept for the next runs."""
        if spec not in self._lenses:
            from ..lens.learned.store import resolve_lens

            self._lenses[spec] = resolve_lens(spec, self.loaded)
        return self._lenses[spec]

    def lens_views(self, primary: str, others: list[str]) -> tuple[list[str], list[Any]]:
        """The lenses read beside ``primary`` (``--lens A,B``: ``all`` expanded), as (their specs, the lenses),
        resolved for this model once and kept for the next runs."""
        key = (primary, *others)
        if key not in self._views:
            from ..lens.learned.store import expand_lens_list

            self._views[key] = expand_lens_list(list(others), self.loaded, named=(primary,))
        return self._views[key]


@dataclass
class Side:
    """One loaded model of a multi-model job (see ``each_model``)."""

    number: int  # 1-based
    model_id: str
    analyzer: ModelAnalyzer
    embedding_scale: float | None

    def run(self, prompt: str, config: AnalysisConfig, **options: Any) -> LensRun:
        """Analyze ``prompt`` on this side (with its embedding scale); ``options`` as for ``engine.analyze``."""
        return self.analyzer.lens_run(
            prompt, dataclasses.replace(config, embedding_scale=self.embedding_scale), **options
        )


def _swappable(
    previous: tuple[str, str | None, float | None] | None, current: tuple[str, str | None, float | None]
) -> bool:
    """Whether ``current`` is ``previous``'s model with another checkpoint of the same adapter layout (a sweep
    over training checkpoints): its adapter weights replace the previous ones in place."""
    if previous is None or previous[0] != current[0] or previous[2] != current[2]:
        return False
    if previous[1] is None or current[1] is None:
        return False
    from ..models.adapters import same_adapter_layout

    return same_adapter_layout(previous[1], current[1])


def each_model(
    models: Sequence[str],
    adapters: Sequence[str | None],
    embedding_scales: Sequence[float | None],
    precision: str = "auto",
    max_memory: int | str | None = None,
) -> Iterator[Side]:
    """Yield a loaded ``Side`` per model, one at a time, each released before the next loads.

    Adapter directories are checked before any model loads. The same model on both sides (base vs
    fine-tuned, or the same model twice) loads once: the second side reuses the weights, with its
    adapter applied in place, and reports a load time of 0. A side whose adapter is another checkpoint of
    the previous side's adapter folder (the same layout) swaps the adapter weights in place.
    """
    for adapter in adapters:
        if adapter is not None:
            from ..models import mlx_lm_light
            from ..models.loader import check_adapter_dir

            check_adapter_dir(adapter)  # fail before any model work
            mlx_lm_light.prefetch_adapter_support()
    analyzer = None
    previous: tuple[str, str | None, float | None] | None = None
    try:
        for n, (model_id, adapter, scale) in enumerate(zip(models, adapters, embedding_scales), start=1):
            # (A model sharded over several ranks cannot take an adapter afterwards: it loads again.)
            swap = _swappable(previous, (model_id, adapter, scale))
            if (
                analyzer is not None
                and (previous == (model_id, None, scale) or swap)
                and analyzer.loaded.parts.shard is None
            ):
                from ..models.loader import with_adapter

                loaded = analyzer.loaded
                analyzer = ModelAnalyzer(
                    with_adapter(loaded, adapter, swap=swap)
                    if adapter is not None
                    else dataclasses.replace(loaded, load_seconds=0.0)
                )
            else:
                if analyzer is not None:
                    analyzer.close()  # release before the next model loads
                    analyzer = None
                analyzer = ModelAnalyzer.from_pretrained(
                    model_id, adapter=adapter, precision=precision, max_memory=max_memory
                )
                analyzer._ensure_loaded()
            yield Side(n, model_id, analyzer, scale)
            previous = (model_id, adapter, scale)
    finally:
        if analyzer is not None:
            analyzer.close()
