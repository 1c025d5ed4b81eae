"""Atomic output files: all or nothing, never through a symlink onto something the user did not name."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from .errors import LazarusError


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` so that a failure never leaves a partial file behind."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`write_files_atomic`)."""
    write_files_atomic({path: data})


class OutputPathError(OSError):
    """An output path that can never be written (a directory, a socket, an empty name ...)."""


def output_target(path: str | os.PathLike[str]) -> tuple[Path, os.stat_result | None]:
    """The file a write to ``path`` lands in (symlinks resolved) and its status (None: not there yet).

    Raises ``OutputPathError`` for names no output can take: empty, a directory, a socket or a block device.
    """
    if os.fspath(path) == "":
        raise OutputPathError("empty file name")
    target = Path(os.path.realpath(path))
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return target, None
    if stat.S_ISDIR(st.st_mode):
        raise OutputPathError("is a directory")
    if stat.S_ISSOCK(st.st_mode) or stat.S_ISBLK(st.st_mode):
        raise OutputPathError("is a socket or block device, not a file")
    return target, st


def probe_writable(path: str | os.PathLike[str]) -> None:
    """Raise ``OSError`` unless ``path`` can be written, checked by really creating (and removing) a
    temporary file next to it: ``os.access`` says yes to ``/proc`` and read-only mounts as root.

    A FIFO or character device (``/dev/stdout``) is written through, not replaced: it is accepted as is.
    """
    target, st = output_target(path)
    if st is not None and not stat.S_ISREG(st.st_mode):
        return
    if st is not None and not os.access(target, os.W_OK):
        raise PermissionError(errno.EACCES, "not writable")
    if not target.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, f"directory {target.parent} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot create a file in {target.parent} ({exc.strerror})") from None
    try:
        os.close(fd)
    finally:
        os.unlink(tmp)


def write_files_atomic(files: Mapping[str | os.PathLike[str], bytes]) -> None:
    """Write several files all or nothing.

    Every regular file is first written in full to a temporary file in its target's directory; only
    when all are written are they renamed into place, one after the other with SIGINT and SIGTERM held back,
    so a failure, Ctrl-C or SIGTERM leaves no temporary file and no new output. A symlink is followed: the file it
    points to is replaced, the link stays; a replaced file keeps its permissions. A FIFO or character
    device (``/dev/null``, ``/dev/stdout``) is never replaced: it is written through, after the
    regular files are in place.
    """
    pending: list[tuple[str, Path]] = []  # (temporary file, target)
    direct: list[tuple[Path, bytes, str | os.PathLike[str]]] = []
    try:
        for path, data in files.items():
            target, st = output_target(path)
            if st is not None and not stat.S_ISREG(st.st_mode):
                direct.append((target, data, path))
                continue
            with _naming(path):  # a full disk, a read-only mount ...: one line naming the file
                fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
                pending.append((tmp, target))
                # mkstemp creates 0600: keep the replaced file's mode, else what a plain open() would give.
                os.fchmod(fd, stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~current_umask())
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
        with sigint_held():
            while pending:
                tmp, target = pending[0]
                with _naming(target):
                    os.replace(tmp, target)
                pending.pop(0)
    except BaseException:
        for tmp, _ in pending:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        raise
    for target, data, path in direct:
        with _naming(path), open(target, "wb") as fh:
            fh.write(data)


class OutputWriteError(LazarusError, OSError):
    """An output file that could not be written (a full disk, a read-only mount ...): nothing was written.
    Also an ``OSError``, for callers that catch those. ``cause``: the system's reason alone."""

    cause: str = ""


@contextlib.contextmanager
def _naming(path: str | os.PathLike[str]) -> Iterator[None]:
    """An ``OSError`` inside becomes ``OutputWriteError`` naming ``path`` and the cause (one line)."""
    try:
        yield
    except OSError as exc:
        error = OutputWriteError(f"cannot write {os.fspath(path)}: {exc.strerror or exc}")
        error.cause = exc.strerror or str(exc)  # for callers that name the path their own way
        raise error from None


@contextlib.contextmanager
def sigint_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back (main thread, POSIX) while a few renames complete; delivered afterwards."""
    import signal
    import threading

    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def current_umask() -> int:
    """The process's umask (read by setting and restoring it): the mode a new file gets is ``0o666 & ~umask``."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
