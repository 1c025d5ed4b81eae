"""`--only lens-switch`: `analyze --lens all` (the logit lens, then the shipped linear and tuned lenses, read from
one forward pass) against `analyze --lens tuned`, SmolLM2 loaded once, interleaved, medians: the engine alone for
the terminal view (no grid) and the engine plus the HTML page (the grid of the last positions the heatmap shows,
as `--html` computes it). The lenses are found as the CLI finds them (user cache, then shipped)."""

from __future__ import annotations

import dataclasses
import statistics
import time

ALIAS = "smollm2-135m-instruct"
PROMPT = "The capital of France is"


def bench_lens_switch(reps: int) -> tuple[list[str], dict]:
    from lazarus_report.commands.analyzer import ModelAnalyzer
    from lazarus_report.core.config import AnalysisConfig, LayerStrategy
    from lazarus_report.render.html import render_html
    from lazarus_report.render.report_model import heatmap_positions

    analyzer = ModelAnalyzer.load(ALIAS)
    n = analyzer.info.num_layers
    base = AnalysisConfig(layer_strategy=LayerStrategy.ALL, use_chat_template=False)
    html = dataclasses.replace(base, compute_grid=True, grid_last_positions=heatmap_positions(n))
    text = dataclasses.replace(base, compute_grid=False)
    variants = {
        ("text", "tuned"): (dataclasses.replace(text, lens="tuned"), False),
        ("text", "all"): (dataclasses.replace(text, extra_lenses=["all"]), False),
        ("html", "tuned"): (dataclasses.replace(html, lens="tuned"), True),
        ("html", "all"): (dataclasses.replace(html, extra_lenses=["all"]), True),
    }
    times: dict[tuple[str, str], list[float]] = {k: [] for k in variants}
    for config, page in variants.values():  # warm up (lens files read, MLX compiled)
        result = analyzer.run(PROMPT, config)
        if page:
            render_html(result)
    for _ in range(reps):
        for key, (config, page) in variants.items():
            start = time.perf_counter()
            result = analyzer.run(PROMPT, config)
            if page:
                render_html(result)
            times[key].append(time.perf_counter() - start)
    kinds = [result.lens_kind, *(v.lens.kind for v in result.lens_views)]
    med = {f"{a} {b}": statistics.median(ts) for (a, b), ts in times.items()}
    rows = ["| SmolLM2, all layers, in process | `--lens tuned` | `--lens all` | all / tuned |", "|---|---|---|---|"]
    for what, label in (("text", "terminal (no grid)"), ("html", "`--html` (grid + page)")):
        t, a = med[f"{what} tuned"], med[f"{what} all"]
        rows.append(f"| {label} | {t * 1000:.0f} ms | {a * 1000:.0f} ms | {a / t:.2f}x |")
    rows.append(f"(`--lens all` read {', '.join(kinds)}; {reps} interleaved repetitions, medians)")
    return rows, med
