"""The user cache of fitted lenses, and ``resolve_lens`` (what ``--lens`` names -> a ``Lens``).

Layout: ``<cache root>/lenses/<model key>/<kind>/`` (a lens directory, see ``artefact``), where the
cache root is ``$LAZARUS_CACHE_DIR`` or the user cache directory (``~/.cache/lazarus-report``) and
the model key is a digest of the model fingerprint (family, layers, hidden size, vocabulary,
tokenizer, weights digest, adapter digest); lenses shipped with the package come after it
(``shipped``). ``<model key>/logit-eval.json`` keeps the logit lens's
fidelity from the last ``lazarus lens eval``, so reports can mark unreliable logit-lens layers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ...core.errors import LazarusError
from ...core.files import write_text_atomic
from ...results.provenance import LensFidelity
from .artefact import KINDS, Lens, model_fingerprint, model_key, probe_directory

LOGIT_EVAL_FILE = "logit-eval.json"


def lenses_root() -> Path:
    from ...core.disk_cache import cache_root

    return cache_root() / "lenses"


def cache_path(loaded: Any, kind: str, fingerprint: dict[str, Any] | None = None) -> Path:
    """Where ``lazarus lens fit`` puts a ``kind`` lens for ``loaded`` when no --out is given."""
    fp = fingerprint or model_fingerprint(loaded)
    return lenses_root() / model_key(fp) / kind


def probe_cache() -> None:
    """Fail (``LazarusError`` naming the cache and the cause) unless lenses can be saved in the user
    cache: a directory is really created (and removed) in the nearest existing folder on the way to
    ``<cache root>/lenses``; nothing is left behind. Called before any model loads."""
    root = lenses_root()
    place = root
    while not os.path.lexists(place) and place.parent != place:
        place = place.parent
    if not place.is_dir():
        raise LazarusError(f"cannot write the lens to the user cache {root}: {place} is not a directory")
    probe_directory(place, f"the user cache {root}")


def save_in_cache(lens: Lens, target: Path) -> Path:
    """Save ``lens`` at ``target`` (a ``cache_path``), creating the cache folders first."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LazarusError(f"cannot write the lens to the user cache {target}: {exc.strerror or exc}") from None
    return lens.save(target, in_cache=True)


def _model_hint(loaded: Any) -> str:
    hint = f"-m {loaded.info.model_id}"
    return hint + (f" --adapter {loaded.info.adapter}" if loaded.info.adapter else "")


def resolve_lens(spec: str | None, loaded: Any) -> Lens:
    """``spec``: "logit" (or None), "linear", "tuned", "jacobian" or a lens directory.

    A kind is looked up in the user cache (the exact model + adapter, then the base model), then among
    the lenses shipped with the package (``shipped.find_shipped``): a user's own fit wins.

    The lens is checked against ``loaded`` (``check_compatible``) before it is returned.
    """
    spec = spec or "logit"
    fp = model_fingerprint(loaded)
    if spec == "logit":
        lens = Lens.logit(fp)
        fidelity = _cached_logit_fidelity(fp)
        if fidelity:
            lens.meta["fidelity"] = fidelity
            lens.meta["corpus"] = {"description": "lens eval (cached)"}
        return lens
    if spec in KINDS:
        found = find_lens(spec, loaded, fp)
        if found is not None:
            return found
        raise LazarusError(
            f"no fitted {spec} lens for {loaded.info.model_id}: run `lazarus lens fit {_model_hint(loaded)} "
            f"--kind {spec}` first"
        )
    path = Path(spec)
    if not path.exists():
        raise LazarusError(f"unknown --lens {spec!r}: choose logit, linear, tuned, jacobian or a lens directory")
    lens = Lens.load(path)
    lens.check_compatible(loaded)
    return lens


def find_lens(kind: str, loaded: Any, fingerprint: dict[str, Any] | None = None) -> Lens | None:
    """The learned ``kind`` lens for ``loaded``: the user cache's (the exact model + adapter, then the base
    model), else the shipped one; checked against ``loaded``. None when there is none (a damaged one is an error)."""
    fp = fingerprint or model_fingerprint(loaded)
    for key in dict.fromkeys([model_key(fp), model_key(fp, with_adapter=False)]):
        path = lenses_root() / key / kind
        if (path / "lens.json").is_file():
            lens = Lens.load(path, source="cache")
            lens.check_compatible(loaded)
            return lens
    from .shipped import find_shipped

    shipped = find_shipped(kind, fp)
    if shipped is not None:
        shipped.check_compatible(loaded)
    return shipped


def expand_lens_list(specs: list[str], loaded: Any, named: tuple[str, ...] = ()) -> tuple[list[str], list[Lens]]:
    """The other lenses of ``--lens A,B,...`` (``specs``: everything after the primary), ``all`` expanded in
    place to the logit lens and every learned kind available for ``loaded`` (user cache, then shipped) in the
    order logit, linear, tuned, jacobian, skipping those ``named`` elsewhere in the list (the primary's spec
    included). Returns (the specs, their lenses), both in order; an explicit kind with no lens is an error."""
    from ...core.config import LENS_ALL

    named = (*named, *specs)
    out_specs: list[str] = []
    lenses: list[Lens] = []
    for spec in specs:
        if spec != LENS_ALL:
            out_specs.append(spec)
            lenses.append(resolve_lens(spec, loaded))
            continue
        for kind in KINDS:
            if kind in named:
                continue
            lens = resolve_lens(kind, loaded) if kind == "logit" else find_lens(kind, loaded)
            if lens is not None:
                out_specs.append(kind)
                lenses.append(lens)
    return out_specs, lenses


def save_logit_fidelity(loaded: Any, fidelity: list[LensFidelity], corpus: str) -> Path:
    fp = model_fingerprint(loaded)
    path = lenses_root() / model_key(fp) / LOGIT_EVAL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps({"corpus": corpus, "fidelity": [f.__dict__ for f in fidelity]}, indent=1))
    return path


def _cached_logit_fidelity(fp: dict[str, Any]) -> list[dict[str, Any]] | None:
    path = lenses_root() / model_key(fp) / LOGIT_EVAL_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rows = [LensFidelity(**row).__dict__ for row in data["fidelity"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return rows
