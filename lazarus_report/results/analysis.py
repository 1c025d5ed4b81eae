"""The analysis result: plain data with a versioned JSON form.

Conventions, stated once for every renderer:

* Layer ``i`` is the residual stream *after* transformer block ``i`` (0-based).
  The last layer's lens distribution is the model's own next-token distribution.
* Probabilities are in [0, 1]; entropy and KL divergence are in nats.
* ``kl_to_final`` is KL(final || layer) = sum_v p_final(v) * (log p_final(v) - log p_layer(v)).
* Ranks are exact: 1 + the number of vocabulary entries with a strictly larger logit.
* Token strings are the model's own pieces decoded to text (leading spaces and newlines kept);
  they are data from the model and must be escaped by every renderer.

This module imports nothing heavy (no MLX, no numpy): renderers build on it alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..core.config import AnalysisConfig, LayerStrategy
from .answer import AnswerReading
from .codec import SCHEMA_VERSION, JsonFile, ResultFormatError, build_dataclass, check_header, plain_dict, with_header
from .provenance import LensRecord, ModelInfo, TokenProb

RESULT_KIND = "lazarus-report/analysis"


@dataclass(frozen=True)
class TrackedToken:
    """A token the user asked to follow, as the model's tokenizer sees it."""

    text: str  # exactly what the user passed
    token_id: int  # the tracked id: the first token of ``text``
    token: str  # that token decoded
    num_tokens: int  # how many tokens ``text`` encodes to (> 1: only the first is tracked)

    @property
    def multi_token(self) -> bool:
        return self.num_tokens > 1

    @property
    def warning(self) -> str | None:
        if not self.multi_token:
            return None
        return (
            f"{self.text!r} is {self.num_tokens} tokens for this model; "
            f"tracking its first token {self.token!r} (id {self.token_id})"
        )


@dataclass(frozen=True)
class TrackedAtLayer:
    """A tracked token's probability and exact rank under one layer's lens."""

    prob: float
    rank: int


@dataclass(frozen=True)
class LayerPrediction:
    """The lens at the last prompt position for one captured layer."""

    layer_idx: int
    top_tokens: list[TokenProb]  # top-k, most probable first
    entropy: float  # nats
    kl_to_final: float  # KL(final || this layer), nats; 0 at the last layer
    final_token_rank: int  # exact rank of the final layer's top-1 token under this layer
    tracked: list[TrackedAtLayer]  # aligned with AnalysisResult.tracked_tokens

    @property
    def top_token(self) -> str:
        return self.top_tokens[0].token

    @property
    def top_prob(self) -> float:
        return self.top_tokens[0].prob


@dataclass(frozen=True)
class TokenEvolution:
    """A tracked token across the captured layers (last prompt position)."""

    token: str  # decoded tracked token
    token_id: int
    text: str  # what the user asked to track
    layers: list[int]
    probs: list[float]
    ranks: list[int]
    emergence_layer: int | None  # first captured layer where the token is top-1
    stable_from_layer: int | None  # captured layer from which it stays top-1 through the last

    @property
    def layer_probabilities(self) -> dict[int, float]:
        return dict(zip(self.layers, self.probs))

    @property
    def final_prob(self) -> float:
        return self.probs[-1]


@dataclass(frozen=True)
class PositionGrid:
    """Top-1 prediction at every (captured layer, prompt position).

    Arrays are nested lists indexed ``[layer_index_in_layers][position_index_in_positions]``.
    """

    layers: list[int]
    positions: list[int]  # prompt positions (0-based); all of them
    top_token_ids: list[list[int]]
    top_tokens: list[list[str]]
    top_probs: list[list[float]]
    entropy: list[list[float]]
    kl_to_final: list[list[float]]  # KL(final layer at that position || this layer)
    # The probability this layer gives the model's final answer at that position (the last layer's top-1
    # there), as nostalgebraist's logit-lens plots colour it; None in results written before it existed.
    answer_probs: list[list[float]] | None = None


