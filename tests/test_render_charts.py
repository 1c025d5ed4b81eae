"""Charts: Altair specs, their offline SVG, and the SVG post-processing."""

from __future__ import annotations

import json
import re
from xml.etree import ElementTree

import pytest
import vl_convert as vlc
from altair.utils.schemapi import validate_jsonschema
from altair.vegalite.v6.schema import load_schema
from factories import make_comparison, make_result, make_untracked_result

from lazarus_report.render import charts
from lazarus_report.render.charts import svg_sanitize
from lazarus_report.render.formatting import visible_token
from lazarus_report.render.report_model import build_comparison_report, build_report


@pytest.fixture(scope="module")
def demo_charts():
    return charts.run_charts(build_report([make_result()]).runs[0])


def test_charts_in_page_order(demo_charts):
    assert [c.chart_id for c in demo_charts] == ["run0-trajectory", "run0-entropy-kl", "run0-heatmap"]
    assert [c.fit for c in demo_charts] == [True, True, False]  # the heatmap scrolls instead of shrinking
    for c in demo_charts:
        json.dumps(c.spec, allow_nan=False)  # strict JSON: no NaN/inf
        assert c.spec["config"]["aria"] is False
        assert c.description and c.title


def test_rank_axis_is_logarithmic_and_emergence_is_marked(demo_charts):
    spec = json.dumps(demo_charts[0].spec, ensure_ascii=False)
    assert '"type": "log"' in spec and '"reverse": true' in spec
    assert "\u2423Paris top-1 at L17" in spec


def test_untracked_trajectory_follows_the_final_token():
    run = build_report([make_untracked_result()]).runs[0]
    trajectory = charts.run_charts(run)[0]
    assert "The final top-1 token" in trajectory.description
    assert len(charts.run_charts(run)) == 2  # no grid, no heatmap


def test_vega_lite_version_matches_altair():
    assert charts.VL_VERSION in vlc.get_vegalite_versions()
    assert charts.VL_VERSION.startswith("6.")


def test_svg_is_well_formed_and_ids_are_scoped(demo_charts):
    for c in demo_charts:
        root = ElementTree.fromstring(c.svg)
        ids = [el.get("id") for el in root.iter() if el.get("id")]
        assert all(i.startswith(c.chart_id + "-") for i in ids)
        for ref in ("url(#", 'href="#'):
            for part in c.svg.split(ref)[1:]:
                assert part.startswith(c.chart_id + "-")


def test_renumbering_is_exact_and_order_independent():
    svg = (
        '<svg><defs><clipPath id="clip3"><rect/></clipPath><linearGradient id="gradient_12"/></defs>'
        '<g clip-path="url(#clip3)"><rect fill="url(#gradient_12)"/><text>clip3 url(#clip30)</text></g></svg>'
    )
    out = charts.renumber_ids(svg, "run0-x")
    assert 'id="run0-x-1"' in out and 'id="run0-x-2"' in out
    assert 'clip-path="url(#run0-x-1)"' in out and 'fill="url(#run0-x-2)"' in out
    assert "<text>clip3 url(#clip30)</text>" in out  # only exact references change
    shifted = svg.replace("clip3", "clip9").replace("gradient_12", "gradient_40")
    # Whatever numbers vl-convert's global counter had reached, the ids come out the same.
    assert charts.renumber_ids(shifted, "run0-x") == out.replace("clip3 url(#clip30)", "clip9 url(#clip90)")


def test_compacting_moves_shared_attributes_and_drops_defaults():
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10" class="marks" version="1.1">'
        '<g class="mark-text" role="graphics-object" aria-roledescription="text mark">'
        '<text transform="translate(38.62068965517241,16)" font-family="sans-serif" font-size="9px" opacity="1">a</text>'
        '<text transform="translate(0,0)" font-family="sans-serif" font-size="11px">b class="x" d="1.23456"</text></g>'
        '<g><path class="background" d="M0,0h0v0h0Z" pointer-events="none"/>'
        '<path class="foreground" aria-hidden="true" d="" display="none"/>'
        '<line x1="0" y1="0" x2="560" y2="0" stroke="#888" stroke-width="1"/>'
        '<path d="M0.5,12.345678L19.3103448,7.25"/></g></svg>'
    )
    out = charts.compact_svg(svg)
    assert out == (
        '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
        '<g font-family="sans-serif">'
        '<text transform="translate(38.62,16)" font-size="9px">a</text>'
        '<text font-size="11px">b class="x" d="1.23456"</text></g>'  # text content is never touched
        '<line x2="560" stroke="#888" stroke-width="1"/><path d="M0.5,12.3L19.3,7.2"/></svg>'
    )
    ElementTree.fromstring(out)


@pytest.fixture(scope="module")
def comparison_specs():
    report = build_comparison_report(make_comparison("same_tokenizer"))
    return [c.spec for c in charts.start_comparison_charts(report)["comparison"]]


