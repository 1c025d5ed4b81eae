"""The independent check: on the same weights, every layer's lens matches transformers on PyTorch.

The reference side never touches our code: transformers builds the model (from the GGUF file for
SmolLM2, from ``save_pretrained`` for the tiny random models), forward hooks on its decoder blocks
capture the residual stream after each block, and the reference lens is the model's own
``model.norm`` -> ``lm_head`` -> final-logit softcap (Gemma 2) -> float32 ``log_softmax``.
Only the token ids are shared (ours; for raw prompts we assert transformers' tokenizer agrees).

Our side: ``capture_hidden`` + ``lens.head_logits_np`` for the full layers x positions
comparison, and ``ModelAnalyzer.run`` for the numbers a report shows (entropy, KL to final,
tracked-token probabilities and exact ranks, top-k, the position grid).

Tolerances are float32 ones; the maxima measured on this machine (x86_64, OpenBLAS, torch 2.13
CPU, transformers 5.23, mlx 0.32.4) are noted next to each assertion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tiny_models as tm

from lazarus_report.commands.analyzer import ModelAnalyzer
from lazarus_report.core.config import AnalysisConfig, LayerStrategy
from lazarus_report.lens import readout as lens
from lazarus_report.models.hooks import capture_hidden

pytestmark = pytest.mark.slow  # every test here runs the reference implementation (torch)
pytest.importorskip("torch", reason="torch (the reference implementation) is in the test extra")

# A (layer, position) whose reference top-1 and top-2 log-probs are closer than this may
# legitimately swap between two float32 implementations; everywhere else top-1 must agree.
TOP1_MARGIN = 1e-3
# Log-probs are compared where the reference probability exceeds this (the visible part of the
# distribution; far in the tail both sides are float32 noise on tiny numbers).
P_VISIBLE = 1e-4


# --------------------------------------------------------------------------------------------
# Shared comparison machinery
# --------------------------------------------------------------------------------------------


def log_softmax32(z: np.ndarray) -> np.ndarray:
    """float32 log-softmax of float32 logits (what both implementations do; the comparisons need no
    more: float32 rounding of a log-prob of -30 is 2e-6, the tolerances are 1e-4)."""
    z = np.asarray(z, dtype=np.float32)
    m = z.max(axis=-1, keepdims=True)
    return z - (m + np.log(np.exp(z - m).sum(axis=-1, keepdims=True)))


def rank_bounds(ref_lp: np.ndarray, token: int, eps: float = 1e-5) -> tuple[int, int]:
    """Exact rank of ``token`` (1 + count of strictly larger) allowing near-ties within ``eps``."""
    v = ref_lp[token]
    return 1 + int((ref_lp > v + eps).sum()), 1 + int((ref_lp > v - eps).sum())


@dataclass
class Deviation:
    """Worst differences between our lens and the reference over layers x positions."""

    dlogp: float = 0.0  # max |log p - log q| where q > P_VISIBLE
    dprob: float = 0.0  # max |p - q| over the whole vocabulary
    checked_top1: int = 0
    top1_mismatches: list[tuple[int, int]] = field(default_factory=list)  # (layer, position)
    parity: float = 0.0  # max |reference lens at the last layer - the reference model's own log-probs|

    def update(self, layer: int, ours: np.ndarray, ref: np.ndarray, p_ref: np.ndarray, top2: np.ndarray) -> None:
        """``p_ref = exp(ref)``, ``top2``: the reference's two largest log-probs per row, ascending."""
        self.dlogp = max(self.dlogp, float(np.abs(ours - ref)[p_ref > P_VISIBLE].max()))
        self.dprob = max(self.dprob, float(np.abs(np.exp(ours) - p_ref).max()))
        clear = (top2[:, 1] - top2[:, 0]) > TOP1_MARGIN
        self.checked_top1 += int(clear.sum())
        bad = np.nonzero(clear & (ours.argmax(-1) != ref.argmax(-1)))[0]
        self.top1_mismatches += [(layer, int(p)) for p in bad]


