"""Trust on comparison charts (issue 23): the grey bands over layers where a lens is unreliable, on a compare
page's line charts as on an analysis page's, from both models' held-out fidelity; the static SVGs shade the same
layers; a caption says when a model's lens has no fidelity data. Rendered from factory comparisons whose
fidelity each test chooses."""

from __future__ import annotations

import dataclasses
import html
import json
import re

import pytest
from factories import make_comparison, make_result

from lazarus_report.render.charts.line_charts import comparison_trust_bands, trust_bands
from lazarus_report.render.charts.style import LINE_WIDTH, UNRELIABLE_FILL
from lazarus_report.render.html import render_html
from lazarus_report.render.report_model import build_comparison_report
from lazarus_report.results.provenance import LensFidelity, LensRecord

LINE_CHARTS = ["comparison-trajectory", "comparison-entropy-kl", "comparison-divergence"]


def _lens(num_layers: int, bad: set[int], kind: str = "tuned") -> LensRecord:
    """A lens record unreliable (held-out KL 5 nats, threshold 2) at ``bad`` and fine (0.5) elsewhere."""
    fidelity = [LensFidelity(i, 5.0 if i in bad else 0.5, 0.5, 4.0) for i in range(num_layers - 1)]
    return LensRecord(kind, "cache", "ab" * 32, None, "held-out text", 4096, fidelity, 2.0)


def _with_lenses(comparison, *lenses: LensRecord | None):
    results = [dataclasses.replace(r, lens=lens) for r, lens in zip(comparison.results, lenses)]
    return dataclasses.replace(comparison, results=results)


def _specs(page: str) -> dict[str, dict]:
    return {
        m.group(1): json.loads(m.group(2))
        for m in re.finditer(r'<script type="application/json" id="spec-([\w-]+)">(.*?)</script>', page, re.S)
    }


def _figure(page: str, chart_id: str) -> str:
    start = page.index(f'<figure class="chart" id="{chart_id}"')
    return page[start : page.index("</figure>", start)]


def _caption(page: str, chart_id: str) -> str:
    figure = _figure(page, chart_id)
    return html.unescape(re.sub(r"<[^>]+>", "", figure[figure.index("<figcaption>") : figure.index("</figcaption>")]))


