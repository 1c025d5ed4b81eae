"""Display formatting shared by the HTML and Markdown reports (pure functions, stdlib only).

Token strings come from the model and everything else from the user: they are data. This module
makes them *visible* (whitespace and invisible characters get markers), *encodable* (lone surrogates,
which cannot be written as UTF-8, are replaced) and, for Markdown, *inert* (every ASCII punctuation
character is backslash-escaped). HTML escaping is Jinja's autoescape, not ours.
"""

from __future__ import annotations

import math
import unicodedata
from typing import NamedTuple

# Visible stand-ins for whitespace inside tokens. A token's exact text is always available
# elsewhere (title attribute / embedded JSON); these markers are for reading.
WHITESPACE_MARKERS = {" ": "\u2423", "\n": "\u21b5", "\t": "\u21e5", "\r": "\u240d"}  # ␣ ↵ ⇥ ␍
EMPTY_MARKER = "\u2205"  # ∅
_INVISIBLE_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Zl", "Zp", "Zs"}


class Segment(NamedTuple):
    """A run of token text; ``marker`` runs stand for characters that would otherwise be invisible."""

    text: str
    marker: bool


def _is_noncharacter(ch: str) -> bool:
    # U+FDD0..U+FDEF and U+xFFFE/U+xFFFF: not allowed in XML (the inline SVG) and never text.
    cp = ord(ch)
    return 0xFDD0 <= cp <= 0xFDEF or (cp & 0xFFFE) == 0xFFFE


def _char_marker(ch: str) -> str | None:
    if ch in WHITESPACE_MARKERS:
        return WHITESPACE_MARKERS[ch]
    if unicodedata.category(ch) in _INVISIBLE_CATEGORIES or _is_noncharacter(ch):
        return f"\u27e8U+{ord(ch):04X}\u27e9"  # ⟨U+202E⟩
    return None


def token_segments(token: str) -> list[Segment]:
    """Split a token into text and marker runs (spaces, newlines, tabs, controls, bidi marks, surrogates)."""
    if token == "":
        return [Segment(EMPTY_MARKER, True)]
    segments: list[Segment] = []
    for ch in token:
        marker = _char_marker(ch)
        text, is_marker = (marker, True) if marker is not None else (ch, False)
        if segments and segments[-1].marker == is_marker:
            segments[-1] = Segment(segments[-1].text + text, is_marker)
        else:
            segments.append(Segment(text, is_marker))
    return segments


def visible_token(token: str) -> str:
    """A token as one printable line: `` Paris`` -> ``␣Paris``, ``"\\n"`` -> ``↵``."""
    return "".join(s.text for s in token_segments(token))


def token_repr(token: str) -> str:
    """An exact, ASCII-safe spelling of a token (Python string literal syntax)."""
    return ascii(token)


def clean_text(text: str) -> str:
    """Running text (prompts, model ids, versions) made safe to print.

    Newlines and tabs are kept; other control characters, bidirectional overrides and lone
    surrogates become visible ``⟨U+XXXX⟩`` markers so nothing can reorder or hide what follows.
    """
    out = []
    for ch in text:
        if ch in "\n\t" or ch == " ":
            out.append(ch)
            continue
        cat = unicodedata.category(ch)
        if cat in {"Cc", "Cf", "Cs", "Co", "Zl", "Zp"} or _is_noncharacter(ch):
            out.append(f"\u27e8U+{ord(ch):04X}\u27e9")
        else:
            out.append(ch)
    return "".join(out)


# --- numbers ------------------------------------------------------------------


def finite(x: float | None) -> float | None:
    """``x`` if it is a finite number, else None (NaN/inf must not reach JSON or charts)."""
    if x is None or isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def fmt_prob(p: float | None) -> str:
    """A probability in [0, 1] as a percentage with three significant digits."""
    p = finite(p)
    if p is None:
        return "n/a"
    if p == 0:
        return "0%"
    if p < 1e-4:
        return "<0.01%"
    return f"{100 * p:.3g}%"


def fmt_nats(x: float | None, digits: int = 2) -> str:
    x = finite(x)
    return "n/a" if x is None else f"{x:.{digits}f}"


def fmt_rank(rank: int | None) -> str:
    return "n/a" if rank is None else f"{rank:,}"


def fmt_seconds(s: float | None) -> str:
    s = finite(s)
    if s is None:
        return "n/a"
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s"


def fmt_delta(d: float | None) -> str:
    """A difference of two probabilities in percentage points, signed: ``+4.1 pp``, ``−30.2 pp``."""
    d = finite(d)
    if d is None:
        return "n/a"
    points = round(100 * d, 1)
    return "±0 pp" if points == 0 else f"{'+' if points > 0 else '−'}{abs(points):.1f} pp"


def bar_width(p: float | None) -> str:
    """CSS width for an inline probability bar (always a plain number: safe in a style attribute)."""
    p = finite(p)
    p = 0.0 if p is None else min(max(p, 0.0), 1.0)
    return f"{100 * p:.1f}%"


# --- Markdown ----------------------------------------------------------------


class MarkdownSafe(str):
    """Text already escaped (or produced by us) for Markdown: the Markdown environment emits it as is."""


# Characters that can open Markdown/GFM syntax inside a line: emphasis, code, links, images,
# autolinks, raw HTML, entities, table cells, strikethrough, headings, quotes, math, mentions, emoji.
_MD_INLINE = set("\\`*_[]<>|&!~#$@:")


def md_escape(text: object) -> MarkdownSafe:
    """Make any string inert Markdown text on one line.

    Characters that can start inline syntax are backslash-escaped (CommonMark allows a backslash
    before any ASCII punctuation). Newlines and other invisible characters become visible markers,
    so a value can never start a new line, and therefore never a new block (list, heading, fence);
    the templates never put a value at the start of a line.
    """
    if isinstance(text, MarkdownSafe):
        return text
    s = clean_text(str(text)).replace("\n", WHITESPACE_MARKERS["\n"]).replace("\t", WHITESPACE_MARKERS["\t"])
    return MarkdownSafe("".join("\\" + c if c in _MD_INLINE else c for c in s))


def md_token(token: str, *, table: bool = False) -> MarkdownSafe:
    """A token as a Markdown code span with visible whitespace.

    The fence is one backtick longer than the longest backtick run inside. In GFM tables a ``|``
    splits cells even inside code spans unless written ``\\|`` (cmark-gfm and markdown-it remove the
    backslash again).
    """
    text = visible_token(token)
    longest = run = 0
    for c in text:
        run = run + 1 if c == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    if text.startswith("`") or text.endswith("`"):
        text = f" {text} "
    if table:
        text = text.replace("|", "\\|")
    return MarkdownSafe(f"{fence}{text}{fence}")


def md_fenced_block(text: str, info: str = "text") -> MarkdownSafe:
    """A fenced code block that no line of ``text`` can close early."""
    text = clean_text(text)
    longest = run = 0
    for c in text:
        run = run + 1 if c == "`" else 0
        longest = max(longest, run)
    fence = "`" * max(3, longest + 1)
    return MarkdownSafe(f"{fence}{info}\n{text}\n{fence}")
