"""Compiled report templates, cached on disk: compiling the HTML and Markdown templates costs 0.2-0.5 s in
every process that writes a report; reading them compiled costs a few milliseconds.

Jinja's own bucket format is kept (its header names the Jinja and Python versions, and the checksum of the
template source, so an entry for an edited template or another version is recompiled and replaced). Each
file starts with the sha256 of the rest, checked before anything is unmarshalled: a damaged entry is
discarded with a warning and rebuilt, as every cache of the project is (``models.cache``). Entries are
written atomically; a cache directory that cannot be written only costs the next process the compilation.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import jinja2

from lazarus_report.models.cache import cache_root, warn_cache_discarded, write_cache_file

FORMAT = 1  # of the file around Jinja's bucket


def template_cache_dir() -> Path:
    return cache_root() / "templates"


class VerifiedBytecodeCache(jinja2.BytecodeCache):
    """``<cache>/templates/<bucket key>.v1.jinja``: sha256 (32 bytes) of the payload, then Jinja's bucket bytes."""

    def __init__(self, directory: Path | None = None) -> None:
        self._directory = directory

    @property
    def directory(self) -> Path:
        return self._directory if self._directory is not None else template_cache_dir()

    def _path(self, bucket: jinja2.bccache.Bucket) -> Path:
        return self.directory / f"{bucket.key}.v{FORMAT}.jinja"

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
        try:
            write_cache_file(self._path(bucket), hashlib.sha256(payload).digest() + payload)
        except OSError:
            pass
