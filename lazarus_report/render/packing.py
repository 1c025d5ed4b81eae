"""A result inside its report: packed (compressed) into the page, and read back from a page or a JSON file."""

from __future__ import annotations

import base64
import binascii
import json
import lzma
import os
import zlib
from html.parser import HTMLParser
from pathlib import Path

from lazarus_report.results.analysis import AnalysisResult
from lazarus_report.results.codec import ResultFormatError, dumps_json
from lazarus_report.results.comparison import ComparisonResult
from lazarus_report.results.drift import DriftResult
from lazarus_report.results.loading import load_any_result
from lazarus_report.results.suite import SUITE_KIND, SuiteResult
from lazarus_report.results.sweep import SweepResult

RESULT_SCRIPT_ID = "lazarus-result"


# A report embeds its result compressed: the result JSON (a comparison holds two analyses, each
# with a layers x positions grid of full-precision floats) is 100-220 kB, and deflate + base64
# halves it, which keeps a compare report within its size budget. Still JSON, and says what it holds.
# A suite holds many results alike in shape (2 MB of JSON for 50 two-model cases); deflate sees 32 kB
# at a time, about one case, while xz's dictionary spans the whole suite: 40% smaller than deflate.
PACKED_KIND = "lazarus-report/packed"


PACKED_ENCODING = "zlib+base64"


PACKED_ENCODING_XZ = "xz+base64"


MAX_UNPACKED_BYTES = 256 * 1024 * 1024  # refuse decompression bombs


# Above this much suite JSON, xz runs at preset 1: on 18 MB (1,000 one-model cases) preset 6 took 30 s
# and preset 1 1.5 s, for a 1.9 MB instead of 1.3 MB payload.
XZ_FAST_ABOVE_BYTES = 4 * 1024 * 1024


def pack_result(data: dict) -> dict:
    """The result dict as embedded in a report: ``{"kind": PACKED_KIND, "contents": <its kind>,
    "encoding": "xz+base64", "data": <base64 of the xz-compressed compact result JSON>}`` (reports written
    before this version used ``"zlib+base64"`` for analyses and comparisons; both are read)."""
    raw = dumps_json(data, indent=None).encode("utf-8")
    if data.get("kind") == SUITE_KIND:
        preset = 6 if len(raw) <= XZ_FAST_ABOVE_BYTES else 1
    else:
        preset = 1  # an analysis or comparison: 13% smaller than zlib -9 for ~40 ms more per 250 kB
    encoding, packed = PACKED_ENCODING_XZ, lzma.compress(raw, format=lzma.FORMAT_XZ, preset=preset)
    return {
        "kind": PACKED_KIND,
        "contents": data.get("kind"),
        "encoding": encoding,
        "data": base64.b64encode(packed).decode("ascii"),
    }


def unpack_result(data: object) -> object:
    """The result dict back from ``pack_result`` (anything else is returned as it is)."""
    if not (isinstance(data, dict) and data.get("kind") == PACKED_KIND):
        return data
    encoding = data.get("encoding")
    if encoding not in (PACKED_ENCODING, PACKED_ENCODING_XZ) or not isinstance(data.get("data"), str):
        raise ResultFormatError(f"the embedded result has an unknown encoding {encoding!r}")
    try:
        packed = base64.b64decode(data["data"], validate=True)
        if encoding == PACKED_ENCODING:
            inflater = zlib.decompressobj()
            raw = inflater.decompress(packed, MAX_UNPACKED_BYTES)
            complete = not inflater.unconsumed_tail
        else:
            unxz = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
            raw = unxz.decompress(packed, MAX_UNPACKED_BYTES)
            if not unxz.eof and len(raw) < MAX_UNPACKED_BYTES:
                raise ResultFormatError("the embedded result is damaged: truncated")
            complete = unxz.eof
        if not complete:
            raise ResultFormatError("the embedded result is too large")
        return json.loads(raw.decode("utf-8"))
    except (binascii.Error, zlib.error, lzma.LZMAError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultFormatError(f"the embedded result is damaged: {exc}") from None


def load_result_file(
    path: str | os.PathLike[str],
) -> AnalysisResult | ComparisonResult | SuiteResult | SweepResult | DriftResult:
    """Load a result from a result JSON file (``-o``) or from an HTML report written by lazarus:
    an ``AnalysisResult``, a ``ComparisonResult``, a ``SuiteResult``, a ``SweepResult`` or a
    ``DriftResult``, whichever the file holds.

    Raises ``ResultFormatError`` for anything else: other schema versions, JSON that is not a
    result, HTML without an embedded result, text that is neither JSON nor HTML, bytes that are not
    UTF-8. A missing file raises ``FileNotFoundError`` as usual.
    """
    raw = Path(path).read_bytes()
    try:
        return _parse(raw)
    except ResultFormatError as exc:
        raise ResultFormatError(f"{path}: {exc}") from None


def _parse(raw: bytes) -> AnalysisResult | ComparisonResult | SuiteResult | SweepResult | DriftResult:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ResultFormatError("not a UTF-8 text file (expected a result JSON or an HTML report)") from None
    head = text.lstrip()[:1]
    if head in ("{", "["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ResultFormatError(f"not JSON: {exc}") from None
        return load_any_result(unpack_result(data))
    if head == "<":
        embedded = _embedded_result(text)
        if embedded is None:
            raise ResultFormatError(
                f'HTML file without an embedded result (no <script type="application/json" id="{RESULT_SCRIPT_ID}">)'
            )
        try:
            data = json.loads(embedded)
        except json.JSONDecodeError as exc:
            raise ResultFormatError(f"the embedded result is not valid JSON: {exc}") from None
        return load_any_result(unpack_result(data))
    raise ResultFormatError("neither a result JSON nor an HTML report")


class _ResultScriptFinder(HTMLParser):
    """Collects the text of <script type="application/json" id="lazarus-result">."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self._inside = False
        self.found: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if (
            tag == "script"
            and self.found is None
            and a.get("id") == RESULT_SCRIPT_ID
            and ((a.get("type") or "").lower() == "application/json")
        ):
            self._inside = True
            self.found = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._inside = False

    def handle_data(self, data: str) -> None:
        if self._inside and self.found is not None:
            self.found.append(data)


def _embedded_result(html_text: str) -> str | None:
    finder = _ResultScriptFinder()
    finder.feed(html_text)
    finder.close()
    return None if finder.found is None else "".join(finder.found)
