"""The lens pass: prompt preparation (``prompt``), one run over a prompt (``run``: ``analyze`` -> ``LensRun``),
many prompts per forward pass (``batched``), log-probabilities spilled to disk (``spill``).

``analyze``, ``LensRun``, ``format_prompt`` and ``PreparedPrompt`` are importable from here.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:  # lazy: importing the package does not import MLX
    if name in ("analyze", "LensRun"):
        from . import run

        return getattr(run, name)
    if name in ("format_prompt", "PreparedPrompt"):
        from . import prompt

        return getattr(prompt, name)
    raise AttributeError(name)
