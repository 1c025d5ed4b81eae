"""Lenses shipped with the package: the low-rank / float16 storage, the lookup by model identity (user
cache first), refusal of altered files, and the embedded SmolLM2's shipped tuned lens used with no fit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import lazarus
from test_lens_math import tiny_corpus

from lazarus_report.core.errors import LazarusError
from lazarus_report.lens.learned.artefact import Lens, model_fingerprint
from lazarus_report.lens.learned.fit import fit_lens
from lazarus_report.lens.learned.shipped import ENV, shipped_dir, shipped_records, stored_lens, write_shipped
from lazarus_report.lens.learned.store import cache_path, resolve_lens

PROMPT = "The capital of France is"


def _random_tuned(layers: int = 3, hdim: int = 32, seed: int = 0) -> Lens:
    rng = np.random.default_rng(seed)
    weight = (0.2 * rng.standard_normal((layers, hdim, hdim)) / np.sqrt(hdim)).astype(np.float32)
    bias = (0.1 * rng.standard_normal((layers, hdim))).astype(np.float32)
    model = {"num_layers": layers + 1, "hidden_size": hdim}
    return Lens(kind="tuned", weight=weight, bias=bias, form="residual", meta={"model": model})


def test_low_rank_readout_equals_the_materialised_map() -> None:
    import mlx.core as mx

    full = _random_tuned()
    for rank in (4, 32):
        low = full.low_rank(rank)
        assert low.form == "lowrank" and low.rank == rank and low.weight is None
        dense = Lens(kind="tuned", weight=np.stack([low.matrix(i)[0] for i in range(3)]).astype(np.float32),
                     bias=low.bias, form="affine")  # fmt: skip
        h = np.random.default_rng(1).standard_normal((5, 32)).astype(np.float32)
        for layer in range(4):
            got = np.asarray(low.translate(layer, mx.array(h)))
            want = np.asarray(dense.translate(layer, mx.array(h)))
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(low.translate_np(layer, h), want, rtol=1e-5, atol=1e-5)
    # full rank reproduces the translators; a lower rank is the best approximation, not the same map
    np.testing.assert_allclose(full.low_rank(32).matrix(1)[0], full.matrix(1)[0], atol=1e-5)
    assert np.abs(full.low_rank(4).matrix(1)[0] - full.matrix(1)[0]).max() > 1e-3


def test_low_rank_float16_round_trip(tmp_path: Path) -> None:
    lens = stored_lens(_random_tuned(), "lowrank8")
    assert lens.storage == "float16" and lens.rank == 8
    path = lens.save(tmp_path / "lens")
    meta = json.loads((path / "lens.json").read_text())
    assert meta["form"] == "lowrank" and meta["storage"] == "float16"
    # float16 on disk: 3 layers x (32 x 8 + 8 x 32 + 32) values x 2 bytes, plus the header
    assert (path / "weights.safetensors").stat().st_size < 3 * (2 * 32 * 8 + 32) * 2 + 400
    back = Lens.load(path)
    assert back.form == "lowrank" and back.storage == "float16" and back.factors is not None
    assert lens.factors is not None
    np.testing.assert_array_equal(back.factors[0], lens.factors[0])
    np.testing.assert_array_equal(back.factors[1], lens.factors[1])
    np.testing.assert_array_equal(back.bias, lens.bias)
    half = stored_lens(_random_tuned(), "float16")
    assert half.weight is not None and half.weight.dtype == np.float32
    np.testing.assert_array_equal(Lens.load(half.save(tmp_path / "half")).weight, half.weight)


def test_a_damaged_low_rank_file_is_refused(tmp_path: Path) -> None:
    path = stored_lens(_random_tuned(), "lowrank8").save(tmp_path / "lens")
    meta = json.loads((path / "lens.json").read_text())
    meta["model"]["hidden_size"] = 16
    (path / "lens.json").write_text(json.dumps(meta))
    with pytest.raises(LazarusError, match="damaged: expected u"):
        Lens.load(path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tiny_models import build_tiny_model

    root = tmp_path_factory.mktemp("tiny-shipped")
    build_tiny_model("llama", root / "base", seed=0)
    build_tiny_model("llama", root / "other-weights", seed=1)
    return {p.name: p for p in root.iterdir()}


def _load(path: Path) -> Any:
    from lazarus_report.models.loader import load_model

    return load_model(str(path))


@pytest.fixture(scope="module")
def shipped(tiny: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A shipped-lens folder (outside the package) holding a tiny model's linear lens, low-rank float16."""
    lens = fit_lens(_load(tiny["base"]), "linear", corpus=tiny_corpus(3000))
    dest = tmp_path_factory.mktemp("shipped")
    write_shipped(stored_lens(lens, "lowrank16"), dest, "tiny-llama")
    return dest


