"""The logit lens: capture the residual stream after each block, apply the model's own head.

Shapes (B = 1 batch, T prompt tokens, H hidden size, V vocabulary, L captured layers):

* ``capture_hidden`` runs one forward pass and returns the outputs of the requested blocks,
  each ``[1, T, H]``; ``forward_chunks`` runs it in prefill pieces of ``PREFILL_CHUNK`` tokens through
  mlx-lm's KV cache and yields each piece's outputs (the engine computes the grid piece by piece).
* ``last_position_stats`` takes ``[L, H]`` (the last position of each captured layer) and
  computes top-k, entropy, KL(final || layer) and exact ranks, all from float32 log-softmax.
* ``position_grid`` covers every (layer, position) in chunks so that no ``[L, T, V]`` array is
  ever built: at most about ``GRID_BUDGET_BYTES`` of float32 logits are live at once.

The head's matmul runs in MLX (BLAS); the per-row statistics over the vocabulary run in numpy on
cache-sized blocks: MLX's CPU ``exp`` is scalar (~85 M values/s here) while numpy's is vectorised
(~1.2 G values/s), and the softmax statistics are dominated by that one ``exp`` pass.
Every statistic comes from one float32 pass per row:
``lse = m + log(sum exp(z - m))``, ``entropy = lse - sum(p * z)``,
``KL(final || layer) = (p_final . z_final - p_final . z) + (lse - lse_final)`` (exactly 0 when the
layer is the final one), ``top-1 prob = 1 / sum exp(z - m)``.
The row maximum ``m`` is read at the top-1 id (one pass fewer), and the row blocks run on two threads
(``STATS_THREADS``): the head matmuls keep both cores busy through BLAS, the statistics otherwise use one.

MLX lives here and in ``models/``; nothing here formats text.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.errors import LazarusError
from ..core.runtime import import_mlx
from ..models.families import LensParts
from ..models.hooks import capture_hidden, capturing, embedding_scaled
from ..results.codec import rounded
from .stats import row_dots

mx = import_mlx()


# Bytes of [rows, V] float32 logits produced by one head matmul in the grid (bounded memory).
GRID_BUDGET_BYTES = 48 * 2**20


# The same for a streamed head (decoded from its stored blocks in every head matmul): fewer, larger matmuls.
STREAMED_GRID_BUDGET_BYTES = 160 * 2**20


# The same for prompts prefilled in chunks (long prompts: the process's peak matters more than the
# per-call overhead of smaller head matmuls).
CHUNKED_GRID_BUDGET_BYTES = 16 * 2**20


# The grid's head matmuls have at least this many rows (see ``_grid_logits``).
GRID_MIN_ROWS = 8


# Rows per numpy statistics block: small enough to stay in the CPU cache.
STATS_BLOCK_ROWS = 32


class NonFiniteError(LazarusError):
    """The lens met NaN or infinite values (damaged weights, or overflow in low precision)."""


# Tokens per forward piece when a prompt is prefilled in chunks through mlx-lm's KV cache: attention
# scores stay [heads, chunk, T] instead of [heads, T, T], and the grid is computed chunk by chunk.
PREFILL_CHUNK = 128
# A streamed model decodes every weight in each piece's forward pass: its prompts run in pieces this long, so a
# prompt of up to 512 tokens decodes each block once (the captured rows of an 8B's 32 layers: 268 MB per piece).
STREAMED_PREFILL_CHUNK = 512


def forward_chunks(
    parts: LensParts,
    token_ids: Sequence[int],
    layer_indices: Sequence[int],
    embedding_factor: float | None = None,
    chunk: int | None = None,
) -> Iterator[tuple[int, dict[int, Any]]]:
    """The forward pass in pieces of ``chunk`` tokens (default ``PREFILL_CHUNK``) through mlx-lm's KV cache (``make_prompt_cache``:
    each family's own cache, e.g. rotating caches for sliding-window layers).

    Yields ``(start, outputs)`` per piece: the requested blocks' outputs ``[1, c, H]`` at positions
    ``start .. start + c - 1``, evaluated. A prompt of at most ``chunk`` tokens runs as one piece
    without a cache (``capture_hidden``). Equal to the one-pass outputs within float rounding
    (attention sums its keys in other groupings).
    """
    ids = list(token_ids)
    chunk = PREFILL_CHUNK if chunk is None else chunk
    if chunk < 1:
        raise ValueError("chunk must be at least 1")
    if len(ids) <= chunk or getattr(parts, "shard", None) is not None:  # distributed: one pass (ranks gather it)
        sink = capture_hidden(parts, ids, layer_indices, embedding_factor)
        mx.eval(list(sink.values()))
        yield 0, sink
        return
    from mlx_lm.models.cache import make_prompt_cache  # mlx_lm is imported: the model was built with it

    cache = make_prompt_cache(parts.model)
    for start in range(0, len(ids), chunk):
        inputs = mx.array([ids[start : start + chunk]], dtype=mx.int32)
        with capturing(parts, layer_indices) as sink, embedding_scaled(parts, embedding_factor):
            parts.backbone(inputs, cache=cache)
        missing = [i for i in layer_indices if i not in sink]
        if missing:
            raise RuntimeError(f"blocks {missing} were not called during the forward pass")
        mx.eval(list(sink.values()), [c.state for c in cache])
        yield start, dict(sink)
        del sink


def head_logits(parts: LensParts, hidden: Any) -> Any:
    """float32 logits of the model's own head applied to ``hidden`` ``[N, H]`` -> ``[N, V]``."""
    return parts.logits(hidden).astype(mx.float32)


