"""Drift on neutral text: two models read the same token sequences; at every captured layer and position, the
Jensen-Shannon divergence between their lens distributions, and their top-1s.

Model 1 never keeps distributions: ``read_base`` runs it over every sequence and spills what the lens reads
(each captured layer's residual stream after the lens's translator, ``[L, n, H]`` float32 per sequence, 283 MB
for 4,096 tokens of SmolLM2) to a file, with a digest per (sequence, layer) and a digest of its head. Model 1's
head (final norm, unembedding, post-head transform) stays; its blocks go. ``read_tuned`` then runs model 2 and,
layer by layer, puts both heads over the two residual streams in blocks of ``HEAD_ROWS`` positions: at most a
few ``[rows, V]`` arrays are live. Where model 2's lens input is bit for bit model 1's (the layers under an
adapter's first block, every layer of an adapter whose B matrices are zero) and the heads are the same, the
distributions are equal: JS is exactly 0 and no head runs.

Shapes: L captured layers, N positions (all sequences' positions 1.., concatenated), H hidden, V vocabulary.
MLX runs here (through ``lens``); nothing here formats text.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import LazarusError
from ..lens.readout import NonFiniteError, forward_chunks, mx
from ..lens.stats import LN2
from .spill import spill_errors

ACT_DIFF_POSITIONS = 8  # the activation-difference lens averages positions 1..8 of every sequence
ACT_DIFF_TOP = 10
HEAD_ROWS = 128  # positions per head matmul ([128, 49152] float32: 25 MB per model)
JS_BLOCK = 8  # rows per numpy statistics block (cache-sized)
_TINY32 = np.float32(np.finfo(np.float32).tiny)


class HiddenSpill:
    """Per sequence, ``[L, n, H]`` float32 written once in order and read back whole (plain file I/O)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.blocks: list[tuple[int, tuple[int, int, int]]] = []  # (offset, shape) per sequence
        with spill_errors(path):
            self._fh = open(path, "wb")  # noqa: SIM115 (closed by ``done``)

    def append(self, block: np.ndarray) -> None:
        with spill_errors(self.path):
            self.blocks.append((self._fh.tell(), block.shape))
            self._fh.write(np.ascontiguousarray(block, dtype="<f4").tobytes())

    def done(self) -> None:
        with spill_errors(self.path):
            self._fh.close()

    def read(self, k: int) -> np.ndarray:
        offset, shape = self.blocks[k]
        out = np.empty(shape, dtype="<f4")
        with open(self.path, "rb") as fh:
            fh.seek(offset)
            if fh.readinto(out.data.cast("B")) != out.nbytes:
                raise OSError(f"{self.path} is shorter than expected")
        return out


@dataclass
class BasePass:
    """What model 1 leaves for model 2: its lens inputs on disk, their digests, its head."""

    spill: HiddenSpill
    digests: dict[tuple[int, int], bytes]  # (sequence, captured-layer index) -> digest of the lens input
    head: Callable[[Any], Any]  # model 1's head: [n, H] residual stream -> [n, V] logits (MLX)
    head_digest: bytes
    fingerprint: str  # model 1's tokenizer
    layers: list[int]
    # Base vs base + adapter applied in place: the leading blocks the adapter leaves alone (``shared``: their
    # modules, and the embedding) and block ``shared - 1``'s raw output per sequence, so model 2 does not run them.
    shared: int = 0
    shared_modules: list[Any] = field(default_factory=list)
    raw: HiddenSpill | None = None


@dataclass
class DriftArrays:
    """Per captured layer and position: the JS divergence and whether the top-1s differ; at the last layer the
    top-1s and the probabilities the promoted-token counts need."""

    js: np.ndarray  # [L, N] float64, nats
    changed: np.ndarray  # [L, N] bool
    identical: list[bool]  # per layer: equal lens inputs and heads at every position
    base_top: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [N] final layer
    tuned_top: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    base_top_prob: np.ndarray = field(default_factory=lambda: np.zeros(0))  # p_base(base top-1)
    tuned_top_prob: np.ndarray = field(default_factory=lambda: np.zeros(0))  # p_tuned(tuned top-1)
    base_prob_of_tuned: np.ndarray = field(default_factory=lambda: np.zeros(0))  # p_base(tuned top-1)
    # The activation-difference lens: per layer, the mean of (tuned - base) lens inputs over the first
    # ``ACT_DIFF_POSITIONS`` positions of every sequence, its L2 norm, and its top tokens through model 2's head.
    diff_norm: list[float] = field(default_factory=list)
    diff_top: list[list[tuple[int, float]]] = field(default_factory=list)  # [(token id, probability)] per layer


