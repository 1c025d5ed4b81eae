"""Where one-time conversions are cached (tokenizer.json from GGUF vocabularies, k-quant weights)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$LAZARUS_CACHE_DIR``, else the user cache directory (``~/.cache/lazarus-report`` on Linux)."""
    env = os.environ.get("LAZARUS_CACHE_DIR")
    if env:
        return Path(env)
    try:
        from platformdirs import user_cache_dir

        return Path(user_cache_dir("lazarus-report"))
    except ImportError:  # pragma: no cover - platformdirs is a dependency
        return Path.home() / ".cache" / "lazarus-report"
