"""What produced a result: the model, how it ran, which lens read it; and a token with its probability."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .codec import ResultFormatError, build_dataclass


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
            return build_dataclass(cls, data)
        except (KeyError, TypeError, ValueError) as exc:
            raise ResultFormatError(f"malformed lens record: {exc}") from None
