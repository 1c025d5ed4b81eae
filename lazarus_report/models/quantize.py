"""Affine (MLX / GGUF Q4_1-style) dequantization."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..core.runtime import import_mlx

if TYPE_CHECKING:
    pass
mx = import_mlx()


def dequantize_affine(w: Any, scales: Any, biases: Any, group_size: int, bits: int) -> Any:
    """float32 ``scales * q + biases`` of MLX's affine quantization (``q`` packed low bits first).

    Scales and biases are widened to float32 first: dequantizing in float16 would round every weight
    once more (and move p(" Paris") by 0.003 on SmolLM2). For 2/4/8 bits the codes are unpacked from
    bytes with shifts and masks (small uint8 temporaries), about 3x faster than ``mx.dequantize`` on
    the CPU and bit-identical to it in float32.
    """
    scales, biases = scales.astype(mx.float32), biases.astype(mx.float32)
    if bits not in (2, 4, 8):
        return mx.dequantize(w, scales, biases, group_size=group_size, bits=bits)
    packed = w.view(mx.uint8)  # little-endian: the first code sits in the lowest bits of byte 0
    mask = (1 << bits) - 1
    codes = mx.stack([(packed >> shift) & mask for shift in range(0, 8, bits)], axis=-1) if bits < 8 else packed
    q = codes.reshape(w.shape[0], scales.shape[-1], group_size).astype(mx.float32)
    return (q * scales[..., None] + biases[..., None]).reshape(w.shape[0], -1)


# --- GGUF k-quant blocks decoded with MLX ---------------------------------------------------------

QK_K = 256
# GGML type id -> (bytes per 256-weight super-block, decoder); other types are decoded by the ``gguf`` package.
_Q4_K, _Q6_K = 12, 14


def _q4_k(b: Any) -> Any:
    """Q4_K super-blocks ``[..., 144]`` (fp16 d, fp16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles)
    -> float32 ``[..., 8, 32]``: ``d * sc * q - dmin * m`` per 32-weight sub-block (ggml's order of operations)."""
    d = b[..., 0:2].view(mx.float16).astype(mx.float32)
    dmin = b[..., 2:4].view(mx.float16).astype(mx.float32)
    s0, s1, s2 = b[..., 4:8], b[..., 8:12], b[..., 12:16]
    sc = mx.concatenate([s0 & 0x3F, (s2 & 0x0F) | ((s0 >> 2) & 0x30)], axis=-1).astype(mx.float32)
    mn = mx.concatenate([s1 & 0x3F, (s2 >> 4) | ((s1 >> 2) & 0x30)], axis=-1).astype(mx.float32)
    qs = b[..., 16:].reshape(*b.shape[:-1], 4, 1, 32)  # sub-block 2g: low nibbles of 32 bytes, 2g + 1: high
    q = mx.concatenate([qs & 0x0F, qs >> 4], axis=-2).reshape(*b.shape[:-1], 8, 32).astype(mx.float32)
    return (d * sc)[..., None] * q - (dmin * mn)[..., None]


def _q6_k(b: Any) -> Any:
    """Q6_K super-blocks ``[..., 210]`` (128 bytes of low nibbles, 64 of high 2-bit pairs, 16 int8 scales, fp16 d)
    -> float32 ``[..., 16, 16]``: ``d * scale * (q - 32)`` per 16-weight sub-block."""
    lead = b.shape[:-1]
    ql = b[..., 0:128].reshape(*lead, 2, 1, 64)
    qh = b[..., 128:192].reshape(*lead, 2, 1, 32)
    scales = b[..., 192:208].view(mx.int8).astype(mx.float32)
    d = b[..., 208:210].view(mx.float16).astype(mx.float32)
    low = mx.concatenate([ql & 0x0F, ql >> 4], axis=-2).reshape(*lead, 2, 4, 32)
    high = mx.concatenate([qh & 3, (qh >> 2) & 3, (qh >> 4) & 3, (qh >> 6) & 3], axis=-2)
    q = ((low | (high << 4)).astype(mx.int8) - 32).reshape(*lead, 16, 16).astype(mx.float32)
    return (d * scales).reshape(*lead, 16, 1) * q


def _q8_0(b: Any) -> Any:
    """Q8_0 blocks ``[..., 34]`` (fp16 d, 32 int8 codes) -> float32 ``[..., 32]``: ``d * q`` (one rounding, as ggml)."""
    d = b[..., 0:2].view(mx.float16).astype(mx.float32)
    return b[..., 2:].view(mx.int8).astype(mx.float32) * d


_Q8_0 = 8
# GGML type id -> (block bytes, weights per block, decoder).
_MLX_DECODERS = {_Q4_K: (144, QK_K, _q4_k), _Q6_K: (210, QK_K, _q6_k), _Q8_0: (34, 32, _q8_0)}
# Types whose whole-file float32 conversion is fast (MLX decoders, or no decoding): files made only of these are
# decoded straight from the GGUF at every load rather than through the float32 conversion cache (``gguf.py``).
FAST_TYPES = frozenset({0, 1, *_MLX_DECODERS})


def gguf_rows_to_float32(raw: Any, qtype: int, cols: int) -> Any:
    """float32 ``[rows, cols]`` of GGUF-encoded rows ``raw`` (uint8 ``[rows, bytes per row]``, an ``mx.array``).

    Q4_K, Q6_K and Q8_0 are decoded with MLX (bit-identical to the ``gguf`` package's numpy decoders, which are a port
    of ggml's ``dequantize_row_*``: the same float32 operations in the same order; 2-8x faster, and no copy to
    numpy and back); other types with the ``gguf`` package.
    """
    if qtype in _MLX_DECODERS:
        size, block, decode = _MLX_DECODERS[qtype]
        rows = raw.shape[0]
        return decode(raw.reshape(rows, cols // block, size)).reshape(rows, cols)
    import numpy as np
    from gguf.constants import GGMLQuantizationType
    from gguf.quants import dequantize

    data = np.asarray(raw)
    decoded = dequantize(data, GGMLQuantizationType(qtype))
    return mx.array(np.ascontiguousarray(decoded.reshape(data.shape[0], cols)).astype(np.float32, copy=False))
