"""The answer strip (issue 19) in HTML reports: the report model's values, escaping, static and phone pages,
the comparison's alignment, and a real browser (marker ``browser``: one Chromium for the module)."""

from __future__ import annotations

import bisect
import dataclasses
import math
import os
import re
from pathlib import Path

import pytest
from factories import (
    FILLER_TOKENS,
    _hostile_lens_record,
    make_answer_comparison,
    make_answer_result,
    make_comparison,
    make_hostile_answer_result,
    make_result,
    with_answer,
)

from lazarus_report.render.answer_view import (
    STRIP_BLOCK_TOKENS,
    STRIP_MAX_TOKENS,
    STRIP_NARROW_TOKENS,
    cell_label,
    signed,
)
from lazarus_report.render.charts.style import HEATMAP_COLORS, HEATMAP_DARK_TEXT_ABOVE, HEATMAP_THRESHOLDS
from lazarus_report.render.formatting import fmt_prob, visible_token
from lazarus_report.render.html import render_html
from lazarus_report.render.report_model import build_comparison_report, build_report

RESULT_JSON = re.compile(r'<script type="application/json" id="lazarus-result">.*?</script>', re.S)


def _page(result, *, static: bool = True) -> str:
    """The rendered page without its embedded result JSON (which holds every string too, JSON-escaped)."""
    return RESULT_JSON.sub("", render_html(result, static=static))


def _cells(page: str) -> list[tuple[str, str, str]]:
    """(class, title, text) of every strip cell in a page."""
    return re.findall(r'<td class="(ac [^"]*)" title="([^"]*)">([^<]*)</td>', page)


# --- the report model -------------------------------------------------------------


def _layers(row):
    """The layers a strip row stands for, the top one first (a folded row stands for a run)."""
    return list(range(row.layer, (row.layer if row.down_to is None else row.down_to) - 1, -1))


def test_the_strip_holds_every_token_and_layer_with_the_lens_probability():
    result = make_answer_result()
    answer = result.answer
    view = build_report([result]).runs[0].answer
    assert view is not None
    assert view.num_tokens == view.shown_tokens == len(answer.tokens) == 10
    assert view.text == answer.text
    assert not view.generated and view.stop is None
    (block,) = view.blocks
    assert [t.token.visible for t in block.tokens] == [visible_token(t.token) for t in answer.tokens]
    # Rows: every captured layer, the last on top (runs of layers that read the same folded into one row); each
    # cell the token's probability at every layer its row stands for.
    assert [layer for row in block.rows for layer in _layers(row)] == list(reversed(result.captured_layers))
    assert block.rows[0].is_final and not any(row.is_final for row in block.rows[1:])
    for row in block.rows:
        for layer in _layers(row):
            i = result.captured_layers.index(layer)
            assert [c.text for c in row.cells] == [cell_label(t.probs[i]) for t in answer.tokens]
    final_row = block.rows[0]
    assert final_row.cells[0].text == f"{100 * answer.tokens[0].probs[-1]:.0f}"


def test_cells_use_the_heatmap_bins_and_mark_top1_and_emergence():
    result = make_answer_result()
    view = build_report([result]).runs[0].answer
    seen_bins = set()
    for row in view.blocks[0].rows:
        i = result.captured_layers.index(row.layer)
        for t, cell in zip(result.answer.tokens, row.cells):
            classes = cell.cls.split()
            b = bisect.bisect_right(HEATMAP_THRESHOLDS, round(t.probs[i], 4))
            seen_bins.add(b)
            assert classes[:2] == ["ac", f"ab{b}"]
            assert ("d" in classes) == (t.probs[i] > HEATMAP_DARK_TEXT_ABOVE)
            assert ("t1" in classes) == (t.ranks[i] == 1)
            assert ("em" in classes) == (row.layer == t.emergence_layer)
    assert len(seen_bins) >= 8  # the synthetic answer spans the scale
    page = _page(result)
    for b, color in enumerate(HEATMAP_COLORS):
        assert f"table.strip td.ab{b} {{ background-color: {color}; }}" in page


