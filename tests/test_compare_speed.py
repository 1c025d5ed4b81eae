"""compare --adapter2 made cheaper with the numbers unchanged (issue 22, part 2).

* The change map of a base model and its adapter reads its rows from both runs' lens inputs when it needs them
  (``engine.spill.HeadLogProbs``) instead of spilling every position's log-probabilities: the same rows bit for
  bit, the same map as the spilled path (which two separate loads still take).
* The change map's cell tops find the top tokens among few candidates (``change_map.top_ids``): the same ids in
  the same order as the full partition.
* Adapters are applied by ``models.lora_light`` (mlx-lm's LoRA layers without importing transformers): the same
  model, parameter for parameter, as mlx-lm's own ``load_adapters``.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lazarus_report.compare.change_map import _top_ids_partition, top_ids

ROOT = Path(__file__).resolve().parents[1]
ADAPTER = ROOT / "examples" / "weather-adapter" / "adapter"
PROMPT = "The capital of France is"


def test_top_ids_equal_the_full_partition() -> None:
    rng = np.random.default_rng(0)
    for trial in range(2000):
        v = int(rng.integers(1, 3000))
        row = rng.normal(size=v).astype(np.float32)
        if trial % 3 == 0:
            row = np.round(row, 1)  # many ties: the full partition decides
        if trial % 7 == 0:
            row[:] = 0.0
        k = int(rng.integers(1, min(v, 6) + 1))
        assert top_ids(row, k).tolist() == _top_ids_partition(row, k).tolist(), trial


def test_map_from_lens_inputs_only_for_a_base_and_its_block_adapter(tmp_path: Path) -> None:
    from lazarus_report.commands.compare import _map_from_lens_inputs
    from lazarus_report.core.config import AnalysisConfig

    cfg = AnalysisConfig(compute_grid=True)
    m = "smollm2-135m-instruct"
    assert _map_from_lens_inputs(m, m, (None, str(ADAPTER)), (None, None), cfg)
    assert not _map_from_lens_inputs(m, "other", (None, str(ADAPTER)), (None, None), cfg)
    assert not _map_from_lens_inputs(m, m, (str(ADAPTER), None), (None, None), cfg)
    assert not _map_from_lens_inputs(m, m, (None, str(ADAPTER)), (None, 2.0), cfg)
    assert not _map_from_lens_inputs(m, m, (None, str(ADAPTER)), (None, None), dataclasses.replace(cfg, lens="tuned"))
    assert not _map_from_lens_inputs(m, m, (None, str(ADAPTER)), (None, None), dataclasses.replace(cfg, answer=" x"))
    # An adapter file holding anything but block LoRA tensors (here: a head weight) takes the spilled path.
    import mlx.core as mx

    other = tmp_path / "adapter"
    other.mkdir()
    (other / "adapter_config.json").write_text((ADAPTER / "adapter_config.json").read_text())
    weights = dict(mx.load(str(ADAPTER / "adapters.safetensors")))
    weights["lm_head.lora_a"] = mx.zeros((576, 8))
    mx.save_safetensors(str(other / "adapters.safetensors"), weights)
    assert not _map_from_lens_inputs(m, m, (None, str(other)), (None, None), cfg)


@pytest.mark.slow
def test_head_rows_equal_the_spilled_rows_bit_for_bit(smollm2_loaded: Any, tmp_path: Path) -> None:
    """Every row ``HeadLogProbs`` computes from the block outputs is the row the grid spilled, bit for bit (whole
    layers, several layers per matmul, and a few columns padded as the grid pads)."""
    from lazarus_report.core.config import AnalysisConfig, LayerStrategy
    from lazarus_report.engine.run import analyze
    from lazarus_report.engine.spill import HeadLogProbs

    cfg = AnalysisConfig(layer_strategy=LayerStrategy.ALL, compute_grid=True, grid_last_positions=8)
    spilled = analyze(smollm2_loaded, PROMPT, cfg, spill=str(tmp_path))
    kept = spilled.kept_positions
    assert kept is not None and len(kept) > 30
    plain = analyze(smollm2_loaded, PROMPT, cfg, keep_block_outputs=True)
    layers = list(plain.result.captured_layers)
    rows = HeadLogProbs(smollm2_loaded.parts, np.ascontiguousarray(plain.block_outputs[layers][:, kept]))
    n = len(layers)
    rows.plan([(li, None) for li in range(n)])
    for li in range(n):
        got, want = rows.read(li, np.empty(0)), spilled.position_log_probs[li]
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), li
    cols = [1, 5, len(kept) - 1]
    rows.plan([(li, cols) for li in range(n)])
    for li in range(n):
        want = spilled.position_log_probs[li][cols]
        assert np.array_equal(rows.read(li, np.empty(0), cols).view(np.uint32), want.view(np.uint32)), li


@pytest.mark.slow
def test_change_map_from_lens_inputs_equals_the_spilled_one(smollm2_gguf: Path) -> None:
    """``-m1 M -m2 M --adapter2 A`` (one load, the map from the lens inputs) against ``-m2`` naming the same file by
    its path (two loads, the spilled map with model 1's layers reused by digest): the same comparison."""
    from lazarus_report.commands.compare import compare_models
    from lazarus_report.core.config import AnalysisConfig, LayerStrategy

    def cfg() -> AnalysisConfig:
        return AnalysisConfig(layer_strategy=LayerStrategy.ALL, compute_grid=True, grid_last_positions=8)

    alias = "smollm2-135m-instruct"
    new = compare_models(alias, alias, PROMPT, cfg(), adapter2=str(ADAPTER))
    old = compare_models(alias, str(smollm2_gguf), PROMPT, cfg(), adapter2=str(ADAPTER))
    a, b = new.change_map, old.change_map
    assert a is not None and b is not None
    assert a.positions == b.positions and a.position_reasons == b.position_reasons
    assert np.abs(np.array(a.js) - np.array(b.js)).max() <= 1e-12
    assert a.flips == b.flips and a.tops1 == b.tops1 and a.tops2 == b.tops2
    assert a == b
    assert new.token_shifts == old.token_shifts and new.change_summary == old.change_summary
    for r1, r2 in zip(new.results, old.results):
        assert r1.grid == r2.grid and r1.layer_predictions == r2.layer_predictions
    assert any(any(row) for row in a.js) and any("largest JS" in r for r in a.position_reasons)


@pytest.mark.slow
def test_light_adapter_loading_equals_mlx_lm(smollm2_gguf: Path) -> None:
    """``lora_light.load_adapters`` builds the model mlx-lm's ``load_adapters`` builds: the same module types and
    parameters bit for bit (so model 2's numbers are a fresh load's), without importing transformers."""
    from mlx.utils import tree_flatten
    from mlx_lm.tuner.utils import load_adapters as mlx_lm_load_adapters

    from lazarus_report.models import lora_light
    from lazarus_report.models.loader import load_model

    ours, theirs = load_model("smollm2-135m-instruct"), load_model("smollm2-135m-instruct")
    lora_light.load_adapters(ours.model, str(ADAPTER))
    mlx_lm_load_adapters(theirs.model, str(ADAPTER))
    kinds = [(name, type(m)) for name, m in ours.model.named_modules()]
    assert kinds == [(name, type(m)) for name, m in theirs.model.named_modules()]
    p1, p2 = dict(tree_flatten(ours.model.parameters())), dict(tree_flatten(theirs.model.parameters()))
    assert p1.keys() == p2.keys() and any(k.endswith("lora_b") for k in p1)
    for name in p1:
        assert np.array_equal(np.asarray(p1[name]), np.asarray(p2[name])), name
    code = (
        "import sys; from lazarus_report.models import mlx_lm_light as L; L.adapter_loader(); "
        "print('transformers' in sys.modules, 'mlx_lm.tuner.lora' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.split() == ["False", "True"]


@pytest.mark.parametrize("chunk, last", [(None, None), (7, 5)])
def test_map_from_lens_inputs_on_a_tiny_model_equals_the_spilled_one(tmp_path: Path, monkeypatch, chunk, last) -> None:
    """A tiny llama and a LoRA adapter on its last 2 blocks, in one prefill pass or in chunks: the comparison computed
    from the lens inputs (``-m2`` the same name) is the spilled one (``-m2`` a link to the same folder), and it writes
    no spill file."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_attribution import write_tiny_adapter
    from test_grid_positions import FULL, N_LAYERS
    from test_grid_positions import PROMPT as LONG_PROMPT
    from tiny_models import build_tiny_model

    from lazarus_report.commands.compare import compare_models
    from lazarus_report.engine import spill
    from lazarus_report.lens import readout

    build_tiny_model("llama", tmp_path / "m", seed=4, num_hidden_layers=N_LAYERS)
    adapter = str(write_tiny_adapter(str(tmp_path / "m"), tmp_path / "lora", num_layers=2, zero_b=set()))
    (tmp_path / "m2").symlink_to(tmp_path / "m")
    if chunk is not None:
        monkeypatch.setattr(readout, "PREFILL_CHUNK", chunk)
    config = dataclasses.replace(FULL, compute_grid=True, grid_last_positions=last)
    files: list[str] = []
    real = spill.spill_array
    monkeypatch.setattr(spill, "spill_array", lambda d, name, shape: files.append(name) or real(d, name, shape))
    new = compare_models(str(tmp_path / "m"), str(tmp_path / "m"), LONG_PROMPT, config, adapter2=adapter)
    assert files == []
    old = compare_models(str(tmp_path / "m"), str(tmp_path / "m2"), LONG_PROMPT, config, adapter2=adapter)
    assert len(files) == 2
    assert new.change_map is not None and new.change_map == old.change_map
    assert new.change_map.js[0] == [0.0] * len(new.change_map.positions)  # the layers under the adapter
    for a, b in zip(new.results, old.results):  # (their model and lens records name the path each was loaded from)
        assert (a.grid, a.layer_predictions, a.token_evolutions) == (b.grid, b.layer_predictions, b.token_evolutions)
    assert new.divergences == old.divergences and new.token_shifts == old.token_shifts
