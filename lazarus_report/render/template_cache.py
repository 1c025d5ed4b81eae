"""Compiled report templates, cached on disk: compiling the HTML and Markdown templates costs 0.2-0.5 s in
every process that writes a report; reading them compiled costs a few milliseconds.

Jinja's own bucket format is kept (its header names the Jinja and Python versions, and the checksum of the
template source, so an entry for an edited template or another version is recompiled and replaced). Each
file starts with the sha256 of the rest, checked before anything is unmarshalled: a damaged entry is
discarded with a warning and rebuilt, as every cache of the project is (``models.cache``). Entries are
written atomically; a cache directory that cannot be written only costs the next process the compilation.

Entries are keyed to the installed package: their names carry a digest of this package's own template
sources, its version, Jinja's version and the interpreter's bytecode magic, recomputed in every process
(never read from the cache). A cache restored from another installation or another checkout (a CI cache
shared between branches) therefore never supplies code for these templates. The sha256 catches damage,
not tampering: whoever can write the cache directory can write code that a report run executes, so the
cache directory must not be writable by anyone untrusted (docs/usage.md).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import sys
from pathlib import Path

import jinja2

from lazarus_report.core.disk_cache import cache_root, warn_cache_discarded, write_cache_file

FORMAT = 2  # of the file around Jinja's bucket (1: not keyed to the package)


def template_cache_dir() -> Path:
    return cache_root() / "templates"


@functools.cache
def package_key() -> str:
    """A digest of what the compiled templates depend on in this installation: every file under the template
    root (names and bytes), the package's and Jinja's versions, the interpreter's bytecode magic."""
    from lazarus_report.core.version import __version__
    from lazarus_report.render.template_files import template_root

    h = hashlib.sha256()
    for part in (__version__, jinja2.__version__, sys.implementation.cache_tag or "", importlib.util.MAGIC_NUMBER):
        h.update(part if isinstance(part, bytes) else str(part).encode("utf-8"))
        h.update(b"\0")
    root = template_root()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(path.relative_to(root).as_posix().encode("utf-8") + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:16]


class VerifiedBytecodeCache(jinja2.BytecodeCache):
    """``<cache>/templates/<bucket key>-<package key>.v2.jinja``: sha256 (32 bytes) of the payload, then Jinja's
    bucket bytes. ``key``: the package key (default: :func:`package_key`, computed when first needed)."""

    def __init__(self, directory: Path | None = None, key: str | None = None) -> None:
        self._directory = directory
        self._key = key

    @property
    def directory(self) -> Path:
        return self._directory if self._directory is not None else template_cache_dir()

    @property
    def key(self) -> str:
        if self._key is None:
            self._key = package_key()
        return self._key

    def _path(self, bucket: jinja2.bccache.Bucket) -> Path:
        return self.directory / f"{bucket.key}-{self.key}.v{FORMAT}.jinja"

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        path = self._path(bucket)
        try:
            data = path.read_bytes()
        except OSError:  # not there yet (or unreadable): compiled, then stored
            return
        digest, payload = data[:32], data[32:]
        if hashlib.sha256(payload).digest() != digest:
            warn_cache_discarded(path, "its content does not match its recorded sha256")
            return
        try:
            bucket.bytecode_from_string(payload)  # another Jinja/Python or template source: reset, recompiled
        except Exception:  # verified bytes that still do not load (another Python's marshal format)
            bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        payload = bucket.bytecode_to_string()
        path = self._path(bucket)
        try:
            write_cache_file(path, hashlib.sha256(payload).digest() + payload)
        except OSError:
            return
        # Entries this template will never be read from again: the old unkeyed format, and the entries of
        # earlier package keys (this very template file, before an upgrade or an edit).
        for stale in [*self.directory.glob(f"{bucket.key}.v1.jinja"), *self.directory.glob(f"{bucket.key}-*.jinja")]:
            if stale != path:
                try:
                    stale.unlink()
                except OSError:
                    pass
