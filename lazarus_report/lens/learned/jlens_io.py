"""Published Jacobian-lens files (``.pt``): the layout of Anthropic's reference ``jacobian-lens`` package,
of TransformerLens's ``JacobianLens.save`` / ``load`` and of the lenses published on the Hugging Face
Hub (``neuronpedia/jacobian-lens``, e.g. ``gpt2-small/jlens/Salesforce-wikitext/gpt2_jacobian_lens.pt``).

A ``torch.save`` dictionary::

    "J":             {layer (int): tensor [d_model, d_model]}   (float16 in the published files)
    "n_prompts":     int, prompts averaged into the fit
    "source_layers": [int], sorted layers with a matrix (0 .. n_layers-2 for a full fit)
    "d_model":       int
    "metadata":      optional dict (TransformerLens provenance: model_name, target_layer, corpus...)

``J[l]`` maps the output of block ``l`` to the last block's output (before the final norm):
``h' = J[l] @ h`` (TransformerLens: ``residual @ J.T``). This package's artefact stores
``weight[l] = J[l]^T`` and a zero bias. A layer the file does not cover reads as the identity (the
logit lens) and the lens's metadata lists it.

Reading never runs code from the file: ``torch.load(..., weights_only=True)`` (only tensors and plain
containers are accepted). torch is imported only by these functions (it is in the test extra).
"""

from __future__ import annotations

import contextlib
import os
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
        raise LazarusError("reading or writing a Jacobian-lens .pt file needs PyTorch: pip install torch") from None
    return torch


@dataclass
class JLensFile:
    """A J-lens file read and checked on its own (no model needed)."""

    path: Path
    d_model: int
    n_prompts: int
    jacobians: dict[int, np.ndarray]  # layer -> J [d_model, d_model] float32 (J @ h)
    metadata: dict[str, Any]

    @property
    def source_layers(self) -> list[int]:
        return sorted(self.jacobians)


def _plain(value: Any, depth: int = 0) -> Any:
    """The file's metadata as JSON data (anything else as its string form)."""
    if depth > 8:
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value[:1000]]
    if isinstance(value, dict):
        return {str(k): _plain(v, depth + 1) for k, v in list(value.items())[:1000]}
    return str(value)[:200]


def _load_payload(path: Path, shown: str) -> Any:
    torch = _torch()
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle / zip / torch errors of many kinds
        if type(exc).__name__ == "UnpicklingError":
            raise LazarusError(
                f"cannot read the Jacobian-lens file {shown}: it holds objects other than tensors, refused "
                "(loading them could run code)"
            ) from None
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        raise LazarusError(
            f"cannot read the Jacobian-lens file {shown}: not a readable torch file, or damaged ({first[:160]})"
        ) from None


def read_jlens(path: str | os.PathLike[str]) -> JLensFile:
    """Read and check a J-lens ``.pt`` file: its keys, every matrix's shape, finite values."""
    torch = _torch()
    shown = os.fspath(path)
    src = Path(path)
    if not src.is_file():
        raise LazarusError(
            f"no lens file or folder at {shown} (expected a Jacobian-lens .pt file or a tuned-lens folder)"
        )
    payload = _load_payload(src, shown)
    if not isinstance(payload, dict) or "J" not in payload:
        raise LazarusError(
            f"{shown} is not a Jacobian-lens file (expected a dictionary with keys J, n_prompts, source_layers, d_model)"
        )
    d_model, jmap = payload.get("d_model"), payload.get("J")
    n_prompts = payload.get("n_prompts", 0)
    if type(d_model) is not int or d_model < 1 or type(n_prompts) is not int or n_prompts < 0:
        raise LazarusError(f"Jacobian-lens file {shown}: d_model and n_prompts must be non-negative integers")
    if not isinstance(jmap, dict) or not jmap:
        raise LazarusError(f"Jacobian-lens file {shown}: J must be a non-empty dictionary of layer -> matrix")
    jacobians: dict[int, np.ndarray] = {}
    for key, matrix in jmap.items():
        if type(key) is not int or key < 0 or not isinstance(matrix, torch.Tensor):
            raise LazarusError(f"Jacobian-lens file {shown}: J[{key!r}] is not a layer index and a tensor")
        if tuple(matrix.shape) != (d_model, d_model) or not matrix.is_floating_point():
            raise LazarusError(
                f"Jacobian-lens file {shown}: J[{key}] has shape {list(matrix.shape)}; expected [{d_model}, {d_model}]"
            )
        values = matrix.float().numpy()
        if not np.isfinite(values).all():
            raise LazarusError(f"Jacobian-lens file {shown}: J[{key}] contains NaN or infinite values")
        jacobians[key] = values
    layers = payload.get("source_layers")
    if layers is not None and (not isinstance(layers, (list, tuple)) or sorted(layers) != sorted(jacobians)):
        raise LazarusError(f"Jacobian-lens file {shown}: source_layers does not list the layers of J")
    metadata = payload.get("metadata")
    return JLensFile(
        path=src,
        d_model=d_model,
        n_prompts=n_prompts,
        jacobians=jacobians,
        metadata=_plain(metadata) if isinstance(metadata, dict) else {},
    )


