"""The lens artefact: per-layer affine translators, saved as safetensors + JSON metadata.

A lens of ``kind`` "linear" or "tuned" holds, for every block output ``l = 0 .. L-2``, a map applied
to the residual stream before the model's own final norm and head:

* ``form = "affine"`` (linear lenses): ``h' = h @ W_l + b_l``;
* ``form = "residual"`` (tuned lenses, as tuned-lens stores them): ``h' = h + h @ A_l + b_l``
  (``W = I + A``; stored as ``A`` so small corrections keep their precision);
* ``form = "lowrank"`` (a factorized residual map, for lenses shipped in the package):
  ``h' = h + (h @ U_l) @ Vt_l + b_l`` with ``U_l`` ``[H, r]`` and ``Vt_l`` ``[r, H]`` (``A = U Vt``,
  the rank-``r`` truncated SVD of a full translator's ``A``), applied without materialising ``A``.

Layer ``L-1`` (the last block) is the identity: the lens there is the model's own prediction.
A "logit" lens has no weights (identity everywhere).

On disk a lens is a directory::

    lens.json           metadata (format, kind, form, model fingerprint, corpus, fidelity, ...)
    weights.safetensors float32 ``weight`` [L-1, H, H] and ``bias`` [L-1, H]
                        (``lowrank``: ``u`` [L-1, H, r], ``vt`` [L-1, r, H] and ``bias``; any of
                        them may be stored as float16, recorded as ``"storage": "float16"``)

``lens.json`` records the sha256 of ``weights.safetensors``; ``Lens.load`` refuses a file whose
digest, shapes or values do not check out. ``Lens.save`` writes a new directory next to the
target and renames it into place, so a reader sees the old lens or the new one, never a mix.

The model fingerprint (what ``check_compatible`` compares): family, layer count, hidden size,
vocabulary size, the tokenizer's fingerprint (sha256 of vocabulary + merges) and a *weights
digest*. The weights digest is a sampled content digest of the model's files: sha256 over each
weight file's name and size and 16 blocks of 64 KiB at evenly spaced offsets (first and last
included), plus ``config.json`` in full for a directory. It costs a few milliseconds whatever the
model's size, is deterministic, and changes for any other model or fine-tune (their bytes differ
everywhere); it is not a cryptographic proof against a deliberately crafted file.
A lens fitted on the base model may run on the same base with a LoRA adapter: ``check_compatible``
allows it and returns a note for the report.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...core.config import LENS_KINDS
from ...core.errors import LazarusError
from ...core.files import current_umask
from ...results.provenance import LensFidelity, LensRecord
from . import safetensors_io

FORMAT = "lazarus-report/lens"
FORMAT_VERSION = 1
KINDS = LENS_KINDS
FORMS = ("affine", "residual", "lowrank")
STORAGES = ("float32", "float16")
META_FILE = "lens.json"
WEIGHTS_FILE = "weights.safetensors"
# A layer whose held-out KL(final || lens) exceeds this is marked unreliable in reports: its top
# tokens would mislead more often than not (at 2 nats the lens puts about e^-2 of the final
# distribution's confidence on the final answer, and top-1 agreement is typically below 50%).
UNRELIABLE_KL_NATS = 2.0

_SAMPLE_BLOCKS = 16
_SAMPLE_BYTES = 64 * 1024
_WEIGHT_SUFFIXES = (".gguf", ".safetensors", ".npz", ".bin")


# --- fingerprints -------------------------------------------------------------------------------


def sampled_file_digest(path: Path, h: Any) -> None:
    """Feed ``path``'s size and 16 evenly spaced 64 KiB blocks into the hash ``h``."""
    size = path.stat().st_size
    h.update(f"{path.name}\0{size}\0".encode())
    with open(path, "rb") as fh:
        if size <= _SAMPLE_BLOCKS * _SAMPLE_BYTES:
            h.update(fh.read())
            return
        step = (size - _SAMPLE_BYTES) / (_SAMPLE_BLOCKS - 1)
        for i in range(_SAMPLE_BLOCKS):
            fh.seek(int(i * step))
            h.update(fh.read(_SAMPLE_BYTES))


