"""Interoperability with tuned-lens (PyTorch, ``AlignmentResearch/tuned-lens``) checkpoint folders.

Their layout (``tuned_lens/nn/lenses.py``, ``TunedLens.save``): a folder with

* ``config.json``: ``TunedLensConfig`` fields ``base_model_name_or_path``, ``d_model``,
  ``num_hidden_layers``, ``bias``, ``base_model_revision``, ``unembed_hash``, ``lens_type``
  (``"linear_tuned_lens"``);
* ``params.pt``: the ``state_dict`` of a ``ModuleList`` of ``num_hidden_layers`` ``nn.Linear(d, d)``
  translators: keys ``"{i}.weight"`` ``[d, d]`` (out x in) and ``"{i}.bias"`` ``[d]``, applied as
  ``h + translator(h)`` = ``h + h @ weight.T + bias``.

Their index ``i`` is a Hugging Face ``hidden_states`` index: 0 is the embedding output, ``i`` the
output of block ``i-1``, and ``hidden_states[L]`` (the last block, already normed there) has no
translator. Ours starts at block 0's output. So our layer ``l`` (0..L-2) is their ``l + 1``; their
translator 0 (embeddings) has no counterpart here: exported as zeros (the plain logit lens on the
embeddings), dropped on import. torch is imported only inside these functions.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...core.errors import LazarusError
from .artefact import Lens, model_fingerprint


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise LazarusError("the tuned-lens format needs PyTorch: pip install torch") from None
    return torch


def export_tuned_lens(lens: Lens, directory: str | os.PathLike[str]) -> Path:
    """Write ``lens`` (linear or tuned) as a tuned-lens checkpoint folder (all or nothing)."""
    torch = _torch()
    if lens.translated_layers == 0 or lens.bias is None:
        raise LazarusError("a logit lens has no translators to export")
    shown = os.fspath(directory)
    target = Path(os.path.realpath(shown))  # a symlink is followed, as for every output
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise LazarusError(f"{shown} exists and is not an empty directory: not overwriting it")
    model = lens.meta.get("model") or {}
    n_layers, hdim = lens.translated_layers + 1, lens.bias.shape[1]  # a lowrank lens is materialised
    state = {}
    zeros = torch.zeros((hdim, hdim), dtype=torch.float32)
    state["0.weight"], state["0.bias"] = zeros, torch.zeros(hdim, dtype=torch.float32)
    eye = np.eye(hdim)
    for layer in range(n_layers - 1):
        w, b = lens.matrix(layer)  # h' = h @ W + b  ->  h' = h + h @ (W - I) + b
        state[f"{layer + 1}.weight"] = torch.from_numpy(np.ascontiguousarray((w - eye).T, dtype=np.float32))
        state[f"{layer + 1}.bias"] = torch.from_numpy(b.astype(np.float32))
    config = {
        "base_model_name_or_path": model.get("model_id") or "",
        "d_model": int(hdim),
        "num_hidden_layers": int(n_layers),
        "bias": True,
        "base_model_revision": None,
        "unembed_hash": None,
        "lens_type": "linear_tuned_lens",
    }
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise LazarusError(f"cannot export: directory {parent} does not exist")
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
    except OSError as exc:
        raise LazarusError(f"cannot write the checkpoint to {shown}: {exc.strerror or exc}") from None
    try:
        torch.save(state, tmp / "params.pt")
        (tmp / "config.json").write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
        if target.exists():
            target.rmdir()
        os.replace(tmp, target)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)  # the folder this call created, nothing else
        if isinstance(exc, OSError):
            raise LazarusError(f"cannot write the checkpoint to {shown}: {exc.strerror or exc}") from None
        raise
    return target


@dataclass
class TunedLensCheckpoint:
    """A tuned-lens checkpoint folder read and checked on its own (no model needed): translators
    ``1 .. L-1`` as this package's residual form (``weight[l] = A^T`` of their translator ``l + 1``)."""

    path: Path
    config: dict[str, Any]
    weight: np.ndarray  # [L-1, H, H]
    bias: np.ndarray  # [L-1, H]


def _load_error(directory: str, exc: Exception) -> LazarusError:
    """One line, without PyTorch's advice to load the file with ``weights_only=False`` (which would
    run whatever code a pickle holds)."""
    if type(exc).__name__ == "UnpicklingError":
        lines = [
            ln.strip()
            for ln in str(exc).splitlines()
            if ln.strip() and "weights_only" not in ln and "documentation" not in ln.lower()
        ]
        detail = f" ({lines[0]})" if lines else ""
        return LazarusError(
            f"cannot read the tuned-lens checkpoint {directory}: params.pt holds objects other than tensors, "
            f"refused (loading them could run code){detail}"
        )
    first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
    return LazarusError(f"cannot read the tuned-lens checkpoint {directory}: {first[:200]}")


