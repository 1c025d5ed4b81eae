"""The Python API: ``ModelAnalyzer``, ``AnalysisConfig``, ``LayerStrategy``.

::

    async with ModelAnalyzer.from_pretrained("smollm2-135m-instruct") as analyzer:
        result = await analyzer.analyze("The capital of France is", AnalysisConfig(track_tokens=[" Paris"]))
    for layer in result.layer_predictions:
        print(layer.layer_idx, repr(layer.top_token), layer.top_prob)

Synchronous use: ``analyzer = ModelAnalyzer.load(model_id)`` then ``analyzer.run(prompt, config)``.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from importlib import metadata
from typing import Any

from .errors import LazarusError
from .result import (
    AnalysisConfigRecord,
    AnalysisResult,
    LayerPrediction,
    PositionGrid,
    TokenEvolution,
    TokenProb,
    TrackedAtLayer,
    TrackedToken,
)


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
        check_embedding_scale(self.embedding_scale)
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
        )


MAX_EMBEDDING_SCALE = 1e4  # sqrt(hidden_size) of the largest models is ~130; beyond this float32 overflows


def check_embedding_scale(scale: float | None, option: str = "--embedding-scale") -> None:
    """A user's embedding scale: None (the family's own) or a finite number in (0, 10000]."""
    if scale is None:
        return
    if not (isinstance(scale, (int, float)) and 0 < scale <= MAX_EMBEDDING_SCALE):  # also false for NaN
        raise LazarusError(f"{option} must be a positive number up to {MAX_EMBEDDING_SCALE:g} (got {scale})")


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


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": f"{platform.system()} {platform.machine()}"}
    for dist in ("lazarus-report", "mlx", "mlx-lm", "tokenizers"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def _evolution(tracked: TrackedToken, layers: list[int], probs: list[float], ranks: list[int]) -> TokenEvolution:
    emergence = next((layer for layer, r in zip(layers, ranks) if r == 1), None)
    stable = None
    for layer, r in reversed(list(zip(layers, ranks))):
        if r != 1:
            break
        stable = layer
    return TokenEvolution(
        token=tracked.token,
        token_id=tracked.token_id,
        text=tracked.text,
        layers=list(layers),
        probs=list(probs),
        ranks=list(ranks),
        emergence_layer=emergence,
        stable_from_layer=stable,
    )


class ModelAnalyzer:
    """A loaded model and the logit lens over it."""

    def __init__(
        self, loaded: Any = None, *, model_id: str | None = None, adapter: str | None = None, precision: str = "auto"
    ):
        self._loaded = loaded
        self._model_id = model_id
        self._adapter = adapter
        self._precision = precision

    # --- loading ---------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, model_id: str, *, adapter: str | None = None, precision: str = "auto") -> ModelAnalyzer:
        """An analyzer that loads ``model_id`` when entered (``async with`` or ``with``)."""
        return cls(model_id=model_id, adapter=adapter, precision=precision)

    @classmethod
    def load(cls, model_id: str, *, adapter: str | None = None, precision: str = "auto") -> ModelAnalyzer:
        """Load now (synchronous API)."""
        return cls.from_pretrained(model_id, adapter=adapter, precision=precision)._ensure_loaded()

    def _ensure_loaded(self) -> ModelAnalyzer:
        if self._loaded is None:
            if self._model_id is None:
                raise LazarusError("ModelAnalyzer has no model")
            from .models.loader import load_model

            self._loaded = load_model(self._model_id, adapter=self._adapter, precision=self._precision)
        return self

    def close(self) -> None:
        """Release the model's memory (so a second model can load in its place)."""
        self._loaded = None
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
        return self.run(prompt, config)

    def format_prompt(self, prompt: str, use_chat_template: bool = True) -> tuple[str, bool, list[int]]:
        """(text that is tokenized, whether the chat template was applied, token ids)."""
        if not prompt or not prompt.strip():
            raise LazarusError("the prompt is empty")
        tok = self.loaded.tokenizer
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
            return formatted, True, tok.encode_plain(formatted)
        return prompt, False, tok.encode(prompt)

    def track(self, texts: Sequence[str]) -> list[TrackedToken]:
        out = []
        for text in texts:
            if text == "":
                raise LazarusError("cannot track an empty string")
            ids = self.loaded.tokenizer.encode_plain(text)
            if not ids:
                raise LazarusError(f"tracked token {text!r} encodes to no tokens for this model")
            out.append(
                TrackedToken(
                    text=text,
                    token_id=ids[0],
                    token=self.loaded.tokenizer.token_to_str(ids[0]),
                    num_tokens=len(ids),
                )
            )
        return out

    def run(self, prompt: str, config: AnalysisConfig | None = None) -> AnalysisResult:
        """Run the logit lens on ``prompt`` and return the structured result."""
        return self.run_with_distributions(prompt, config)[0]

    def run_with_distributions(self, prompt: str, config: AnalysisConfig | None = None) -> tuple[AnalysisResult, Any]:
        """``run``, plus the lens log-probabilities at the last position: numpy ``[L, V]`` float32,
        one row per captured layer (what ``compare`` needs to measure divergence between models)."""
        from . import lens

        config = config or AnalysisConfig()
        config.validate()
        check_text(prompt, "the prompt")
        t0 = time.perf_counter()
        loaded = self.loaded
        config.validate(loaded.info.num_layers, loaded.info.vocab_size)
        tok = loaded.tokenizer
        formatted, templated, ids = self.format_prompt(prompt, config.use_chat_template)
        if not ids:
            raise LazarusError("the prompt encodes to no tokens")
        if loaded.context_length and len(ids) > loaded.context_length:
            raise LazarusError(
                f"the prompt is {len(ids)} tokens, longer than the model's context of {loaded.context_length}"
            )
        if loaded.unsupported_window and len(ids) > loaded.unsupported_window:
            raise LazarusError(
                f"the prompt is {len(ids)} tokens, longer than this model's sliding attention window of "
                f"{loaded.unsupported_window}, which mlx-lm does not implement for {loaded.info.family}: "
                "the lens would be wrong; use a shorter prompt"
            )
        tracked = self.track(config.track_tokens)
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

        sink = lens.capture_hidden(loaded.parts, ids, layers, factor)
        hidden_last = lens.mx.stack([sink[i][0, -1] for i in layers])
        final_last = sink[n_layers - 1][0, -1:]
        stats = lens.last_position_stats(
            loaded.parts, hidden_last, final_last, config.top_k, [t.token_id for t in tracked]
        )
        t2 = time.perf_counter()

        decode = _Decoder(tok)
        predictions = []
        for j, layer in enumerate(layers):
            predictions.append(
                LayerPrediction(
                    layer_idx=layer,
                    top_tokens=[TokenProb(i, decode(i), p) for i, p in zip(stats.top_ids[j], stats.top_probs[j])],
                    entropy=stats.entropy[j],
                    kl_to_final=stats.kl_to_final[j],
                    final_token_rank=stats.final_token_rank[j],
                    tracked=[TrackedAtLayer(p, r) for p, r in zip(stats.tracked_probs[j], stats.tracked_ranks[j])],
                )
            )
        evolutions = [
            _evolution(
                t,
                layers,
                [stats.tracked_probs[j][k] for j in range(len(layers))],
                [stats.tracked_ranks[j][k] for j in range(len(layers))],
            )
            for k, t in enumerate(tracked)
        ]
        grid = None
        if config.compute_grid:
            g = lens.position_grid(loaded.parts, [sink[i][0] for i in layers], sink[n_layers - 1][0])
            grid = PositionGrid(
                layers=list(layers),
                positions=list(range(len(ids))),
                top_token_ids=g.top_ids,
                top_tokens=[[decode(i) for i in row] for row in g.top_ids],
                top_probs=g.top_probs,
                entropy=g.entropy,
                kl_to_final=g.kl_to_final,
            )
        t3 = time.perf_counter()
        del sink
        result = AnalysisResult(
            model=info,
            prompt=prompt,
            formatted_prompt=formatted,
            chat_template_applied=templated,
            token_ids=list(ids),
            tokens=[decode(i) for i in ids],
            config=config.record(),
            captured_layers=list(layers),
            layer_predictions=predictions,
            tracked_tokens=tracked,
            token_evolutions=evolutions,
            grid=grid,
            versions=_versions(),
            timings={
                "load": round(loaded.load_seconds, 4),
                "tokenize": round(t1 - t0, 4),
                "lens": round(t2 - t1, 4),
                "grid": round(t3 - t2, 4),
            },
        )
        return result, stats.log_probs


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
):
    """Analyze ``prompt`` with two models and compare them (``ComparisonResult``).

    The models load one after the other and the first is released before the second loads, so the
    peak memory is that of the larger model, not the sum.
    """
    from .compare import compare_models_from_runs

    config = config or AnalysisConfig(layer_strategy=LayerStrategy.ALL)
    if not prompt or not prompt.strip():
        raise LazarusError("the prompt is empty")
    if any(t == "" for t in config.track_tokens):
        raise LazarusError("cannot track an empty string")
    runs = []
    for side in each_model((model1, model2), (adapter1, adapter2), embedding_scales, precision):
        try:
            runs.append(side.run(prompt, config))
        except LazarusError as exc:
            raise LazarusError(f"model {side.number} ({side.model_id}): {exc}") from None
    return compare_models_from_runs(runs)