def test_hover_names_the_layer_the_rank_and_the_top3():
    result = make_answer_result()
    view = build_report([result]).runs[0].answer
    token = result.answer.tokens[3]
    i = len(result.captured_layers) - 1
    title = view.blocks[0].rows[0].cells[3].title
    top3 = token.top_tokens[i][:3]
    assert title.startswith(f"Layer {result.captured_layers[i]} (final): ␣is ")
    assert f"rank {token.ranks[i]}" in title
    assert title.split("\n")[1] == "Top 3: " + " · ".join(
        f"{visible_token(tp.token)} {fmt_prob(tp.prob)}" for tp in top3
    )


def test_emergence_divergence_and_sequence_logprob():
    result = make_answer_result()
    answer = result.answer
    view = build_report([result]).runs[0].answer
    for t, st in zip(answer.tokens, view.tokens):
        assert st.emergence == (str(t.emergence_layer) if t.emergence_layer is not None else "never")
    assert answer.divergence_index == 3
    d = view.divergence
    assert d is not None and d.number == 4 and d.diverges and d.token.visible == "␣is"
    assert d.own is not None and d.own.visible == "␣was"
    assert [t.diverges for t in view.tokens] == [k == 3 for k in range(10)]
    assert view.sequence_logprob == pytest.approx(answer.sequence_logprob)
    assert view.sequence_prob == pytest.approx(math.exp(answer.sequence_logprob))
    assert view.mean_logprob == pytest.approx(answer.sequence_logprob / 10)
    page = _page(result)
    assert "The first token the model would not write is token 4," in page
    assert f"<strong>{answer.sequence_logprob:.2f}</strong> nats" in page


def test_an_answer_the_model_writes_itself_says_so():
    result = with_answer(make_result(), source="generated", stop_reason="eos")
    view = build_report([result]).runs[0].answer
    assert view.divergence is None and view.generated
    assert view.stop == "it stopped at the end-of-sequence token"
    assert all(t.own is None for t in view.tokens)
    page = _page(result)
    assert (
        "<strong>Generated:</strong> the model's own greedy answer, 10 tokens; it stopped at the end-of-sequence token."
        in page
    )
    assert "Greedy decoding writes this whole answer" in page


def test_long_answers_come_in_blocks_and_are_capped():
    tokens = [FILLER_TOKENS[k % len(FILLER_TOKENS)] for k in range(40)]
    view = build_report([with_answer(make_result(num_layers=6), tokens=tokens)]).runs[0].answer
    assert [len(b.tokens) for b in view.blocks] == [16, 16, 8]
    assert view.blocks[1].caption.startswith("Answer tokens 17-32 of 40")
    assert [t.number for t in view.blocks[2].tokens] == list(range(33, 41))
    assert all(len(row.cells) == len(b.tokens) for b in view.blocks for row in b.rows)
    # The same strip in narrow blocks (a phone's): the same tokens and cells, STRIP_NARROW_TOKENS a block.
    assert [len(b.tokens) for b in view.narrow_blocks] == [5] * 8 and STRIP_NARROW_TOKENS == 5
    assert view.narrow_blocks[1].caption.startswith("Answer tokens 6-10 of 40")
    assert [t for b in view.narrow_blocks for t in b.tokens] == [t for b in view.blocks for t in b.tokens]
    narrow_cells = [[c for b in view.narrow_blocks for c in b.rows[i].cells] for i in range(len(view.blocks[0].rows))]
    wide_cells = [[c for b in view.blocks for c in b.rows[i].cells] for i in range(len(view.blocks[0].rows))]
    assert narrow_cells == wide_cells
    page = _page(with_answer(make_result(num_layers=6), tokens=tokens))
    ids = re.findall(r' id="([^"]+)"', page)
    assert len(ids) == len(set(ids))  # the narrow blocks' captions have their own ids
    many = [FILLER_TOKENS[k % len(FILLER_TOKENS)] for k in range(STRIP_MAX_TOKENS + 7)]
    result = with_answer(make_result(num_layers=6), tokens=many)
    view = build_report([result]).runs[0].answer
    assert view.shown_tokens == STRIP_MAX_TOKENS and view.num_tokens == STRIP_MAX_TOKENS + 7
    assert len(view.blocks) == math.ceil(STRIP_MAX_TOKENS / STRIP_BLOCK_TOKENS)
    assert f"The strip shows the first {STRIP_MAX_TOKENS} of {STRIP_MAX_TOKENS + 7} answer tokens" in _page(result)


