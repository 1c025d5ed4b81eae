"""compare: two models on one prompt. Divergences are checked against a direct computation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from helpers import lazarus

from lazarus_report.commands.analyzer import ModelAnalyzer
from lazarus_report.commands.compare import compare_models
from lazarus_report.compare.layers import match_layers
from lazarus_report.core.config import AnalysisConfig, LayerStrategy
from lazarus_report.core.errors import LazarusError
from lazarus_report.lens import readout as lens
from lazarus_report.lens.stats import js_divergence, kl_divergence
from lazarus_report.models.hooks import capture_hidden
from lazarus_report.results.comparison import ComparisonResult

PROMPT = "The capital of France is"
RAW_ALL = AnalysisConfig(layer_strategy=LayerStrategy.ALL, use_chat_template=False, track_tokens=[" Paris"])


def direct_log_probs(model_dir: str, prompt: str) -> np.ndarray:
    """Lens log-probs at the last position for every layer, float64 log-softmax done here."""
    with ModelAnalyzer.load(model_dir) as a:
        ids = a.format_prompt(prompt, use_chat_template=False)[2]
        layers = list(range(a.info.num_layers))
        sink = capture_hidden(a.loaded.parts, ids, layers)
        z = lens.head_logits_np(a.loaded.parts, lens.mx.stack([sink[i][0, -1] for i in layers])).astype(np.float64)
    return z - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)) - z.max(1, keepdims=True)


def direct_kl(lp: np.ndarray, lq: np.ndarray) -> np.ndarray:
    return (np.exp(lp) * (lp - lq)).sum(1)


def direct_js(lp: np.ndarray, lq: np.ndarray) -> np.ndarray:
    m = 0.5 * (np.exp(lp) + np.exp(lq))
    return 0.5 * (np.exp(lp) * (lp - np.log(m))).sum(1) + 0.5 * (np.exp(lq) * (lq - np.log(m))).sum(1)


@pytest.fixture(scope="module")
def tiny_pair(tiny_model_dir):
    base = tiny_model_dir("llama", seed=1)  # shared, read-only (conftest)
    other = tiny_model_dir("llama", seed=2)
    deeper = tiny_model_dir("llama", seed=3, num_hidden_layers=6)
    return str(base), str(other), str(deeper)


def test_divergences_match_a_direct_computation(tiny_pair):
    base, other, _ = tiny_pair
    c = compare_models(base, other, PROMPT, RAW_ALL)
    assert c.same_tokenizer and c.same_tokens and not c.same_model and c.alignment == "layer"
    lp, lq = direct_log_probs(base, PROMPT), direct_log_probs(other, PROMPT)
    np.testing.assert_allclose([d.kl_12 for d in c.divergences], direct_kl(lp, lq), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose([d.kl_21 for d in c.divergences], direct_kl(lq, lp), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose([d.js for d in c.divergences], direct_js(lp, lq), rtol=1e-4, atol=1e-6)
    assert all(0 <= d.js <= math.log(2) for d in c.divergences)
    # KL is not symmetric; the two directions must actually differ somewhere.
    assert any(abs(d.kl_12 - d.kl_21) > 1e-3 for d in c.divergences)
    largest = max(c.divergences, key=lambda d: d.js)
    assert c.largest_change_layer == largest.layer2
    agree = [lp[i].argmax() == lq[i].argmax() for i in range(len(lp))]
    assert [d.top1_agree for d in c.divergences] == agree
    first = next((i for i, a in enumerate(agree) if not a), None)
    assert c.first_disagreement_layer == first


def test_different_depths_are_matched_by_relative_depth(tiny_pair):
    base, _, deeper = tiny_pair
    c = compare_models(base, deeper, PROMPT, RAW_ALL)
    assert c.alignment == "relative_depth" and c.same_tokenizer
    assert [(d.layer1, d.layer2) for d in c.divergences] == [(0, 0), (0, 1), (1, 2), (1, 3), (2, 4), (2, 5)]
    assert any("different depths (3 and 6 layers)" in n for n in c.notes)
    lp, lq = direct_log_probs(base, PROMPT), direct_log_probs(deeper, PROMPT)
    idx1 = [d.layer1 for d in c.divergences]
    np.testing.assert_allclose([d.js for d in c.divergences], direct_js(lp[idx1], lq), rtol=1e-4, atol=1e-6)


@pytest.mark.slow  # the real model
def test_different_tokenizers_compare_strings_and_say_what_is_not_possible(tiny_pair):
    base, _, _ = tiny_pair
    c = compare_models("smollm2-135m-instruct", base, PROMPT, RAW_ALL)
    assert not c.same_tokenizer and c.alignment == "relative_depth"
    assert all(d.kl_12 is None and d.js is None for d in c.divergences)
    assert c.largest_change_layer is None
    assert any("different tokenizers" in n and "not possible" in n for n in c.notes)
    for d in c.divergences:
        assert d.top1_agree == (d.top1_token1 == d.top1_token2)


@pytest.mark.slow  # the real model
def test_same_model_twice_is_allowed_and_says_so():
    c = compare_models("smollm2-135m-instruct", "smollm2-135m-instruct", PROMPT, RAW_ALL)
    assert c.same_model and c.labels == ["smollm2-135m-instruct (1)", "smollm2-135m-instruct (2)"]
    assert all(d.js == 0.0 and d.top1_agree for d in c.divergences)
    assert c.first_disagreement_layer is None and c.agreement_from_layer == 0
    assert any("same model" in n for n in c.notes)
    assert c.tracked[0].final_probs[0] == c.tracked[0].final_probs[1]


def test_comparison_json_round_trip(tiny_pair, tmp_path):
    base, other, _ = tiny_pair
    c = compare_models(base, other, PROMPT, RAW_ALL)
    path = tmp_path / "c.json"
    c.save(path)
    assert json.loads(path.read_text())["kind"] == "lazarus-report/comparison"
    assert ComparisonResult.load(path) == c


def test_math_helpers():
    p = np.log(np.array([[0.5, 0.5, 1e-300]]))
    q = np.log(np.array([[0.9, 0.05, 0.05]]))
    assert kl_divergence(p, p)[0] == 0.0
    assert js_divergence(p, q)[0] == pytest.approx(direct_js(p, q)[0])
    disjoint = js_divergence(np.log(np.array([[1.0, 1e-300]])), np.log(np.array([[1e-300, 1.0]])))[0]
    assert disjoint == pytest.approx(math.log(2))
    assert match_layers([0, 1, 2], 3, [0, 1, 2], 3) == [(0, 0), (1, 1), (2, 2)]


def test_js_divergence_matches_the_kl_form_in_extended_precision():
    """Vocabulary-sized float32 log-probabilities, from nearly equal (JS ~1e-9, where the entropy form's
    cancellation would show) to far apart: within 1e-12 nats of the KL form computed in long double."""
    rng = np.random.default_rng(7)
    vocab = 49152

    def log_softmax(x: np.ndarray) -> np.ndarray:
        x = x - x.max(-1, keepdims=True)
        return (x - np.log(np.exp(x).sum(-1, keepdims=True))).astype(np.float32)

    base = rng.normal(0, 3, (1, vocab))
    rows_p = np.concatenate([log_softmax(base)] * 4)
    rows_q = np.concatenate([log_softmax(base + s * rng.normal(size=(1, vocab))) for s in (1e-4, 1e-2, 1.0, 10.0)])
    got = js_divergence(rows_p, rows_q)
    lp, lq = rows_p.astype(np.longdouble), rows_q.astype(np.longdouble)
    m = 0.5 * (np.exp(lp) + np.exp(lq))
    want = 0.5 * (np.exp(lp) * (lp - np.log(m))).sum(1) + 0.5 * (np.exp(lq) * (lq - np.log(m))).sum(1)
    assert want[0] < 1e-7 and want[3] > 0.1  # the cases span the range
    assert np.abs(got - want.astype(np.float64)).max() < 1e-12
    assert js_divergence(rows_p, rows_p).tolist() == [0.0] * 4  # identical rows: exactly 0


@pytest.mark.slow  # loads the real model (twice)
def test_compare_cli_text_output():
    proc = lazarus(
        "introspect",
        "compare",
        "-m1",
        "smollm2-135m-instruct",
        "-m2",
        "smollm2-135m-instruct",
        "-p",
        PROMPT,
        "--raw",
        "--track",
        " Paris,Parisian",
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for fragment in (
        "Loading: smollm2-135m-instruct (1)",
        "=== Final Predictions ===",
        "Top Token",
        "=== Token Evolution Comparison ===",
        "Token ' Paris':",
        "emerges at layer 29, final prob 0.772",
        "(not one token: tracking 'Paris')",
        "=== Where the models disagree ===",
        "Top-1 predictions agree at every compared layer.",
        "Both sides are the same model",
    ):
        assert fragment in out, fragment


@pytest.mark.slow  # the real model
def test_compare_bad_inputs(tmp_path):
    with pytest.raises(LazarusError, match="no LoRA adapter at"):
        compare_models(
            "smollm2-135m-instruct", "smollm2-135m-instruct", PROMPT, RAW_ALL, adapter2=str(tmp_path / "nope")
        )
    with pytest.raises(
        LazarusError, match=r"model 1 \(smollm2-135m-instruct\): the prompt is .* longer than the model's context"
    ):
        compare_models("smollm2-135m-instruct", "smollm2-135m-instruct", "word " * 9000, RAW_ALL)
    with pytest.raises(LazarusError, match="cannot track an empty string"):
        compare_models("smollm2-135m-instruct", "smollm2-135m-instruct", PROMPT, AnalysisConfig(track_tokens=[""]))


@pytest.mark.slow  # the real model
def test_real_base_vs_fine_tuned_pair():
    """The embedded SmolLM2 against its committed LoRA fine-tune (examples/weather-adapter)."""
    adapter = str(Path(__file__).resolve().parents[1] / "examples" / "weather-adapter" / "adapter")
    c = compare_models(
        "smollm2-135m-instruct",
        "smollm2-135m-instruct",
        "What's the weather in Paris?",
        AnalysisConfig(layer_strategy=LayerStrategy.ALL, track_tokens=["get_weather"]),
        adapter2=adapter,
    )
    base, tuned = c.results
    assert not c.same_model and c.same_tokenizer and c.same_tokens and c.alignment == "layer"
    assert tuned.model.adapter == adapter and base.model.adapter is None
    assert tuned.final_top_token == "get" and base.final_top_token != "get"
    t = c.tracked[0]
    assert t.emergence_layers[0] is None and t.emergence_layers[1] is not None
    assert t.final_probs[1] > 0.9 > 0.01 > t.final_probs[0]
    # LoRA on the last 8 of 30 layers: the first 22 layers are untouched, so their lens is identical.
    assert all(d.js == 0.0 for d in c.divergences[:22])
    assert c.first_disagreement_layer is not None and c.first_disagreement_layer >= 22
    assert c.largest_change_layer >= 22 and c.agreement_from_layer is None
