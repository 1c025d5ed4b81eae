"""``lazarus lens eval`` compares every lens fitted for a model side by side (issue 21, issue 23): ground truth
on tiny random models (an identity lens reads exactly as the logit lens; a lens fitted to the model's states is
better than the logit lens), the bootstrap intervals, the verdict, the renderers, version-3 files, and the CLI
in-process with its one-line errors."""

from __future__ import annotations

import dataclasses
import json
import random
import subprocess
from pathlib import Path

import numpy as np
import pytest
from test_lens_math import WORDS, tiny_corpus

from lazarus_report.results.lens_eval import LensEvalResult
from lazarus_report.results.provenance import LensFidelity


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tiny_models import build_tiny_model

    root = tmp_path_factory.mktemp("lens-eval-all")
    build_tiny_model("llama", root / "model", seed=0)
    rng = random.Random(3)
    (root / "corpus.txt").write_text(" ".join(rng.choice(WORDS) for _ in range(4000)), encoding="utf-8")
    (root / "cache").mkdir()
    return {"root": root, "model": root / "model", "cache": root / "cache"}


@pytest.fixture(scope="module")
def loaded(tiny: dict[str, Path]):
    from lazarus_report.models.loader import load_model

    return load_model(str(tiny["model"]))


def identity_lens(loaded, kind: str = "linear"):
    from lazarus_report.lens.learned.artefact import Lens, model_fingerprint

    n, h = loaded.info.num_layers, loaded.info.hidden_size
    weight = np.broadcast_to(np.eye(h, dtype=np.float32), (n - 1, h, h)).copy()
    return Lens(
        kind=kind, weight=weight, bias=np.zeros((n - 1, h), np.float32), meta={"model": model_fingerprint(loaded)}
    )


def test_an_identity_lens_reads_exactly_as_the_logit_lens(loaded) -> None:
    from lazarus_report.lens.learned.eval import evaluate

    result = evaluate(loaded, [identity_lens(loaded)], tiny_corpus(16000, seed=4), tokens=800)
    logit, ident = result.all_entries()
    assert logit.lens.kind == "logit" and ident.lens.kind == "linear"
    assert ident.lens.fidelity == logit.lens.fidelity == result.logit
    assert ident.intervals == logit.intervals and len(ident.intervals) == loaded.info.num_layers - 1
    assert result.sequences >= 2 and "bootstrap over 13 blocks of up to 64" in result.interval_method
    for ci, f in zip(ident.intervals, ident.lens.fidelity):
        for field in ("kl_to_final", "top1_agreement", "cross_entropy"):
            lo, hi = getattr(ci, field)
            assert lo <= getattr(f, field) + 1e-9 and getattr(f, field) <= hi + 1e-9
    # Equal everywhere: no lens is best anywhere by a clear margin.
    from lazarus_report.render.lens_view import best_per_layer

    assert not any(clear for _, _, clear in best_per_layer(result.all_entries()))


def test_a_lens_fitted_to_the_model_beats_the_logit_lens(loaded) -> None:
    from lazarus_report.lens.learned.eval import evaluate
    from lazarus_report.lens.learned.fit import fit_lens
    from lazarus_report.render.lens_text import render_eval_text
    from lazarus_report.render.lens_view import eval_verdict

    corpus = tiny_corpus(8000, seed=1)
    linear = fit_lens(loaded, "linear", corpus=corpus)
    result = evaluate(loaded, [linear, identity_lens(loaded, "jacobian")], corpus, tokens=800)
    logit, fitted, ident = result.all_entries()
    assert [e.lens.kind for e in result.all_entries()] == ["logit", "linear", "jacobian"]
    assert sum(f.kl_to_final for f in fitted.lens.fidelity) < sum(f.kl_to_final for f in logit.lens.fidelity)
    assert ident.lens.fidelity == logit.lens.fidelity  # J = I is the logit lens
    assert result.lens.kind == "linear"  # the version-3 field names the best lens
    verdict = eval_verdict(result)
    assert verdict[0].startswith("The linear lens is the most faithful lens here")
    assert "Lowest KL per layer: linear at layers" in verdict[-1]
    text = render_eval_text(result)
    assert text.splitlines()[2] == verdict[0] and "[95% interval]" in text
    back = LensEvalResult.from_json(result.to_json())
    assert back == result and back.schema_version == 4


