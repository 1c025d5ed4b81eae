"""Load an optimized BLAS into the process before MLX, on Linux.

The mlx-cpu wheel bundles the reference (netlib) BLAS: float32 matmuls run 30-100x slower than
with OpenBLAS. Loading OpenBLAS with RTLD_GLOBAL *before* ``import mlx.core`` makes MLX resolve
``cblas_*`` to it. This must happen before anything imports mlx.

Environment variable ``LAZARUS_BLAS``: a path to another BLAS library exporting plain ``cblas_*``
symbols, or ``0`` / ``none`` / ``off`` to keep MLX's bundled BLAS.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

ENV_VAR = "LAZARUS_BLAS"
FIX_COMMAND = "sudo apt-get install -y libopenblas0-pthread"

_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib64/libopenblas.so.0",
    "/usr/lib/libopenblas.so.0",
)

_status: str | None = None


def preload_blas() -> str:
    """Load the BLAS (once) and return a one-line description of what MLX will use."""
    global _status
    if _status is not None:
        return _status
    _status = _preload()
    return _status


def _preload() -> str:
    if sys.platform == "darwin":
        return "Accelerate (macOS)"
    if platform.system() != "Linux":
        return "MLX default"
    choice = os.environ.get(ENV_VAR, "").strip()
    if choice.lower() in {"0", "none", "off", "false"}:
        return f"bundled reference BLAS ({ENV_VAR}={choice})"
    if "mlx.core" in sys.modules:
        return "bundled reference BLAS (mlx was imported before lazarus could load OpenBLAS)"
    paths = [choice] if choice else [p for p in _CANDIDATES if os.path.exists(p)]
    for path in paths:
        try:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        except OSError as exc:
            if choice:
                return f"bundled reference BLAS ({ENV_VAR}={choice} could not be loaded: {exc})"
            continue
        return f"OpenBLAS ({path})" if "openblas" in path.lower() else f"{os.path.basename(path)} ({path})"
    return f"bundled reference BLAS (slow; for 30-100x faster CPU runs: {FIX_COMMAND})"


def import_mlx():
    """Import ``mlx.core`` after the BLAS preload. Use this instead of a bare import."""
    preload_blas()
    import mlx.core as mx

    return mx


# Where an imported module states its distribution's version: read there, ``importlib.metadata`` (whose
# import, with the ``email`` package it needs, costs 30-50 ms) is only the fallback.
_VERSION_MODULES = {
    "lazarus-report": "lazarus_report",
    "mlx": "mlx.core",
    "mlx-lm": "mlx_lm._version",
    "tokenizers": "tokenizers",
}


def versions() -> dict[str, str]:
    """Python, platform and the versions of the packages that shape a result."""
    out = {"python": platform.python_version(), "platform": f"{platform.system()} {platform.machine()}"}
    for dist in _VERSION_MODULES:
        version = package_version(dist)
        if version is not None:
            out[dist] = version
    return out


def package_version(dist: str) -> str | None:
    """The installed version of distribution ``dist`` (one of ``_VERSION_MODULES``; others through
    ``importlib.metadata``), None when it is not installed."""
    import sys

    module_name = _VERSION_MODULES.get(dist, "")
    package = module_name.split(".")[0]
    module = sys.modules.get(module_name) if module_name else None
    if module is None and package in sys.modules and package != module_name:
        # mlx_lm._version imports nothing (with mlx-lm's package, real or light, already loaded)
        import importlib

        try:
            module = importlib.import_module(module_name)
        except ImportError:
            module = None
    version = getattr(module, "__version__", None)
    if isinstance(version, str):
        return version
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None
