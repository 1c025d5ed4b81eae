"""Models bigger than memory: keep weights as stored, dequantize each block's weights just before it runs.

The float32 path (``loader``) dequantizes every weight once at load: SmolLM2-135M's 98 MB of Q4_1
becomes 513 MB of float32, a 7B model ~28 GB. Under a memory budget (``--max-memory``, or the
machine's available memory under ``--precision auto``) that does not hold the float32 weights, the
loader keeps the quantized (or 16-bit) weights as stored and turns every weight-holding module into
a *streamed* one (:func:`stream_model`): when it runs it dequantizes its weights to float32 with the
same code the float32 path uses, runs the same float32 matmul (BLAS on the CPU), evaluates the
output and lets the float32 copy go. Large matrices (the head, the embedding used as the tied head)
are dequantized in slices of output rows (vocabulary chunks) of at most ``CHUNK_BYTES``. MLX's
allocator hands the freed float32 buffers to the next block (same sizes), so the peak is about the
stored weights + one matrix in float32 + activations.

Results equal the float32 path's: block matmuls see bit-identical float32 weights; the chunked head
computes each logit as the same dot product (equal within float rounding of the matmul).

Budgets (:func:`plan_execution`) are in bytes; sizes parse with :func:`parse_size` ("250MB", "2GB").
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.errors import LazarusError
from ..core.runtime import import_mlx

mx = import_mlx()
from mlx import nn  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402

# Largest float32 slice of one matrix materialised at once (rows of the head = vocabulary chunks).
CHUNK_BYTES = 16 * 2**20
# What a lens run needs besides the weights (activations, the grid's logits blocks, buffers).
WORKING_BYTES = 64 * 2**20

_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_size(text: str | int, option: str = "--max-memory") -> int:
    """Bytes from "250MB", "2GB", "1.5G", "512MiB", "100000000" (K/M/G/T are powers of 1024)."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(?:i?b)?\s*", str(text), flags=re.IGNORECASE)
        if m is None:
            raise LazarusError(f"{option} {text!r} is not a size: use a number with a unit, e.g. 250MB or 2GB")
        value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if value <= 0:
        raise LazarusError(f"{option} must be a positive size (got {text!r})")
    return value


def format_size(n: int, rounding: str = "nearest") -> str:
    """Bytes for messages: GB (2**30, one decimal), MB (2**20), KB (2**10) or bytes, the largest unit the
    size reaches. ``rounding``: "nearest", "up" (a size the user must give at least: never shown smaller)
    or "down" (a size that falls short: never shown larger)."""
    import math

    steps: dict[str, Callable[[float], int]] = {"nearest": round, "up": math.ceil, "down": math.floor}
    step = steps[rounding]
    if n >= 2**30:
        return f"{step(n / 2**30 * 10) / 10:.1f} GB"
    for unit, scale in (("MB", 2**20), ("KB", 2**10)):
        if n >= scale:
            return f"{step(n / scale)} {unit}"
    return f"{n} B"


def available_memory() -> int | None:
    """Memory the system can give this process now (Linux ``MemAvailable``; else physical memory)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


# --- sizes of a model's weights ----------------------------------------------------------------


@dataclass(frozen=True)
class WeightSizes:
    """Bytes of a built model's weights: as stored, all in float32, the largest block in float32."""

    stored: int
    float32: int
    largest_block_float32: int
    largest_matrix_float32: int = CHUNK_BYTES  # outside the blocks: the head, the embedding

    @property
    def head_chunk(self) -> int:
        """Bytes of the largest float32 slice of a matrix outside the blocks (a vocabulary chunk)."""
        return min(CHUNK_BYTES, self.largest_matrix_float32)

    def needs(self, execution: str) -> int:
        """Bytes the model needs to run a lens under ``execution``."""
        if execution == "float32":
            return self.float32 + WORKING_BYTES
        if execution == "streamed":
            return self.stored + self.largest_block_float32 + self.head_chunk + WORKING_BYTES
        return self.stored + WORKING_BYTES


