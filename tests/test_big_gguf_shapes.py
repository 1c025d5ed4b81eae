"""The bench's big llama-shaped GGUFs, scaled down: the loading paths the ``sizes`` bench measures are covered.

``benchmarks/make_big_gguf.py`` writes Llama-3.2-1B / Llama-3.1-8B shapes with random k-quant (Q4_K_M mix:
Q4_K and Q6_K) or Q8_0 blocks and SmolLM2's vocabulary padded with filler tokens. The same builder writes a
3-layer, hidden-256 model here (vocabulary 49,408: SmolLM2's 49,152 + 256 fillers); it loads on the default
(float32) path and under ``--max-memory`` (streamed: matrices kept as GGUF blocks or MLX quantized triples), and
both give the logits of an independent float32 reference within 1e-4: every tensor dequantized by the ``gguf``
package in numpy, placed by name into an mlx-lm llama built from the shape (not from the file's metadata).
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lazarus_report.core.runtime import import_mlx
from lazarus_report.models import streamed
from lazarus_report.models.loader import load_model

mx = import_mlx()

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import make_big_gguf as big  # noqa: E402

VOCAB = 49152 + 256
PROMPT_IDS = [1, 504, 3458, 282, 4649, 314, 7042, 30, 260, 49200]  # the last one a filler token


def small(tied: bool) -> big.Shape:
    return big.Shape("small", 3, 256, 4, 2, 512, VOCAB, tied=tied, context=2048)


_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_TOP = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight"}
_TOP["output.weight"] = "lm_head.weight"


def reference_logits(path: Path, shape: big.Shape) -> list[np.ndarray]:
    """Per layer (and the final norm's output last) the head's logits at every position, from a float32 llama
    whose weights the ``gguf`` package dequantized in numpy."""
    import gguf

    from lazarus_report.models import mlx_lm_light
    from lazarus_report.models.families import LensParts
    from lazarus_report.models.hooks import capture_hidden

    weights = {}
    for t in gguf.GGUFReader(str(path), "r").tensors:
        dims = tuple(int(d) for d in reversed(t.shape.tolist()))
        arr = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(dims)
        if t.name in _TOP:
            name = _TOP[t.name]
        else:
            _, layer, base, _ = t.name.split(".")
            name = f"model.layers.{layer}.{_NAMES[base]}.weight"
        weights[name] = mx.array(arr)
    config = {
        "model_type": "llama",
        "hidden_size": shape.hidden,
        "num_hidden_layers": shape.layers,
        "intermediate_size": shape.intermediate,
        "num_attention_heads": shape.heads,
        "num_key_value_heads": shape.kv_heads,
        "rms_norm_eps": 1e-5,
        "vocab_size": shape.vocab,
        "rope_theta": shape.rope_theta,
        "max_position_embeddings": shape.context,
        "tie_word_embeddings": shape.tied,
        "rope_traditional": True,  # llama.cpp stores Q/K rows for the interleaved rotary layout
    }
    model = mlx_lm_light.build_model(config)
    model.load_weights(list(weights.items()), strict=True)
    model.set_dtype(mx.float32)
    return _lens_logits(LensParts.of(model, "llama"), capture_hidden)


def _lens_logits(parts: Any, capture: Any) -> list[np.ndarray]:
    layers = list(range(len(parts.layers)))
    hidden = capture(parts, PROMPT_IDS, layers)
    out = [np.asarray(parts.logits(hidden[i][0]).astype(mx.float32)) for i in layers]
    return out


def loaded_logits(loaded: Any) -> list[np.ndarray]:
    from lazarus_report.models.hooks import capture_hidden

    return _lens_logits(loaded.parts, capture_hidden)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, bool], Path]:
    out = {}
    for mix, tied in (("q4_k_m", False), ("q4_k_m", True), ("q8_0", True)):
        path = tmp_path_factory.mktemp("big") / f"small-{mix}-{'tied' if tied else 'untied'}.gguf"
        big.write_gguf(path, small(tied), mix)
        out[(mix, tied)] = path
    return out


@pytest.mark.slow  # the builder reads SmolLM2's 49k-token metadata (~6 s) and writes several files
def test_builder_writes_the_quant_types_people_use(files: dict[tuple[str, bool], Path]) -> None:
    from lazarus_report.models.gguf_metadata import read_gguf_header

    header = read_gguf_header(files[("q4_k_m", False)])
    types = {name: t for name, (t, _, _) in header.tensors.items()}
    assert types["output.weight"] == big.Q6_K and types["token_embd.weight"] == big.Q4_K
    assert types["blk.0.attn_q.weight"] == big.Q4_K and types["blk.2.ffn_down.weight"] == big.Q6_K
    assert types["blk.0.attn_norm.weight"] == big.F32
    assert header.scalars["general.file_type"] == 15  # Q4_K_M
    assert header.array_lengths["tokenizer.ggml.tokens"] == VOCAB
    q8 = read_gguf_header(files[("q8_0", True)])
    assert {t for t, _, _ in q8.tensors.values()} == {big.Q8_0, big.F32} and "output.weight" not in q8.tensors
    # the decoded weights have the intended scale (std ~0.02, mean ~0), finite
    import gguf

    for t in gguf.GGUFReader(str(files[("q4_k_m", False)]), "r").tensors:
        w = gguf.quants.dequantize(t.data, t.tensor_type)
        if t.name.endswith("norm.weight"):
            assert (w == 1).all()
        else:
            assert np.isfinite(w).all() and 0.015 < w.std() < 0.025 and abs(w.mean()) < 0.002, t.name


@pytest.mark.slow  # the builder reads SmolLM2's 49k-token metadata (~6 s) and writes several files
def test_builder_is_seeded_and_streams_bounded_slices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same seed writes the same bytes whatever the slice size; another seed other bytes."""
    a, b, c = tmp_path / "a.gguf", tmp_path / "b.gguf", tmp_path / "c.gguf"
    big.write_gguf(a, small(False), "q4_k_m", seed=3)
    monkeypatch.setattr(big, "ROW_BYTES_PER_SLICE", 4096)  # many slices per matrix
    big.write_gguf(b, small(False), "q4_k_m", seed=3)
    big.write_gguf(c, small(False), "q4_k_m", seed=4)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()


@pytest.mark.slow  # the builder reads SmolLM2's 49k-token metadata (~6 s) and writes several files
def test_cached_file_is_verified_and_rebuilt_when_damaged(tmp_path: Path) -> None:
    shape = big.Shape("tiny", 1, 256, 4, 2, 256, 49152, tied=True)
    messages: list[str] = []
    path = big.cached_gguf(shape, "q8_0", directory=tmp_path, log=messages.append)
    first = path.read_bytes()
    assert big.cached_gguf(shape, "q8_0", directory=tmp_path, log=messages.append) == path
    assert "verified" in messages[-1]
    with open(path, "r+b") as fh:  # damage one byte of the weights
        fh.seek(-100, 2)
        fh.write(b"\x00" if first[-100] else b"\x01")
    big.cached_gguf(shape, "q8_0", directory=tmp_path, log=messages.append)
    assert "does not verify" in messages[-2] and "built" in messages[-1]
    assert path.read_bytes() == first
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow  # ~10-25 s each on 2 busy cores: the tokenizer of a 49k vocabulary, two loads, a reference
@pytest.mark.parametrize(("mix", "tied"), [("q4_k_m", False), ("q4_k_m", True), ("q8_0", True)])
def test_loads_and_matches_float32_on_both_paths(
    mix: str, tied: bool, files: dict[tuple[str, bool], Path], isolated_cache: Path
) -> None:
    path = files[(mix, tied)]
    want = reference_logits(path, small(tied))
    sizes = streamed.sizes_from_gguf_header(path)
    budget = (sizes.needs("streamed") + sizes.needs("float32")) // 2
    for max_memory, execution in ((None, "float32"), (budget, "streamed")):
        loaded = load_model(str(path), max_memory=max_memory)
        assert loaded.execution == execution
        assert loaded.info.vocab_size == VOCAB and loaded.info.tied_embeddings == tied
        got = loaded_logits(loaded)
        for layer, (g, w) in enumerate(zip(got, want, strict=True)):
            assert g.shape == (len(PROMPT_IDS), VOCAB)
            assert np.abs(g - w).max() <= 1e-4, (execution, layer, float(np.abs(g - w).max()))
        del loaded


@pytest.mark.slow
def test_analyze_runs_on_both_paths_with_equal_numbers(
    files: dict[tuple[str, bool], Path], isolated_cache: Path, tmp_path: Path
) -> None:
    """The CLI the bench runs (``analyze --all-layers``) accepts the padded vocabulary, and its numbers agree."""
    import json

    from helpers import lazarus

    path = files[("q4_k_m", False)]
    sizes = streamed.sizes_from_gguf_header(path)
    budget = str((sizes.needs("streamed") + sizes.needs("float32")) // 2)
    results = []
    for extra in ([], ["--max-memory", budget]):
        out = tmp_path / f"r{len(results)}.json"
        r = lazarus("introspect", "analyze", "-m", str(path), "-p", "The capital of France is", "--raw",
                    "--all-layers", "-o", str(out), "-q", *extra)  # fmt: skip
        assert r.returncode == 0, r.stderr
        results.append(json.loads(out.read_text(encoding="utf-8")))
    a, b = (r["layer_predictions"] for r in results)
    assert len(a) == len(b) == 3
    for x, y in zip(a, b, strict=True):
        assert [t["token_id"] for t in x["top_tokens"]] == [t["token_id"] for t in y["top_tokens"]]
        for s, t in zip(x["top_tokens"], y["top_tokens"], strict=True):
            assert abs(s["prob"] - t["prob"]) <= 1e-4
        assert abs(x["entropy"] - y["entropy"]) <= 1e-3


@pytest.mark.parametrize(("qtype", "size"), [(big.Q4_K, 144), (big.Q6_K, 210), (big.Q8_0, 34)])
def test_mlx_block_decoders_equal_the_gguf_package(qtype: int, size: int) -> None:
    """The streamed path's decoders (MLX for Q4_K/Q6_K, ``gguf`` for the rest) equal ``gguf.quants.dequantize``
    bit for bit on arbitrary bytes (every scale byte pattern, fp16 specials included) and on the builder's blocks."""
    import gguf

    from lazarus_report.models.quantize import gguf_rows_to_float32

    rng = np.random.default_rng(7)
    per_row = 4 if qtype != big.Q8_0 else 32  # blocks per row
    block = 32 if qtype == big.Q8_0 else 256
    arbitrary = rng.integers(0, 256, (64, per_row * size), dtype=np.uint8)
    built = big.BLOCKS[qtype][2](rng, 64 * per_row).reshape(64, -1)
    for raw in (arbitrary, built):
        with np.errstate(invalid="ignore", over="ignore"):  # arbitrary fp16 scales: inf x 0 = NaN, on both sides
            want = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType(qtype)).reshape(64, per_row * block)
            got = np.asarray(gguf_rows_to_float32(mx.array(raw), qtype, per_row * block))
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)