def test_unreliable_layers_are_marked_as_in_the_layer_table():
    result = make_answer_result()
    result = dataclasses.replace(result, lens=_hostile_lens_record(result.model.num_layers))
    bad = set(result.unreliable_layers)
    assert bad and bad != set(result.captured_layers)
    view = build_report([result]).runs[0].answer
    assert view.has_unreliable
    marked = [row for row in view.blocks[0].rows if row.unreliable]
    assert {layer for row in marked for layer in _layers(row)} == bad
    page = _page(result)
    strip = page[page.index('<table class="strip">') :]
    strip = strip[: strip.index("</table>")]
    assert strip.count('<tr class="unreliable">') == len(marked)
    assert strip.count('title="unreliable lens reading at this layer">≈') == len(marked)
    titles = [title for _, title, _ in _cells(strip) if "unreliable lens reading" in title]
    assert len(titles) == len(marked) * len(result.answer.tokens)


def test_the_logit_view_of_a_learned_lens_has_no_strip():
    result = make_answer_result()
    from lazarus_report.results.analysis import LensView, logit_view_record

    record = _hostile_lens_record(result.model.num_layers)
    view = LensView(logit_view_record(record), result.layer_predictions, result.token_evolutions, result.grid)
    result = dataclasses.replace(result, lens=record, lens_views=[view])
    run = build_report([result]).runs[0]
    assert run.answer is not None and run.lens_views and run.lens_views[0].answer is None
    assert _page(result).count('<table class="strip">') == 1 + 2  # one wide block, two narrow ones (a phone's)


def test_small_formatters():
    assert [cell_label(p) for p in (None, 0.0, 0.001, 0.004999, 0.005, 0.505, 0.934, 0.995, 0.9951, 1.0)] == [
        "–", "0", "<1", "<1", "1", "50", "93", ">99", ">99", ">99"
    ]  # fmt: skip
    assert [signed(x) for x in (1.254, -5.687, 0.0, -0.001, None, float("nan"))] == [
        "+1.25", "\u22125.69", "±0.00", "±0.00", "n/a", "n/a"
    ]  # fmt: skip


# --- pages ------------------------------------------------------------------------


def test_a_page_without_an_answer_has_no_strip_and_no_strip_styles():
    for result in (make_result(), make_comparison("same_tokenizer")):
        page = render_html(result, static=True)
        assert "strip" not in page and "answer-lead" not in page
        report = build_report([result]) if not hasattr(result, "results") else build_comparison_report(result)
        assert report.answer_palette == []
        assert all(run.answer is None for run in report.runs)


@pytest.mark.parametrize("static", [True, False])
def test_the_page_holds_the_strip_with_and_without_scripts(static):
    result = make_answer_result()
    page = _page(result, static=static)
    assert page.count('<table class="strip">') == 1 + 2  # one wide block, two narrow ones (a phone's)
    view = build_report([result]).runs[0].answer
    assert len(view.blocks[0].rows) < len(result.captured_layers)  # the synthetic answer's early layers read the same
    cells = sum(len(b.rows) * len(b.tokens) for b in view.blocks + view.narrow_blocks)
    assert len(_cells(page)) == cells  # the strip twice: wide and narrow blocks
    assert 'id="run0-answer"' in page
    assert page.index('id="run0-final"') < page.index('id="run0-answer"') < page.index('id="run0-charts"')
    if static:
        assert "<script" not in page  # nothing runs: the strip is plain HTML, its hover a title attribute


