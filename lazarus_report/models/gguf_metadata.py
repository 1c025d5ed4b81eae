"""Read a GGUF file's key/value metadata as plain Python values (str, int, float, bool, lists)."""

from __future__ import annotations

from dataclasses import dataclass
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


_SCALAR_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


@dataclass
class GGUFHeader:
    """What the header of a GGUF file says, read without the ``gguf`` package (fast).

    ``scalars``: every non-array metadata value (strings, numbers); ``array_lengths``: the length of
    every array value (the vocabulary is not decoded); ``tensors``: name -> (GGML type id, dims
    fastest-first, offset in the data section); ``data_start``: where the data section begins.
    """

    scalars: dict[str, Any]
    array_lengths: dict[str, int]
    tensors: dict[str, tuple[int, tuple[int, ...], int]]
    data_start: int
    file_size: int


# Headers already read in this process, by (real path, size, mtime, inode): the command line reads a model's
# header to check the settings before loading, then again to load it (a 49k-token vocabulary takes ~40 ms).
_HEADERS: dict[tuple[str, int, int, int], GGUFHeader] = {}


def read_gguf_header(path: str | Path) -> GGUFHeader:
    """The header of a GGUF file (see :class:`GGUFHeader`); ``GGUFError`` when it is damaged or cut short.
    Read once per process while the file is unchanged (treat the result as read-only)."""
    import os

    try:
        st = os.stat(path)
        key = (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ino)
    except OSError:
        key = None
    if key is not None and key in _HEADERS:
        return _HEADERS[key]
    header = _read_gguf_header(path)
    if key is not None:
        if len(_HEADERS) >= 8:
            _HEADERS.clear()
        _HEADERS[key] = header
    return header


def _read_gguf_header(path: str | Path) -> GGUFHeader:
    import mmap
    import struct

    check_gguf_header(path)
    size = Path(path).stat().st_size
    try:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            u32, u64 = struct.Struct("<I"), struct.Struct("<Q")
            version = u32.unpack_from(buf, 4)[0]
            if version < 2:
                raise GGUFError(f"GGUF version {version} of {path} is not supported")
            n_tensors, n_kv = u64.unpack_from(buf, 8)[0], u64.unpack_from(buf, 16)[0]
            pos = 24

            def read_string(p: int) -> tuple[str, int]:
                n = u64.unpack_from(buf, p)[0]
                if p + 8 + n > size:
                    raise struct.error("string runs past the end of the file")
                return bytes(buf[p + 8 : p + 8 + n]).decode("utf-8"), p + 8 + n

            unpack_u64 = u64.unpack_from

            scalars: dict[str, Any] = {}
            arrays: dict[str, int] = {}
            for _ in range(n_kv):
                key, pos = read_string(pos)
                vtype = u32.unpack_from(buf, pos)[0]
                pos += 4
                if vtype == _STRING:
                    scalars[key], pos = read_string(pos)
                elif vtype == _ARRAY:
                    etype, count = u32.unpack_from(buf, pos)[0], u64.unpack_from(buf, pos + 4)[0]
                    pos += 12
                    arrays[key] = count
                    if etype == _STRING:  # the vocabulary and merges: ~100k strings, skipped in a tight loop
                        for _ in range(count):
                            pos += 8 + unpack_u64(buf, pos)[0]
                    else:
                        pos += count * _SCALAR_SIZES[etype]
                else:
                    scalars[key] = struct.unpack_from(_SCALAR_FORMATS[vtype], buf, pos)[0]
                    pos += _SCALAR_SIZES[vtype]
                if pos > size:
                    raise struct.error("metadata runs past the end of the file")
            tensors: dict[str, tuple[int, tuple[int, ...], int]] = {}
            for _ in range(n_tensors):
                name, pos = read_string(pos)
                n_dims = u32.unpack_from(buf, pos)[0]
                dims = struct.unpack_from(f"<{n_dims}Q", buf, pos + 4)
                pos += 4 + 8 * n_dims
                ttype, offset = u32.unpack_from(buf, pos)[0], u64.unpack_from(buf, pos + 4)[0]
                tensors[name] = (ttype, tuple(int(d) for d in dims), int(offset))
                pos += 12
            alignment = int(scalars.get("general.alignment", 32)) or 32
            data_start = (pos + alignment - 1) // alignment * alignment
            return GGUFHeader(scalars, arrays, tensors, data_start, size)
    except GGUFError:
        raise
    except (struct.error, KeyError, ValueError, UnicodeDecodeError, IndexError, OverflowError):
        raise GGUFError(
            f"cannot read GGUF file {path}: its header is truncated or damaged (the file is {size} bytes)"
        ) from None


def read_tensor_types(path: str | Path) -> dict[str, int]:
    """GGML type id of every tensor, from the header alone (skips the metadata values quickly)."""
    return {name: t[0] for name, t in read_gguf_header(path).tensors.items()}


def check_tensor_extents(path: str | Path, header: GGUFHeader | None = None) -> None:
    """``GGUFError`` when a tensor's data would run past the end of the file (a truncated download):
    found from the header in milliseconds, instead of a reshape error after minutes of conversion."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    header = header or read_gguf_header(path)
    for name, (ttype, dims, offset) in header.tensors.items():
        try:
            block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ttype)]
        except (ValueError, KeyError):
            raise GGUFError(f"GGUF file {path}: tensor {name!r} has an unknown type {ttype}") from None
        n = 1
        for d in dims:
            n *= d
        end = header.data_start + offset + n // block * type_size
        if end > header.file_size:
            raise GGUFError(
                f"GGUF file {path} is truncated: tensor {name!r} needs {end} bytes, the file has {header.file_size}"
            )