def _float32_bytes(module: Any) -> tuple[int, int]:
    """(bytes as held, bytes once every weight is float32) of one module's parameters."""
    held, f32 = 0, 0
    for _, module_ in module.named_modules():
        own = {k: v for k, v in module_.items() if isinstance(v, mx.array)}
        for key, v in own.items():
            held += v.nbytes
            if isinstance(module_, (nn.QuantizedLinear, nn.QuantizedEmbedding)):
                if key == "weight":
                    f32 += 4 * v.shape[0] * v.shape[-1] * 32 // module_.bits
                elif key in ("scales", "biases"):
                    continue
                else:
                    f32 += 4 * v.size
            else:
                f32 += 4 * v.size
    return held, f32


def weight_sizes(model: Any, layers: list[Any]) -> WeightSizes:
    """Sizes of ``model``'s weights; ``layers``: its transformer blocks."""
    stored, f32 = _float32_bytes(model)
    largest = max((_float32_bytes(block)[1] for block in layers), default=0)
    in_blocks = {id(m) for block in layers for _, m in block.named_modules()}
    matrices = [
        _float32_bytes(m)[1]
        for _, m in model.named_modules()
        if id(m) not in in_blocks
        and isinstance(m, (nn.Linear, nn.Embedding, nn.QuantizedLinear, nn.QuantizedEmbedding))
    ]
    return WeightSizes(stored, f32, largest, max(matrices, default=0))


# --- choosing the path ---------------------------------------------------------------------------


def plan_execution(
    wants_float32: bool, sizes: WeightSizes, budget: int | None, budget_from_user: bool, model_id: str
) -> str:
    """ "float32", "streamed" or "native" for a model of ``sizes`` under ``budget`` bytes.

    ``wants_float32``: the precision asks for float32 arithmetic (the CPU path). ``budget_from_user``:
    the budget is ``--max-memory`` (too small = an error) rather than the machine's available memory
    (too small = the leanest path, and the operating system copes).
    """
    if not wants_float32:
        path = "native"
    elif budget is None or sizes.needs("float32") <= budget:
        path = "float32"
    elif sizes.stored < sizes.float32:
        path = "streamed"
    else:
        path = "float32"  # stored in float32 already: streaming would save nothing
    if budget is not None and budget_from_user and sizes.needs(path) > budget:
        raise LazarusError(
            f"--max-memory {format_size(budget, 'down')} is too small for {model_id}: its weights take "
            f"{format_size(sizes.stored)} as stored, and running it needs about "
            f"{format_size(sizes.needs(path), 'up')} ({_what(path, sizes)}); "
            f"give at least {format_size(sizes.needs(path), 'up')}"
        )
    return path


def _what(path: str, sizes: WeightSizes) -> str:
    if path == "streamed":
        return (
            f"stored weights + the largest block in float32 ({format_size(sizes.largest_block_float32)}) "
            f"+ {format_size(sizes.head_chunk)} of head chunk + {format_size(WORKING_BYTES)} of working memory"
        )
    if path == "float32":
        return f"weights in float32 + {format_size(WORKING_BYTES)} of working memory"
    return f"stored weights + {format_size(WORKING_BYTES)} of working memory"


# Bytes per weight once MLX holds a tensor of this GGML type (quantized as MLX affine triples: codes +
# float16 scale and bias per 32 weights); types MLX cannot read are dequantized to float32 at load.
_MLX_BYTES_PER_WEIGHT = {0: 4.0, 1: 2.0, 2: 0.5 + 4 / 32, 3: 0.5 + 4 / 32, 8: 1.0 + 4 / 32}