@dataclass
class Reference:
    """What the result-level checks need of the reference lens: every layer's distribution at the
    last position, and per-(layer, position) summaries (never an [L, T, V] array: SmolLM2's would
    be 0.5 GB per prompt in float64)."""

    last: np.ndarray  # [L, V] log-probs at the last position (float64 copies of float32 values)
    top_id: np.ndarray  # [L, T]
    top_lp: np.ndarray  # [L, T] top-1 log-prob
    margin: np.ndarray  # [L, T] top-1 minus top-2 log-prob
    entropy: np.ndarray  # [L, T] nats
    kl: np.ndarray  # [L, T] KL(final || layer)
    answer_lp: np.ndarray  # [L, T] log-prob of the final layer's top-1 at each position (the model's answer)


def our_layer_log_probs(parts: Any, ids: list[int], layers: list[int], factor: float | None = None):
    """Yield (layer, [T, V] float32 log-probs) of our lens, one layer at a time."""
    sink = capture_hidden(parts, ids, layers, factor)
    for i in layers:
        yield i, log_softmax32(lens.head_logits_np(parts, sink[i][0]))


def compare_to_reference(model: Any, ids: list[int], ours: Any) -> tuple[Reference, Deviation]:
    """Stream both lenses layer by layer (``ours`` yields ``(layer, log-probs)`` for layers
    0..L-1); return the reference summaries and the deviations."""
    import torch

    hidden, logits = tm.hf_block_outputs(model, ids)
    n = len(hidden)
    final = tm.hf_lens_log_probs(model, hidden[-1]).numpy()
    p_final = np.exp(final)
    dev = Deviation()
    dev.parity = float(np.abs(final - torch.log_softmax(logits, dim=-1).numpy()).max())
    rows: dict[str, list[np.ndarray]] = {
        k: [] for k in ("last", "top_id", "top_lp", "margin", "entropy", "kl", "answer_lp")
    }
    answer = final.argmax(-1)
    seen = []
    for layer, lp in ours:
        seen.append(layer)
        ref = final if layer == n - 1 else tm.hf_lens_log_probs(model, hidden[layer]).numpy()
        p_ref = np.exp(ref)
        top2 = np.sort(np.partition(ref, -2, axis=-1)[:, -2:], axis=-1).astype(np.float64)
        dev.update(layer, lp, ref, p_ref, top2)
        rows["last"].append(ref[-1].astype(np.float64))
        rows["top_id"].append(ref.argmax(-1))
        rows["top_lp"].append(top2[:, 1])
        rows["margin"].append(top2[:, 1] - top2[:, 0])
        rows["entropy"].append(-(p_ref * ref).sum(-1, dtype=np.float64))
        rows["kl"].append((p_final * (final - ref)).sum(-1, dtype=np.float64))
        rows["answer_lp"].append(ref[np.arange(len(answer)), answer].astype(np.float64))
    assert seen == list(range(n))
    return Reference(**{k: np.stack(v) for k, v in rows.items()}), dev


