"""Read and write the safetensors format with numpy alone (float32 or float16 tensors), strictly.

The format: an 8-byte little-endian header length, a JSON header
(``{"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {...}}``),
then the raw little-endian tensor bytes. Writing to bytes (not a file) lets the caller hash the
exact bytes and write them atomically; reading checks every offset, so a truncated or altered file
is refused with a clear message instead of a crash deep inside a library.
"""

from __future__ import annotations

import json
import struct

import numpy as np

from ...core.errors import LazarusError

_DTYPES: dict[str, np.dtype] = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8"), "F16": np.dtype("<f2")}


def dumps(tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> bytes:
    """The safetensors bytes of ``tensors``: float16 arrays are stored as F16, anything else as F32."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    blobs = []
    offset = 0
    for name in sorted(tensors):
        half = tensors[name].dtype == np.float16
        arr = np.ascontiguousarray(tensors[name], dtype="<f2" if half else "<f4")
        data = arr.tobytes()
        header[name] = {
            "dtype": "F16" if half else "F32",
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # align the data to 8 bytes, as the reference writer does
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def loads(data: bytes, what: str, keep_half: bool = False) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Tensors (as float32; ``keep_half``: float16 ones stay float16) and metadata of a safetensors blob;
    ``what`` names the file in error messages."""
    if len(data) < 8:
        raise LazarusError(f"{what} is not a safetensors file (too short)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise LazarusError(f"{what} is not a safetensors file (header length {n} beyond the end)")
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise LazarusError(f"{what} is not a safetensors file (unreadable header)") from None
    if not isinstance(header, dict):
        raise LazarusError(f"{what} is not a safetensors file (header is not an object)")
    body = memoryview(data)[8 + n :]
    metadata = header.pop("__metadata__", None) or {}
    out: dict[str, np.ndarray] = {}
    for name, spec in header.items():
        try:
            dtype = _DTYPES[spec["dtype"]]
            shape = [int(s) for s in spec["shape"]]
            begin, end = (int(x) for x in spec["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise LazarusError(f"{what}: tensor {name!r} has an unsupported or malformed entry") from None
        count = int(np.prod(shape)) if shape else 1
        if not 0 <= begin <= end <= len(body) or end - begin != count * dtype.itemsize:
            raise LazarusError(f"{what}: tensor {name!r} does not fit the file (truncated or damaged)")
        arr = np.frombuffer(body[begin:end], dtype=dtype).reshape(shape)
        out[name] = arr if keep_half and dtype.itemsize == 2 else arr.astype(np.float32, copy=False)
    return out, {str(k): str(v) for k, v in metadata.items()}
