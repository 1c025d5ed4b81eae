"""The on-disk cache of tokenizers built from GGUF files (``tokenizer.json`` plus a small meta file), and
``tokenizer_from_gguf``, which reads it or builds and stores the tokenizer.

An entry is ``<path hash>-<version hash>.tokenizer.json`` + ``.meta.json``. One process builds a file's
entry at a time (``cache_lock``, best effort: without a lock two first runs each build it, atomically).
Storing an entry removes the ones that will never be read again: earlier versions of the same file, the
temporaries of a killed write, and entries of an older cache format or for a GGUF file that is gone.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import tokenizers

from lazarus_report.models.tokenizer.gguf_build import build_from_metadata
from lazarus_report.models.tokenizer.wrappers import GGUFTokenizer

# Bump when the way a tokenizer is built from metadata changes: old cache entries are then ignored.
CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    from lazarus_report.core.disk_cache import cache_root

    return cache_root() / "tokenizers"


def _cache_key(path: Path) -> tuple[str, dict[str, Any]]:
    resolved = path.resolve()
    stat = resolved.stat()
    import tokenizers

    source = {
        "path": str(resolved),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "format": CACHE_FORMAT,
        "tokenizers": tokenizers.__version__,  # a newer library may write JSON an older one cannot read
    }
    # "<path hash>-<version hash>": entries for an older version of the same file can be found and removed.
    path_key = hashlib.sha256(str(resolved).encode("utf-8")).hexdigest()[:16]
    version_key = hashlib.sha256(json.dumps(source, sort_keys=True).encode("utf-8")).hexdigest()[:16]
    return f"{path_key}-{version_key}", source


def _atomic_write(target: Path, data: bytes) -> None:
    from ...core.disk_cache import write_cache_file

    write_cache_file(target, data)


def _cache_paths(cache_dir: Path, key: str) -> tuple[Path, Path]:
    return cache_dir / f"{key}.tokenizer.json", cache_dir / f"{key}.meta.json"


def _load_cached(cache_dir: Path, key: str, source: Mapping[str, Any], warn: bool = True) -> GGUFTokenizer | None:
    """The cached tokenizer, or None when there is none or it is not exactly what was written."""
    from tokenizers import Tokenizer as BackendTokenizer

    tok_path, meta_path = _cache_paths(cache_dir, key)
    try:
        info = json.loads(meta_path.read_bytes())
        if not isinstance(info, dict) or info.get("source") != dict(source):
            return None
        data = tok_path.read_bytes()
        if hashlib.sha256(data).hexdigest() != info.get("tokenizer_sha256"):
            from ...core.disk_cache import warn_cache_discarded

            if warn:
                warn_cache_discarded(tok_path, "tokenizer.json does not match its recorded sha256")
            return None
        return GGUFTokenizer(BackendTokenizer.from_str(data.decode("utf-8")), info)
    except Exception:  # missing, unreadable or corrupt: rebuild
        return None


def _store(
    cache_dir: Path, key: str, source: Mapping[str, Any], backend: tokenizers.Tokenizer, info: dict[str, Any]
) -> None:
    tok_path, meta_path = _cache_paths(cache_dir, key)
    data = backend.to_str().encode("utf-8")
    record = dict(info, source=dict(source), tokenizer_sha256=hashlib.sha256(data).hexdigest())
    # tokenizer.json first, the small meta file last: the meta file's hash makes a half-written pair fail.
    _atomic_write(tok_path, data)
    _atomic_write(meta_path, json.dumps(record, ensure_ascii=False).encode("utf-8"))
    _remove_orphans(cache_dir)
    # Entries for earlier versions of this file (another size or mtime) will never be read again.
    path_key = key.split("-", 1)[0]
    # So are temporaries of a write that was killed (a concurrent writer that loses its temporary
    # here only skips caching: its rename fails with OSError, which the caller ignores).
    for stale in [*cache_dir.glob(f"{path_key}-*"), *cache_dir.glob(f".{path_key}-*.tmp")]:
        if not stale.name.startswith(key):
            try:
                stale.unlink()
            except OSError:
                pass


_ENTRY_META = re.compile(r"^([0-9a-f]{16}-[0-9a-f]{16})\.meta\.json$")


def _remove_orphans(cache_dir: Path) -> None:
    """Remove the entries no run will read again: written in an older ``CACHE_FORMAT`` (or with a record
    that is not one), or for a GGUF file that no longer exists. Only names this cache writes are touched."""
    for meta_path in cache_dir.glob("*.meta.json"):
        match = _ENTRY_META.match(meta_path.name)
        if match is None:
            continue
        try:
            source = json.loads(meta_path.read_bytes()).get("source")
            orphan = source.get("format") != CACHE_FORMAT or not Path(source["path"]).exists()
        except OSError:
            continue  # unreadable: leave it (the entry of another user, or a passing fault)
        except (ValueError, AttributeError, KeyError, TypeError):
            orphan = True  # not a record this cache wrote: never matches a key
        if orphan:
            tok_path, _ = _cache_paths(cache_dir, match.group(1))
            for stale in (tok_path, meta_path):  # the tokenizer first: a meta file alone never verifies
                try:
                    stale.unlink()
                except OSError:
                    pass


MetadataSource = Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None


def tokenizer_from_gguf(
    path: str | Path,
    metadata: MetadataSource = None,
    cache_dir: Path | None = None,
) -> GGUFTokenizer:
    """The tokenizer of a GGUF file, from the cache when its ``tokenizer.json`` was built before.

    ``metadata`` is the file's metadata as plain Python values, a callable returning it (called only
    when the tokenizer has to be built), or None to read it with ``read_gguf_metadata``. The cache
    lives in ``cache_dir`` (default: :func:`default_cache_dir`), keyed by the file's resolved path,
    size and mtime; an entry that cannot be read or does not match its recorded hash is rebuilt.
    """
    path = Path(path)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key, source = _cache_key(path)

    cached = _load_cached(cache_dir, key, source)
    if cached is not None:
        return cached
    from lazarus_report.core.disk_cache import cache_lock

    # One process builds a file's entry at a time; the others wait, then read it.
    with cache_lock(cache_dir, f"tokenizer-{key.split('-', 1)[0]}"):
        cached = _load_cached(cache_dir, key, source, warn=False)  # another process may have built it meanwhile
        if cached is not None:
            return cached
        return _build_and_store(path, metadata, cache_dir, key, source)


def _build_and_store(
    path: Path, metadata: MetadataSource, cache_dir: Path, key: str, source: Mapping[str, Any]
) -> GGUFTokenizer:
    if metadata is None:
        from lazarus_report.models.gguf_metadata import read_gguf_metadata

        meta: Mapping[str, Any] = read_gguf_metadata(path)
    elif callable(metadata):
        meta = metadata()
    else:
        meta = metadata
    backend, info = build_from_metadata(meta)
    if not info.get("name"):
        info["name"] = path.name
    try:
        _store(cache_dir, key, source, backend, info)
    except OSError:
        pass  # a read-only cache only costs the next run a rebuild
    return GGUFTokenizer(backend, info)