def check_result_against(res: Any, ref: Reference, tracked_ids: list[int], atol: float) -> dict[str, float]:
    """Result-level numbers of ``res`` (last position and grid) against the reference.

    Returns the worst deviations seen (for the measured-maxima comments).
    """
    worst: dict[str, float] = {"entropy": 0.0, "kl": 0.0, "tracked_p": 0.0, "topk_p": 0.0, "grid": 0.0}
    final_top = int(ref.last[-1].argmax())
    assert res.captured_layers == list(range(len(ref.last)))
    for layer, pred in zip(res.captured_layers, res.layer_predictions, strict=True):
        lp = ref.last[layer]
        assert pred.layer_idx == layer
        e, k = float(ref.entropy[layer, -1]), float(ref.kl[layer, -1])
        worst["entropy"] = max(worst["entropy"], abs(pred.entropy - e))
        worst["kl"] = max(worst["kl"], abs(pred.kl_to_final - k))
        assert pred.entropy == pytest.approx(e, abs=atol * 10, rel=1e-5), layer
        assert pred.kl_to_final == pytest.approx(k, abs=atol * 10, rel=1e-5), layer
        lo, hi = rank_bounds(lp, final_top)
        assert lo <= pred.final_token_rank <= hi, (layer, pred.final_token_rank, lo, hi)
        for tok_id, t in zip(tracked_ids, pred.tracked, strict=True):
            p = math.exp(lp[tok_id])
            worst["tracked_p"] = max(worst["tracked_p"], abs(t.prob - p))
            assert t.prob == pytest.approx(p, abs=atol), (layer, tok_id)
            lo, hi = rank_bounds(lp, tok_id)
            assert lo <= t.rank <= hi, (layer, tok_id, t.rank, lo, hi)
        # top-k: the reported probabilities are the reference's k largest, in order, and each
        # reported token has (within tolerance) the probability reported for it.
        probs = [tp.prob for tp in pred.top_tokens]
        want = np.sort(np.exp(lp))[::-1][: len(probs)]
        np.testing.assert_allclose(probs, want, rtol=0, atol=atol)
        for tp in pred.top_tokens:
            worst["topk_p"] = max(worst["topk_p"], abs(tp.prob - math.exp(lp[tp.token_id])))
            assert tp.prob == pytest.approx(math.exp(lp[tp.token_id]), abs=atol)
        assert probs == sorted(probs, reverse=True)
    for j, layer in enumerate(res.grid.layers):
        np.testing.assert_allclose(res.grid.top_probs[j], np.exp(ref.top_lp[layer]), rtol=0, atol=atol)
        np.testing.assert_allclose(res.grid.entropy[j], ref.entropy[layer], rtol=1e-5, atol=atol * 10)
        np.testing.assert_allclose(res.grid.kl_to_final[j], ref.kl[layer], rtol=1e-5, atol=atol * 10)
        np.testing.assert_allclose(res.grid.answer_probs[j], np.exp(ref.answer_lp[layer]), rtol=0, atol=atol)
        clear = ref.margin[layer] > TOP1_MARGIN
        got = np.asarray(res.grid.top_token_ids[j])
        assert (got[clear] == ref.top_id[layer][clear]).all(), layer
        worst["grid"] = max(
            worst["grid"], float(np.abs(np.asarray(res.grid.top_probs[j]) - np.exp(ref.top_lp[layer])).max())
        )
    return worst


# --------------------------------------------------------------------------------------------
# SmolLM2-135M-Instruct, the real embedded GGUF (Q4_1, dequantized to float32 on both sides)
# --------------------------------------------------------------------------------------------

RAW_PROMPTS = {
    "france": "The capital of France is",
    "code": "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) +",
    "multiline": "Dear team,\n\nThe meeting moved to Thursday.\n  - bring the slides\n  - and the",
    "digits_unicode": "In 2024, 1,234,567 visitors paid €12.50 each — naïve café ☕ in 東京 at 09:45",
}
CHAT_PROMPT = "What is the capital of France? Answer in one word."
SMOLLM_TRACKED = [" Paris", " the", "\n"]
PARIS_FINAL_P = 0.7725  # FIELD_NOTES: transformers fp32 on this GGUF, raw "The capital of France is"


@pytest.fixture(scope="module")
def smollm_ours(smollm2_gguf: Path) -> ModelAnalyzer:
    analyzer = ModelAnalyzer.load(str(smollm2_gguf))
    assert analyzer.info.num_layers == 30
    assert "float32" in analyzer.info.precision  # dequantized on CPU: both sides run float32 weights
    return analyzer