def head_logits_np(parts: LensParts, hidden: Any) -> np.ndarray:
    """float32 logits ``[N, V]`` of the model's head over ``hidden`` ``[N, H]``, as numpy."""
    z = head_logits(parts, hidden)
    mx.eval(z)
    return np.asarray(z)


@dataclass
class RowStats:
    """Statistics of ``softmax(z)`` for each row of a logits block ``z`` ``[N, V]``."""

    lse: np.ndarray  # [N] log-sum-exp
    entropy: np.ndarray  # [N] nats
    top_ids: np.ndarray  # [N, k] most probable first
    top_probs: np.ndarray  # [N, k]
    kl_to_final: np.ndarray | None  # [N] KL(final || row) when a final distribution was given


@dataclass
class FinalReference:
    """What KL(final || row) needs of the final distribution, per row (or broadcastable)."""

    probs: np.ndarray  # [N, V] float32 p_final
    self_dot: np.ndarray  # [N] p_final . z_final
    lse: np.ndarray  # [N] log-sum-exp of z_final

    @classmethod
    def of(cls, z_final: np.ndarray) -> FinalReference:
        lse = row_stats(z_final, 1).lse
        probs = np.subtract(z_final, lse[:, None].astype(np.float32))
        np.exp(probs, out=probs)  # in place: one [N, V] buffer, not two
        return cls(probs, row_dots(probs, z_final), lse)

    def subset(self, idx: np.ndarray, n: int) -> FinalReference:
        """The rows ``idx`` of this reference (itself when ``idx`` is all ``n`` rows)."""
        if len(idx) == n:
            return self
        return FinalReference(self.probs[idx], self.self_dot[idx], self.lse[idx])

    def rows(self, n: int) -> FinalReference:
        """The same single final distribution for ``n`` rows (last-position use)."""
        return FinalReference(
            np.broadcast_to(self.probs, (n, self.probs.shape[1])),
            np.repeat(self.self_dot, n),
            np.repeat(self.lse, n),
        )


def _top_k_rows(z: np.ndarray, k: int) -> np.ndarray:
    if k == 1:
        return np.argmax(z, axis=1)[:, None]
    if k <= 8:  # k argmax passes beat a partition over the vocabulary for small k
        work = z.copy()
        rows = np.arange(z.shape[0])
        out = np.empty((z.shape[0], k), dtype=np.int64)
        for j in range(k):
            out[:, j] = np.argmax(work, axis=1)
            work[rows, out[:, j]] = -np.inf
        return out
    idx = np.argpartition(z, -k, axis=1)[:, -k:]
    order = np.argsort(-np.take_along_axis(z, idx, axis=1), axis=1, kind="stable")
    return np.take_along_axis(idx, order, axis=1)


