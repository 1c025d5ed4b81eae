"""The report model (what a report says) and the display formatters."""

from __future__ import annotations

import dataclasses

import pytest
from factories import make_hostile_result, make_result, make_small_result, make_untracked_result

from lazarus_report.render.formatting import (
    Segment,
    clean_text,
    fmt_nats,
    fmt_prob,
    fmt_rank,
    fmt_seconds,
    token_segments,
    visible_token,
)
from lazarus_report.render.report_model import build_report, heatmap_positions


def _strings(obj):
    """Every string anywhere inside a (nested) dataclass / list / tuple / dict."""
    if isinstance(obj, str):
        yield obj
    elif dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            yield from _strings(getattr(obj, f.name))
    elif isinstance(obj, (list, tuple)):
        for x in obj:
            yield from _strings(x)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _strings(k)
            yield from _strings(v)


@pytest.mark.parametrize(
    ("token", "visible"),
    [
        (" Paris", "␣Paris"),
        ("\n", "↵"),
        ("\t x", "⇥␣x"),
        ("", "∅"),
        ("\u202eevil", "⟨U+202E⟩evil"),
        ("\ud800", "⟨U+D800⟩"),
        ("a\u00a0b", "a⟨U+00A0⟩b"),
        ("\u200b", "⟨U+200B⟩"),
        ("a\uffffb", "a⟨U+FFFF⟩b"),  # noncharacters are not allowed in XML (the inline SVG)
        ("日本", "日本"),
    ],
)
def test_visible_token(token, visible):
    assert visible_token(token) == visible


def test_token_segments_separate_markers():
    assert token_segments(" Paris\n") == [Segment("␣", True), Segment("Paris", False), Segment("↵", True)]


def test_clean_text_keeps_layout_but_shows_controls():
    assert clean_text("a\nb\tc d") == "a\nb\tc d"
    assert clean_text("x\u202ey\ud800\x00") == "x⟨U+202E⟩y⟨U+D800⟩⟨U+0000⟩"


def test_number_formats():
    assert [fmt_prob(p) for p in (0.7725, 0.05, 0.00123, 1e-5, 0.0, 1.0, float("nan"))] == [
        "77.2%", "5%", "0.123%", "<0.01%", "0%", "100%", "n/a",
    ]  # fmt: skip
    assert fmt_nats(1.23456) == "1.23" and fmt_nats(float("inf")) == "n/a"
    assert fmt_rank(40013) == "40,013"
    assert fmt_seconds(0.098) == "98 ms" and fmt_seconds(2.31) == "2.31 s"


def test_run_facts_for_the_demo():
    result = make_result()
    run = build_report([result]).runs[0]
    assert run.title == "smollm2-135m-instruct"
    assert run.layers_note == "all 30 layers"
    assert [t.token.visible for t in run.tracked] == ["␣Paris", "␣Ly"]
    assert run.tracked[0].emergence_layer == 17 and run.tracked[1].emergence_layer is None
    assert run.tracked[1].warning is not None and run.tracked[1].num_tokens == 3
    assert [r.layer for r in run.layer_rows if r.emerging] == [17]
    assert run.final_top[0].tracked and not run.final_top[1].tracked
    assert run.summary.final_emergence_layer == 17 and run.summary.final_stable_from_layer == 17
    jump = run.summary.biggest_gain
    assert jump is not None and jump.to_layer == jump.from_layer + 1 and jump.to_prob > jump.from_prob


def test_heatmap_shows_the_last_positions_within_a_cell_budget():
    assert heatmap_positions(30) == 12
    assert heatmap_positions(6) == 20
    assert heatmap_positions(80) == 8
    run = build_report([make_result()]).runs[0]
    grid = run.grid
    assert grid is not None and grid.truncated
    assert grid.positions == list(range(22, 34)) and grid.total_positions == 34
    assert grid.position_labels[-2:] == ["32 assistant", "33 ↵"]
    assert len(grid.cells) == 30 * 12
    small = build_report([make_small_result()]).runs[0].grid
    assert small is not None and not small.truncated


def test_without_tracked_tokens_the_final_token_is_followed():
    result = make_untracked_result()
    run = build_report([result]).runs[0]
    assert not run.series_are_tracked
    (series,) = run.series
    assert series.label == visible_token(result.final_top_token)
    assert series.ranks == [p.final_token_rank for p in result.layer_predictions]
    assert series.emergence_layer == next(p.layer_idx for p in result.layer_predictions if p.final_token_rank == 1)
    assert [r.layer for r in run.layer_rows if r.emerging] == [series.emergence_layer]
    assert run.grid is None


def test_subsampled_layers_are_stated():
    run = build_report([make_result(layer_step=4)]).runs[0]
    assert run.layers_note == "9 of 30 layers: 0, 4, 8, 12, 16, 20, 24, 28, 29"


def test_every_string_in_the_model_is_printable_utf8():
    report = build_report([make_hostile_result()])
    for s in _strings(report):
        s.encode("utf-8")  # strict
        assert "\u202e" not in s


def test_two_runs_get_distinct_keys():
    report = build_report([make_small_result(model_id="a"), make_small_result(model_id="b")])
    assert [r.key for r in report.runs] == ["run0", "run1"]
    assert report.title == "Logit lens: a vs b"
    assert report.comparison is None
    with pytest.raises(ValueError):
        build_report([])


def test_a_tracked_token_that_loses_top1_is_described_by_where_it_was_top1():
    from lazarus_report.render.report_model import layer_runs, top1_phrase

    assert layer_runs([0, 4, 8, 12, 16, 20], [False, True, True, False, True, False]) == "4-8, 16"
    assert layer_runs([0, 1, 2], [False, False, False]) is None
    assert top1_phrase(12, "12-16", 3) == "top-1 at layers 12-16, final rank 3"
    assert top1_phrase(12, "12", 3) == "top-1 at layer 12, final rank 3"
    assert top1_phrase(17, "17-29", 1) == "top-1 from layer 17"
    assert top1_phrase(None, None, 40) == "never top-1"