@pytest.fixture(scope="module")
def smollm_hf(smollm2_gguf: Path) -> tuple[Any, Any]:
    """transformers' own GGUF loader (dequantizes with the gguf package, un-permutes Q/K): slow."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(
        str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name, dtype=torch.float32, local_files_only=True
    )
    model.config._attn_implementation = "eager"
    tokenizer = AutoTokenizer.from_pretrained(
        str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name, local_files_only=True
    )
    return model.eval(), tokenizer


@dataclass
class SmolCase:
    name: str
    ids: list[int]
    res: Any
    ref: Reference
    deviation: Deviation
    tracked_ids: list[int]


_SMOL_CASES: dict[str, SmolCase] = {}


def smol_case(name: str, ours: ModelAnalyzer, hf: tuple[Any, Any]) -> SmolCase:
    """Run both sides once per prompt (several tests read the same case)."""
    if name in _SMOL_CASES:
        return _SMOL_CASES[name]
    chat = name == "chat"
    prompt = CHAT_PROMPT if chat else RAW_PROMPTS[name]
    config = AnalysisConfig(
        layer_strategy=LayerStrategy.ALL, use_chat_template=chat, top_k=10, track_tokens=SMOLLM_TRACKED
    )
    res = ours.run(prompt, config)
    assert res.chat_template_applied is chat
    ids = list(res.token_ids)
    n = ours.info.num_layers
    ref, dev = compare_to_reference(hf[0], ids, our_layer_log_probs(ours.loaded.parts, ids, list(range(n))))
    tracked_ids = [t.token_id for t in res.tracked_tokens]
    case = _SMOL_CASES[name] = SmolCase(name, ids, res, ref, dev, tracked_ids)
    return case


SMOL_CASE_NAMES = [*RAW_PROMPTS, "chat"]


@pytest.mark.parametrize("name", list(RAW_PROMPTS))
def test_smollm2_tokenizer_ids_match_transformers(name: str, smollm_ours: ModelAnalyzer, smollm_hf) -> None:
    prompt = RAW_PROMPTS[name]
    ours = smollm_ours.tokenizer.encode(prompt)
    theirs = smollm_hf[1](prompt)["input_ids"]
    assert ours == theirs
    if name == "france":
        assert ours == [504, 3575, 282, 4649, 314]


def test_smollm2_chat_template_ids_match_transformers(smollm_ours: ModelAnalyzer, smollm_hf) -> None:
    formatted, applied, ids = smollm_ours.format_prompt(CHAT_PROMPT, use_chat_template=True)
    assert applied and "<|im_start|>" in formatted
    theirs = smollm_hf[1].apply_chat_template(
        [{"role": "user", "content": CHAT_PROMPT}], add_generation_prompt=True, tokenize=True
    )
    theirs = theirs["input_ids"] if hasattr(theirs, "keys") else theirs  # BatchEncoding in transformers 5
    assert ids == list(theirs)


def test_smollm2_hidden_states_convention(smollm_hf) -> None:
    """transformers 5: hidden_states[0] = embeddings, [i+1] = block i's output, EXCEPT the last
    entry, which is the final *normed* state (``capture_outputs(tie_last_hidden_states=True)``).
    A lens that applied the norm to hidden_states[-1] again would be off; we use block hooks."""
    import torch

    model = smollm_hf[0]
    ids = [504, 3575, 282, 4649, 314]
    blocks, logits = tm.hf_block_outputs(model, ids)
    with torch.no_grad():
        out = model(torch.tensor([ids]), output_hidden_states=True, use_cache=False)
    hs = out.hidden_states
    n = len(model.model.layers)
    assert len(hs) == n + 1
    with torch.no_grad():
        emb = model.model.embed_tokens(torch.tensor([ids]))[0]
    torch.testing.assert_close(hs[0][0], emb, rtol=0, atol=0)
    for i in range(n - 1):
        torch.testing.assert_close(hs[i + 1][0], blocks[i], rtol=0, atol=0)
    with torch.no_grad():
        normed = model.model.norm(blocks[-1])
    torch.testing.assert_close(hs[n][0], normed, rtol=0, atol=0)
    assert not torch.allclose(hs[n][0], blocks[-1])
    # And the reference lens at the last block is the model's own output.
    torch.testing.assert_close(
        tm.hf_lens_log_probs(model, blocks[-1]), torch.log_softmax(logits, -1), rtol=0, atol=1e-6
    )


@pytest.mark.parametrize("name", SMOL_CASE_NAMES)
def test_smollm2_every_layer_matches_transformers(name: str, smollm_ours: ModelAnalyzer, smollm_hf) -> None:
    case = smol_case(name, smollm_ours, smollm_hf)
    dev = case.deviation
    # The reference lens at the last layer is transformers' own prediction (measured: identical).
    assert dev.parity < 2e-5
    # Measured over 30 layers x all positions of the five prompts (5 to 46 tokens): max |dlog p|
    # (p > 1e-4) 7.3e-5, max |dp| 1.5e-5 (float32 summation order: OpenBLAS vs torch's kernels);
    # top-1 agrees at all 4198 (layer, position) pairs with a margin > 1e-3 (2 of 4200 have less).
    assert dev.dlogp < 2e-4, dev
    assert dev.dprob < 1e-4, dev
    assert dev.checked_top1 >= 0.9 * 30 * len(case.ids)
    assert dev.top1_mismatches == []


@pytest.mark.parametrize("name", SMOL_CASE_NAMES)
def test_smollm2_result_numbers_match_transformers(name: str, smollm_ours: ModelAnalyzer, smollm_hf) -> None:
    case = smol_case(name, smollm_ours, smollm_hf)
    # Measured (last position, every layer): entropy within 9.5e-5 nats; KL(final || layer)
    # within 4.7e-4 nats at values up to 26 nats (about 1.8e-4 of that is our own float32 dot
    # products, measured against float64 on our logits); tracked and top-k probabilities within
    # 7.7e-6; grid top-1 probabilities within 1.4e-5.
    check_result_against(case.res, case.ref, case.tracked_ids, atol=1e-4)


def test_smollm2_paris(smollm_ours: ModelAnalyzer, smollm_hf) -> None:
    case = smol_case("france", smollm_ours, smollm_hf)
    paris = case.res.tracked_tokens[0]
    assert paris.token == " Paris" and paris.num_tokens == 1
    ours = case.res.token_evolutions[0].probs[-1]
    theirs = math.exp(case.ref.last[-1][paris.token_id])
    assert theirs == pytest.approx(PARIS_FINAL_P, abs=5e-5)  # measured 0.7725388
    assert ours == pytest.approx(PARIS_FINAL_P, abs=5e-5)  # measured 0.7725311
    assert case.res.layer_predictions[-1].top_tokens[0].token == " Paris"
    assert case.res.token_evolutions[0].ranks[-1] == 1


# --------------------------------------------------------------------------------------------
# Tiny random models of each family, saved by transformers, loaded by our directory loader
# --------------------------------------------------------------------------------------------

TINY_PROMPT = "The capital of France is Paris, and 12 x def return the world"
TINY_TRACKED = [" Paris", " the"]
TINY_FAMILIES = ["llama", "mistral", "qwen2", "qwen3", "phi3", "gemma2", "gemma3_text"]


def load_tiny(family: str, directory: Path, **overrides: Any) -> tuple[Any, ModelAnalyzer]:
    model = tm.build_tiny_model(family, directory, **overrides)
    return model, ModelAnalyzer.load(str(directory))


def tiny_compare(
    model: Any, analyzer: ModelAnalyzer, ids: list[int], factor: float | None = None
) -> tuple[Reference, Deviation]:
    n = analyzer.info.num_layers
    ref, dev = compare_to_reference(model, ids, our_layer_log_probs(analyzer.loaded.parts, ids, list(range(n)), factor))
    assert dev.parity < 1e-5  # the reference lens at the last layer is the model's own head
    return ref, dev


def tiny_deviation(model: Any, analyzer: ModelAnalyzer, ids: list[int], factor: float | None = None) -> Deviation:
    return tiny_compare(model, analyzer, ids, factor)[1]


def default_factor(analyzer: ModelAnalyzer) -> float | None:
    """The embedding factor ``ModelAnalyzer.run`` applies by default (mirrored for the direct
    ``capture_hidden`` comparison): the reference implementation's scale over mlx-lm's builtin
    one, where they differ (Gemma 3 in float32)."""
    parts = analyzer.loaded.parts
    if parts.reference_embedding_scale is None:
        return None
    return parts.reference_embedding_scale / parts.builtin_embedding_scale


def hf_embedding_scale(model: Any) -> float | None:
    """transformers' Gemma ``embed_scale`` (float32 sqrt(hidden) for float32 weights)."""
    emb = model.model.embed_tokens
    return float(emb.embed_scale.to(emb.weight.dtype).item()) if hasattr(emb, "embed_scale") else None


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_tiny_family_every_layer_matches_transformers(family: str, tmp_path: Path) -> None:
    model, analyzer = load_tiny(family, tmp_path / family)
    assert analyzer.info.family == family
    assert analyzer.info.num_layers == model.config.num_hidden_layers
    assert analyzer.info.tied_embeddings == bool(model.config.tie_word_embeddings)
    config = AnalysisConfig(
        layer_strategy=LayerStrategy.ALL, use_chat_template=False, top_k=5, track_tokens=TINY_TRACKED
    )
    res = analyzer.run(TINY_PROMPT, config)  # defaults only: no embedding_scale override
    scale = hf_embedding_scale(model)
    if scale is not None:  # Gemma: the analysis scales embeddings exactly as transformers does
        assert res.model.embedding_scale == pytest.approx(scale, rel=1e-7)
    ids = list(res.token_ids)
    assert len(ids) > 8
    ref, dev = tiny_compare(model, analyzer, ids, default_factor(analyzer))
    # Measured (all layers x positions, 14-16 tokens): max |dlog p| 3.3e-6 (gemma2) .. 1.1e-5
    # (qwen2), max |dp| <= 1.1e-6; result-level numbers within 3e-6.
    assert dev.dlogp < 1e-4, dev
    assert dev.dprob < 1e-4, dev
    assert dev.top1_mismatches == []
    check_result_against(res, ref, [t.token_id for t in res.tracked_tokens], atol=1e-4)


