"""Residual streams over a corpus: one forward pass per token sequence, every block's output kept.

Memory is bounded by the states themselves (float32 ``[L, N, H]``: 30 x 25k x 576 x 4 B = 1.7 GB for
SmolLM2 on the default corpus); no ``[N, V]`` logits are ever built here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...core.runtime import import_mlx
from ...models.hooks import capturing, embedding_scaled

mx = import_mlx()


@dataclass
class States:
    """Block outputs at every used position: ``hidden[l, n]`` is block ``l``'s output at position ``n``."""

    hidden: np.ndarray  # [L, N, H] float32
    next_ids: np.ndarray  # [N] the true next token (-1 at a sequence's last position)

    @property
    def num_positions(self) -> int:
        return int(self.hidden.shape[1])


def embedding_factor(loaded: Any) -> float | None:
    """The embedding multiplier an analysis applies by default (Gemma 3: the reference's scale)."""
    scale = loaded.parts.reference_embedding_scale
    if scale is None:
        return None
    return scale / (loaded.parts.builtin_embedding_scale or 1.0)


BATCH = 4  # sequences of equal length per forward pass (batched matmuls run faster on the CPU)


def collect_states(
    loaded: Any, seqs: list[list[int]], progress: Callable[[int], None] | None = None, batch: int = BATCH
) -> States:
    """Forward every sequence, keep all blocks' outputs at positions 1.. (see ``corpus``).

    Sequences of equal length go through the backbone ``batch`` at a time (the corpus packs text
    into full-length sequences, so nearly all are); block outputs are captured the way the engine
    captures them (``lens.capturing``: the model's own forward pass and masks).
    """
    parts = loaded.parts
    n_layers = len(parts.layers)
    hdim = int(parts.args.hidden_size)
    total = sum(len(s) - 1 for s in seqs)
    hidden = np.empty((n_layers, total, hdim), dtype=np.float32)
    next_ids = np.full(total, -1, dtype=np.int64)
    factor = embedding_factor(loaded)
    layers = list(range(n_layers))
    at = 0
    i = 0
    while i < len(seqs):
        group = [seqs[i]]
        while len(group) < batch and i + len(group) < len(seqs) and len(seqs[i + len(group)]) == len(seqs[i]):
            group.append(seqs[i + len(group)])
        i += len(group)
        inputs = mx.array(group, dtype=mx.int32)
        with capturing(parts, layers) as sink, embedding_scaled(parts, factor):
            parts.backbone(inputs)
        stacked = mx.stack([sink[j][:, 1:] for j in layers]).astype(mx.float32)  # [L, B, T-1, H]
        mx.eval(stacked)
        block = np.asarray(stacked)
        n = len(group[0]) - 1
        for k, seq in enumerate(group):
            hidden[:, at : at + n] = block[:, k]
            next_ids[at : at + n - 1] = seq[2:]
            at += n
        del sink, stacked, block
        if progress is not None:
            progress(n * len(group))
    return States(hidden=hidden, next_ids=next_ids)
