"""Learned lenses: linear (Din et al. 2023) and tuned (Belrose et al. 2023) translators per layer.

``Lens`` (the artefact), ``resolve_lens(spec, loaded)``, ``fit_lens``, ``evaluate``. Importing this
package is cheap; numpy and MLX load with the submodules that need them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Lens", "evaluate", "fit_lens", "resolve_lens"]


def __getattr__(name: str) -> Any:
    if name == "Lens":
        from .artefact import Lens

        return Lens
    if name == "resolve_lens":
        from .store import resolve_lens

        return resolve_lens
    if name == "fit_lens":
        from .fit import fit_lens

        return fit_lens
    if name == "evaluate":
        from .eval import evaluate

        return evaluate
    raise AttributeError(name)