def test_gemma2_final_softcap_is_applied(tmp_path: Path) -> None:
    """The softcap (6.0 here) bounds every lens logit: without it the tiny Gemma 2's logits
    reach 24 to 27 in magnitude (measured) and the comparison above would fail by whole nats."""
    model, analyzer = load_tiny("gemma2", tmp_path / "g2")
    assert analyzer.info.final_logit_softcap == 6.0
    ids = analyzer.tokenizer.encode(TINY_PROMPT)
    sink = capture_hidden(analyzer.loaded.parts, ids, [0, 1, 2])
    z = np.concatenate([lens.head_logits_np(analyzer.loaded.parts, sink[i][0]) for i in range(3)])
    assert np.abs(z).max() < 6.0
    import torch

    hidden, _ = tm.hf_block_outputs(model, ids)
    with torch.no_grad():
        raw = model.lm_head(model.model.norm(hidden[0]))
    assert raw.abs().max().item() > 12.0  # the cap changes the numbers, so the test above sees it


def test_gemma_embedding_scales_state_the_truth(tmp_path: Path) -> None:
    """What each implementation multiplies Gemma token embeddings by, in float32.

    * transformers (Gemma 2 and Gemma 3): ``embed_scale = hidden_size**0.5`` as a float32 tensor,
      cast to the weights' dtype: no rounding in float32 (rounded to bfloat16 only for bf16 weights).
    * mlx-lm gemma2: ``h * hidden_size**0.5`` (float32 for float32 weights): the same as transformers.
    * mlx-lm gemma3_text: ``mx.array(hidden_size**0.5, mx.bfloat16)``: rounded to bfloat16 even for
      float32 weights. hidden 48: 6.9282 -> 6.9375 (+0.13%).

    The analysis (``ModelAnalyzer.run``) uses transformers' scale by default: mlx-lm's own
    forward pass differs from transformers-float32 by far more than float32 noise, the analysis
    matches it. On the real Gemma 3 270M (hidden 640: 25.2982 vs mlx-lm's 25.25) the two scales
    differ, measured over all 18 layers x positions of two short prompts, by up to 0.010 in
    probability and 0.16 in log-probability (p > 1e-4), with one top-1 flip in 288 pairs.
    """
    import torch

    g2, g2_an = load_tiny("gemma2", tmp_path / "g2", hidden_size=48)
    g3, g3_an = load_tiny("gemma3_text", tmp_path / "g3")
    exact = float(np.float32(math.sqrt(48)))
    for model in (g2, g3):
        assert model.model.embed_tokens.embed_scale.dtype == torch.float32
        assert hf_embedding_scale(model) == exact
    assert g2_an.loaded.parts.builtin_embedding_scale == pytest.approx(math.sqrt(48), abs=1e-12)  # unrounded
    assert g2_an.loaded.parts.reference_embedding_scale is None  # nothing to correct
    assert g3_an.loaded.parts.builtin_embedding_scale == 6.9375  # bfloat16(sqrt(48)), mlx-lm's
    assert g3_an.loaded.parts.reference_embedding_scale == exact

    ids = g2_an.tokenizer.encode(TINY_PROMPT)
    # Gemma 2, mlx-lm's own scale: matches transformers float32 (measured max |dlog p| 4e-6).
    assert tiny_deviation(g2, g2_an, ids).dlogp < 1e-4
    # Gemma 3, mlx-lm's own (bfloat16-rounded) scale: measured max |dlog p| 0.023, |dp| 0.0034.
    mlx_lm_own = tiny_deviation(g3, g3_an, ids, factor=None)
    assert mlx_lm_own.dlogp > 1e-3
    # Gemma 3 with transformers' float32 scale: float32 agreement (measured 8e-6).
    exact_run = tiny_deviation(g3, g3_an, ids, factor=exact / 6.9375)
    assert exact_run.dlogp < 1e-4, exact_run
    assert exact_run.top1_mismatches == []
    # Through the public API: the default is transformers' scale, and it is what the result records;
    # an explicit embedding_scale still overrides it.
    config = AnalysisConfig(layer_strategy=LayerStrategy.ALL, use_chat_template=False)
    res = g3_an.run(TINY_PROMPT, config)
    assert res.model.embedding_scale == exact and res.config.embedding_scale is None
    ref, _ = tiny_compare(g3, g3_an, ids, default_factor(g3_an))
    check_result_against(res, ref, [], atol=1e-4)
    config.embedding_scale = 6.9375
    res = g3_an.run(TINY_PROMPT, config)
    assert res.model.embedding_scale == 6.9375 and res.config.embedding_scale == 6.9375
    assert abs(res.layer_predictions[-1].entropy - float(ref.entropy[-1, -1])) > 1e-4  # mlx-lm's numbers