def import_jlens(source: str | os.PathLike[str] | JLensFile, loaded: Any) -> Lens:
    """A Jacobian lens for ``loaded`` from a J-lens file (or one read by :func:`read_jlens`), checked against
    the model's hidden size and layer count."""
    jf = source if isinstance(source, JLensFile) else read_jlens(source)
    n_layers, hdim = int(loaded.info.num_layers), int(loaded.info.hidden_size)
    name = jf.path.name
    if jf.d_model != hdim:
        raise LazarusError(
            f"Jacobian-lens file {jf.path} is for d_model {jf.d_model}; {loaded.info.model_id} has hidden size {hdim}"
        )
    outside = [layer for layer in jf.source_layers if layer >= n_layers - 1]
    target = jf.metadata.get("target_layer")
    if outside or (isinstance(target, int) and target != n_layers - 1):
        raise LazarusError(
            f"Jacobian-lens file {jf.path} does not fit {loaded.info.model_id} ({n_layers} layers): "
            + (f"it has layers up to {max(outside)}" if outside else f"it targets layer {target}")
        )
    weight = np.tile(np.eye(hdim, dtype=np.float32), (n_layers - 1, 1, 1))
    for layer, matrix in jf.jacobians.items():
        weight[layer] = matrix.T
    missing = [layer for layer in range(n_layers - 1) if layer not in jf.jacobians]
    fitted_for = jf.metadata.get("model_name")
    description = f"imported from the Jacobian-lens file {name} ({jf.n_prompts} prompts" + (
        f", fitted for {fitted_for})" if fitted_for else ")"
    )
    meta: dict[str, Any] = {
        "model": model_fingerprint(loaded),
        "corpus": {"description": description, "sha256": None, "documents": 0},
        "tokens": None,
        "heldout_tokens": 0,
        "fit_seconds": 0.0,
        "fit": {
            "imported_from": str(jf.path),
            "format": "jlens",
            "n_prompts": jf.n_prompts,
            "source_layers": jf.source_layers,
            "identity_layers": missing,
            "jlens_metadata": jf.metadata,
        },
        "fidelity": [],
    }
    bias = np.zeros((n_layers - 1, hdim), dtype=np.float32)
    return Lens(kind="jacobian", weight=weight, bias=bias, form="affine", meta=meta, source=str(jf.path))


def export_jlens(lens: Lens, path: str | os.PathLike[str]) -> Path:
    """Write ``lens`` (a bias-free lens: a Jacobian lens) as a J-lens ``.pt`` file (float32; all or nothing).
    An existing file is never overwritten."""
    torch = _torch()
    if lens.translated_layers == 0 or lens.bias is None:
        raise LazarusError("a logit lens has no matrices to export")
    if np.any(lens.bias != 0):
        raise LazarusError(
            f"the {lens.kind} lens has a bias, which the Jacobian-lens format cannot hold "
            "(export it with --format tuned-lens)"
        )
    shown = os.fspath(path)
    target = Path(os.path.realpath(shown))
    if os.path.lexists(shown) or target.exists():
        raise LazarusError(f"{shown} exists: not overwriting it")
    if not target.parent.is_dir():
        raise LazarusError(f"cannot export: directory {target.parent} does not exist")
    hdim = int(lens.bias.shape[1])
    layers = list(range(lens.translated_layers))
    fit = lens.meta.get("fit") or {}
    model = lens.meta.get("model") or {}
    payload = {
        "J": {
            layer: torch.from_numpy(np.ascontiguousarray(lens.matrix(layer)[0].T, dtype=np.float32)) for layer in layers
        },
        "n_prompts": int(fit.get("n_prompts") or 0),
        "source_layers": layers,
        "d_model": hdim,
        "metadata": {
            "model_name": model.get("model_id"),
            "target_layer": len(layers),
            "exported_by": "lazarus-report",
            "lens_kind": lens.kind,
        },
    }
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise LazarusError(f"cannot write {shown}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
        os.link(tmp, target)  # fails if something appeared at the target meanwhile: never overwrites
    except BaseException as exc:
        if isinstance(exc, OSError):
            raise LazarusError(f"cannot write {shown}: {exc.strerror or exc}") from None
        raise
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return target