@dataclass
class Side:
    """One loaded model of a multi-model job (see ``each_model``)."""

    number: int  # 1-based
    model_id: str
    analyzer: ModelAnalyzer
    embedding_scale: float | None

    def run(self, prompt: str, config: AnalysisConfig) -> dict[str, Any]:
        """Analyze ``prompt``; returns what ``compare.compare_models_from_runs`` takes for this side."""
        cfg = dataclasses.replace(config, embedding_scale=self.embedding_scale)
        result, log_probs = self.analyzer.run_with_distributions(prompt, cfg)
        tok = self.analyzer.tokenizer
        return {
            "result": result,
            "log_probs": log_probs,
            "fingerprint": tok.fingerprint(),
            "single_token": [len(tok.encode_plain(t)) == 1 for t in cfg.track_tokens],
            "load_seconds": self.analyzer.loaded.load_seconds,
        }


def each_model(
    models: Sequence[str],
    adapters: Sequence[str | None],
    embedding_scales: Sequence[float | None],
    precision: str = "auto",
):
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
            if analyzer is not None and previous == (model_id, None, scale):
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
                analyzer = ModelAnalyzer.from_pretrained(model_id, adapter=adapter, precision=precision)
                analyzer._ensure_loaded()
            yield Side(n, model_id, analyzer, scale)
            previous = (model_id, adapter, scale)
    finally:
        if analyzer is not None:
            analyzer.close()
