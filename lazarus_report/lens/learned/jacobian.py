"""The Jacobian lens (J-lens; Gurnee et al. 2026, "Verbalizable Representations Form a Global
Workspace in Language Models"): per layer, the corpus-averaged Jacobian of the last block's output
with respect to block ``l``'s output, read out through the model's own final norm, head and softcap:
``lens(h_l) = head(norm(J_l h_l))``. The logit lens is ``J_l = I``.

The estimator is the reference one (Anthropic's ``jacobian-lens``, as TransformerLens PR #1507
reproduces it, ``JacobianLens.fit``). Per prompt (at most ``MAX_SEQ_LEN`` tokens), with ``V`` the
valid positions ``SKIP_FIRST .. T-2`` (the first positions are attention sinks; the last has no next
token)::

    J_l(prompt) = 1/|V| * sum_{t in V} sum_{t' in V, t' >= t} d h_L[t'] / d h_l[t]

(target effects summed for each source position, source positions averaged), and ``J_l`` is the
mean over prompts. ``d h_L / d h_l`` is the total derivative: through later layers *and* later
positions (attention).

Computed with MLX vector-Jacobian products (``mx.vjp``; forward-mode ``jvp`` has failed on ``addmm``,
ml-explore/mlx#1771): a zero perturbation ``delta_l`` ``[H]`` is added to block ``l``'s output at every
valid position, so the gradient of ``<c, h_L>`` with respect to ``delta_l`` is already the sum over
source positions. A one-hot cotangent ``c`` for output dimension ``i`` at every valid target
position gives row ``i`` of every layer's ``J_l`` (times ``|V|``) at once. ``DIM_BATCH`` output
dimensions share one pass: ``mx.vmap`` over the cotangents of ``mx.vjp``, so the forward pass is
computed once and only the backward pass is batched (measured on SmolLM2, 128 tokens, 16 rows: 3x
faster than replicating the prompt along the batch axis as the reference does). ``H`` rows per prompt.

In this package's ``h @ W + b`` convention the artefact stores ``W_l = J_l^T`` and ``b_l = 0``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ...core.errors import LazarusError
from ...core.runtime import import_mlx
from ...models.hooks import embedding_scaled, swapped, swapped_class
from .collect import embedding_factor

mx = import_mlx()

SKIP_FIRST = 16  # the reference's DEFAULT_SKIP_FIRST_POSITIONS
MAX_SEQ_LEN = 128  # the reference's max_seq_len
DIM_BATCH = 16  # output dimensions per backward pass


def _perturbing_class(cls: type, index: int, state: dict[str, Any]) -> type:
    """A block class adding ``state["delta"][:, index]`` (at ``state["mask"]`` positions) to the block's
    output; the last block's output is recorded in ``state["out"]`` instead."""

    def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
        out = cls.__call__(self, *args, **kwargs)
        h = out[0] if isinstance(out, tuple) else out
        if index == state["last"]:
            state["out"] = h
            return out
        h = h + (state["mask"] * state["delta"][:, index][:, None, :]).astype(h.dtype)
        return (h, *out[1:]) if isinstance(out, tuple) else h

    return swapped_class(cls, "Perturbed", __call__)


def valid_positions(length: int, skip_first: int = SKIP_FIRST) -> list[int]:
    """Source and target positions of a prompt of ``length`` tokens (empty when it is too short)."""
    return list(range(skip_first, length - 1))


