"""A learned lens through the engine, the CLI and suites: the engine applies exactly the lens's
affine maps before the model's own head (checked against a direct numpy computation), records which
lens ran, and every way of naming a lens is checked before any model loads."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from tiny_models import build_tiny_model

from lazarus_report.cli.main import main
from lazarus_report.commands.analyzer import ModelAnalyzer
from lazarus_report.commands.compare import compare_models
from lazarus_report.core.config import AnalysisConfig, LayerStrategy
from lazarus_report.lens import readout as lens_mod
from lazarus_report.lens.learned.artefact import Lens, model_fingerprint
from lazarus_report.models.hooks import capture_hidden
from lazarus_report.results.analysis import AnalysisResult
from lazarus_report.suites.spec import load_suite

PROMPT = "hello world abc"
RAW_ALL = AnalysisConfig(layer_strategy=LayerStrategy.ALL, use_chat_template=False, track_tokens=[" world"])


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return str(tiny_model_dir("llama", seed=5))  # shared, read-only (conftest)


@pytest.fixture(scope="module")
def random_lens(tiny, tmp_path_factory):
    """A linear lens with random (not fitted) maps: what matters here is that the engine applies them."""
    with ModelAnalyzer.load(tiny) as a:
        n, h = a.info.num_layers, a.info.hidden_size
        rng = np.random.default_rng(0)
        weight = (np.eye(h) + 0.3 * rng.standard_normal((n - 1, h, h)) / np.sqrt(h)).astype(np.float32)
        bias = (0.1 * rng.standard_normal((n - 1, h))).astype(np.float32)
        lens = Lens(kind="linear", weight=weight, bias=bias, meta={"model": model_fingerprint(a.loaded)})
    path = tmp_path_factory.mktemp("lenses") / "linear"
    lens.save(path)
    return str(path), weight, bias


def direct_log_probs(model_dir: str, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """[L, V] float64 log-probabilities at the last position: h @ W + b in numpy, then the model's head."""
    with ModelAnalyzer.load(model_dir) as a:
        ids = a.format_prompt(PROMPT, use_chat_template=False)[2]
        layers = list(range(a.info.num_layers))
        sink = capture_hidden(a.loaded.parts, ids, layers)
        rows = []
        for i in layers:
            h = np.asarray(sink[i][0, -1:], dtype=np.float64)
            if i < len(weight):
                h = h @ weight[i].astype(np.float64) + bias[i]
            rows.append(h.astype(np.float32))
        z = lens_mod.head_logits_np(a.loaded.parts, lens_mod.mx.array(np.concatenate(rows))).astype(np.float64)
    m = z.max(axis=1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))


def test_engine_applies_the_lens_maps(tiny, random_lens):
    path, weight, bias = random_lens
    with ModelAnalyzer.load(tiny) as a:
        run = a.lens_run(PROMPT, AnalysisConfig(**{**RAW_ALL.__dict__, "lens": path}))
        logit = a.lens_run(PROMPT, RAW_ALL)
    expected = direct_log_probs(tiny, weight, bias)
    np.testing.assert_allclose(run.log_probs, expected, atol=2e-4)
    result = run.result
    assert [p.top_tokens[0].token_id for p in result.layer_predictions] == expected.argmax(axis=1).tolist()
    p_final = np.exp(expected[-1])
    kl = (p_final * (expected[-1] - expected)).sum(axis=1)
    np.testing.assert_allclose([p.kl_to_final for p in result.layer_predictions], kl, atol=2e-4)
    # the last layer is never mapped: the model's own prediction is the same through any lens
    np.testing.assert_array_equal(run.log_probs[-1], logit.log_probs[-1])
    assert not np.allclose(run.log_probs[0], logit.log_probs[0])
    assert result.lens is not None and result.lens.kind == "linear" and result.lens.source == path
    assert result.config.lens == path and logit.result.lens.kind == "logit"
    assert AnalysisResult.from_json(result.to_json()) == result


def test_compare_reads_both_models_through_one_lens(tiny, random_lens):
    path, _, _ = random_lens
    c = compare_models(tiny, tiny, PROMPT, AnalysisConfig(**{**RAW_ALL.__dict__, "lens": path}))
    assert [r.lens.kind for r in c.results] == ["linear", "linear"]
    assert all(d.js == 0 for d in c.divergences)


