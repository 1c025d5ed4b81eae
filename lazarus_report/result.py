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

import contextlib
import dataclasses
import errno
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import LazarusError

SCHEMA_VERSION = 2
# Version 2 added which lens produced a result (``AnalysisResult.lens``, ``AnalysisConfigRecord.lens``);
# a version-1 file reads as the logit lens.
READABLE_SCHEMA_VERSIONS = (1, 2)
RESULT_KIND = "lazarus-report/analysis"


class ResultFormatError(ValueError):
    """A file that is not an analysis result of the supported schema version."""


def with_header(kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    """A result's JSON object: ``kind`` and ``schema_version`` first, then its fields."""
    version = fields.pop("schema_version")
    return {"kind": kind, "schema_version": version, **fields}


def check_header(data: Any, kind: str, what: str) -> None:
    """Raise ``ResultFormatError`` unless ``data`` is a JSON object of ``kind`` in a readable version."""
    if not isinstance(data, dict) or data.get("kind") != kind:
        raise ResultFormatError(f"not a lazarus-report {what} result")
    version = data.get("schema_version")
    if version not in READABLE_SCHEMA_VERSIONS:
        readable = ", ".join(str(v) for v in READABLE_SCHEMA_VERSIONS)
        raise ResultFormatError(
            f"result schema version {version!r} is not supported (this lazarus reads versions {readable})"
        )


def first_layer_where(layers: list[int], flags: list[bool]) -> int | None:
    """The first layer whose flag is true (e.g. where a token first becomes top-1), or None."""
    return next((layer for layer, flag in zip(layers, flags) if flag), None)


def true_from_layer(layers: list[int], flags: list[bool]) -> int | None:
    """The layer from which the flag stays true through the last layer (e.g. "stays top-1 from"), or None."""
    start = None
    for layer, flag in reversed(list(zip(layers, flags))):
        if not flag:
            break
        start = layer
    return start


def distinct_labels(labels: list[str]) -> list[str]:
    """Two sides' labels, numbered when they would read the same."""
    if len(labels) == 2 and labels[0] == labels[1]:
        return [f"{labels[0]} (1)", f"{labels[1]} (2)"]
    return list(labels)


@dataclass(frozen=True)
class TokenProb:
    """One vocabulary entry and its probability under one lens distribution."""

    token_id: int
    token: str
    prob: float


@dataclass(frozen=True)
class DistributedInfo:
    """How a model was shared over the ranks of MLX's distributed engine (``mlx.launch``)."""

    ranks: int
    mode: str  # "tensor" (each projection split over the ranks) | "pipeline" (each rank runs a range of blocks)
    implementation: str  # "mlx-lm Model.shard" | "mlx-lm pipeline" | "lazarus pipeline"
    rank_weight_bytes: list[int]  # the weights each rank holds, rank 0 first
    rank_layers: list[list[int]] | None = None  # pipeline: [start, stop) of the blocks each rank runs


@dataclass(frozen=True)
class ModelInfo:
    """What was loaded and how it ran."""

    model_id: str  # what the user passed to -m (alias, path or hub ID)
    source: str  # "alias" | "gguf" | "directory" | "hub"
    path: str | None  # resolved local path (GGUF file or model directory)
    family: str  # model_type, e.g. "llama", "gemma3_text"
    num_layers: int
    hidden_size: int
    vocab_size: int
    tied_embeddings: bool
    embedding_scale: float | None  # multiplier applied to token embeddings (Gemma: sqrt(hidden))
    precision: str  # e.g. "float32 (dequantized from Q4_1)"
    device: str  # "cpu" | "gpu"
    blas: str  # which BLAS MLX used on CPU, e.g. "OpenBLAS (/usr/lib/...)" or "bundled reference BLAS"
    chat_template: bool  # whether the tokenizer has a chat template
    adapter: str | None = None  # LoRA adapter directory, when one was applied
    final_logit_softcap: float | None = None
    distributed: DistributedInfo | None = None  # set when the model ran sharded over several ranks
    # How the weights ran: "float32" (dequantized at load), "streamed" (kept as stored, each block
    # dequantized to float32 just before it ran: --max-memory) or "native"; None in older results.
    execution: str | None = None

    @property
    def label(self) -> str:
        """How outputs name this model: its ID, and the adapter when one was applied."""
        return f"{self.model_id} + {self.adapter}" if self.adapter else self.model_id


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
class LogitView:
    """The same run read through the plain logit lens, kept beside a learned lens's reading so a
    report can show both (the capture is shared; only the reading differs)."""

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


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _plain(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain_dict(value)
    return value


def plain_dict(obj: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """``dataclasses.asdict(obj)`` without its deep copies (results hold only plain values): a 1,000-case suite
    converts in a second instead of eight. ``skip``: fields left ``None`` (in field order) for the caller."""
    return {name: None if name in skip else _plain(getattr(obj, name)) for name in _field_names(type(obj))}


class _JsonFile:
    """JSON text and files for a result class with ``to_dict`` / ``from_dict``."""

    def to_json(self, indent: int | None = 1) -> str:
        return dumps_json(self.to_dict(), indent)  # type: ignore[attr-defined]

    @classmethod
    def from_json(cls, text: str) -> Any:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ResultFormatError(f"not JSON: {exc}") from None
        return cls.from_dict(data)  # type: ignore[attr-defined]

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the JSON atomically: a failure never leaves a partial file."""
        write_text_atomic(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Any:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))

    def _repr_html_(self) -> str:
        """Jupyter shows the result as its HTML report, in a sandboxed ``<iframe srcdoc>``."""
        from lazarus_report.render.html import render_notebook_html

        return render_notebook_html(self)  # type: ignore[arg-type]


@dataclass(frozen=True)
class AnalysisResult(_JsonFile):
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
    logit_view: LogitView | None = None  # with a learned lens and a grid: the same run through the logit lens
    schema_version: int = SCHEMA_VERSION

    def through_logit_lens(self) -> AnalysisResult | None:
        """This run as the logit lens read it (None when no logit view was kept)."""
        if self.logit_view is None:
            return None
        fidelity = self.lens.logit_fidelity if self.lens is not None else []
        record = LensRecord(
            kind="logit",
            source=None,
            digest=None,
            fitted_for=None,
            corpus=self.lens.corpus if self.lens is not None and fidelity else None,
            tokens=None,
            fidelity=list(fidelity),
            unreliable_threshold_nats=self.lens.unreliable_threshold_nats if self.lens is not None else 0.0,
        )
        return dataclasses.replace(
            self,
            layer_predictions=self.logit_view.layer_predictions,
            token_evolutions=self.logit_view.token_evolutions,
            grid=self.logit_view.grid,
            lens=record,
            logit_view=None,
        )

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
        return with_header(RESULT_KIND, d)

    @classmethod
    def from_dict(cls, data: Any) -> AnalysisResult:
        check_header(data, RESULT_KIND, "analysis")
        try:
            result = _build(cls, data)
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
class ComparisonResult(_JsonFile):
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

    def to_dict(self) -> dict[str, Any]:
        d = plain_dict(self, skip=("results",))
        d["results"] = [r.to_dict() for r in self.results]
        return with_header(COMPARISON_KIND, d)

    @classmethod
    def from_dict(cls, data: Any) -> ComparisonResult:
        check_header(data, COMPARISON_KIND, "comparison")
        try:
            results = data.get("results")
            if not isinstance(results, list) or len(results) != 2:
                raise _Malformed("field 'results' must hold the two models' analyses")
            results = [_nested(AnalysisResult, r, f"results[{i}]") for i, r in enumerate(results)]
            rest = {k: v for k, v in data.items() if k not in ("kind", "results")}
            built = _build(_ComparisonFields, rest)
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


SUITE_KIND = "lazarus-report/suite"

# Status of one check, and of a case (the worst of its checks, or "error" when it could not run).
PASSED, FAILED, SKIPPED, ERROR = "passed", "failed", "skipped", "error"


@dataclass(frozen=True)
class CheckOutcome:
    """One expectation of one suite case, evaluated against the run.

    ``side`` says what it was checked on: ``"base"`` (model 1), ``"tuned"`` (model 2), ``"model"`` (the
    one model of a one-model run) or ``"comparison"`` (base vs tuned, e.g. ``no_regression_of``).
    ``expected`` / ``actual`` are short human-readable phrases; ``message`` is the one line a CI log or
    a JUnit failure shows. ``line`` is where the expectation is written in the suite file.
    """

    name: str  # unique within its case and stable across runs, e.g. "tuned final_top1"
    check: str  # final_top1 | not_top1 | final_prob_at_least | final_prob_at_most | emerges_by_layer | no_regression
    side: str
    expected: str
    actual: str
    status: str  # passed | failed | skipped | error
    message: str
    line: int
    # As data, for charts: the token a probability check is about, and a no_regression check's
    # tolerance (tuned may sit this far below base). None where the check has neither.
    token: str | None = None
    tolerance: float | None = None


@dataclass(frozen=True)
class SuiteCase:
    """One prompt of a suite: its run (an analysis, or a comparison of two models) and its checks."""

    id: str
    prompt: str
    line: int  # where the case starts in the suite file
    analysis: AnalysisResult | None  # one-model run
    comparison: ComparisonResult | None  # two-model run
    checks: list[CheckOutcome]
    error: str | None = None  # why the case could not run (then analysis and comparison are None)
    group: str | None = None  # the suite file's ``group`` of the case

    @property
    def status(self) -> str:
        if self.error is not None or any(c.status == ERROR for c in self.checks):
            return ERROR
        if any(c.status == FAILED for c in self.checks):
            return FAILED
        if self.checks and all(c.status == SKIPPED for c in self.checks):
            return SKIPPED
        return PASSED

    @property
    def results(self) -> list[AnalysisResult]:
        """The case's analyses: [model] or [base, tuned] (empty when the case errored)."""
        if self.comparison is not None:
            return list(self.comparison.results)
        return [self.analysis] if self.analysis is not None else []


@dataclass(frozen=True)
class SuiteExecution:
    """How a suite's cases ran through each model: several per forward pass (batched) or one at a time."""

    batched: bool
    batch_size: int | None  # --batch-size as given; None: chosen automatically from the prompts' lengths
    forward_passes: list[int]  # per model, roles order
    note: str | None = None  # why the cases ran one at a time although batching was not turned off


@dataclass(frozen=True)
class SuiteResult(_JsonFile):
    """A suite run: every case with its checks, for one model or two (base vs tuned)."""

    name: str
    source: str  # the suite file as given on the command line
    source_sha256: str
    roles: list[str]  # ["base", "tuned"], or for one model ["model"]
    labels: list[str]  # how outputs name each model, same order as roles
    role_checked: str | None  # one-model runs: "base" / "tuned" when that side's expectations were checked
    cases: list[SuiteCase]
    load_seconds: list[float]  # one load per model
    timings: dict[str, float]  # seconds: "engine" (sum of per-case lens work), "compare", "total"
    versions: dict[str, str]
    schema_version: int = SCHEMA_VERSION
    execution: SuiteExecution | None = None  # None in results written before batching existed

    @property
    def two_models(self) -> bool:
        return len(self.roles) == 2

    def counts(self) -> dict[str, int]:
        """Checks by status (passed, failed, skipped, error) plus case errors."""
        out = {PASSED: 0, FAILED: 0, SKIPPED: 0, ERROR: 0}
        for case in self.cases:
            for c in case.checks:
                out[c.status] += 1
            if case.error is not None and not case.checks:
                out[ERROR] += 1
        return out

    @property
    def status(self) -> str:
        statuses = {case.status for case in self.cases}
        for s in (ERROR, FAILED, PASSED):
            if s in statuses:
                return s
        return SKIPPED if statuses else PASSED

    def to_dict(self) -> dict[str, Any]:
        d = plain_dict(self, skip=("cases",))
        d["cases"] = [
            {
                **plain_dict(case, skip=("analysis", "comparison")),
                "analysis": case.analysis.to_dict() if case.analysis is not None else None,
                "comparison": case.comparison.to_dict() if case.comparison is not None else None,
            }
            for case in self.cases
        ]
        return with_header(SUITE_KIND, d)

    @classmethod
    def from_dict(cls, data: Any) -> SuiteResult:
        check_header(data, SUITE_KIND, "suite")
        try:
            cases = []
            if not isinstance(data.get("cases"), list):
                raise _Malformed("field 'cases' is missing or not a list")
            for i, c in enumerate(data["cases"]):
                if not isinstance(c, dict):
                    raise _Malformed(f"cases[{i}]: expected an object")
                plain = {k: v for k, v in c.items() if k not in ("analysis", "comparison")}
                built = _build(_SuiteCaseFields, plain, f"cases[{i}]")
                analysis, comparison = c.get("analysis"), c.get("comparison")
                cases.append(
                    SuiteCase(
                        analysis=_nested(AnalysisResult, analysis, f"cases[{i}].analysis") if analysis else None,
                        comparison=(
                            _nested(ComparisonResult, comparison, f"cases[{i}].comparison") if comparison else None
                        ),
                        **{f.name: getattr(built, f.name) for f in dataclasses.fields(built)},
                    )
                )
            rest = {k: v for k, v in data.items() if k not in ("kind", "cases")}
            built = _build(_SuiteFields, rest)
            return cls(cases=cases, **{f.name: getattr(built, f.name) for f in dataclasses.fields(built)})
        except (KeyError, TypeError, ValueError) as exc:
            raise ResultFormatError(f"malformed suite result: {exc}") from None


@dataclass(frozen=True)
class _SuiteCaseFields:
    id: str
    prompt: str
    line: int
    checks: list[CheckOutcome]
    error: str | None = None
    group: str | None = None


@dataclass(frozen=True)
class _SuiteFields:
    name: str
    source: str
    source_sha256: str
    roles: list[str]
    labels: list[str]
    role_checked: str | None
    load_seconds: list[float]
    timings: dict[str, float]
    versions: dict[str, str]
    schema_version: int = SCHEMA_VERSION
    execution: SuiteExecution | None = None


def without_timings(result: Any) -> Any:
    """The result with every wall-clock measurement removed, for reports that must be byte-identical from run
    to run (HTML and Markdown without ``--timings``): analyses' ``timings`` and a comparison's or suite's
    ``load_seconds`` become empty, a suite's ``timings`` too, an attribution's ``seconds`` None. Everything
    else (the numbers of the analysis) is kept. Any other value is returned as it is."""
    if isinstance(result, AnalysisResult):
        return dataclasses.replace(result, timings={})
    if isinstance(result, ComparisonResult):
        attribution = result.attribution
        if attribution is not None:
            attribution = dataclasses.replace(attribution, seconds=None)
        return dataclasses.replace(
            result,
            results=[without_timings(r) for r in result.results],
            load_seconds=[],
            attribution=attribution,
        )
    if isinstance(result, SuiteResult):
        cases = [
            dataclasses.replace(
                case, analysis=without_timings(case.analysis), comparison=without_timings(case.comparison)
            )
            for case in result.cases
        ]
        return dataclasses.replace(result, cases=cases, load_seconds=[], timings={})
    return result


def _nested(cls: Any, data: Any, where: str) -> Any:
    """``cls.from_dict(data)`` for a result inside another, its errors prefixed with where it sits."""
    try:
        return cls.from_dict(data)
    except ResultFormatError as exc:
        detail = str(exc).split(": ", 1)[-1]
        raise _Malformed(f"{where}: {detail}") from None


def load_any_result(data: Any) -> AnalysisResult | ComparisonResult | SuiteResult:
    """An analysis, a comparison or a suite run, from parsed JSON."""
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind == SUITE_KIND:
        return SuiteResult.from_dict(data)
    if kind == COMPARISON_KIND:
        return ComparisonResult.from_dict(data)
    if kind == RESULT_KIND:
        return AnalysisResult.from_dict(data)
    raise ResultFormatError("not a lazarus-report analysis, comparison or suite result")


def _build(tp: Any, data: Any, where: str = "") -> Any:
    """Rebuild a dataclass tree from ``dataclasses.asdict`` output, checking field names and types.

    Errors say where: ``field 'model' is missing``, ``layer_predictions[2].entropy: expected a number``.
    """

    try:
        return _build_value(tp, data, where)
    except _Malformed:
        raise
    except (TypeError, ValueError) as exc:
        raise _Malformed(f"{where}: {exc}" if where else str(exc)) from None


class _Malformed(ValueError):
    """A result field that is missing or of the wrong type; the message names the field's path."""


_SHAPES: dict[type, list[tuple[str, Any, bool]]] = {}  # per result class: (field, type, required)
_PLAIN = (float, int, str, bool)  # a value of exactly this type needs no conversion and no check


def _build_value(tp: Any, data: Any, where: str) -> Any:
    import typing

    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise TypeError(f"expected an object ({tp.__name__}), got {type(data).__name__}")
        shape = _SHAPES.get(tp)
        if shape is None:  # resolving string annotations costs ~0.1 ms per class: once per class, not per value
            hints = typing.get_type_hints(tp)
            shape = _SHAPES[tp] = [
                (f.name, hints[f.name], f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
                for f in dataclasses.fields(tp)
            ]
        kwargs = {}
        for name, hint, required in shape:
            if name in data:
                value = data[name]
                # Fast path (a suite of 1,000 cases holds millions of these): a plain value of the plain type.
                if hint in _PLAIN and type(value) is hint:
                    kwargs[name] = value
                else:
                    kwargs[name] = _build(hint, value, f"{where}.{name}" if where else name)
            elif required:
                path = f"{where}.{name}" if where else name
                raise _Malformed(f"field {path!r} is missing")
        return tp(**kwargs)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is list:
        if not isinstance(data, list):
            raise TypeError(f"expected a list, got {type(data).__name__}")
        if args[0] in _PLAIN and all(type(x) is args[0] for x in data):
            return list(data)
        return [_build(args[0], x, f"{where}[{i}]") for i, x in enumerate(data)]
    if origin is dict:
        if not isinstance(data, dict):
            raise TypeError(f"expected an object, got {type(data).__name__}")
        return {str(k): _build(args[1], v, f"{where}.{k}") for k, v in data.items()}
    if origin is not None and type(None) in args:  # Optional[X]
        if data is None:
            return None
        inner = [a for a in args if a is not type(None)]
        return _build(inner[0], data, where)
    if tp is float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise TypeError(f"expected a number, got {data!r}")
        return float(data)
    if tp is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise TypeError(f"expected an integer, got {data!r}")
        return data
    if tp is str:
        if not isinstance(data, str):
            raise TypeError(f"expected a string, got {data!r}")
        return data
    if tp is bool:
        if not isinstance(data, bool):
            raise TypeError(f"expected true/false, got {data!r}")
        return data
    return data


SIGNIFICANT_DIGITS = 8


def rounded(values: Any) -> Any:
    """Floats (or nested lists of them) to 8 significant digits.

    The lens computes from float32 logits (about 7 significant digits); more digits in a result
    would be noise, and they cost report size. Applied where results are made, so a result and its
    JSON are equal.
    """
    if isinstance(values, list):
        return [rounded(v) for v in values]
    return float(f"{values:.{SIGNIFICANT_DIGITS}g}")


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def dumps_json(data: Any, indent: int | None = 1) -> str:
    """JSON that is always valid UTF-8: readable non-ASCII text, lone surrogates (possible in user
    prompts from undecodable argv bytes) escaped as ``\\udXXX``; never NaN (strict parsers reject it)."""
    text = json.dumps(data, indent=indent, ensure_ascii=False, allow_nan=False)
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` so that a failure never leaves a partial file behind."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`write_files_atomic`)."""
    write_files_atomic({path: data})


class OutputPathError(OSError):
    """An output path that can never be written (a directory, a socket, an empty name ...)."""


def output_target(path: str | os.PathLike[str]) -> tuple[Path, os.stat_result | None]:
    """The file a write to ``path`` lands in (symlinks resolved) and its status (None: not there yet).

    Raises ``OutputPathError`` for names no output can take: empty, a directory, a socket or a block device.
    """
    if os.fspath(path) == "":
        raise OutputPathError("empty file name")
    target = Path(os.path.realpath(path))
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return target, None
    if stat.S_ISDIR(st.st_mode):
        raise OutputPathError("is a directory")
    if stat.S_ISSOCK(st.st_mode) or stat.S_ISBLK(st.st_mode):
        raise OutputPathError("is a socket or block device, not a file")
    return target, st


def probe_writable(path: str | os.PathLike[str]) -> None:
    """Raise ``OSError`` unless ``path`` can be written, checked by really creating (and removing) a
    temporary file next to it: ``os.access`` says yes to ``/proc`` and read-only mounts as root.

    A FIFO or character device (``/dev/stdout``) is written through, not replaced: it is accepted as is.
    """
    target, st = output_target(path)
    if st is not None and not stat.S_ISREG(st.st_mode):
        return
    if st is not None and not os.access(target, os.W_OK):
        raise PermissionError(errno.EACCES, "not writable")
    if not target.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, f"directory {target.parent} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot create a file in {target.parent} ({exc.strerror})") from None
    try:
        os.close(fd)
    finally:
        os.unlink(tmp)


def write_files_atomic(files: Mapping[str | os.PathLike[str], bytes]) -> None:
    """Write several files all or nothing.

    Every regular file is first written in full to a temporary file in its target's directory; only
    when all are written are they renamed into place, one after the other with SIGINT and SIGTERM held back,
    so a failure, Ctrl-C or SIGTERM leaves no temporary file and no new output. A symlink is followed: the file it
    points to is replaced, the link stays; a replaced file keeps its permissions. A FIFO or character
    device (``/dev/null``, ``/dev/stdout``) is never replaced: it is written through, after the
    regular files are in place.
    """
    pending: list[tuple[str, Path]] = []  # (temporary file, target)
    direct: list[tuple[Path, bytes, str | os.PathLike[str]]] = []
    try:
        for path, data in files.items():
            target, st = output_target(path)
            if st is not None and not stat.S_ISREG(st.st_mode):
                direct.append((target, data, path))
                continue
            with _naming(path):  # a full disk, a read-only mount ...: one line naming the file
                fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
                pending.append((tmp, target))
                # mkstemp creates 0600: keep the replaced file's mode, else what a plain open() would give.
                os.fchmod(fd, stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~_umask())
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
        with _sigint_held():
            while pending:
                tmp, target = pending[0]
                with _naming(target):
                    os.replace(tmp, target)
                pending.pop(0)
    except BaseException:
        for tmp, _ in pending:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        raise
    for target, data, path in direct:
        with _naming(path), open(target, "wb") as fh:
            fh.write(data)


class OutputWriteError(LazarusError, OSError):
    """An output file that could not be written (a full disk, a read-only mount ...): nothing was written.
    Also an ``OSError``, for callers that catch those. ``cause``: the system's reason alone."""

    cause: str = ""


@contextlib.contextmanager
def _naming(path: str | os.PathLike[str]) -> Iterator[None]:
    """An ``OSError`` inside becomes ``OutputWriteError`` naming ``path`` and the cause (one line)."""
    try:
        yield
    except OSError as exc:
        error = OutputWriteError(f"cannot write {os.fspath(path)}: {exc.strerror or exc}")
        error.cause = exc.strerror or str(exc)  # for callers that name the path their own way
        raise error from None


@contextlib.contextmanager
def _sigint_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back (main thread, POSIX) while a few renames complete; delivered afterwards."""
    import signal
    import threading

    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --- learned lenses -------------------------------------------------------------------------

LENS_EVAL_KIND = "lazarus-report/lens-eval"


@dataclass(frozen=True)
class LensFidelity:
    """How faithful a lens is at one layer, measured on held-out text (means over positions).

    ``kl_to_final``: KL(final || lens) in nats; ``top1_agreement``: fraction of positions where the
    lens's top-1 token is the model's final top-1; ``cross_entropy``: nats against the true next token.
    """

    layer: int
    kl_to_final: float
    top1_agreement: float
    cross_entropy: float


@dataclass(frozen=True)
class LensRecord:
    """Which lens produced a result: kind, artefact, what it was fitted on and how faithful it is.

    ``kind``: "logit" | "linear" | "tuned". ``source``: the artefact's path, "cache" (the user
    cache) or None (the logit lens has no artefact). ``digest``: sha256 of the artefact's weights
    file. ``fidelity``: per layer on held-out text (empty when unknown, e.g. a logit lens with no
    lens evaluation). Layers whose ``kl_to_final`` exceeds ``unreliable_threshold_nats`` are
    unreliable: renderers mark them. ``note``: e.g. that a base-model lens runs on base + adapter.
    """

    kind: str
    source: str | None
    digest: str | None
    fitted_for: dict[str, Any] | None
    corpus: str | None
    tokens: int | None
    fidelity: list[LensFidelity]
    unreliable_threshold_nats: float
    note: str | None = None
    # the logit lens's fidelity on the same held-out text (measured when the lens was fitted)
    logit_fidelity: list[LensFidelity] = dataclasses.field(default_factory=list)

    def unreliable_layers(self) -> list[int]:
        return [f.layer for f in self.fidelity if f.kl_to_final > self.unreliable_threshold_nats]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> LensRecord:
        try:
            return _build(cls, data)
        except (KeyError, TypeError, ValueError) as exc:
            raise ResultFormatError(f"malformed lens record: {exc}") from None


@dataclass(frozen=True)
class LensEvalResult(_JsonFile):
    """``lazarus lens eval``: the logit lens and one lens side by side on held-out text."""

    model: ModelInfo
    lens: LensRecord  # the lens evaluated (its ``fidelity`` is the one measured here)
    logit: list[LensFidelity]  # the logit lens on the same positions
    corpus: str  # description of the evaluation text
    corpus_sha256: str
    tokens: int  # positions evaluated per layer
    final_cross_entropy: float  # the model's own next-token cross-entropy on those positions
    versions: dict[str, str]
    timings: dict[str, float]
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return with_header(LENS_EVAL_KIND, dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Any) -> LensEvalResult:
        check_header(data, LENS_EVAL_KIND, "lens evaluation")
        try:
            return _build(cls, data)
        except (KeyError, TypeError, ValueError) as exc:
            raise ResultFormatError(f"malformed lens evaluation: {exc}") from None