def prompt_jacobians(
    loaded: Any,
    ids: Sequence[int],
    *,
    skip_first: int = SKIP_FIRST,
    dim_batch: int = DIM_BATCH,
    progress: Callable[[int], None] | None = None,
    compiled: bool = True,
) -> np.ndarray:
    """``[L-1, H, H]`` float64: ``J_l(prompt)`` for every block ``l < L-1`` (row = output dimension of the
    last block, column = input dimension of block ``l``), as the module doc defines it.

    ``compiled``: run the batched backward pass through ``mx.compile`` (its element-wise operations fused;
    the same numbers)."""
    parts = loaded.parts
    n_layers = len(parts.layers)
    hdim = int(parts.args.hidden_size)
    ids = [int(i) for i in ids]
    valid = valid_positions(len(ids), skip_first)
    if not valid:
        raise LazarusError(f"a prompt of {len(ids)} tokens has no position past the first {skip_first} to fit on")
    length = len(ids)
    mask_np = np.zeros((1, length, 1), dtype=np.float32)
    mask_np[0, valid, 0] = 1.0
    state: dict[str, Any] = {"last": n_layers - 1, "mask": mx.array(mask_np)}
    factor = embedding_factor(loaded)
    out = np.zeros((n_layers - 1, hdim, hdim), dtype=np.float64)
    swaps = [(b, _perturbing_class(type(b), i, state)) for i, b in enumerate(parts.layers)]
    tokens = mx.array([ids], dtype=mx.int32)
    delta0 = mx.zeros((1, n_layers - 1, hdim), dtype=mx.float32)

    def forward(delta: Any) -> Any:
        state["delta"] = delta
        parts.backbone(tokens)
        return state.pop("out")

    def rows(cot: Any) -> Any:
        return mx.vjp(forward, [delta0], [cot])[1][0][0]  # [L-1, H]

    # One forward pass shared by the batch of cotangents (vmap); compiled: the backward's element-wise
    # operations are fused (the same numbers bit for bit, ~13% faster on SmolLM2; traced once per prompt).
    batched = mx.compile(mx.vmap(rows)) if compiled else mx.vmap(rows)
    with swapped(swaps), embedding_scaled(parts, factor):
        for start in range(0, hdim, dim_batch):
            n = min(dim_batch, hdim - start)
            cot = np.zeros((n, 1, length, hdim), dtype=np.float32)
            cot[np.arange(n)[:, None], 0, np.array(valid)[None, :], start + np.arange(n)[:, None]] = 1.0
            grad = batched(mx.array(cot)).astype(mx.float32)
            mx.eval(grad)
            # grad[b, l] = sum over valid t of d <cot_b, h_L> / d h_l[t]  ->  row start + b of J_l (x |V|)
            out[:, start : start + n, :] = np.asarray(grad, dtype=np.float64).transpose(1, 0, 2)
            state.pop("delta", None)
            if progress is not None:
                progress(n)
    out /= len(valid)
    return out


def fit_jacobian(
    loaded: Any,
    prompts: Sequence[Sequence[int]],
    *,
    skip_first: int = SKIP_FIRST,
    dim_batch: int = DIM_BATCH,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """``J_l`` ``[L-1, H, H]`` (float64, mean over the prompts long enough to contribute) and fit stats."""
    hdim = int(loaded.parts.args.hidden_size)
    n_layers = len(loaded.parts.layers)
    total = np.zeros((n_layers - 1, hdim, hdim), dtype=np.float64)
    used = 0
    positions = 0
    start = time.perf_counter()
    for ids in prompts:
        if not valid_positions(len(ids), skip_first):
            continue
        total += prompt_jacobians(loaded, ids, skip_first=skip_first, dim_batch=dim_batch, progress=progress)
        used += 1
        positions += len(valid_positions(len(ids), skip_first))
    if used == 0:
        raise LazarusError(
            f"no prompt is longer than {skip_first + 1} tokens: the Jacobian lens has nothing to fit on "
            "(give a larger --corpus)"
        )
    seconds = time.perf_counter() - start
    stats = {
        "estimator": "reference (Gurnee et al. 2026; TransformerLens JacobianLens.fit)",
        "n_prompts": used,
        "source_positions": positions,
        "max_seq_len": MAX_SEQ_LEN,
        "skip_first_positions": skip_first,
        "dim_batch": dim_batch,
        "jacobian_seconds": round(seconds, 2),
        "seconds_per_prompt": round(seconds / used, 2),
    }
    return total / used, stats


def jacobian_lens_weights(jacobians: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The artefact's (weight ``[L-1, H, H]``, bias ``[L-1, H]``) for ``J_l``: ``h @ J_l^T`` = ``J_l h``."""
    weight = np.ascontiguousarray(jacobians.transpose(0, 2, 1), dtype=np.float32)
    return weight, np.zeros(weight.shape[:2], dtype=np.float32)