def weights_digest(path: str | os.PathLike[str] | None) -> str | None:
    """Sampled content digest (hex, 32 chars) of a model file or directory (see the module doc)."""
    if path is None:
        return None
    p = Path(path)
    h = hashlib.sha256()
    if p.is_file():
        sampled_file_digest(p, h)
    elif p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.name.endswith(_WEIGHT_SUFFIXES))
        if (p / "config.json").is_file():
            h.update(b"config.json\0" + (p / "config.json").read_bytes())
        for f in files:
            sampled_file_digest(f, h)
    else:
        return None
    return h.hexdigest()[:32]


def adapter_digest(adapter: str | None) -> str | None:
    if adapter is None:
        return None
    p = Path(adapter)
    h = hashlib.sha256()
    for name in ("adapter_config.json", "adapters.safetensors"):
        if (p / name).is_file():
            sampled_file_digest(p / name, h)
    return h.hexdigest()[:32]


def model_fingerprint(loaded: Any) -> dict[str, Any]:
    """What a lens records about the model it was fitted on (plain JSON data)."""
    info = loaded.info
    return {
        "model_id": info.model_id,
        "family": info.family,
        "num_layers": int(info.num_layers),
        "hidden_size": int(info.hidden_size),
        "vocab_size": int(info.vocab_size),
        "tokenizer": loaded.tokenizer.fingerprint(),
        "weights": weights_digest(info.path),
        "adapter": info.adapter,
        "adapter_digest": adapter_digest(info.adapter),
    }


def model_key(fingerprint: dict[str, Any], with_adapter: bool = True) -> str:
    """A short digest of the model identity in ``fingerprint`` (the user cache's folder name; shipped
    lenses are matched by it too). ``with_adapter=False``: the base model's key."""
    keys = ["family", "num_layers", "hidden_size", "vocab_size", "tokenizer", "weights"]
    if with_adapter:
        keys.append("adapter_digest")
    data = json.dumps({k: fingerprint.get(k) for k in keys}, sort_keys=True)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()[:20]


