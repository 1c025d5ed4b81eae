"""The compare report (HTML and Markdown) for a ``ComparisonResult``.

Synthetic comparisons come from ``factories.make_comparison``, built by the real engine
(``compare_results``): same tokenizer and depth (base vs adapter), different depths (relative depth),
different tokenizers (no divergences), the same model twice, and hostile strings everywhere.
"""

from __future__ import annotations

import html
import json
import re

import pytest
from factories import HOSTILE_STRINGS, make_comparison, make_result
from helpers import (
    ALLOWED_TAGS,
    URL_ATTRIBUTES,
    digests_in_a_fresh_process,
    embedded_result,
    github_like,
    parse,
    sha256s,
)

from lazarus_report.render import ResultFormatError, load_result_file, write_report_files
from lazarus_report.render.formatting import visible_token
from lazarus_report.render.html import render_html
from lazarus_report.render.markdown import render_markdown
from lazarus_report.render.packing import PACKED_KIND
from lazarus_report.render.report_model import build_comparison_report
from lazarus_report.results.comparison import ComparisonResult

COMPARE_INTERACTIVE_BUDGET = 1_200_000  # bytes, 30-layer compare report (issue text)
COMPARE_STATIC_BUDGET = 300_000


@pytest.fixture(scope="module")
def comparisons() -> dict[str, ComparisonResult]:
    return {kind: make_comparison(kind) for kind in ("same_tokenizer", "depths", "tokenizers", "same_model", "hostile")}


@pytest.fixture(scope="module")
def pages(comparisons) -> dict[str, str]:
    out = {}
    for kind in ("same_tokenizer", "depths", "tokenizers", "hostile"):
        out[kind] = render_html(comparisons[kind])
        out[kind + "-static"] = render_html(comparisons[kind], static=True)
    return out


