"""Build mlx-lm models from GGUF files.

* Tensor types MLX reads natively (F32, F16, Q4_0, Q4_1, Q8_0) load with ``mx.load``; quantized ones
  arrive as MLX quantized triples (``weight``/``scales``/``biases``, group size 32).
* Other types (k-quants such as Q4_K, Q6_K) are dequantized to float32 with the ``gguf`` package
  once; the converted weights are cached under the user cache directory, keyed by the file's path,
  size and modification time, and written atomically (a failed conversion never leaves a cache entry).
* llama.cpp stores llama-family Q/K rows permuted for its rotary layout; loading them unchanged
  with ``rope_traditional=True`` reproduces the reference exactly.
* llama.cpp stores Gemma RMSNorm weights with the ``+1`` folded in; mlx-lm's Gemma norms add 1
  themselves, so 1 is subtracted on load.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.disk_cache import cache_lock, cache_root, try_cache_lock, warn_cache_discarded
from ..core.errors import LazarusError, LazarusWarning
from ..core.runtime import import_mlx
from .gguf_metadata import (
    MLX_NATIVE_TENSOR_TYPES,
    GGUFError,
    check_gguf_header,
    check_tensor_extents,
    metadata_of,
    plain,
    read_tensor_types,
)

mx = import_mlx()

CONVERSION_VERSION = 2  # 2: metadata.json records the weights' sha256

# GGML type ids -> names (for describing what ran).
GGML_FILE_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    24: "BF16",
    30: "BF16",
}

_BLOCK_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "ffn_norm": "post_attention_layernorm",
    "post_attention_norm": "post_attention_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
}
_GEMMA_BLOCK_NAMES = {**_BLOCK_NAMES, "ffn_norm": "pre_feedforward_layernorm"}
_TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}


@dataclass
class ArchSpec:
    """How one GGUF ``general.architecture`` maps onto an mlx-lm model."""

    model_type: str
    block_names: dict[str, str]
    extra_config: Callable[[dict[str, Any], str], dict[str, Any]]
    norm_plus_one: bool = False  # llama.cpp folded Gemma's (1 + w) into the stored weight


def _no_extra(meta: dict[str, Any], arch: str) -> dict[str, Any]:
    return {}


def _llama_extra(meta: dict[str, Any], arch: str) -> dict[str, Any]:
    extra: dict[str, Any] = {"rope_traditional": True}
    kind = meta.get(f"{arch}.rope.scaling.type")
    factor = meta.get(f"{arch}.rope.scaling.factor")
    if kind == "linear" and factor:
        extra["rope_scaling"] = {"type": "linear", "factor": float(factor)}
    elif kind not in (None, "none"):
        raise LazarusError(f"GGUF rope scaling {kind!r} is not supported yet")
    return extra


def _gemma3_extra(meta: dict[str, Any], arch: str) -> dict[str, Any]:
    """Gemma 3 settings GGUF does not store, as llama.cpp and transformers fill them in.

    Checked on Gemma 3 270M against the config transformers builds from the same GGUF: head_dim
    256, query_pre_attn_scalar 256, sliding window 512 with every 6th layer global (layers 5, 11,
    17), rope theta 1e6 (global, ``rope.freq_base``) and 10000 (local), no softcapping (Gemma 3 has
    neither attention nor final-logit softcapping; mlx-lm's gemma3_text applies none).
    """
    head_dim = int(meta.get(f"{arch}.attention.key_length", 256))
    blocks = int(meta.get(f"{arch}.block_count", 0))
    # llama.cpp: attention scale 1/sqrt(hidden / heads) for the 27B (62 layers), 1/sqrt(head_dim) otherwise.
    scalar = head_dim
    if blocks == 62:
        scalar = int(meta[f"{arch}.embedding_length"]) // int(meta[f"{arch}.attention.head_count"])
    extra: dict[str, Any] = {
        "head_dim": head_dim,
        "query_pre_attn_scalar": scalar,
        "sliding_window": int(meta.get(f"{arch}.attention.sliding_window", 512)),
        "sliding_window_pattern": 6,  # fixed for Gemma 3 (llama.cpp hardcodes it too)
        "rope_local_base_freq": 10000.0,
    }
    # Gemma 3 4B+ scale the global layers' rope linearly (factor 8); mlx-lm, like transformers,
    # applies rope_scaling to the global layers only.
    kind = meta.get(f"{arch}.rope.scaling.type")
    factor = meta.get(f"{arch}.rope.scaling.factor")
    if kind == "linear" and factor:
        extra["rope_scaling"] = {"type": "linear", "factor": float(factor)}
    elif kind not in (None, "none"):
        raise LazarusError(f"GGUF rope scaling {kind!r} is not supported for gemma3")
    return extra


def _gemma2_extra(meta: dict[str, Any], arch: str) -> dict[str, Any]:
    return {
        "head_dim": meta.get(f"{arch}.attention.key_length", 256),
        "query_pre_attn_scalar": meta.get(f"{arch}.attention.key_length", 256),
        "sliding_window": meta.get(f"{arch}.attention.sliding_window", 4096),
        "attn_logit_softcapping": meta.get(f"{arch}.attn_logit_softcapping", 50.0),
        "final_logit_softcapping": meta.get(f"{arch}.final_logit_softcapping", 30.0),
    }


ARCHES: dict[str, ArchSpec] = {
    "llama": ArchSpec("llama", _BLOCK_NAMES, _llama_extra),
    "qwen2": ArchSpec("qwen2", _BLOCK_NAMES, _no_extra),
    "qwen3": ArchSpec("qwen3", _BLOCK_NAMES, _no_extra),
    "gemma3": ArchSpec("gemma3_text", _GEMMA_BLOCK_NAMES, _gemma3_extra, norm_plus_one=True),
    "gemma2": ArchSpec("gemma2", _GEMMA_BLOCK_NAMES, _gemma2_extra, norm_plus_one=True),
}


@dataclass
class GGUFModel:
    """A GGUF file read into mlx-lm's naming, before a model is built from it."""

    path: Path
    config: dict[str, Any]  # mlx-lm config (model_type + ModelArgs fields)
    weights: dict[str, Any]  # HF/mlx-lm names; quantized linears as weight/scales/biases triples
    file_type: str  # e.g. "Q4_1"
    dequantized_with_gguf: bool  # k-quants were dequantized to float32 by the gguf package
    metadata: dict[str, Any]  # all key/value metadata (the tokenizer is built from it)
    # False: ``metadata`` holds the header's scalars only (no vocabulary): the tokenizer reads the file itself
    metadata_complete: bool = True


def file_key(path: Path) -> str:
    st = path.stat()
    raw = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|v{CONVERSION_VERSION}"
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def _rename(name: str, names: dict[str, str]) -> str:
    """llama.cpp tensor name (``blk.3.attn_q.weight``) -> mlx-lm name."""
    m = re.fullmatch(r"blk\.(\d+)\.(\w+)\.(weight|bias|scales|biases)", name)
    if m:
        layer, base, suffix = m.groups()
        if base not in names:
            raise LazarusError(f"GGUF tensor {name!r} is not supported for this architecture")
        return f"model.layers.{layer}.{names[base]}.{suffix}"
    m = re.fullmatch(r"(\w+)\.(weight|bias|scales|biases)", name)
    if m and m.group(1) in _TOP_NAMES:
        return f"{_TOP_NAMES[m.group(1)]}.{m.group(2)}"
    raise LazarusError(f"GGUF tensor {name!r} is not supported")


def _config_from_metadata(meta: dict[str, Any], n_vocab: int, tied: bool) -> tuple[dict[str, Any], ArchSpec]:
    arch = str(meta.get("general.architecture"))
    spec = ARCHES.get(arch)
    if spec is None:
        supported = ", ".join(sorted(ARCHES))
        raise LazarusError(f"unsupported GGUF architecture {arch!r} (supported: {supported})")

    def get(key: str, default: Any = None) -> Any:
        value = meta.get(f"{arch}.{key}", default)
        if value is None:
            raise LazarusError(f"GGUF metadata lacks {arch}.{key}")
        return value

    hidden = int(get("embedding_length"))
    heads = int(get("attention.head_count"))
    config: dict[str, Any] = {
        "model_type": spec.model_type,
        "hidden_size": hidden,
        "num_hidden_layers": int(get("block_count")),
        "intermediate_size": int(get("feed_forward_length")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(get("attention.head_count_kv", heads)),
        "rms_norm_eps": float(get("attention.layer_norm_rms_epsilon", 1e-6)),
        "vocab_size": n_vocab,
        "rope_theta": float(get("rope.freq_base", 10000.0)),
        "max_position_embeddings": int(get("context_length", 2048)),
        "tie_word_embeddings": tied,
    }
    key_length = meta.get(f"{arch}.attention.key_length")
    if key_length and int(key_length) != hidden // heads:
        config["head_dim"] = int(key_length)
    config.update(spec.extra_config(meta, arch))
    return config, spec


def _fix_weights(weights: dict[str, Any], spec: ArchSpec) -> dict[str, Any]:
    out = {}
    for name, w in weights.items():
        if spec.norm_plus_one and name.endswith("norm.weight"):
            w = w - 1.0
        out[name] = w
    return out


def load_gguf(path: str | Path, cache_dir: Path | None = None) -> GGUFModel:
    """Read a GGUF file into mlx-lm naming (native types with MLX, k-quants through the cache)."""
    path = Path(path)
    if not path.is_file():
        raise LazarusError(f"no such GGUF file: {path}")
    try:
        check_gguf_header(path)
    except GGUFError as exc:
        raise LazarusError(str(exc)) from None
    types = _tensor_types(path)
    if not all(t in MLX_NATIVE_TENSOR_TYPES for t in types.values()):
        from .quantize import FAST_TYPES

        if all(t in FAST_TYPES for t in types.values()):
            return _load_decoded(path)  # decoding is faster than reading and verifying a float32 copy
        return _load_converted(path, cache_dir or cache_root())
    try:
        raw, meta = mx.load(str(path), return_metadata=True)
    except (RuntimeError, ValueError) as exc:
        raise LazarusError(f"cannot read GGUF file {path}: {str(exc).strip()}") from None
    meta = {k: plain(v) for k, v in meta.items()}
    return _assemble(path, raw, meta, dequantized=False)


def _tensor_types(path: Path) -> dict[str, int]:
    """The type of every tensor, from the header: MLX's GGUF reader is used only when it decodes them all correctly.

    ``mx.load`` accepts some k-quants but decodes them wrongly (Q4_K weights off by ~38%), so the
    tensor types are read from the header first (~20 ms for SmolLM2's 49k-token vocabulary).
    """
    try:
        return read_tensor_types(path)
    except GGUFError as exc:
        raise LazarusError(str(exc)) from None


def _assemble(path: Path, raw: dict[str, Any], meta: dict[str, Any], dequantized: bool) -> GGUFModel:
    arch = meta.get("general.architecture")
    spec = ARCHES.get(arch) if isinstance(arch, str) else None
    names = spec.block_names if spec else _BLOCK_NAMES
    weights = {_rename(k, names): v for k, v in raw.items()}
    n_vocab = len(meta.get("tokenizer.ggml.tokens") or []) or weights["model.embed_tokens.weight"].shape[0]
    tied = "lm_head.weight" not in weights
    config, spec = _config_from_metadata(meta, n_vocab, tied)
    weights = _fix_weights(weights, spec)
    file_type = GGML_FILE_TYPES.get(int(meta.get("general.file_type", -1)), "unknown")
    return GGUFModel(path, config, weights, file_type, dequantized, meta)


def _load_converted(path: Path, cache_dir: Path) -> GGUFModel:
    """k-quant weights dequantized with ``gguf``, through the conversion cache.

    An entry (``gguf/<file_key>/``: ``weights.safetensors`` + ``metadata.json``, which records the
    weights' sha256) is verified on every use; a damaged one is discarded with a warning and rebuilt.
    A lock per entry makes concurrent first runs convert once: the others wait and reuse the entry.
    Temporaries of a killed conversion are removed by the next run that converts.
    """
    gguf_dir = cache_dir / "gguf"
    entry = gguf_dir / file_key(path)
    cached = _read_entry(entry, path)
    if cached is not None:
        return cached
    try:
        check_tensor_extents(path)  # a truncated file fails in milliseconds, not after the conversion
    except GGUFError as exc:
        raise LazarusError(str(exc)) from None
    with cache_lock(cache_dir, f"gguf-{entry.name}"):
        cached = _read_entry(entry, path)  # converted by another process while this one waited
        if cached is not None:
            return cached
        _remove_stale_temporaries(gguf_dir, cache_dir, own_key=entry.name)
        raw_np, meta = _dequantize_with_gguf(path)
        raw = {}
        for k in list(raw_np):  # each numpy copy released once MLX holds it: the peak is one float32 copy
            raw[k] = mx.array(raw_np.pop(k))
            mx.eval(raw[k])
        model = _assemble(path, raw, meta, dequantized=True)  # validate before caching
        _store_entry(entry, path, raw, meta)
    return model


def _load_decoded(path: Path) -> GGUFModel:
    """A file whose every tensor type has a fast decoder (``quantize.FAST_TYPES``: Q4_K, Q6_K, Q8_0 with MLX, float
    types), decoded to float32 straight from the file at every load, bit-identical to the ``gguf`` package's
    decoders, without the conversion cache. A 1B Q4_K_M (0.7 GB read) decodes in ~9 s of CPU on this 2-core machine:
    about what reading and verifying its 5 GB float32 copy costs when the page cache holds it (6-9 s; a cold read
    of 5 GB from disk costs more), against ~50 s for the first run's conversion and 5 GB of disk. Only the header's
    scalars are read (the tokenizer comes from its own cache or reads the file itself)."""
    from .gguf_metadata import read_gguf_header

    try:
        header = read_gguf_header(path)
        check_tensor_extents(path, header)
    except GGUFError as exc:
        raise LazarusError(str(exc)) from None
    raw: dict[str, Any] = {}
    try:
        with open(path, "rb") as fh:
            for name, (ttype, dims, offset) in header.tensors.items():
                fh.seek(header.data_start + offset)
                w, finite = _decode_tensor(fh, ttype, tuple(int(d) for d in reversed(dims)))
                if not finite.item():
                    raise LazarusError(f"GGUF file {path} is damaged: tensor {name} holds NaN or infinite values")
                raw[name] = w
    except LazarusError:
        raise
    except Exception as exc:
        raise LazarusError(f"cannot read GGUF file {path}: {str(exc).strip() or type(exc).__name__}") from None
    meta = dict(header.scalars)
    model = _assemble(path, raw, meta, dequantized=True)
    n_tokens = header.array_lengths.get("tokenizer.ggml.tokens")
    if n_tokens:  # as _assemble does from the token list (the scalars hold only its length)
        model.config["vocab_size"] = int(n_tokens)
    model.metadata_complete = False
    return model


# float32 bytes decoded at once: the decoders' temporaries stay small and are reused by MLX's allocator (decoding a
# 1 GB embedding whole faults in several GB of fresh temporaries: ~6x slower).
DECODE_CHUNK_BYTES = 16 * 2**20


def _decode_tensor(fh: Any, ttype: int, shape: tuple[int, ...]) -> tuple[Any, Any]:
    """(float32 tensor of ``shape``, whether it is all finite) of the tensor of type ``ttype`` at ``fh``'s position,
    decoded a slice of rows at a time."""
    import numpy as np

    from .quantize import gguf_rows_to_float32

    rows, cols = int(np.prod(shape[:-1], dtype=np.int64)), shape[-1]
    step = max(1, DECODE_CHUNK_BYTES // (4 * cols))
    if ttype == 0 or step >= rows:  # float32 as stored, or small enough to decode whole
        if ttype == 0:
            w = mx.array(np.fromfile(fh, dtype=np.float32, count=rows * cols).reshape(shape))
        else:
            w = gguf_rows_to_float32(_encoded_rows(fh, ttype, rows, cols), ttype, cols).reshape(shape)
        ok = mx.all(mx.isfinite(w))
        mx.eval(w, ok)
        return w, ok
    data = _encoded_rows(fh, ttype, rows, cols)
    # Decoded slices are written into one buffer (MLX updates a buffer nothing else holds in place), so only the
    # buffer is fresh memory: the slices' temporaries are the same few buffers, reused by MLX's allocator.
    w = mx.zeros((rows, cols), dtype=mx.float32)
    ok = mx.array(True)
    for a in range(0, rows, step):
        part = gguf_rows_to_float32(data[a : a + step], ttype, cols)
        ok = ok & mx.all(mx.isfinite(part))
        w[a : a + step] = part
        mx.eval(w, ok)
    return w.reshape(shape), ok


def _encoded_rows(fh: Any, ttype: int, rows: int, cols: int) -> Any:
    """uint8 ``[rows, bytes per row]`` of the ``ttype``-encoded tensor at ``fh``'s position, as an ``mx.array``."""
    import numpy as np
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    block, size = GGML_QUANT_SIZES[GGMLQuantizationType(ttype)]
    return mx.array(np.fromfile(fh, dtype=np.uint8, count=rows * cols // block * size).reshape(rows, -1))


def _read_entry(entry: Path, path: Path) -> GGUFModel | None:
    weights_file, meta_file = entry / "weights.safetensors", entry / "metadata.json"
    if not (weights_file.is_file() and meta_file.is_file()):
        return None
    try:
        record = json.loads(meta_file.read_text(encoding="utf-8"))
        if record.get("format") != CONVERSION_VERSION:
            raise ValueError("an entry of another format")
        if weights_file.stat().st_size != record["weights_bytes"]:
            raise ValueError("the weights file has the wrong size")
        with open(weights_file, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
        if digest != record["weights_sha256"]:
            raise ValueError("the weights do not match their recorded sha256")
        return _assemble(path, mx.load(str(weights_file)), record["metadata"], dequantized=True)
    except Exception as exc:  # a damaged cache entry is rebuilt, never trusted
        reason = exc.args[0] if isinstance(exc, ValueError) and exc.args else type(exc).__name__
        warn_cache_discarded(entry, str(reason))
        shutil.rmtree(entry, ignore_errors=True)
        return None


def _store_entry(entry: Path, path: Path, raw: dict[str, Any], meta: dict[str, Any]) -> None:
    tmp: Path | None = None
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        size = sum(int(v.nbytes) for v in raw.values())
        free = shutil.disk_usage(entry.parent).free
        if size > free * CACHE_SHARE_OF_FREE_DISK:
            warnings.warn(
                f"{path.name}: its float32 conversion ({size / 2**30:.1f} GB) is not cached: it would take more than "
                f"{CACHE_SHARE_OF_FREE_DISK:.0%} of the {free / 2**30:.1f} GB free in {entry.parent}; the next run "
                "converts it again",
                LazarusWarning,
                stacklevel=3,
            )
            return
        tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", suffix=TEMP_SUFFIX, dir=entry.parent))
        weights_file = tmp / "weights.safetensors"
        mx.save_safetensors(str(weights_file), raw)
        with open(weights_file, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
        record = {
            "format": CONVERSION_VERSION,
            "source": str(path.resolve()),
            "weights_bytes": weights_file.stat().st_size,
            "weights_sha256": digest,
            "metadata": meta,
        }
        (tmp / "metadata.json").write_text(json.dumps(record), encoding="utf-8")
        if entry.exists():
            shutil.rmtree(entry, ignore_errors=True)
        os.replace(tmp, entry)
    except OSError:
        pass  # caching is an optimisation; carry on without it
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


TEMP_SUFFIX = ".tmp"
# A float32 conversion is cached only when it takes at most this share of the disk's free space.
CACHE_SHARE_OF_FREE_DISK = 0.5


def _remove_stale_temporaries(gguf_dir: Path, cache_dir: Path, own_key: str) -> None:
    """Remove the temporary directories of conversions that were killed (``kill -9``, power loss).

    A temporary belongs to the process holding its entry's lock; one whose lock is free is stale.
    """
    if not gguf_dir.is_dir():
        return
    for tmp in gguf_dir.glob(f".*{TEMP_SUFFIX}"):
        key = tmp.name[1:].split(".", 1)[0]
        if key == own_key:  # this process holds the lock: no one else is writing it
            shutil.rmtree(tmp, ignore_errors=True)
            continue
        with try_cache_lock(cache_dir, f"gguf-{key}") as free:
            if free:
                shutil.rmtree(tmp, ignore_errors=True)


def _dequantize_with_gguf(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    import numpy as np
    from gguf import GGUFReader
    from gguf.quants import dequantize

    try:
        reader = GGUFReader(str(path), "r")  # parsed once: Gemma's 262k-token header takes seconds
        meta = metadata_of(reader)
        out = {}
        for t in reader.tensors:
            arr = dequantize(t.data, t.tensor_type)
            # GGUF lists dims fastest-first; numpy wants them slowest-first.
            shape = tuple(int(d) for d in reversed(t.shape.tolist()))
            out[t.name] = np.ascontiguousarray(arr.reshape(shape), dtype=np.float32)
            if not np.isfinite(out[t.name]).all():
                raise LazarusError(f"GGUF file {path} is damaged: tensor {t.name} holds NaN or infinite values")
    except LazarusError:
        raise
    except Exception as exc:
        raise LazarusError(f"cannot read GGUF file {path}: {str(exc).strip() or type(exc).__name__}") from None
    return out, meta


# --- streamed execution: k-quant files kept as GGUF blocks --------------------------------------------


@dataclass
class GGUFBlocks:
    """A 2-D tensor kept as its GGUF bytes (one row of blocks per output row), dequantized on use."""

    data: Any  # mx.array: uint8 [rows, bytes per row] (quantized) or the 16-bit values [rows, cols]
    qtype: int  # GGML type id
    shape: tuple[int, int]  # [rows, cols] in mlx-lm's layout


def load_gguf_blocks(path: str | Path) -> GGUFModel:
    """Read a GGUF file whose types MLX cannot read (k-quants) for streamed execution: every 2-D tensor
    that is not float32 stays as its GGUF blocks (``GGUFBlocks``, later dequantized a slice of rows at a
    time with the ``gguf`` package: the same decoder as the float32 conversion), the rest (norms) is
    dequantized to float32 now. No conversion cache: nothing is dequantized whole.

    Only the header's scalars are decoded (``read_gguf_header``): ``metadata`` holds no vocabulary (the
    tokenizer comes from its own cache, or reads the file itself), and the tensors are read straight from
    the file, so the peak is the blocks themselves.
    """
    import numpy as np
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
    from gguf.quants import dequantize

    from .gguf_metadata import read_gguf_header

    path = Path(path)
    try:
        header = read_gguf_header(path)
        check_tensor_extents(path, header)
        raw: dict[str, Any] = {}
        with open(path, "rb") as fh:
            for name, (ttype, dims, offset) in header.tensors.items():
                qtype = GGMLQuantizationType(ttype)
                block_size, type_size = GGML_QUANT_SIZES[qtype]
                shape = tuple(int(d) for d in reversed(dims))
                n = 1
                for d in shape:
                    n *= d
                fh.seek(header.data_start + offset)
                data = np.frombuffer(fh.read(n // block_size * type_size), dtype=np.uint8)
                if len(shape) == 2 and ttype != 0:
                    rows = data.reshape(shape[0], -1)
                    raw[name] = GGUFBlocks(mx.array(rows), ttype, (shape[0], shape[1]))
                else:
                    arr = np.ascontiguousarray(dequantize(data, qtype).reshape(shape), dtype=np.float32)
                    if not np.isfinite(arr).all():
                        raise LazarusError(f"GGUF file {path} is damaged: tensor {name} holds NaN or infinite values")
                    raw[name] = mx.array(arr)
    except GGUFError as exc:
        raise LazarusError(str(exc)) from None
    except LazarusError:
        raise
    except Exception as exc:
        raise LazarusError(f"cannot read GGUF file {path}: {str(exc).strip() or type(exc).__name__}") from None
    meta = dict(header.scalars)
    arch = meta.get("general.architecture")
    spec = ARCHES.get(arch) if isinstance(arch, str) else None
    names = spec.block_names if spec else _BLOCK_NAMES
    weights = {_rename(k, names): v for k, v in raw.items()}
    n_vocab = header.array_lengths.get("tokenizer.ggml.tokens") or weights["model.embed_tokens.weight"].shape[0]
    config, spec = _config_from_metadata(meta, n_vocab, "lm_head.weight" not in weights)
    dense = _fix_weights({k: v for k, v in weights.items() if not isinstance(v, GGUFBlocks)}, spec)
    weights = {**weights, **dense}
    file_type = GGML_FILE_TYPES.get(int(meta.get("general.file_type", -1)), "unknown")
    return GGUFModel(path, config, weights, file_type, False, meta)
