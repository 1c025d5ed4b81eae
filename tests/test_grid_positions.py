"""The grid at some positions only (issue 13: the HTML heatmap shows the last positions, so ``--html``
without ``-o`` computes only those): every value at a computed position equals the full grid's, the change
map's spilled distributions are unchanged, and the command line keeps the whole grid whenever ``-o`` asks
for the JSON (which promises every position; docs/json-schema.md)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from helpers import lazarus
from tiny_models import build_tiny_model

from lazarus_report.commands.analyzer import ModelAnalyzer
from lazarus_report.commands.compare import compare_models
from lazarus_report.core.config import AnalysisConfig, LayerStrategy
from lazarus_report.core.errors import LazarusError
from lazarus_report.engine import run as engine
from lazarus_report.lens import readout as lens
from lazarus_report.models.hooks import capture_hidden
from lazarus_report.render import load_result_file
from lazarus_report.render.report_model import HEATMAP_MAX_CELLS, build_report, heatmap_positions
from lazarus_report.results.loading import without_timings

N_LAYERS = 4
# 31 tokens with the tiny tokenizer: more than any heatmap shows (at most 20 positions).
PROMPT = "The capital of France is Paris and the capital of Italy is Rome; hello world, print hello in the x"
FULL = AnalysisConfig(layer_strategy=LayerStrategy.ALL, use_chat_template=False, top_k=3, track_tokens=[" Paris"])
GRID_FIELDS = ("top_token_ids", "top_tokens", "top_probs", "entropy", "kl_to_final")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("gridpos")
    build_tiny_model("llama", root / "a", seed=1, num_hidden_layers=N_LAYERS)
    build_tiny_model("llama", root / "b", seed=2, num_hidden_layers=N_LAYERS)
    return {"a": str(root / "a"), "b": str(root / "b")}


@pytest.fixture(scope="module")
def full(models):
    with ModelAnalyzer.load(models["a"]) as a:
        return a.run(PROMPT, FULL)


def test_the_prompt_is_longer_than_any_heatmap(full):
    assert len(full.tokens) > 20 and full.grid.positions == list(range(len(full.tokens)))


@pytest.mark.parametrize("last", [1, 7, 20, 10_000])
def test_the_last_positions_equal_the_full_grid_there(models, full, last):
    n = len(full.tokens)
    with ModelAnalyzer.load(models["a"]) as a:
        part = a.run(PROMPT, dataclasses.replace(FULL, grid_last_positions=last))
    start = max(0, n - last)
    assert part.grid.positions == list(range(start, n))
    assert part.grid.layers == full.grid.layers
    for name in GRID_FIELDS:
        assert getattr(part.grid, name) == [row[start:] for row in getattr(full.grid, name)], name  # exactly
    # Nothing else of the result changes.
    strip = {"grid": None, "timings": {}}
    assert dataclasses.replace(part, **strip) == dataclasses.replace(full, **strip)


def test_position_grid_at_any_positions_matches_its_full_columns(models):
    """Contiguous or not, with the log-probabilities written in the same pass."""
    with ModelAnalyzer.load(models["a"]) as a:
        ids = a.format_prompt(PROMPT, use_chat_template=False)[2]
        layers = list(range(N_LAYERS))
        sink = capture_hidden(a.loaded.parts, ids, layers)
        hidden = [sink[i][0] for i in layers]
        final = sink[N_LAYERS - 1][0]
        full = lens.position_grid(a.loaded.parts, hidden, final, top_k=2, budget_bytes=4 * 352 * 5)  # many chunks
        for positions in ([0, 3, 4, 17, len(ids) - 1], [5], list(range(9, 30))):
            keep = sorted({positions[0], positions[-1]})
            out = np.zeros((N_LAYERS, len(keep), a.info.vocab_size), dtype=np.float32)
            part = lens.position_grid(
                a.loaded.parts, hidden, final, top_k=2, budget_bytes=4 * 352 * 3, log_probs_out=(keep, out),
                positions=positions,
            )  # fmt: skip
            for name in ("top_ids", "top_probs", "entropy", "kl_to_final", "top_k_ids"):
                assert getattr(part, name) == [[row[p] for p in positions] for row in getattr(full, name)], name
            # The written log-probabilities are the lens's own (numpy float64 log-softmax of the head's logits).
            z = np.stack([lens.head_logits_np(a.loaded.parts, h) for h in hidden]).astype(np.float64)[:, keep]
            z -= z.max(-1, keepdims=True)
            np.testing.assert_allclose(out, z - np.log(np.exp(z).sum(-1, keepdims=True)), atol=2e-5)
        with pytest.raises(ValueError, match="among the grid's positions"):
            lens.position_grid(a.loaded.parts, hidden, final, log_probs_out=([1], out), positions=[2, 3])


def test_positions_kept_only_for_the_log_probabilities_skip_their_statistics(models):
    """``stats_positions``: the columns asked for are exactly the full pass's, the others are 0, and the
    log-probabilities written for every kept position are bit for bit those of a pass with all statistics."""
    with ModelAnalyzer.load(models["a"]) as a:
        ids = a.format_prompt(PROMPT, use_chat_template=False)[2]
        layers = list(range(N_LAYERS))
        sink = capture_hidden(a.loaded.parts, ids, layers)
        hidden, final = [sink[i][0] for i in layers], sink[N_LAYERS - 1][0]
        keep = [0, 1, 2, 6, 7, len(ids) - 1]
        outs = [np.zeros((N_LAYERS, len(keep), a.info.vocab_size), dtype=np.float32) for _ in range(2)]
        budget = 4 * 352 * 4  # several chunks
        whole = lens.position_grid(a.loaded.parts, hidden, final, log_probs_out=(keep, outs[0]), budget_bytes=budget)
        stats = [1, 2, 3, len(ids) - 1]
        part = lens.position_grid(
            a.loaded.parts, hidden, final, log_probs_out=(keep, outs[1]), budget_bytes=budget, stats_positions=stats
        )
    assert outs[0].tobytes() == outs[1].tobytes()
    for name in ("top_ids", "top_probs", "entropy", "kl_to_final", "answer_probs"):
        got, want = getattr(part, name), getattr(whole, name)
        for row_got, row_want in zip(got, want):
            assert [row_got[p] for p in stats] == [row_want[p] for p in stats], name
            assert all(row_got[p] == 0 for p in range(len(ids)) if p not in stats), name


def test_a_comparison_with_a_partial_grid_keeps_its_change_map(models):
    """The change map reads distributions at positions the heatmap may not show: they come from the same head
    pass, so the map is exactly the one a full grid gives."""
    whole = compare_models(models["a"], models["b"], PROMPT, FULL)
    part = compare_models(models["a"], models["b"], PROMPT, dataclasses.replace(FULL, grid_last_positions=5))
    assert part.change_map == whole.change_map and part.change_map.computed_positions == len(whole.results[0].tokens)
    for w, p in zip(whole.results, part.results):
        assert p.grid.positions == w.grid.positions[-5:]
        assert p.grid.top_probs == [row[-5:] for row in w.grid.top_probs]
    assert part.divergences == whole.divergences and part.token_shifts == whole.token_shifts


def test_the_report_shows_the_same_heatmap_from_a_partial_grid(models, full):
    shown = heatmap_positions(N_LAYERS, HEATMAP_MAX_CELLS)
    with ModelAnalyzer.load(models["a"]) as a:
        part = a.run(PROMPT, dataclasses.replace(FULL, grid_last_positions=shown))
    g_full, g_part = build_report([full]).runs[0].grid, build_report([part]).runs[0].grid
    assert g_part == g_full
    assert g_part.truncated and g_part.total_positions == len(full.tokens)


def test_grid_last_positions_is_checked():
    for bad in (0, -1, True, 2.5):
        with pytest.raises(LazarusError, match="grid_last_positions"):
            dataclasses.replace(FULL, grid_last_positions=bad).validate()
    assert engine.grid_positions(5, None) == [0, 1, 2, 3, 4]
    assert engine.grid_positions(5, 2) == [3, 4] and engine.grid_positions(5, 9) == [0, 1, 2, 3, 4]


def _cli(*args: str) -> None:
    proc = lazarus("introspect", *args)
    assert proc.returncode == 0, proc.stderr


def test_the_command_line_computes_the_whole_grid_only_for_the_json(models, tmp_path):
    common = ["analyze", "-m", models["a"], "-p", PROMPT, "--raw", "--all-layers", "-q"]
    _cli(*common, "--html", str(tmp_path / "h.html"))
    _cli(*common, "--html", str(tmp_path / "both.html"), "-o", str(tmp_path / "both.json"))
    html_only = load_result_file(tmp_path / "h.html")
    n = len(html_only.tokens)
    assert html_only.grid.positions == list(range(n - heatmap_positions(N_LAYERS, HEATMAP_MAX_CELLS), n))
    as_json = json.loads((tmp_path / "both.json").read_text(encoding="utf-8"))
    assert as_json["grid"]["positions"] == list(range(n))  # the JSON keeps its promise
    assert load_result_file(tmp_path / "both.html").grid.positions == list(range(n))  # the page embeds that result


@pytest.mark.parametrize("chunk, last", [(None, None), (None, 5), (7, None), (7, 5)])
def test_base_vs_adapter_copies_the_layers_under_the_adapter_and_changes_nothing(tmp_path, monkeypatch, chunk, last):
    """Model 2 = model 1 + a LoRA adapter on its last 2 blocks: the layers under the adapter read bit for bit
    what model 1's did, so their change-map rows are copied from model 1 instead of computed. The comparison
    is exactly the one computed without copying (every digest made unique), in one prefill pass or in chunks,
    with the whole grid or the HTML's last positions."""
    from test_attribution import write_tiny_adapter

    build_tiny_model("llama", tmp_path / "m", seed=4, num_hidden_layers=N_LAYERS)
    adapter = str(write_tiny_adapter(str(tmp_path / "m"), tmp_path / "lora", num_layers=2, zero_b=set()))
    if chunk is not None:
        monkeypatch.setattr(lens, "PREFILL_CHUNK", chunk)
    config = dataclasses.replace(FULL, grid_last_positions=last)
    copied: list[int] = []
    real = engine._grid_reusing

    def counting(*args, **kwargs):
        copied.append(len(args[6]))  # the layers taken from model 1 in this chunk
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "_grid_reusing", counting)
    # Model 2 named by another path (a link to the same folder): loaded again, so the map is spilled (the same
    # name would apply the adapter to model 1's weights and compute the map from lens inputs: test_compare_speed.py).
    (tmp_path / "m2").symlink_to(tmp_path / "m")
    reused = compare_models(str(tmp_path / "m"), str(tmp_path / "m2"), PROMPT, config, adapter2=adapter)
    n_chunks = 1 if chunk is None else -(-len(reused.results[0].tokens) // chunk)
    assert copied == [N_LAYERS - 2] * n_chunks  # the layers under the adapter on the last two blocks
    assert reused.adapted_layers[1] == [N_LAYERS - 2, N_LAYERS - 1]

    counter = iter(range(10**6))
    monkeypatch.setattr(engine, "_digest", lambda hidden: next(counter).to_bytes(8, "little"))  # nothing matches
    copied.clear()
    computed = compare_models(str(tmp_path / "m"), str(tmp_path / "m2"), PROMPT, config, adapter2=adapter)
    assert copied == []
    assert without_timings(reused) == without_timings(computed)
    assert reused.change_map is not None and reused.change_map.js[0] == [0.0] * len(reused.change_map.positions)


def test_a_layer_equal_to_model_1_in_some_chunks_only_gets_those_rows_copied(tmp_path):
    """Layers equal in every prefill chunk are left to the change map (``same_layers``); a layer equal in some
    chunks only has model 1's rows for those chunks copied into model 2's file, so the file is whole."""
    from types import SimpleNamespace

    from lazarus_report.engine.spill import spill_array

    rng = np.random.default_rng(0)
    shape = (3, 10, 6)  # layers, kept positions 0-9 (chunks start at 0 and 5), vocabulary
    data = rng.standard_normal(shape).astype(np.float32)
    ref_file = spill_array(tmp_path, "m1", shape)
    for layer in range(3):
        ref_file[layer, 0:10] = data[layer]
    ref_file.flush()
    reference = SimpleNamespace(position_log_probs=ref_file, layer_digests={(0, 0): b"", (5, 0): b""})
    out = spill_array(tmp_path, "m2", shape)
    out[2, 0:10] = data[2] + 1  # layer 2: model 2's own rows
    reused = {(0, 0), (5, 0), (0, 1)}  # layer 0 in both chunks, layer 1 in the first only
    assert engine._settle_reused(reused, reference, (list(range(10)), out), 3) == [0]
    out.flush()
    np.testing.assert_array_equal(out[1][:5], data[1, :5])  # copied
    np.testing.assert_array_equal(out[1][5:], 0)  # model 2 computes these itself (here: not written)
    np.testing.assert_array_equal(out[0], 0)  # left to the change map
    np.testing.assert_array_equal(out[2], data[2] + 1)


# --- r20-limit: the grid's statistics on two threads (the numbers of one thread, bit for bit) ---


def _float64_stats(z: np.ndarray, zf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entropy and KL(final || row) per row, straight from the definitions in float64."""
    lp = z.astype(np.float64)
    lp -= lp.max(axis=1, keepdims=True)
    lp -= np.log(np.exp(lp).sum(axis=1, keepdims=True))
    lf = zf.astype(np.float64)
    lf -= lf.max(axis=1, keepdims=True)
    lf -= np.log(np.exp(lf).sum(axis=1, keepdims=True))
    p, pf = np.exp(lp), np.exp(lf)
    return -(p * lp).sum(axis=1), (pf * (lf - lp)).sum(axis=1)


@pytest.mark.parametrize("top_k", [1, 5, 12])  # one argmax, k argmax passes, argpartition
def test_row_stats_on_threads_equal_one_thread_and_the_definitions(monkeypatch, top_k):
    rng = np.random.default_rng(7)
    n = 3 * lens.STATS_BLOCK_ROWS + 5  # several blocks and a partial last one
    z = (rng.standard_normal((n, 4000)) * 4).astype(np.float32)
    zf = (rng.standard_normal((n, 4000)) * 4).astype(np.float32)
    final = lens.FinalReference.of(zf)
    monkeypatch.setattr(lens, "STATS_THREADS", 1)
    one = lens.row_stats(z, top_k, final)
    monkeypatch.setattr(lens, "STATS_THREADS", 2)
    two = lens.row_stats(z, top_k, final)
    for name in ("lse", "entropy", "top_ids", "top_probs", "kl_to_final"):
        np.testing.assert_array_equal(getattr(two, name), getattr(one, name), err_msg=name)
    entropy, kl = _float64_stats(z, zf)
    np.testing.assert_allclose(two.entropy, entropy, rtol=0, atol=2e-5)
    np.testing.assert_allclose(two.kl_to_final, kl, rtol=0, atol=2e-5)
    order = np.argsort(-z, axis=1, kind="stable")[:, :top_k]
    np.testing.assert_array_equal(two.top_ids, order)
    np.testing.assert_allclose(two.top_probs[:, 0], np.exp(z.max(axis=1) - two.lse), rtol=1e-12)


@pytest.mark.slow
def test_smollm2_grid_on_threads_equals_one_thread(smollm2_loaded, monkeypatch):
    parts = smollm2_loaded.parts
    layers = list(range(len(parts.layers)))
    ids = [504, 3575, 282, 4649, 314] * 9  # 45 positions x 30 layers: many statistics blocks
    sink = capture_hidden(parts, ids, layers)
    hidden, final = [sink[i][0] for i in layers], sink[layers[-1]][0]
    monkeypatch.setattr(lens, "STATS_THREADS", 1)
    one = lens.position_grid(parts, hidden, final, top_k=5)
    monkeypatch.setattr(lens, "STATS_THREADS", 2)
    two = lens.position_grid(parts, hidden, final, top_k=5)
    assert two == one
    # against the definitions, from the head's own float32 logits at one layer
    z = lens.head_logits_np(parts, hidden[10])
    zf = lens.head_logits_np(parts, final)
    entropy, kl = _float64_stats(z, zf)
    # float32 logits and dot products over 49,152 entries: KL = (p.z_final - p.z) + (lse - lse_final) cancels ~1e-4
    np.testing.assert_allclose(two.entropy[10], entropy, rtol=0, atol=5e-4)
    np.testing.assert_allclose(two.kl_to_final[10], kl, rtol=0, atol=5e-4)
    assert two.top_k_ids[10] == np.argsort(-z, axis=1, kind="stable")[:, :5].tolist()
    assert max(max(row) for row in two.kl_to_final) > 1.0  # the layers differ: the comparison can fail
