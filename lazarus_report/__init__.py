"""lazarus-report: logit-lens analysis of language models with MLX, and reports to share it.

The public API (``ModelAnalyzer``, ``AnalysisConfig``, ``LayerStrategy``, ``Lens``) is imported lazily so that
``import lazarus_report`` (and ``lazarus --help``) stays fast.
"""

from __future__ import annotations

from typing import Any

from .core.version import __version__
from .results.codec import register_notebook_html

__all__ = ["AnalysisConfig", "AnalysisResult", "LayerStrategy", "Lens", "ModelAnalyzer", "__version__"]


def _notebook_html(result: Any) -> str:
    from .render.html import render_notebook_html

    return render_notebook_html(result)


register_notebook_html(_notebook_html)


def __getattr__(name: str) -> Any:
    if name in ("ModelAnalyzer", "AnalysisConfig", "LayerStrategy"):
        if name == "ModelAnalyzer":
            from .commands.analyzer import ModelAnalyzer

            return ModelAnalyzer
        from .core import config

        return getattr(config, name)
    if name == "AnalysisResult":
        from .results.analysis import AnalysisResult

        return AnalysisResult
    if name == "Lens":
        from .lens.learned.artefact import Lens

        return Lens
    raise AttributeError(name)
