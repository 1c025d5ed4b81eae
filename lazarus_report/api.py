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
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import LazarusError
from .result import AnalysisConfigRecord, AnalysisResult, TrackedToken

if TYPE_CHECKING:
    from .engine import LensRun
    from .result import ComparisonResult

_T = TypeVar("_T")


class LayerStrategy(str, Enum):
    """Which layers the lens reads. The last layer (the model's own prediction) is always read."""

    ALL = "all"
    EVENLY_SPACED = "evenly_spaced"
    FIRST_LAST = "first_last"
    CUSTOM = "custom"


@dataclass
class AnalysisConfig:
    layer_strategy: LayerStrategy = LayerStrategy.EVENLY_SPACED
    layer_step: int = 4
    custom_layers: list[int] | None = None
    top_k: int = 5
    track_tokens: list[str] = field(default_factory=list)
    use_chat_template: bool = True  # applied when the tokenizer has one; False = raw prompt
    embedding_scale: float | None = None  # None: the family's own (Gemma: sqrt(hidden_size))
    compute_grid: bool = True  # the layers x positions grid (HTML heatmap, JSON)
    # Only the last N prompt positions of the grid (None: every position). The command line sets it for
    # --html without -o: the heatmap shows only the last positions (``render.report_model.heatmap_positions``).
    grid_last_positions: int | None = None
    lens: str = "logit"  # "logit", "linear" / "tuned" (fitted with `lazarus lens fit`) or a lens directory

    def validate(self, num_layers: int | None = None, vocab_size: int | None = None) -> None:
        """Raise ``LazarusError`` for settings no model can run; needs no weights, so callers check
        before loading. With a model's ``num_layers`` / ``vocab_size`` (from its config, or loaded),
        layer indices and ``top_k`` are checked against them as well."""
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1:
            raise LazarusError(f"--top-k must be at least 1 (got {self.top_k})")
        if vocab_size is not None and self.top_k > vocab_size:
            raise LazarusError(f"--top-k {self.top_k} is larger than the model's vocabulary of {vocab_size} tokens")
        if isinstance(self.layer_step, bool) or not isinstance(self.layer_step, int) or self.layer_step < 1:
            raise LazarusError(f"--layer-step must be at least 1 (got {self.layer_step})")
        strategy = LayerStrategy(self.layer_strategy)
        if strategy is LayerStrategy.CUSTOM and not self.custom_layers:
            raise LazarusError("the custom layer strategy needs layer indices: --layers 0,4,8")
        if self.custom_layers is not None and strategy is not LayerStrategy.CUSTOM:
            raise LazarusError(
                f"--layers selects custom layers; it cannot be combined with the {strategy.value!r} layer strategy"
            )
        for i in self.custom_layers or []:
            if i < 0 or (num_layers is not None and i >= num_layers):
                valid = f"0..{num_layers - 1}" if num_layers is not None else "0 or more"
                has = f"this model has {num_layers} layers, " if num_layers is not None else ""
                raise LazarusError(f"layer {i} is out of range: {has}valid indices are {valid}")
        last = self.grid_last_positions
        if last is not None and (isinstance(last, bool) or not isinstance(last, int) or last < 1):
            raise LazarusError(f"grid_last_positions must be None or at least 1 (got {last!r})")
        check_embedding_scale(self.embedding_scale)
        check_lens_spec(self.lens)
        seen: set[str] = set()
        for text in self.track_tokens:
            if text == "":
                raise LazarusError("cannot track an empty string")
            check_text(text, f"tracked token {text!r}")
            if text in seen:
                raise LazarusError(f"tracked token {text!r} is given twice")
            seen.add(text)

    def record(self) -> AnalysisConfigRecord:
        return AnalysisConfigRecord(
            layer_strategy=LayerStrategy(self.layer_strategy).value,
            layer_step=self.layer_step,
            custom_layers=list(self.custom_layers) if self.custom_layers is not None else None,
            top_k=self.top_k,
            track_tokens=list(self.track_tokens),
            use_chat_template=self.use_chat_template,
            embedding_scale=self.embedding_scale,
            compute_grid=self.compute_grid,
            lens=self.lens,
        )


MAX_EMBEDDING_SCALE = 1e4  # sqrt(hidden_size) of the largest models is ~130; beyond this float32 overflows


def check_embedding_scale(scale: float | None, option: str = "--embedding-scale") -> None:
    """A user's embedding scale: None (the family's own) or a finite number in (0, 10000]."""
    if scale is None:
        return
    if not (isinstance(scale, (int, float)) and 0 < scale <= MAX_EMBEDDING_SCALE):  # also false for NaN
        raise LazarusError(f"{option} must be a positive number up to {MAX_EMBEDDING_SCALE:g} (got {scale})")


LENS_KINDS = ("logit", "linear", "tuned")


