"""Read a GGUF file's key/value metadata as plain Python values (str, int, float, bool, lists)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class GGUFError(ValueError):
    """A GGUF file that cannot be read (corrupt, truncated or not GGUF at all)."""


GGUF_MAGIC = b"GGUF"


def check_gguf_header(path: str | Path) -> None:
    with open(path, "rb") as fh:
        if fh.read(4) != GGUF_MAGIC:
            raise GGUFError(f"{path} is not a GGUF file (bad magic bytes)")


def plain(value: Any) -> Any:
    """Convert an ``mx.array`` / numpy scalar or array metadata value to Python values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, list):
        if value and isinstance(value[0], (str, int, float)):
            return value  # already plain (the vocabulary lists: 100k+ entries)
        return [plain(v) for v in value]
    return value


def read_gguf_metadata(path: str | Path) -> dict[str, Any]:
    """All metadata of a GGUF file, with the ``gguf`` package (reads every tensor type's header).

    Slower than ``mx.load(..., return_metadata=True)`` for large vocabularies, but works on files
    whose tensors MLX cannot read (k-quants).
    """
    check_gguf_header(path)
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path), "r")
    except Exception as exc:  # the gguf package raises ValueError/IndexError/struct.error on damage
        raise GGUFError(f"cannot read GGUF file {path}: {exc}") from None
    return metadata_of(reader)


def metadata_of(reader: Any) -> dict[str, Any]:
    """The key/value metadata of an open ``gguf.GGUFReader``."""
    out: dict[str, Any] = {}
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        out[name] = plain(field.contents())
    return out


# GGML tensor type ids that MLX's GGUF reader decodes correctly (F32, F16, Q4_0, Q4_1, Q8_0).
# It also accepts some k-quants but decodes them wrongly, so everything else goes through `gguf`.
MLX_NATIVE_TENSOR_TYPES = frozenset({0, 1, 2, 3, 8})

_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9


def read_tensor_types(path: str | Path) -> dict[str, int]:
    """GGML type id of every tensor, from the header alone (skips the metadata values quickly)."""
    import mmap
    import struct

    check_gguf_header(path)
    try:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            u32, u64 = struct.Struct("<I"), struct.Struct("<Q")
            version = u32.unpack_from(buf, 4)[0]
            if version < 2:
                raise GGUFError(f"GGUF version {version} of {path} is not supported")
            n_tensors, n_kv = u64.unpack_from(buf, 8)[0], u64.unpack_from(buf, 16)[0]
            pos = 24

            def skip_string(p: int) -> int:
                return p + 8 + u64.unpack_from(buf, p)[0]

            for _ in range(n_kv):
                pos = skip_string(pos)
                vtype = u32.unpack_from(buf, pos)[0]
                pos += 4
                if vtype == _STRING:
                    pos = skip_string(pos)
                elif vtype == _ARRAY:
                    etype, count = u32.unpack_from(buf, pos)[0], u64.unpack_from(buf, pos + 4)[0]
                    pos += 12
                    if etype == _STRING:
                        for _ in range(count):
                            pos = skip_string(pos)
                    else:
                        pos += count * _SCALAR_SIZES[etype]
                else:
                    pos += _SCALAR_SIZES[vtype]
            types: dict[str, int] = {}
            for _ in range(n_tensors):
                n = u64.unpack_from(buf, pos)[0]
                name = bytes(buf[pos + 8 : pos + 8 + n]).decode("utf-8")
                pos += 8 + n
                n_dims = u32.unpack_from(buf, pos)[0]
                pos += 4 + 8 * n_dims
                types[name] = u32.unpack_from(buf, pos)[0]
                pos += 12  # type + offset
            return types
    except (struct.error, KeyError, ValueError, UnicodeDecodeError, IndexError) as exc:
        raise GGUFError(f"cannot read GGUF file {path}: damaged header ({type(exc).__name__})") from None
