"""The hand-drawn static SVGs of the analysis and comparison line charts (charts/line_charts.py, line_plot_svg.py):
geometry against known data (a point lands at the pixel computed here independently, the grey bands cover
exactly the unreliable layers, the ticks), well-formed XML, escaped model strings, and that a static page loads
neither Altair nor vl-convert (an interactive one no vl-convert)."""

from __future__ import annotations

import itertools
import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from xml.etree import ElementTree

import pytest
from factories import HOSTILE_STRINGS, make_comparison, make_hostile_result, make_result

from lazarus_report.render.charts.line_charts import (
    compare_entropy_kl_chart,
    compare_trajectory_chart,
    divergence_chart,
    entropy_kl_chart,
    trajectory_chart,
)
from lazarus_report.render.charts.style import LINE_HEIGHT, LINE_WIDTH, PALETTE, UNRELIABLE_FILL
from lazarus_report.render.packing import load_result_file
from lazarus_report.render.report_model import build_comparison_report, build_report

NS = "{http://www.w3.org/2000/svg}"
LEFT = 70  # the panels' left edge (line_plot_svg._PLOT_LEFT)
SAMPLES = Path(__file__).resolve().parents[1] / "sample_reports"


def _tree(svg: str) -> ElementTree.Element:
    return ElementTree.fromstring(svg)


def _panels(root: ElementTree.Element) -> dict[str, tuple[float, ElementTree.Element]]:
    """Each panel group by its y axis title: (its y offset, the group)."""
    out = {}
    for g in root.iter(f"{NS}g"):
        m = re.fullmatch(r"translate\(70,([\d.]+)\)", g.get("transform", ""))
        titles = [t.text for t in g.findall(f"{NS}text") if "rotate(-90)" in t.get("transform", "")]
        if m and titles:
            out[titles[0]] = (float(m.group(1)), g)
    return out


def _absolute(d: str) -> list[list[tuple[int, int]]]:
    """The runs of whole-pixel points of a ``_polyline`` path (M, relative l and h steps)."""
    runs: list[list[tuple[int, int]]] = []
    for cmd, args in re.findall(r"([Mlh])([-\d,]+)", d):
        nums = [int(v) for v in args.split(",")]
        if cmd == "M":
            runs.append([(nums[0], nums[1])])
        elif cmd == "l":
            x, y = runs[-1][-1]
            runs[-1].append((x + nums[0], y + nums[1]))
        else:
            x, y = runs[-1][-1]
            runs[-1].append((x + nums[0], y))
    return runs


def _flat(runs: list[list[tuple[int, int]]]) -> list[tuple[int, int]]:
    return list(itertools.chain.from_iterable(runs))