def check_lens_spec(spec: str, option: str = "--lens") -> None:
    """A lens kind, or an existing lens directory (its content is verified when it is loaded)."""
    import os

    if not isinstance(spec, str) or not spec:
        raise LazarusError(f"{option} must be logit, linear, tuned or a lens directory")
    if spec in LENS_KINDS:
        return
    if not os.path.isdir(spec):
        what = "is not a directory" if os.path.exists(spec) else "names no lens kind and no such directory"
        raise LazarusError(f"{option} {spec!r} {what}: choose logit, linear, tuned or a lens directory")


def check_text(text: str, what: str) -> None:
    """User text must be valid Unicode: undecodable argv bytes arrive as lone surrogates."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise LazarusError(
            f"{what} is not valid UTF-8 text (an undecodable byte or a lone surrogate at character {exc.start})"
        ) from None


def select_layers(
    strategy: LayerStrategy | str,
    num_layers: int,
    step: int = 4,
    custom: Sequence[int] | None = None,
) -> list[int]:
    """Captured layer indices (sorted, unique, always ending with the last layer)."""
    last = num_layers - 1
    strategy = LayerStrategy(strategy)
    if strategy is LayerStrategy.ALL:
        layers = list(range(num_layers))
    elif strategy is LayerStrategy.FIRST_LAST:
        layers = [0, last]
    elif strategy is LayerStrategy.EVENLY_SPACED:
        if step < 1:
            raise LazarusError(f"layer step must be at least 1 (got {step})")
        layers = list(range(0, num_layers, step))
    else:
        if not custom:
            raise LazarusError(f"custom layer strategy needs --layers, e.g. --layers 0,4,8 (valid: 0..{last})")
        bad = [i for i in custom if not 0 <= i <= last]
        if bad:
            raise LazarusError(
                f"layer {bad[0]} is out of range: this model has {num_layers} layers, valid indices are 0..{last}"
            )
        layers = list(custom)
    return sorted(set(layers) | {last})


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
            from .models.loader import load_model

            self._loaded = load_model(
                self._model_id, adapter=self._adapter, precision=self._precision, max_memory=self._max_memory
            )
        return self

    def close(self) -> None:
        """Release the model's memory (so a second model can load in its place)."""
        self._loaded = None
        self._lenses.clear()
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
        from .engine import format_prompt

        p = format_prompt(self.loaded, prompt, use_chat_template)
        return p.text, p.chat_template_applied, p.token_ids

    def track(self, texts: Sequence[str]) -> list[TrackedToken]:
        """The tracked strings as this model's tokenizer sees them."""
        from .engine import track_tokens

        return track_tokens(self.loaded, texts)

    def run(self, prompt: str, config: AnalysisConfig | None = None) -> AnalysisResult:
        """Run the lens on ``prompt`` and return the structured result."""
        return self.lens_run(prompt, config).result

    def lens_run(self, prompt: str, config: AnalysisConfig | None = None, **options: Any) -> LensRun:
        """``run``, plus what comparing models needs (``engine.LensRun``: the last-position
        log-probabilities ``[L, V]``, the tokenizer fingerprint, single-token flags). ``options``:
        ``engine.analyze``'s keywords (``spill``, ``keep_block_outputs``)."""
        from .engine import analyze

        config = config or AnalysisConfig()
        return analyze(self.loaded, prompt, config, lens=self.lens(config.lens), **options)

    def lens(self, spec: str = "logit") -> Any:
        """The ``Lens`` that ``spec`` names ("logit", "linear", "tuned" or a lens directory), checked
        against this model and kept for the next runs."""
        if spec not in self._lenses:
            from .lenses.store import resolve_lens

            self._lenses[spec] = resolve_lens(spec, self.loaded)
        return self._lenses[spec]


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

    from .compare import compare_models_from_runs

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
                from .attribution import attribute

                attributed = attribute(side.analyzer.loaded, runs[0], runs[1])
        if attributed[0] is not None and attributed[0].method == "activation-patching":
            # The reverse direction patches model 2's block outputs into model 1: load model 1 again.
            from .attribution import reverse_patching

            for side in each_model((model1,), (adapter1,), embedding_scales[:1], precision, max_memory):
                attributed = (reverse_patching(side.analyzer.loaded, runs[0], runs[1], attributed[0]), None)
        comparison = compare_models_from_runs(runs, attribution=attributed[0], attribution_note=attributed[1])
        del runs  # the memory maps go before their directory
    return comparison


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
    adapter applied in place, and reports a load time of 0.
    """
    for adapter in adapters:
        if adapter is not None:
            from .models import mlx_lm_light
            from .models.loader import check_adapter_dir

            check_adapter_dir(adapter)  # fail before any model work
            mlx_lm_light.prefetch_adapter_support()
    analyzer = None
    previous: tuple[str, str | None, float | None] | None = None
    try:
        for n, (model_id, adapter, scale) in enumerate(zip(models, adapters, embedding_scales), start=1):
            # (A model sharded over several ranks cannot take an adapter afterwards: it loads again.)
            if analyzer is not None and previous == (model_id, None, scale) and analyzer.loaded.parts.shard is None:
                from .models.loader import with_adapter

                loaded = analyzer.loaded
                analyzer = ModelAnalyzer(
                    with_adapter(loaded, adapter)
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
