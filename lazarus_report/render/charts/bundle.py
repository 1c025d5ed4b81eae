"""The Vega + Vega-Lite + vega-embed JavaScript bundle that interactive reports inline, cached on disk.

``vl_convert.javascript_bundle`` builds the bundle (about 900 KB) in 1.3 s or more, in every process, although it
is the same string for a given vl-convert and Vega-Lite version. So it is built once per machine and kept in
the user cache (``$LAZARUS_CACHE_DIR/vega-bundle``, else ``~/.cache/lazarus-report/vega-bundle`` on Linux),
following the rules of every lazarus cache (``models/cache.py``):

* an entry is keyed by what determines its bytes: the vl-convert distribution's version (which fixes the
  Vega and vega-embed versions it ships; read from the package metadata, so a cache hit never imports
  vl-convert or starts its JavaScript engine), a digest of that installation's ``RECORD`` (the sha256 of
  every file pip installed, so another build of the same version is another key) and the Vega-Lite version,
  all recomputed in every process, never read from the cache; the record also notes the module, Vega and
  vega-embed versions it was built with;
* ``<name>.js`` holds the bundle, ``<name>.json`` records its key and sha256; both are written atomically, the
  record last, so a half-written pair never verifies;
* every read checks the sha256; a damaged or unreadable entry is discarded with a warning and rebuilt;
* one process builds an entry at a time (the others wait on the lock, then read it); the builder removes
  the temporary files a killed write left;
* a cache directory that cannot be written only costs the next run a rebuild; storing an entry removes the
  entries of older formats (never read again).

The sha256 catches damage, not tampering: whoever can write the cache directory can put a bundle (with its
digest) that every interactive report then inlines. The cache directory must not be writable by anyone
untrusted (docs/usage.md).

No Altair here (the caller passes the Vega-Lite version), and vl-convert only to build an entry.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

# Bump when the way an entry is written changes: older entries are then ignored.
BUNDLE_CACHE_FORMAT = 3  # 3: keyed to the installation's RECORD too


def bundle_cache_dir() -> Path:
    from lazarus_report.core.disk_cache import cache_root

    return cache_root() / "vega-bundle"


def bundle_source(vl_version: str) -> dict[str, Any]:
    """What the bundle's bytes depend on (the cache key): without vl-convert's module when its distribution's
    metadata names the version."""
    from importlib import metadata

    try:
        dist = metadata.distribution("vl-convert-python")
    except metadata.PackageNotFoundError:  # pragma: no cover - installed some other way: ask the module
        return {"format": BUNDLE_CACHE_FORMAT, "vega_lite": vl_version, **_built_with()}
    return {
        "format": BUNDLE_CACHE_FORMAT,
        "vl_convert_python": dist.version,
        "installed": installed_digest(dist),
        "vega_lite": vl_version,
    }


def installed_digest(dist: Any) -> str | None:
    """sha256 (16 hex digits) of a distribution's ``RECORD``: the path and sha256 of every file it installed
    (None when the installer kept no record)."""
    record = dist.read_text("RECORD")
    return hashlib.sha256(record.encode("utf-8")).hexdigest()[:16] if record else None


def _built_with() -> dict[str, Any]:
    """The versions the vl-convert module reports (imports it)."""
    import vl_convert as vlc

    return {
        "vl_convert": getattr(vlc, "__version__", None),
        "vega": vlc.get_vega_version(),
        "vega_embed": vlc.get_vega_embed_version(),
    }


def entry_name(source: dict[str, Any]) -> str:
    """``vl-convert-<version>-vega-lite-<version>-<hash of the whole key>`` (file-name safe)."""
    digest = hashlib.sha256(json.dumps(source, sort_keys=True).encode("utf-8")).hexdigest()[:12]
    readable = (
        f"vl-convert-{source.get('vl_convert_python') or source.get('vl_convert')}-vega-lite-{source['vega_lite']}"
    )
    return f"{re.sub(r'[^A-Za-z0-9._-]', '_', readable)}-{digest}"


def build_bundle(vl_version: str) -> str:
    """The bundle from vl-convert itself (no cache), for ``vl_version`` or, if vl-convert lacks it, its newest."""
    import vl_convert as vlc

    from lazarus_report.render.charts.style import resolve_vl_version

    version = resolve_vl_version(vl_version, vlc.get_vegalite_versions())
    return vlc.javascript_bundle(vl_version=version)  # type: ignore[call-arg]  # the stub makes the optional snippet required


def cached_bundle(vl_version: str, cache_dir: Path | None = None) -> str:
    """The bundle for ``vl_version``: from the cache when a verified entry is there, else built and stored."""
    from lazarus_report.core.disk_cache import cache_lock

    cache_dir = Path(cache_dir) if cache_dir is not None else bundle_cache_dir()
    source = bundle_source(vl_version)
    name = entry_name(source)
    found = _read_entry(cache_dir, name, source)
    if found is not None:
        return found
    with cache_lock(cache_dir, f"vega-bundle-{name}"):
        found = _read_entry(cache_dir, name, source, warn=False)  # another process may have built it meanwhile
        if found is not None:
            return found
        bundle = build_bundle(vl_version)
        try:
            _store_entry(cache_dir, name, source, bundle)
        except OSError:
            pass  # a read-only cache only costs the next run a rebuild
        return bundle


def _paths(cache_dir: Path, name: str) -> tuple[Path, Path]:
    return cache_dir / f"{name}.js", cache_dir / f"{name}.json"


def _read_entry(cache_dir: Path, name: str, source: dict[str, Any], *, warn: bool = True) -> str | None:
    """The cached bundle, or None: no entry (silently), or a damaged one (with a warning, once)."""
    js_path, record_path = _paths(cache_dir, name)
    try:
        raw_record = record_path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):  # no entry (or no cache directory at all)
        return None
    except OSError as exc:
        return _discard(js_path, f"its record cannot be read: {exc.strerror or exc}", warn)
    try:
        record = json.loads(raw_record)
        if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
            raise ValueError("not a record")
    except (ValueError, UnicodeDecodeError):
        return _discard(js_path, "its record is not valid", warn)
    if record.get("source") != source:
        return None  # another key under this name (cannot happen unless edited): built afresh
    try:
        data = js_path.read_bytes()
    except OSError as exc:
        return _discard(js_path, f"the bundle cannot be read: {exc.strerror or exc}", warn)
    if hashlib.sha256(data).hexdigest() != record["sha256"]:
        return _discard(js_path, "the bundle does not match its recorded sha256", warn)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:  # pragma: no cover - the digest matched what was written as UTF-8
        return _discard(js_path, "the bundle is not UTF-8", warn)


def _discard(js_path: Path, reason: str, warn: bool) -> str | None:
    """No bundle from this entry (None), said once as a warning."""
    if warn:
        from lazarus_report.core.disk_cache import warn_cache_discarded

        warn_cache_discarded(js_path, reason)
    return None


def _store_entry(cache_dir: Path, name: str, source: dict[str, Any], bundle: str) -> None:
    from lazarus_report.core.files import write_bytes_atomic

    js_path, record_path = _paths(cache_dir, name)
    data = bundle.encode("utf-8")
    record = {
        "source": source,
        "built_with": _built_with(),
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
    }
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Temporaries of a write that was killed (this entry's lock is held: no other write of it is under way).
    for stale in cache_dir.glob(f".{name}.*.tmp"):
        stale.unlink(missing_ok=True)
    _remove_old_formats(cache_dir)
    # The bundle first, its record last: a write killed in between leaves a record-less bundle (ignored, rewritten).
    write_bytes_atomic(js_path, data)
    write_bytes_atomic(record_path, json.dumps(record, sort_keys=True).encode("utf-8"))


_ENTRY_RECORD = re.compile(r"^(vl-convert-[A-Za-z0-9._-]*-[0-9a-f]{12})\.json$")


def _remove_old_formats(cache_dir: Path) -> None:
    """Remove the entries whose record names an older ``BUNDLE_CACHE_FORMAT``: no run reads them again.
    Only names this cache writes are touched; an unreadable record is left alone."""
    for record_path in cache_dir.glob("vl-convert-*.json"):
        match = _ENTRY_RECORD.match(record_path.name)
        if match is None:
            continue
        try:
            record = json.loads(record_path.read_bytes())
        except OSError:
            continue
        except (ValueError, UnicodeDecodeError):
            continue  # a damaged record of the current format is the reader's to report and rewrite
        source = record.get("source") if isinstance(record, dict) else None
        fmt = source.get("format") if isinstance(source, dict) else None
        if isinstance(fmt, int) and not isinstance(fmt, bool) and fmt < BUNDLE_CACHE_FORMAT:
            for stale in (cache_dir / f"{match.group(1)}.js", record_path):
                try:
                    stale.unlink()
                except OSError:
                    pass
