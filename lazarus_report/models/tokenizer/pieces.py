"""How a vocabulary entry reads as text: GPT-2's byte-level alphabet ("Ġcapital") and SentencePiece's
spelling ("▁Paris", "<0x0A>"); an incomplete UTF-8 sequence shows as ``\\xNN`` escapes, never U+FFFD."""

from __future__ import annotations

import re
from collections.abc import Callable

SPIECE_SPACE = "\u2581"  # "▁", SentencePiece's spelling of a space


_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def _bytes_to_unicode() -> dict[int, str]:
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\u00a1"), ord("\u00ac") + 1))
        + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    )
    table: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for byte in range(256):
        if byte not in table:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


BYTE_TO_CHAR: dict[int, str] = _bytes_to_unicode()


BYTE_ALPHABET: frozenset[str] = frozenset(BYTE_TO_CHAR.values())


# str.translate table from the byte alphabet to latin-1 characters (code point == byte value).
_CHAR_TO_LATIN1 = {ord(char): chr(byte) for byte, char in BYTE_TO_CHAR.items()}


def byte_level_spelling(text: str) -> str:
    return "".join(BYTE_TO_CHAR[b] for b in text.encode("utf-8"))


def byte_level_piece_to_str(piece: str) -> str:
    """``"Ġcapital"`` -> ``" capital"``; an incomplete UTF-8 sequence shows as ``\\xNN`` escapes."""
    if not BYTE_ALPHABET.issuperset(piece):  # a token spelled in plain text, outside the byte alphabet
        return piece
    return piece.translate(_CHAR_TO_LATIN1).encode("latin-1").decode("utf-8", "backslashreplace")


def sentencepiece_piece_to_str(piece: str) -> str:
    """``"▁Paris"`` -> ``" Paris"``, ``"<0x0A>"`` -> ``"\\n"``, ``"<0xE2>"`` -> ``"\\\\xe2"``."""
    match = _BYTE_PIECE.fullmatch(piece)
    if match is not None:
        return bytes([int(match.group(1), 16)]).decode("utf-8", "backslashreplace")
    return piece.replace(SPIECE_SPACE, " ")


PIECE_DECODERS: dict[str, Callable[[str], str]] = {
    "byte_level": byte_level_piece_to_str,
    "sentencepiece": sentencepiece_piece_to_str,
    "plain": lambda piece: piece,
}
