"""Per-family quirks for the logit lens, in one small registry.

For every supported mlx-lm ``model_type`` this says where the transformer blocks, the final norm
and the unembedding live, what the family's ``Model.__call__`` does to the logits after the head
(softcapping, scaling), and what multiplier the family applies to token embeddings.

Quirks captured here (each one checked by tests/test_families.py: lens at the last layer == the
model's own logits):

* llama, mistral (mlx-lm runs mistral as llama), qwen2, qwen3, phi3, olmo2, starcoder2: plain
  ``norm -> lm_head`` or tied ``embed_tokens.as_linear``.
* gemma: tied head; embeddings scaled by sqrt(hidden_size) inside the backbone; RMSNorm is
  ``1 + weight`` (we call the module, never reimplement it).
* gemma2: as gemma, plus final logit softcapping ``tanh(x / c) * c``.
* gemma3_text / gemma3: embedding scale sqrt(hidden_size) rounded to bfloat16 by mlx-lm whatever
  the dtype, while the reference (transformers) rounds it to the weights' dtype (float32: 25.298 for
  hidden 640, not 25.25); ``reference_embedding_scale`` gives the reference's, which the analysis
  uses by default. gemma3 (multimodal checkpoint) keeps the text model under ``language_model``.
* cohere: logits multiplied by ``logit_scale``; granite: logits divided by ``logits_scaling``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..core.errors import LazarusError


@dataclass(frozen=True)
class Family:
    name: str
    # Which attribute path holds the text model (the module with embed_tokens/layers/norm).
    backbone_path: tuple[str, ...] = ("model",)
    # Attribute path of the module holding an untied lm_head, relative to the top model.
    head_owner_path: tuple[str, ...] = ()
    # Post-head transform of the logits, given the top-level model: e.g. softcapping.
    post_head: Callable[[Any, Any], Any] | None = None
    # The embedding multiplier the family's backbone applies itself, given the model args.
    builtin_embedding_scale: Callable[[Any], float] | None = None
    # The reference implementation's multiplier (given the args and the embeddings' dtype), only
    # where mlx-lm's builtin differs from it (gemma3: bfloat16-rounded even in float32).
    reference_embedding_scale: Callable[[Any, Any], float] | None = None
    # Whether GGUF files of this family store Q/K rows permuted for llama.cpp's rotary layout.
    gguf_rope_traditional: bool = False
    describe_softcap: Callable[[Any], float | None] | None = None


def _bf16(x: float) -> float:
    """Round a float to bfloat16 (what mlx-lm's gemma3 does to its embedding scale)."""
    import struct

    bits = struct.unpack("<I", struct.pack("<f", x))[0]
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def _softcap(model: Any, logits: Any) -> Any:
    import mlx.core as mx

    c = _softcap_value(model)
    if not c:
        return logits
    return mx.tanh(logits / c) * c


def _softcap_value(model: Any) -> float | None:
    c = getattr(model, "final_logit_softcapping", None)
    if c is None:
        c = getattr(getattr(model, "args", None), "final_logit_softcapping", None)
    return float(c) if c else None


def _cohere_scale(model: Any, logits: Any) -> Any:
    return logits * model.model.args.logit_scale


def _granite_scale(model: Any, logits: Any) -> Any:
    return logits / model.logits_scaling


def _sqrt_hidden(args: Any) -> float:
    return math.sqrt(args.hidden_size)


def _sqrt_hidden_bf16(args: Any) -> float:
    return _bf16(math.sqrt(args.hidden_size))


def _sqrt_hidden_in(args: Any, dtype: Any) -> float:
    """transformers' Gemma 3 ``embed_scale``: sqrt(hidden_size) as float32, cast to the weights' dtype."""
    import mlx.core as mx

    return float(mx.array(math.sqrt(args.hidden_size), dtype=mx.float32).astype(dtype).item())  # type: ignore[arg-type]  # a real dtype: a float


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        Family("llama", gguf_rope_traditional=True),
        Family("mistral", gguf_rope_traditional=True),
        Family("qwen2"),
        Family("qwen3"),
        Family("phi3"),
        Family("olmo2"),
        Family("starcoder2"),
        Family("gemma", builtin_embedding_scale=_sqrt_hidden),
        Family(
            "gemma2",
            builtin_embedding_scale=_sqrt_hidden,
            post_head=_softcap,
            describe_softcap=_softcap_value,
        ),
        Family(
            "gemma3_text",
            builtin_embedding_scale=_sqrt_hidden_bf16,
            reference_embedding_scale=_sqrt_hidden_in,
            post_head=_softcap,
            describe_softcap=_softcap_value,
        ),
        Family(
            "gemma3",
            backbone_path=("language_model", "model"),
            head_owner_path=("language_model",),
            builtin_embedding_scale=_sqrt_hidden_bf16,
            reference_embedding_scale=_sqrt_hidden_in,
            post_head=lambda m, x: _softcap(m.language_model, x),
            describe_softcap=lambda m: _softcap_value(m.language_model),
        ),
        Family("cohere", post_head=_cohere_scale),
        Family("granite", post_head=_granite_scale),
    ]
}


