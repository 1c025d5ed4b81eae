"""Causal layer attribution (``--attribution``): ground truth on tiny models and on the weather adapter.

* adapter ablation: layers without adapter modules, and adapted layers whose LoRA B matrices are zero,
  get effect exactly 0 (an attribution that only read the adapter config would fail); a layer's effect
  equals the one measured independently with an adapter that lacks that layer.
* activation patching: a pair that differs in one block only puts the whole effect on that block.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_change_map import one_layer_changed
from tiny_models import build_tiny_model

from lazarus_report.commands.compare import compare_models
from lazarus_report.compare.attribution import THRESHOLD
from lazarus_report.core.config import AnalysisConfig, LayerStrategy

PROMPT = "The capital of France is"
RAW = AnalysisConfig(
    layer_strategy=LayerStrategy.ALL, use_chat_template=False, track_tokens=[" Paris"], compute_grid=False
)
N_LAYERS = 5
WEATHER = Path(__file__).resolve().parents[1] / "examples" / "weather-adapter" / "adapter"


def write_tiny_adapter(model_dir: str, target: Path, num_layers: int, zero_b: set[int], seed: int = 3) -> Path:
    """An mlx-lm LoRA adapter for the tiny model over its last ``num_layers`` blocks; the B matrices of
    the blocks in ``zero_b`` are zero (those adapters do nothing)."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.tuner.utils import linear_to_lora_layers

    from lazarus_report.models.loader import load_model

    params = {"rank": 4, "scale": 2.0, "dropout": 0.0}
    lm = load_model(model_dir)
    linear_to_lora_layers(lm.model, num_layers, params)
    key = mx.random.key(seed)
    weights = {}
    for i, (name, w) in enumerate(tree_flatten(lm.model.parameters())):
        if name.endswith((".lora_a", ".lora_b")):
            layer = int(name.split(".layers.")[1].split(".")[0])
            noise = mx.random.normal(w.shape, key=mx.random.split(key, i + 2)[i + 1])
            scale = 0.0 if (name.endswith(".lora_b") and layer in zero_b) else 0.3
            weights[name] = (noise * scale).astype(mx.float32)
    target.mkdir(parents=True)
    mx.save_safetensors(str(target / "adapters.safetensors"), weights)
    config = {"fine_tune_type": "lora", "num_layers": num_layers, "lora_parameters": params}
    (target / "adapter_config.json").write_text(json.dumps(config))
    return target


def zero_layer(adapter: Path, target: Path, layers: set[int]) -> Path:
    """A copy of ``adapter`` whose B matrices are zero at ``layers``."""
    import mlx.core as mx

    shutil.copytree(adapter, target)
    weights = mx.load(str(target / "adapters.safetensors"))
    for name in list(weights):
        layer = int(name.split(".layers.")[1].split(".")[0])
        if name.endswith(".lora_b") and layer in layers:
            weights[name] = mx.zeros_like(weights[name])
    mx.save_safetensors(str(target / "adapters.safetensors"), weights)
    return target


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("attr")
    build_tiny_model("llama", root / "a", seed=1, num_hidden_layers=N_LAYERS)
    one_layer_changed(root / "a", root / "a2", layer=2)
    adapter = write_tiny_adapter(str(root / "a"), root / "lora", num_layers=4, zero_b={2})
    return {"a": str(root / "a"), "a2": str(root / "a2"), "lora": adapter, "root": root}


@pytest.fixture(scope="module")
def ablation(tiny):
    return compare_models(tiny["a"], tiny["a"], PROMPT, RAW, adapter2=str(tiny["lora"]), attribution=True)


def test_adapter_ablation_zero_where_nothing_acts(ablation):
    a = ablation.attribution
    assert a is not None and a.method == "adapter-ablation" and a.metric == "js_last_position"
    assert [x.layer for x in a.layers] == list(range(N_LAYERS))
    assert ablation.adapted_layers == [[], [1, 2, 3, 4]]
    by_layer = {x.layer: x for x in a.layers}
    assert by_layer[0].effect == 0.0 and by_layer[0].adapted is False  # no adapter module
    # Adapter modules with B = 0: present, adapted, and exactly without effect.
    assert by_layer[2].adapted is True and by_layer[2].effect == 0.0 and by_layer[2].alone == 0.0
    assert by_layer[2].changed_after == a.change
    assert all(by_layer[i].effect != 0.0 for i in (1, 3, 4))
    assert a.change == pytest.approx(ablation.divergences[-1].js, rel=1e-5)
    assert 2 not in a.carriers and 0 not in a.carriers


def test_adapter_ablation_matches_an_adapter_without_that_layer(tiny, ablation):
    """Reverting layer l in place == running with an adapter whose layer-l B is zero (an independent run)."""
    change = ablation.attribution.change
    for layer in (1, 4):
        target = tiny["root"] / f"without-{layer}"
        if not target.exists():
            zero_layer(tiny["lora"], target, {layer})
        c = compare_models(tiny["a"], tiny["a"], PROMPT, RAW, adapter2=str(target))
        expected = 1 - c.divergences[-1].js / change
        got = next(x for x in ablation.attribution.layers if x.layer == layer)
        assert got.effect == pytest.approx(expected, abs=1e-5)
        assert got.changed_after == pytest.approx(c.divergences[-1].js, rel=1e-5, abs=1e-9)
        assert got.tracked_probs[0] == pytest.approx(c.tracked[0].final_probs[1], rel=1e-4, abs=1e-9)