def test_hostile_answer_strings_stay_inert():
    result = make_hostile_answer_result()
    page = _page(result)
    for bad in ("</td><script>", "<script>alert(1)", "<img src=x", "</th><b>x</b>", "<b>merged</b>", '" onmouseover='):
        assert bad not in page
    assert "&lt;/td&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;merged&lt;/b&gt;⟨U+202E⟩" in page  # the boundary note, escaped and visible
    assert "\u202e" not in page and "\ud800" not in page.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    # Every cell title is one attribute: no quote inside it ends it early.
    for _, title, _ in _cells(page):
        assert '"' not in title and "<" not in title
    view = build_report([result]).runs[0].answer
    assert view.tokens[-1].token.visible == "</td><script>alert(1)</script>"  # the model holds data, unescaped
    page.encode("utf-8")  # every string encodes


# --- comparisons ------------------------------------------------------------------


def test_compare_aligns_the_same_answer_token_by_token_with_the_change():
    comparison = make_answer_comparison("aligned")
    r1, r2 = (r.answer for r in comparison.results)
    c = build_comparison_report(comparison).comparison
    ca = c.answer
    assert ca is not None and ca.aligned and ca.apart_reason is None and ca.cross == []
    (block,) = ca.blocks
    assert [t.token.visible for t in block.tokens] == [visible_token(t.token) for t in r1.tokens]
    for t, a, b in zip(block.tokens, r1.tokens, r2.tokens):
        assert t.final_probs == [a.probs[-1], b.probs[-1]]
        assert t.change == pytest.approx(b.probs[-1] - a.probs[-1])
        assert [m.emergence for m in t.marks] == [
            str(x.emergence_layer) if x.emergence_layer is not None else "never" for x in (a, b)
        ]
    assert [m.diverges for m in block.tokens[2].marks] == [False, True]  # model 2 would not write token 3
    assert block.tokens[2].marks[1].own.visible == "␣was"
    assert [[x for row in g for x in _layers(row)] for g in block.groups] == [
        list(reversed(r.captured_layers)) for r in comparison.results
    ]
    assert ca.logprob_change == pytest.approx(r2.sequence_logprob - r1.sequence_logprob)
    factor = math.exp(abs(ca.logprob_change))
    assert ca.likelihood_ratio == f"tuned finds it {factor:,.3g} times less likely than base"
    page = _page(comparison)
    assert page.count('<table class="strip aligned">') == 1 + 2 and '<table class="strip">' not in page
    assert f"<strong>{ca.logprob_change_label}</strong> nats of log-probability" in page
    change = block.tokens[0]
    assert f"{100 * change.final_probs[0]:.3g}% → {100 * change.final_probs[1]:.3g}%" in page
    assert page.index('id="final"') < page.index('id="answer"')


def test_compare_shows_different_answers_side_by_side_with_the_cross_logprobs():
    comparison = make_answer_comparison("generated")
    ca = build_comparison_report(comparison).comparison.answer
    assert ca is not None and not ca.aligned and ca.blocks == []
    assert ca.apart_reason == "the two models wrote different answers"
    assert [(x.reader, x.writer, x.logprob) for x in ca.cross] == [("base", "tuned", -23.5), ("tuned", "base", -17.25)]
    assert [x.own_logprob for x in ca.cross] == [s.sequence_logprob for s in ca.sides]
    page = _page(comparison)
    assert page.count('<table class="strip">') == 2 + 3  # a wide block a side, and their narrow ones (2 and 1)
    assert "gives tuned's answer a log-probability of <strong>-23.50</strong> nats" in page
    assert "it stopped at the token limit" in page and "it stopped at the end-of-sequence token" in page