def head_only(parts: Any) -> Callable[[Any], Any]:
    """``parts.logits`` as a closure over the final norm, the head and the post-head transform only, so the
    model's blocks can be released while the head stays (families with a post-head transform keep the model)."""
    norm, head, post, model = parts.norm, parts.head, parts.family.post_head, parts.model
    if post is None:
        return lambda hidden: head(norm(hidden)).astype(mx.float32)
    return lambda hidden: post(model, head(norm(hidden))).astype(mx.float32)


def head_digest(parts: Any) -> bytes:
    """A digest of the head's logits on a fixed pseudo-random probe: equal digests, the same head."""
    probe = np.random.default_rng(20).standard_normal((8, int(parts.args.hidden_size))).astype(np.float32)
    z = head_only(parts)(mx.array(probe))
    mx.eval(z)
    return hashlib.blake2b(np.asarray(z).tobytes(), digest_size=16).digest()


def _lensed(
    loaded: Any,
    lens: Any,
    layers: list[int],
    seq: Sequence[int],
    factor: float | None,
    raw: HiddenSpill | None = None,
    raw_layer: int = -1,
) -> Any:
    """``[L, n, H]`` (MLX, float32): each captured layer's residual stream at positions 1.. of ``seq``, through
    the lens's translator (the last layer is never mapped). ``raw``: also append block ``raw_layer``'s output
    (all positions, untranslated) there."""
    capture = sorted(set(layers) | ({raw_layer} if raw is not None else set()))
    (_, sink), *_ = list(forward_chunks(loaded.parts, seq, capture, factor, chunk=len(seq)))
    out = mx.stack([lens.translate(i, sink[i][0, 1:]) for i in layers]).astype(mx.float32)
    mx.eval(out)
    if raw is not None:
        raw.append(np.asarray(sink[raw_layer].astype(mx.float32)))
    return out


def _lensed_from(
    loaded: Any, lens: Any, layers: list[int], seq: Sequence[int], factor: float | None, shared: int, start: Any
) -> Any:
    """``_lensed`` at the captured layers from block ``shared`` on, the blocks before it not run: each returns
    ``start`` (model 1's block ``shared - 1`` output, which these blocks, shared with model 1, would compute)."""
    from ..models.hooks import capturing, embedding_scaled, swapped, swapped_class

    parts = loaded.parts
    value = mx.array(start)
    swaps = ((b, swapped_class(type(b), "Shared", lambda self, *a, **k: value)) for b in parts.layers[:shared])
    with swapped(swaps), capturing(parts, layers) as sink, embedding_scaled(parts, factor):
        parts.backbone(mx.array([list(seq)], dtype=mx.int32))
    out = mx.stack([lens.translate(i, sink[i][0, 1:]) for i in layers]).astype(mx.float32)
    mx.eval(out)
    return out


def _digest(rows: np.ndarray) -> bytes:
    return hashlib.blake2b(rows.tobytes(), digest_size=16).digest()


def read_base(
    loaded: Any,
    lens: Any,
    layers: list[int],
    seqs: list[list[int]],
    directory: str,
    factor: float | None,
    progress: Callable[[int], None] | None = None,
    shared: int = 0,
) -> BasePass:
    """Model 1 over every sequence: its lens inputs spilled to ``directory``, digests, its head. ``shared``: the
    number of leading blocks model 2 will share with model 1 (base + an adapter applied in place from that block);
    block ``shared - 1``'s raw output is kept too, so model 2 can start from it (``read_tuned`` checks the sharing)."""
    spill = HiddenSpill(Path(directory) / f"drift-base-{os.getpid()}.f32")
    raw = HiddenSpill(Path(directory) / f"drift-shared-{os.getpid()}.f32") if shared > 0 else None
    digests: dict[tuple[int, int], bytes] = {}
    for k, seq in enumerate(seqs):
        block = np.asarray(_lensed(loaded, lens, layers, seq, factor, raw, shared - 1))
        for j in range(len(layers)):
            digests[(k, j)] = _digest(block[j])
        spill.append(block)
        if progress is not None:
            progress(len(seq) - 1)
    spill.done()
    if raw is not None:
        raw.done()
    return BasePass(
        shared=shared,
        shared_modules=[loaded.parts.backbone.embed_tokens, *loaded.parts.layers[:shared]] if shared else [],
        raw=raw,
        spill=spill,
        digests=digests,
        head=head_only(loaded.parts),
        head_digest=head_digest(loaded.parts),
        fingerprint=loaded.tokenizer.fingerprint(),
        layers=list(layers),
    )


