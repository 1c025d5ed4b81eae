"""GGUF loading, k-quants included, checked against the ggml reference decoders and transformers.

Every file here is written by the test with the ``gguf`` package's ``GGUFWriter``: a tiny random
llama (2 layers, hidden 256 so that 256-weight k-quant super-blocks fit a row), the tiny byte-level
BPE tokenizer of ``tests/tiny_models.py`` in the metadata (``tokenizer.ggml.model = gpt2``), Q/K
rows permuted the way llama.cpp's converter stores them.

``gguf.quants.quantize`` has no k-quant encoders (NotImplementedError for Q4_K, Q6_K), so
:func:`quantize_q4_k` and :func:`quantize_q6_k` below encode blocks in ggml's layout
(``block_q4_K``/``block_q6_K``); ``gguf.quants.dequantize`` (a port of ggml's ``dequantize_row_*``)
is the reference decoder throughout.

What the engine must do with such a file (``lazarus_report/models/gguf.py``):

* F32, F16, Q4_0, Q4_1, Q8_0: read by ``mx.load`` (exact);
* anything else: dequantized to float32 with the ``gguf`` package once, then cached.

A measured trap: ``mx.load`` does *not* fail on every k-quant file. It converts the types its
vendored gguflib knows (Q4_K, Q6_K, ...) to float16 and fails ("gguf_tensor_to_f16 failed") only on
the others (Q5_0, Q5_K, ...). Its Q4_K decoder is wrong (the upstream gguf-tools bug: the high
nibbles of every 64-weight group are scaled with the previous sub-block's scale and min; ~38%
relative error per tensor). A Q4_K_M file made only of Q4_K/Q6_K/F32 tensors, the common case,
loaded "successfully" with wrong weights (max |dp| 0.89 against the file's real weights) until the
engine learned to read the tensor types from the header first; ``test_pure_q4_k_m_file_loads_exactly``
keeps it that way, ``test_mlx_load_misdecodes_q4_k`` says whether MLX still needs the detour.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tiny_models as tm

from lazarus_report.core.errors import LazarusError, LazarusWarning
from lazarus_report.core.runtime import import_mlx

mx = import_mlx()

import gguf  # noqa: E402
from gguf.quants import QK_K  # noqa: E402
from gguf.quants import GGMLQuantizationType as Q  # noqa: E402

ROPE_THETA = 1000.0  # not the default: the file's llama.rope.freq_base must be honoured
HIDDEN, INTERMEDIATE, LAYERS = 256, 512, 2
PROMPT = "The capital of France is Paris, and 12 x def return"

# --------------------------------------------------------------------------------------------
# k-quant encoders (ggml block layouts; decoded by gguf.quants.dequantize)
# --------------------------------------------------------------------------------------------


def _half(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).astype(np.float16)


def quantize_q4_k(x: np.ndarray) -> np.ndarray:
    """float32 ``[rows, k*256]`` -> Q4_K bytes ``[rows, k*144]`` (round to nearest, no search).

    block_q4_K: fp16 d, fp16 dmin, 12 bytes of 6-bit sub-block scales/mins, 128 bytes of nibbles.
    Weight = d * sc[j] * q - dmin * m[j] for 8 sub-blocks of 32; sub-block 2g takes the low
    nibbles of bytes 32g..32g+31, sub-block 2g+1 their high nibbles.
    """
    rows = x.shape[0]
    blocks = x.reshape(-1, QK_K).astype(np.float32)
    n = blocks.shape[0]
    sub = blocks.reshape(n, 8, 32)
    lo = np.minimum(sub.min(-1), 0.0)
    scale, mins = (sub.max(-1) - lo) / 15.0, -lo
    d, dmin = _half(scale.max(-1) / 63.0), _half(mins.max(-1) / 63.0)
    d32, dmin32 = d.astype(np.float32)[:, None], dmin.astype(np.float32)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(d32 > 0, np.round(scale / d32), 0).clip(0, 63).astype(np.uint8)
        m = np.where(dmin32 > 0, np.round(mins / dmin32), 0).clip(0, 63).astype(np.uint8)
        step, offset = (d32 * sc)[..., None], (dmin32 * m)[..., None]
        q = np.where(step > 0, np.round((sub + offset) / step), 0).clip(0, 15).astype(np.uint8)
    pairs = q.reshape(n, 4, 2, 32)
    qs = (pairs[:, :, 0] | (pairs[:, :, 1] << 4)).reshape(n, 128)
    # get_scale_min_k4: j < 4 in the low 6 bits of bytes j / j+4; j >= 4 split over nibbles of
    # bytes j+4 and the top 2 bits of bytes j-4 / j.
    scales = np.concatenate(
        [
            (sc[:, :4] & 0x3F) | ((sc[:, 4:] >> 4) << 6),
            (m[:, :4] & 0x3F) | ((m[:, 4:] >> 4) << 6),
            (sc[:, 4:] & 0x0F) | ((m[:, 4:] & 0x0F) << 4),
        ],
        axis=1,
    ).astype(np.uint8)
    out = np.concatenate([d.reshape(n, 1).view(np.uint8), dmin.reshape(n, 1).view(np.uint8), scales, qs], axis=1)
    return out.reshape(rows, -1)


def quantize_q6_k(x: np.ndarray) -> np.ndarray:
    """float32 ``[rows, k*256]`` -> Q6_K bytes ``[rows, k*210]`` (round to nearest).

    block_q6_K: 128 bytes low nibbles, 64 bytes high 2-bit pairs, 16 int8 sub-block scales, fp16 d.
    Weight = d * scale[j] * (q - 32) for 16 sub-blocks of 16.
    """
    rows = x.shape[0]
    blocks = x.reshape(-1, QK_K).astype(np.float32)
    n = blocks.shape[0]
    sub = blocks.reshape(n, 16, 16)
    sub_scale = np.abs(sub).max(-1) / 31.0
    d = _half(sub_scale.max(-1) / 127.0)
    d32 = d.astype(np.float32)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(d32 > 0, np.round(sub_scale / d32), 0).clip(-128, 127).astype(np.int8)
        step = (d32 * sc.astype(np.float32))[..., None]
        q = np.where(step > 0, np.round(sub / step), 0)
    q = (q.clip(-32, 31) + 32).astype(np.uint8).reshape(n, QK_K)
    low = (q & 0x0F).reshape(n, 2, 2, 64)
    ql = (low[:, :, 0] | (low[:, :, 1] << 4)).reshape(n, 128)
    high = (q >> 4).reshape(n, 2, 4, 32)
    qh = (high[:, :, 0] | (high[:, :, 1] << 2) | (high[:, :, 2] << 4) | (high[:, :, 3] << 6)).reshape(n, 64)
    out = np.concatenate([ql, qh, sc.view(np.uint8), d.reshape(n, 1).view(np.uint8)], axis=1)
    return out.reshape(rows, -1)


def encode(x: np.ndarray, qtype: Q) -> np.ndarray:
    """What GGUFWriter.add_tensor stores for ``x`` as ``qtype``."""
    if qtype == Q.F32:
        return np.ascontiguousarray(x, dtype=np.float32)
    if qtype == Q.F16:
        return x.astype(np.float16)
    if qtype == Q.Q4_K:
        return quantize_q4_k(x)
    if qtype == Q.Q6_K:
        return quantize_q6_k(x)
    return gguf.quants.quantize(x, qtype)  # Q4_0, Q4_1, Q5_0, Q8_0 ... (ggml's reference encoders)


def decode(data: np.ndarray, qtype: Q, shape: tuple[int, ...]) -> np.ndarray:
    return np.asarray(gguf.quants.dequantize(data, qtype), dtype=np.float32).reshape(shape)


# --------------------------------------------------------------------------------------------
# The tiny llama and its GGUF files
# --------------------------------------------------------------------------------------------

_BLOCK = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "post_attention_layernorm": "ffn_norm",
}
_TOP = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}


def gguf_name(hf_name: str) -> str:
    if hf_name in _TOP:
        return _TOP[hf_name]
    parts = hf_name.split(".")  # model.layers.{i}.{module...}.weight
    return f"blk.{parts[2]}.{_BLOCK['.'.join(parts[3:-1])]}.weight"


def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's converter: Q/K rows reordered from rotate-half to interleaved rotary pairs."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def tiny_llama(seed: int = 0) -> Any:
    """The float32 reference model (transformers, PyTorch); vocabulary = the tiny tokenizer's."""
    tokens, _ = tm.byte_level_vocab()
    return tm.build_tiny_model(
        "llama",
        None,
        save=False,
        seed=seed,
        vocab_size=len(tokens),
        hidden_size=HIDDEN,
        intermediate_size=INTERMEDIATE,
        num_hidden_layers=LAYERS,
        rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA},
    )


