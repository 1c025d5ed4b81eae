"""Class-swap hooks on a model's blocks: record what a block outputs, scale the embedding."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from ..core.runtime import import_mlx
from .families import LensParts

mx = import_mlx()


def swapped_class(cls: type, name: str, call: Callable[..., Any]) -> type:
    """A subclass of a module's own class, ``{name}{cls.__name__}``, whose ``__call__`` is ``call``.

    Every hook swaps an instance's class to such a subclass (instead of wrapping the module): that keeps
    every attribute the family's forward pass reads (``use_sliding``, ``is_sliding``...) and mlx-lm's own
    masks. ``call(self, *args, **kwargs)`` reaches the original forward as ``cls.__call__(self, ...)``.
    """
    return type(f"{name}{cls.__name__}", (cls,), {"__call__": call})


def observing_class(cls: type, name: str, record: Callable[[Any], None]) -> type:
    """``swapped_class`` whose forward is the block's own, and which hands the block's output (the hidden
    state, without the cache a block may return beside it) to ``record``."""

    def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
        out = cls.__call__(self, *args, **kwargs)
        record(out[0] if isinstance(out, tuple) else out)
        return out

    return swapped_class(cls, name, __call__)


@contextlib.contextmanager
def swapped(swaps: Iterable[tuple[Any, type]]) -> Iterator[None]:
    """Give each module of ``swaps`` its new class for the ``with`` block, then its own class back (also on
    errors). ``swaps`` is consumed lazily, so each new class may be built from the module's current one."""
    originals = []
    try:
        for module, cls in swaps:
            originals.append((module, type(module)))
            module.__class__ = cls
        yield
    finally:
        for module, cls in reversed(originals):
            module.__class__ = cls


def capturing_class(cls: type, sink: dict[int, Any], index: int) -> type:
    """A subclass of a block's own class that records the block's output in ``sink[index]``."""
    return observing_class(cls, "Capturing", lambda h: sink.__setitem__(index, h))


@contextlib.contextmanager
def capturing(parts: LensParts, layer_indices: Sequence[int]) -> Iterator[dict[int, Any]]:
    sink: dict[int, Any] = {}
    blocks = [parts.layers[i] for i in layer_indices]
    # a None block: another rank runs it (distributed pipeline)
    swaps = ((b, capturing_class(type(b), sink, i)) for i, b in zip(layer_indices, blocks) if b is not None)
    with swapped(swaps):
        yield sink


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

    with swapped([(emb, swapped_class(cls, "Scaled", __call__))]):
        yield


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
