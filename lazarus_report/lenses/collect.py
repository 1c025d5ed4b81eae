"""Residual streams over a corpus: one forward pass per token sequence, every block's output kept.

Memory is bounded by the states themselves (float32 ``[L, N, H]``: 30 x 25k x 576 x 4 B = 1.7 GB for
SmolLM2 on the default corpus); no ``[N, V]`` logits are ever built here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..blas import import_mlx
from ..lens import capture_hidden

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


def collect_states(loaded: Any, seqs: list[list[int]], progress: Callable[[int], None] | None = None) -> States:
    """Forward every sequence, keep all blocks' outputs at positions 1.. (see ``corpus``)."""
    parts = loaded.parts
    n_layers = len(parts.layers)
    hdim = int(parts.args.hidden_size)
    total = sum(len(s) - 1 for s in seqs)
    hidden = np.empty((n_layers, total, hdim), dtype=np.float32)
    next_ids = np.full(total, -1, dtype=np.int64)
    factor = embedding_factor(loaded)
    layers = list(range(n_layers))
    at = 0
    for seq in seqs:
        sink = capture_hidden(parts, seq, layers, factor)
        stacked = mx.stack([sink[i][0, 1:] for i in layers]).astype(mx.float32)
        mx.eval(stacked)
        n = len(seq) - 1
        hidden[:, at : at + n] = np.asarray(stacked)
        next_ids[at : at + n - 1] = seq[2:]
        at += n
        del sink, stacked
        if progress is not None:
            progress(n)
    return States(hidden=hidden, next_ids=next_ids)
