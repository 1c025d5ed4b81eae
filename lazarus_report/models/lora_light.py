"""mlx-lm's LoRA adapters applied without importing ``mlx_lm.tuner``'s package.

``mlx_lm/tuner/__init__`` imports its trainer, which imports ``mlx_lm.utils`` and through it transformers (and
torch when it is installed: 2-3 s of CPU on this machine, more than loading the model). Applying an adapter needs
only the LoRA/DoRA layer classes (``mlx_lm/tuner/lora.py``, ``dora.py``: MLX and mlx-lm's model code only). Those
two modules are loaded here under their own names (so they are the very classes ``mlx_lm.tuner`` uses if it is
imported later), and ``linear_to_lora_layers`` / ``load_adapters`` are mlx-lm 0.32's (``mlx_lm/tuner/utils.py``,
MIT licence, Apple Inc.), unchanged in what they do: the same layers converted in the same order, the same checks,
the same weights loaded.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path
from typing import Any


def _tuner_module(name: str) -> Any:
    """``mlx_lm.tuner.<name>`` (``lora`` or ``dora``) without running ``mlx_lm/tuner/__init__``."""
    full = f"mlx_lm.tuner.{name}"
    if full in sys.modules:
        return sys.modules[full]
    # mlx_lm itself: mlx_lm_light's package without its __init__ (registered when a model is built or an adapter
    # prefetched), else the real one.
    package = sys.modules.get("mlx_lm") or importlib.import_module("mlx_lm")
    spec = importlib.util.spec_from_file_location(full, Path(package.__path__[0]) / "tuner" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[full] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(full, None)
        raise
    return module


def import_lora_layers() -> None:
    """Import the LoRA and DoRA layer modules (light: what ``prefetch_adapter_support`` starts early)."""
    _tuner_module("lora")
    _tuner_module("dora")


def linear_to_lora_layers(model: Any, num_layers: int, config: dict[str, Any], use_dora: bool = False) -> None:
    """mlx-lm's ``linear_to_lora_layers``: the linear (and embedding, switch) layers of the last ``num_layers``
    blocks, or those named by ``config["keys"]``, replaced by LoRA (DoRA) layers made from them."""
    from mlx import nn
    from mlx.utils import tree_unflatten
    from mlx_lm.models.switch_layers import QuantizedSwitchLinear, SwitchLinear

    lora, dora = _tuner_module("lora"), _tuner_module("dora")
    if "scale" not in config:
        hint = ""
        if "alpha" in config:
            hint = (
                " Found 'alpha' instead — mlx-lm's LoRA config uses 'scale', "
                "not 'alpha' (unlike some other LoRA frameworks). See LORA.md."
            )
        raise KeyError(f"LoRA config is missing required key 'scale'.{hint}")

    def to_lora(layer: Any) -> Any:
        if not use_dora and hasattr(layer, "to_lora"):
            return layer.to_lora(r=config["rank"], scale=config["scale"], dropout=config["dropout"])
        if isinstance(layer, (nn.Linear, nn.QuantizedLinear)):
            kind = dora.DoRALinear if use_dora else lora.LoRALinear
        elif isinstance(layer, (SwitchLinear, QuantizedSwitchLinear)):
            if use_dora:
                raise ValueError(f"{type(layer).__name__} doesn't support DoRA yet.")
            kind = lora.LoRASwitchLinear
        elif isinstance(layer, (nn.Embedding, nn.QuantizedEmbedding)):
            kind = dora.DoRAEmbedding if use_dora else lora.LoRAEmbedding
        else:
            raise ValueError(f"Can't convert layer of type {type(layer).__name__} to LoRA")
        return kind.from_base(layer, r=config["rank"], scale=config["scale"], dropout=config["dropout"])

    keys = config.get("keys")
    if keys is None:
        keys = set()
        kinds = (
            nn.Linear,
            nn.QuantizedLinear,
            SwitchLinear,
            QuantizedSwitchLinear,
            nn.Embedding,
            nn.QuantizedEmbedding,
        )

        def get_keys_for_lora(p: str, m: Any) -> None:
            if hasattr(m, "to_lora") or isinstance(m, kinds):
                keys.add(p)

        for block in model.layers:
            block.apply_to_modules(get_keys_for_lora)
    for block in model.layers[-max(num_layers, 0) :]:
        lora_layers = [(k, to_lora(m)) for k, m in block.named_modules() if k in keys]
        if lora_layers:
            block.update_modules(tree_unflatten(lora_layers))
    lora_modules = [(k, to_lora(m)) for k, m in model.named_modules() if k in keys]
    if lora_modules:
        model.update_modules(tree_unflatten(lora_modules))


def load_adapters(model: Any, adapter_path: str) -> Any:
    """mlx-lm's ``load_adapters``: the folder's ``adapter_config.json`` applied (``linear_to_lora_layers``) and its
    ``adapters.safetensors`` loaded into the adapter parameters; ``ValueError`` naming every tensor that does not fit."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    path = Path(adapter_path)
    if not path.exists():
        raise FileNotFoundError(f"The adapter path does not exist: {path}")
    with open(path / "adapter_config.json", encoding="utf-8") as fid:
        config = types.SimpleNamespace(**json.load(fid))
    fine_tune_type = getattr(config, "fine_tune_type", "lora")
    if fine_tune_type != "full":
        linear_to_lora_layers(model, config.num_layers, config.lora_parameters, use_dora=fine_tune_type == "dora")
    weights = mx.load(str(path / "adapters.safetensors"))
    params = dict(tree_flatten(model.parameters()))
    if fine_tune_type == "full":
        allowed = params
    else:
        allowed = {name: p for name, p in params.items() if name.rsplit(".", 1)[-1] in {"lora_a", "lora_b", "m"}}
    errors = []
    for name, w in weights.items():  # type: ignore[union-attr]
        if name not in allowed:
            errors.append(f"  {name}: not an adapter parameter in the model")
        elif w.shape != allowed[name].shape:
            errors.append(
                f"  {name}: adapter shape {tuple(w.shape)} does not match "
                f"model parameter shape {tuple(allowed[name].shape)}"
            )
    if errors:
        raise ValueError(f"Adapter at {path} contains incompatible tensors:\n" + "\n".join(errors))
    model.load_weights(list(weights.items()), strict=False)  # type: ignore[union-attr]
    return model