def test_bootstrap_intervals_resample_whole_blocks() -> None:
    from lazarus_report.lens.learned.eval import Sums, position_blocks

    # Blocks of consecutive positions, never across two sequences.
    assert position_blocks([5, 3], size=2).tolist() == [0, 0, 1, 1, 2, 3, 3, 4]

    one = np.ones((1, 1, 4))
    # Every sequence has the same mean: the interval is that mean exactly.
    same = Sums([0], 2 * one, one / 2, 3 * one, np.ones(4), np.ones(4))
    (ci,) = same.intervals()[0]
    assert ci.kl_to_final == [2.0, 2.0] and ci.top1_agreement == [0.5, 0.5] and ci.cross_entropy == [3.0, 3.0]
    # Two sequences with means 0 and 1 (10 positions each): the interval spans most of [0, 1], centred on 0.5.
    spread = Sums(
        [0], np.array([[[0.0, 10.0]]]), np.zeros((1, 1, 2)), np.zeros((1, 1, 2)), np.full(2, 10.0), np.full(2, 10.0)
    )
    (ci,) = spread.intervals()[0]
    assert ci.kl_to_final[0] == 0.0 and ci.kl_to_final[1] == 1.0
    assert spread.fidelity()[0][0].kl_to_final == 0.5


def _v3(path: Path) -> dict:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["schema_version"] == 3 and "entries" not in data
    return data


def test_a_version_3_file_reads_and_renders_verdict_first() -> None:
    from lazarus_report.render.lens_report import render_lens_eval_html
    from lazarus_report.render.lens_text import render_eval_text

    sample = Path(__file__).resolve().parents[1] / "sample_reports" / "lens-eval-smollm2-tuned.json"
    data = json.loads(sample.read_text(encoding="utf-8"))
    data.pop("entries", None)
    data.pop("interval_method", None)
    data.pop("sequences", None)
    data["schema_version"] = 3
    result = LensEvalResult.from_dict(data)
    assert [e.lens.kind for e in result.all_entries()] == ["logit", "tuned"]
    text = render_eval_text(result)
    assert "The tuned lens is the most faithful lens here" in text and "interval" not in text.split("Held-out")[0]
    html = render_lens_eval_html(result, static=True)
    assert html.index('id="summary"') < html.index('id="lens-kl"') < html.index('id="lens-table-kl"')
    assert "From layer " in html and "Below layer " in html


def test_verdict_says_when_no_lens_is_reliable_and_names_the_best_where() -> None:
    from factories import make_lens_eval

    from lazarus_report.render.lens_view import eval_verdict
    from lazarus_report.results.lens_eval import LensEvalEntry

    base = make_lens_eval()

    def rows(kls: list[float]) -> list[LensFidelity]:
        return [LensFidelity(layer=i, kl_to_final=k, top1_agreement=0.5, cross_entropy=3.0) for i, k in enumerate(kls)]

    logit = dataclasses.replace(base.lens, kind="logit", source=None, fidelity=rows([9, 9, 9, 1.5]))
    tuned = dataclasses.replace(base.lens, kind="tuned", fidelity=rows([5, 3, 1, 0.5]))
    linear = dataclasses.replace(base.lens, kind="linear", fidelity=rows([4, 3.5, 1.8, 1.0]))
    result = dataclasses.replace(
        base, entries=[LensEvalEntry(logit), LensEvalEntry(tuned), LensEvalEntry(linear)], lens=tuned
    )
    verdict = eval_verdict(result)
    assert verdict[0].startswith("The tuned lens is the most faithful lens here")
    assert verdict[1].startswith("From layer 2 the tuned lens is reliable") and "at least 50%" in verdict[1]
    assert verdict[2].startswith("Below layer 2 no lens is reliable")
    assert verdict[3] == "Lowest KL per layer: tuned at layers 1-3; linear at layer 0."
    never = dataclasses.replace(
        result, entries=[LensEvalEntry(dataclasses.replace(logit, fidelity=rows([9, 9, 9, 9])))]
    )
    assert any(s.startswith("No lens is reliable at any measured layer") for s in eval_verdict(never))


def test_hostile_lens_eval_renders_escaped() -> None:
    from factories import make_lens_eval

    from lazarus_report.render.lens_report import render_lens_eval_html

    html = render_lens_eval_html(make_lens_eval(hostile=True), static=True)
    assert "<script>alert" not in html.split('<script type="application/json"')[0]


# --- the CLI, in-process --------------------------------------------------------------------------------------


def invoke(*args: str, cache: Path) -> subprocess.CompletedProcess:
    from click.testing import CliRunner

    from lazarus_report.cli.main import main

    env = {"LAZARUS_CACHE_DIR": str(cache), "XDG_CACHE_HOME": str(cache / "xdg")}
    result = CliRunner().invoke(main, list(args), env=env)
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


