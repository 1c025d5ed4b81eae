"""The Jacobian lens (issue 21): the MLX estimator against torch autograd on the same weights, the
identity case (the logit lens), published J-lens .pt files (import, readout, export, refusals)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from lazarus_report.core.errors import LazarusError
from lazarus_report.lens.learned.artefact import Lens

torch = pytest.importorskip("torch")

SKIP = 3  # the reference skips 16 leading positions; tiny prompts here are 24 tokens


def _ids(n: int = 24, seed: int = 0) -> list[int]:
    return [1] + [int(i) for i in np.random.default_rng(seed).integers(3, 300, n - 1)]


def _hf(path: Path):
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float64)
    model.config._attn_implementation = "eager"
    return model.eval()


def _torch_jacobian(model, ids: list[int], layer: int, valid: list[int]) -> np.ndarray:
    """The reference definition, computed independently with torch autograd (float64): the Jacobian
    ``d h_L[t', i] / d h_l[t, j]`` of the last block's output w.r.t. block ``layer``'s output at every
    position, summed over target positions ``t'`` and averaged over source positions ``t`` (both in ``valid``)."""
    blocks = model.model.layers
    inp = torch.tensor([ids])
    seen: dict[str, torch.Tensor] = {}

    def keep(_m, _a, out):
        seen["h"] = out[0] if isinstance(out, tuple) else out

    handle = blocks[layer].register_forward_hook(keep)
    with torch.no_grad():
        model(inp, use_cache=False)
    handle.remove()
    h_l = seen["h"][0].detach()

    def last_from(h: torch.Tensor) -> torch.Tensor:
        def replace(_m, _a, out):
            return (h[None], *out[1:]) if isinstance(out, tuple) else h[None]

        handles = [blocks[layer].register_forward_hook(replace), blocks[-1].register_forward_hook(keep)]
        try:
            model(inp, use_cache=False)
        finally:
            for hd in handles:
                hd.remove()
        return seen["h"][0]

    # d (sum over valid t' of h_L[t', i]) / d h_l[t, j]: [H, T, H], one backward pass per output dimension i
    rows = torch.autograd.functional.jacobian(lambda h: last_from(h)[valid].sum(dim=0), h_l, vectorize=False)
    return (rows[:, valid, :].sum(dim=1) / len(valid)).numpy()


@pytest.mark.parametrize("family", ["llama", "gemma2", "gemma3_text"])
def test_fitted_jacobian_equals_torch_autograd(tiny_model_dir, family: str) -> None:
    from lazarus_report.lens.learned.jacobian import prompt_jacobians, valid_positions
    from lazarus_report.models.loader import load_model

    path = tiny_model_dir(family)
    loaded = load_model(str(path))
    ids = _ids()
    ours = prompt_jacobians(loaded, ids, skip_first=SKIP, dim_batch=7)  # 7: a last, partial batch too
    model = _hf(path)
    valid = valid_positions(len(ids), SKIP)
    n_layers = len(model.model.layers)
    assert ours.shape == (n_layers - 1, model.config.hidden_size, model.config.hidden_size)
    for layer in range(n_layers - 1):
        ref = _torch_jacobian(model, ids, layer, valid)
        err = np.abs(ours[layer] - ref).max() / np.abs(ref).max()
        assert err < 1e-4, (layer, err)
        assert np.abs(ref - np.eye(len(ref))).max() > 0.1  # not the identity: the test can fail


def test_fit_averages_prompts_and_stores_the_transpose(tiny_model_dir, tmp_path: Path) -> None:
    from lazarus_report.lens.learned.jacobian import fit_jacobian, jacobian_lens_weights, prompt_jacobians
    from lazarus_report.models.loader import load_model

    loaded = load_model(str(tiny_model_dir("llama")))
    a, b = _ids(20, 1), _ids(24, 2)
    mean, stats = fit_jacobian(loaded, [a, [1, 5, 6], b], skip_first=SKIP)  # the short prompt is skipped
    assert stats["n_prompts"] == 2
    ja = prompt_jacobians(loaded, a, skip_first=SKIP)
    jb = prompt_jacobians(loaded, b, skip_first=SKIP)
    np.testing.assert_allclose(mean, (ja + jb) / 2, rtol=1e-6, atol=1e-7)
    weight, bias = jacobian_lens_weights(mean)
    lens = Lens(kind="jacobian", weight=weight, bias=bias)
    h = np.random.default_rng(0).standard_normal((4, weight.shape[1])).astype(np.float32)
    np.testing.assert_allclose(lens.translate_np(1, h), h @ mean[1].T, rtol=1e-4, atol=1e-4)  # J h
    assert lens.translate_np(2, h) is h  # the last layer: identity


def test_identity_jacobian_reads_exactly_as_the_logit_lens(tiny_model_dir) -> None:
    from lazarus_report.lens.learned.collect import collect_states
    from lazarus_report.lens.learned.eval import measure
    from lazarus_report.models.loader import load_model

    loaded = load_model(str(tiny_model_dir("gemma2")))  # with final logit softcapping
    n_layers, hdim = int(loaded.info.num_layers), int(loaded.info.hidden_size)
    eye = Lens(
        kind="jacobian",
        weight=np.tile(np.eye(hdim, dtype=np.float32), (n_layers - 1, 1, 1)),
        bias=np.zeros((n_layers - 1, hdim), dtype=np.float32),
    )
    states = collect_states(loaded, [_ids(24, 3), _ids(24, 4)])
    logit, jac = measure(loaded, states, [Lens.logit(), eye])
    assert logit == jac
    near = Lens(kind="jacobian", weight=eye.weight * np.float32(1.01), bias=eye.bias)
    assert measure(loaded, states, [near])[0] != logit  # a different J reads differently


def test_fit_lens_jacobian_end_to_end(tiny_model_dir, tmp_path: Path) -> None:
    from test_lens_math import tiny_corpus

    from lazarus_report.lens.learned.fit import fit_lens
    from lazarus_report.models.loader import load_model

    loaded = load_model(str(tiny_model_dir("llama")))
    lens = fit_lens(loaded, "jacobian", corpus=tiny_corpus(1500), tokens=254, heldout_tokens=256)
    assert lens.kind == "jacobian" and lens.form == "affine" and not lens.bias.any()
    assert lens.meta["fit"]["n_prompts"] == 2 and lens.meta["fit"]["skip_first_positions"] == 16
    assert len(lens.meta["fidelity"]) == int(loaded.info.num_layers) - 1
    back = Lens.load(lens.save(tmp_path / "jl"))
    assert back.kind == "jacobian" and back.record().kind == "jacobian"
    np.testing.assert_array_equal(back.weight, lens.weight)
    assert back.check_compatible(loaded) is None


# --- published J-lens files ------------------------------------------------------------------------


def _published(path: Path, n_layers: int, hdim: int, seed: int = 0, **extra) -> dict[int, np.ndarray]:
    """A J-lens file in the published layout (float16 matrices, as the reference saves them)."""
    rng = np.random.default_rng(seed)
    mats = {
        layer: (np.eye(hdim) + 0.3 * rng.standard_normal((hdim, hdim)) / np.sqrt(hdim)).astype(np.float16)
        for layer in range(n_layers - 1)
    }
    payload = {
        "J": {layer: torch.from_numpy(m) for layer, m in mats.items()},
        "n_prompts": 100,
        "source_layers": sorted(mats),
        "d_model": hdim,
    }
    payload.update(extra)
    torch.save(payload, path)
    return {layer: m.astype(np.float32) for layer, m in mats.items()}


def test_imported_file_reads_as_numpy_from_its_matrices(tiny_model_dir, tmp_path: Path) -> None:
    from tiny_models import hf_block_outputs, hf_lens_log_probs

    from lazarus_report.lens.learned.jlens_io import import_jlens
    from lazarus_report.lens.readout import head_logits_np
    from lazarus_report.lens.stats import log_softmax
    from lazarus_report.models.hooks import capture_hidden
    from lazarus_report.models.loader import load_model

    path = tiny_model_dir("llama")
    loaded = load_model(str(path))
    n_layers, hdim = int(loaded.info.num_layers), int(loaded.info.hidden_size)
    mats = _published(tmp_path / "lens.pt", n_layers, hdim, metadata={"model_name": "tiny", "target_layer": 2})
    lens = import_jlens(tmp_path / "lens.pt", loaded)
    assert lens.kind == "jacobian" and "lens.pt" in lens.record().corpus and lens.source.endswith("lens.pt")
    ids = _ids()
    hidden = capture_hidden(loaded.parts, ids, list(range(n_layers)))
    model = _hf(path).float()
    ref_hidden, _ = hf_block_outputs(model, ids)
    for layer in range(n_layers - 1):
        ours = log_softmax(head_logits_np(loaded.parts, lens.translate(layer, hidden[layer][0])))
        moved = ref_hidden[layer].numpy().astype(np.float64) @ mats[layer].astype(np.float64).T  # J h, numpy
        theirs = hf_lens_log_probs(model, torch.from_numpy(moved.astype(np.float32))).numpy()
        np.testing.assert_allclose(ours, theirs, atol=2e-4)


def test_partial_file_reads_missing_layers_as_identity(tiny_model_dir, tmp_path: Path) -> None:
    from lazarus_report.lens.learned.jlens_io import import_jlens
    from lazarus_report.models.loader import load_model

    loaded = load_model(str(tiny_model_dir("llama")))
    hdim = int(loaded.info.hidden_size)
    torch.save(
        {"J": {1: torch.eye(hdim) * 2}, "n_prompts": 3, "source_layers": [1], "d_model": hdim}, tmp_path / "p.pt"
    )
    lens = import_jlens(tmp_path / "p.pt", loaded)
    assert lens.meta["fit"]["identity_layers"] == [0]
    np.testing.assert_array_equal(lens.weight[0], np.eye(hdim))
    np.testing.assert_array_equal(lens.weight[1], 2 * np.eye(hdim))


def test_round_trip_import_export(tiny_model_dir, tmp_path: Path) -> None:
    from lazarus_report.lens.learned.jlens_io import export_jlens, import_jlens, read_jlens
    from lazarus_report.models.loader import load_model

    loaded = load_model(str(tiny_model_dir("llama")))
    n_layers, hdim = int(loaded.info.num_layers), int(loaded.info.hidden_size)
    mats = _published(tmp_path / "in.pt", n_layers, hdim)
    lens = import_jlens(tmp_path / "in.pt", loaded)
    out = export_jlens(lens, tmp_path / "out.pt")
    payload = torch.load(out, weights_only=True)
    assert sorted(payload) == ["J", "d_model", "metadata", "n_prompts", "source_layers"]
    assert payload["d_model"] == hdim and payload["source_layers"] == list(range(n_layers - 1))
    assert payload["n_prompts"] == 100
    back = read_jlens(out)
    for layer, m in mats.items():
        np.testing.assert_array_equal(back.jacobians[layer], m)
    again = import_jlens(back, loaded)
    np.testing.assert_array_equal(again.weight, lens.weight)
    with pytest.raises(LazarusError, match="exists"):
        export_jlens(lens, out)  # never overwritten
    linear = Lens(kind="linear", weight=lens.weight, bias=np.ones_like(lens.bias))
    with pytest.raises(LazarusError, match="bias"):
        export_jlens(linear, tmp_path / "linear.pt")
    assert not (tmp_path / "linear.pt").exists()


def test_cli_import_export_and_refusals(tiny_model_dir, tmp_path: Path, isolated_cache: Path) -> None:
    from helpers import lazarus

    model = str(tiny_model_dir("llama"))
    n_layers, hdim = 3, 64
    good = tmp_path / "good.pt"
    _published(good, n_layers, hdim)
    res = lazarus("lens", "import", str(good), "-m", model, "--out", str(tmp_path / "jl"), "-q")
    assert res.returncode == 0, res.stderr
    assert Lens.load(tmp_path / "jl").kind == "jacobian"
    res = lazarus("lens", "export", str(tmp_path / "jl"), str(tmp_path / "exported.pt"), "--format", "jlens")
    assert res.returncode == 0, res.stderr
    assert torch.load(tmp_path / "exported.pt", weights_only=True)["d_model"] == hdim

    wrong_width = tmp_path / "wide.pt"
    _published(wrong_width, n_layers, 32)
    wrong_depth = tmp_path / "deep.pt"
    _published(wrong_depth, n_layers + 2, hdim)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    corrupt = tmp_path / "corrupt.pt"
    data = bytearray(good.read_bytes())
    data[100:400] = os.urandom(300)
    corrupt.write_bytes(bytes(data))
    unknown = tmp_path / "unknown.pt"
    torch.save({"weights": torch.zeros(3)}, unknown)
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    evil = tmp_path / "evil.pt"
    torch.save({"J": {0: torch.eye(hdim)}, "d_model": hdim, "n_prompts": 1, "x": Evil()}, evil)
    cases = {
        wrong_width: "d_model 32",
        wrong_depth: "does not fit",
        truncated: "cannot read",
        corrupt: "cannot read",
        unknown: "not a Jacobian-lens file",
        text: "cannot read",
        evil: "refused",
        tmp_path / "missing.pt": "no lens file or folder",
    }
    for i, (path, message) in enumerate(cases.items()):
        dest = tmp_path / f"refused{i}"
        res = lazarus("lens", "import", str(path), "-m", model, "--out", str(dest), "-q")
        assert res.returncode == 2, (path, res.stdout, res.stderr)
        assert message in res.stderr and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr
        assert not dest.exists()
    assert not (tmp_path / "pwned").exists()
    # exporting a lens with a bias to the J-lens layout is refused, nothing written
    res = lazarus("lens", "export", str(tmp_path / "jl"), str(tmp_path / "exported.pt"), "--format", "jlens")
    assert res.returncode == 2 and "exists" in res.stderr


def test_cli_fit_jacobian_refuses_tiny_token_budget(tiny_model_dir, tmp_path: Path) -> None:
    from helpers import lazarus

    res = lazarus("lens", "fit", "-m", str(tiny_model_dir("llama")), "--kind", "jacobian", "--tokens", "5")
    assert res.returncode == 2 and "at least 17 tokens" in res.stderr


def test_imported_lens_in_the_cache_reads_through_analyze(tiny_model_dir, tmp_path: Path, isolated_cache: Path) -> None:
    import json

    from helpers import lazarus

    model = str(tiny_model_dir("llama"))
    _published(tmp_path / "pub.pt", 3, 64)
    res = lazarus("lens", "import", str(tmp_path / "pub.pt"), "-m", model, "-q")
    assert res.returncode == 0, res.stderr
    out = tmp_path / "a.json"
    res = lazarus(
        "introspect", "analyze", "-m", model, "-p", "The capital of France is", "--lens", "jacobian", "-o", str(out)
    )
    assert res.returncode == 0, res.stderr
    data = json.loads(out.read_text())
    assert data["lens"]["kind"] == "jacobian" and data["lens"]["source"] == "cache"
    assert "pub.pt" in data["lens"]["corpus"]
    assert "Jacobian lens" in res.stdout


# --- r20-limit: the compiled backward pass (mx.compile of the vmapped vjp) ---


@pytest.mark.parametrize("family", ["llama", "gemma3_text"])
def test_compiled_backward_gives_the_uncompiled_numbers(tiny_model_dir, family: str) -> None:
    from lazarus_report.lens.learned.jacobian import prompt_jacobians
    from lazarus_report.models.loader import load_model

    loaded = load_model(str(tiny_model_dir(family)))
    ids = _ids(22, 3)
    plain = prompt_jacobians(loaded, ids, skip_first=SKIP, dim_batch=5, compiled=False)
    fused = prompt_jacobians(loaded, ids, skip_first=SKIP, dim_batch=5, compiled=True)
    assert np.abs(plain).max() > 0.1  # not all zeros: the comparison can fail
    np.testing.assert_allclose(fused, plain, rtol=1e-6, atol=1e-7 * np.abs(plain).max())
    # a second prompt of another length through the same code: no stale trace (the tokens differ)
    other = _ids(19, 4)
    np.testing.assert_allclose(
        prompt_jacobians(loaded, other, skip_first=SKIP, compiled=True),
        prompt_jacobians(loaded, other, skip_first=SKIP, compiled=False),
        rtol=1e-6,
        atol=1e-7 * np.abs(plain).max(),
    )
