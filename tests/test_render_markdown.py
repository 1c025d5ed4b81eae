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
    # The final top-1 (␣Paris) is tracked: no separate column for it; each tracked token's column is named, its
    # cells read "probability (#rank)"; at most 6 columns (a 760 px pull-request comment).
    assert len(layers) == 1 + 30 and {len(r) for r in layers} == {6}
    assert layers[0] == ["Layer", "Top-1", "Entropy", "KL to final", "<code>␣Paris</code>", "<code>␣Ly</code>"]
    assert all(re.fullmatch(r"(&lt;)?[\d.,]+% \(#[\d,]+\)", cell) for row in layers[1:] for cell in row[4:])
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
    assert summary.startswith("- **Final prediction:**")
    assert "\n- **Lens:** Logit lens, with no held-out fidelity for it on this model\\: no layer is marked" in summary


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
    top_k, *layer_tables = (_rows(t) for t in re.findall(r"<table>.*?</table>", rendered, re.S))
    assert {len(r) for r in top_k} == {4}
    final_tracked = result.final_prediction[0].token_id in {t.token_id for t in result.tracked_tokens}
    series = (0 if final_tracked else 1) + len(result.tracked_tokens)
    # Layer, Top-1, Entropy, KL and two series; the other series in tables of Layer and at most 5 more.
    assert {len(r) for r in layer_tables[0]} == {4 + min(series, 2)}
    assert sum(len(t[0]) - 1 for t in layer_tables[1:]) == max(0, series - 2)
    assert all(len(r) <= 6 for t in layer_tables for r in t)
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


# --- r19-pages: the analysis Markdown in a pull-request comment (issue 23) ------------------------------------

SAMPLES = __import__("pathlib").Path(__file__).resolve().parents[1] / "sample_reports"


@pytest.mark.parametrize("name", sorted(p.stem for p in SAMPLES.glob("analyze-*.json")))
def test_analysis_markdown_fits_a_pull_request_comment(name):
    from lazarus_report.render.packing import load_result_file

    result = load_result_file(SAMPLES / f"{name}.json")
    md = render_markdown(result)
    rendered = github_like().render(md)
    tables = [_rows(t) for t in re.findall(r"<table>.*?</table>", rendered, re.S)]
    assert tables and all(len(row) <= 6 for table in tables for row in table), [t[0] for t in tables]
    text = re.sub(r"<[^>]+>", "", rendered)
    assert "**" not in text and "\\*" not in text  # bold renders as bold, never as literal asterisks
    assert "<strong>Final prediction:</strong>" in rendered
    layers = next(t for t in tables if t[0][:2] == ["Layer", "Top-1"])
    marked = [row[0] for row in layers[1:] if "≈" in row[0]]
    unreliable = set(result.unreliable_layers)
    assert [int(label.split()[0]) for label in marked] == [
        int(row[0].split()[0]) for row in layers[1:] if int(row[0].split()[0]) in unreliable
    ]
    if unreliable:
        assert "≈ marks an unreliable layer: from the lens's held-out fidelity" in html.unescape(text)
    else:
        assert "≈ marks" not in text


def test_identical_consecutive_layers_fold_into_one_row():
    import dataclasses

    from lazarus_report.render.markdown import render_report_markdown

    report = build_report([make_result()])
    run = report.runs[0]
    rows = run.layer_rows
    first = rows[0]
    # Layers 0-3 read the same (every shown value), then the rest as they are.
    same = [dataclasses.replace(first, layer=i, emerging=[]) for i in range(4)]
    folded_run = dataclasses.replace(run, layer_rows=same + rows[4:])
    md = render_report_markdown(dataclasses.replace(report, runs=[folded_run]))
    tables = [_rows(t) for t in re.findall(r"<table>.*?</table>", github_like().render(md), re.S)]
    layers = next(t for t in tables if t[0][:2] == ["Layer", "Top-1"])
    assert [r[0] for r in layers[1:3]] == ["0-3", "4"]
    assert len(layers) == 1 + len(rows) - 3
    assert "consecutive layers that read the same are folded into one row" in md
    # Unfolded when one number differs as printed.
    differs = [dataclasses.replace(r, entropy=(r.entropy or 0) + 0.5 * r.layer) for r in same]
    md = render_report_markdown(
        dataclasses.replace(report, runs=[dataclasses.replace(run, layer_rows=differs + rows[4:])])
    )
    assert "folded into one row" not in md
