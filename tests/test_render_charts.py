"""Charts: Altair specs, their offline SVG, and the SVG post-processing."""

from __future__ import annotations

import json
from xml.etree import ElementTree

import pytest
import vl_convert as vlc

from factories import make_result, make_untracked_result
from lazarus_report.render import charts
from lazarus_report.render.report_model import build_report


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
    out = charts._renumber_ids(svg, "run0-x")
    assert 'id="run0-x-1"' in out and 'id="run0-x-2"' in out
    assert 'clip-path="url(#run0-x-1)"' in out and 'fill="url(#run0-x-2)"' in out
    assert "<text>clip3 url(#clip30)</text>" in out  # only exact references change
    shifted = svg.replace("clip3", "clip9").replace("gradient_12", "gradient_40")
    # Whatever numbers vl-convert's global counter had reached, the ids come out the same.
    assert charts._renumber_ids(shifted, "run0-x") == out.replace("clip3 url(#clip30)", "clip9 url(#clip90)")


def test_compacting_keeps_the_picture():
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
        '<text transform="translate(38.62068965517241,16)" font-family="sans-serif" font-size="9px" opacity="1">a</text>'
        '<text transform="translate(1,2)" font-family="sans-serif" font-size="11px">b</text>'
        '<text transform="translate(1,2)" font-family="sans-serif" font-size="9px">c</text></svg>'
    )
    out = charts._compact_svg(svg)
    assert out.startswith('<svg font-size="9px" font-family="sans-serif" ')
    assert '<text transform="translate(38.62,16)">a</text>' in out
    assert '<text transform="translate(1,2)" font-size="11px">b</text>' in out
    ElementTree.fromstring(out)


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
        charts._checked(bad)


def test_bundle_is_the_one_vega_embed_build():
    bundle = charts.vega_bundle()
    assert "window.vegaEmbed=" in bundle
    assert "</script" not in bundle.lower()