@dataclass(frozen=True)
class LensView:
    """The same run read through another lens (``--lens tuned,linear``, ``--lens all``, or the plain logit lens
    kept beside a learned lens): the capture is shared, only the reading differs. ``grid`` is None when the
    run computed no grid."""

    lens: LensRecord
    layer_predictions: list[LayerPrediction]
    token_evolutions: list[TokenEvolution]
    grid: PositionGrid | None


@dataclass(frozen=True)
class AnalysisConfigRecord:
    """The settings a result was produced with (the JSON form of ``AnalysisConfig``)."""

    layer_strategy: str
    layer_step: int
    custom_layers: list[int] | None
    top_k: int
    track_tokens: list[str]
    use_chat_template: bool
    embedding_scale: float | None  # user override, None = auto
    compute_grid: bool
    lens: str = "logit"  # what was asked for: "logit", "linear", "tuned" or a lens directory
    # The other lenses read beside it (schema version 4; written only when set): kinds or directories, with
    # "all" expanded to what the model had (``AnalysisResult.lens_views`` holds their readings).
    extra_lenses: list[str] = dataclasses.field(default_factory=list)
    # The answer asked for (schema version 3; written only when set, so a run without one reads as before).
    answer: str | None = None  # --answer: read teacher-forced
    generate: int | None = None  # --generate N: written greedily by the model
    stop: list[str] = dataclasses.field(default_factory=list)  # --stop strings

    @classmethod
    def of(cls, config: AnalysisConfig) -> AnalysisConfigRecord:
        """The record of what a run was asked to do."""
        return cls(
            layer_strategy=LayerStrategy(config.layer_strategy).value,
            layer_step=config.layer_step,
            custom_layers=list(config.custom_layers) if config.custom_layers is not None else None,
            top_k=config.top_k,
            track_tokens=list(config.track_tokens),
            use_chat_template=config.use_chat_template,
            embedding_scale=config.embedding_scale,
            compute_grid=config.compute_grid,
            lens=config.lens,
            extra_lenses=list(config.extra_lenses),
            answer=config.answer,
            generate=config.generate,
            stop=list(config.stop),
        )


_UNSET_CONFIG: dict[str, Any] = {"answer": None, "generate": None, "stop": [], "extra_lenses": []}