def js_rows(z1: np.ndarray, z2: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each row of two float32 logit blocks ``[n, V]``: JS(softmax z1, softmax z2) in nats, both top-1 ids and
    both log-sum-exps (float64).

    JS = 1/2 sum_v [p log(2p/(p+q)) + q log(2q/(p+q))]: each entry's term is >= 0 (no cancellation across the
    vocabulary), computed in float32 and summed pairwise (numpy's float32 sum along a row), within about 1e-6 of
    the float64 value relative to it (2e-7 nats on SmolLM2 logits). Rows with equal logits give exactly 0.
    Works on ``JS_BLOCK`` rows at a time (cache-sized buffers), ~20 passes over them.
    """
    n, v = z1.shape
    js = np.empty(n, dtype=np.float64)
    lse1, lse2 = np.empty(n, dtype=np.float64), np.empty(n, dtype=np.float64)
    rows = min(n, JS_BLOCK)
    p, q, lp, lq = (np.empty((rows, v), dtype=np.float32) for _ in range(4))
    for a in range(0, n, JS_BLOCK):
        b = min(n, a + JS_BLOCK)
        c = b - a
        lse1[a:b] = _log_probs(z1[a:b], lp[:c], p[:c])
        lse2[a:b] = _log_probs(z2[a:b], lq[:c], q[:c])
        m = np.add(p[:c], q[:c])  # log(p + q) = log m + ln 2 (the ln 2 is in lp and lq)
        np.maximum(m, _TINY32, out=m)  # both underflow: 0 * finite, not 0 * inf
        np.log(m, out=m)
        lp[:c] -= m
        lq[:c] -= m
        lp[:c] *= p[:c]
        lq[:c] *= q[:c]
        lp[:c] += lq[:c]
        js[a:b] = 0.5 * lp[:c].sum(axis=1)
    js[(z1 == z2).all(axis=1)] = 0.0
    return np.clip(js, 0.0, LN2), z1.argmax(axis=1), z2.argmax(axis=1), lse1, lse2


def _log_probs(z: np.ndarray, logp: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``p = softmax(z)`` and ``logp = log p + ln 2`` into the given buffers; returns the rows' lse (float64)."""
    m = z.max(axis=1, keepdims=True)
    np.subtract(z, m, out=logp)
    np.exp(logp, out=p)
    total = p.sum(axis=1, keepdims=True)
    p *= 1 / total
    logp -= np.log(total) - np.float32(LN2)
    return m[:, 0].astype(np.float64) + np.log(total[:, 0].astype(np.float64))


def _logits(head: Callable[[Any], Any], rows: Any) -> np.ndarray:
    z = head(rows)
    mx.eval(z)
    out = np.asarray(z)
    if not np.isfinite(out).all():
        raise NonFiniteError("a model produced NaN or infinite logits: its weights are damaged or overflow")
    return out


def _shares_blocks(parts: Any, base: BasePass) -> bool:
    """Model 2 runs model 1's own embedding and first ``base.shared`` blocks (the same module objects: the adapter
    was applied in place), none of them adapted: their outputs are model 1's, bit for bit."""
    mine = [parts.backbone.embed_tokens, *parts.layers[: base.shared]]
    if (
        base.shared == 0
        or len(mine) != len(base.shared_modules)
        or any(a is not b for a, b in zip(mine, base.shared_modules))
    ):
        return False
    return not any("lora" in type(m).__name__.lower() for module in mine for m in module.modules())


def _both_logits(head1: Any, head2: Any, same_head: bool, h1: Any, h2: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both models' logits over their rows: one head matmul over both blocks when the heads are the same."""
    if not same_head:
        return _logits(head1, h1), _logits(head2, h2)
    z = _logits(head2, mx.concatenate([h1, h2], axis=0))
    return z[: h1.shape[0]], z[h1.shape[0] :]


def read_tuned(
    loaded: Any,
    lens: Any,
    base: BasePass,
    seqs: list[list[int]],
    factor: float | None,
    progress: Callable[[int], None] | None = None,
) -> DriftArrays:
    """Model 2 over the same sequences, compared with ``base`` at every captured layer and position."""
    if loaded.tokenizer.fingerprint() != base.fingerprint:
        raise LazarusError("drift needs the same tokenizer on both sides (the models read the same token ids)")
    layers = base.layers
    same_head = head_digest(loaded.parts) == base.head_digest
    head2 = head_only(loaded.parts)
    total = sum(len(s) - 1 for s in seqs)
    arrays = DriftArrays(
        js=np.zeros((len(layers), total)), changed=np.zeros((len(layers), total), dtype=bool), identical=[]
    )
    final = _FinalLayer(total)
    identical = [True] * len(layers)
    diff = np.zeros((len(layers), int(loaded.parts.args.hidden_size)), dtype=np.float64)
    diff_count = 0
    shared = base.shared if same_head and _shares_blocks(loaded.parts, base) else 0
    skip = len([i for i in layers if i < shared])  # captured layers model 2 does not run: model 1's, exactly
    at = 0
    for k, seq in enumerate(seqs):
        if skip:
            assert base.raw is not None
            tuned = _lensed_from(loaded, lens, layers[skip:], seq, factor, shared, base.raw.read(k))
        else:
            tuned = _lensed(loaded, lens, layers, seq, factor)
        tuned_np = np.asarray(tuned)
        block = base.spill.read(k)[skip:]
        n = len(seq) - 1
        first = min(n, ACT_DIFF_POSITIONS)
        diff[skip:] += (tuned_np[:, :first].astype(np.float64) - block[:, :first]).sum(axis=1)
        diff_count += first
        for j in range(skip, len(layers)):
            last = j == len(layers) - 1
            if same_head and _digest(tuned_np[j - skip]) == base.digests[(k, j)]:
                if last:  # equal distributions; the final top-1s are still needed for the positions' listing
                    for a in range(0, n, HEAD_ROWS):
                        final.same(at + a, _logits(head2, tuned[j - skip, a : min(n, a + HEAD_ROWS)]))
                continue
            identical[j] = False
            for a in range(0, n, HEAD_ROWS):
                b = min(n, a + HEAD_ROWS)
                z1, z2 = _both_logits(base.head, head2, same_head, mx.array(block[j - skip, a:b]), tuned[j - skip, a:b])
                js, t1, t2, lse1, lse2 = js_rows(z1, z2)
                arrays.js[j, at + a : at + b] = js
                arrays.changed[j, at + a : at + b] = t1 != t2
                if last:
                    final.put(at + a, z1, z2, t1, t2, lse1, lse2)
        at += n
        if progress is not None:
            progress(n)
    arrays.identical = identical
    arrays.diff_norm, arrays.diff_top = _difference_lens(head2, diff / max(1, diff_count), identical)
    arrays.base_top, arrays.tuned_top = final.base_top, final.tuned_top
    arrays.base_top_prob, arrays.tuned_top_prob = final.base_top_prob, final.tuned_top_prob
    arrays.base_prob_of_tuned = final.base_prob_of_tuned
    return arrays


def _difference_lens(
    head: Callable[[Any], Any], diff: np.ndarray, identical: list[bool]
) -> tuple[list[float], list[list[tuple[int, float]]]]:
    """Per layer: the norm of the mean activation difference and its top tokens read through the head (softmax of
    the head's logits of the difference vector); none where the layer is identical (the difference is 0)."""
    norms = [float(np.linalg.norm(d)) for d in diff]
    rows = [j for j, same in enumerate(identical) if not same]
    tops: list[list[tuple[int, float]]] = [[] for _ in identical]
    if rows:
        z = _logits(head, mx.array(diff[rows].astype(np.float32)))
        for r, j in enumerate(rows):
            zr = z[r].astype(np.float64)
            p = np.exp(zr - zr.max())
            p /= p.sum()
            ids = np.argsort(-zr, kind="stable")[:ACT_DIFF_TOP]
            tops[j] = [(int(i), float(p[i])) for i in ids]
    return norms, tops


class _FinalLayer:
    """The last layer's top-1s and probabilities, filled block by block."""

    def __init__(self, total: int) -> None:
        self.base_top = np.zeros(total, dtype=np.int64)
        self.tuned_top = np.zeros(total, dtype=np.int64)
        self.base_top_prob = np.zeros(total)
        self.tuned_top_prob = np.zeros(total)
        self.base_prob_of_tuned = np.zeros(total)

    def put(
        self, at: int, z1: np.ndarray, z2: np.ndarray, t1: np.ndarray, t2: np.ndarray, lse1: Any, lse2: Any
    ) -> None:
        rows = np.arange(len(t1))
        s = slice(at, at + len(t1))
        self.base_top[s], self.tuned_top[s] = t1, t2
        self.base_top_prob[s] = np.exp(z1[rows, t1].astype(np.float64) - lse1)
        self.tuned_top_prob[s] = np.exp(z2[rows, t2].astype(np.float64) - lse2)
        self.base_prob_of_tuned[s] = np.exp(z1[rows, t2].astype(np.float64) - lse1)

    def same(self, at: int, z: np.ndarray) -> None:
        """Both models' final distributions are ``softmax(z)``."""
        top = z.argmax(axis=1)
        m = z.max(axis=1).astype(np.float64)
        lse = m + np.log(np.exp((z - z.max(axis=1, keepdims=True)).astype(np.float64)).sum(axis=1))
        p = np.exp(z[np.arange(len(top)), top].astype(np.float64) - lse)
        s = slice(at, at + len(top))
        self.base_top[s] = self.tuned_top[s] = top
        self.base_top_prob[s] = self.tuned_top_prob[s] = self.base_prob_of_tuned[s] = p