def _band_layers(spec: dict) -> list[dict]:
    """Every layer of ``spec`` drawn from the ``unreliable`` dataset."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("data") == {"name": "unreliable"}:
                found.append(node)
            for key, value in node.items():
                if key != "datasets":
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(spec)
    return found


def _svg_bands(figure: str) -> list[list[tuple[float, float]]]:
    """Per panel of the static SVG, the shaded x ranges in px (each band path ``M a,0 H b V h H a z``)."""
    svg = figure[figure.index("<svg") :]
    svg = svg[: svg.index("</svg>")]
    paths = re.findall(rf'<path fill="{UNRELIABLE_FILL}" fill-opacity="0.18" d="([^"]+)"', svg)
    return [[(float(a), float(b)) for a, b in re.findall(r"M([\d.]+),0H([\d.]+)V", d)] for d in paths]


def _px(x: float, lo: float, hi: float) -> float:
    return min(max((x - lo) / (hi - lo) * LINE_WIDTH, 0.0), float(LINE_WIDTH))


@pytest.fixture(scope="module")
def both_known():
    """Base unreliable at layers 0-9, tuned at 0-4 and 20-21 (30 layers each, aligned by layer)."""
    return _with_lenses(
        make_comparison("same_tokenizer"), _lens(30, set(range(10))), _lens(30, {0, 1, 2, 3, 4, 20, 21})
    )


def test_bands_cover_either_models_unreliable_layers_each_piece_naming_its_models(both_known):
    report = build_comparison_report(both_known)
    assert report.comparison is not None
    bands = comparison_trust_bands(report.runs, report.comparison)
    assert [(b.x0, b.x1) for b in bands] == [(-0.5, 4.5), (4.5, 9.5), (19.5, 21.5)]
    assert ["both models" in b.note for b in bands] == [True, False, False]
    assert "for base " in bands[1].note and "for tuned " in bands[2].note
    assert all(b.note.startswith("tuned lens unreliable here") for b in bands)


def test_every_compare_line_chart_carries_the_bands_live_and_static(both_known):
    page = render_html(both_known)
    specs = _specs(page)
    expected = [{"l": 0, "to": 4.5}, {"l": 4.5, "to": 9.5}, {"l": 19.5, "to": 21.5}]  # cut to the axis (0-29)
    for chart_id in LINE_CHARTS:
        spec = specs[chart_id]
        rows = spec["datasets"]["unreliable"]
        assert [{"l": r["l"], "to": r["to"]} for r in rows] == expected, chart_id
        assert len(_band_layers(spec)) == 2, chart_id  # one band layer in each of the two panels
        assert "Grey bands: layers where the tuned lens is unreliable for both models" in _caption(page, chart_id)
        assert "No fidelity data" not in _caption(page, chart_id)
    static = render_html(both_known, static=True)
    for chart_id in LINE_CHARTS:
        panels = _svg_bands(_figure(static, chart_id))
        want = [(round(_px(r["l"], 0, 29), 1), round(_px(r["to"], 0, 29), 1)) for r in expected]
        assert len(panels) == 2 and all(panel == want for panel in panels), chart_id
        assert "Grey bands" in _caption(static, chart_id)


def test_a_model_without_fidelity_data_is_said_so_in_each_charts_caption():
    comparison = _with_lenses(make_comparison("same_tokenizer"), _lens(30, set(range(10)), kind="logit"), None)
    for page in (render_html(comparison), render_html(comparison, static=True)):
        for chart_id in LINE_CHARTS:
            caption = _caption(page, chart_id)
            assert "Grey bands: layers where the logit lens is unreliable for base " in caption
            assert "No fidelity data for tuned's lens: its layers are not marked." in caption
    spec = _specs(render_html(comparison))["comparison-trajectory"]
    assert [(r["l"], r["to"]) for r in spec["datasets"]["unreliable"]] == [(0, 9.5)]
    assert spec["datasets"]["unreliable"][0]["note"].startswith("logit lens unreliable here for base (")


def test_no_bands_and_no_band_sentence_when_every_layer_is_reliable():
    comparison = _with_lenses(make_comparison("same_tokenizer"), _lens(30, set()), _lens(30, set()))
    page = render_html(comparison)
    for chart_id, spec in _specs(page).items():
        assert "unreliable" not in spec.get("datasets", {}) and not _band_layers(spec), chart_id
    for chart_id in LINE_CHARTS:
        assert "Grey bands" not in _caption(page, chart_id) and "No fidelity" not in _caption(page, chart_id)
    assert _svg_bands(_figure(render_html(comparison, static=True), "comparison-trajectory")) == []


def test_models_of_different_depths_get_their_bands_in_relative_depth():
    """30 vs 18 layers: the x axis is (layer + 1) / layers, and half a layer is 0.5 / layers of each model."""
    comparison = _with_lenses(make_comparison("depths"), _lens(30, {0, 1, 2}), _lens(18, {16}))
    report = build_comparison_report(comparison)
    assert report.comparison is not None and report.comparison.alignment != "layer"
    bands = comparison_trust_bands(report.runs, report.comparison)
    assert [(b.x0, b.x1) for b in bands] == [
        pytest.approx((0.5 / 30, 3.5 / 30), abs=1e-6),
        pytest.approx((16.5 / 18, 17.5 / 18), abs=1e-6),
    ]
    spec = _specs(render_html(comparison))["comparison-trajectory"]
    assert [(r["x"], r["to"]) for r in spec["datasets"]["unreliable"]] == [(b.x0, b.x1) for b in bands]


def test_an_analysis_charts_bands_come_from_the_same_code():
    """One run: each run of unreliable layers, half a layer out (cut to the axis), from ``trust_bands`` too."""
    result = dataclasses.replace(make_result(layer_step=2), lens=_lens(30, {0, 1, 2, 3, 4, 5, 6, 12, 14}))
    spec = _specs(render_html(result))["run0-trajectory"]
    assert [(r["layer"], r["to"]) for r in spec["datasets"]["unreliable"]] == [(0, 6.5), (11.5, 14.5)]
    assert spec["datasets"]["unreliable"][0]["note"] == (
        "tuned lens unreliable here (held-out KL to final above its threshold)"
    )
    assert trust_bands([], []) == []