def read_tuned_lens(directory: str | os.PathLike[str]) -> TunedLensCheckpoint:
    """Read and check a tuned-lens checkpoint folder: its config, every translator's shape and that
    every tensor is finite (NaN or infinite values are refused before anything else uses them)."""
    torch = _torch()
    src = Path(directory)
    shown = os.fspath(directory)
    if not src.is_dir():
        raise LazarusError(f"no tuned-lens checkpoint at {shown} (expected a folder with config.json and params.pt)")
    if not (src / "config.json").is_file() or not (src / "params.pt").is_file():
        raise LazarusError(f"{shown} is not a tuned-lens checkpoint (expected config.json and params.pt)")
    try:
        config = json.loads((src / "config.json").read_text(encoding="utf-8"))
    except OSError as exc:
        raise LazarusError(f"cannot read {src / 'config.json'}: {exc.strerror or exc}") from None
    except ValueError as exc:  # JSON and UTF-8 errors
        raise LazarusError(f"{src / 'config.json'} is not valid JSON ({exc})") from None
    try:
        state = torch.load(src / "params.pt", map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle / zip / torch errors of many kinds
        raise _load_error(shown, exc) from None
    if not isinstance(config, dict):
        raise LazarusError(f"{src / 'config.json'}: expected a JSON object")
    hdim, n_layers = config.get("d_model"), config.get("num_hidden_layers")
    if type(hdim) is not int or type(n_layers) is not int or hdim < 1 or n_layers < 2:
        raise LazarusError(
            f"{src / 'config.json'}: d_model and num_hidden_layers must be positive integers "
            f"(got {hdim!r} and {n_layers!r})"
        )
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise LazarusError(f"tuned-lens checkpoint {shown}: params.pt is not a dictionary of tensors")
    for key, value in state.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise LazarusError(f"tuned-lens checkpoint {shown}: tensor {key} contains NaN or infinite values")
    use_bias = config.get("bias", True) is not False
    weight = np.empty((n_layers - 1, hdim, hdim), dtype=np.float32)
    bias = np.zeros((n_layers - 1, hdim), dtype=np.float32)
    for layer in range(n_layers - 1):
        key = f"{layer + 1}"
        w, b = state.get(f"{key}.weight"), state.get(f"{key}.bias")
        if w is None or (use_bias and b is None):
            raise LazarusError(f"tuned-lens checkpoint {shown}: translator {key} is missing")
        if tuple(w.shape) != (hdim, hdim) or (b is not None and use_bias and tuple(b.shape) != (hdim,)):
            raise LazarusError(
                f"tuned-lens checkpoint {shown}: translator {key} has shape {list(w.shape)}"
                f"{f' and bias {list(b.shape)}' if b is not None else ''}; expected [{hdim}, {hdim}] (d_model {hdim})"
            )
        weight[layer] = w.float().numpy().T
        if use_bias and b is not None:
            bias[layer] = b.float().numpy()
    return TunedLensCheckpoint(path=src, config=config, weight=weight, bias=bias)


def import_tuned_lens(directory: str | os.PathLike[str] | TunedLensCheckpoint, loaded: Any) -> Lens:
    """A tuned lens (residual form) for ``loaded`` from a tuned-lens checkpoint folder (or one read
    by :func:`read_tuned_lens`)."""
    ckpt = directory if isinstance(directory, TunedLensCheckpoint) else read_tuned_lens(directory)
    src, config = ckpt.path, ckpt.config
    n_layers, hdim = int(loaded.info.num_layers), int(loaded.info.hidden_size)
    if config.get("d_model") != hdim or config.get("num_hidden_layers") != n_layers:
        raise LazarusError(
            f"tuned-lens checkpoint {src} is for d_model {config.get('d_model')}, "
            f"{config.get('num_hidden_layers')} layers; {loaded.info.model_id} has {hdim} and {n_layers}"
        )
    meta: dict[str, Any] = {
        "model": model_fingerprint(loaded),
        "corpus": {"description": f"imported from tuned-lens checkpoint {src.name}", "sha256": None, "documents": 0},
        "tokens": None,
        "heldout_tokens": 0,
        "fit_seconds": 0.0,
        "fit": {"imported_from": str(src), "tuned_lens_config": config},
        "fidelity": [],
    }
    return Lens(kind="tuned", weight=ckpt.weight, bias=ckpt.bias, form="residual", meta=meta, source=str(src))
