"""Class-swap hooks on a model's blocks: record what a block outputs, scale the embedding."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from ..core.runtime import import_mlx
from .families import LensParts

mx = import_mlx()


def capturing_class(cls: type, sink: dict[int, Any], index: int) -> type:
    """A subclass of a block's own class that records the block's output.

    Swapping the instance's class (instead of wrapping the module) keeps every attribute the
    family's forward pass reads (``use_sliding``, ``is_sliding``...) and mlx-lm's own masks.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        out = cls.__call__(self, *args, **kwargs)
        sink[index] = out[0] if isinstance(out, tuple) else out
        return out

    return type(f"Capturing{cls.__name__}", (cls,), {"__call__": __call__})


@contextlib.contextmanager
def capturing(parts: LensParts, layer_indices: Sequence[int]) -> Iterator[dict[int, Any]]:
    sink: dict[int, Any] = {}
    originals = []
    try:
        for i in layer_indices:
            block = parts.layers[i]
            if block is None:  # another rank runs it (distributed pipeline)
                continue
            originals.append((block, type(block)))
            block.__class__ = capturing_class(type(block), sink, i)
        yield sink
    finally:
        for block, cls in originals:
            block.__class__ = cls


@contextlib.contextmanager
def embedding_scaled(parts: LensParts, factor: float | None) -> Iterator[None]:
    """Multiply token embeddings by ``factor`` on the way in (not in the tied head)."""
    if factor is None or factor == 1.0:
        yield
        return
    emb = parts.backbone.embed_tokens
    cls = type(emb)

    def __call__(self: Any, x: Any) -> Any:
        out = cls.__call__(self, x)
        return out * mx.array(factor, dtype=out.dtype)

    emb.__class__ = type(f"Scaled{cls.__name__}", (cls,), {"__call__": __call__})
    try:
        yield
    finally:
        emb.__class__ = cls


def capture_hidden(
    parts: LensParts, token_ids: Sequence[int], layer_indices: Sequence[int], embedding_factor: float | None = None
) -> dict[int, Any]:
    """One forward pass through the backbone (no full-vocabulary head); block outputs by index."""
    inputs = mx.array([list(token_ids)], dtype=mx.int32)
    with capturing(parts, layer_indices) as sink, embedding_scaled(parts, embedding_factor):
        out = parts.backbone(inputs)
    if parts.shard is not None:  # distributed: every captured layer onto every rank
        sink = parts.shard.gather(sink, layer_indices, out)
    missing = [i for i in layer_indices if i not in sink]
    if missing:  # a family whose forward skips blocks would silently break the lens
        raise RuntimeError(f"blocks {missing} were not called during the forward pass")
    return dict(sink)