def test_shipped_lens_is_found_by_the_model_identity(
    tiny: dict[str, Path], shipped: Path, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, str(shipped))
    assert shipped_dir() == shipped
    assert sorted(p.name for p in shipped.iterdir()) == ["tiny-llama-linear.json", "tiny-llama-linear.safetensors"]
    loaded = _load(tiny["base"])
    lens = resolve_lens("linear", loaded)
    assert lens.form == "lowrank" and lens.rank == 16
    record = lens.record()
    assert record.source is not None and record.source.startswith("shipped with lazarus-report ")
    assert "tiny-llama-linear" in record.source and "held-out mean KL" in record.source
    assert record.corpus is not None and record.corpus.startswith("tiny; linear: ridge least squares")
    assert "rank-16 translators (I + U V^T) in float16" in record.corpus
    assert record.fidelity and record.digest
    # only for its own model; and no shipped tuned lens here
    with pytest.raises(LazarusError, match="no fitted linear lens"):
        resolve_lens("linear", _load(tiny["other-weights"]))
    with pytest.raises(LazarusError, match="no fitted tuned lens"):
        resolve_lens("tuned", loaded)
    # the user's own fit wins over the shipped one
    own = fit_lens(loaded, "linear", corpus=tiny_corpus(2500, seed=3))
    own.save(cache_path(loaded, "linear").parent.mkdir(parents=True) or cache_path(loaded, "linear"))
    mine = resolve_lens("linear", loaded)
    assert mine.source == "cache" and mine.form == "affine"


