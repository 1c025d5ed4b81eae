"""'Where the models part' in compare reports (HTML, Markdown, text): the sentence first, the change map with
flips outlined and adapted layers shaded, promoted/suppressed tables, the attribution table; escaped."""

from __future__ import annotations

import pytest
from factories import with_hostile_change
from test_attribution import N_LAYERS, PROMPT, write_tiny_adapter
from test_render_html import ALLOWED_TAGS, parse
from tiny_models import build_tiny_model

from lazarus_report.commands.compare import compare_models
from lazarus_report.core.config import AnalysisConfig, LayerStrategy
from lazarus_report.render.formatting import visible_token
from lazarus_report.render.html import render_html
from lazarus_report.render.markdown import render_markdown
from lazarus_report.render.text import render_comparison_text
from lazarus_report.results.comparison import ComparisonResult

CONFIG = AnalysisConfig(layer_strategy=LayerStrategy.ALL, use_chat_template=False, track_tokens=[" Paris"])


def tiny_change_comparison(root) -> ComparisonResult:
    """base vs base + LoRA on a tiny model, with the change map and causal attribution."""
    build_tiny_model("llama", root / "a", seed=1, num_hidden_layers=N_LAYERS)
    adapter = write_tiny_adapter(str(root / "a"), root / "lora", num_layers=3, zero_b=set())
    return compare_models(str(root / "a"), str(root / "a"), PROMPT, CONFIG, adapter2=str(adapter), attribution=True)


@pytest.fixture(scope="module")
def comparison(tmp_path_factory) -> ComparisonResult:
    return tiny_change_comparison(tmp_path_factory.mktemp("render-change"))


@pytest.fixture(scope="module")
def page(comparison) -> str:
    return render_html(comparison)


def test_change_section_comes_first_and_says_the_sentence(page, comparison):
    doc = parse(page)
    ids = [s.attrs.get("id") for s in doc.find_all("section")]
    assert ids.index("summary") < ids.index("change") < ids.index("models")  # the verdict first (issue 23)
    s = comparison.change_summary
    assert s.identical_through == 1 and s.diverges_from == 2  # the adapter covers layers 2-4
    sentence = doc.find("p", cls="change-sentence").text()
    assert sentence.startswith("Identical through layer 1 (JS exactly 0); diverges from layer 2; decisive at layer")
    assert "Adapted layers (adapter config): 2-4." in sentence


def test_change_map_cells_flips_and_adapted_rows(page, comparison):
    m = comparison.change_map
    table = parse(page).find("table", cls="changemap")
    rows = table.find("tbody").find_all("tr")
    shown = [r for r in rows if "folded" not in r.attrs.get("class", "")]
    assert [int(r.find("th").text()) for r in shown] == [4, 3, 2]  # last layer on top; 0-1 folded
    assert rows[-1].find("th").text() == "0-1" and "JS exactly 0" in rows[-1].text()
    assert all("adapted" in r.attrs.get("class", "") for r in shown)
    flips = sum(m.flips[layer][j] for layer in (2, 3, 4) for j in range(len(m.positions)))
    assert len(table.find_all("td", cls="flip")) == flips
    cell = shown[0].find_all("td")[0]  # the last position comes first (issue 23)
    title = cell.attrs["title"]
    top1, top2 = m.tops1[4][-1][0], m.tops2[4][-1][0]
    assert f"JS {m.js[4][-1]:.4g} nats" in title
    # base vs base + adapter: the sides are called base and tuned (two different models: M1 and M2)
    assert f"base: {top1.token!a} {top1.prob1:.3f}" in title and f"tuned: {top2.token!a} {top2.prob2:.3f}" in title
    heads = [th.text() for th in table.find("thead").find_all("th")][1:]
    assert len(heads) == len(m.positions) and "last" in heads[0]


