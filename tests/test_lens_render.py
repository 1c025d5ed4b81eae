"""Lens evaluation views (text, HTML) from plain data: no MLX, hostile strings stay inert, JSON round trip."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lazarus_report.results.lens_eval import LensEvalResult
from lazarus_report.results.provenance import LensFidelity, LensRecord, ModelInfo

HOSTILE = "</script><script>alert(1)</script>"


def make_eval(kind: str = "tuned") -> LensEvalResult:
    model = ModelInfo(
        model_id=f"model {HOSTILE}", source="gguf", path=None, family="llama", num_layers=5, hidden_size=8,
        vocab_size=10, tied_embeddings=True, embedding_scale=None, precision="float32", device="cpu", blas="x",
        chat_template=False,
    )  # fmt: skip
    logit = [LensFidelity(layer, 10.0 - layer, 0.1 * layer, 9.0) for layer in range(4)]
    lens = [LensFidelity(layer, 3.0 - 0.7 * layer, 0.3 + 0.1 * layer, 5.0) for layer in range(4)]
    record = LensRecord(
        kind=kind, source=f"dir {HOSTILE}", digest="ab" * 32, fitted_for={"model_id": "m"}, corpus=HOSTILE,
        tokens=123, fidelity=lens, unreliable_threshold_nats=2.0, note=f"adapter {HOSTILE}",
    )  # fmt: skip
    return LensEvalResult(
        model=model, lens=record, logit=logit, corpus=HOSTILE, corpus_sha256="0" * 64, tokens=77,
        final_cross_entropy=3.2, versions={"lazarus-report": "0.1.0"}, timings={"total": 1.0},
    )  # fmt: skip


def test_json_round_trip() -> None:
    ev = make_eval()
    assert LensEvalResult.from_json(ev.to_json()) == ev
    assert json.loads(ev.to_json())["kind"] == "lazarus-report/lens-eval"


def test_text_marks_unreliable_layers_and_compares() -> None:
    from lazarus_report.render.lens_text import render_eval_text

    text = render_eval_text(make_eval())
    rows = [line for line in text.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == 12  # KL, top-1 agreement, cross-entropy: a row per layer each
    # 3.0, 2.3 > 2 nats: unreliable (≈) in the tuned column; 1.6: not (the logit lens is unreliable everywhere)
    assert [row.count("≈") for row in rows[:4]] == [2, 2, 1, 1]
    assert "Mean KL over layers 0-3: logit 8.500, tuned 1.950 (0.23x)" in text


def test_html_page_has_both_charts_and_escapes_strings() -> None:
    from lazarus_report.render.lens_report import render_lens_eval_html

    page = render_lens_eval_html(make_eval())
    assert 'id="lens-kl"' in page and 'id="lens-agreement"' in page
    assert page.count("<svg") >= 2
    assert "<script>alert(1)" not in page
    kl_table = page.split('id="lens-table-kl"')[1].split("</table>")[0]
    assert kl_table.count('class="unreliable-mark"') == 4 + 2  # logit at every layer, tuned at layers 0-1
    static = render_lens_eval_html(make_eval(), static=True)
    assert "vegaEmbed" not in static and static.count("<svg") >= 2


@pytest.mark.slow  # a fresh process
def test_renderers_do_not_import_mlx() -> None:
    code = (
        "import sys\n"
        "from lazarus_report.render import lens_report, lens_text\n"
        "print([m for m in ('mlx.core', 'mlx', 'torch') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