def test_analyze_reads_through_the_shipped_lens(
    tiny: dict[str, Path], shipped: Path, isolated_cache: Path, tmp_path: Path
) -> None:
    out = tmp_path / "r.json"
    env = {ENV: str(shipped)}
    result = lazarus("introspect", "analyze", "-m", str(tiny["base"]), "-p", PROMPT, "--raw", "--lens", "linear",
                     "-o", str(out), env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    lens = json.loads(out.read_text())["lens"]
    assert lens["kind"] == "linear" and lens["source"].startswith("shipped with lazarus-report")
    assert "stored as rank-16" in lens["corpus"]


def test_a_tampered_shipped_lens_is_never_used(
    tiny: dict[str, Path], shipped: Path, isolated_cache: Path, tmp_path: Path
) -> None:
    import shutil

    copy = tmp_path / "shipped"
    shutil.copytree(shipped, copy)
    weights = copy / "tiny-llama-linear.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x01
    weights.write_bytes(bytes(data))
    out = tmp_path / "r.json"
    result = lazarus("introspect", "analyze", "-m", str(tiny["base"]), "-p", PROMPT, "--raw", "--lens", "linear",
                     "-o", str(out), env={ENV: str(copy)})  # fmt: skip
    assert result.returncode == 2
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in result.stderr
    assert "shipped lens tiny-llama-linear.json is damaged" in message and "does not match the digest" in message
    assert not out.exists()


def test_the_package_ships_lenses_for_the_embedded_models() -> None:
    records = {path.stem: meta for path, meta in shipped_records(shipped_dir())}
    assert "smollm2-135m-instruct-tuned" in records and "smollm2-135m-instruct-linear" in records
    for stem, meta in records.items():
        assert (shipped_dir() / meta["weights_file"]).is_file(), stem
        assert meta["fidelity"] and meta["corpus"]["description"]
    total = sum(p.stat().st_size for p in shipped_dir().iterdir())
    assert total <= 25 * 1024 * 1024


@pytest.mark.slow
def test_analyze_tuned_on_the_embedded_smollm2_uses_the_shipped_lens(
    smollm2_loaded: Any, isolated_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    lens = resolve_lens("tuned", smollm2_loaded)  # an empty user cache: nothing was fitted
    assert lens.source is not None and lens.source.startswith("shipped with lazarus-report")
    assert lens.meta["model"]["weights"] == model_fingerprint(smollm2_loaded)["weights"]
    out = tmp_path / "r.json"
    result = lazarus("introspect", "analyze", "-m", "smollm2-135m-instruct", "-p", PROMPT, "--lens", "tuned",
                     "-o", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["lens"]["kind"] == "tuned" and data["lens"]["source"].startswith("shipped with lazarus-report")
    assert not (isolated_cache / "lenses").exists()  # no fit happened


def test_weighted_low_rank_fits_the_states_better() -> None:
    full = _random_tuned(hdim=24)
    rng = np.random.default_rng(2)
    scales = np.exp(rng.standard_normal(24) * 1.5)  # an anisotropic residual stream, as real ones are
    h = (rng.standard_normal((2000, 24)) * scales).astype(np.float32)
    moments = np.stack([h.T.astype(np.float64) @ h / len(h)] * 3)
    exact = full.low_rank(24, moments)
    np.testing.assert_allclose(exact.matrix(0)[0], full.matrix(0)[0], atol=1e-4)
    plain, weighted = full.low_rank(6), full.low_rank(6, moments)

    def err(lens: Lens) -> float:
        return float(np.mean((lens.translate_np(1, h) - full.translate_np(1, h)) ** 2))

    assert err(weighted) < 0.8 * err(plain)
    assert stored_lens(full, "wlowrank6", moments).rank == 6
    with pytest.raises(LazarusError, match="unknown storage"):
        stored_lens(full, "wlowrank6")


# --- issue 21, better fits: Gemma-3-270M's shipped tuned lens -------------------------------------


def test_the_package_ships_linear_and_tuned_lenses_for_both_embedded_models() -> None:
    from lazarus_report.lens.learned.artefact import Lens

    records = {path.stem: (path, meta) for path, meta in shipped_records(shipped_dir())}
    for model in ("smollm2-135m-instruct", "gemma3-270m"):
        for kind in ("linear", "tuned"):
            path, meta = records[f"{model}-{kind}"]
            lens = Lens.load_files(path, shipped_dir() / meta["weights_file"], path.name, source=None)  # verified
            assert lens.kind == kind and lens.meta["model"]["model_id"] == model
            assert len(lens.fidelity()) == lens.meta["model"]["num_layers"] - 1
            if kind == "tuned":
                fit = meta["fit"]
                assert fit["steps"] > 0 and fit["batch"] > 0 and fit["lr"] > 0
                # as stored it beats the logit lens on every layer's held-out KL
                logit = meta["logit_fidelity"]
                assert all(f["kl_to_final"] < g["kl_to_final"] for f, g in zip(meta["fidelity"], logit, strict=True))


@pytest.mark.slow
def test_analyze_tuned_on_the_embedded_gemma_uses_the_shipped_lens(
    isolated_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    out = tmp_path / "r.json"
    result = lazarus("introspect", "analyze", "-m", "gemma3-270m", "-p", PROMPT, "--lens", "tuned", "-o", str(out))
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    lens = data["lens"]
    assert lens["kind"] == "tuned" and lens["source"].startswith("shipped with lazarus-report")
    assert "(gemma3-270m-tuned;" in lens["source"]
    assert "stored as rank-" in lens["corpus"]
    assert not (isolated_cache / "lenses").exists()  # no fit happened
