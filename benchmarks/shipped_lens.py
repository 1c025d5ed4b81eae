"""`--only shipped-lens`: `analyze --lens tuned` through the lens shipped in the package, against the logit lens
and against the full (float32, full-rank) tuned lens of the same fit, fresh processes, interleaved.

The shipped lens is found by the model's identity (user cache first: the benchmark runs with an empty lens cache
of its own, the GGUF conversions shared through a symlink, so the shipped lens is the one read).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ALIAS = "smollm2-135m-instruct"
PROMPT = "The capital of France is"


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed: {proc.stderr[-500:]}")
    return time.perf_counter() - start


def _cache_without_lenses(tmp: Path) -> Path:
    """A cache root that shares the user's conversions (symlinks) but has no lenses of its own."""
    from lazarus_report.core.disk_cache import cache_root

    real = cache_root()
    root = tmp / "cache"
    root.mkdir()
    if real.is_dir():
        for entry in real.iterdir():
            if entry.name != "lenses":
                os.symlink(entry, root / entry.name)
    return root


def bench_shipped_lens(reps: int, full_tuned: Path | None) -> tuple[list[str], dict]:
    exe = str(Path(sys.executable).parent / "lazarus")
    base = [exe, "introspect", "analyze", "-m", ALIAS, "-p", PROMPT, "--all-layers", "-q"]
    variants = {"logit": base, "shipped tuned": [*base, "--lens", "tuned"]}
    if full_tuned is not None and (full_tuned / "lens.json").is_file():
        variants["full tuned (float32, rank 576)"] = [*base, "--lens", str(full_tuned)]
    times: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "LAZARUS_CACHE_DIR": str(_cache_without_lenses(Path(tmp)))}
        for cmd in variants.values():
            _timed(cmd, env)  # warm the page cache
        for _ in range(reps):
            for name, cmd in variants.items():
                times[name].append(_timed(cmd, env))
    med = {name: statistics.median(ts) for name, ts in times.items()}
    rows = ["| `analyze --all-layers` (text), SmolLM2 | median | vs logit |", "|---|---|---|"]
    for name, m in med.items():
        rows.append(f"| {name} | {m:.2f} s | {m / med['logit']:.3f}x |")
    rows.append(f"({reps} interleaved repetitions; target: shipped tuned <= 1.05x the logit lens)")
    return rows, med
