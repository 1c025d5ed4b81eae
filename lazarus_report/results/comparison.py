"""The result of comparing two models: per-layer divergences, the change map, attribution."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .analysis import AnalysisResult
from .codec import (
    SCHEMA_VERSION,
    JsonFile,
    MalformedField,
    ResultFormatError,
    build_dataclass,
    check_header,
    nested_result,
    plain_dict,
    with_header,
)

COMPARISON_KIND = "lazarus-report/comparison"


@dataclass(frozen=True)
class LayerDivergence:
    """Two models' lens distributions at the last position, at one matched pair of layers.

    With different depths, layers are matched by relative depth ``(layer + 1) / num_layers``.
    Divergences need one shared vocabulary; with different tokenizers they are None and top-1
    agreement is decided on the decoded token strings.
    """

    layer1: int
    layer2: int
    relative_depth: float  # of layer2: (layer2 + 1) / num_layers2
    top1_token1: str
    top1_token2: str
    top1_prob1: float
    top1_prob2: float
    top1_agree: bool
    kl_12: float | None  # KL(model1 || model2), nats
    kl_21: float | None  # KL(model2 || model1), nats
    js: float | None  # Jensen-Shannon divergence (0.5 KL(P||M) + 0.5 KL(Q||M), M = (P+Q)/2), nats, <= ln 2


@dataclass(frozen=True)
class TrackedComparison:
    """One tracked string in both models."""

    text: str
    tokens: list[str]  # the tracked (first) token in each model
    single_token: list[bool]  # whether the string is one token in each model's vocabulary
    emergence_layers: list[int | None]
    stable_from_layers: list[int | None]
    final_probs: list[float]
    final_ranks: list[int]


@dataclass(frozen=True)
class ChangeSummary:
    """Where, along the layers, the two models' last-position distributions part (same tokenizer only).

    ``identical`` means JS exactly 0 (the same distribution bit for bit) or at most ``noise_floor``
    (float32 round-off of two equal computations done in a different order is about 1e-12 nats).
    ``decisive_layer`` is the layer with the largest single-layer increase of JS (layer l vs layer
    l - 1, the first captured layer vs 0); ``decisive_js`` is JS [before it, at it, at the last layer].
    """

    noise_floor: float  # nats
    identical_through: int | None  # last layer of the leading run of identical layers (None: differs at the first)
    exactly_identical: bool  # that leading run has JS exactly 0
    diverges_from: int | None  # first layer above the floor (None: identical everywhere)
    decisive_layer: int | None
    decisive_js: list[float]  # [JS before, JS at, JS at the last layer]
    final_top1_from: int | None  # model-2 layer from which model 2's final top-1 stays its top-1
    final_top1_changed: bool  # the two models' final top-1 differ


@dataclass(frozen=True)
class ChangeCellTop:
    """One token of one model's top-k at one (layer, position) of the change map, with both models' probs."""

    token_id: int
    token: str
    prob1: float
    prob2: float


@dataclass(frozen=True)
class ChangeMap:
    """Jensen-Shannon divergence between the two models' lens distributions per (layer, position).

    Arrays are nested lists ``[layer_index][position_index]`` over ``layers`` x ``positions``.
    Only computed when both models share the tokenizer and saw the same tokens.
    """

    layers: list[int]
    positions: list[int]  # prompt positions shown (0-based, ascending)
    position_reasons: list[str]  # per position: "your text", "last", "largest JS" (comma-joined)
    tokens: list[str]  # the prompt token at each shown position
    js: list[list[float]]
    flips: list[list[bool]]  # top-1 of the two models differs
    tops1: list[list[list[ChangeCellTop]]]  # [layer][pos][k]: model 1's top-k, with model 2's probs too
    tops2: list[list[list[ChangeCellTop]]]  # [layer][pos][k]: model 2's top-k, with model 1's probs too
    computed_positions: int  # how many positions both models' distributions were kept for
    total_positions: int
    note: str  # which positions and why (budget)


@dataclass(frozen=True)
class TokenShift:
    """One vocabulary entry whose probability the change moved."""

    token_id: int
    token: str
    prob1: float
    prob2: float
    logit1: float | None  # raw logits (None when not recorded)
    logit2: float | None
    rank1: int  # exact rank under model 1
    rank2: int  # exact rank under model 2


@dataclass(frozen=True)
class TokenShifts:
    """Promoted and suppressed tokens at one layer (last position): largest probability rises and falls,
    and each model's top tokens ranked by the other model."""

    layer: int
    why: str  # "final layer" | "largest JS jump"
    promoted: list[TokenShift]  # largest prob2 - prob1 first
    suppressed: list[TokenShift]  # largest prob1 - prob2 first
    top2_in_1: list[TokenShift]  # model 2's top tokens with model 1's rank
    top1_in_2: list[TokenShift]  # model 1's top tokens with model 2's rank


@dataclass(frozen=True)
class LayerAttribution:
    """What reverting one layer does to the change between the two models (see ``Attribution``)."""

    layer: int
    effect: float  # share of the change this layer carries (0 where nothing is attributed)
    changed_after: float | None  # JS after the intervention (None: nothing to revert at this layer)
    alone: float | None = None  # adapter-ablation: share reproduced by this layer's adapter alone
    cumulative: float | None = None  # activation-patching: share undone by patching model 1's block output
    reverse_cumulative: float | None = None  # activation-patching: share reproduced in model 1 by model 2's
    tracked_probs: list[float] = dataclasses.field(default_factory=list)  # tracked tokens' final prob after
    adapted: bool | None = None  # adapter-ablation: whether the layer has adapter modules


