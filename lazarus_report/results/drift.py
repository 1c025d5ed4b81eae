"""Drift on neutral text (``compare --drift``): how far a fine-tune moves the lens distributions on text it was
not trained on, per layer, as plain data.

Conventions: layer *i* is block *i*'s output read through the lens; JS is the Jensen-Shannon divergence in nats
(0 to ln 2 = 0.693) between model 1's (the base's) and model 2's (the tuned model's) lens distributions at the
same layer and position; probabilities are in [0, 1]. A "position" is one token of the corpus (the prediction of
the token after it); position 0 of each sequence (the BOS or first token, an attention sink) is left out.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .codec import SCHEMA_VERSION, JsonFile, ResultFormatError, build_dataclass, check_header, with_header
from .provenance import LensRecord, ModelInfo

DRIFT_KIND = "lazarus-report/drift"


@dataclass(frozen=True)
class DriftLayer:
    """JS(base, tuned) over every corpus position at one captured layer."""

    layer: int
    js_mean: float
    js_p90: float
    js_p99: float
    js_max: float
    top1_changed: float  # share of positions whose lens top-1 differs between the models
    identical: bool  # the two models' lens inputs and heads were bit for bit equal at every position (JS exactly 0)


@dataclass(frozen=True)
class PromotedToken:
    """A token the fine-tune makes the final top-1 where the base predicted another one."""

    token_id: int
    token: str
    count: int  # positions where it is the tuned top-1 and not the base's
    share: float  # count / all positions
    mean_gain: float  # mean of p_tuned(token) - p_base(token) at those positions


@dataclass(frozen=True)
class DriftToken:
    """A token and its probability under one model at one position."""

    token_id: int
    token: str
    prob: float


@dataclass(frozen=True)
class DriftPosition:
    """A corpus position with one of the largest final-layer drifts."""

    sequence: int  # index of the corpus sequence
    position: int  # token index inside it
    js: float  # final-layer JS there
    context: list[str]  # the tokens before it (a few), oldest first
    token: str  # the token at the position (the prediction is for the one after it)
    next_token: str | None  # the corpus's own next token (None at a sequence's end)
    base_top1: DriftToken
    tuned_top1: DriftToken


@dataclass(frozen=True)
class ActivationDifference:
    """The activation-difference lens at one layer: the mean of (tuned - base) residual streams over the first
    positions of every corpus sequence (what the fine-tune adds to every prompt), read through the lens."""

    layer: int
    norm: float  # L2 norm of the mean difference (0 where the layer is identical)
    top_tokens: list[DriftToken]  # the head's softmax of the difference vector, most probable first


@dataclass(frozen=True)
class DriftResult(JsonFile):
    """``compare --drift``: two models over the same neutral corpus, per layer."""

    models: list[ModelInfo]  # [model 1 (base), model 2 (tuned)]
    labels: list[str]  # how outputs name each side
    lens: LensRecord
    corpus: str  # description of the text read
    corpus_sha256: str
    sequences: int
    tokens: int  # positions compared per layer
    sequence_length: int  # tokens per forward pass (at most the model's context)
    layers: list[DriftLayer]  # one per captured layer, in order
    final_layer: int
    promoted: list[PromotedToken]  # most frequent first
    top_positions: list[DriftPosition]  # largest final-layer JS first
    notes: list[str]
    versions: dict[str, str]
    timings: dict[str, float]
    schema_version: int = SCHEMA_VERSION
    activation_difference: list[ActivationDifference] = dataclasses.field(default_factory=list)
    activation_positions: int = 0  # positions per sequence the activation difference averages

    @property
    def final(self) -> DriftLayer:
        """The drift at the last captured layer (the models' own next-token distributions)."""
        return self.layers[-1]

    def to_dict(self) -> dict[str, Any]:
        return with_header(DRIFT_KIND, dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Any) -> DriftResult:
        check_header(data, DRIFT_KIND, "drift")
        try:
            result = build_dataclass(cls, data)
        except (KeyError, TypeError, ValueError) as exc:
            raise ResultFormatError(f"malformed drift result: {exc}") from None
        if not result.layers or len(result.models) != 2:
            raise ResultFormatError("malformed drift result: it needs two models and at least one layer")
        return result

    def layers_in(self, lo: int, hi: int) -> list[DriftLayer]:
        """The captured layers ``lo`` .. ``hi`` (inclusive)."""
        return [row for row in self.layers if lo <= row.layer <= hi]