# --- the artefact -------------------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Lens:
    """A lens: ``kind``, per-layer translators (numpy float32) and the metadata that goes with them."""

    kind: str
    weight: np.ndarray | None = None  # [L-1, H, H] (float32, or float16 as loaded from a float16 file)
    bias: np.ndarray | None = None  # [L-1, H]
    form: str = "affine"  # "affine": h @ W + b; "residual": h + h @ A + b
    meta: dict[str, Any] = field(default_factory=dict)
    source: str | None = None  # where it was loaded from: a path, "cache", or None
    note: str | None = None  # set by check_compatible (adapter note)
    factors: tuple[np.ndarray, np.ndarray] | None = None  # lowrank: (U [L-1, H, r], Vt [L-1, r, H])
    storage: str = "float32"  # how the weights file stores the tensors: float32 | float16
    _mx_cache: dict[int, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise LazarusError(f"unknown lens kind {self.kind!r} (choose from {', '.join(KINDS)})")
        if self.form not in FORMS:
            raise LazarusError(f"unknown lens form {self.form!r}")
        if self.storage not in STORAGES:
            raise LazarusError(f"unknown lens storage {self.storage!r}")
        if (self.form == "lowrank") != (self.factors is not None):
            raise LazarusError("a lowrank lens holds factors (U, Vt) and no full weight, and only it does")

    # --- construction -------------------------------------------------------------------------

    @classmethod
    def logit(cls, fingerprint: dict[str, Any] | None = None) -> Lens:
        return cls(kind="logit", meta={"model": fingerprint or {}})

    @property
    def num_layers(self) -> int | None:
        model = self.meta.get("model") or {}
        return model.get("num_layers")

    @property
    def digest(self) -> str | None:
        return self.meta.get("weights_sha256")

    @property
    def translated_layers(self) -> int:
        """How many layers (0 .. n-1) have a translator; every later layer reads as the identity."""
        if self.kind == "logit" or self.bias is None:
            return 0
        return int(self.bias.shape[0])

    @property
    def rank(self) -> int | None:
        """The translators' rank for a ``lowrank`` lens, else None."""
        return int(self.factors[0].shape[2]) if self.factors is not None else None

    def matrix(self, layer: int) -> tuple[np.ndarray, np.ndarray]:
        """(W, b) of the affine map at ``layer`` in the ``h @ W + b`` form (identity past L-2)."""
        if layer >= self.translated_layers:
            raise IndexError(layer)
        assert self.bias is not None
        if self.factors is not None:
            u, vt = self.factors
            w = np.eye(u.shape[1]) + u[layer].astype(np.float64) @ vt[layer].astype(np.float64)
        else:
            assert self.weight is not None
            w = self.weight[layer].astype(np.float64)
            if self.form == "residual":
                w = w + np.eye(w.shape[0])
        return w, self.bias[layer].astype(np.float64)

    # --- applying -----------------------------------------------------------------------------

    def translate(self, layer: int, hidden: Any) -> Any:
        """``hidden`` (MLX ``[..., H]``, block ``layer``'s output) mapped for the model's head.

        Identity for the logit lens and for the last layer (``layer >= L-1``).
        """
        if layer >= self.translated_layers:
            return hidden
        from ...core.runtime import import_mlx

        mx = import_mlx()
        assert self.bias is not None
        if layer not in self._mx_cache:
            arrays: tuple[np.ndarray, ...]
            if self.factors is not None:
                arrays = (self.factors[0][layer], self.factors[1][layer], self.bias[layer])
            else:
                assert self.weight is not None
                arrays = (self.weight[layer], self.bias[layer])
            self._mx_cache[layer] = tuple(mx.array(a).astype(mx.float32) for a in arrays)
        *mats, b = self._mx_cache[layer]
        h32 = hidden.astype(mx.float32)
        if self.factors is not None:
            out = h32 + (h32 @ mats[0]) @ mats[1] + b
        else:
            out = h32 @ mats[0] + b
            if self.form == "residual":
                out = out + h32
        return out.astype(hidden.dtype)

    def translate_np(self, layer: int, hidden: np.ndarray) -> np.ndarray:
        """:meth:`translate` on numpy float32 ``[N, H]`` (fitting and evaluation)."""
        if layer >= self.translated_layers:
            return hidden
        assert self.bias is not None
        f32 = np.float32
        bias = self.bias[layer].astype(f32, copy=False)
        if self.factors is not None:
            return (
                hidden
                + (hidden @ self.factors[0][layer].astype(f32, copy=False))
                @ self.factors[1][layer].astype(f32, copy=False)
                + bias
            )
        assert self.weight is not None
        out = hidden @ self.weight[layer].astype(f32, copy=False) + bias
        if self.form == "residual":
            out += hidden
        return out

    def low_rank(self, rank: int, moments: np.ndarray | None = None) -> Lens:
        """This lens with every translator's ``A = W - I`` replaced by a rank-``rank`` factorization
        (``lowrank`` form; the bias kept; a copy of the metadata, no source).

        Without ``moments``: the truncated SVD of ``A`` (the best rank-``rank`` ``A`` in the Frobenius
        norm). With ``moments`` (``[L-1, H, H]``, each layer's input second moment ``E[h h^T]``): the
        rank-``rank`` ``Â`` minimising ``E ||h (A - Â)||²`` on those inputs, i.e. the truncated SVD of
        ``S A`` mapped back (``S = (E[h h^T] + eps I)^½``), so the rank goes where the states are."""
        n = self.translated_layers
        if n == 0:
            raise LazarusError("a logit lens has no translators to factorize")
        assert self.bias is not None
        hdim = self.bias.shape[1]
        rank = max(1, min(rank, hdim))
        u = np.empty((n, hdim, rank), dtype=np.float32)
        vt = np.empty((n, rank, hdim), dtype=np.float32)
        for layer in range(n):
            a = self.matrix(layer)[0] - np.eye(hdim)
            s = s_inv = None
            if moments is not None:
                sigma = moments[layer].astype(np.float64)
                vals, vecs = np.linalg.eigh(sigma + 1e-6 * np.trace(sigma) / hdim * np.eye(hdim))
                s = (vecs * np.sqrt(vals)) @ vecs.T
                s_inv = (vecs / np.sqrt(vals)) @ vecs.T
                a = s @ a
            uu, sv, vv = np.linalg.svd(a)
            root = np.sqrt(sv[:rank])
            left = uu[:, :rank] * root
            u[layer] = s_inv @ left if s_inv is not None else left
            vt[layer] = root[:, None] * vv[:rank]
        meta = {k: v for k, v in self.meta.items() if k != "weights_sha256"}
        return Lens(self.kind, bias=self.bias.copy(), form="lowrank", meta=meta, factors=(u, vt), storage=self.storage)

    def half(self) -> Lens:
        """This lens stored as float16 (its values rounded to float16, computed in float32)."""

        def rounded(x: np.ndarray) -> np.ndarray:
            return x.astype(np.float16).astype(np.float32)

        if self.translated_layers == 0:
            raise LazarusError("a logit lens has no weights to store")
        assert self.bias is not None
        meta = {k: v for k, v in self.meta.items() if k != "weights_sha256"}
        factors = (rounded(self.factors[0]), rounded(self.factors[1])) if self.factors is not None else None
        weight = rounded(self.weight) if self.weight is not None else None
        return Lens(self.kind, weight, rounded(self.bias), self.form, meta, factors=factors, storage="float16")

    # --- compatibility ------------------------------------------------------------------------

    def check_compatible(self, loaded: Any) -> str | None:
        """Raise ``LazarusError`` naming the mismatch when this lens was fitted for another model.

        Returns a note (and remembers it for :meth:`record`) when the lens was fitted on the base
        model and the loaded model is that base with a LoRA adapter.
        """
        if self.kind == "logit":
            self.note = None
            return None
        fitted = self.meta.get("model") or {}
        info = loaded.info
        what = f"lens {self.source or ''}".rstrip()
        checks = [
            ("family", fitted.get("family"), info.family),
            ("layer count", fitted.get("num_layers"), info.num_layers),
            ("hidden size", fitted.get("hidden_size"), info.hidden_size),
            ("vocabulary size", fitted.get("vocab_size"), info.vocab_size),
        ]
        for name, theirs, ours in checks:
            if theirs != ours:
                raise LazarusError(
                    f"{what} was fitted for another model: {name} {theirs} (lens) vs {ours} "
                    f"({info.model_id}); fit one with `lazarus lens fit -m {info.model_id} --kind {self.kind}`"
                )
        if fitted.get("tokenizer") != loaded.tokenizer.fingerprint():
            raise LazarusError(
                f"{what} was fitted for another model: its tokenizer differs from {info.model_id}'s; "
                f"fit one with `lazarus lens fit -m {info.model_id} --kind {self.kind}`"
            )
        if fitted.get("weights") != weights_digest(info.path):
            raise LazarusError(
                f"{what} was fitted for another model: the weights differ (lens fitted on "
                f"{fitted.get('model_id')!r}, weights digest {str(fitted.get('weights'))[:12]}; "
                f"{info.model_id} has {str(weights_digest(info.path))[:12]})"
            )
        lens_adapter = fitted.get("adapter_digest")
        model_adapter = adapter_digest(info.adapter)
        note = None
        if lens_adapter is not None and lens_adapter != model_adapter:
            raise LazarusError(
                f"{what} was fitted on {fitted.get('model_id')} with the adapter {fitted.get('adapter')}; "
                f"the model here has {'the adapter ' + str(info.adapter) if info.adapter else 'no adapter'}"
            )
        if lens_adapter is None and model_adapter is not None:
            note = f"lens fitted on the base model, applied to base + adapter {info.adapter}"
        self.note = note
        return note

    # --- the record in results ----------------------------------------------------------------

    def fidelity(self) -> list[LensFidelity]:
        return [LensFidelity(**f) for f in self.meta.get("fidelity") or []]

    def record(self, note: str | None = None) -> LensRecord:
        fitted = self.meta.get("model") or {}
        corpus = self.meta.get("corpus") or {}
        return LensRecord(
            kind=self.kind,
            source=self.source,
            digest=self.digest,
            fitted_for={k: fitted.get(k) for k in ("model_id", "family", "num_layers", "adapter")} if fitted else None,
            corpus=corpus.get("description"),
            tokens=self.meta.get("tokens"),
            fidelity=self.fidelity(),
            unreliable_threshold_nats=UNRELIABLE_KL_NATS,
            note=note if note is not None else self.note,
            logit_fidelity=[LensFidelity(**f) for f in self.meta.get("logit_fidelity") or []],
        )

    # --- files --------------------------------------------------------------------------------

    def weights_bytes(self) -> bytes:
        """The weights file's bytes (safetensors; float16 tensors when ``storage`` is float16)."""
        if self.translated_layers == 0:
            raise LazarusError("a logit lens has no weights to save")
        tensors = {"bias": self.bias}
        if self.factors is not None:
            tensors.update(u=self.factors[0], vt=self.factors[1])
        else:
            tensors["weight"] = self.weight
        dtype = np.float16 if self.storage == "float16" else np.float32
        return safetensors_io.dumps(
            {k: np.asarray(v).astype(dtype) for k, v in tensors.items()},
            {"format": FORMAT, "kind": self.kind, "form": self.form},
        )

    def saved_meta(self, data: bytes) -> dict[str, Any]:
        """``lens.json`` for the weights file ``data``: the lens's meta plus the format and the file's digest."""
        meta = dict(self.meta)
        meta.update(
            format=FORMAT,
            format_version=FORMAT_VERSION,
            kind=self.kind,
            form=self.form,
            weights_file=WEIGHTS_FILE,
            weights_sha256=_sha256(data),
        )
        if self.storage != "float32":
            meta["storage"] = self.storage
        return meta

    def save(self, path: str | os.PathLike[str], *, in_cache: bool = False) -> Path:
        """Write the lens directory atomically (all or nothing) and return its path.

        The files are written into a new directory next to the target, which is then renamed into
        place; a lens already there is moved aside first and removed only once the new one is in
        place. An empty directory is kept: the files are written in a temporary directory inside it
        and moved out of it, ``lens.json`` last. A symlink is followed (the lens lands where it points; the link stays). An existing
        directory is replaced only when it is empty or holds a lens and nothing else
        (:func:`lens_destination`): nothing this tool did not write is ever deleted (``in_cache``: the
        user cache's own lens folder, which may replace a damaged ``lens.json`` there). Write errors
        (full disk, read-only file system) are ``LazarusError`` naming the path and the cause.
        """
        target = lens_destination(path, in_cache=in_cache)
        shown = os.fspath(path)
        data = self.weights_bytes()
        meta = self.saved_meta(data)
        meta_text = json.dumps(meta, indent=1, allow_nan=False) + "\n"
        parent = target.parent
        try:
            existing = os.stat(target)
        except FileNotFoundError:
            existing = None
        except OSError as exc:
            raise _write_error(shown, exc) from None
        # An empty folder of the user's is kept (its permissions, a mount point, a shell's working
        # directory): the files are written in a temporary folder inside it, then moved out of it,
        # lens.json last. Otherwise the new lens folder is written next to the target and swapped in.
        try:
            empty = existing is not None and not os.listdir(target)
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target if empty else parent))
        except OSError as exc:
            raise _write_error(shown, exc) from None
        from ...core.files import sigint_held

        aside: Path | None = None  # holds the previous lens (as aside / "lens") during the swap
        placed: list[Path] = []  # files moved into an empty target
        try:
            (tmp / WEIGHTS_FILE).write_bytes(data)
            (tmp / META_FILE).write_text(meta_text, encoding="utf-8")
            if empty:
                with sigint_held():
                    for name in (WEIGHTS_FILE, META_FILE):
                        os.replace(tmp / name, target / name)
                        placed.append(target / name)
                tmp.rmdir()
            else:
                os.chmod(tmp, stat.S_IMODE(existing.st_mode) if existing is not None else 0o777 & ~current_umask())
                if existing is not None:
                    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=parent))
                with sigint_held():
                    if aside is not None:
                        os.replace(target, aside / "lens")
                    os.replace(tmp, target)
        except BaseException as exc:
            _remove_lens_files(tmp)
            for path_placed in placed:
                with contextlib.suppress(OSError):
                    path_placed.unlink()
            if aside is not None:
                if (aside / "lens").exists() and not os.path.lexists(target):
                    with contextlib.suppress(OSError):
                        os.replace(aside / "lens", target)
                with contextlib.suppress(OSError):
                    aside.rmdir()  # only when the previous lens went back (else it stays, never lost)
            if isinstance(exc, OSError):
                raise _write_error(shown, exc) from None
            raise
        if aside is not None:
            _remove_lens_files(aside / "lens")
            with contextlib.suppress(OSError):
                aside.rmdir()
        self.meta = meta
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str], source: str | None = None) -> Lens:
        """Read and verify a lens directory (or its ``lens.json``)."""
        p = Path(path)
        directory = p.parent if p.name == META_FILE else p
        meta_file = directory / META_FILE
        if not directory.exists():
            raise LazarusError(f"no lens at {path}")
        if not meta_file.is_file():
            raise LazarusError(f"{path} is not a lens (no {META_FILE}); lenses are made by `lazarus lens fit`")
        return cls.load_files(meta_file, directory / WEIGHTS_FILE, f"lens {directory}", source or str(directory))

    @classmethod
    def load_files(cls, meta_file: Path, weights_file: Path, shown: str, source: str | None) -> Lens:
        """Read and verify a lens from its metadata and weights files (``shown`` names it in errors):
        the weights file's sha256 against the metadata's, the shapes against the recorded model, finite values."""
        meta = _read_meta(meta_file)
        kind, form = meta.get("kind"), meta.get("form")
        storage = meta.get("storage", "float32")
        if kind not in ("linear", "tuned", "jacobian") or form not in FORMS or storage not in STORAGES:
            raise LazarusError(f"{meta_file}: unknown lens kind {kind!r}, form {form!r} or storage {storage!r}")
        if not weights_file.is_file():
            raise LazarusError(f"{shown} is incomplete: {weights_file.name} is missing")
        data = weights_file.read_bytes()
        if _sha256(data) != meta.get("weights_sha256"):
            raise LazarusError(f"{shown} is damaged: {weights_file.name} does not match the digest in {meta_file.name}")
        # float16 stays float16 in memory (numpy's conversion is slow); MLX converts a layer when it is used
        tensors, _ = safetensors_io.loads(data, str(weights_file), keep_half=True)
        model: dict[str, Any] = meta["model"] if isinstance(meta.get("model"), dict) else {}
        n, hdim = model.get("num_layers"), model.get("hidden_size")
        weight, factors = _checked_tensors(tensors, form, n, hdim, shown)
        bias = tensors["bias"]
        return cls(kind, weight, bias, form, meta, source=source, factors=factors, storage=storage)


