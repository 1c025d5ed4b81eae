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
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LazarusError
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
    if lens.weight is None or lens.bias is None:
        raise LazarusError("a logit lens has no translators to export")
    target = Path(directory)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise LazarusError(f"{target} exists and is not an empty directory: not overwriting it")
    model = lens.meta.get("model") or {}
    n_layers, hdim = lens.weight.shape[0] + 1, lens.weight.shape[1]
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
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
    try:
        torch.save(state, tmp / "params.pt")
        (tmp / "config.json").write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
        if target.exists():
            target.rmdir()
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def import_tuned_lens(directory: str | os.PathLike[str], loaded: Any) -> Lens:
    """A tuned lens (residual form) for ``loaded`` from a tuned-lens checkpoint folder."""
    torch = _torch()
    src = Path(directory)
    if not (src / "config.json").is_file() or not (src / "params.pt").is_file():
        raise LazarusError(f"{directory} is not a tuned-lens checkpoint (expected config.json and params.pt)")
    try:
        config = json.loads((src / "config.json").read_text(encoding="utf-8"))
        state = torch.load(src / "params.pt", map_location="cpu", weights_only=True)
    except Exception as exc:  # json / pickle / zip errors of many kinds
        raise LazarusError(f"cannot read the tuned-lens checkpoint {directory}: {exc}") from None
    n_layers, hdim = int(loaded.info.num_layers), int(loaded.info.hidden_size)
    if config.get("d_model") != hdim or config.get("num_hidden_layers") != n_layers:
        raise LazarusError(
            f"tuned-lens checkpoint {directory} is for d_model {config.get('d_model')}, "
            f"{config.get('num_hidden_layers')} layers; {loaded.info.model_id} has {hdim} and {n_layers}"
        )
    weight = np.empty((n_layers - 1, hdim, hdim), dtype=np.float32)
    bias = np.zeros((n_layers - 1, hdim), dtype=np.float32)
    for layer in range(n_layers - 1):
        key = f"{layer + 1}"
        try:
            weight[layer] = state[f"{key}.weight"].float().numpy().T
            if config.get("bias", True):
                bias[layer] = state[f"{key}.bias"].float().numpy()
        except (KeyError, RuntimeError, ValueError) as exc:
            raise LazarusError(
                f"tuned-lens checkpoint {directory}: translator {key} is missing or malformed ({exc})"
            ) from None
    meta: dict[str, Any] = {
        "model": model_fingerprint(loaded),
        "corpus": {"description": f"imported from tuned-lens checkpoint {src.name}", "sha256": None, "documents": 0},
        "tokens": None,
        "heldout_tokens": 0,
        "fit_seconds": 0.0,
        "fit": {"imported_from": str(src), "tuned_lens_config": config},
        "fidelity": [],
    }
    return Lens(kind="tuned", weight=weight, bias=bias, form="residual", meta=meta, source=str(src))
