"""Learned lenses on the real embedded SmolLM2 (slow): the engine's linear-lens logits against a direct
numpy computation from the same states and matrices; a base-model lens on base + LoRA adapter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

ADAPTER = Path(__file__).resolve().parents[1] / "examples" / "weather-adapter" / "adapter"


@pytest.fixture(scope="module")
def smollm2_lens(smollm2_loaded):
    from lazarus_report.lens.learned.fit import fit_lens

    loaded = smollm2_loaded  # the session's SmolLM2 (conftest): fitting reads the model, never changes it
    lens = fit_lens(loaded, "linear", tokens=1300, heldout_tokens=256)
    return loaded, lens


def test_linear_lens_logits_equal_a_direct_numpy_computation(smollm2_lens) -> None:
    import mlx.core as mx

    from lazarus_report.lens.readout import head_logits_np
    from lazarus_report.models.hooks import capture_hidden

    loaded, lens = smollm2_lens
    parts = loaded.parts
    ids = loaded.tokenizer.encode("The capital of France is")
    layers = [0, 9, 15, 28]
    sink = capture_hidden(parts, ids, layers)
    # Independent: the norm's weight, eps and the tied embedding matrix read from the model's
    # parameters, the formulas written out in float64.
    gain = np.asarray(parts.norm.weight, dtype=np.float64)
    eps = float(parts.args.rms_norm_eps)
    embed = np.asarray(parts.backbone.embed_tokens.weight, dtype=np.float64)  # [V, H], tied head
    assert parts.tied
    for layer in layers:
        h = sink[layer][0]
        engine = head_logits_np(parts, lens.translate(layer, h))
        hn = np.asarray(h, dtype=np.float64)
        w, b = lens.matrix(layer)
        x = hn @ w + b
        y = x / np.sqrt((x * x).mean(axis=1, keepdims=True) + eps) * gain
        direct = y @ embed.T
        np.testing.assert_allclose(engine, direct, atol=2e-3 * np.abs(direct).max())
        assert (engine.argmax(axis=1) == direct.argmax(axis=1)).all()
        # And the lens is not the logit lens.
        plain = head_logits_np(parts, mx.array(h))
        assert np.abs(plain - engine).max() > 1.0


def test_the_fit_is_recorded_and_fidelity_beats_the_logit_lens_on_held_out_text(smollm2_lens) -> None:
    from lazarus_report.lens.learned.artefact import Lens
    from lazarus_report.lens.learned.collect import collect_states
    from lazarus_report.lens.learned.corpus import default_corpus, take_tokens, tokenize
    from lazarus_report.lens.learned.eval import measure

    loaded, lens = smollm2_lens
    meta = lens.meta
    assert meta["tokens"] == 1300 and meta["model"]["num_layers"] == 30
    assert len(meta["fidelity"]) == 29
    held = take_tokens(tokenize(default_corpus(), loaded.tokenizer).heldout, 256)
    states = collect_states(loaded, held)
    logit, linear = measure(loaded, states, [Lens.logit(), lens], layers=[5, 15])
    # Even a 1300-token fit reads the middle of the network far better than the logit lens.
    for lo, li in zip(logit, linear):
        assert li.kl_to_final < 0.5 * lo.kl_to_final
    # And the stored fidelity is the same measurement (same held-out positions).
    stored = {f["layer"]: f for f in meta["fidelity"]}
    assert stored[15]["kl_to_final"] == pytest.approx(linear[1].kl_to_final, rel=1e-3)


def test_base_lens_on_base_plus_adapter_is_allowed_with_a_note(smollm2_lens) -> None:
    from lazarus_report.models.loader import load_model

    _, lens = smollm2_lens
    tuned = load_model("smollm2-135m-instruct", adapter=str(ADAPTER))
    note = lens.check_compatible(tuned)
    assert note == f"lens fitted on the base model, applied to base + adapter {ADAPTER}"
    assert lens.record().note == note