def _read_meta(meta_file: Path) -> dict[str, Any]:
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LazarusError(f"{meta_file} is damaged: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise LazarusError(f"{meta_file} is not a lazarus-report lens")
    if meta.get("format_version") != FORMAT_VERSION:
        raise LazarusError(
            f"{meta_file}: lens format version {meta.get('format_version')!r} is not supported "
            f"(this lazarus reads version {FORMAT_VERSION})"
        )
    return meta


def _checked_tensors(
    tensors: dict[str, np.ndarray], form: str, n: Any, hdim: Any, shown: str
) -> tuple[np.ndarray | None, tuple[np.ndarray, np.ndarray] | None]:
    """(weight, factors) of a weights file, their shapes checked against ``n`` layers of ``hdim``."""
    weight, bias = tensors.get("weight"), tensors.get("bias")
    u, vt = tensors.get("u"), tensors.get("vt")
    ok = isinstance(n, int) and isinstance(hdim, int) and bias is not None and bias.shape == (n - 1, hdim)
    if form == "lowrank":
        rank = u.shape[-1] if u is not None and u.ndim == 3 else -1
        ok = ok and u is not None and vt is not None and 1 <= rank <= hdim
        ok = ok and u.shape == (n - 1, hdim, rank) and vt.shape == (n - 1, rank, hdim)  # type: ignore[union-attr]
        arrays = [bias, u, vt]
        expected = f"u [{n - 1 if isinstance(n, int) else '?'}, {hdim}, r], vt [.., r, {hdim}]"
    else:
        ok = ok and weight is not None and weight.shape == (n - 1, hdim, hdim)
        arrays = [weight, bias]
        expected = f"weight [{n - 1 if isinstance(n, int) else '?'}, {hdim}, {hdim}]"
    if not ok:
        blocks = n - 1 if isinstance(n, int) else "?"  # translators for every layer but the last
        raise LazarusError(f"{shown} is damaged: expected {expected} and bias [{blocks}, {hdim}]")
    if not all(np.isfinite(a).all() for a in arrays if a is not None):
        raise LazarusError(f"{shown} is damaged: its weights contain NaN or infinite values")
    if form == "lowrank":
        assert u is not None and vt is not None
        return None, (u, vt)
    return weight, None


LENS_FILES = (META_FILE, WEIGHTS_FILE)
_MAX_META_BYTES = 64 * 1024 * 1024


def _is_lens_meta(path: Path) -> bool:
    """``path`` is a regular file holding a lazarus-report lens's metadata (the format tag checked)."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_META_BYTES:
            return False
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == FORMAT


def lens_destination(path: str | os.PathLike[str], *, in_cache: bool = False) -> Path:
    """Where a lens saved to ``path`` lands (symlinks followed), after checking it may go there.

    ``path`` must be new, an empty directory or a lens directory holding nothing but the lens files
    (``lens.json``, ``weights.safetensors``); its parent directory must exist. Raises
    ``LazarusError`` otherwise. Needs no model: the command line calls it before any loads.
    ``in_cache``: a folder of the user cache, where this tool wrote any lens files: a damaged
    ``lens.json`` there does not stop a new fit from replacing it.
    """
    shown = os.fspath(path)
    if shown == "":
        raise LazarusError("the lens directory name is empty")
    target = Path(os.path.realpath(shown))
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise LazarusError(f"{shown}: cannot use it as a lens directory ({exc.strerror or exc})") from None
    if st is not None:
        if not stat.S_ISDIR(st.st_mode):
            raise LazarusError(f"{shown} exists and is not a lens directory: not overwriting it")
        try:
            names = sorted(os.listdir(target))
        except OSError as exc:
            raise LazarusError(f"{shown}: cannot list the directory ({exc.strerror or exc})") from None
        others = [n for n in names if n not in LENS_FILES]
        if others:
            raise LazarusError(
                f"{shown} is not a lens directory: it holds other files ({others[0]!r}"
                f"{f' and {len(others) - 1} more' if len(others) > 1 else ''}); not overwriting it "
                "(give a new or empty directory)"
            )
        if names and not in_cache and not _is_lens_meta(target / META_FILE):
            raise LazarusError(f"{shown} exists and is not a lens directory: not overwriting it")
        for name in names:
            if not stat.S_ISREG(os.lstat(target / name).st_mode):
                raise LazarusError(f"{shown}/{name} is not a regular file: not overwriting {shown}")
    parent = target.parent
    if not parent.is_dir():
        raise LazarusError(f"cannot write the lens {shown}: directory {parent} does not exist")
    return target


def probe_lens_destination(path: str | os.PathLike[str]) -> Path:
    """:func:`lens_destination`, then a directory really created (and removed) next to it, so an
    unwritable place fails before any model work (``os.access`` says yes on read-only mounts as root)."""
    target = lens_destination(path)
    probe_directory(target.parent, os.fspath(path))
    return target


def probe_directory(directory: Path, shown: str) -> None:
    """Raise ``LazarusError`` naming ``shown`` unless a directory can be created in ``directory``."""
    try:
        tmp = tempfile.mkdtemp(prefix=".lazarus-probe.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise _write_error(shown, exc) from None
    with contextlib.suppress(OSError):
        os.rmdir(tmp)


def _write_error(shown: str, exc: OSError) -> LazarusError:
    return LazarusError(f"cannot write the lens to {shown}: {exc.strerror or exc}")


def _remove_lens_files(directory: Path) -> None:
    """Remove the lens files this tool wrote in ``directory``, then the directory if that empties it.
    Anything else in it (which this tool did not write) stays, and so does the directory."""
    for name in LENS_FILES:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            (directory / name).unlink()
    with contextlib.suppress(OSError):
        directory.rmdir()
