"""The engine (``engine.analyze`` -> ``LensRun``) and the async API on top of it."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest

from lazarus_report.commands.analyzer import ModelAnalyzer
from lazarus_report.commands.compare import compare_models
from lazarus_report.compare.layers import compare_models_from_runs
from lazarus_report.core.config import AnalysisConfig, LayerStrategy
from lazarus_report.engine import run as engine
from lazarus_report.engine.prompt import PreparedPrompt, format_prompt
from lazarus_report.results.codec import distinct_labels, first_layer_where, true_from_layer

PROMPT = "hello world abc"


def untimed(result):
    """A result without its wall-clock timings (the only field two equal runs may differ in)."""
    return dataclasses.replace(result, timings={})


RAW_ALL = AnalysisConfig(layer_strategy=LayerStrategy.ALL, use_chat_template=False, track_tokens=[" world", "ab"])


@pytest.fixture(scope="module")
def tiny_dirs(tiny_model_dir):
    return [str(tiny_model_dir("llama", seed=seed)) for seed in (1, 2)]  # shared, read-only (conftest)


def test_lens_run_shapes_and_flags(tiny_dirs):
    with ModelAnalyzer.load(tiny_dirs[0]) as a:
        run = a.lens_run(PROMPT, RAW_ALL)
        assert untimed(run.result) == untimed(a.run(PROMPT, RAW_ALL))
        vocab = a.info.vocab_size
        single = [len(a.tokenizer.encode_plain(t)) == 1 for t in RAW_ALL.track_tokens]
    assert run.log_probs.shape == (len(run.result.captured_layers), vocab)
    assert run.log_probs.dtype == np.float32
    # each row is a normalised log-distribution whose top-1 is the layer's reported top-1
    np.testing.assert_allclose(np.exp(run.log_probs.astype(np.float64)).sum(axis=1), 1.0, atol=1e-5)
    tops = [p.top_tokens[0].token_id for p in run.result.layer_predictions]
    assert run.log_probs.argmax(axis=1).tolist() == tops
    assert run.single_token == single and False in single  # "ab" is two tokens for the tiny tokenizer
    assert run.engine_seconds == pytest.approx(sum(run.result.timings[k] for k in ("tokenize", "lens", "grid")))


def test_lens_run_checks_its_shapes(tiny_dirs):
    with ModelAnalyzer.load(tiny_dirs[0]) as a:
        run = a.lens_run(PROMPT, RAW_ALL)
    with pytest.raises(ValueError, match="one row per captured layer"):
        dataclasses.replace(run, log_probs=run.log_probs[1:])
    with pytest.raises(ValueError, match="one flag per tracked string"):
        dataclasses.replace(run, single_token=[True])


def test_prepared_token_ids_equal_the_formatted_prompt(tiny_dirs):
    with ModelAnalyzer.load(tiny_dirs[0]) as a:
        prepared = format_prompt(a.loaded, PROMPT, use_chat_template=False)
        direct = engine.analyze(a.loaded, "", RAW_ALL, prepared=PreparedPrompt("", False, prepared.token_ids))
        via_prompt = a.lens_run(PROMPT, RAW_ALL)
    assert direct.result.layer_predictions == via_prompt.result.layer_predictions
    np.testing.assert_array_equal(direct.log_probs, via_prompt.log_probs)


def test_compare_is_built_from_two_lens_runs(tiny_dirs):
    runs = []
    for d in tiny_dirs:
        with ModelAnalyzer.load(d) as a:
            runs.append(a.lens_run(PROMPT, RAW_ALL))
    direct = compare_models_from_runs(runs)
    via_api = compare_models(*tiny_dirs, PROMPT, RAW_ALL)
    assert direct.divergences == via_api.divergences
    assert direct.labels == [r.result.model.label for r in runs]


def test_layer_scans():
    layers = [0, 4, 8, 12, 16]
    assert first_layer_where(layers, [False, True, False, True, True]) == 4
    assert true_from_layer(layers, [False, True, False, True, True]) == 12
    assert true_from_layer(layers, [True, True, True, True, False]) is None
    assert first_layer_where(layers, [False] * 5) is None
    assert true_from_layer(layers, [True] * 5) == 0
    assert distinct_labels(["a", "a"]) == ["a (1)", "a (2)"]
    assert distinct_labels(["a", "b"]) == ["a", "b"]


def test_async_analyzers_share_the_event_loop(tiny_dirs):
    """Two analyzers awaited together: the event loop keeps running while they work (a blocking
    ``analyze`` would finish both before the ticker ever ran), and results equal the sync API's."""
    expected = [untimed(ModelAnalyzer.load(d).run(PROMPT, RAW_ALL)) for d in tiny_dirs]

    async def main():
        done: list[int] = []
        ticks_while_working = 0

        async def one(i: int):
            async with ModelAnalyzer.from_pretrained(tiny_dirs[i]) as a:
                results = [await a.analyze(PROMPT, RAW_ALL) for _ in range(3)]
            done.append(i)
            return results

        async def ticker():
            nonlocal ticks_while_working
            while len(done) < 2:
                ticks_while_working += 1
                await asyncio.sleep(0)

        r0, r1, _ = await asyncio.gather(one(0), one(1), ticker())
        return r0, r1, ticks_while_working

    r0, r1, ticks = asyncio.run(main())
    assert ticks > 1
    assert all(untimed(r) == expected[0] for r in r0) and all(untimed(r) == expected[1] for r in r1)
