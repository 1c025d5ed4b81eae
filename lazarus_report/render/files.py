"""Reading results back (from result JSON or from a report's embedded JSON) and writing report files.

Imports stay light (no Jinja, Altair or MLX until a report is actually rendered).
"""

from __future__ import annotations

import json
import os
from html.parser import HTMLParser
from pathlib import Path

from lazarus_report.result import AnalysisResult, ResultFormatError, write_text_atomic

RESULT_SCRIPT_ID = "lazarus-result"


def load_result_file(path: str | os.PathLike[str]) -> AnalysisResult:
    """Load an ``AnalysisResult`` from a result JSON file or from an HTML report written by lazarus.

    Raises ``ResultFormatError`` for anything else: other schema versions, JSON that is not a
    result, HTML without an embedded result, text that is neither JSON nor HTML, bytes that are not
    UTF-8. A missing file raises ``FileNotFoundError`` as usual.
    """
    raw = Path(path).read_bytes()
    try:
        return _parse(raw)
    except ResultFormatError as exc:
        raise ResultFormatError(f"{path}: {exc}") from None


def _parse(raw: bytes) -> AnalysisResult:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ResultFormatError("not a UTF-8 text file (expected a result JSON or an HTML report)") from None
    head = text.lstrip()[:1]
    if head in ("{", "["):
        return AnalysisResult.from_json(text)
    if head == "<":
        embedded = _embedded_result(text)
        if embedded is None:
            raise ResultFormatError(
                "HTML file without an embedded analysis result "
                f'(no <script type="application/json" id="{RESULT_SCRIPT_ID}">)'
            )
        try:
            data = json.loads(embedded)
        except json.JSONDecodeError as exc:
            raise ResultFormatError(f"the embedded analysis result is not valid JSON: {exc}") from None
        return AnalysisResult.from_dict(data)
    raise ResultFormatError("neither a result JSON nor an HTML report")


class _ResultScriptFinder(HTMLParser):
    """Collects the text of <script type="application/json" id="lazarus-result">."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self._inside = False
        self.found: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script" and self.found is None and a.get("id") == RESULT_SCRIPT_ID and (
            (a.get("type") or "").lower() == "application/json"
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


def write_report_files(
    result: AnalysisResult,
    *,
    html_path: str | os.PathLike[str] | None = None,
    markdown_path: str | os.PathLike[str] | None = None,
    static: bool = False,
) -> None:
    """Write the HTML and/or Markdown report atomically (missing parent directories are created).

    When the Markdown report is written and ``GITHUB_STEP_SUMMARY`` names a file (GitHub Actions),
    the Markdown is appended there as well.
    """
    if html_path is not None:
        from lazarus_report.render.html import render_html

        _write(html_path, render_html(result, static=static))
    if markdown_path is not None:
        from lazarus_report.render.markdown import render_markdown

        markdown = render_markdown(result)
        _write(markdown_path, markdown)
        summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary_file:
            with open(summary_file, "a", encoding="utf-8") as fh:
                fh.write(markdown + "\n")


def _write(path: str | os.PathLike[str], text: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)