def gguf_layout(model: Any) -> dict[str, np.ndarray]:
    """HF float32 weights -> GGUF names and layout (Q/K permuted), float32."""
    cfg = model.config
    out = {}
    for name, w in model.state_dict().items():
        w = w.detach().numpy().astype(np.float32)
        if name.endswith("q_proj.weight"):
            w = permute_qk(w, cfg.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            w = permute_qk(w, cfg.num_key_value_heads)
        out[gguf_name(name)] = np.ascontiguousarray(w)
    return out


QuantPlan = Callable[[str, np.ndarray], Q]

# llama.cpp file type ids (general.file_type)
FILE_TYPES = {"F32": 0, "F16": 1, "Q4_0": 2, "Q8_0": 7, "Q4_K_M": 15}


def plan_uniform(qtype: Q) -> QuantPlan:
    """Every matrix as ``qtype``, norms F32 (as llama.cpp does)."""
    return lambda name, w: qtype if w.ndim == 2 else Q.F32


def plan_q4_k_m(extra: dict[str, Q] | None = None) -> QuantPlan:
    """llama.cpp's Q4_K_M mix: Q6_K for the output and ffn_down, Q4_K for the other matrices."""

    def plan(name: str, w: np.ndarray) -> Q:
        if extra and name in extra:
            return extra[name]
        if w.ndim == 1:
            return Q.F32
        if name == "output.weight" or "ffn_down" in name:
            return Q.Q6_K
        return Q.Q4_K

    return plan


def write_gguf(path: Path, model: Any, plan: QuantPlan, file_type: str) -> dict[str, tuple[np.ndarray, Q]]:
    """Write ``model`` as a llama GGUF at ``path``; returns {gguf name: (stored data, type)}."""
    cfg = model.config
    tokens, merges = tm.byte_level_vocab()
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-llama")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(ROPE_THETA)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_file_type(FILE_TYPES[file_type])
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([3 if t in tm.SPECIAL_TOKENS else 1 for t in tokens])
    w.add_token_merges([f"{a} {b}" for a, b in merges])
    w.add_bos_token_id(0)
    w.add_eos_token_id(1)
    w.add_add_bos_token(False)
    stored = {}
    for name, x in gguf_layout(model).items():
        qtype = plan(name, x)
        data = encode(x, qtype)
        w.add_tensor(name, data, raw_dtype=None if qtype in (Q.F32, Q.F16) else qtype)
        stored[name] = (data, qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return stored


def effective_model(model: Any, stored: dict[str, tuple[np.ndarray, Q]]) -> Any:
    """The transformers model with exactly the weights the file holds (decoded, un-permuted)."""
    import copy

    torch = pytest.importorskip("torch")

    cfg = model.config
    ref = copy.deepcopy(model)
    state = {}
    for name, w in model.state_dict().items():
        data, qtype = stored[gguf_name(name)]
        x = decode(data, qtype, tuple(w.shape))
        if name.endswith("q_proj.weight"):
            x = unpermute_qk(x, cfg.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            x = unpermute_qk(x, cfg.num_key_value_heads)
        state[name] = torch.from_numpy(np.ascontiguousarray(x))
    ref.load_state_dict(state)
    return ref.eval()


# --------------------------------------------------------------------------------------------
# Comparisons
# --------------------------------------------------------------------------------------------


def our_log_probs(analyzer: Any, ids: list[int]) -> list[np.ndarray]:
    from lazarus_report.lens import readout as lens
    from lazarus_report.models.hooks import capture_hidden

    parts = analyzer.loaded.parts
    n = analyzer.info.num_layers
    sink = capture_hidden(parts, ids, list(range(n)))
    out = []
    for i in range(n):
        z = lens.head_logits_np(parts, sink[i][0]).astype(np.float64)
        m = z.max(axis=-1, keepdims=True)
        out.append(z - (m + np.log(np.exp(z - m).sum(axis=-1, keepdims=True))))
    return out


def hf_log_probs(model: Any, ids: list[int]) -> list[np.ndarray]:
    hidden, _ = tm.hf_block_outputs(model, ids)
    return [tm.hf_lens_log_probs(model, h).double().numpy() for h in hidden]


def max_dev(a: list[np.ndarray], b: list[np.ndarray]) -> tuple[float, float]:
    """(max |log p - log q| over tokens with p > 1e-4, max |p - q|) over all layers and positions."""
    dlog, dprob = 0.0, 0.0
    for x, y in zip(a, b, strict=True):
        top = np.exp(y) > 1e-4
        dlog = max(dlog, float(np.abs(x - y)[top].max()))
        dprob = max(dprob, float(np.abs(np.exp(x) - np.exp(y)).max()))
    return dlog, dprob


def loaded_weights(analyzer: Any) -> dict[str, np.ndarray]:
    from mlx.utils import tree_flatten

    return {k: np.asarray(v.astype(mx.float32)) for k, v in tree_flatten(analyzer.loaded.model.parameters())}


def assert_weights_are(analyzer: Any, model: Any, stored: dict[str, tuple[np.ndarray, Q]], atol: float = 0.0) -> None:
    """Every loaded parameter equals the reference decoding of the stored tensor (GGUF layout)."""
    got = loaded_weights(analyzer)
    names = {gguf_name(n): n for n in model.state_dict()}
    assert set(got) == set(names.values())
    for g, hf in names.items():
        data, qtype = stored[g]
        want = decode(data, qtype, got[hf].shape)
        np.testing.assert_allclose(got[hf], want, rtol=0, atol=atol, err_msg=f"{hf} ({g}, {qtype.name})")


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llama() -> Any:
    return tiny_llama()


def write(tmp_path: Path, name: str, model: Any, plan: QuantPlan, file_type: str) -> tuple[Path, dict]:
    path = tmp_path / f"{name}.gguf"
    return path, write_gguf(path, model, plan, file_type)


# Q4_K_M plus one Q5_0 tensor (llama.cpp falls back to such types where a k-quant does not fit;
# the real Gemma 3 270M Q4_K_M file has them). mx.load rejects Q5_0 outright, so this file needs
# the gguf-dequantization path whichever way the engine routes files.
MIXED_PLAN = plan_q4_k_m({"blk.0.attn_v.weight": Q.Q5_0})


def cache_files(cache: Path) -> list[Path]:
    """Files of the GGUF conversion cache (``$LAZARUS_CACHE_DIR/gguf``), temporaries included."""
    root = cache / "gguf"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def load(path: Path):
    from lazarus_report.commands.analyzer import ModelAnalyzer

    return ModelAnalyzer.load(str(path))


# --------------------------------------------------------------------------------------------
# The encoders and MLX's own GGUF reader
# --------------------------------------------------------------------------------------------


def _alternating_sub_blocks(rows: int, cols: int, width: int) -> np.ndarray:
    """Random rows whose odd ``width``-weight sub-blocks are 3x the size of the even ones, so a
    decoder that applies one sub-block's scale (or min) to its neighbour's weights is off by
    about 2/3 there (k-quant scales are themselves quantized against the largest one, so much
    larger contrasts would just measure that rounding)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    return (x * (1.0 + 2.0 * (np.arange(cols) // width % 2))).astype(np.float32)


@pytest.mark.parametrize("qtype, width, rel", [(Q.Q4_K, 32, 0.1), (Q.Q6_K, 16, 0.03)])
def test_kquant_encoders_round_trip_through_the_ggml_decoder(qtype: Q, width: int, rel: float) -> None:
    x = _alternating_sub_blocks(8, 512, width)
    y = decode(encode(x, qtype), qtype, x.shape)
    # Per sub-block error relative to that sub-block's own size: a scale/min assigned to the
    # wrong sub-block would give ~0.67 on half of them. Measured: Q4_K 0.084, Q6_K 0.022.
    blocks = (x - y).reshape(-1, width), x.reshape(-1, width)
    err = np.abs(blocks[0]).max(1) / np.abs(blocks[1]).max(1)
    assert err.max() < rel, err.max()
    assert encode(x, qtype).shape == (8, 512 // QK_K * (144 if qtype == Q.Q4_K else 210))


def test_mlx_load_misdecodes_q4_k(tmp_path: Path) -> None:
    """Why the engine must not trust ``mx.load`` with k-quants (mlx 0.32.4's vendored gguflib).

    mx.load does not reject Q4_K/Q6_K: it converts them to float16. Q6_K comes back right (to
    float16 rounding); Q4_K comes back with every second 32-weight sub-block scaled by its
    neighbour's scale and min (upstream gguf-tools bug). If this test starts failing, MLX fixed
    its decoder and the engine's routing of k-quants may be relaxed.
    """
    x = _alternating_sub_blocks(4, 256, 32)
    path = tmp_path / "two.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tensor("a.weight", quantize_q4_k(x), raw_dtype=Q.Q4_K)
    w.add_tensor("b.weight", quantize_q6_k(x), raw_dtype=Q.Q6_K)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    loaded = mx.load(str(path))  # no error
    a = np.asarray(loaded["a.weight"].astype(mx.float32))
    b = np.asarray(loaded["b.weight"].astype(mx.float32))
    ref_a = decode(quantize_q4_k(x), Q.Q4_K, x.shape)
    ref_b = decode(quantize_q6_k(x), Q.Q6_K, x.shape)
    np.testing.assert_allclose(b, ref_b, rtol=1e-3, atol=1e-3)  # float16 rounding only
    rel = np.linalg.norm(a - ref_a) / np.linalg.norm(ref_a)
    assert rel > 0.2, f"mx.load now decodes Q4_K correctly (relative error {rel:.2e})"
    # The high-nibble sub-blocks (odd ones) are the wrong ones; the low-nibble ones are right.
    err = (np.abs(a - ref_a).reshape(4, 8, 32).max(-1)) / np.abs(ref_a).reshape(4, 8, 32).max(-1)
    assert (err[:, 0::2] < 2e-3).all(), err  # float16 rounding
    assert (err[:, 1::2] > 0.3).all(), err


# --------------------------------------------------------------------------------------------
# The k-quant path: dequantized with the gguf package, cached
# --------------------------------------------------------------------------------------------


@pytest.mark.slow  # runs the transformers reference
def test_kquant_file_loads_through_gguf_dequantization(tmp_path: Path, llama: Any, isolated_cache: Path) -> None:
    path, stored = write(tmp_path, "q4_k_m", llama, MIXED_PLAN, "Q4_K_M")
    assert {q for _, q in stored.values()} == {Q.F32, Q.Q4_K, Q.Q5_0, Q.Q6_K}
    with pytest.raises((RuntimeError, ValueError), match="gguf_tensor_to_f16"):
        mx.load(str(path))
    analyzer = load(path)
    assert analyzer.info.precision == "float32 (dequantized from Q4_K_M via gguf dequantization)"
    assert analyzer.info.num_layers == LAYERS and analyzer.info.vocab_size == len(tm.byte_level_vocab()[0])
    assert analyzer.loaded.model.args.rope_theta == ROPE_THETA
    # Weights: exactly the ggml reference decoding of what the file stores (GGUF Q/K layout).
    assert_weights_are(analyzer, llama, stored, atol=0.0)
    # Tokenizer from the metadata: the same ids as the tokenizer it was written from.
    ids = analyzer.tokenizer.encode(PROMPT)
    assert ids == tm.tiny_tokenizer().encode(PROMPT).ids
    # Lens: transformers on the decoded (un-permuted) weights, every layer and position.
    # Measured: max |dlog p| 1.2e-5, max |dp| 1.1e-6.
    dlog, dprob = max_dev(our_log_probs(analyzer, ids), hf_log_probs(effective_model(llama, stored), ids))
    assert dlog < 1e-4 and dprob < 1e-4, (dlog, dprob)


@pytest.mark.slow  # runs the transformers reference
def test_pure_q4_k_m_file_loads_exactly(tmp_path: Path, llama: Any, isolated_cache: Path) -> None:
    path, stored = write(tmp_path, "pure", llama, plan_q4_k_m(), "Q4_K_M")
    assert {q for _, q in stored.values()} == {Q.F32, Q.Q4_K, Q.Q6_K}
    analyzer = load(path)
    assert analyzer.info.precision == "float32 (dequantized from Q4_K_M via gguf dequantization)"
    assert_weights_are(analyzer, llama, stored, atol=0.0)
    ids = analyzer.tokenizer.encode(PROMPT)
    # Measured: max |dlog p| 1.1e-5, |dp| 1.7e-6 (through mx.load: 12.6 and 0.89).
    dlog, dprob = max_dev(our_log_probs(analyzer, ids), hf_log_probs(effective_model(llama, stored), ids))
    assert dlog < 1e-4 and dprob < 1e-4, (dlog, dprob)


def test_conversion_cache_is_used_the_second_time(
    tmp_path: Path, llama: Any, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lazarus_report.models import gguf as gguf_mod

    path, stored = write(tmp_path, "q4_k_m", llama, MIXED_PLAN, "Q4_K_M")
    calls = []
    real = gguf_mod._dequantize_with_gguf
    monkeypatch.setattr(gguf_mod, "_dequantize_with_gguf", lambda p: calls.append(p) or real(p))

    first = load(path)
    assert len(calls) == 1
    files = cache_files(isolated_cache)
    assert [f.name for f in files] == ["metadata.json", "weights.safetensors"]
    (entry,) = {f.parent for f in files}
    assert entry.parent == isolated_cache / "gguf" and entry.name == gguf_mod.file_key(path)
    assert not [p for p in entry.parent.iterdir() if p.name.startswith(".")]  # no temporary left

    second = load(path)
    assert len(calls) == 1  # read from the cache: no second conversion
    assert second.info.precision == first.info.precision
    assert_weights_are(second, llama, stored, atol=0.0)
    ids = second.tokenizer.encode(PROMPT)
    np.testing.assert_array_equal(our_log_probs(second, ids)[-1], our_log_probs(first, ids)[-1])

    # A changed file (size/mtime) is a new key: converted again, never served stale.
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    load(path)
    assert len(calls) == 2
    assert len({f.parent for f in cache_files(isolated_cache)}) == 2

    # A damaged cache entry is rebuilt, not trusted.
    key_dir = isolated_cache / "gguf" / gguf_mod.file_key(path)
    (key_dir / "weights.safetensors").write_bytes(b"not safetensors")
    with pytest.warns(LazarusWarning, match="discarding the damaged cache entry"):
        again = load(path)
    assert len(calls) == 3
    assert_weights_are(again, llama, stored, atol=0.0)


def _truncate(data: bytes, where: float) -> bytes:
    return data[: int(len(data) * where)]


def _garbage_scales(data: bytes, offset: int) -> bytes:
    """0xFF over the tensor data: every fp16 block scale becomes NaN (a GGUF has no checksum;
    NaN/inf is the detectable form of damage; finite garbage cannot be told from weights)."""
    return data[:offset] + b"\xff" * (len(data) - offset)


def _data_offset(path: Path) -> int:
    reader = gguf.GGUFReader(str(path))
    return min(int(t.data_offset) for t in reader.tensors)


DAMAGE = {
    "truncated-mid-data": (lambda data, off: _truncate(data, 0.6), None),
    "truncated-last-bytes": (lambda data, off: data[:-100], None),
    "truncated-in-header": (lambda data, off: data[: off // 2], None),
    "bad-magic": (lambda data, off: b"GGUX" + data[4:], "not a GGUF file"),
    "nan-block-scales": (_garbage_scales, "NaN"),
}
FILE_KINDS = {
    "q4_k_m": (MIXED_PLAN, "Q4_K_M"),  # the gguf-dequantization path
    "f16": (plan_uniform(Q.F16), "F16"),  # the mx.load path
}


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("kind", list(FILE_KINDS))
def test_damaged_file_fails_cleanly(kind: str, damage: str, tmp_path: Path, llama: Any, isolated_cache: Path) -> None:
    """A LazarusError with a one-line message, and no cache entry left behind.

    Damage found while loading names the file. NaN weights in a file mx.load reads (F16 here) are
    found by the analysis instead (the lens's non-finite guard): loading succeeds, the first run fails.
    """
    from lazarus_report.core.config import AnalysisConfig

    path, _ = write(tmp_path, "good", llama, *FILE_KINDS[kind])
    make, words = DAMAGE[damage]
    bad = tmp_path / f"{damage}.gguf"
    bad.write_bytes(make(path.read_bytes(), _data_offset(path)))
    at_run_time = kind == "f16" and damage == "nan-block-scales"
    with pytest.raises(LazarusError) as info:
        analyzer = load(bad)
        assert at_run_time, "loaded a damaged file"
        analyzer.run(PROMPT, AnalysisConfig(use_chat_template=False))
    message = str(info.value)
    assert "\n" not in message and len(message) < 400
    if not at_run_time:
        assert str(bad) in message
    if words:
        assert words in message
    assert cache_files(isolated_cache) == []  # no cache entry (nor temporary) left behind
    if (isolated_cache / "gguf").exists():
        assert list((isolated_cache / "gguf").iterdir()) == []


# --------------------------------------------------------------------------------------------
# The native path: types mx.load reads exactly
# --------------------------------------------------------------------------------------------

# type -> (GGML type, weight atol against the ggml decoding, bound on max |dp| against the float32
# model the file was made from). Measured: weights bit-identical for all four; max |dp| against
# float32: F32 1.1e-6, F16 7.0e-4, Q8_0 0.025, Q4_0 0.25 (the quantization itself, on a tiny random
# model with peaked distributions), against the decoded weights <= 1.3e-6 for all.
NATIVE = {
    "F32": (Q.F32, 0.0, 1e-4),
    "F16": (Q.F16, 0.0, 5e-3),
    "Q8_0": (Q.Q8_0, 1e-6, 0.05),
    "Q4_0": (Q.Q4_0, 1e-6, 0.5),
}


@pytest.mark.slow  # runs the transformers reference
@pytest.mark.parametrize("kind", list(NATIVE))
def test_native_types_load_with_mlx(kind: str, tmp_path: Path, llama: Any, isolated_cache: Path) -> None:
    qtype, atol, vs_float = NATIVE[kind]
    path, stored = write(tmp_path, kind, llama, plan_uniform(qtype), kind)
    mx.load(str(path))  # MLX reads it itself
    analyzer = load(path)
    assert "via gguf dequantization" not in analyzer.info.precision
    assert kind in analyzer.info.precision
    assert cache_files(isolated_cache) == []  # nothing converted, nothing cached
    assert_weights_are(analyzer, llama, stored, atol=atol)
    ids = analyzer.tokenizer.encode(PROMPT)
    ours = our_log_probs(analyzer, ids)
    # Against transformers on exactly the stored weights (measured: |dlog p| <= 1.4e-5, |dp| <= 1.3e-6);
    # for F32 that is the float32 model itself, so the llama.cpp Q/K permutation + rope_traditional
    # convention and the file's rope.freq_base are what is checked.
    dlog, dprob = max_dev(ours, hf_log_probs(effective_model(llama, stored), ids))
    assert dlog < 1e-4 and dprob < 1e-4, (dlog, dprob)
    # And against the float32 weights the file was made from: the quantization's own effect.
    _, dprob_float = max_dev(ours, hf_log_probs(llama, ids))
    assert dprob_float < vs_float, dprob_float