@pytest.mark.slow  # loads the small model twice (~10 s on 2 busy cores)
def test_streamed_grid_decodes_the_head_once_per_chunk(
    files: dict[tuple[str, bool], Path], isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A streamed head is decoded from its GGUF blocks in every head matmul: with the grid, a short prompt's pass
    decodes it twice (the last position's readout, then the grid's final rows and every layer's rows in one
    matmul), not once for the final rows and again for each group of layers; the numbers equal float32's."""
    from lazarus_report.core.config import AnalysisConfig, LayerStrategy
    from lazarus_report.engine.prompt import PreparedPrompt
    from lazarus_report.engine.run import analyze

    path = files[("q4_k_m", False)]
    sizes = streamed.sizes_from_gguf_header(path)
    budget = (sizes.needs("streamed") + sizes.needs("float32")) // 2
    config = AnalysisConfig(layer_strategy=LayerStrategy.ALL, top_k=3)
    prompt = PreparedPrompt("", False, PROMPT_IDS)
    full = analyze(load_model(str(path)), "", config, prepared=prompt).result
    loaded = load_model(str(path), max_memory=budget)
    head = loaded.model.lm_head
    assert isinstance(head, streamed.GGUFBlocksLinear)
    decodes: list[int] = []
    real_rows = streamed.GGUFBlocksLinear._rows

    def counting(self: Any, a: int, b: int) -> Any:
        if self is head and a == 0:
            decodes.append(b)
        return real_rows(self, a, b)

    monkeypatch.setattr(streamed.GGUFBlocksLinear, "_rows", counting)
    lean = analyze(loaded, "", config, prepared=prompt).result
    assert len(decodes) == 2, decodes  # before: 3 (the last position, the grid's final rows, its layers)
    a, b = full.grid, lean.grid
    assert a is not None and b is not None and a.top_token_ids == b.top_token_ids
    assert np.abs(np.array(a.entropy) - np.array(b.entropy)).max() <= 1e-4
    assert np.abs(np.array(a.kl_to_final) - np.array(b.kl_to_final)).max() <= 1e-4


# --- the default path with a model whose float32 copy does not fit -------------------------------------------


@pytest.mark.slow  # two loads of the small model
def test_float32_that_does_not_fit_streams_with_a_note(
    files: dict[tuple[str, bool], Path], isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An 8B k-quant file's float32 copy (32 GB) does not fit a 24 GB machine: without --max-memory, under
    --precision auto and explicit float32 alike, the model runs streamed (float32 arithmetic) and says so, instead
    of being killed by the operating system halfway through the conversion."""
    from lazarus_report.core.errors import LazarusWarning

    path = files[("q4_k_m", False)]
    sizes = streamed.sizes_from_gguf_header(path)
    monkeypatch.setattr(streamed, "available_memory", lambda: (sizes.needs("streamed") + sizes.needs("float32")) // 2)
    for precision in ("auto", "float32"):
        with pytest.warns(LazarusWarning, match="do not fit the memory available.*running streamed"):
            loaded = load_model(str(path), precision=precision)
        assert loaded.execution == "streamed", precision
    assert not (isolated_cache / "gguf").exists()  # nothing converted, nothing cached


@pytest.mark.slow  # converts the small model
def test_conversion_too_big_for_the_disk_is_not_cached(
    files: dict[tuple[str, bool], Path], isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A float32 conversion is cached only when it takes at most half the free disk space: a 32 GB entry never
    fills a disk silently; the model still loads (converted in memory), with a note."""
    from lazarus_report.core.errors import LazarusWarning
    from lazarus_report.models import gguf as gguf_mod
    from lazarus_report.models import quantize

    monkeypatch.setattr(gguf_mod, "CACHE_SHARE_OF_FREE_DISK", 1e-9)  # as if the disk had a few bytes free
    # as for a file with types only the gguf package decodes (Q5_0, Q3_K...): Q4_K/Q6_K decode straight from the file
    monkeypatch.setattr(quantize, "FAST_TYPES", frozenset())
    path = files[("q4_k_m", True)]  # k-quants: the float32 path converts (Q8_0 is read by MLX itself)
    with pytest.warns(LazarusWarning, match="is not cached"):
        loaded = load_model(str(path))
    assert loaded.execution == "float32"
    entries = list((isolated_cache / "gguf").iterdir()) if (isolated_cache / "gguf").exists() else []
    assert [e for e in entries if not e.name.startswith(".")] == []


# --- r20-quant: the fast decoders, decoding straight from the file, decoding once per pass -------------------


@pytest.mark.parametrize("rows", [1, 7, 33])
@pytest.mark.parametrize(("qtype", "size"), [(big.Q4_K, 144), (big.Q6_K, 210), (big.Q8_0, 34)])
def test_decoders_equal_the_gguf_package_on_odd_row_counts(qtype: int, size: int, rows: int) -> None:
    """The MLX decoders (Q8_0's is new) equal ``gguf.quants.dequantize`` bit for bit at odd row counts."""
    import gguf

    from lazarus_report.models.quantize import FAST_TYPES, gguf_rows_to_float32

    assert qtype in FAST_TYPES
    rng = np.random.default_rng(rows)
    per_row, block = (3, 256) if qtype != big.Q8_0 else (5, 32)
    arbitrary = rng.integers(0, 256, (rows, per_row * size), dtype=np.uint8)
    built = big.BLOCKS[qtype][2](rng, rows * per_row).reshape(rows, -1)
    for raw in (arbitrary, built):
        with np.errstate(invalid="ignore", over="ignore"):
            want = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType(qtype)).reshape(rows, per_row * block)
            got = np.asarray(gguf_rows_to_float32(mx.array(raw), qtype, per_row * block))
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)


