"""Where two models part: the change map, its summary and promoted/suppressed tokens, checked against
a direct numpy computation on tiny models (and ground truth: a pair that differs in one layer only)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from tiny_models import build_tiny_model

from lazarus_report.commands.analyzer import ModelAnalyzer
from lazarus_report.commands.compare import compare_models
from lazarus_report.compare import change_map as cm
from lazarus_report.core.config import AnalysisConfig, LayerStrategy
from lazarus_report.engine.spill import positions_to_keep, spill_array, user_span
from lazarus_report.lens import readout as lens
from lazarus_report.models.hooks import capture_hidden
from lazarus_report.results.comparison import ComparisonResult

PROMPT = "The capital of France is"
RAW_ALL = AnalysisConfig(layer_strategy=LayerStrategy.ALL, use_chat_template=False, track_tokens=[" Paris"])
N_LAYERS = 5


def one_layer_changed(source: Path, target: Path, layer: int, seed: int = 7) -> None:
    """A copy of the tiny model at ``source`` whose block ``layer`` MLP weights are perturbed (nothing else)."""
    import mlx.core as mx

    shutil.copytree(source, target)
    weights = mx.load(str(target / "model.safetensors"))
    key = mx.random.key(seed)
    for name in list(weights):
        if name.startswith(f"model.layers.{layer}.mlp."):
            w = weights[name]
            weights[name] = w + 0.5 * mx.random.normal(w.shape, key=key) * mx.abs(w).mean()
    mx.save_safetensors(str(target / "model.safetensors"), weights, metadata={"format": "pt"})


def direct_position_log_probs(model_dir: str, prompt: str) -> np.ndarray:
    """``[L, T, V]`` float64 lens log-probs, log-softmax done here."""
    with ModelAnalyzer.load(model_dir) as a:
        ids = a.format_prompt(prompt, use_chat_template=False)[2]
        layers = list(range(a.info.num_layers))
        sink = capture_hidden(a.loaded.parts, ids, layers)
        z = np.stack([lens.head_logits_np(a.loaded.parts, sink[i][0]) for i in layers]).astype(np.float64)
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def direct_js(lp: np.ndarray, lq: np.ndarray) -> np.ndarray:
    m = 0.5 * (np.exp(lp) + np.exp(lq))
    return 0.5 * (np.exp(lp) * (lp - np.log(m))).sum(-1) + 0.5 * (np.exp(lq) * (lq - np.log(m))).sum(-1)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("cm")
    build_tiny_model("llama", root / "a", seed=1, num_hidden_layers=N_LAYERS)
    build_tiny_model("llama", root / "b", seed=2, num_hidden_layers=N_LAYERS)
    one_layer_changed(root / "a", root / "a3", layer=3)
    return {k: str(root / k) for k in ("a", "b", "a3")}


@pytest.fixture(scope="module")
def pair(models):
    return compare_models(models["a"], models["b"], PROMPT, RAW_ALL)


def test_change_map_matches_a_direct_computation(models, pair):
    m = pair.change_map
    assert m is not None
    lp, lq = direct_position_log_probs(models["a"], PROMPT), direct_position_log_probs(models["b"], PROMPT)
    n_tokens = lp.shape[1]
    assert m.total_positions == n_tokens == m.computed_positions  # a short prompt: every position kept
    assert m.layers == list(range(N_LAYERS))
    js = direct_js(lp, lq)  # [L, T]
    np.testing.assert_allclose(np.array(m.js), js[:, m.positions], rtol=1e-4, atol=1e-6)
    flips = lp.argmax(-1) != lq.argmax(-1)
    assert np.array(m.flips).tolist() == flips[:, m.positions].tolist()
    # Each cell's top-k with both models' probabilities.
    for li in range(N_LAYERS):
        for j, p in enumerate(m.positions):
            top = m.tops1[li][j]
            assert [t.token_id for t in top] == np.argsort(-lp[li, p])[: len(top)].tolist()
            for t in top:
                assert t.prob1 == pytest.approx(np.exp(lp[li, p, t.token_id]), rel=1e-4, abs=1e-9)
                assert t.prob2 == pytest.approx(np.exp(lq[li, p, t.token_id]), rel=1e-4, abs=1e-9)
            assert m.tops2[li][j][0].token_id == int(lq[li, p].argmax())
    # Columns: the last position, and the positions of largest divergence.
    assert m.positions[-1] == n_tokens - 1 and "last" in m.position_reasons[-1]
    peak = js.max(0)
    for p in np.argsort(-peak)[: cm.LARGEST_COLUMNS]:
        assert int(p) in m.positions
        assert "largest JS" in m.position_reasons[m.positions.index(int(p))]


def test_token_shifts_match_a_direct_computation(models, pair):
    lp = direct_position_log_probs(models["a"], PROMPT)[:, -1]
    lq = direct_position_log_probs(models["b"], PROMPT)[:, -1]
    final = pair.token_shifts[0]
    assert final.why == "final layer" and final.layer == N_LAYERS - 1
    delta = np.exp(lq[-1]) - np.exp(lp[-1])
    assert [s.token_id for s in final.promoted] == np.argsort(-delta)[: len(final.promoted)].tolist()
    assert [s.token_id for s in final.suppressed] == np.argsort(delta)[: len(final.suppressed)].tolist()
    for s in final.promoted + final.suppressed + final.top2_in_1 + final.top1_in_2:
        assert s.prob1 == pytest.approx(np.exp(lp[-1, s.token_id]), rel=1e-4, abs=1e-9)
        assert s.prob2 == pytest.approx(np.exp(lq[-1, s.token_id]), rel=1e-4, abs=1e-9)
        assert s.rank1 == 1 + int((lp[-1] > lp[-1, s.token_id]).sum())
        assert s.rank2 == 1 + int((lq[-1] > lq[-1, s.token_id]).sum())
        # The raw logit changes by the log-prob change plus the shift of log-sum-exp.
        assert s.logit2 - s.logit1 == pytest.approx(
            (lq[-1, s.token_id] - lp[-1, s.token_id])
            + (final.promoted[0].logit2 - lq[-1, final.promoted[0].token_id])
            - (final.promoted[0].logit1 - lp[-1, final.promoted[0].token_id]),
            abs=1e-3,
        )
    assert [s.token_id for s in final.top2_in_1] == np.argsort(-lq[-1])[:5].tolist()
    assert [s.token_id for s in final.top1_in_2] == np.argsort(-lp[-1])[:5].tolist()
    decisive = pair.change_summary.decisive_layer
    if decisive != N_LAYERS - 1:
        jump = pair.token_shifts[1]
        assert jump.why == "largest JS jump" and jump.layer == decisive
        d = np.exp(lq[decisive]) - np.exp(lp[decisive])
        assert jump.promoted[0].token_id == int(np.argmax(d))


def test_summary_of_a_pair_that_differs_in_one_layer(models):
    """Ground truth: block 3 alone differs, so layers 0-2 are identical bit for bit."""
    c = compare_models(models["a"], models["a3"], PROMPT, RAW_ALL)
    s = c.change_summary
    assert [d.js for d in c.divergences[:3]] == [0.0, 0.0, 0.0]
    assert s.identical_through == 2 and s.exactly_identical and s.diverges_from == 3
    assert s.decisive_layer in (3, 4)
    js = [d.js for d in c.divergences]
    k = s.decisive_layer
    assert s.decisive_js == pytest.approx([js[k - 1], js[k], js[-1]])
    assert max(range(1, len(js)), key=lambda i: js[i] - js[i - 1]) == k
    # The map agrees: every position identical before block 3.
    assert all(v == 0.0 for row in c.change_map.js[:3] for v in row)
    assert any(v > 0 for v in c.change_map.js[3])


def test_summary_definitions():
    s = cm.change_summary([0, 1, 2, 3], [0.0, 5e-7, 0.2, 0.3], [5, 5, 9, 9], 5)
    assert s.identical_through == 1 and not s.exactly_identical and s.diverges_from == 2
    assert s.decisive_layer == 2 and s.decisive_js == [5e-7, 0.2, 0.3]
    assert s.final_top1_from == 2 and s.final_top1_changed
    same = cm.change_summary([0, 1], [0.0, 0.0], [3, 3], 3)
    assert same.identical_through == 1 and same.diverges_from is None and same.decisive_layer is None


def test_user_span_and_position_budget():
    tokens = ["<s>", "user", "\n", "The", " capital", " is", "<e>", "\n"]
    assert user_span(tokens, "".join(tokens), "The capital is") == [3, 4, 5]
    assert user_span(tokens, "something else", "The capital is") == []
    kept, note = positions_to_keep(8, [3, 4, 5], n_layers=2, vocab=100, budget=10**9)
    assert kept == list(range(8)) and "all 8" in note
    per = 4 * 2 * 100
    kept, note = positions_to_keep(8, [3, 4, 5], n_layers=2, vocab=100, budget=3 * per)
    assert kept == [4, 5, 7] and "3 of 8" in note  # the end of the span and the last position


def test_without_a_grid_there_is_no_map_but_a_summary(models):
    c = compare_models(models["a"], models["b"], PROMPT, AnalysisConfig(use_chat_template=False, compute_grid=False))
    assert c.change_map is None and c.change_summary is not None and c.token_shifts


def test_json_round_trip_keeps_the_new_parts(pair, tmp_path):
    path = tmp_path / "c.json"
    pair.save(path)
    again = ComparisonResult.load(path)
    assert again == pair
    # A file written before these fields existed still reads.
    d = pair.to_dict()
    for key in ("change_summary", "change_map", "token_shifts", "adapted_layers", "attribution", "attribution_note"):
        d.pop(key)
    old = ComparisonResult.from_dict(d)
    assert old.change_map is None and old.token_shifts == [] and old.attribution is None


def test_spilled_log_probs_write_rows_and_read_layers(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.standard_normal((3, 4, 5)).astype(np.float32)
    spilled = spill_array(tmp_path, "x", (3, 4, 5))
    for layer in range(3):
        spilled[layer, 0:2] = data[layer, 0:2]  # a block of positions
        spilled[layer, 2] = data[layer, 2]  # one position
        spilled[layer, 3] = data[layer, 3]
    spilled.flush()
    for layer in range(3):
        np.testing.assert_array_equal(spilled[layer], data[layer])
        rows = spilled.read(layer, np.empty((2, 5), dtype=np.float32), [3, 1])  # some positions, in any order
        np.testing.assert_array_equal(rows, data[layer, [3, 1]])
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), data)  # a valid .npy file