def _rows(rendered: str) -> list[list[str]]:
    return [re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", tr, re.S) for tr in re.findall(r"<tr>(.*?)</tr>", rendered, re.S)]


# --- what the page shows ------------------------------------------------------------------------


def test_page_names_both_models_and_has_every_section(pages, comparisons):
    doc = parse(pages["same_tokenizer"])
    assert doc.find("title").text() == "Logit lens: smollm2-135m-instruct vs smollm2-135m-instruct + adapters/weather"
    assert doc.find("h1").text() == "smollm2-135m-instruct vs smollm2-135m-instruct + adapters/weather"
    ids = [n.attrs.get("id") for n in doc.iter() if n.tag == "section"]
    assert ids == ["summary", "models", "prompt", "final", "charts", "comparison"]
    cards = doc.find("section", id="models").find_all("div", cls="model-card")
    assert len(cards) == 2
    first, second = (card.find("p", cls="pills").text() for card in cards)
    assert "llama" in first and "30 layers" in first and "float32 (dequantized from Q4_1)" in first
    assert "no adapter" in first and "adapter: adapters/weather" in second


def test_notes_are_shown_before_anything_else(pages, comparisons):
    doc = parse(pages["tokenizers"])
    notes = doc.find("section", id="models").find("div", cls="notes")
    assert notes.attrs.get("role") == "note"
    assert [li.text() for li in notes.find_all("li")] == comparisons["tokenizers"].notes
    assert "not possible" in notes.text() and "different depths (30 and 18 layers)" in notes.text()
    # No empty box when there is nothing to say.
    assert not parse(pages["same_tokenizer"]).find_all("div", cls="notes")


def test_same_tokens_are_shown_once(pages, comparisons):
    prompt = parse(pages["same_tokenizer"]).find("section", id="prompt")
    assert len(prompt.find_all("ol", cls="chips")) == 1
    assert "the same for both models" in prompt.text()
    chips = [li.find("span", cls="tok").text() for li in prompt.find("ol", cls="chips").find_all("li")]
    assert chips == [visible_token(t) for t in comparisons["same_tokenizer"].results[0].tokens]
    assert prompt.find("pre", cls="prompt").text() == comparisons["same_tokenizer"].results[0].formatted_prompt


def test_different_token_sequences_are_shown_per_model_and_said(pages, comparisons):
    prompt = parse(pages["tokenizers"]).find("section", id="prompt")
    assert (
        "The models saw different token sequences: M1 34 tokens, M2 14 tokens."
        in prompt.find("p", cls="warning").text()
    )
    lists = prompt.find_all("ol", cls="chips")
    assert [len(ol.find_all("li")) for ol in lists] == [34, 14]
    assert [p.text() for p in prompt.find_all("pre", cls="prompt")] == [
        r.formatted_prompt for r in comparisons["tokenizers"].results
    ]


def test_final_predictions_side_by_side_with_bars(pages, comparisons):
    final = parse(pages["same_tokenizer"]).find("section", id="final")
    sides = final.find("div", cls="pair").find_all("div", cls="side")
    assert len(sides) == 2
    for side, result in zip(sides, comparisons["same_tokenizer"].results):
        rows = side.find("tbody").find_all("tr")
        assert [r.find("span", cls="tok").text() for r in rows] == [
            visible_token(t.token) for t in result.final_prediction
        ]
        assert all(r.find_all("span", cls="bar") for r in rows)
    assert sides[1].find("caption").text().startswith("tuned · smollm2-135m-instruct + adapters/weather: top 10")


def test_summary_says_where_the_models_differ(pages):
    items = [li.text() for li in parse(pages["same_tokenizer"]).find("section", id="summary").find_all("li")]
    assert items[0] == "Final top-1: base ␣Paris at 77.2% · tuned ␣Paris at 52% (the same token)."
    assert (
        items[1]
        == "Emergence of the final top-1: base ␣Paris top-1 from layer 17 of 30; tuned ␣Paris top-1 from layer 23 of 30."
    )
    assert items[2].startswith(
        "Top-1 across layers: first differ at layer 0; the same again from layer 23 through the last layer"
    )
    assert items[3].startswith("Largest difference: layer 2, Jensen-Shannon 0.6357 nats (KL(base ‖ tuned) 5.1952")
    assert items[4] == "Tracked ␣Paris: base top-1 from layer 17, final 77.2%; tuned top-1 from layer 23, final 52%."
    assert not any(i.startswith("Note:") for i in items)  # the page shows notes in their own box


def test_layer_table_marks_first_disagreement_agreement_and_largest_change(pages, comparisons):
    c = comparisons["same_tokenizer"]
    table = parse(pages["same_tokenizer"]).find("table", cls="pairs")
    header = [th.text() for th in table.find("thead").find_all("th")]
    assert header == ["Layer", "base top-1", "tuned top-1", "Agree", "KL(base ‖ tuned)", "KL(tuned ‖ base)", "JS"]
    rows = table.find("tbody").find_all("tr")
    assert len(rows) == len(c.divergences) == 30
    marked = {
        r.find("th").text(): [b.text() for b in r.find_all("span", cls="badge")]
        for r in rows
        if r.find_all("span", cls="badge")
    }
    assert marked == {
        str(c.first_disagreement_layer): ["first disagreement"],
        str(c.largest_change_layer): ["largest JS"],
        str(c.agreement_from_layer): ["agree from here"],
    }
    d = c.divergences[5]
    cells = [td.text() for td in rows[5].find_all("td")]
    assert cells[-3:] == [f"{d.kl_12:.4f}", f"{d.kl_21:.4f}", f"{d.js:.4f}"]
    assert ("differ" in cells[2]) == (not d.top1_agree)


def test_divergence_columns_are_left_out_with_a_reason_for_different_tokenizers(pages):
    doc = parse(pages["tokenizers"])
    section = doc.find("section", id="comparison")
    header = [th.text() for th in section.find("table", cls="pairs").find("thead").find_all("th")]
    assert header == ["Layer (M1 / M2)", "Depth", "M1 top-1", "M2 top-1", "Agree"]
    assert "KL and Jensen-Shannon divergences are left out: the models use different tokenizers" in section.text()
    assert "No divergence chart." in doc.find("section", id="charts").text()
    assert [f.attrs["id"] for f in doc.find_all("figure", cls="chart")] == [
        "comparison-trajectory", "comparison-entropy-kl", "comparison-heatmap",
    ]  # fmt: skip


def test_relative_depth_pairs_are_labelled_with_both_layers(pages, comparisons):
    c = comparisons["depths"]
    rows = parse(pages["depths"]).find("table", cls="pairs").find("tbody").find_all("tr")
    assert [r.find("th").text() for r in rows] == [f"{d.layer1} / {d.layer2}" for d in c.divergences]
    assert rows[-1].find("td").text() == "1.00"  # the Depth column


def test_tracked_tokens_in_both_models(pages):
    table = parse(pages["tokenizers"]).find("table", cls="tracked-pairs")
    rows = table.find("tbody").find_all("tr")
    assert [r.find("th").text() for r in rows] == ["␣Paris", "␣Lyonnais"]
    lyonnais = [td.text() for td in rows[1].find_all("td")]
    assert lyonnais[0] == "␣Ly ⚠ split" and lyonnais[4] == "␣Lyonnais"  # split for M1 only
    assert lyonnais[1] == "never"


# --- charts ------------------------------------------------------------------------------------


def _spec(doc, chart_id: str) -> dict:
    return json.loads(doc.find("script", id=f"spec-{chart_id}").text())


def test_charts_in_page_order_each_with_svg_and_spec(pages):
    doc = parse(pages["same_tokenizer"])
    figures = doc.find_all("figure", cls="chart")
    assert [f.attrs["id"] for f in figures] == [
        "comparison-trajectory", "comparison-entropy-kl", "comparison-divergence", "comparison-heatmap",
    ]  # fmt: skip
    for fig in figures:
        assert len(fig.find("div", cls="chart-static").find_all("svg")) == 1
        assert _spec(doc, fig.attrs["id"])["$schema"].startswith("https://vega.github.io/schema/vega-lite/v6")


def test_trajectory_overlays_both_models_with_colour_by_model(pages, comparisons):
    spec = _spec(parse(pages["same_tokenizer"]), "comparison-trajectory")
    line = spec["vconcat"][0]["layer"][0]["encoding"]
    assert line["color"]["field"] == "m" and line["color"]["scale"]["domain"] == ["base", "tuned"]
    # The short tags in the legend; the full names, untruncated, in the chart's key.
    labels = comparisons["same_tokenizer"].labels
    assert spec["title"]["text"] == [f"base: {labels[0]}", f"tuned: {labels[1]}"] and spec["title"]["limit"] == 0
    assert line["strokeDash"]["scale"]["domain"] == ["␣Paris", "␣Lyonnais"]
    assert line["x"]["field"] == "l" and line["x"]["title"] is None
    rank = spec["vconcat"][1]["layer"][0]["encoding"]
    assert rank["y"]["scale"]["type"] == "log" and rank["y"]["scale"]["reverse"] is True
    assert rank["x"]["title"] == "Layer"
    assert {row["m"] for row in spec["datasets"]["keys"]} == {"base", "tuned"}
    assert len(spec["datasets"]["d"]) == 2 * 2 * 30  # two models x two tracked tokens x 30 layers


def test_different_depths_use_relative_depth_on_the_x_axis(pages):
    doc = parse(pages["depths"])
    for chart_id in ("comparison-trajectory", "comparison-entropy-kl", "comparison-divergence"):
        spec = _spec(doc, chart_id)
        x = (
            spec["vconcat"][1]["layer"][0]["encoding"]["x"]
            if "layer" in spec["vconcat"][1]
            else spec["vconcat"][1]["encoding"]["x"]
        )
        assert x["field"] == "x"
        assert x["title"] == "Relative depth, (layer + 1) / layers (30 and 18 layers)"
        assert x["scale"]["domain"] == [0, 1]
    depths = [row["x"] for row in _spec(doc, "comparison-entropy-kl")["datasets"]["d"]]
    assert max(depths) == 1.0 and min(depths) == round(1 / 30, 4)
    assert "relative-depth axis" in doc.find("section", id="charts").text()


def test_divergence_chart_marks_the_largest_change(pages, comparisons):
    c = comparisons["same_tokenizer"]
    spec = _spec(parse(pages["same_tokenizer"]), "comparison-divergence")
    assert spec["datasets"]["marks"] == [
        {"l": c.largest_change_layer, "note": f"largest JS: layer {c.largest_change_layer}"}
    ]
    js, kl = spec["vconcat"]
    assert js["layer"][0]["encoding"]["y"]["field"] == "js"
    assert kl["layer"][0]["transform"][0]["fold"] == ["KL(base || tuned)", "KL(tuned || base)"]
    rows = spec["datasets"]["d"]
    assert [r["js"] for r in rows] == [round(d.js, 4) for d in c.divergences]


def test_same_model_says_every_difference_is_zero(comparisons):
    c = comparisons["same_model"]
    doc = parse(render_html(c, static=True))
    assert "Both sides are the same model" in doc.find("div", cls="notes").text()
    items = [li.text() for li in doc.find("section", id="summary").find_all("li")]
    assert "Top-1 across layers: the same at every compared layer (30)." in items
    assert "Divergences: zero at every layer (the same model on both sides)." in items
    assert not doc.find("table", cls="pairs").find_all("span", cls="badge")


# --- the result inside the report ---------------------------------------------------------------


def test_the_whole_comparison_is_embedded_once(pages, comparisons):
    for kind in ("same_tokenizer", "tokenizers", "hostile"):
        for variant in (kind, kind + "-static"):
            doc = parse(pages[variant])
            scripts = [s for s in doc.find_all("script") if s.attrs.get("id", "").startswith("lazarus-result")]
            assert len(scripts) == 1
            packed = json.loads(scripts[0].text())
            assert packed["kind"] == PACKED_KIND and packed["contents"] == "lazarus-report/comparison"
            assert embedded_result(doc) == comparisons[kind]


def test_report_render_from_the_html_alone_is_byte_identical(tmp_path, monkeypatch, comparisons, pages):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    c = comparisons["tokenizers"]
    for name, static in (("compare.html", False), ("compare-static.html", True)):
        source = tmp_path / name
        source.write_text(render_html(c, static=static), encoding="utf-8")
        loaded = load_result_file(source)
        assert isinstance(loaded, ComparisonResult) and loaded == c
        write_report_files(loaded, html_path=tmp_path / f"re-{name}", markdown_path=tmp_path / "x.md", static=static)
        assert (tmp_path / f"re-{name}").read_bytes() == source.read_bytes()
        assert (tmp_path / "x.md").read_text(encoding="utf-8") == render_markdown(c)


def test_comparison_json_loads_too(tmp_path, comparisons):
    path = tmp_path / "c.json"
    comparisons["depths"].save(path)
    assert load_result_file(path) == comparisons["depths"]


def test_damaged_embedded_comparison_is_a_clear_error(tmp_path, pages):
    page = pages["depths-static"]
    start = page.index('"data":"') + len('"data":"')
    path = tmp_path / "broken.html"
    path.write_text(page[:start] + "!!!" + page[start + 3 :], encoding="utf-8")
    with pytest.raises(ResultFormatError, match="damaged"):
        load_result_file(path)


def test_render_refuses_other_objects():
    with pytest.raises(TypeError):
        render_html({"kind": "lazarus-report/comparison"})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        render_markdown([make_result()])  # type: ignore[arg-type]


# --- Markdown --------------------------------------------------------------------------------------


def test_markdown_is_short_and_says_what_matters(comparisons):
    md = render_markdown(comparisons["tokenizers"])
    assert md.startswith("# Logit lens: smollm2-135m-instruct vs gemma3-270m\n")
    summary = md.split("## Summary\n")[1].split("\n## ")[0]
    assert "- **Final top-1:** M1 `␣Paris` at 77.2% · M2 `␣Paris` at 41% (the same token)." in summary
    assert "M2 `␣Paris` top-1 from layer 13 of 18" in summary
    assert "first differ at M1 layer 1 / M2 layer 0" in summary
    assert "- **Divergences:** not available (different tokenizers)." in summary
    assert summary.count("- **Note:**") == 3
    # Fits a pull-request comment, even with 30 compared layers.
    longest = render_markdown(comparisons["same_tokenizer"])
    assert len(longest.splitlines()) < 80 and len(longest) < 6_000


def test_markdown_tables_have_consistent_cells(comparisons):
    for kind in ("same_tokenizer", "tokenizers", "hostile"):
        rendered = github_like().render(render_markdown(comparisons[kind]))
        tables = [_rows(t) for t in re.findall(r"<table>.*?</table>", rendered, re.S)]
        assert [len(t) - 1 for t in tables] == [5, len(comparisons[kind].tracked), len(comparisons[kind].divergences)]
        for table in tables:
            assert len({len(r) for r in table}) == 1


def test_the_library_leaves_the_github_step_summary_alone(tmp_path, monkeypatch, comparisons):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    write_report_files(comparisons["depths"], markdown_path=tmp_path / "c.md")
    assert (tmp_path / "c.md").read_text(encoding="utf-8") == render_markdown(comparisons["depths"])
    assert not summary.exists()  # appended by the command line (tests/test_bad_input.py), not here


def test_hostile_markdown_injects_nothing(comparisons):
    md = render_markdown(comparisons["hostile"])
    rendered = github_like().render(md)
    tags = set(re.findall(r"<([a-zA-Z][a-zA-Z0-9]*)", rendered))
    assert tags <= {"h1", "h2", "p", "strong", "code", "ul", "li", "table", "thead", "tbody", "tr", "th", "td"}, tags
    assert "href" not in rendered and "<em>" not in rendered
    assert "{{ 7*7 }}" in html.unescape(rendered)
    md.encode("utf-8")


# --- safety ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["hostile", "hostile-static"])
def test_hostile_comparison_injects_nothing(pages, variant, comparisons):
    page = pages[variant]
    page.encode("utf-8")  # strict: no lone surrogates
    doc = parse(page)
    assert {n.tag for n in doc.iter()} - {"#document"} <= ALLOWED_TAGS
    for node in doc.iter():
        for name, value in node.attrs.items():
            assert not name.startswith("on")
            assert not (value or "").strip().lower().startswith("javascript:")
            if name in URL_ATTRIBUTES:
                assert (value or "").startswith("#")
    scripts = doc.find_all("script")
    assert len(scripts) == (1 if variant.endswith("static") else 1 + 4 + 2)
    assert doc.find("h1").text() == ("<b>evil</b>|`model`{{ 7*7 }}⟨U+202E⟩⟨U+D800⟩ vs </script><b>two</b>|`x`⟨U+202E⟩")
    assert "\u202e" not in "".join(n.text() for n in doc.find_all("section"))
    cards = doc.find("section", id="models").text()
    assert "adapter: <img src=x onerror=alert(3)>" in cards
    chips = [li.find("span", cls="tok").text() for li in doc.find("ol", cls="chips").find_all("li")]
    for s in HOSTILE_STRINGS:
        assert visible_token(s) in chips
    for spec in doc.find_all("script", type="application/json"):
        assert "<" not in spec.text() and ">" not in spec.text()


def test_hostile_strings_stay_text_in_the_drawn_heatmap(pages):
    svg = parse(pages["hostile-static"]).find("figure", id="comparison-heatmap").find("svg")
    texts = [t.text() for t in svg.find_all("text")]
    assert "<img␣sr…" in texts  # the token, shortened to fit a cell, as text
    assert any(t.startswith("M2 · </script><b>two</b>") for t in texts)


# --- determinism, size ----------------------------------------------------------------------------


@pytest.mark.slow  # fresh processes
def test_compare_output_is_byte_identical_across_processes(comparisons):
    pages = "[render_html(make_comparison('depths'), static=s) for s in (False, True)]"
    here = sha256s(render_html(comparisons["depths"], static=s) for s in (False, True))
    assert digests_in_a_fresh_process(pages, warm_up=False, hash_seed="1") == here
    assert digests_in_a_fresh_process(pages, warm_up=True, hash_seed="2") == here


def test_compare_report_sizes_stay_within_budget(pages):
    interactive = len(pages["same_tokenizer"].encode("utf-8"))
    static = len(pages["same_tokenizer-static"].encode("utf-8"))
    print(f"30-layer compare report: interactive {interactive:,} bytes, static {static:,} bytes")
    assert interactive <= COMPARE_INTERACTIVE_BUDGET
    assert static <= COMPARE_STATIC_BUDGET


def test_report_model_of_a_comparison(comparisons):
    report = build_comparison_report(comparisons["depths"])
    c = report.comparison
    assert c is not None and [r.key for r in report.runs] == ["run0", "run1"]
    assert c.alignment == "relative_depth" and c.x_title.startswith("Relative depth")
    assert c.x_values[1][-1] == 1.0 and c.x_values[0][0] == 1 / 30
    assert c.rows[3].place == f"M1 layer {c.rows[3].layer1} / M2 layer {c.rows[3].layer2}"
    assert report.runs[0].grid is not None and len(report.runs[0].grid.positions) == 8  # smaller heatmaps
    tokenizers = build_comparison_report(comparisons["tokenizers"]).comparison
    assert tokenizers is not None and not tokenizers.has_divergences and tokenizers.largest_change is None


def test_every_string_in_a_hostile_comparison_model_is_printable_utf8(comparisons):
    from test_render_model import _strings

    for s in _strings(build_comparison_report(comparisons["hostile"])):
        s.encode("utf-8")  # strict
        assert "\u202e" not in s