@dataclass(frozen=True)
class Attribution:
    """Causal layer attribution of the change from model 1 to model 2 (``--attribution``).

    ``metric`` "js_last_position": the change is JS(model 1's final distribution, model 2's) at the last
    prompt position. adapter-ablation: ``effect`` at l = 1 - JS(model 1, model 2 with layer l's adapter
    removed) / change. activation-patching: ``cumulative`` at l = 1 - JS(model 1, model 2 with model 1's
    block-l output patched in) / change (every difference in blocks 0..l reverted at once) and ``effect``
    at l = cumulative(l) - cumulative(l - 1): the share block l adds.
    """

    method: str  # "adapter-ablation" | "activation-patching"
    metric: str  # "js_last_position"
    change: float  # JS(model 1 final, model 2 final), last position, nats
    layers: list[LayerAttribution]  # one per layer of the model
    carriers: list[int]  # the smallest set of layers that together carry at least ``threshold`` of the change
    carriers_share: float | None  # the share they carry (adapter-ablation: measured reverting them together)
    threshold: float
    tracked: list[str]  # tracked strings, aligned with ``LayerAttribution.tracked_probs``
    tracked_probs: list[list[float]]  # [model][tracked]: final probs without intervention
    passes: int  # forward passes the attribution ran (partial ones included)
    seconds: float | None  # None in a report written without --timings (see ``without_timings``)
    notes: list[str]


@dataclass(frozen=True)
class ComparisonResult(JsonFile):
    """Two analyses of the same prompt and what differs between them."""

    results: list[AnalysisResult]  # [model1, model2]
    labels: list[str]  # how outputs name each side
    same_model: bool  # the same weights and adapter on both sides
    same_tokenizer: bool  # identical vocabulary and merges (fingerprints)
    same_tokens: bool  # the prompt tokenized to the same ids on both sides
    alignment: str  # "layer" (same depth) | "relative_depth"
    divergences: list[LayerDivergence]
    first_disagreement_layer: int | None  # model-2 layer of the first pair whose top-1 differ
    agreement_from_layer: int | None  # model-2 layer from which top-1 agree through the last pair
    largest_change_layer: int | None  # model-2 layer of the pair with the largest JS divergence
    tracked: list[TrackedComparison]
    notes: list[str]  # comparisons that were not possible, and why; other caveats
    load_seconds: list[float]
    schema_version: int = SCHEMA_VERSION
    # Where the fine-tune acts (added with defaults: older files still read).
    change_summary: ChangeSummary | None = None
    change_map: ChangeMap | None = None
    token_shifts: list[TokenShifts] = dataclasses.field(default_factory=list)
    adapted_layers: list[list[int]] = dataclasses.field(default_factory=list)  # per side, from adapter configs
    attribution: Attribution | None = None
    attribution_note: str | None = None  # why there is no attribution, when it was asked for
    # compare --generate: [log p_model1(model 2's answer), log p_model2(model 1's answer)], final-layer sequence
    # log-probabilities (schema version 3; written only when set).
    answer_cross: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = plain_dict(self, skip=("results",))
        d["results"] = [r.to_dict() for r in self.results]
        if d["answer_cross"] is None:
            del d["answer_cross"]
        return with_header(COMPARISON_KIND, d)

    @classmethod
    def from_dict(cls, data: Any) -> ComparisonResult:
        check_header(data, COMPARISON_KIND, "comparison")
        try:
            results = data.get("results")
            if not isinstance(results, list) or len(results) != 2:
                raise MalformedField("field 'results' must hold the two models' analyses")
            results = [nested_result(AnalysisResult, r, f"results[{i}]") for i, r in enumerate(results)]
            rest = {k: v for k, v in data.items() if k not in ("kind", "results")}
            built = build_dataclass(_ComparisonFields, rest)
            return cls(results=results, **{f.name: getattr(built, f.name) for f in dataclasses.fields(built)})
        except (KeyError, TypeError, ValueError) as exc:
            raise ResultFormatError(f"malformed comparison result: {exc}") from None


@dataclass(frozen=True)
class _ComparisonFields:
    """ComparisonResult without ``results`` (rebuilt separately), for JSON loading."""

    labels: list[str]
    same_model: bool
    same_tokenizer: bool
    same_tokens: bool
    alignment: str
    divergences: list[LayerDivergence]
    first_disagreement_layer: int | None
    agreement_from_layer: int | None
    largest_change_layer: int | None
    tracked: list[TrackedComparison]
    notes: list[str]
    load_seconds: list[float]
    schema_version: int = SCHEMA_VERSION
    change_summary: ChangeSummary | None = None
    change_map: ChangeMap | None = None
    token_shifts: list[TokenShifts] = dataclasses.field(default_factory=list)
    adapted_layers: list[list[int]] = dataclasses.field(default_factory=list)
    attribution: Attribution | None = None
    attribution_note: str | None = None
    answer_cross: list[float] | None = None
