"""Where one-time conversions are cached (tokenizer.json from GGUF vocabularies, k-quant weights),
and the rules every cache entry follows: verified on use, discarded with a warning when damaged,
built by one process at a time."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

from .errors import LazarusWarning


def cache_root() -> Path:
    """``$LAZARUS_CACHE_DIR``, else the user cache directory (``~/.cache/lazarus-report`` on Linux)."""
    env = os.environ.get("LAZARUS_CACHE_DIR")
    if env:
        return Path(env)
    try:
        from platformdirs import user_cache_dir

        return Path(user_cache_dir("lazarus-report"))
    except ImportError:  # pragma: no cover - platformdirs is a dependency
        return Path.home() / ".cache" / "lazarus-report"


def write_cache_file(target: Path, data: bytes) -> None:
    """Write a cache file atomically (its directory created first); ``OSError`` when it cannot be written."""
    from lazarus_report.core.files import write_bytes_atomic

    target.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(target, data)


def warn_cache_discarded(entry: Path, reason: str) -> None:
    """Say (as a ``LazarusWarning``: one line on stderr from the command line) that a damaged cache
    entry is discarded and rebuilt."""
    warnings.warn(f"discarding the damaged cache entry {entry} ({reason}); rebuilding it", LazarusWarning, stacklevel=2)


def _lock_file(cache_dir: Path, name: str) -> Path | None:
    try:
        locks = cache_dir / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        return locks / f"{name}.lock"
    except OSError:
        return None


@contextlib.contextmanager
def cache_lock(cache_dir: Path, name: str) -> Iterator[None]:
    """Hold the cache entry ``name`` exclusively (``fcntl.flock``; waits while another process holds it).

    The lock is released when the process dies, so a killed conversion never blocks the next run.
    Without ``fcntl`` (Windows) or a writable cache directory there is no lock: at worst two processes
    build the same entry, each atomically.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path = _lock_file(cache_dir, name)
    if path is None:
        yield
        return
    with open(path, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def try_cache_lock(cache_dir: Path, name: str) -> Iterator[bool]:
    """Like :func:`cache_lock` without waiting: yields whether the lock was free (and is now held)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield False
        return
    path = _lock_file(cache_dir, name)
    if path is None:
        yield False
        return
    with open(path, "a+b") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