def test_rope_theta_from_rope_parameters_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """transformers 5 writes rope theta under ``rope_parameters`` (theta 500 here); mlx-lm reads the
    top-level key. The loader's fix must carry it over, and this test must be able to see the
    difference: without the fix the same check fails by whole nats."""
    import json

    from lazarus_report.models import loader

    model = tm.build_tiny_model("llama", tmp_path / "llama")
    written = json.loads((tmp_path / "llama" / "config.json").read_text())
    assert "rope_theta" not in written and written["rope_parameters"]["rope_theta"] == 500.0
    fixed = ModelAnalyzer.load(str(tmp_path / "llama"))
    ids = fixed.tokenizer.encode(TINY_PROMPT)
    assert tiny_deviation(model, fixed, ids).dlogp < 1e-4
    assert fixed.loaded.model.args.rope_theta == 500.0

    monkeypatch.setattr(loader, "_directory_config_fixes", lambda path: {})
    unfixed = ModelAnalyzer.load(str(tmp_path / "llama"))
    assert unfixed.loaded.model.args.rope_theta == 10000  # mlx-lm's silent default
    assert tiny_deviation(model, unfixed, ids).dlogp > 0.05


# Rope settings transformers 5 writes under rope_parameters that mlx-lm reads from top-level keys
# (without the loader's translation each of these is off by whole nats).
ROPE_PARAMETER_CASES = {
    "phi3-partial-rotary": (
        "phi3",
        dict(rope_parameters={"rope_type": "default", "rope_theta": 600.0, "partial_rotary_factor": 0.5}),
    ),
    "llama-linear-scaling": (
        "llama",
        dict(rope_parameters={"rope_type": "linear", "rope_theta": 500.0, "factor": 4.0}),
    ),
    "llama3-scaling": (
        "llama",
        dict(
            rope_parameters={
                "rope_type": "llama3",
                "rope_theta": 500.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            }
        ),
    ),
    "gemma3-per-layer-type-thetas": (
        "gemma3_text",
        dict(
            rope_parameters={
                "full_attention": {"rope_type": "default", "rope_theta": 300.0},
                "sliding_attention": {"rope_type": "default", "rope_theta": 50.0},
            }
        ),
    ),
}