def test_compare_with_one_answer_or_other_tokens_stands_apart():
    ca = build_comparison_report(make_answer_comparison("one")).comparison.answer
    assert ca is not None and not ca.aligned and ca.sides[1] is None and ca.apart_reason == "only base has an answer"
    assert "No answer in this run." in _page(make_answer_comparison("one"))
    comparison = make_answer_comparison("aligned")
    other = dataclasses.replace(comparison, same_tokenizer=False)
    ca = build_comparison_report(other).comparison.answer
    assert not ca.aligned and ca.apart_reason == "the models split the answer into different tokens"
    # answer_cross is shown only when the answers stand apart (aligned answers have each other's numbers).
    with_cross = dataclasses.replace(comparison, answer_cross=[-1.0, -2.0])
    assert build_comparison_report(with_cross).comparison.answer.cross == []


def test_compare_hostile_answers_stay_inert():
    comparison = make_answer_comparison("aligned")
    hostile = make_hostile_answer_result().answer
    results = [
        dataclasses.replace(r, answer=dataclasses.replace(hostile, start=len(r.token_ids))) for r in comparison.results
    ]
    page = _page(dataclasses.replace(comparison, results=results))
    assert page.count('<table class="strip aligned">') == 2 + 4  # 18 tokens: two blocks, four narrow ones
    assert "</td><script>" not in page and "<img src=x" not in page
    assert page.count("&lt;/td&gt;&lt;script&gt;alert(1)&lt;/script&gt;") >= 2


