"""Which layers an mlx-lm adapter adapts, read from its ``adapter_config.json`` (no MLX).

mlx-lm's ``linear_to_lora_layers`` converts the linear layers of the *last* ``num_layers`` blocks
(``0`` or less, e.g. ``-1``: all blocks, as mlx-lm slices ``layers[-max(n, 0):]``); older configs call the count ``lora_layers``. ``fine_tune_type: full`` trains the
weights themselves (no adapter modules): every layer may differ.
"""

from __future__ import annotations

import json
from pathlib import Path


def adapted_layers(adapter_dir: str | None, num_layers: int) -> list[int]:
    """0-based layers the adapter in ``adapter_dir`` touches (empty when there is none or it is unreadable)."""
    if not adapter_dir:
        return []
    try:
        cfg = json.loads((Path(adapter_dir) / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(cfg, dict):
        return []
    if cfg.get("fine_tune_type") == "full":
        return list(range(num_layers))
    n = cfg.get("num_layers", cfg.get("lora_layers"))
    if not isinstance(n, int) or isinstance(n, bool):
        return []
    if n <= 0 or n >= num_layers:
        return list(range(num_layers))
    return list(range(num_layers - n, num_layers))