@pytest.mark.parametrize(
    ("overrides", "mismatch"), [({"num_hidden_layers": 5}, "layer count"), ({}, "the weights differ")]
)
def test_a_lens_for_another_model_is_refused(tmp_path, random_lens, overrides, mismatch):
    other = tmp_path / "other"
    build_tiny_model("llama", other, seed=6, **overrides)
    path, _, _ = random_lens
    result = CliRunner().invoke(
        main, ["introspect", "analyze", "-m", str(other), "-p", PROMPT, "--raw", "--lens", path]
    )
    assert result.exit_code == 2
    assert f"fitted for another model: {mismatch}" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("bogus", "names no lens kind and no such directory"),
        ("{file}", "is not a directory"),
        ("{empty}", "is not a lens"),
        ("{damaged}", "is damaged"),
    ],
)
def test_bad_lens_values_fail_before_the_model_loads(tmp_path, random_lens, value, message):
    import shutil

    path, _, _ = random_lens
    (tmp_path / "f.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    damaged = tmp_path / "damaged"
    shutil.copytree(path, damaged)
    weights = next(p for p in damaged.iterdir() if p.suffix == ".safetensors")
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    value = value.format(file=tmp_path / "f.txt", empty=tmp_path / "empty", damaged=damaged)
    out = tmp_path / "out.json"
    # a model that does not exist: the lens error must come first, before any model lookup or load
    result = CliRunner().invoke(
        main, ["introspect", "analyze", "-m", str(tmp_path / "no-model"), "-p", PROMPT, "--lens", value, "-o", str(out)]
    )
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_a_missing_fitted_lens_names_the_command_to_run(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("LAZARUS_CACHE_DIR", str(tmp_path / "cache"))
    result = CliRunner().invoke(main, ["introspect", "analyze", "-m", tiny, "-p", PROMPT, "--raw", "--lens", "tuned"])
    assert result.exit_code == 2
    assert "no fitted tuned lens" in result.output and "lazarus lens fit" in result.output


def test_suite_defaults_lens(tmp_path, tiny, random_lens):
    path, _, _ = random_lens
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "defaults:\n  lens: tuned\ncases:\n  - id: a\n    prompt: hello\n    raw: true\n", encoding="utf-8"
    )
    assert load_suite(suite).lens == "tuned"
    (tmp_path / "lenses" / "mine").mkdir(parents=True)  # a missing directory is refused when the file is read
    suite.write_text(
        "defaults:\n  lens: lenses/mine\ncases:\n  - id: a\n    prompt: hello\n    raw: true\n", encoding="utf-8"
    )
    assert load_suite(suite).lens == str(tmp_path / "lenses" / "mine")  # relative to the suite file
    suite.write_text(
        f"defaults:\n  lens: {json.dumps(path)}\ncases:\n  - id: a\n    prompt: hello world abc\n    raw: true\n"
        "    track: ' world'\n",
        encoding="utf-8",
    )
    out = tmp_path / "suite.json"
    result = CliRunner().invoke(main, ["introspect", "suite", str(suite), "-m", tiny, "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["cases"][0]["analysis"]["lens"]["kind"] == "linear"
    # --lens on the command line wins over the file
    result = CliRunner().invoke(
        main, ["introspect", "suite", str(suite), "-m", tiny, "-o", str(out), "-q", "--lens", "logit"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text(encoding="utf-8"))["cases"][0]["analysis"]["lens"]["kind"] == "logit"


def test_a_learned_lens_keeps_the_logit_reading_beside_it(tiny, random_lens):
    path, _, _ = random_lens
    grid_config = AnalysisConfig(**{**RAW_ALL.__dict__, "compute_grid": True})
    with ModelAnalyzer.load(tiny) as a:
        learned = a.run(PROMPT, AnalysisConfig(**{**grid_config.__dict__, "lens": path}))
        logit = a.run(PROMPT, grid_config)
        no_grid = a.run(PROMPT, AnalysisConfig(**{**RAW_ALL.__dict__, "lens": path, "compute_grid": False}))
    assert logit.lens_views == [] and no_grid.lens_views == []  # nothing to keep beside
    view = learned.through_logit_lens()
    assert view is not None and view.lens_kind == "logit"
    assert view.layer_predictions == logit.layer_predictions
    assert view.token_evolutions == logit.token_evolutions
    assert view.grid == logit.grid
    assert learned.grid != logit.grid  # the learned lens reads the layers differently
    assert AnalysisResult.from_json(learned.to_json()) == learned


# --- issue 18: one class-swap helper (models/hooks.py) ---


def test_swapped_gives_every_class_back_even_on_an_error() -> None:
    from lazarus_report.models.hooks import observing_class, swapped, swapped_class

    class Block:
        def __call__(self, x: int) -> tuple[int, str]:
            return x + 1, "cache"

    blocks = [Block(), Block()]
    seen: list[int] = []
    swaps = [(blocks[0], observing_class(Block, "Seeing", seen.append))]
    swaps.append((blocks[1], swapped_class(Block, "Replaced", lambda self, x: (0, "none"))))
    with pytest.raises(RuntimeError), swapped(swaps):
        assert [type(b).__name__ for b in blocks] == ["SeeingBlock", "ReplacedBlock"]
        assert blocks[0](1) == (2, "cache") and seen == [2]  # the block's own output, its hidden part recorded
        assert blocks[1](1) == (0, "none")
        raise RuntimeError("mid-pass")
    assert [type(b) for b in blocks] == [Block, Block]
