"""Several lenses from one forward pass (``--lens tuned,linear``, ``--lens all``): the views are exactly what
each lens reads on its own, the identity lens reads as the logit lens, the pages switch between them, and an
older file's ``logit_view`` still loads and renders."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import lazarus, parse

from lazarus_report.commands.analyzer import ModelAnalyzer
from lazarus_report.core.config import AnalysisConfig, LayerStrategy
from lazarus_report.lens.learned.artefact import Lens, model_fingerprint
from lazarus_report.render.html import render_html
from lazarus_report.render.markdown import render_markdown
from lazarus_report.render.text import quote, render_text
from lazarus_report.results.analysis import AnalysisResult

PROMPT = "hello world abc"
SAMPLES = Path(__file__).resolve().parents[1] / "sample_reports"


def _config(**changes) -> AnalysisConfig:
    base = AnalysisConfig(layer_strategy=LayerStrategy.ALL, use_chat_template=False, track_tokens=[" world"])
    return dataclasses.replace(base, **changes)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return str(tiny_model_dir("llama", seed=5))


@pytest.fixture(scope="module")
def lenses(tiny, tmp_path_factory):
    """Two lenses built in tmp: a tuned lens whose translators are the identity (A = 0, b = 0) and a linear lens
    with random maps that changes what the layers read."""
    root = tmp_path_factory.mktemp("switch")
    with ModelAnalyzer.load(tiny) as a:
        n, h, fp = a.info.num_layers, a.info.hidden_size, model_fingerprint(a.loaded)
    rng = np.random.default_rng(1)
    zero = np.zeros((n - 1, h, h), np.float32)
    identity = Lens(
        kind="tuned", weight=zero, bias=np.zeros((n - 1, h), np.float32), form="residual", meta={"model": fp}
    )
    weight = (np.eye(h) + 0.5 * rng.standard_normal((n - 1, h, h)) / np.sqrt(h)).astype(np.float32)
    bias = (0.3 * rng.standard_normal((n - 1, h))).astype(np.float32)
    random = Lens(kind="linear", weight=weight, bias=bias, meta={"model": fp})
    identity.save(root / "identity")
    random.save(root / "random")
    return str(root / "identity"), str(root / "random")


@pytest.fixture(scope="module")
def three(tiny, lenses):
    """One run read through the identity tuned lens (primary), the logit lens and the random linear lens, and
    each lens run on its own."""
    identity, random = lenses
    with ModelAnalyzer.load(tiny) as a:
        both = a.run(PROMPT, _config(lens=identity, extra_lenses=["logit", random]))
        alone = {spec: a.run(PROMPT, _config(lens=spec)) for spec in ("logit", random)}
        text_only = a.run(PROMPT, _config(lens=identity, extra_lenses=[random], compute_grid=False))
    return both, alone, text_only


def test_the_identity_lens_reads_exactly_as_the_logit_lens(three):
    both, alone, _ = three
    assert [v.lens.kind for v in both.lens_views] == ["logit", "linear"]
    logit = both.through_lens("logit")
    assert logit is not None
    # the identity-translator tuned lens (primary) == its logit view == a logit-lens run, exactly
    assert both.layer_predictions == logit.layer_predictions == alone["logit"].layer_predictions
    assert both.token_evolutions == logit.token_evolutions == alone["logit"].token_evolutions
    assert both.grid == logit.grid == alone["logit"].grid


def test_a_lens_that_changes_predictions_has_its_own_view(three):
    both, alone, _ = three
    linear = both.through_lens("linear")
    assert linear is not None and linear.lens.source == alone[next(k for k in alone if k != "logit")].lens.source
    solo = alone[next(k for k in alone if k != "logit")]
    assert linear.layer_predictions == solo.layer_predictions  # the same pass, read as that lens alone reads it
    assert linear.grid == solo.grid
    assert linear.grid != both.grid  # it reads the layers differently
    tops = [p.top_tokens[0].token_id for p in linear.layer_predictions[:-1]]
    assert tops != [p.top_tokens[0].token_id for p in both.layer_predictions[:-1]]
    assert linear.layer_predictions[-1] == both.layer_predictions[-1]  # the last layer is never mapped


def test_views_without_a_grid_and_the_one_line_per_lens(three):
    both, _, text_only = three
    assert [v.lens.kind for v in text_only.lens_views] == ["linear"]  # no implicit logit view without a grid
    assert text_only.lens_views[0].grid is None
    assert text_only.lens_views[0].layer_predictions == both.lens_views[1].layer_predictions
    text = render_text(both)
    also = [line for line in text.splitlines() if line.startswith("Also: ")]
    assert [line.split()[1] for line in also] == ["logit", "linear"]
    final = quote(both.final_top_token)
    assert all(f"reads {final} " in line for line in also)
    md = render_markdown(both)
    assert md.count("**Through the ") == 2 and "**Through the linear lens:** reads" in md


def test_json_keeps_every_view_and_the_config(three):
    both, _, _ = three
    data = json.loads(both.to_json())
    assert data["schema_version"] == 4 and "logit_view" not in data
    assert [v["lens"]["kind"] for v in data["lens_views"]] == ["logit", "linear"]
    assert data["config"]["extra_lenses"][0] == "logit"
    assert AnalysisResult.from_json(both.to_json()) == both
    alone = json.loads(three[1]["logit"].to_json())
    assert "lens_views" not in alone and "extra_lenses" not in alone["config"]  # one lens: as version 3 wrote it


def test_the_page_has_a_tab_per_lens_with_its_own_heatmap(three):
    both, _, _ = three
    doc = parse(render_html(both))
    section = doc.find("section", id="run0-lenses")
    inputs = section.find_all("input", cls="lens-tab-input")
    assert [i.attrs["id"] for i in inputs] == ["run0-tab", "run0-lens1-tab", "run0-lens2-tab"]
    panels = section.find_all("div", cls="lens-panel")
    assert [p.attrs["data-lens"] for p in panels] == ["tuned lens", "logit lens", "linear lens"]
    heatmaps = [p.find("figure", id=f"{key}-heatmap") for p, key in zip(panels, ["run0", "run0-lens1", "run0-lens2"])]
    assert all(h is not None for h in heatmaps)
    svgs = [h.find("div", cls="chart-static").text() for h in heatmaps]
    assert svgs[0] != svgs[2]  # the linear lens's heatmap differs from the primary's
    assert all("Trust:" in p.find("p", cls="lens-trust").text() for p in panels)
    static = parse(render_html(both, static=True)).find("section", id="run0-lenses")
    assert not static.find_all("input") and len(static.find_all("div", cls="lens-panel")) == 3  # stacked


def test_an_older_file_with_a_logit_view_still_loads_and_renders():
    # the tuned-lens sample as version 3 wrote it (kept in tests/data: the samples are rewritten by each version)
    path = Path(__file__).parent / "data" / "analysis-v3-logit-view.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["schema_version"] == 3 and data["logit_view"] is not None
    result = AnalysisResult.load(path)
    assert [v.lens.kind for v in result.lens_views] == ["logit"]
    view = result.through_logit_lens()
    assert view is not None and view.grid is not None
    assert [p.layer_idx for p in view.layer_predictions] == data["captured_layers"]
    assert (
        view.layer_predictions[0].top_tokens[0].token
        == data["logit_view"]["layer_predictions"][0]["top_tokens"][0]["token"]
    )
    assert view.lens.fidelity == result.lens.logit_fidelity
    doc = parse(render_html(result))
    assert doc.find("div", id="run0-lens1-panel") is not None
    assert AnalysisResult.from_json(result.to_json()) == result  # rewritten as version 4


def test_cli_lens_list_and_all_with_nothing_fitted(tiny, lenses, tmp_path, isolated_cache):
    identity, random = lenses
    out = tmp_path / "r.json"
    done = lazarus(
        "introspect", "analyze", "-m", tiny, "-p", PROMPT, "--raw", "--lens", f"{random},logit", "-o", str(out)
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["lens"]["kind"] == "linear" and [v["lens"]["kind"] for v in data["lens_views"]] == ["logit"]
    assert "Also: logit lens reads" in done.stdout
    done = lazarus("introspect", "analyze", "-m", tiny, "-p", PROMPT, "--raw", "--lens", "all", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "--lens all: no learned lens is fitted or shipped" in done.stderr
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["lens"]["kind"] == "logit" and "lens_views" not in data
    done = lazarus(
        "introspect", "analyze", "-m", tiny, "-p", PROMPT, "--raw", "--lens", f"all,{identity}", "-o", str(out)
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text(encoding="utf-8"))
    assert [v["lens"]["kind"] for v in data["lens_views"]] == ["tuned"] and "note" not in done.stderr


def test_compare_switches_both_models_together(tiny, lenses, tmp_path):
    _, random = lenses
    html = tmp_path / "c.html"
    done = lazarus(
        "introspect", "compare", "-m1", tiny, "-m2", tiny, "-p", PROMPT, "--raw", "--lens", f"logit,{random}",
        "--html", str(html), "--markdown", str(tmp_path / "c.md"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = parse(html.read_text(encoding="utf-8"))
    section = doc.find("section", id="lenses")
    assert len(section.find_all("input", cls="lens-tab-input")) == 2
    panel = section.find("div", id="lens-panel-1")
    assert panel.attrs["data-lens"] == "linear lens"
    assert len(panel.find_all("figure", cls="chart")) == 2  # both models' heatmaps through the linear lens
    assert "the primary lens" in section.find("p", cls="note").text()
    assert (tmp_path / "c.md").read_text(encoding="utf-8").count("through the linear lens:** reads") == 2


@pytest.mark.slow
def test_smollm2_all_lenses_are_the_shipped_ones_without_a_fit(smollm2, isolated_cache):
    config = AnalysisConfig(use_chat_template=False, extra_lenses=["all"], track_tokens=[" Paris"])
    result = smollm2.run("The capital of France is", config)
    kinds = [result.lens_kind, *(v.lens.kind for v in result.lens_views)]
    assert kinds[:3] == ["logit", "linear", "tuned"] and set(kinds) <= {"logit", "linear", "tuned", "jacobian"}
    assert all(v.lens.source and v.lens.source.startswith("shipped with") for v in result.lens_views)
    assert result.config.extra_lenses == kinds[1:]  # "all" as it was resolved
    assert not (isolated_cache / "lenses").exists() or not any((isolated_cache / "lenses").rglob("lens.json"))
    finals = {v.layer_predictions[-1].top_tokens[0].token for v in result.lens_views}
    assert finals == {result.final_top_token}  # the last layer is never mapped