# --- a real browser -----------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
needs_chromium = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} not installed (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def chromium():
    """One headless Chromium for the module (contexts per viewport)."""
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def answer_pages(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("answer-pages")
    pages = {}
    tokens = [FILLER_TOKENS[k % len(FILLER_TOKENS)] + "_long_token" * (k % 3) for k in range(40)]
    for name, result in (
        ("answer", make_answer_result()),
        ("long", with_answer(make_result(), tokens=tokens, source="generated", stop_reason="length")),
        ("hostile", make_hostile_answer_result()),
        ("compare", make_answer_comparison("aligned")),
        ("compare-generated", make_answer_comparison("generated")),
    ):
        for static in (False, True):
            path = out / f"{name}{'-static' if static else ''}.html"
            path.write_text(render_html(result, static=static), encoding="utf-8")
            pages[path.stem] = path
    return pages


def _open(chromium, path: Path, *, width: int, scheme: str = "light", javascript: bool = True):
    ctx = chromium.new_context(
        viewport={"width": width, "height": 900}, color_scheme=scheme, java_script_enabled=javascript, offline=True
    )
    page = ctx.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: (errors.append("dialog: " + d.message), d.dismiss()))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return ctx, page, errors


@pytest.mark.browser
@needs_chromium
@pytest.mark.parametrize("width", [1280, 390])
@pytest.mark.parametrize("name", ["answer", "long", "hostile", "compare", "compare-generated"])
@pytest.mark.parametrize("static", [False, True])
def test_the_strip_renders_without_page_scroll(chromium, answer_pages, name, width, static):
    ctx, page, errors = _open(chromium, answer_pages[name + ("-static" if static else "")], width=width)
    try:
        strips = page.locator("table.strip")
        assert strips.count() >= 1
        assert page.evaluate("document.documentElement.scrollWidth") <= width  # no sideways scroll of the page
        shown = page.locator(".strip-scroll:visible")  # the wide blocks or (a phone) the narrow ones
        assert shown.count() >= 1
        for i in range(shown.count()):
            box = shown.nth(i).bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5
        cell = page.locator("table.strip td.ac").first
        assert cell.get_attribute("title").startswith("Layer ")
        colour = cell.evaluate("e => getComputedStyle(e).backgroundColor")
        assert colour not in ("rgba(0, 0, 0, 0)", "transparent")
        assert errors == []
    finally:
        ctx.close()


@pytest.mark.browser
@needs_chromium
def test_a_phone_shows_narrow_blocks_that_fit_and_paper_the_wide_ones(chromium, answer_pages):
    # 40 tokens, some long ("x_long_token_long_token"): in blocks of 16 a strip is 2.7x a phone's width; a phone
    # shows the same strip in blocks of STRIP_NARROW_TOKENS instead (pure CSS: the static page too), which fit.
    ctx, page, errors = _open(chromium, answer_pages["long-static"], width=390, javascript=False)
    try:
        wide, narrow = page.locator(".strip-wide table.strip"), page.locator(".strip-narrow table.strip")
        assert wide.count() == math.ceil(40 / STRIP_BLOCK_TOKENS)
        assert narrow.count() == math.ceil(40 / STRIP_NARROW_TOKENS)
        assert all(not wide.nth(i).is_visible() for i in range(wide.count()))
        boxes = page.evaluate(
            "Array.from(document.querySelectorAll('.strip-narrow .strip-scroll'))"
            ".map(b => [b.scrollWidth, b.clientWidth, b.getBoundingClientRect().right])"
        )
        assert boxes and all(sw <= cw + 1 and right <= 390 for sw, cw, right in boxes), boxes  # no scrolling
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        # On paper (and on a wider screen) the wide blocks, once: the narrow ones are not printed.
        page.emulate_media(media="print")
        assert all(wide.nth(i).is_visible() for i in range(wide.count()))
        assert not any(narrow.nth(i).is_visible() for i in range(narrow.count()))
        page.emulate_media(media="screen")
        page.set_viewport_size({"width": 1280, "height": 900})
        assert all(wide.nth(i).is_visible() for i in range(wide.count()))
        assert not any(narrow.nth(i).is_visible() for i in range(narrow.count()))
        assert errors == []
    finally:
        ctx.close()


@pytest.mark.browser
@needs_chromium
def test_the_strip_in_dark_mode_and_on_paper(chromium, answer_pages):
    ctx, page, errors = _open(chromium, answer_pages["answer-static"], width=1280, scheme="dark")
    try:
        cell = page.locator("table.strip td.ac").first
        assert "invert" in cell.evaluate("e => getComputedStyle(e).filter")  # as the heatmap's SVG
        page.emulate_media(media="print")
        assert cell.evaluate("e => getComputedStyle(e).filter") == "none"
        assert cell.evaluate("e => getComputedStyle(e).printColorAdjust") == "exact"
        assert errors == []
    finally:
        ctx.close()


def test_an_empty_generated_answer_says_so_and_draws_no_strip():
    result = with_answer(make_result(), tokens=[], source="generated", stop_reason="eos")
    view = build_report([result]).runs[0].answer
    assert view.num_tokens == 0 and view.blocks == [] and view.divergence is None
    page = _page(result)
    assert "it stopped at the end-of-sequence token" in page
    assert "The answer is empty: there is nothing to read." in page
    assert '<table class="strip' not in page and "Greedy decoding" not in page


# --- identical layers fold (issue 23) ---


def test_strip_rows_fold_runs_of_layers_that_read_the_same_and_nothing_else():
    from lazarus_report.render.answer_view import StripCell, StripRow, fold_strip_rows

    def row(layer, texts, cls="ac ab0", unreliable=False, final=False):
        return StripRow(layer, unreliable, final, [StripCell(t, cls, f"L{layer}") for t in texts])

    rows = [
        row(9, ["90", "80"], final=True),
        row(8, ["90", "80"]),  # reads as the final row, but the final layer never folds
        row(7, ["<1", "<1"]),
        row(6, ["<1", "<1"]),
        row(5, ["<1", "<1"], unreliable=True),  # a trust change breaks the run
        row(4, ["<1", "<1"], unreliable=True),
        row(3, ["<1", "<1"], cls="ac ab0 em"),  # an emergence mark breaks it
        row(2, ["<1", "2"]),
        row(1, ["<1", "2"]),
        row(0, ["<1", "2"]),
    ]
    folded = fold_strip_rows(rows)
    assert [r.label for r in folded] == ["9", "8", "6–7", "4–5", "3", "0–2"]
    assert folded[2].cells[0].title.startswith("Layers 6–7 read the same; shown: layer 7.")
    assert folded[0].cells[0].title == "L9" and folded[4].cells[0].title == "L3"
    page_row = folded[5]
    assert (page_row.layer, page_row.down_to) == (2, 0)
