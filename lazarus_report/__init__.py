"""lazarus-report: logit-lens analysis of language models with MLX, and reports to share it.

The public API (``ModelAnalyzer``, ``AnalysisConfig``, ``LayerStrategy``, ``Lens``) is imported lazily so that
``import lazarus_report`` (and ``lazarus --help``) stays fast.
"""

from __future__ import annotations

from typing import Any

__all__ = ["AnalysisConfig", "AnalysisResult", "LayerStrategy", "Lens", "ModelAnalyzer"]
__version__ = "0.1.0"  # the distribution's version (pyproject.toml reads it from here)


def __getattr__(name: str) -> Any:
    if name in ("ModelAnalyzer", "AnalysisConfig", "LayerStrategy"):
        from .commands import analyzer as api

        return getattr(api, name)
    if name == "AnalysisResult":
        from .results.analysis import AnalysisResult

        return AnalysisResult
    if name == "Lens":
        from .lens.learned.artefact import Lens

        return Lens
    raise AttributeError(name)