def _exp_rows(zb: np.ndarray, e: np.ndarray, m: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``e = exp(zb - max)`` per row (in place in ``e``, float32); returns the rows' sums of ``e`` and their
    log-sum-exp (float64). The one definition of a row's log-sum-exp in the lens. ``m``: the rows' maxima,
    when the caller has them (read at the argmax: the same values)."""
    if m is None:
        m = zb.max(axis=1)
    np.subtract(zb, m[:, None], out=e)
    np.exp(e, out=e)
    total = e.sum(axis=1, dtype=np.float64)
    return total, m + np.log(total)


def row_lse(z: np.ndarray) -> np.ndarray:
    """``[N]`` log-sum-exp of each row of ``z`` ``[N, V]``, exactly as ``row_stats`` computes it."""
    lse = np.empty(z.shape[0], dtype=np.float64)
    scratch = np.empty((min(z.shape[0], STATS_BLOCK_ROWS), z.shape[1]), dtype=np.float32)
    for a in range(0, z.shape[0], STATS_BLOCK_ROWS):
        b = min(z.shape[0], a + STATS_BLOCK_ROWS)
        lse[a:b] = _exp_rows(z[a:b], scratch[: b - a])[1]
    return lse


# Threads computing ``row_stats``'s row blocks: numpy releases the GIL in its loops, and while the statistics
# run no BLAS matmul does, so the second core would otherwise idle (the grid's statistics: ~2x faster here).
STATS_THREADS = min(2, os.cpu_count() or 1)
_STATS_POOL: dict[int, ThreadPoolExecutor] = {}  # by process id: a forked child has none of its parent's threads
_SCRATCH = threading.local()


def _stats_pool() -> ThreadPoolExecutor:
    pid = os.getpid()
    if pid not in _STATS_POOL:
        _STATS_POOL.clear()
        _STATS_POOL[pid] = ThreadPoolExecutor(STATS_THREADS, thread_name_prefix="lens-stats")
    return _STATS_POOL[pid]


def _scratch(rows: int, v: int) -> np.ndarray:
    """This thread's float32 ``[rows, v]`` scratch block (reused: no fresh pages per block)."""
    buf = getattr(_SCRATCH, "buf", None)
    if buf is None or buf.shape[1] != v or buf.shape[0] < rows:
        buf = _SCRATCH.buf = np.empty((max(rows, STATS_BLOCK_ROWS), v), dtype=np.float32)
    return buf[:rows]


def row_stats(z: np.ndarray, top_k: int, final: FinalReference | None = None) -> RowStats:
    """One exp pass per row of ``z`` ``[N, V]`` (float32 logits) gives every statistic.

    ``final``: the final distribution each row is compared with (KL(final || row)). Blocks of
    ``STATS_BLOCK_ROWS`` rows run on ``STATS_THREADS`` threads; every row's numbers are the same either way.
    """
    n, v = z.shape
    k = min(top_k, v)
    st = RowStats(
        lse=np.empty(n, dtype=np.float64),
        entropy=np.empty(n, dtype=np.float64),
        top_ids=np.empty((n, k), dtype=np.int64),
        top_probs=np.empty((n, k), dtype=np.float64),
        kl_to_final=np.empty(n, dtype=np.float64) if final is not None else None,
    )
    blocks = [(a, min(n, a + STATS_BLOCK_ROWS)) for a in range(0, n, STATS_BLOCK_ROWS)]
    if STATS_THREADS > 1 and len(blocks) > 1:
        list(_stats_pool().map(lambda ab: _block_stats(z, k, final, st, *ab), blocks))
    else:
        for a, b in blocks:
            _block_stats(z, k, final, st, a, b)
    np.maximum(st.entropy, 0.0, out=st.entropy)
    return st


def _block_stats(z: np.ndarray, k: int, final: FinalReference | None, st: RowStats, a: int, b: int) -> None:
    """``row_stats`` of the rows ``a:b`` of ``z``, written into ``st`` (entropy before its clip at 0)."""
    zb = z[a:b]
    ids = _top_k_rows(zb, k)
    st.top_ids[a:b] = ids
    top = np.take_along_axis(zb, ids, axis=1)
    total, block_lse = _exp_rows(zb, _scratch(b - a, z.shape[1]), m=top[:, 0].copy())
    e = _scratch(b - a, z.shape[1])
    st.lse[a:b] = block_lse
    # sum p*z = sum(e*z)/total; the row dot products run as a batched matmul.
    st.entropy[a:b] = block_lse - row_dots(e, zb) / total
    st.top_probs[a:b] = np.exp(top.astype(np.float64) - block_lse[:, None])
    if st.kl_to_final is not None and final is not None:
        cross = row_dots(final.probs[a:b], zb)
        st.kl_to_final[a:b] = np.maximum(0.0, (final.self_dot[a:b] - cross) + (block_lse - final.lse[a:b]))


def exact_ranks(z: np.ndarray, ids: Sequence[int]) -> np.ndarray:
    """``[N, m]``: 1 + the number of logits strictly larger than the token's (no cut-off)."""
    out = np.empty((z.shape[0], len(ids)), dtype=np.int64)
    for j, i in enumerate(ids):
        out[:, j] = 1 + (z > z[:, i : i + 1]).sum(axis=1)
    return out


@dataclass
class LastPositionStats:
    """Per captured layer at the last position; lists indexed like the layer list."""

    top_ids: list[list[int]]  # [L][k]
    top_probs: list[list[float]]  # [L][k]
    entropy: list[float]
    kl_to_final: list[float]
    final_token_rank: list[int]
    tracked_probs: list[list[float]]  # [L][n_tracked]
    tracked_ranks: list[list[int]]  # [L][n_tracked]
    log_probs: np.ndarray  # [L, V] float32 lens log-probabilities (for comparing two models)
    lse: np.ndarray | None = None  # [L] float64 log-sum-exp of the raw logits (logit = log-prob + lse)


def last_position_stats(
    parts: LensParts, hidden_last: Any, final_hidden_last: Any, top_k: int, tracked_ids: Sequence[int]
) -> LastPositionStats:
    """Statistics of the lens at the last position.

    ``hidden_last`` is ``[L, H]``: the last position of each captured layer.
    ``final_hidden_last`` is ``[1, H]``: the last block's output there (the model's own prediction).
    """
    z_all = head_logits_np(parts, mx.concatenate([hidden_last, final_hidden_last], axis=0))
    return stats_from_logits(z_all, top_k, tracked_ids)


def stats_from_logits(z_all: np.ndarray, top_k: int, tracked_ids: Sequence[int]) -> LastPositionStats:
    """``last_position_stats`` from the head's float32 logits ``[L + 1, V]``: one row per captured layer,
    then the final row (the last block's output: the model's own prediction)."""
    if not np.isfinite(z_all).all():
        raise NonFiniteError("the model produced NaN or infinite logits: its weights are damaged or overflow")
    z, zf = z_all[:-1], z_all[-1:]
    final = FinalReference.of(zf)
    n = z.shape[0]
    stats = row_stats(z, top_k, final.rows(n))
    assert stats.kl_to_final is not None  # a final distribution was given
    final_rank = exact_ranks(z, [int(np.argmax(zf[0]))])[:, 0]
    tracked = list(tracked_ids)
    ranks = exact_ranks(z, tracked)
    tracked_probs = np.exp(z[:, tracked].astype(np.float64) - stats.lse[:, None]) if tracked else np.zeros((n, 0))
    return LastPositionStats(
        top_ids=stats.top_ids.tolist(),
        top_probs=rounded(stats.top_probs.tolist()),
        entropy=rounded(stats.entropy.tolist()),
        kl_to_final=rounded(stats.kl_to_final.tolist()),
        final_token_rank=final_rank.tolist(),
        tracked_probs=rounded(tracked_probs.tolist()),
        tracked_ranks=ranks.tolist(),
        log_probs=z - stats.lse[:, None].astype(np.float32),
        lse=stats.lse,
    )


@dataclass
class GridStats:
    """``[L][T]`` nested lists over captured layers x positions."""

    top_ids: list[list[int]]
    top_probs: list[list[float]]
    entropy: list[list[float]]
    kl_to_final: list[list[float]]
    top_k_ids: list[list[list[int]]] | None = None  # [L][T][k] when top_k > 1
    answer_probs: list[list[float]] | None = None  # P(the final layer's top-1 at that position)

    @classmethod
    def joined(cls, pieces: Sequence[GridStats | None]) -> GridStats:
        """The grids of consecutive position ranges (prefill chunks; None: a chunk without grid positions) as one."""
        kept = [g for g in pieces if g is not None]
        if len(kept) == 1:
            return kept[0]

        def cat(name: str) -> Any:
            rows = [getattr(g, name) for g in kept]
            if rows[0] is None:
                return None
            return [list(itertools.chain.from_iterable(r[i] for r in rows)) for i in range(len(rows[0]))]

        return cls(*(cat(f) for f in ("top_ids", "top_probs", "entropy", "kl_to_final", "top_k_ids", "answer_probs")))


def position_grid(
    parts: LensParts,
    hidden: Sequence[Any],
    final_hidden: Any,
    top_k: int = 1,
    budget_bytes: int = GRID_BUDGET_BYTES,
    log_probs_out: tuple[Sequence[int], np.ndarray] | None = None,
    offset: int = 0,
    positions: Sequence[int] | None = None,
    stats_positions: Sequence[int] | None = None,
    one_head_pass: bool = False,
) -> GridStats:
    """Top-k, entropy and KL(final || layer) at every (captured layer, position).

    ``hidden`` holds one ``[T, H]`` array per captured layer; ``final_hidden`` is the last block's
    ``[T, H]``. Works in position chunks, several layers per head matmul, so about
    ``budget_bytes`` of logits (plus the chunk's final distribution) are live at any time.
    ``log_probs_out``: (positions, ``[L, P, V]`` array): also write the log-probabilities at those
    positions (as ``position_log_probs`` does, without a second head pass); they must be among ``positions``.
    ``positions``: compute only these positions of ``hidden`` (ascending; default all): the ``[L][T]`` lists of
    the result then hold one column per position given, each equal to the full grid's column.
    ``offset``: the prompt position of ``hidden``'s first row (a prefill chunk); ``log_probs_out``'s
    positions are prompt positions, and only those inside the chunk are written.
    ``stats_positions``: the positions (of ``positions``, relative to ``hidden`` like them) whose statistics are
    wanted (default all); the others are computed only for ``log_probs_out``, and their columns of the result are 0.
    """
    n_rows = final_hidden.shape[0]
    stats = None if stats_positions is None else {int(p) for p in stats_positions}
    column = (
        {p - offset: j for j, p in enumerate(log_probs_out[0]) if 0 <= p - offset < n_rows} if log_probs_out else {}
    )
    n_layers = len(hidden)
    wanted = list(range(final_hidden.shape[0])) if positions is None else [int(p) for p in positions]
    if column and not set(column) <= set(wanted):
        raise ValueError("log_probs_out positions must be among the grid's positions")
    contiguous = wanted == list(range(wanted[0], wanted[-1] + 1)) if wanted else True
    T = len(wanted)
    V = parts.args.vocab_size
    rows = max(1, budget_bytes // (4 * V))
    pos_chunk = max(1, min(T, rows))
    layer_group = max(1, rows // pos_chunk)
    grid = _GridArrays(n_layers, T, top_k)
    for start in range(0, T, pos_chunk):
        stop = min(T, start + pos_chunk)
        if contiguous:  # a slice (the usual case: every position, or the last ones)
            sel: Any = slice(wanted[start], wanted[stop - 1] + 1)
        else:
            sel = mx.array(wanted[start:stop], dtype=mx.int32)
        c = stop - start
        final, together = _final_rows(parts, final_hidden, hidden, sel, c, one_head_pass and layer_group >= n_layers)
        answer_ids = np.argmax(final.probs, axis=1)  # the model's answer at each position of the chunk
        for g0 in range(0, n_layers, layer_group):
            g1 = min(n_layers, g0 + layer_group)
            z = (
                together
                if together is not None
                else _grid_logits(parts, mx.concatenate([hidden[i][sel] for i in range(g0, g1)], axis=0))
            )
            # Rows whose statistics are wanted (``idx``, chunk-local); the others only feed log_probs_out.
            idx = np.array([k - start for k in range(start, stop) if stats is None or wanted[k] in stats], dtype=int)
            out = slice(start, stop) if len(idx) == c else start + idx
            for j in range(g1 - g0):
                rows_z = z[j * c : (j + 1) * c]
                lse = np.empty(c, dtype=np.float64)
                if len(idx):
                    st = row_stats(rows_z if len(idx) == c else rows_z[idx], top_k, final.subset(idx, c))
                    picked = rows_z[idx, answer_ids[idx]].astype(np.float64)
                    grid.put(g0 + j, out, st, answer_probs=np.exp(picked - st.lse))
                    lse[idx] = st.lse
                if log_probs_out is not None:
                    ks = [k for k in range(start, stop) if wanted[k] in column]
                    rest = [k - start for k in ks if stats is not None and wanted[k] not in stats]
                    if rest:
                        lse[rest] = row_lse(rows_z[rest])
                    _write_log_probs(log_probs_out[1], g0 + j, [column[wanted[k]] for k in ks], rows_z, ks, start, lse)
            del z
        del together
    return grid.stats()


def _final_rows(
    parts: LensParts, final_hidden: Any, hidden: Sequence[Any], sel: Any, c: int, with_layers: bool
) -> tuple[FinalReference, np.ndarray | None]:
    """The final distribution at a grid chunk's ``c`` positions ``sel``; ``with_layers``: every layer's logits there
    too (``[L * c, V]``), from the same head matmul (the final rows first)."""
    if not with_layers:
        return FinalReference.of(_grid_logits(parts, final_hidden[sel])), None
    z = _grid_logits(parts, mx.concatenate([final_hidden[sel]] + [h[sel] for h in hidden], axis=0))
    return FinalReference.of(z[:c]), z[c:]


class _GridArrays:
    """``position_grid``'s statistics as ``[L, T]`` arrays (``[L, T, k]`` for the top ids), filled block by block."""

    def __init__(self, n_layers: int, n_positions: int, top_k: int) -> None:
        self.top_ids = np.zeros((n_layers, n_positions, top_k), dtype=np.int64)
        self.top_probs = np.zeros((n_layers, n_positions), dtype=np.float64)
        self.entropy = np.zeros((n_layers, n_positions), dtype=np.float64)
        self.kl = np.zeros((n_layers, n_positions), dtype=np.float64)
        self.answer = np.zeros((n_layers, n_positions), dtype=np.float64)

    def put(self, layer: int, out: Any, st: RowStats, answer_probs: np.ndarray) -> None:
        """Layer ``layer``'s rows ``st`` at the positions ``out`` (a slice or indices)."""
        self.top_ids[layer, out] = st.top_ids
        self.top_probs[layer, out] = st.top_probs[:, 0]
        self.entropy[layer, out] = st.entropy
        self.kl[layer, out] = st.kl_to_final
        self.answer[layer, out] = answer_probs

    def stats(self) -> GridStats:
        return GridStats(
            top_ids=self.top_ids[:, :, 0].tolist(),
            top_probs=rounded(self.top_probs.tolist()),
            entropy=rounded(self.entropy.tolist()),
            kl_to_final=rounded(self.kl.tolist()),
            top_k_ids=self.top_ids.tolist() if self.top_ids.shape[2] > 1 else None,
            answer_probs=rounded(self.answer.tolist()),
        )


def _write_log_probs(
    out: Any, layer: int, cols: list[int], rows_z: np.ndarray, ks: list[int], start: int, lse: np.ndarray
) -> None:
    """``out[layer, col] = z - lse`` for each chunk row ``k - start`` of ``ks``; consecutive columns from consecutive
    rows are written as one block (one write to a spilled file instead of one per row)."""
    i = 0
    while i < len(ks):
        j = i + 1
        while j < len(ks) and cols[j] == cols[j - 1] + 1 and ks[j] == ks[j - 1] + 1:
            j += 1
        a, b = ks[i] - start, ks[j - 1] - start + 1
        block = rows_z[a:b] - lse[a:b, None].astype(np.float32)
        out[layer, cols[i] : cols[i] + (j - i)] = block
        i = j


def _grid_logits(parts: LensParts, hidden: Any) -> np.ndarray:
    """``head_logits_np`` over at least ``GRID_MIN_ROWS`` rows (padded with copies of the first): BLAS takes
    other kernels, with other rounding, for a matrix of very few rows (OpenBLAS here: 1-3 rows differ in the
    last bit from the same rows among more), and a grid's values must not depend on how many positions it covers."""
    n = hidden.shape[0]
    if n < GRID_MIN_ROWS:
        pad = mx.broadcast_to(hidden[:1], (GRID_MIN_ROWS - n, hidden.shape[1]))
        return head_logits_np(parts, mx.concatenate([hidden, pad], axis=0))[:n]
    return head_logits_np(parts, hidden)


def position_log_probs(
    parts: LensParts,
    hidden: Sequence[Any],
    positions: Sequence[int],
    out: Any,
    budget_bytes: int = GRID_BUDGET_BYTES,
    offset: int = 0,
) -> None:
    """Write the lens log-probabilities at ``positions`` of every captured layer into ``out``.

    ``offset``: the prompt position of ``hidden``'s first row (a prefill chunk): only the positions
    inside the chunk are written (into their columns of ``out``).

    ``hidden`` holds one ``[T, H]`` array per captured layer; ``out`` is ``[L, P, V]`` float32 (often a
    ``change_map.SpilledLogProbs`` on disk). Works in blocks of rows so about ``budget_bytes`` of logits
    are live at once; float32 ``z - logsumexp(z)`` as everywhere in the lens.
    """
    V = parts.args.vocab_size
    n_rows = hidden[0].shape[0] if len(hidden) else 0
    inside = [(j, p - offset) for j, p in enumerate(positions) if 0 <= p - offset < n_rows]
    if not inside:
        return
    first = inside[0][0]  # positions are sorted: the chunk's columns are consecutive
    idx = mx.array([p for _, p in inside], dtype=mx.int32)
    rows = max(1, budget_bytes // (4 * V))
    n_pos = len(inside)
    layer_group = max(1, rows // max(1, n_pos))
    pos_chunk = max(1, min(n_pos, rows))
    for p0 in range(0, n_pos, pos_chunk):
        p1 = min(n_pos, p0 + pos_chunk)
        sel = idx[p0:p1]
        for g0 in range(0, len(hidden), layer_group):
            g1 = min(len(hidden), g0 + layer_group)
            z = head_logits_np(parts, mx.concatenate([hidden[i][sel] for i in range(g0, g1)], axis=0))
            if not np.isfinite(z).all():
                raise NonFiniteError("the model produced NaN or infinite logits: its weights are damaged or overflow")
            lse = row_lse(z).astype(np.float32)
            c = p1 - p0
            for j in range(g1 - g0):
                out[g0 + j, first + p0 : first + p1] = z[j * c : (j + 1) * c] - lse[j * c : (j + 1) * c, None]
            del z
