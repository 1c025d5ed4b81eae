"""Notebooks: a result displays as its HTML report in a sandboxed ``<iframe srcdoc>`` (``_repr_html_``), and
the example notebook runs top to bottom in a real Jupyter kernel (nbclient)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from factories import HOSTILE_STRINGS, make_comparison, make_hostile_result, make_suite
from helpers import parse

from lazarus_report.render.html import render_html, render_notebook_html
from lazarus_report.render.packing import load_result_file

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "examples" / "notebook.ipynb"
SAMPLE = REPO / "sample_reports" / "analyze-capital-raw.json"


def _only_the_iframe(cell_html: str):
    doc = parse(cell_html)
    nodes = [n for n in doc.iter() if n is not doc]
    assert [n.tag for n in nodes] == ["iframe"], [n.tag for n in nodes]  # nothing leaked out of srcdoc
    return nodes[0]


HOSTILE = {
    "analysis": make_hostile_result,
    "comparison": lambda: make_comparison("hostile"),
    "suite": lambda: make_suite(len(HOSTILE_STRINGS) + 2, hostile=True),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_result_displays_as_its_report_in_a_sandboxed_iframe(kind):
    result = HOSTILE[kind]()
    iframe = _only_the_iframe(result._repr_html_())
    assert iframe.attrs["sandbox"] == "allow-scripts"  # no allow-same-origin: the page cannot reach the notebook
    assert iframe.attrs["srcdoc"] == render_html(result)  # the escaped page comes back byte for byte
    assert iframe.attrs["title"]


def test_the_static_variant_runs_no_scripts():
    result = make_hostile_result()
    iframe = _only_the_iframe(render_notebook_html(result, static=True, height=400))
    assert iframe.attrs["sandbox"] == ""  # nothing allowed, not even scripts
    assert iframe.attrs["srcdoc"] == render_html(result, static=True)
    assert "height:400px" in iframe.attrs["style"]


@pytest.mark.slow  # a Jupyter kernel (a process) and the real model
def test_the_example_notebook_runs(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    # A kernel spec for this interpreter (the one that has lazarus_report), found first on JUPYTER_PATH.
    spec_dir = tmp_path / "kernels" / "lazarus-test"
    spec_dir.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec = {"argv": argv, "display_name": "lazarus test", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")

    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert not any(cell.get("outputs") for cell in nb.cells if cell.cell_type == "code")  # committed clean
    client = nbclient.NotebookClient(
        nb, kernel_name="lazarus-test", timeout=300, resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()

    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    (display,) = [o for o in code[0].outputs if o.output_type == "execute_result"]
    iframe = _only_the_iframe(display.data["text/html"])
    assert iframe.attrs["srcdoc"] == render_html(load_result_file(SAMPLE))
    printed = "".join(o.get("text", "") for o in code[1].outputs if o.output_type == "stream")
    assert "smollm2-135m-instruct, 30 layers: next token ' Paris' (p = 0.773)" in printed
    assert "' Paris' first becomes top-1 at layer 29" in printed
