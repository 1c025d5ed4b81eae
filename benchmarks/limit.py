"""The `limit` section: this machine's float32 GEMM rate through MLX + OpenBLAS, and the lens grid against it.

``python benchmarks/limit.py`` prints the section; `run.py --sections limit` writes its RESULTS.md block.
The GEMM rate is the best of repeated products (the machine is noisy: the best run is the limit); the grid is
timed as the lens runs it (forward pass capturing every block's output, then `position_grid`: per layer and
position the top-1, entropy and KL to the final layer) and its FLOPs counted: the head at every layer and
position (layers x positions x vocabulary x d_model x 2) plus the forward pass (blocks, attention, the final
head). Then where the grid's time goes: the forward pass, the head GEMMs alone, the statistics alone. The grid
and the statistics are also timed with the statistics on one thread (the code before round 20, the same numbers),
interleaved with the rest in every repetition, so the before/after ratio comes from one run.
"""

from __future__ import annotations

import time
from typing import Any

ALIAS = "smollm2-135m-instruct"
BASE_IDS = [504, 3575, 282, 4649, 314]
GEMM_REPEATS = 8
GRID_REPEATS = 5
TARGET = 0.80  # issue 22: the 256-token grid at >= 80% of the GEMM rate


def _ids(n: int) -> list[int]:
    return (BASE_IDS * (n // len(BASE_IDS) + 1))[:n]


def gemm_rate(m: int, k: int, n: int, repeats: int = GEMM_REPEATS, transposed_b: bool = False) -> float:
    """Best GFLOP/s of ``(m x k) @ (k x n)`` float32 over ``repeats`` products (``transposed_b``: B stored as
    ``n x k`` and used transposed, as a tied head's embedding matrix is)."""
    from lazarus_report.core.runtime import import_mlx

    mx = import_mlx()
    a = mx.random.normal((m, k), dtype=mx.float32)
    b = mx.random.normal((n, k) if transposed_b else (k, n), dtype=mx.float32)
    mx.eval(a, b)

    def product() -> Any:
        return a @ (b.T if transposed_b else b)

    mx.eval(product())  # warm-up
    best = float("inf")
    for _ in range(repeats):
        s = time.perf_counter()
        mx.eval(product())
        best = min(best, time.perf_counter() - s)
    return 2.0 * m * k * n / best / 1e9


def forward_flops(args: Any, t: int) -> float:
    """FLOPs of one forward pass over ``t`` tokens with the head at every position (what `model(x)` does)."""
    d, ff, v = args.hidden_size, args.intermediate_size, args.vocab_size
    heads, kv = args.num_attention_heads, args.num_key_value_heads
    hd = getattr(args, "head_dim", None) or d // heads
    proj = d * heads * hd * 2 + d * kv * hd * 2  # q, o; k, v
    per_layer = 2 * t * (proj + 3 * d * ff) + 2 * 2 * t * t * heads * hd  # matmuls + scores and values
    return args.num_hidden_layers * per_layer + 2.0 * t * d * v


def head_flops(args: Any, layers: int, t: int) -> float:
    return 2.0 * layers * t * args.vocab_size * args.hidden_size


def _best(fn, repeats: int) -> tuple[float, float]:
    """(best, median) seconds of ``fn`` after one warm-up."""
    return _interleaved({"": fn}, repeats)[""]


def _interleaved(fns: dict[str, Any], repeats: int) -> dict[str, tuple[float, float]]:
    """(best, median) seconds of each of ``fns``, run in turn in every repetition (one warm-up each): on a
    loaded machine the ratios of interleaved timings are what can be compared."""
    import statistics

    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            s = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - s)
    return {k: (min(v), statistics.median(v)) for k, v in times.items()}


def grid_parts(parts: Any, n: int, repeats: int) -> dict[str, tuple[float, float]]:
    """Seconds (best, median) of the whole grid job and of its parts, SmolLM2 loaded, on ``n`` tokens."""
    import numpy as np

    from lazarus_report.lens import readout as lens
    from lazarus_report.models.hooks import capture_hidden

    mx = lens.mx
    layers = list(range(len(parts.layers)))
    last = layers[-1]

    def forward() -> dict:
        sink = capture_hidden(parts, _ids(n), layers)
        mx.eval(list(sink.values()))
        return sink

    def whole() -> None:
        sink = capture_hidden(parts, _ids(n), layers)
        lens.position_grid(parts, [sink[i][0] for i in layers], sink[last][0], top_k=1)

    sink = forward()
    hidden = [sink[i][0] for i in layers]
    rows = max(1, lens.GRID_BUDGET_BYTES // (4 * parts.args.vocab_size))  # the grid's own head block

    def heads() -> list[np.ndarray]:
        flat = mx.concatenate(hidden, axis=0)
        return [lens._grid_logits(parts, flat[a : a + rows]) for a in range(0, flat.shape[0], rows)]

    blocks = heads()
    final = lens.FinalReference.of(lens._grid_logits(parts, sink[last][0]))

    def stats() -> None:
        for z in blocks:
            for a in range(0, z.shape[0], n):
                lens.row_stats(z[a : a + n], 1, final)

    def one_thread(fn: Any) -> Any:
        """``fn`` with the statistics on one thread (the code before r20: the same numbers)."""

        def run() -> None:
            threads, lens.STATS_THREADS = lens.STATS_THREADS, 1
            try:
                fn()
            finally:
                lens.STATS_THREADS = threads

        return run

    return _interleaved(
        {
            "grid": whole,
            "grid_one_thread": one_thread(whole),
            "forward": forward,
            "head": heads,
            "stats": stats,
            "stats_one_thread": one_thread(stats),
        },
        repeats,
    )


def bench_limit(ctx: Any = None) -> tuple[list[str], dict]:
    repeats = GRID_REPEATS if ctx is None else max(3, ctx.reps)
    shapes = [
        ("head over 1,024 rows (the issue's reference product)", 1024, 576, 49152, False),
        ("head as the grid runs it: 256 rows x the tied embedding, transposed", 256, 576, 49152, True),
        ("forward, 256 tokens: MLP up/gate", 256, 576, 1536, True),
        ("forward, 256 tokens: attention projection", 256, 576, 576, True),
        ("forward, 64 tokens: MLP up/gate", 64, 576, 1536, True),
    ]
    rates = [(label, m, k, n, tb, gemm_rate(m, k, n, transposed_b=tb)) for label, m, k, n, tb in shapes]
    limit = max(r[-1] for r in rates[:2])
    rows = [
        "| float32 GEMM through MLX + OpenBLAS (best of 8) | m x k @ k x n | GFLOP/s |",
        "|---|---|---|",
        *(f"| {label} | {m} x {k} @ {k} x {n:,} | {r:.1f} |" for label, m, k, n, _, r in rates),
        "",
        f"The limit below: the best head-shaped rate, **{limit:.1f} GFLOP/s**.",
        "",
        "| grid, SmolLM2, all 30 layers x positions (top-1, entropy, KL) | best / median | GFLOP (head + forward) "
        "| achieved GFLOP/s (best) | % of the limit | % with the statistics on one thread (before r20) "
        "| grid / its head GEMMs alone (same run) | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    from lazarus_report.commands.analyzer import ModelAnalyzer

    data: dict = {"limit": limit, "rates": {r[0]: r[-1] for r in rates}}
    parts_rows = []
    with ModelAnalyzer.load(ALIAS) as analyzer:
        parts = analyzer.loaded.parts
        args = parts.args
        n_layers = len(parts.layers)
        for n in (64, 256):
            t = grid_parts(parts, n, repeats)
            flops = head_flops(args, n_layers, n) + forward_flops(args, n)
            best, med = t["grid"]
            achieved = flops / best / 1e9
            share = achieved / limit
            target = ""
            if n == 256:
                target = f">= {TARGET:.0%} -> **{'met' if share >= TARGET else 'MISSED'}**"
            one = t["grid_one_thread"][0]
            rows.append(
                f"| {n} tokens | {best:.2f} s / {med:.2f} s | {flops / 1e9:.0f} | {achieved:.1f} | {share:.0%} "
                f"| {flops / one / 1e9 / limit:.0%} | {best / t['head'][0]:.2f}x | {target} |"
            )
            hf = head_flops(args, n_layers, n)
            parts_rows.append(
                f"| {n} tokens | {t['forward'][0]:.2f} s | {t['head'][0]:.2f} s ({hf / t['head'][0] / 1e9:.0f} GFLOP/s) "
                f"| {t['stats'][0]:.2f} s ({t['stats_one_thread'][0]:.2f} s on one thread) |"
            )
            data[n] = {"seconds": best, "median": med, "gflop": flops / 1e9, "share": share, "parts": t}
    rows += [
        "",
        "Where the grid's time goes (each part timed alone, best of the repeats):",
        "",
        "| grid | forward pass, every block's output captured | head GEMMs over every layer x position | "
        "statistics (log-sum-exp, entropy, KL, top-1) |",
        "|---|---|---|---|",
        *parts_rows,
    ]
    return rows, data


if __name__ == "__main__":
    print("\n".join(bench_limit()[0]))