def _drawn(points: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``points`` as a path draws them: a horizontal run by its two ends."""
    out: list[tuple[int, int]] = []
    for point in points:
        if len(out) >= 2 and out[-1][1] == out[-2][1] == point[1]:
            out[-1] = point
        else:
            out.append(point)
    return out


def _line_paths(group: ElementTree.Element, color: str) -> list[str]:
    return [p.get("d", "") for p in group.findall(f"{NS}path") if p.get("stroke") == color and p.get("fill") == "none"]


@pytest.fixture(scope="module")
def run():
    return build_report([make_result()]).runs[0]


@pytest.fixture(scope="module")
def tuned_run():
    """A real SmolLM2 run read through a tuned lens, with unreliable layers."""
    run = build_report([load_result_file(SAMPLES / "analyze-capital-raw.json")]).runs[0]
    assert run.unreliable_layers
    return run


def test_trajectory_points_land_at_the_computed_pixels(run):
    root = _tree(trajectory_chart(run).svg)  # type: ignore[arg-type]
    panels = _panels(root)
    assert set(panels) == {"Probability", "Rank (log, 1 = top)"}
    first, last = run.captured_layers[0], run.captured_layers[-1]
    probs = [max(p, 1e-6) for s in run.series for p in s.probs if p is not None]
    decades = math.ceil(-math.log10(min(probs)) - 1e-9)
    top_rank = 10 ** math.ceil(math.log10(max(10, max(r for s in run.series for r in s.ranks))))
    for i, s in enumerate(run.series):
        color = PALETTE[i]
        (prob_path,) = _line_paths(panels["Probability"][1], color)
        (rank_path,) = _line_paths(panels["Rank (log, 1 = top)"][1], color)
        expected_prob = [
            (round((layer - first) / (last - first) * LINE_WIDTH), round(-math.log10(max(p, 1e-6)) / decades * 190))
            for layer, p in zip(s.layers, s.probs)
            if p is not None
        ]
        expected_rank = [
            (round((layer - first) / (last - first) * LINE_WIDTH), round(math.log10(r) / math.log10(top_rank) * 190))
            for layer, r in zip(s.layers, s.ranks)
        ]
        assert _flat(_absolute(prob_path)) == _drawn(expected_prob)
        assert _flat(_absolute(rank_path)) == _drawn(expected_rank)


def test_probability_ticks_are_powers_of_ten_at_their_pixels(run):
    _, group = _panels(_tree(trajectory_chart(run).svg))["Probability"]  # type: ignore[arg-type]
    labels = [(t.text, float(t.get("y", 0))) for t in group.findall(f"{NS}g/{NS}text")]
    assert labels[0] == ("100%", 3.0) and labels[1][0] == "10%"
    decades = len(labels) - 1
    for k, (text, y) in enumerate(labels):
        assert text == f"{round(100 * 10.0**-k, 6):g}%"
        assert y == pytest.approx(k / decades * LINE_HEIGHT + 3, abs=0.05)  # the label's baseline, 3 px under


def test_grey_bands_cover_exactly_the_unreliable_layers(tuned_run):
    first, last = tuned_run.captured_layers[0], tuned_run.captured_layers[-1]

    def px(layer: float) -> float:
        return (layer - first) / (last - first) * LINE_WIDTH

    for chart in (trajectory_chart(tuned_run), entropy_kl_chart(tuned_run)):
        panels = _panels(_tree(chart.svg))  # type: ignore[arg-type]
        assert len(panels) == 2
        for _, group in panels.values():
            (band,) = [p for p in group.findall(f"{NS}path") if p.get("fill") == UNRELIABLE_FILL]
            spans = [(float(a), float(b)) for a, b in re.findall(r"M([\d.]+),0H([\d.]+)V", band.get("d", ""))]
            covered = [layer for layer in tuned_run.captured_layers if any(a <= px(layer) <= b for a, b in spans)]
            assert covered == tuned_run.unreliable_layers
            expected = [
                (max(0.0, px(a - 0.5)), min(float(LINE_WIDTH), px(b + 0.5))) for a, b in tuned_run.unreliable_bands
            ]
            assert spans == [(pytest.approx(a, abs=0.06), pytest.approx(b, abs=0.06)) for a, b in expected]


def test_no_bands_when_every_layer_is_reliable(run):
    assert not run.unreliable_layers
    assert UNRELIABLE_FILL not in trajectory_chart(run).svg  # type: ignore[operator]
    assert UNRELIABLE_FILL not in entropy_kl_chart(run).svg  # type: ignore[operator]


def test_entropy_and_kl_panels_on_linear_axes(run):
    root = _tree(entropy_kl_chart(run).svg)  # type: ignore[arg-type]
    panels = _panels(root)
    first, last = run.captured_layers[0], run.captured_layers[-1]
    for title, values, color in (
        ("Entropy (nats)", run.entropy, PALETTE[0]),
        ("KL to final (nats)", run.kl_to_final, PALETTE[1]),
    ):
        _, group = panels[title]
        ticks = [(float(t.text.replace(",", "")), float(t.get("y", 0))) for t in group.findall(f"{NS}g/{NS}text")]
        # From zero up, evenly stepped, the top tick at or over the largest value, at the top of the panel.
        assert ticks[0] == (0.0, 150 + 3)
        steps = {round(b[0] - a[0], 9) for a, b in itertools.pairwise(ticks)}
        assert len(steps) == 1 and ticks[-1][0] >= max(values) > ticks[-2][0]
        top = ticks[-1][0]
        assert ticks[-1][1] == pytest.approx(3.0)
        (path,) = _line_paths(group, color)
        expected = [
            (round((layer - first) / (last - first) * LINE_WIDTH), round((top - v) / top * 150))
            for layer, v in zip(run.captured_layers, values)
        ]
        assert _flat(_absolute(path)) == _drawn(expected)
    # The shared layer axis under the last panel: whole layers, first one at x 0.
    x_labels = [t for t in root.iter(f"{NS}text") if t.get("y") == "16"]
    assert x_labels[0].text == str(first) and float(x_labels[0].get("x", -1)) == 0


def test_divergence_marks_the_largest_js_layer():
    result = make_comparison("same_tokenizer")
    comparison = build_comparison_report(result).comparison
    assert comparison is not None and comparison.largest_change is not None
    root = _tree(divergence_chart(comparison).svg)  # type: ignore[arg-type]
    panels = _panels(root)
    assert set(panels) == {"JS (nats)", "KL (nats)"}
    xs = [x for values in comparison.x_values for x in values]
    lo, hi = min(xs), max(xs)
    expected_x = (comparison.largest_change.layer2 - lo) / (hi - lo) * LINE_WIDTH
    for _, group in panels.values():
        (rule,) = group.findall(f"{NS}line")
        assert float(rule.get("x1", -1)) == pytest.approx(expected_x, abs=0.06)
    notes = [t.text for t in panels["JS (nats)"][1].findall(f"{NS}text")]
    assert f"largest JS: layer {comparison.largest_change.label}" in notes
    _, js = panels["JS (nats)"]
    assert [t.text for t in js.findall(f"{NS}g/{NS}text")] == ["0", "0.2", "0.4", "0.6"]  # the fixed 0-0.7 domain


def test_comparison_charts_show_the_model_key_and_legends():
    result = make_comparison("depths")
    report = build_comparison_report(result)
    comparison = report.comparison
    assert comparison is not None and comparison.alignment != "layer"
    for chart in (
        compare_trajectory_chart(report.runs, comparison),
        compare_entropy_kl_chart(report.runs, comparison),
    ):
        texts = [t.text for t in _tree(chart.svg).iter(f"{NS}text")]  # type: ignore[arg-type]
        for tag, label in zip(comparison.tags, comparison.labels):
            assert f"{tag}: {label}" in texts and tag in texts
        assert "Model" in texts and comparison.x_title in texts
        assert [t for t in texts if t in ("0.0", "0.5", "1.0")] == ["0.0", "0.5", "1.0"]  # relative depth


def test_every_sample_chart_is_well_formed_and_its_text_legible():
    """Every static chart of the committed analysis and comparison samples parses, draws no text under 10 px."""
    from lazarus_report.render import charts

    for path in sorted(SAMPLES.glob("*.json")):
        if not path.name.startswith(("analyze", "compare")):
            continue
        result = load_result_file(path)
        report = build_comparison_report(result) if path.name.startswith("compare") else build_report([result])
        for group in charts.start_report_charts(report, static=True).values():
            for chart in group:
                assert chart.spec is None
                root = _tree(chart.svg)  # type: ignore[arg-type]
                sizes = [float(v[:-2]) for el in root.iter() if (v := el.get("font-size"))]
                assert sizes and min(sizes) >= (9 if chart.chart_id.endswith("heatmap") else 10), chart.chart_id


def test_hostile_strings_stay_text():
    result = make_hostile_result()
    run = build_report([result]).runs[0]
    for chart in (trajectory_chart(run), entropy_kl_chart(run)):
        svg = chart.svg
        assert isinstance(svg, str)
        assert "<script" not in svg and "<img" not in svg and "onmouseover=" not in svg.replace("&quot;", "")
        _tree(svg)  # parses: nothing broke out of an attribute or element
    texts = "".join(t.text or "" for t in _tree(trajectory_chart(run).svg).iter(f"{NS}text"))  # type: ignore[arg-type]
    assert any(s[:10] in texts for s in HOSTILE_STRINGS if s.startswith(("</script>", "<img")))


_NO_HEAVY_IMPORTS = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from factories import make_comparison, make_result
    from lazarus_report.render.html import render_html

    static = {static!r}
    for result in (make_result(), make_comparison("same_tokenizer")):
        page = render_html(result, static=static)
        assert "<svg" in page
    print(sorted(m for m in ("altair", "vl_convert", "jsonschema") if m in sys.modules))
    """
)