def get_family(model_type: str) -> Family:
    try:
        return FAMILIES[model_type]
    except KeyError:
        supported = ", ".join(sorted(FAMILIES))
        raise LazarusError(f"unsupported architecture {model_type!r} (supported: {supported})") from None


def _walk(obj: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        obj = getattr(obj, name)
    return obj


@dataclass
class LensParts:
    """The pieces of a loaded model the lens needs, found through its family."""

    family: Family
    model: Any  # the top-level mlx-lm Model
    backbone: Any  # module with embed_tokens, layers, norm
    layers: list[Any]
    norm: Any
    head: Callable[[Any], Any]  # hidden [N, H] (already normed) -> logits [N, V]
    tied: bool
    args: Any
    # Sharded over several ranks (``distributed.Shard``): ``layers`` holds None for the blocks other
    # ranks run, and ``shard.gather`` brings every captured layer to this rank after a forward pass.
    shard: Any = None

    @classmethod
    def of(cls, model: Any, model_type: str) -> LensParts:
        family = get_family(model_type)
        backbone = _walk(model, family.backbone_path)
        head_owner = _walk(model, family.head_owner_path)
        lm_head = head_owner.get("lm_head") if hasattr(head_owner, "get") else None
        tied = lm_head is None
        head = lm_head if lm_head is not None else backbone.embed_tokens.as_linear
        args = getattr(backbone, "args", None) or getattr(head_owner, "args", None) or model.args
        return cls(
            family=family,
            model=model,
            backbone=backbone,
            layers=list(backbone.layers),
            norm=backbone.norm,
            head=head,
            tied=tied,
            args=args,
        )

    def logits(self, hidden: Any) -> Any:
        """The model's own output head applied to residual-stream states ``[..., H]``."""
        out = self.head(self.norm(hidden))
        if self.family.post_head is not None:
            out = self.family.post_head(self.model, out)
        return out

    @property
    def builtin_embedding_scale(self) -> float | None:
        f = self.family.builtin_embedding_scale
        return f(self.args) if f else None

    @property
    def reference_embedding_scale(self) -> float | None:
        """The reference implementation's embedding multiplier at this model's dtype, where it
        differs from mlx-lm's builtin one (None otherwise)."""
        f = self.family.reference_embedding_scale
        if f is None:
            return None
        emb = self.backbone.embed_tokens
        # a streamed embedding computes in float32 whatever it stores; a QuantizedEmbedding in its scales' dtype
        dtype = getattr(emb, "compute_dtype", None) or getattr(emb, "scales", emb.weight).dtype
        return f(self.args, dtype)

    @property
    def default_embedding_scale(self) -> float | None:
        """The scale an analysis uses unless the user overrides it."""
        return self.reference_embedding_scale or self.builtin_embedding_scale

    @property
    def softcap(self) -> float | None:
        f = self.family.describe_softcap
        return f(self.model) if f else None
