"""Every report says which lens it shows and marks the layers where that lens is unreliable."""

from __future__ import annotations

import dataclasses
import json

import pytest
from factories import make_result
from test_render_html import parse

from lazarus_report.render.html import render_html
from lazarus_report.render.lens_view import layer_ranges
from lazarus_report.render.markdown import render_markdown
from lazarus_report.render.text import render_text
from lazarus_report.results.analysis import AnalysisResult
from lazarus_report.results.provenance import LensFidelity, LensRecord

THRESHOLD = 2.0


def with_lens(result: AnalysisResult, kind: str, bad: set[int]) -> AnalysisResult:
    """``result`` as read through a ``kind`` lens whose held-out KL is above the threshold at ``bad``."""
    fidelity = [
        LensFidelity(layer, kl_to_final=5.0 if layer in bad else 0.5, top1_agreement=0.3, cross_entropy=4.0)
        for layer in range(result.model.num_layers)
    ]
    record = LensRecord(
        kind=kind,
        source="cache",
        digest="ab" * 32,
        fitted_for={"model_id": result.model.model_id},
        corpus="a <b>test</b> corpus",
        tokens=24576,
        fidelity=fidelity,
        unreliable_threshold_nats=THRESHOLD,
        note="lens fitted on the base model, applied to base + adapter <x>",
    )
    return dataclasses.replace(result, lens=record)


@pytest.fixture(scope="module")
def tuned() -> AnalysisResult:
    return with_lens(make_result(), "tuned", bad={0, 1, 2, 3, 7})


def test_unreliable_layers_come_from_the_fidelity_and_the_captured_layers(tuned):
    assert tuned.lens_kind == "tuned"
    assert tuned.unreliable_layers == [0, 1, 2, 3, 7]
    assert make_result().unreliable_layers == []  # no lens record: nothing known, nothing marked
    evenly = dataclasses.replace(tuned, captured_layers=[0, 4, 8, 29])
    assert evenly.unreliable_layers == [0]


def test_layer_ranges():
    assert layer_ranges([0, 1, 2, 5, 7, 8]) == "0-2, 5, 7-8"
    assert layer_ranges([0, 4, 8], captured=[0, 4, 8, 12]) == "0-8"
    assert layer_ranges([]) == ""


def test_html_names_the_lens_and_marks_unreliable_rows(tuned):
    doc = parse(render_html(tuned))
    assert doc.find("title").text().startswith("Tuned lens: ")
    assert "tuned lens" in doc.find("span", cls="lens-pill").text()
    note = doc.find("p", cls="unreliable-note").text()
    assert "unreliable at layers 0-3, 7" in note
    rows = doc.find("section", id="run0-layers").find("tbody").find_all("tr")
    marked = [r.find("th").text().split()[0] for r in rows if "unreliable" in (r.attrs.get("class") or "").split()]
    assert marked == ["0", "1", "2", "3", "7"]
    # the settings list says which lens, where it came from and how it was fitted (escaped)
    html_text = render_html(tuned)
    assert "a &lt;b&gt;test&lt;/b&gt; corpus" in html_text and "<b>test</b>" not in html_text
    assert "base + adapter &lt;x&gt;" in html_text


def test_charts_shade_the_unreliable_layers(tuned):
    doc = parse(render_html(tuned))
    for chart in ("run0-trajectory", "run0-entropy-kl"):
        fig = doc.find("figure", id=chart)
        spec = json.loads(doc.find("script", id=fig.attrs["data-spec"]).text())
        bands = spec["datasets"]["unreliable"]
        assert [(b["layer"], b["to"]) for b in bands] == [(0, 3.5), (6.5, 7.5)]  # cut to the axis (r19-charts)
    heatmap = doc.find("figure", id="run0-heatmap")
    svg_labels = [t.text() for t in heatmap.find("div", cls="chart-static").find_all("text")]
    grid_layers = tuned.grid.layers
    marked = {int(s.split()[0]) for s in svg_labels if s.endswith("\u2248") and s.split()[0].isdigit()}
    assert marked == {layer for layer in grid_layers if layer in {0, 1, 2, 3, 7}}


def test_logit_lens_reports_have_no_marks():
    html_text = render_html(make_result())
    doc = parse(html_text)
    assert doc.find("title").text().startswith("Logit lens: ")
    assert not doc.find_all("p", cls="unreliable-note")
    assert not [r for r in doc.find_all("tr") if "unreliable" in (r.attrs.get("class") or "").split()]
    assert '"unreliable"' not in html_text


def test_markdown_and_text_say_which_lens(tuned):
    md = render_markdown(tuned)
    assert md.startswith("# Tuned lens: ")
    assert (
        "- **Lens:** Tuned lens, reliable from layer 8 (held-out KL at most 2 nats); layers 0-3, 7 are marked ≈\\: "
        "read them as rough." in md
    )
    text = render_text(tuned)
    assert "Lens: tuned lens (lens fitted on the base model, applied to base + adapter <x>)" in text
    assert "=== Tuned Lens (top prediction at each layer) ===" in text
    assert (
        "Trust: Tuned lens, reliable from layer 8 (held-out KL at most 2 nats); layers 0-3, 7 are marked ≈: "
        "read them as rough." in text
    )
    lines = [line for line in text.splitlines() if line.strip().startswith("Layer") and "≈ (unreliable)" in line]
    assert [int(line.split()[1].rstrip(":")) for line in lines] == [
        layer for layer in tuned.captured_layers if layer in {0, 1, 2, 3, 7}
    ]


def test_lens_record_survives_the_json_round_trip(tuned):
    again = AnalysisResult.from_json(tuned.to_json())
    assert again == tuned and again.unreliable_layers == tuned.unreliable_layers


def test_a_learned_lens_report_shows_the_logit_lens_beside_it(tuned):
    from lazarus_report.results.analysis import LensView, logit_view_record

    plain = make_result()
    logit_fidelity = [
        LensFidelity(layer, kl_to_final=9.0 if layer < 20 else 1.0, top1_agreement=0.1, cross_entropy=6.0)
        for layer in range(plain.model.num_layers)
    ]
    record = dataclasses.replace(tuned.lens, logit_fidelity=logit_fidelity)
    both = dataclasses.replace(
        tuned,
        lens=record,
        lens_views=[LensView(logit_view_record(record), plain.layer_predictions, plain.token_evolutions, plain.grid)],
    )
    assert both.through_logit_lens().unreliable_layers == [x for x in both.captured_layers if x < 20]
    doc = parse(render_html(both))
    section = doc.find("div", id="run0-lens1-panel")
    assert "Logit lens" in section.find("h3").text()
    ids = [f.attrs["id"] for f in section.find_all("figure", cls="chart")]
    assert ids == ["run0-lens1-trajectory", "run0-lens1-entropy-kl", "run0-lens1-heatmap"]
    rows = section.find("section", id="run0-lens1-layers").find("tbody").find_all("tr")
    marked = [int(r.find("th").text().split()[0]) for r in rows if "unreliable" in (r.attrs.get("class") or "")]
    assert marked == [x for x in both.captured_layers if x < 20]
    # the main reading is still the tuned lens's
    main_rows = doc.find("section", id="run0-layers").find("tbody").find_all("tr")
    assert [int(r.find("th").text().split()[0]) for r in main_rows if "unreliable" in (r.attrs.get("class") or "")] == [
        0,
        1,
        2,
        3,
        7,
    ]
    assert not parse(render_html(tuned)).find_all("section", id="run0-lenses")  # no logit view kept: no switch
