"""Every family in the registry: the lens at the last layer equals the model's own logits.

Tiny random mlx-lm models built in the test (seeded), one per registered family, so the registry
cannot grow a family that is not checked.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from lazarus_report.core.errors import LazarusError
from lazarus_report.core.runtime import import_mlx
from lazarus_report.lens import readout as lens
from lazarus_report.models import mlx_lm_light
from lazarus_report.models.families import FAMILIES, LensParts, get_family
from lazarus_report.models.hooks import capture_hidden

mx = import_mlx()

BASE = dict(
    hidden_size=64,
    num_hidden_layers=3,
    intermediate_size=96,
    num_attention_heads=4,
    num_key_value_heads=2,
    rms_norm_eps=1e-5,
    vocab_size=101,
    max_position_embeddings=256,
    rope_theta=10000.0,
    tie_word_embeddings=False,
)

CONFIGS: dict[str, dict] = {
    "llama": {},
    "mistral": {"tie_word_embeddings": True},
    "qwen2": {},
    "qwen3": {"head_dim": 16},
    "phi3": {},
    "olmo2": {},
    "starcoder2": {"norm_epsilon": 1e-5},
    "gemma": {"head_dim": 16},
    # A small softcap so that leaving it out of the lens would change the logits a lot.
    "gemma2": {
        "head_dim": 16,
        "query_pre_attn_scalar": 16,
        "final_logit_softcapping": 3.0,
        "attn_logit_softcapping": 10.0,
    },
    "gemma3_text": {"head_dim": 16, "query_pre_attn_scalar": 16, "sliding_window": 4, "sliding_window_pattern": 2},
    "cohere": {"logit_scale": 0.3, "layer_norm_eps": 1e-5},
    "granite": {
        "logits_scaling": 4.0,
        "attention_multiplier": 0.25,
        "embedding_multiplier": 2.0,
        "residual_multiplier": 0.5,
        "attention_bias": False,
        "mlp_bias": False,
    },
}


def config_for(family: str) -> dict:
    if family == "gemma3":
        text = {**BASE, **CONFIGS["gemma3_text"], "model_type": "gemma3_text"}
        return {"model_type": "gemma3", "text_config": text, "vocab_size": BASE["vocab_size"]}
    return {**BASE, **CONFIGS[family], "model_type": family}


def tiny_model(family: str, seed: int = 0):
    mx.random.seed(seed)
    model = mlx_lm_light.build_model(config_for(family))
    # Random norm weights too, so that a lens skipping or misapplying the final norm is caught.
    from mlx.utils import tree_flatten, tree_unflatten

    params = [(k, mx.random.normal(v.shape) * 0.5 if "norm" in k else v) for k, v in tree_flatten(model.parameters())]
    model.update(tree_unflatten(params))
    model.eval()
    mx.eval(model.parameters())
    return model, LensParts.of(model, family)


TOKENS = [5, 17, 3, 99, 42, 42, 7, 1, 64, 23]


def test_every_registered_family_has_a_parity_config():
    assert set(FAMILIES) == set(CONFIGS) | {"gemma3"}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_lens_at_last_layer_equals_model_logits(family):
    model, parts = tiny_model(family)
    own = np.array(model(mx.array([TOKENS]))[0].astype(mx.float32))  # [T, V]
    last = len(parts.layers) - 1
    sink = capture_hidden(parts, TOKENS, [last])
    ours = lens.head_logits_np(parts, sink[last][0])
    np.testing.assert_allclose(ours, own, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", ["llama", "gemma2", "gemma3_text"])
def test_every_layer_is_captured_and_the_model_is_restored(family):
    model, parts = tiny_model(family)
    before = np.array(model(mx.array([TOKENS]))[0])
    layers = list(range(len(parts.layers)))
    sink = capture_hidden(parts, TOKENS, layers)
    assert sorted(sink) == layers
    for i in layers:
        assert sink[i].shape == (1, len(TOKENS), 64)
    # Capturing swaps block classes only for the forward pass.
    assert all(type(b).__name__ and not type(b).__name__.startswith("Capturing") for b in parts.layers)
    np.testing.assert_array_equal(np.array(model(mx.array([TOKENS]))[0]), before)


def test_layer_i_is_the_output_of_block_i():
    _model, parts = tiny_model("llama")
    sink = capture_hidden(parts, TOKENS, [0, 1, 2])
    # Run the blocks by hand from the embeddings: block i's output must be what was captured.
    from mlx_lm.models.base import create_attention_mask

    h = parts.backbone.embed_tokens(mx.array([TOKENS]))
    mask = create_attention_mask(h, None)
    for i, block in enumerate(parts.layers):
        h = block(h, mask, None)
        np.testing.assert_allclose(np.array(h), np.array(sink[i]), rtol=1e-6, atol=1e-6)


def test_softcap_is_applied_after_the_head():
    _, parts = tiny_model("gemma2")
    assert parts.softcap == 3.0
    sink = capture_hidden(parts, TOKENS, [2])
    z = lens.head_logits_np(parts, sink[2][0])
    assert np.abs(z).max() <= 3.0 + 1e-5


def test_gemma_embedding_scale_is_detected_and_can_be_overridden():
    _, parts = tiny_model("gemma")
    assert parts.builtin_embedding_scale == pytest.approx(math.sqrt(64))
    _, g3 = tiny_model("gemma3_text")
    # mlx-lm's Gemma 3 rounds sqrt(hidden) to bfloat16 (8.0 is exact; 640 -> 25.25, not 25.298).
    assert g3.builtin_embedding_scale == 8.0
    same = capture_hidden(parts, TOKENS, [2], embedding_factor=1.0)[2]
    base = capture_hidden(parts, TOKENS, [2])[2]
    np.testing.assert_array_equal(np.array(same), np.array(base))
    other = capture_hidden(parts, TOKENS, [2], embedding_factor=0.5)[2]
    assert not np.allclose(np.array(other), np.array(base))
    # The override scales the embeddings on the way in only, never the tied output head.
    z = lens.head_logits_np(parts, base[0])
    z2 = lens.head_logits_np(parts, base[0])
    np.testing.assert_array_equal(z, z2)


def test_llama_has_no_builtin_embedding_scale():
    _, parts = tiny_model("llama")
    assert parts.builtin_embedding_scale is None
    assert not parts.tied
    _, tied = tiny_model("mistral")
    assert tied.tied


def test_unknown_family_is_a_clear_error():
    with pytest.raises(LazarusError, match=r"unsupported architecture 'mamba'.*supported: .*llama"):
        get_family("mamba")


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_fast_dequantization_matches_mlx(bits):
    from lazarus_report.models.quantize import dequantize_affine

    mx.random.seed(bits)
    w = mx.random.normal((48, 128))
    q, scales, biases = mx.quantize(w, group_size=32, bits=bits)
    ours = dequantize_affine(q, scales, biases, 32, bits)
    theirs = mx.dequantize(q, scales.astype(mx.float32), biases.astype(mx.float32), group_size=32, bits=bits)
    np.testing.assert_array_equal(np.array(ours), np.array(theirs))