def test_compacting_does_not_change_the_picture(comparison_specs, demo_charts, monkeypatch):
    # Coordinate rounding aside (sub-pixel by construction), the compact SVG rasterizes to the same pixels.
    monkeypatch.setattr(svg_sanitize, "_PATH_DECIMAL", re.compile(r"(?!)"))
    monkeypatch.setattr(svg_sanitize, "_LONG_DECIMAL", re.compile(r"(?!)"))
    for spec in comparison_specs + [c.spec for c in demo_charts[:2]]:
        raw = charts.renumber_ids(vlc.vegalite_to_svg(spec, vl_version=charts.VL_VERSION), "x")
        small = charts.compact_svg(raw)
        assert len(small) < 0.6 * len(raw)
        assert vlc.svg_to_png(small) == vlc.svg_to_png(raw)


def test_every_spec_is_valid_vega_lite(comparison_specs, demo_charts):
    # The charts are built with Altair's validation off (speed); check them here instead.
    schema = load_schema()
    report = build_comparison_report(make_comparison("depths"))
    heatmap = charts.start_comparison_charts(report)["heatmaps"][0].spec
    for spec in comparison_specs + [heatmap] + [c.spec for c in demo_charts]:
        validate_jsonschema(spec, schema)


def test_static_heatmap_matches_the_live_colour_bins():
    # The drawn heatmap and the Vega-Lite quantize scale put a probability in the same bin.
    assert len(charts.HEATMAP_COLORS) == charts.HEATMAP_BINS == 10
    assert charts.HEATMAP_COLORS[0] == "#cfe1f2" and charts.HEATMAP_COLORS[-1] == "#0a4a90"
    run = build_report([make_result()]).runs[0]
    chart = charts.start_run_charts(run)[2].result()
    scale = chart.spec["layer"][0]["encoding"]["color"]["scale"]
    assert scale == {"type": "quantize", "domain": [0, 1], "range": charts.HEATMAP_COLORS}
    grid = run.grid
    cell = next(c for c in grid.cells if c.prob is not None and 0.3 < c.prob < 0.4)
    x = charts.CELL_WIDTH * grid.positions.index(cell.position)
    y = charts.CELL_HEIGHT * (len(grid.layers) - 1 - grid.layers.index(cell.layer))  # last layer on top
    fill = re.search(rf'<path fill="([^"]+)" d="[^"]*M{x},{y}h', chart.svg)
    assert fill is not None and fill.group(1) == charts.HEATMAP_COLORS[3]  # the 30-40% bin


def test_comparison_heatmap_is_one_figure_with_a_panel_per_model():
    report = build_comparison_report(make_comparison("depths"))
    (heatmap,) = charts.comparison_charts(report)["heatmaps"]
    assert heatmap.chart_id == "comparison-heatmap" and not heatmap.fit
    # cells, their tokens, the next prompt token over each column
    assert [len(p["layer"]) for p in heatmap.spec["hconcat"]] == [3, 3]
    assert heatmap.spec["resolve"] == {"scale": {"color": "shared"}}
    root = ElementTree.fromstring(heatmap.svg)
    titles = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text") if (t.text or "").startswith("M")]
    assert titles == ["M1 · smollm2-135m-instruct", "M2 · smollm2-deep-18"]
    # Compared by relative depth: both panels have one height, so their rows line up by depth.
    runs = report.runs
    assert len(runs[0].grid.layers) != len(runs[1].grid.layers)
    assert len({p["height"] for p in heatmap.spec["hconcat"]}) == 1
    assert "line up by relative depth" in heatmap.description


def test_heatmap_prints_the_next_prompt_token_over_each_column():
    result = make_result()
    report = build_report([result])
    grid = report.runs[0].grid
    # Column j predicts the token at position j + 1; after the last prompt token nothing is known.
    for pos, nxt in zip(grid.positions, grid.next_tokens):
        assert nxt == (visible_token(result.tokens[pos + 1]) if pos + 1 < len(result.tokens) else "")
    # Starred where the last layer's top-1 at that position is the next token (the model predicts its prompt).
    g = result.grid
    expected = [
        pos + 1 < len(result.tokens) and g.top_token_ids[-1][g.positions.index(pos)] == result.token_ids[pos + 1]
        for pos in grid.positions
    ]
    assert grid.next_predicted == expected
    (heatmap,) = [c for c in charts.run_charts(report.runs[0]) if c.chart_id.endswith("heatmap")]
    labels = [row["nx"] for row in heatmap.spec["datasets"]["next0"]]
    assert labels == [f"{t} ★" if hit else t for t, hit in zip(grid.next_tokens, grid.next_predicted)]
    svg_text = [t.text for t in ElementTree.fromstring(heatmap.svg).iter("{http://www.w3.org/2000/svg}text")]
    assert all(label[:14] in svg_text or label[:13] + "…" in svg_text for label in labels if label)


@pytest.mark.parametrize(
    "bad",
    [
        '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        '<svg xmlns="http://www.w3.org/2000/svg"><foreignObject><div/></foreignObject></svg>',
        '<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>',
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">'
        '<g><path xlink:href="https://example.com/x"/></g></svg>',
    ],
)
def test_unexpected_svg_content_is_refused(bad):
    with pytest.raises(ValueError):
        charts.checked_svg(bad)


def test_bundle_is_the_one_vega_embed_build():
    bundle = charts.vega_bundle()
    assert "window.vegaEmbed=" in bundle
    assert "</script" not in bundle.lower()