def _heavy_modules(static: bool, env: dict[str, str]) -> str:
    code = _NO_HEAVY_IMPORTS.format(tests=str(Path(__file__).parent), static=static)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.mark.slow  # a fresh process
def test_a_static_page_imports_neither_altair_nor_vl_convert():
    assert _heavy_modules(True, dict(os.environ)) == "[]"


@pytest.mark.slow  # a fresh process
def test_an_interactive_page_never_loads_vl_convert(isolated_cache):
    from lazarus_report.render.charts.bundle import cached_bundle
    from lazarus_report.render.charts.style import requested_vl_version

    cached_bundle(requested_vl_version())  # built here (with vl-convert), read there
    env = {**os.environ, "LAZARUS_CACHE_DIR": str(isolated_cache)}
    assert _heavy_modules(False, env) == "['altair', 'jsonschema']"


_PREFETCH = textwrap.dedent(
    """
    import sys
    from lazarus_report.render.prefetch import start_html_prefetch
    start_html_prefetch(static={static!r}).join()
    from lazarus_report.render.environment import html_environment
    assert html_environment().cache  # the templates were compiled
    print(sorted(m for m in ("altair", "vl_convert") if m in sys.modules))
    """
)


@pytest.mark.slow  # a fresh process
@pytest.mark.parametrize("static, loaded", [(True, "[]"), (False, "['altair']")])
def test_prefetch_loads_only_what_the_page_needs(isolated_cache, static, loaded):
    from lazarus_report.render.charts.bundle import cached_bundle
    from lazarus_report.render.charts.style import requested_vl_version

    if not static:
        cached_bundle(requested_vl_version())
    env = {**os.environ, "LAZARUS_CACHE_DIR": str(isolated_cache)}
    proc = subprocess.run(
        [sys.executable, "-c", _PREFETCH.format(static=static)], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == loaded


# --- the narrow drawings (phones): same data, 340 px wide, text at full size ------------------------------

NARROW_LEFT, NARROW_WIDTH, NARROW_HEIGHT = 64, 264, 160  # line_plot_svg.NARROW


def _narrow_panels(root: ElementTree.Element) -> dict[str, tuple[float, ElementTree.Element]]:
    out = {}
    for g in root.iter(f"{NS}g"):
        m = re.fullmatch(rf"translate\({NARROW_LEFT},([\d.]+)\)", g.get("transform", ""))
        titles = [t.text for t in g.findall(f"{NS}text") if "rotate(-90)" in t.get("transform", "")]
        if m and titles:
            out[titles[0]] = (float(m.group(1)), g)
    return out


def _font_sizes(root: ElementTree.Element) -> list[float]:
    """The font size of every text element (its own or the nearest ancestor's)."""
    parent = {child: el for el in root.iter() for child in el}
    sizes = []
    for text in root.iter(f"{NS}text"):
        el: ElementTree.Element | None = text
        while el is not None and el.get("font-size") is None:
            el = parent.get(el)
        assert el is not None
        sizes.append(float(el.get("font-size", "0")[:-2]))
    return sizes


def test_narrow_trajectory_points_land_at_the_computed_pixels(run):
    root = _tree(trajectory_chart(run).narrow())  # type: ignore[misc]
    assert float(root.get("width", 0)) == NARROW_LEFT + NARROW_WIDTH + 12 <= 340
    panels = _narrow_panels(root)
    assert set(panels) == {"Probability", "Rank (log, 1 = top)"}
    first, last = run.captured_layers[0], run.captured_layers[-1]
    probs = [max(p, 1e-6) for s in run.series for p in s.probs if p is not None]
    decades = math.ceil(-math.log10(min(probs)) - 1e-9)
    top_rank = 10 ** math.ceil(math.log10(max(10, max(r for s in run.series for r in s.ranks))))
    for i, s in enumerate(run.series):
        (prob_path,) = _line_paths(panels["Probability"][1], PALETTE[i])
        (rank_path,) = _line_paths(panels["Rank (log, 1 = top)"][1], PALETTE[i])
        x = [round((layer - first) / (last - first) * NARROW_WIDTH) for layer in s.layers]
        expected_prob = [
            (px, round(-math.log10(max(p, 1e-6)) / decades * NARROW_HEIGHT))
            for px, p in zip(x, s.probs)
            if p is not None
        ]
        expected_rank = [(px, round(math.log10(r) / math.log10(top_rank) * NARROW_HEIGHT)) for px, r in zip(x, s.ranks)]
        assert _flat(_absolute(prob_path)) == _drawn(expected_prob)
        assert _flat(_absolute(rank_path)) == _drawn(expected_rank)
    # The rank panel starts one panel height and the 14 px gap under the probability panel.
    assert panels["Rank (log, 1 = top)"][0] - panels["Probability"][0] == NARROW_HEIGHT + 14
    assert min(_font_sizes(root)) >= 11


def test_narrow_x_axis_keeps_its_ticks_apart(run):
    """Layer ticks at least 36 px apart (every k-th of the wide chart's), each at its layer's pixel."""
    root = _tree(entropy_kl_chart(run).narrow())  # type: ignore[misc]
    wide = [t.text for t in _tree(entropy_kl_chart(run).svg).iter(f"{NS}text") if t.get("y") == "16"]  # type: ignore[arg-type]
    labels = [(t.text, float(t.get("x", -1))) for t in root.iter(f"{NS}text") if t.get("y") == "16"]
    first, last = run.captured_layers[0], run.captured_layers[-1]
    assert len(labels) >= 2 and [text for text, _ in labels] == wide[:: wide.index(labels[1][0])]
    for text, x in labels:
        assert x == pytest.approx((int(text) - first) / (last - first) * NARROW_WIDTH, abs=0.06)
    assert min(b - a for (_, a), (_, b) in itertools.pairwise(labels)) >= 36


def test_narrow_comparison_key_wraps_and_is_never_shortened():
    result = make_comparison("same_tokenizer")
    report = build_comparison_report(result)
    comparison = report.comparison
    assert comparison is not None
    for chart in (compare_trajectory_chart(report.runs, comparison), compare_entropy_kl_chart(report.runs, comparison)):
        root = _tree(chart.narrow())  # type: ignore[misc]
        width = float(root.get("width", 0))
        key_rows = [t.text or "" for t in root.iter(f"{NS}text") if t.get("fill") == "#333333"]
        joined = " ".join(key_rows)
        for tag, label in zip(comparison.tags, comparison.labels):
            assert f"{tag}: {label}".replace(" ", "") in joined.replace(" ", "")  # every character, in order
        assert all(6 + len(row) * 6.2 <= width for row in key_rows)  # each row fits the drawing


def _wide_grid(n_positions: int, n_layers: int):
    """A hand-made heatmap grid: probability and token a known function of (layer, position)."""
    from lazarus_report.render.report_model import GridCell, GridView

    cells = [
        GridCell(layer, pos, f"t{layer}_{pos}", ((layer * 7 + pos * 3) % 11) / 10, None, None)
        for layer in range(n_layers)
        for pos in range(n_positions)
    ]
    labels = [f"{pos} tok{pos}" for pos in range(n_positions)]
    return GridView(list(range(n_layers)), list(range(n_positions)), labels, cells, n_positions)


def test_narrow_heatmap_keeps_every_cell_in_blocks_that_fit_a_phone():
    from lazarus_report.render.charts.heatmap_svg import heatmap_svg_narrow
    from lazarus_report.render.charts.style import HEATMAP_COLORS

    report = build_comparison_report(make_comparison("same_tokenizer"))
    grids = {"M1 · eight positions": report.runs[0].grid, "M2 · nineteen": _wide_grid(19, 6)}
    root = _tree(heatmap_svg_narrow(list(grids.items())))  # type: ignore[arg-type]
    assert float(root.get("width", 0)) <= 340
    blocks = [g for g in root.findall(f"{NS}g") if g.get("transform", "").startswith("translate(36,")]
    # Each model's columns in blocks of at most 8 (19 -> 7 + 7 + 5), in order, every cell once, at its pixel
    # and in its colour bin, its token as text.
    assert len(blocks) == 1 + 3
    shown: list[tuple[str, int, int]] = []
    sizes = []
    for block in blocks:
        heading = block.find(f"{NS}text").text or ""  # type: ignore[union-attr]
        name = next(n for n in grids if heading.startswith(n))
        grid = grids[name]
        m = re.search(r"positions (\d+)–(\d+)$", heading)
        columns = [p for p in grid.positions if m is None or int(m.group(1)) <= p <= int(m.group(2))]  # type: ignore[union-attr]
        sizes.append(len(columns))
        rows = {layer: len(grid.layers) - 1 - i for i, layer in enumerate(grid.layers)}  # type: ignore[union-attr]
        fills = {p.get("fill"): p.get("d", "") for p in block.findall(f"{NS}g/{NS}path")}
        texts = {(t.get("x"), t.get("y")): t.text for t in block.iter(f"{NS}text")}
        for cell in (c for c in grid.cells if c.position in columns):  # type: ignore[union-attr]
            x, y = 35 * columns.index(cell.position), 16 * rows[cell.layer]
            colour = HEATMAP_COLORS[min(9, int(round(cell.prob or 0, 6) * 10))]
            assert f"M{x},{y}h35v16h-35z" in fills[colour]
            token = texts[(str(x + 17), str(y + 11))]
            assert token == (cell.token if len(cell.token) <= 6 else cell.token[:5] + "…")
            shown.append((name, cell.layer, cell.position))
    assert sizes == [8, 7, 7, 5]
    everything = [(n, c.layer, c.position) for n, g in grids.items() for c in g.cells]  # type: ignore[union-attr]
    assert sorted(shown) == sorted(everything)
    assert min(_font_sizes(root)) >= 9


def test_narrow_drawings_keep_hostile_strings_as_text():
    from lazarus_report.render.charts.heatmap_svg import heatmap_chart

    run = build_report([make_hostile_result()]).runs[0]
    charts = [trajectory_chart(run), entropy_kl_chart(run), heatmap_chart([("<b>x</b>", run)], chart_id="h")]
    report = build_comparison_report(make_comparison("hostile"))
    assert report.comparison is not None
    charts.append(compare_trajectory_chart(report.runs, report.comparison))
    texts = ""
    for chart in charts:
        svg = chart.narrow()  # type: ignore[misc]
        assert "<script" not in svg and "<img" not in svg and "<b>" not in svg
        assert "onmouseover=" not in svg.replace("&quot;", "")
        texts += "".join(t.text or "" for t in _tree(svg).iter(f"{NS}text"))  # parses: nothing broke out
    assert any(s[:6] in texts for s in HOSTILE_STRINGS if s.startswith(("</script>", "<img")))


def test_narrow_x_title_wraps_inside_the_drawing():
    report = build_comparison_report(make_comparison("depths"))
    comparison = report.comparison
    assert comparison is not None and len(comparison.x_title) * 7.2 > 340  # too long for one row
    root = _tree(compare_trajectory_chart(report.runs, comparison).narrow())  # type: ignore[misc]
    width = float(root.get("width", 0))
    rows = [t for t in root.iter(f"{NS}text") if t.get("font-weight") == "bold" and t.get("font-size") == "12px"]
    rows = [t for t in rows if t.text not in ("Model", "Tracked", "Final top-1") and not t.get("transform")]
    assert len(rows) >= 2 and " ".join(t.text or "" for t in rows) == comparison.x_title
    for t in rows:  # centred on the drawing (its group starts at the plot's left edge, 64 px in)
        middle = 64 + float(t.get("x", 0))
        assert middle == width // 2 and len(t.text or "") * 7.2 <= width - 8


# --- r19-charts: the live chart's emergence notes follow the static SVG's plan (issue 23) ---------------------


def test_live_emergence_notes_take_the_static_svgs_rows_and_a_narrow_plan():
    """The logit-lens sample's notes (" the" top-1 at L24, " Paris" at L29: the second would cover the first) are
    staggered in the static SVG; the spec carries the same rows (``yw``, px) and rows planned for the narrowest
    live layout (``yn``), which the page script switches to (parameter ``notes_narrow``) when it shrinks the chart."""
    from lazarus_report.render.charts.interaction import NARROWEST_PLOT, NOTES_NARROW
    from lazarus_report.render.charts.line_plot_svg import WIDE, note_places
    from lazarus_report.render.charts.run_specs import trajectory_spec

    run = build_report([load_result_file(SAMPLES / "analyze-capital-raw.json")]).runs[0]
    chart = trajectory_spec(run)
    assert chart.spec is not None
    static_rows = {
        t.text: round((float(t.get("y", 0)) + 4) / (WIDE.note_px + 2))
        for t in _tree(chart.result().svg).iter(f"{NS}text")
        if (t.text or "").endswith(("top-1 at L24", "top-1 at L29"))
    }
    marks = chart.spec["datasets"]["marks"]
    live_rows = {m["note"]: m["yw"] // (WIDE.note_px + 2) for m in marks}
    assert static_rows == live_rows and sorted(static_rows.values()) == [0, 1]
    assert {p["name"]: p.get("value") for p in chart.spec["params"]}[NOTES_NARROW] is False
    narrow = round(WIDE.width * NARROWEST_PLOT)
    lo, hi = run.captured_layers[0], run.captured_layers[-1]
    places = note_places([((m["layer"] - lo) / (hi - lo) * narrow, m["note"]) for m in marks], narrow, WIDE.note_char)
    assert [m["yn"] for m in marks] == [(WIDE.note_px + 2) * row for _, _, row in places]