def assert_clean_error(proc: subprocess.CompletedProcess, fragment: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and fragment in lines[0], proc.stderr


def test_cli_evaluates_every_fitted_lens_and_refuses_bad_input(tiny: dict[str, Path]) -> None:
    root, model, cache = tiny["root"], str(tiny["model"]), tiny["cache"]
    corpus = str(root / "corpus.txt")
    out, page = root / "eval.json", root / "eval.html"
    # No lens fitted yet and none named: one line, exit 2, nothing written.
    proc = invoke("lens", "eval", "-m", model, "--corpus", corpus, "-o", str(out), cache=cache)
    assert_clean_error(proc, "no lens fitted for")
    assert not out.exists()
    # An unknown kind: refused before the model loads.
    proc = invoke("lens", "eval", "-m", model, "--lens", "banana", cache=cache)
    assert_clean_error(proc, "unknown --lens 'banana'")
    proc = invoke("lens", "eval", "-m", model, "--lens", "tuned", "--corpus", corpus, "-o", str(out), cache=cache)
    assert_clean_error(proc, "no fitted tuned lens")
    assert not out.exists()
    # Fit two kinds into the cache; eval without --lens finds both, beside the logit lens.
    for kind in ("linear", "tuned"):
        extra = ["--steps", "3"] if kind == "tuned" else []
        proc = invoke("lens", "fit", "-m", model, "--kind", kind, "--corpus", corpus, *extra, "-q", cache=cache)
        assert proc.returncode == 0, proc.stderr
    proc = invoke("lens", "eval", "-m", model, "--corpus", corpus, "-o", str(out), "--html", str(page), cache=cache)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["schema_version"] == 4
    assert [e["lens"]["kind"] for e in data["entries"]] == ["logit", "linear", "tuned"]
    assert all(len(e["intervals"]) == len(e["lens"]["fidelity"]) for e in data["entries"])
    assert proc.stdout.startswith("Lens evaluation: logit lens, linear lens, tuned lens on ")
    assert "is the most faithful lens here" in proc.stdout.splitlines()[2]
    html = page.read_text()
    assert html.index('id="summary"') < html.index('id="lens-kl"')
    assert html.count('<table class="data lens-eval"') == 3
    # Naming one lens evaluates it and the logit lens only.
    proc = invoke(
        "lens", "eval", "-m", model, "--lens", "linear", "--corpus", corpus, "-q", "-o", str(out), cache=cache
    )
    assert proc.returncode == 0, proc.stderr
    assert [e["lens"]["kind"] for e in json.loads(out.read_text())["entries"]] == ["logit", "linear"]


def test_cli_skips_a_damaged_cached_lens_with_a_warning(tiny: dict[str, Path]) -> None:
    """A cached lens whose weights no longer match their digest is never used: a one-line warning, the other
    lenses are evaluated; when none is left, the one-line error."""
    root, model = tiny["root"], str(tiny["model"])
    cache = root / "cache-damaged"
    cache.mkdir()
    corpus = str(root / "corpus.txt")
    for kind in ("linear", "tuned"):
        extra = ["--steps", "3"] if kind == "tuned" else []
        proc = invoke("lens", "fit", "-m", model, "--kind", kind, "--corpus", corpus, *extra, "-q", cache=cache)
        assert proc.returncode == 0, proc.stderr
    (weights,) = cache.glob("lenses/*/linear/weights.safetensors")
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    out = root / "damaged.json"
    proc = invoke("lens", "eval", "-m", model, "--corpus", corpus, "-q", "-o", str(out), cache=cache)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith("Warning: linear lens skipped: ") and "damaged" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert [e["lens"]["kind"] for e in json.loads(out.read_text())["entries"]] == ["logit", "tuned"]
    (tuned,) = cache.glob("lenses/*/tuned/weights.safetensors")
    tuned.write_bytes(b"")
    out.unlink()
    proc = invoke("lens", "eval", "-m", model, "--corpus", corpus, "-q", "-o", str(out), cache=cache)
    assert proc.returncode == 2 and "no lens fitted for" in proc.stderr.strip().splitlines()[-1]
    assert not out.exists()


def test_charts_shade_the_intervals_and_keep_the_key() -> None:
    from factories import make_lens_eval

    from lazarus_report.render.lens_report import fidelity_charts
    from lazarus_report.results.lens_eval import LayerInterval, LensEvalEntry

    base = make_lens_eval()
    logit = dataclasses.replace(base.lens, kind="logit", source=None, fidelity=base.logit)

    def around(rows: list[LensFidelity]) -> list[LayerInterval]:
        return [
            LayerInterval(f.layer, [f.kl_to_final * 0.9, f.kl_to_final * 1.1], [0.1, 0.2], [2.0, 3.0]) for f in rows
        ]

    entries = [LensEvalEntry(logit, around(logit.fidelity)), LensEvalEntry(base.lens, around(base.lens.fidelity))]
    kl, agree = fidelity_charts(dataclasses.replace(base, entries=entries))
    for chart in (kl, agree):
        marks = [
            layer["mark"]["type"] if isinstance(layer["mark"], dict) else layer["mark"] for layer in chart.spec["layer"]
        ]
        assert marks.count("area") == 2 and "line" in marks
        assert ">Lens</text>" in chart.svg  # the key of the lines is drawn
    kl, _ = fidelity_charts(base)  # a version-3 file: no intervals, no bands
    assert "area" not in json.dumps(kl.spec)
