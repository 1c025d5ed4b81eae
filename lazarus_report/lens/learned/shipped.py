"""Lenses shipped in the package: fitted once for the embedded models, found by the model's identity.

``lazarus_report/lens/shipped/`` (or ``$LAZARUS_SHIPPED_LENSES``) holds, per model and kind,
``<model>-<kind>.safetensors`` and ``<model>-<kind>.json`` (the ``lens.json`` of an ordinary lens
directory, naming its weights file). ``find_shipped`` returns the lens whose recorded model matches
the loaded one (family, layers, hidden size, vocabulary, tokenizer fingerprint, weights digest: the
user cache's key), after ``Lens.load_files`` has checked the weights file against the recorded
sha256, its shapes and values: a damaged or altered shipped file is a one-line error, never used.
``resolve_lens`` asks the user cache first (a user's own fit wins), then this.

To fit within the wheel's budget the shipped lenses may be stored as float16 and/or with low-rank
translators (``stored_lens``); the fidelity in their records is measured as stored.
``scripts/fit_shipped_lenses.py`` reproduces the files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ...core.errors import LazarusError
from .artefact import FORMAT, Lens, model_key

ENV = "LAZARUS_SHIPPED_LENSES"
META_SUFFIX = ".json"
WEIGHTS_SUFFIX = ".safetensors"


def shipped_dir() -> Path:
    """Where shipped lenses are read from: ``$LAZARUS_SHIPPED_LENSES`` or the package's folder."""
    env = os.environ.get(ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / "shipped"


def stored_lens(full: Lens, storage: str, moments: Any = None) -> Lens:
    """``full`` as it would be shipped: ``float32`` (as is), ``float16``, ``lowrankR`` (the rank-R
    truncated SVD of every translator's ``A``, in float16) or ``wlowrankR`` (rank R weighted by the
    inputs' second ``moments``, see ``Lens.low_rank``)."""
    if storage == "float32":
        lens = Lens(full.kind, full.weight, full.bias, full.form, dict(full.meta), factors=full.factors)
    elif storage == "float16":
        lens = full.half()
    elif storage.startswith("lowrank") and storage[7:].isdigit():
        lens = full.low_rank(int(storage[7:])).half()
    elif storage.startswith("wlowrank") and storage[8:].isdigit() and moments is not None:
        lens = full.low_rank(int(storage[8:]), moments).half()
    else:
        raise LazarusError(f"unknown storage {storage!r}: float32, float16, lowrankR or wlowrankR (with moments)")
    lens.meta.pop("weights_sha256", None)
    lens.meta["shipped_storage"] = storage
    return lens


def write_shipped(lens: Lens, dest: Path, name: str) -> Path:
    """Write ``lens`` as ``dest/<name>-<kind>.{safetensors,json}`` (the weights first); returns the JSON's path."""
    from ...core.files import write_bytes_atomic, write_text_atomic

    stem = f"{name}-{lens.kind}"
    data = lens.weights_bytes()
    meta = lens.saved_meta(data)
    meta["weights_file"] = stem + WEIGHTS_SUFFIX
    meta["shipped_name"] = name
    dest.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(dest / (stem + WEIGHTS_SUFFIX), data)
    path = dest / (stem + META_SUFFIX)
    write_text_atomic(path, json.dumps(meta, indent=1, allow_nan=False) + "\n")
    return path


def shipped_records(directory: Path | None = None) -> list[tuple[Path, dict[str, Any]]]:
    """(metadata file, metadata) of every shipped lens (unverified: for lookup and listing)."""
    directory = directory or shipped_dir()
    out = []
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    for name in names:
        path = directory / name
        if not name.endswith(META_SUFFIX) or not path.is_file():
            continue
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        if isinstance(meta, dict) and meta.get("format") == FORMAT and isinstance(meta.get("model"), dict):
            out.append((path, meta))
    return out


def find_shipped(kind: str, fingerprint: dict[str, Any]) -> Lens | None:
    """The shipped ``kind`` lens fitted for the model of ``fingerprint`` (verified), or None."""
    key = model_key(fingerprint, with_adapter=False)
    for meta_file, meta in shipped_records():
        if meta.get("kind") != kind or model_key(meta["model"], with_adapter=False) != key:
            continue
        weights = meta_file.parent / str(meta.get("weights_file") or "")
        shown = f"the shipped lens {meta_file.name}"
        try:
            lens = Lens.load_files(meta_file, weights, shown, source=None)
        except LazarusError as exc:
            raise LazarusError(
                f"{exc}; reinstall lazarus-report, or fit your own with `lazarus lens fit --kind {kind}`"
            ) from None
        describe(lens, meta_file.stem)
        return lens
    return None


def describe(lens: Lens, stem: str) -> None:
    """Set the lens's source and corpus line to say where a shipped lens came from (in memory only)."""
    from ...core.version import __version__ as version

    fidelity = lens.fidelity()
    quality = ""
    if fidelity:
        mean_kl = sum(f.kl_to_final for f in fidelity) / len(fidelity)
        mid = fidelity[len(fidelity) // 2]
        quality = f"; held-out mean KL {mean_kl:.2f} nats, layer {mid.layer} top-1 {100 * mid.top1_agreement:.0f}%"
    lens.source = f"shipped with lazarus-report {version} ({stem}{quality})"
    corpus = dict(lens.meta.get("corpus") or {})
    corpus["description"] = f"{corpus.get('description') or 'unknown corpus'}; {settings_line(lens)}"
    lens.meta["corpus"] = corpus


def settings_line(lens: Lens) -> str:
    """The fit settings and storage of a shipped lens, in words."""
    fit = lens.meta.get("fit") or {}
    if lens.kind == "tuned" and "steps" in fit:
        how = (
            f"tuned: {fit['steps']} Adam steps of {fit.get('batch')} positions, lr {fit.get('lr')}, from the linear fit"
        )
    elif "ridge" in fit:
        how = f"{lens.kind}: ridge least squares (lambda {fit['ridge']})"
    else:
        how = lens.kind
    stored = "float16" if lens.storage == "float16" else "float32"
    if lens.rank is not None:
        weighted = lens.meta.get("shipped_moments_tokens")
        how_rank = f", fitted to {weighted} positions' states" if weighted else ""
        stored = f"rank-{lens.rank} translators (I + U V^T{how_rank}) in {stored}"
    return f"{how}; stored as {stored}"