def sizes_from_gguf_header(path: Any) -> WeightSizes:
    """:class:`WeightSizes` of a GGUF file from its header alone (milliseconds, no weights read).

    ``stored``: as MLX holds the weights of a file it reads itself (MLX quantized triples), else as GGUF
    blocks (the streamed path of k-quant files; their float32 path converts the whole file)."""
    from .gguf_metadata import MLX_NATIVE_TENSOR_TYPES, read_gguf_header

    tensors = read_gguf_header(path).tensors
    native = all(t in MLX_NATIVE_TENSOR_TYPES for t, _, _ in tensors.values())
    stored, f32, outside = 0, 0, 0
    blocks: dict[str, int] = {}
    for name, (ttype, dims, _) in tensors.items():
        n = 1
        for d in dims:
            n *= d
        if native:
            stored += int(n * _MLX_BYTES_PER_WEIGHT[ttype])
        elif len(dims) == 2 and ttype != 0:  # kept as GGUF blocks when streamed (gguf.load_gguf_blocks)
            from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

            block_size, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ttype)]
            stored += n // block_size * type_size
        else:
            stored += 4 * n
        f32 += 4 * n
        m = re.match(r"blk\.(\d+)\.", name)
        if m:
            blocks[m.group(1)] = blocks.get(m.group(1), 0) + 4 * n
        else:
            outside = max(outside, 4 * n)
    return WeightSizes(stored, f32, max(blocks.values(), default=0), outside)


def check_fits_before_load(resolved: Any, budget: int, wants_float32: bool, model_id: str) -> None:
    """Fail before reading any weight when ``budget`` cannot hold the model however it runs: from a
    GGUF header (exact sizes), or a model directory's weight files (a lower bound: quantized weights
    stay as large as stored)."""
    from pathlib import Path

    if resolved.kind == "gguf":
        from .gguf_metadata import GGUFError

        try:
            sizes = sizes_from_gguf_header(resolved.path)
        except GGUFError:
            return  # the loader reports the damaged file
        plan_execution(wants_float32, sizes, budget, True, model_id)
        return
    p = Path(resolved.path)
    total = sum(f.stat().st_size for f in p.glob("*.safetensors") if f.is_file()) if p.is_dir() else 0
    if total and total + WORKING_BYTES > budget:
        raise LazarusError(
            f"--max-memory {format_size(budget, 'down')} is too small for {model_id}: its weight files alone take "
            f"{format_size(total)}; give at least {format_size(total + WORKING_BYTES, 'up')}"
        )


# --- streamed modules ------------------------------------------------------------------------------