@pytest.mark.slow  # decodes the small model twice
@pytest.mark.parametrize("tied", [False, True])
def test_fast_types_decode_straight_from_the_file(
    tied: bool, files: dict[tuple[str, bool], Path], isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file of Q4_K/Q6_K/Q8_0/F32 tensors is decoded from the file at load (no float32 conversion, nothing
    cached), every weight bit for bit what the conversion (the ``gguf`` package's numpy decoders) gives; slices of
    rows are decoded into one buffer (a matrix taller than a slice is covered)."""
    from lazarus_report.models import gguf as gguf_mod

    monkeypatch.setattr(gguf_mod, "DECODE_CHUNK_BYTES", 4 * 256 * 100)  # 100 rows a slice: odd last slices
    path = files[("q4_k_m", tied)]
    converted = gguf_mod._load_converted(path, isolated_cache / "reference")
    calls: list[Path] = []
    real = gguf_mod._dequantize_with_gguf
    monkeypatch.setattr(gguf_mod, "_dequantize_with_gguf", lambda p: calls.append(p) or real(p))
    direct = gguf_mod.load_gguf(path, cache_dir=isolated_cache)
    assert calls == [] and not (isolated_cache / "gguf").exists()
    assert not direct.metadata_complete and direct.config == converted.config
    assert direct.weights.keys() == converted.weights.keys()
    for name, w in direct.weights.items():
        assert w.dtype == mx.float32 and w.shape == converted.weights[name].shape, name
        assert bool(mx.array_equal(w, converted.weights[name])), name


@pytest.mark.slow  # writes a damaged copy of the small model and loads it
def test_damaged_fast_types_file_fails_cleanly(
    files: dict[tuple[str, bool], Path], isolated_cache: Path, tmp_path: Path
) -> None:
    """NaN block scales in a file decoded straight from the file: a one-line error naming the tensor."""
    from lazarus_report.core.errors import LazarusError
    from lazarus_report.models.gguf_metadata import read_gguf_header

    path = tmp_path / "nan.gguf"
    path.write_bytes(files[("q4_k_m", False)].read_bytes())
    header = read_gguf_header(path)
    _, _, offset = header.tensors["blk.1.ffn_up.weight"]
    with open(path, "r+b") as fh:
        fh.seek(header.data_start + offset)
        fh.write(b"\xff\x7f")  # the first super-block's fp16 d: NaN
    with pytest.raises(LazarusError, match=r"blk\.1\.ffn_up\.weight holds NaN"):
        load_model(str(path))


@pytest.mark.slow  # loads the small model twice
@pytest.mark.parametrize("n_tokens", [len(PROMPT_IDS), 300])  # 300: longer than a float32 prefill piece (128)
def test_streamed_pass_decodes_each_matrix_once_and_equals_float32(
    files: dict[tuple[str, bool], Path], isolated_cache: Path, monkeypatch: pytest.MonkeyPatch, n_tokens: int
) -> None:
    """One ``analyze --all-layers`` pass on the streamed path decodes every block's matrices and the head exactly
    once (every row once, counted on the real decoder), and its logits equal the float32 path's within 1e-6."""
    from lazarus_report.core.config import AnalysisConfig, LayerStrategy
    from lazarus_report.engine.prompt import PreparedPrompt
    from lazarus_report.engine.run import analyze

    path = files[("q4_k_m", False)]
    sizes = streamed.sizes_from_gguf_header(path)
    budget = (sizes.needs("streamed") + sizes.needs("float32")) // 2
    full = load_model(str(path))
    lean = load_model(str(path), max_memory=budget)
    assert (full.execution, lean.execution) == ("float32", "streamed")
    for g, w in zip(loaded_logits(lean), loaded_logits(full), strict=True):
        assert np.abs(g - w).max() <= 1e-6, float(np.abs(g - w).max())
    decoded: dict[int, list[tuple[int, int]]] = {}
    real_rows = streamed._GGUFBlockRows._rows

    def counting(self: Any, a: int, b: int) -> Any:
        decoded.setdefault(id(self), []).append((a, b))
        return real_rows(self, a, b)

    monkeypatch.setattr(streamed._GGUFBlockRows, "_rows", counting)
    config = AnalysisConfig(layer_strategy=LayerStrategy.ALL, top_k=3, compute_grid=False)
    ids = (PROMPT_IDS * (n_tokens // len(PROMPT_IDS) + 1))[:n_tokens]
    analyze(lean, "", config, prepared=PreparedPrompt("", False, ids))
    matrices = {id(m): m for _, m in lean.model.named_modules() if isinstance(m, streamed.GGUFBlocksLinear)}
    assert len(matrices) == 3 * 7 + 1  # q, k, v, o, gate, up, down per block; the head
    assert decoded.keys() == matrices.keys()
    for key, spans in decoded.items():
        n = matrices[key]["weight"].shape[0]
        covered = sorted(spans)
        assert covered[0][0] == 0 and covered[-1][1] == n, spans
        assert all(x[1] == y[0] for x, y in itertools.pairwise(covered)), spans  # each row once