@pytest.mark.parametrize("case", list(ROPE_PARAMETER_CASES))
def test_rope_parameters_written_by_transformers5(case: str, tmp_path: Path) -> None:
    family, overrides = ROPE_PARAMETER_CASES[case]
    model, analyzer = load_tiny(family, tmp_path / case, **overrides)
    ids = analyzer.tokenizer.encode(TINY_PROMPT)
    # Measured: max |dlog p| <= 7.2e-6 (2.8 to 6.6 nats before the loader translated rope_parameters).
    assert tiny_deviation(model, analyzer, ids, default_factor(analyzer)).dlogp < 1e-4


SLIDING_CASES = {
    "gemma2": ("gemma2", dict(sliding_window=4)),
    "mistral": ("mistral", dict(sliding_window=4)),
    "qwen2-use_sliding_window": ("qwen2", dict(use_sliding_window=True, sliding_window=4, max_window_layers=1)),
}


@pytest.mark.parametrize(
    "case",
    [
        "gemma2",
        "mistral",
        "qwen2-use_sliding_window",
    ],
)
def test_sliding_window_mlx_lm_does_not_implement_is_refused(case: str, tmp_path: Path) -> None:
    """mlx-lm's gemma2, llama (which runs mistral without layer_types) and qwen2 apply no sliding-window
    mask. Beyond the window the lens would silently differ from transformers (measured: 3.7 to 11.5
    nats), so the analysis must refuse such prompts; within the window it matches."""
    from lazarus_report.core.errors import LazarusError

    family, overrides = SLIDING_CASES[case]
    model, analyzer = load_tiny(family, tmp_path / case, **overrides)
    ids = analyzer.tokenizer.encode(TINY_PROMPT)
    assert len(ids) > 4
    assert tiny_deviation(model, analyzer, ids, default_factor(analyzer)).dlogp > 0.5  # why the guard exists
    with pytest.raises(LazarusError, match="sliding attention window"):
        analyzer.run(TINY_PROMPT, AnalysisConfig(use_chat_template=False))
    short = analyzer.tokenizer.token_to_str(ids[0]) + analyzer.tokenizer.token_to_str(ids[1])
    res = analyzer.run(short, AnalysisConfig(use_chat_template=False, layer_strategy=LayerStrategy.ALL))
    assert len(res.token_ids) <= 4
    ref, dev = tiny_compare(model, analyzer, list(res.token_ids), default_factor(analyzer))
    assert dev.dlogp < 1e-4, dev  # within the window mlx-lm and transformers agree
    check_result_against(res, ref, [], atol=1e-4)
