"""Reading results back from JSON or HTML reports, and writing report files."""

from __future__ import annotations

import json

import pytest
from factories import make_hostile_result, make_small_result

from lazarus_report.render import ResultFormatError, load_result_file, write_report_files
from lazarus_report.render.html import render_html
from lazarus_report.render.markdown import render_markdown


@pytest.fixture(scope="module")
def small():
    return make_small_result()


@pytest.fixture(scope="module")
def small_html(small):
    return render_html(small)


def test_loads_a_result_json(tmp_path, small):
    path = tmp_path / "r.json"
    small.save(path)
    assert load_result_file(path) == small


def test_loads_the_result_embedded_in_a_report(tmp_path, small, small_html):
    path = tmp_path / "r.html"
    path.write_text(small_html, encoding="utf-8")
    assert load_result_file(path) == small
    static = tmp_path / "s.html"
    static.write_text(render_html(small, static=True), encoding="utf-8")
    assert load_result_file(static) == small


def test_reports_with_a_plain_embedded_result_still_load(tmp_path, small):
    # Reports written before the embedded result was packed held the result JSON itself.
    page = f'<!doctype html><html><script type="application/json" id="lazarus-result">{small.to_json(None)}</script></html>'
    path = tmp_path / "old.html"
    path.write_text(page, encoding="utf-8")
    assert load_result_file(path) == small


def test_hostile_result_survives_html_round_trip(tmp_path):
    hostile = make_hostile_result()
    path = tmp_path / "h.html"
    path.write_bytes(render_html(hostile, static=True).encode("utf-8"))
    assert load_result_file(path) == hostile


def test_other_schema_version_is_refused(tmp_path, small):
    data = small.to_dict()
    data["schema_version"] = 99
    path = tmp_path / "v99.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ResultFormatError, match="schema version 99"):
        load_result_file(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"kind": "something-else"}', "not a lazarus-report analysis, comparison, suite or drift result"),
        ("[1, 2, 3]", "not a lazarus-report analysis, comparison, suite or drift result"),
        ("<!doctype html><html><body><p>hello</p></body></html>", "without an embedded result"),
        (
            '<html><script type="application/json" id="lazarus-result">{not json</script></html>',
            "not valid JSON",
        ),
        ("just some text", "neither a result JSON nor an HTML report"),
        ("", "neither a result JSON nor an HTML report"),
    ],
)
def test_anything_else_is_a_clear_error(tmp_path, content, message):
    path = tmp_path / "x"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ResultFormatError, match=message):
        load_result_file(path)


def test_binary_file_is_a_clear_error(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(ResultFormatError, match="not a UTF-8 text file"):
        load_result_file(path)


def test_writes_html_and_markdown(tmp_path, monkeypatch, small, small_html):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    html_path = tmp_path / "out" / "report.html"  # parent directory is created
    md_path = tmp_path / "out" / "report.md"
    write_report_files(small, html_path=html_path, markdown_path=md_path)
    assert html_path.read_text(encoding="utf-8") == small_html
    assert md_path.read_text(encoding="utf-8") == render_markdown(small)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.html", "report.md"]  # no temp files


def test_static_flag_reaches_the_html(tmp_path, small):
    path = tmp_path / "s.html"
    write_report_files(small, html_path=path, static=True)
    assert "vegaEmbed" not in path.read_text(encoding="utf-8")


def test_write_report_files_has_no_step_summary_side_effect(tmp_path, monkeypatch, small):
    summary = tmp_path / "step_summary.md"
    summary.write_text("earlier step\n", encoding="utf-8")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    write_report_files(small, markdown_path=tmp_path / "a.md")
    assert (tmp_path / "a.md").read_text(encoding="utf-8") == render_markdown(small)
    assert summary.read_text(encoding="utf-8") == "earlier step\n"  # the CLI appends, not the library


def test_failed_render_leaves_existing_file_untouched(tmp_path, monkeypatch, small):
    path = tmp_path / "report.html"
    path.write_text("previous report", encoding="utf-8")

    def boom(*args, **kwargs):
        raise RuntimeError("render failed")

    monkeypatch.setattr("lazarus_report.render.html.render_html", boom)
    with pytest.raises(RuntimeError):
        write_report_files(small, html_path=path)
    assert path.read_text(encoding="utf-8") == "previous report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
