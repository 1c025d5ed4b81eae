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
    out: dict[str, Any] = {}
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        out[name] = plain(field.contents())
    return out