def test_carriers_undo_most_of_the_change_together(tiny, ablation):
    a = ablation.attribution
    assert a.carriers and a.carriers_share >= THRESHOLD
    keep = sorted(set(range(1, 5)) - set(a.carriers))
    target = tiny["root"] / "only-others"
    if not target.exists():
        zero_layer(tiny["lora"], target, set(a.carriers))
    c = compare_models(tiny["a"], tiny["a"], PROMPT, RAW, adapter2=str(target))
    assert 1 - c.divergences[-1].js / a.change == pytest.approx(a.carriers_share, abs=1e-5), keep


def test_activation_patching_puts_the_effect_on_the_one_changed_block(tiny):
    c = compare_models(tiny["a"], tiny["a2"], PROMPT, RAW, attribution=True)
    a = c.attribution
    assert a is not None and a.method == "activation-patching"
    assert a.change > 1e-4
    effects = np.array([x.effect for x in a.layers])
    cumulative = np.array([x.cumulative for x in a.layers])
    np.testing.assert_allclose(cumulative, [0, 0, 1, 1, 1], atol=1e-5)
    np.testing.assert_allclose(effects, [0, 0, 1, 0, 0], atol=1e-5)
    assert a.carriers == [2]
    assert [x.layer for x in a.layers] == list(range(N_LAYERS))
    # The reverse (model 2's block outputs into model 1, which is loaded again): from block 2 on, model 2's
    # residual stream carries the whole change, before it none.
    reverse = np.array([x.reverse_cumulative for x in a.layers])
    np.testing.assert_allclose(reverse, [0, 0, 1, 1, 1], atol=1e-5)
    assert not any("reverse direction" in n for n in a.notes)


def test_attribution_needs_the_same_architecture(tiny, tmp_path):
    deeper = tmp_path / "deeper"
    build_tiny_model("llama", deeper, seed=2, num_hidden_layers=3)
    c = compare_models(tiny["a"], str(deeper), PROMPT, RAW, attribution=True)
    assert c.attribution is None
    assert "needs the same architecture, because" in c.attribution_note
    assert "5 layers" in c.attribution_note and "3 of width" in c.attribution_note


@pytest.mark.slow
def test_weather_adapter_ground_truth(tmp_path):
    """Layers 0-21 carry no adapter: effect exactly 0; two adapted layers with zeroed B: exactly 0 too."""
    adapter = zero_layer(WEATHER, tmp_path / "weather-zeroed", {23, 25})
    c = compare_models(
        "smollm2-135m-instruct",
        "smollm2-135m-instruct",
        "What's the weather in Paris?",
        AnalysisConfig(layer_strategy=LayerStrategy.ALL, track_tokens=["get_weather"], compute_grid=False),
        adapter2=str(adapter),
        attribution=True,
    )
    a = c.attribution
    assert a.method == "adapter-ablation" and len(a.layers) == 30
    assert c.adapted_layers[1] == list(range(22, 30))
    assert all(x.effect == 0.0 for x in a.layers[:22])
    assert a.layers[23].effect == 0.0 and a.layers[25].effect == 0.0
    assert a.layers[23].adapted and a.layers[25].adapted
    assert any(x.effect > 0 for x in a.layers[22:])
    assert c.change_summary.identical_through == 21 and c.change_summary.exactly_identical
    assert c.change_summary.diverges_from == 22
    assert set(a.carriers) <= {22, 24, 26, 27, 28, 29}


def test_compare_cli_attribution_writes_every_output(tiny, tmp_path):
    from helpers import lazarus

    out = {k: tmp_path / f"c.{k}" for k in ("json", "html", "md")}
    proc = lazarus(
        "introspect", "compare", "-m1", tiny["a"], "-m2", tiny["a"],
        "--adapter2", str(tiny["lora"]), "-p", PROMPT, "--raw", "--attribution",
        "-o", str(out["json"]), "--html", str(out["html"]), "--markdown", str(out["md"]),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Attribution (adapter-ablation):" in proc.stdout and "layer 0: no adapter modules" in proc.stdout
    from lazarus_report.results.comparison import ComparisonResult

    c = ComparisonResult.load(out["json"])
    assert c.attribution.method == "adapter-ablation" and c.change_map is not None
    assert "Which layers cause the change" in out["html"].read_text(encoding="utf-8")
    assert "### Which layers cause the change" in out["md"].read_text(encoding="utf-8")


def test_same_model_twice_has_nothing_to_attribute(tiny):
    c = compare_models(tiny["a"], tiny["a"], PROMPT, RAW, attribution=True)
    assert c.attribution is None and c.attribution_note.startswith("both sides are the same model")
