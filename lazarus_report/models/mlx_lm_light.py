"""Import mlx-lm's model definitions without ``mlx_lm/__init__``.

``mlx_lm/__init__`` imports its converter, generator and loader, which import transformers
(0.7 s; 2+ s when torch is installed). Building a model from a GGUF file needs only
``mlx_lm.models.<family>``, which imports nothing heavy. When ``mlx_lm`` is not imported yet we
register a bare package object for it, so submodules import on their own; code that later needs the
real package (directory and hub loading, LoRA adapters) calls ``full_mlx_lm()``, which runs the
real ``__init__`` in place.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from typing import Any

from ..core.errors import LazarusError

_LIGHT_MARK = "__lazarus_light__"


def _ensure_package() -> None:
    if "mlx_lm" in sys.modules:
        return
    spec = importlib.util.find_spec("mlx_lm")
    if spec is None or spec.submodule_search_locations is None:
        raise LazarusError("mlx-lm is not installed (pip install mlx-lm)")
    pkg = types.ModuleType("mlx_lm")
    pkg.__path__ = list(spec.submodule_search_locations)
    pkg.__spec__ = spec
    pkg.__file__ = spec.origin
    pkg.__package__ = "mlx_lm"
    setattr(pkg, _LIGHT_MARK, True)
    sys.modules["mlx_lm"] = pkg


_full_lock = threading.RLock()
_prefetch: threading.Thread | None = None


def full_mlx_lm() -> Any:
    """The real ``mlx_lm`` package, running its ``__init__`` if only the light stub is loaded."""
    with _full_lock:
        pkg = sys.modules.get("mlx_lm")
        if pkg is not None and getattr(pkg, _LIGHT_MARK, False):
            spec = pkg.__spec__
            delattr(pkg, _LIGHT_MARK)
            spec.loader.exec_module(pkg)  # type: ignore[union-attr]
            return pkg
        return importlib.import_module("mlx_lm")


def _import_adapter_support() -> None:
    from .lora_light import import_lora_layers  # mlx-lm's LoRA layers without transformers (lora_light)

    _ensure_package()
    import_lora_layers()


def prefetch_adapter_support() -> None:
    """Start importing mlx-lm's LoRA layers in the background (``lora_light``: without ``mlx_lm.tuner``'s package,
    which imports transformers and torch)."""
    global _prefetch
    with _full_lock:
        if _prefetch is None and "mlx_lm.tuner.lora" not in sys.modules:
            _prefetch = threading.Thread(target=_import_adapter_support, name="lazarus-prefetch", daemon=True)
            _prefetch.start()


def adapter_loader() -> Any:
    """mlx-lm's ``load_adapters`` (``lora_light``'s copy; waiting for the background import when one was started)."""
    if _prefetch is not None:
        _prefetch.join()
    _import_adapter_support()
    from .lora_light import load_adapters

    return load_adapters


def model_module(model_type: str) -> Any:
    """``mlx_lm.models.<model_type>`` (with mlx-lm's own remapping, e.g. mistral -> llama)."""
    _ensure_package()
    remap = {"mistral": "llama"}
    name = remap.get(model_type, model_type)
    try:
        return importlib.import_module(f"mlx_lm.models.{name}")
    except ImportError:
        raise LazarusError(f"unsupported architecture {model_type!r}: mlx-lm has no model for it") from None


def build_model(config: dict[str, Any]) -> Any:
    """An mlx-lm ``Model`` for a config dict (``model_type`` plus its ``ModelArgs`` fields)."""
    module = model_module(config["model_type"])
    args = module.ModelArgs.from_dict(config)
    return module.Model(args)