def test_promoted_suppressed_and_attribution_tables(page, comparison):
    doc = parse(page)
    shifts = [t for t in doc.find_all("table", cls="shifts") if t.find_all("caption")]  # not the "more" rows
    assert len(shifts) == 2 * len(comparison.token_shifts)
    first = shifts[0].find("tbody").find_all("tr")[0]
    token = comparison.token_shifts[0].promoted[0].token  # one notation (issue 23): visible, exact in the title
    assert first.find("th").text() == visible_token(token)
    assert first.find("th").find("code").attrs["title"] == ascii(token)
    table = doc.find("table", cls="attribution")
    rows = table.find("tbody").find_all("tr")
    a = comparison.attribution
    assert [int(r.find("th").text().split()[0]) for r in rows] == [2, 3, 4]  # the adapted layers
    carriers = [int(r.find("th").text().split()[0]) for r in rows if "carrier" in r.attrs.get("class", "")]
    assert carriers == a.carriers
    assert "Layers 0-1: no adapter modules, effect 0" in doc.find("section", id="change").text()
    for t in doc.find_all("table", cls="shifts"):  # both probabilities below 0.01%: left out (issue 23)
        for row in t.find("tbody").find_all("tr"):
            cells = [td.text() for td in row.find_all("td")]
            assert len(cells) == 1 or cells[:2] != ["<0.01%", "<0.01%"]


def test_markdown_and_text_carry_the_sentence_and_tables(comparison):
    md = render_markdown(comparison)
    assert "- **Where they part:** Identical through layer 1 (JS exactly 0); diverges from layer 2" in md
    assert "## Where the models part" in md and "### Which layers cause the change" in md
    assert "| ▸ 4 |" in md and "| 1 |" in md  # the compact map: from the last identical layer up
    text = render_comparison_text(comparison)
    assert "=== Where the models part ===" in text
    assert "Identical through layer 1 (JS exactly 0); diverges from layer 2" in text
    assert "Attribution (adapter-ablation):" in text


def test_hostile_tokens_stay_text(comparison):
    c = with_hostile_change(comparison)
    page = render_html(c)
    doc = parse(page)
    assert {n.tag for n in doc.iter()} - {"#document"} <= ALLOWED_TAGS
    assert "<img src=x" not in page and 'onmouseover="alert' not in page
    # Markdown: tokens are code spans, inert even for a renderer that passes raw HTML through.
    from markdown_it import MarkdownIt

    rendered = MarkdownIt("commonmark").enable("table").render(render_markdown(c))
    assert "<img" not in rendered and "<script" not in rendered


def test_sides_are_base_and_tuned_only_for_a_model_and_its_adapter(comparison, tmp_path):
    from lazarus_report.render.report_model import build_comparison_report, comparison_tags

    assert comparison_tags(comparison) == ["base", "tuned"]
    assert build_comparison_report(comparison).comparison.tags == ["base", "tuned"]
    assert "tuned against base:" in render_comparison_text(comparison)
    build_tiny_model("llama", tmp_path / "b", seed=2, num_hidden_layers=N_LAYERS)
    two = compare_models(
        comparison.results[0].model.path, str(tmp_path / "b"), PROMPT, CONFIG
    )  # two models, no adapter
    assert comparison_tags(two) == ["M1", "M2"] and build_comparison_report(two).comparison.tags == ["M1", "M2"]
    assert "M2 against M1:" in render_comparison_text(two)


def test_change_map_column_heads_use_the_visible_token_notation(page, comparison):
    # One token notation (issue 23): ␣ for spaces in the heads, the exact spelling in the title.
    doc = parse(page)
    table = next(t for t in doc.find_all("table") if "Change map" in t.text())
    heads = [c for th in table.find("thead").find_all("th") for c in th.find_all("code")]
    m = comparison.change_map
    assert heads, "the change map has column heads"
    shown = {visible_token(t): ascii(t) for t in m.tokens}
    for code in heads:
        assert code.text() in shown and code.attrs["title"] == shown[code.text()]
    assert not any(code.text().startswith("'") for code in heads)