def _rows_per_chunk(in_features: int) -> int:
    return max(1, CHUNK_BYTES // (4 * in_features))


def _linear(x: Any, w: Any, bias: Any) -> Any:
    """``nn.Linear``'s arithmetic on a float32 weight."""
    return mx.addmm(bias, x, w.T) if bias is not None else x @ w.T


def _chunked(x: Any, n_out: int, in_features: int, dense: Any, bias: Any) -> Any:
    """``x @ W.T (+ bias)`` with ``W``'s float32 rows materialised ``dense(a, b)`` a slice at a time."""
    rows = _rows_per_chunk(in_features)
    if n_out <= rows:
        y = _linear(x, dense(0, n_out), bias)
        mx.eval(y)
        return y
    parts = []
    for a in range(0, n_out, rows):
        b = min(n_out, a + rows)
        y = _linear(x, dense(a, b), bias[a:b] if bias is not None else None)
        mx.eval(y)  # the slice's float32 weights are released before the next slice is made
        parts.append(y)
    return mx.concatenate(parts, axis=-1)


class _AffineRows:
    """float32 rows ``[a, b)`` of a quantized matrix, with the dequantization its float32 path uses."""

    gguf_dequantization = True
    if TYPE_CHECKING:  # provided by the nn.QuantizedLinear / nn.QuantizedEmbedding it is mixed into
        group_size: int
        bits: int
        mode: str

        def __getitem__(self, key: str) -> Any: ...

    def _rows(self, a: int, b: int) -> Any:
        w, scales, biases = self["weight"][a:b], self["scales"][a:b], self["biases"][a:b]
        return self._dequantize(w, scales, biases)

    def _dequantize(self, w: Any, scales: Any, biases: Any) -> Any:
        if self.gguf_dequantization:
            from .quantize import dequantize_affine

            return dequantize_affine(w, scales, biases, self.group_size, self.bits)
        # mlx-lm's dequantize_model, then the loader's set_dtype(float32)
        return mx.dequantize(w, scales, biases, self.group_size, self.bits, self.mode).astype(mx.float32)

    @property
    def _in_features(self) -> int:
        return self["weight"].shape[-1] * 32 // self.bits


class StreamedQuantizedLinear(_AffineRows, nn.QuantizedLinear):
    """A quantized linear layer that runs in float32, dequantizing its weights as it is called."""

    def __call__(self, x: Any) -> Any:
        bias = self.get("bias")
        return _chunked(x, self["weight"].shape[0], self._in_features, self._rows, bias)


class StreamedQuantizedEmbedding(_AffineRows, nn.QuantizedEmbedding):
    """A quantized embedding whose looked-up rows (and, tied, head slices) are dequantized to float32."""

    compute_dtype = mx.float32  # what it returns, whatever it stores

    def __call__(self, x: Any) -> Any:
        flat = x.reshape(-1)
        rows = self._dequantize(self["weight"][flat], self["scales"][flat], self["biases"][flat])
        return rows.reshape(*x.shape, -1)

    def as_linear(self, x: Any) -> Any:
        return _chunked(x, self["weight"].shape[0], self._in_features, self._rows, None)


class StreamedCastLinear(nn.Linear):
    """A 16-bit linear layer that runs in float32, casting its weights as it is called."""

    def __call__(self, x: Any) -> Any:
        w = self["weight"]
        bias = self.get("bias")
        return _chunked(x, w.shape[0], w.shape[1], lambda a, b: w[a:b].astype(mx.float32), bias)


class StreamedCastEmbedding(nn.Embedding):
    """A 16-bit embedding looked up (and, tied, used as the head) in float32."""

    compute_dtype = mx.float32  # what it returns, whatever it stores

    def __call__(self, x: Any) -> Any:
        return self["weight"][x].astype(mx.float32)

    def as_linear(self, x: Any) -> Any:
        w = self["weight"]
        return _chunked(x, w.shape[0], w.shape[1], lambda a, b: w[a:b].astype(mx.float32), None)


class _GGUFBlockRows:
    """float32 rows ``[a, b)`` of a matrix kept as GGUF blocks (``gguf.GGUFBlocks``), decoded exactly as the
    float32 conversion of the whole file decodes them (``quantize.gguf_rows_to_float32``: MLX for Q4_K/Q6_K,
    bit-identical to the ``gguf`` package, which decodes the other types)."""

    gguf_type: int
    in_features: int
    if TYPE_CHECKING:

        def __getitem__(self, key: str) -> Any: ...

    def _rows(self, a: int, b: int) -> Any:
        return self._decode(self["weight"][a:b])

    def _decode(self, raw: Any) -> Any:
        from .quantize import gguf_rows_to_float32

        return gguf_rows_to_float32(raw, self.gguf_type, self.in_features)


class GGUFBlocksLinear(_GGUFBlockRows, nn.Linear):
    """A linear layer whose weight stays as GGUF blocks (k-quants), run in float32 a slice at a time."""

    def __call__(self, x: Any) -> Any:
        return _chunked(x, self["weight"].shape[0], self.in_features, self._rows, self.get("bias"))


class GGUFBlocksEmbedding(_GGUFBlockRows, nn.Embedding):
    """An embedding kept as GGUF blocks: looked-up rows (and, tied, head slices) decoded to float32."""

    compute_dtype = mx.float32  # what it returns, whatever it stores

    def __call__(self, x: Any) -> Any:
        rows = self._decode(self["weight"][x.reshape(-1)])
        return rows.reshape(*x.shape, -1)

    def as_linear(self, x: Any) -> Any:
        return _chunked(x, self["weight"].shape[0], self.in_features, self._rows, None)


def attach_gguf_blocks(model: Any, blocks: dict[str, Any]) -> None:
    """Put ``blocks`` (mlx-lm weight name -> ``gguf.GGUFBlocks``) into ``model``'s linear and embedding
    modules, which become :class:`GGUFBlocksLinear` / :class:`GGUFBlocksEmbedding`."""
    modules = dict(model.named_modules())
    for name, b in blocks.items():
        module = modules.get(name.removesuffix(".weight"))
        if not name.endswith(".weight") or not isinstance(module, (nn.Linear, nn.Embedding)):
            raise LazarusError(f"GGUF tensor {name} has no matrix to go into in this architecture")
        want = module["weight"].shape
        if tuple(want) != tuple(b.shape):
            raise LazarusError(f"GGUF tensor {name} has shape {list(b.shape)}, the architecture expects {list(want)}")
        module.__class__ = GGUFBlocksLinear if isinstance(module, nn.Linear) else GGUFBlocksEmbedding
        object.__setattr__(module, "gguf_type", b.qtype)
        object.__setattr__(module, "in_features", b.shape[1])
        module["weight"] = b.data


class _MlxStreamedQuantizedLinear(StreamedQuantizedLinear):
    gguf_dequantization = False


class _MlxStreamedQuantizedEmbedding(StreamedQuantizedEmbedding):
    gguf_dequantization = False


STREAMED_TYPES = (
    StreamedQuantizedLinear,
    StreamedQuantizedEmbedding,
    StreamedCastLinear,
    StreamedCastEmbedding,
    GGUFBlocksLinear,
    GGUFBlocksEmbedding,
)


def stream_model(model: Any, gguf_dequantization: bool) -> None:
    """Turn ``model`` (quantized or 16-bit as stored) into a streamed float32 model, in place.

    Every quantized or 16-bit linear/embedding keeps its stored weights and becomes its streamed
    subclass (the instance's class is swapped: every attribute, LoRA wrapping and ``isinstance`` check
    still holds); every other parameter (norms, biases) becomes float32, as on the float32 path.
    ``gguf_dequantization``: dequantize as the GGUF float32 path does (``loader.dequantize_affine``),
    else as mlx-lm's ``dequantize_model`` does (model directories).
    """
    swaps: dict[type, type] = {
        nn.QuantizedLinear: StreamedQuantizedLinear if gguf_dequantization else _MlxStreamedQuantizedLinear,
        nn.QuantizedEmbedding: StreamedQuantizedEmbedding if gguf_dequantization else _MlxStreamedQuantizedEmbedding,
    }
    for _, module in model.named_modules():
        cls = type(module)
        kept: tuple[str, ...]
        if isinstance(module, STREAMED_TYPES):
            kept = ("weight", "scales", "biases")
        elif cls in swaps:
            if getattr(module, "mode", "affine") != "affine":
                raise LazarusError(f"--max-memory: {module.mode} quantization cannot be streamed yet")
            module.__class__ = swaps[cls]
            kept = ("weight", "scales", "biases")
        elif cls in (nn.Linear, nn.Embedding) and module["weight"].dtype in (mx.float16, mx.bfloat16):
            module.__class__ = StreamedCastLinear if cls is nn.Linear else StreamedCastEmbedding
            kept = ("weight",)
        else:
            kept = ()
        for key, value in list(module.items()):
            if isinstance(value, mx.array) and key not in kept and mx.issubdtype(value.dtype, mx.floating):
                module[key] = value.astype(mx.float32)


def parameter_bytes(model: Any) -> int:
    """Bytes of ``model``'s parameters as held."""
    params: list[tuple[str, Any]] = tree_flatten(model.parameters())  # type: ignore[assignment]
    return sum(v.nbytes for _, v in params)


def sizes_of_weights(weights: dict[str, Any]) -> WeightSizes:
    """:class:`WeightSizes` of a weight dictionary in mlx-lm naming (quantized linears as
    ``weight``/``scales``/``biases`` triples), before any model holds it."""
    stored, f32, outside = 0, 0, 0
    blocks: dict[str, int] = {}
    for name, v in weights.items():
        stored += v.nbytes
        prefix = name[: -len(".weight")] if name.endswith(".weight") else None
        if name.endswith((".scales", ".biases")) and f"{name.rsplit('.', 1)[0]}.weight" in weights:
            continue
        if prefix and f"{prefix}.scales" in weights:
            group_size = 32
            in_features = weights[f"{prefix}.scales"].shape[-1] * group_size
            n = 4 * v.shape[0] * in_features
        else:
            n = 4 * v.size
        f32 += n
        m = re.match(r"(.*\blayers\.\d+)\.", name)
        if m:
            blocks[m.group(1)] = blocks.get(m.group(1), 0) + n
        else:
            outside = max(outside, n)
    return WeightSizes(stored, f32, max(blocks.values(), default=0), outside)
