"""Checks on an mlx-lm adapter directory that need no model and no MLX: the files exist, the config
holds values of the right types, and the weights are of the kind the config declares.

mlx-lm would find most of these only while applying the adapter, with multi-line messages (a rank
of ``"eight"``) or not at all (``fine_tune_type: dora`` over LoRA weights loads and silently runs
DoRA with untrained magnitudes).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from ..core.errors import LazarusError

FINE_TUNE_TYPES = ("lora", "dora", "full")
# lora_parameters key -> (accepted types, description)
_LORA_PARAMETERS: dict[str, tuple[tuple[type, ...], str]] = {
    "rank": ((int,), "a positive integer"),
    "scale": ((int, float), "a number"),
    "dropout": ((int, float), "a number between 0 and 1"),
}


def adapter_files(adapter: str) -> tuple[Path, Path]:
    """(the folder holding ``adapter_config.json``, the weights file) of an adapter: a folder (its
    ``adapters.safetensors``) or one ``.safetensors`` file inside such a folder (a training checkpoint,
    ``0000100_adapters.safetensors``, read with the folder's config). No file is read."""
    path = Path(adapter)
    if path.suffix == ".safetensors" and not path.is_dir():
        return path.parent, path
    return path, path / "adapters.safetensors"


def check_adapter(adapter: str) -> Path:
    """The adapter directory, checked; ``LazarusError`` (one line, naming the key) otherwise. ``adapter``
    may also name one checkpoint file of an adapter directory (``adapter_files``)."""
    path, weights_file = adapter_files(adapter)
    cfg_file = path / "adapter_config.json"
    if weights_file != path / "adapters.safetensors":
        if not weights_file.is_file():
            raise LazarusError(f"no LoRA adapter checkpoint at {adapter} (no such file)")
        if not cfg_file.is_file():
            raise LazarusError(f"adapter checkpoint {adapter}: no adapter_config.json beside it")
    if not path.is_dir() or not cfg_file.is_file():
        raise LazarusError(f"no LoRA adapter at {adapter} (expected a directory with adapter_config.json)")
    if not weights_file.is_file():
        raise LazarusError(f"no LoRA adapter at {adapter}: adapter_config.json but no adapters.safetensors")
    try:
        cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LazarusError(f"{cfg_file} is not valid JSON: {exc}") from None
    if not isinstance(cfg, dict):
        raise LazarusError(f"{cfg_file} is not an mlx-lm adapter config: expected a JSON object")
    kind = cfg.get("fine_tune_type", "lora")
    if kind not in FINE_TUNE_TYPES:
        raise LazarusError(f"{cfg_file}: fine_tune_type {kind!r} is not one of {', '.join(FINE_TUNE_TYPES)}")
    if kind != "full":
        _check_lora_config(cfg, cfg_file)
    _check_weights_match(kind, _tensor_names(weights_file), weights_file)
    return path


def _check_lora_config(cfg: dict[str, Any], cfg_file: Path) -> None:
    n = cfg.get("num_layers")
    # mlx-lm adapts ``model.layers[-max(num_layers, 0):]``: the last num_layers blocks, every block for 0 or
    # less (-1 is its "all layers"). More blocks than the model has is refused once the model is known.
    if isinstance(n, bool) or not isinstance(n, int):
        raise LazarusError(
            f"{cfg_file}: num_layers must be an integer, the blocks adapted from the last (-1: all) (got {n!r})"
        )
    params = cfg.get("lora_parameters")
    if not isinstance(params, dict):
        raise LazarusError(f"{cfg_file}: lora_parameters must be an object with rank, scale and dropout")
    for key, (types, wanted) in _LORA_PARAMETERS.items():
        if key not in params:
            hint = " (mlx-lm calls it scale, not alpha)" if key == "scale" and "alpha" in params else ""
            raise LazarusError(f"{cfg_file}: lora_parameters.{key} is missing{hint}")
        value = params[key]
        ok = isinstance(value, types) and not isinstance(value, bool)
        if ok and key == "rank":
            ok = value >= 1
        if ok and key == "dropout":
            ok = 0 <= value <= 1
        if not ok:
            raise LazarusError(f"{cfg_file}: lora_parameters.{key} must be {wanted} (got {value!r})")


def _tensor_names(weights_file: Path) -> list[str]:
    """Tensor names from the safetensors header (8-byte length + JSON), without reading the data."""
    return list(tensor_shapes(weights_file))


def tensor_shapes(weights_file: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Tensor name -> (dtype, shape) from the safetensors header (8-byte length + JSON), without reading
    the data."""
    try:
        with open(weights_file, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if n > 100_000_000:
                raise ValueError("header too large")
            header = json.loads(fh.read(n))
        return {
            k: (str(v["dtype"]), tuple(int(x) for x in v["shape"])) for k, v in header.items() if k != "__metadata__"
        }
    except (OSError, ValueError, struct.error, UnicodeDecodeError, AttributeError, KeyError, TypeError) as exc:
        raise LazarusError(f"cannot read {weights_file}: not a safetensors file ({type(exc).__name__})") from None


def _check_weights_match(kind: str, names: list[str], weights_file: Path) -> None:
    leaves = {name.rsplit(".", 1)[-1] for name in names}
    lora = bool(leaves & {"lora_a", "lora_b"})
    if kind == "full":
        if lora:
            raise LazarusError(f"{weights_file} holds LoRA weights, but adapter_config.json says fine_tune_type full")
        return
    if not lora:
        raise LazarusError(f"{weights_file} holds no LoRA weights (lora_a/lora_b), but fine_tune_type is {kind}")
    if kind == "dora" and "m" not in leaves:
        raise LazarusError(
            f"{weights_file} holds LoRA weights without DoRA magnitudes (.m), but adapter_config.json says "
            "fine_tune_type dora"
        )
    if kind == "lora" and "m" in leaves:
        raise LazarusError(f"{weights_file} holds DoRA weights (.m), but adapter_config.json says fine_tune_type lora")


def same_adapter_layout(first: str, second: str) -> bool:
    """Whether two adapters (folders or checkpoint files) build the same LoRA layers: the same
    ``adapter_config.json`` settings (type, blocks, rank, scale, dropout) and the same tensors, so the second
    can replace the first's weights in place (``loader.with_adapter(swap=True)``). Full fine-tunes never do."""
    configs = []
    for adapter in (first, second):
        folder, weights = adapter_files(adapter)
        try:
            cfg = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        if not isinstance(cfg, dict) or cfg.get("fine_tune_type", "lora") == "full":
            return False
        keys = ("fine_tune_type", "num_layers", "lora_parameters", "lora_layers")
        configs.append(({k: cfg.get(k) for k in keys}, tensor_shapes(weights)))
    return configs[0] == configs[1]