@dataclass(frozen=True)
class AnalysisResult(JsonFile):
    """Everything one logit-lens run produced. Renderers take this and nothing else."""

    model: ModelInfo
    prompt: str  # what the user typed
    formatted_prompt: str  # what was tokenized (chat template applied or not)
    chat_template_applied: bool
    token_ids: list[int]
    tokens: list[str]  # decoded pieces, one per token id
    config: AnalysisConfigRecord
    captured_layers: list[int]
    layer_predictions: list[LayerPrediction]
    tracked_tokens: list[TrackedToken]
    token_evolutions: list[TokenEvolution]
    grid: PositionGrid | None
    versions: dict[str, str]
    timings: dict[str, float]  # seconds: load, tokenize, forward, lens, grid, total
    lens: LensRecord | None = None  # which lens read the layers (None in version-1 files: the logit lens)
    schema_version: int = SCHEMA_VERSION
    answer: AnswerReading | None = None  # the answer after the prompt, token by token (schema version 3)
    # The same run through other lenses (schema version 4; version 2-3 files' ``logit_view`` reads as one view
    # of the logit lens): with a learned lens and a grid the plain logit lens, and every lens of ``--lens A,B``.
    lens_views: list[LensView] = dataclasses.field(default_factory=list)

    def through_lens(self, which: str | int) -> AnalysisResult | None:
        """This run as another lens read it: ``which`` a kind ("logit", "linear"...) or an index into
        ``lens_views``; the answer (read through the primary lens only) is left out. None when no such view."""
        if isinstance(which, int):
            view = self.lens_views[which] if 0 <= which < len(self.lens_views) else None
        else:
            view = next((v for v in self.lens_views if v.lens.kind == which), None)
        if view is None:
            return None
        return dataclasses.replace(
            self,
            layer_predictions=view.layer_predictions,
            token_evolutions=view.token_evolutions,
            grid=view.grid,
            lens=view.lens,
            lens_views=[],
            answer=None,
        )

    def through_logit_lens(self) -> AnalysisResult | None:
        """This run as the logit lens read it (None when no logit view was kept)."""
        return self.through_lens("logit")

    def lens_readings(self) -> list[AnalysisResult]:
        """This run through each of its lenses: the primary first (this result), then each view."""
        views = [self.through_lens(i) for i in range(len(self.lens_views))]
        return [self, *(v for v in views if v is not None)]

    @property
    def answer_token_ids(self) -> list[int]:
        """What the model read for the answer: the prompt's tokens up to ``answer.start``, then the answer's
        (empty without an answer)."""
        if self.answer is None:
            return []
        return [*self.token_ids[: self.answer.start], *(t.token_id for t in self.answer.tokens)]

    @property
    def lens_kind(self) -> str:
        return self.lens.kind if self.lens is not None else "logit"

    @property
    def unreliable_layers(self) -> list[int]:
        """Captured layers where the lens is known to be far from the model's final distribution
        (held-out KL above the lens record's threshold); empty when its fidelity is unknown."""
        if self.lens is None:
            return []
        bad = set(self.lens.unreliable_layers())
        return [layer for layer in self.captured_layers if layer in bad]

    @property
    def final_prediction(self) -> list[TokenProb]:
        """The model's own next-token top-k (the last layer's lens)."""
        return self.layer_predictions[-1].top_tokens

    @property
    def final_top_token(self) -> str:
        return self.final_prediction[0].token

    @property
    def warnings(self) -> list[str]:
        return [t.warning for t in self.tracked_tokens if t.warning]

    # --- JSON ---------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        d = plain_dict(self)
        # The answer's fields are written only when there is one: a run without an answer writes what
        # version 2 wrote (apart from the version number).
        if d["answer"] is None:
            del d["answer"]
        if not d["lens_views"]:  # as version 3 wrote a run with one lens
            del d["lens_views"]
        for name, unset in _UNSET_CONFIG.items():
            if d["config"].get(name) == unset:
                del d["config"][name]
        return with_header(RESULT_KIND, d)

    @classmethod
    def from_dict(cls, data: Any) -> AnalysisResult:
        check_header(data, RESULT_KIND, "analysis")
        try:
            if data.get("logit_view") is not None and "lens_views" not in data:
                data = _with_old_logit_view(data)
            result = build_dataclass(cls, data)
        except (KeyError, TypeError, ValueError) as exc:
            raise ResultFormatError(f"malformed analysis result: {exc}") from None
        # Every view starts from the last layer's top prediction: say so instead of an IndexError.
        for name in ("captured_layers", "layer_predictions", "tokens"):
            if not getattr(result, name):
                raise ResultFormatError(f"malformed analysis result: field {name!r} is empty")
        for i, layer in enumerate(result.layer_predictions):
            if not layer.top_tokens:
                raise ResultFormatError(
                    f"malformed analysis result: field 'layer_predictions[{i}].top_tokens' is empty"
                )
        return result


def logit_view_record(primary: LensRecord | None) -> LensRecord:
    """The record of the plain logit lens read beside ``primary``: its fidelity is the logit lens's measured on
    the same held-out text as the primary's (``logit_fidelity``), when the primary has it."""
    fidelity = list(primary.logit_fidelity) if primary is not None else []
    return LensRecord(
        kind="logit",
        source=None,
        digest=None,
        fitted_for=None,
        corpus=primary.corpus if primary is not None and fidelity else None,
        tokens=None,
        fidelity=fidelity,
        unreliable_threshold_nats=primary.unreliable_threshold_nats if primary is not None else 0.0,
    )


def _with_old_logit_view(data: dict[str, Any]) -> dict[str, Any]:
    """A version 2-3 file's ``logit_view`` (the plain logit lens beside a learned lens) as ``lens_views``: its
    lens record made as those versions showed it (the logit lens's fidelity from the primary lens's record)."""
    lens, old = data.get("lens"), data["logit_view"]
    if not isinstance(old, dict):
        raise TypeError("field 'logit_view': expected an object")
    primary = build_dataclass(LensRecord, lens) if lens is not None else None
    return {**data, "lens_views": [{"lens": plain_dict(logit_view_record(primary)), **old}]}
