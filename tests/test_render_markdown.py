"""The Markdown report and the Markdown escaping it relies on."""

from __future__ import annotations

import html
import re

import pytest
from factories import HOSTILE_STRINGS, make_hostile_result, make_result, make_untracked_result
from helpers import github_like

from lazarus_report.render.formatting import clean_text, md_escape, md_token, visible_token
from lazarus_report.render.markdown import render_markdown, render_summary_markdown
from lazarus_report.render.report_model import build_report


@pytest.fixture(scope="module")
def demo_md() -> str:
    return render_markdown(make_result())


@pytest.fixture(scope="module")
def hostile_md() -> str:
    return render_markdown(make_hostile_result())


def _rows(rendered: str) -> list[list[str]]:
    rows = []
    for tr in re.findall(r"<tr>(.*?)</tr>", rendered, re.S):
        rows.append(re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", tr, re.S))
    return rows


def test_report_sections(demo_md):
    assert demo_md.startswith("# Logit lens: smollm2-135m-instruct\n")
    for heading in ("## Summary", "## Final prediction", "## Layer by layer", "## Run details"):
        assert f"\n{heading}\n" in demo_md
    assert "- **Final prediction:** `␣Paris` at 77.2% (next: `␣to` at 10.3%)." in demo_md
    assert "- **Emergence:** `␣Paris` is first the top-1 prediction at layer 17" in demo_md
    assert "- **Warning:** ' Lyonnais' is 3 tokens for this model" in demo_md
    assert demo_md.endswith("\n") and "\n\n\n" not in demo_md


def test_tables_have_consistent_cells(demo_md):
    rendered = github_like().render(demo_md)
    tables = re.findall(r"<table>.*?</table>", rendered, re.S)
    assert len(tables) == 2
    top_k, layers = (_rows(t) for t in tables)
    assert len(top_k) == 1 + 10 and {len(r) for r in top_k} == {4}
    # The final top-1 (␣Paris) is tracked: no separate "Rank of ␣Paris" column; each tracked column is named.
    assert len(layers) == 1 + 30 and {len(r) for r in layers} == {5 + 2 * 2}
    assert layers[0][5:] == [
        "P(<code>␣Paris</code>)", "Rank of <code>␣Paris</code>", "P(<code>␣Ly</code>)", "Rank of <code>␣Ly</code>"
    ]  # fmt: skip
    emergence_rows = [r for r in layers[1:] if "★" in r[0]]
    assert [r[0] for r in emergence_rows] == ["17 ★"]


def test_prompt_is_a_fenced_block(demo_md):
    result = make_result()
    rendered = github_like().render(demo_md)
    block = re.search(r'<pre><code class="language-text">(.*?)</code></pre>', rendered, re.S)
    assert block is not None
    assert html.unescape(block.group(1)) == result.formatted_prompt + "\n"


def test_summary_alone_matches_the_report(demo_md):
    summary = render_summary_markdown(build_report([make_result()]))
    assert summary.strip() in demo_md
    assert summary.startswith("- **Lens:** logit lens.\n- **Final prediction:**")


def test_untracked_result(tmp_path):
    md = render_markdown(make_untracked_result())
    assert "Tracked" not in md.split("## Final prediction")[0]
    assert "★ marks where the final top-1 first becomes top-1" in md


def test_hostile_markdown_injects_nothing(hostile_md):
    rendered = github_like().render(hostile_md)
    tags = set(re.findall(r"<([a-zA-Z][a-zA-Z0-9]*)", rendered))
    assert tags <= {
        "h1",
        "h2",
        "p",
        "strong",
        "code",
        "pre",
        "ul",
        "li",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "em",
    }, tags
    assert "<em>" not in rendered  # `_x_` and `*` stayed literal
    assert "href" not in rendered and "src=" not in rendered.replace("src=x", "")
    assert "{{ 7*7 }}" in html.unescape(rendered)
    hostile_md.encode("utf-8")  # strict: no lone surrogates


def test_hostile_tables_keep_their_shape(hostile_md):
    result = make_hostile_result()
    rendered = github_like().render(hostile_md)
    top_k, layers = (_rows(t) for t in re.findall(r"<table>.*?</table>", rendered, re.S))
    assert {len(r) for r in top_k} == {4}
    final_tracked = result.final_prediction[0].token_id in {t.token_id for t in result.tracked_tokens}
    assert {len(r) for r in layers} == {(5 if final_tracked else 6) + 2 * len(result.tracked_tokens)}
    assert html.unescape(top_k[1][1]) == f"<code>{visible_token(result.final_prediction[0].token)}</code> (tracked)"


@pytest.mark.parametrize(
    "text", HOSTILE_STRINGS + ["1. x", "- x", "# x", "> x", "+ x", "===", "---", "~~x~~", "$x$", "@user", ":smile:"]
)
def test_md_escape_renders_as_the_same_text(text):
    md = github_like()
    rendered = md.render("x " + md_escape(text)).strip()
    expected = "x " + clean_text(text).replace("\n", "↵").replace("\t", "⇥")
    assert rendered.startswith("<p>") and rendered.endswith("</p>")
    assert html.unescape(rendered[3:-4]) == expected.rstrip()


@pytest.mark.parametrize("text", HOSTILE_STRINGS)
def test_md_token_is_one_code_span(text):
    md = github_like()
    rendered = md.renderInline(md_token(text))
    assert rendered.startswith("<code>") and rendered.endswith("</code>") and rendered.count("<code>") == 1
    assert html.unescape(rendered[6:-7]) == visible_token(text)


@pytest.mark.parametrize("text", HOSTILE_STRINGS)
def test_md_token_in_a_table_cell_stays_one_cell(text):
    table = f"| a | b |\n|---|---|\n| {md_token(text, table=True)} | z |\n"
    rows = _rows(github_like().render(table))
    assert len(rows[1]) == 2 and html.unescape(rows[1][1]) == "z"
    assert html.unescape(rows[1][0]) == f"<code>{visible_token(text)}</code>"
