"""Bench section ``sizes``: models of the sizes people run (issue 22, part 3).

Llama-3.2-1B and Llama-3.1-8B shapes with random weights (``make_big_gguf.py``: Q4_K_M mix, and Q8_0 for the
1B), each measured in fresh processes, at default settings and with ``--max-memory 6GB``:

* ``analyze --all-layers`` on a short prompt: wall time of the process, its peak RSS (``VmHWM``), load and lens
  times, and the lens pass's achieved FLOP/s against the machine's float32 GEMM rate (measured here: a
  (1024 x 576) @ (576 x 49,152) product through MLX after the package's BLAS preload, best of 5). The forward
  pass and the head are also timed alone (FLOPs: 2 x tokens x block parameters; 2 x rows x vocabulary x hidden).
* streamed runs: the cost of decoding every GGUF block once (all matrices, as the streamed layers decode them).
* a 20-case suite (``introspect suite``, the bench's suite file): wall time and peak RSS.
* the 1B's layers x positions grid at 256 tokens (forward + every layer and position, top-5, entropy, KL).

Run alone: ``python benchmarks/run.py --only sizes`` (prints; builds the files once under build/big-gguf/).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PROMPT = "The capital of France is"
BUDGET = "6GB"
CACHE = ROOT / "build" / "big-gguf" / "cache"
FILES = [("1b", "q4_k_m"), ("1b", "q8_0"), ("8b", "q4_k_m")]
SUITE_FILES = [("1b", "q4_k_m"), ("8b", "q4_k_m")]
# Longer prompts (synthetic ids), where the pass becomes compute-bound: (size, mix, --max-memory, tokens)
LONG = [
    ("1b", "q4_k_m", None, 64),
    ("1b", "q4_k_m", None, 256),
    ("8b", "q4_k_m", BUDGET, 64),
    ("8b", "q4_k_m", BUDGET, 256),
]


def gemm_rate(reps: int = 5) -> float:
    """FLOP/s of a (1024 x 576) @ (576 x 49,152) float32 product through MLX (best of ``reps``)."""
    from lazarus_report.core.runtime import import_mlx

    mx = import_mlx()
    a = mx.random.normal((1024, 576))
    b = mx.random.normal((576, 49152))
    mx.eval(a, b)
    mx.eval(a @ b)
    best = float("inf")
    for _ in range(reps):
        s = time.perf_counter()
        mx.eval(a @ b)
        best = min(best, time.perf_counter() - s)
    return 2 * 1024 * 576 * 49152 / best


def read_rate(reps: int = 3) -> float:
    """Bytes/s of reading a 1 GB float32 array once (``mx.sum``, best of ``reps``): the memory bound of a
    forward pass over a few tokens, which reads every float32 weight once for 2 x tokens FLOP per 4 bytes."""
    from lazarus_report.core.runtime import import_mlx

    mx = import_mlx()
    a = mx.random.normal((2**28,))
    mx.eval(a)
    mx.eval(mx.sum(a))
    best = float("inf")
    for _ in range(reps):
        s = time.perf_counter()
        mx.eval(mx.sum(a))
        best = min(best, time.perf_counter() - s)
    return a.nbytes / best


def _peak_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _block_params(config: dict[str, Any]) -> int:
    """Weights of the transformer blocks' matrices (what the forward pass multiplies by), from the config."""
    h, inter = int(config["hidden_size"]), int(config["intermediate_size"])
    heads, kv = int(config["num_attention_heads"]), int(config["num_key_value_heads"])
    kv_dim = kv * h // heads
    return int(config["num_hidden_layers"]) * (2 * h * h + 2 * h * kv_dim + 3 * h * inter)


def decode_all(parts: Any) -> dict[str, float]:
    """Seconds to decode every streamed matrix once, a chunk of rows at a time (what one pass decodes at least),
    split into the blocks' matrices, the head (the tied embedding's as well) and an untied embedding (a pass decodes
    only the rows it looks up)."""
    from lazarus_report.models import streamed

    mx = streamed.mx
    in_blocks = {id(m) for block in parts.layers for _, m in block.named_modules()}
    out = {"blocks": 0.0, "head": 0.0, "embedding": 0.0}
    for _, m in parts.model.named_modules():
        if isinstance(m, (streamed.GGUFBlocksLinear, streamed.GGUFBlocksEmbedding)):
            n_out, n_in = m["weight"].shape[0], m.in_features
        elif isinstance(m, (streamed.StreamedQuantizedLinear, streamed.StreamedQuantizedEmbedding)):
            n_out, n_in = m["weight"].shape[0], m._in_features
        else:
            continue
        embedding = isinstance(m, (streamed.GGUFBlocksEmbedding, streamed.StreamedQuantizedEmbedding))
        kind = "blocks" if id(m) in in_blocks else ("embedding" if embedding and not parts.tied else "head")
        start = time.perf_counter()
        rows = streamed._rows_per_chunk(n_in)
        for a in range(0, n_out, rows):
            w = m._rows(a, min(n_out, a + rows))
            mx.eval(w)
            del w
        out[kind] += time.perf_counter() - start
    return out


def roofline(p: dict[str, Any], vocab: int, hidden: int) -> float:
    """FLOP/s bound of the lens pass ``p``: its FLOPs over (the longer of compute at the GEMM rate and reading its
    float32 weights once at the measured read rate) + decoding the streamed matrices it uses once."""
    weight_bytes = 4 * (p["block_params"] + vocab * hidden * p["head_matmuls"])
    decode = p["decode_s"]["blocks"] + p["decode_s"]["head"] if "decode_s" in p else 0.0
    return p["lens_flop"] / (max(p["lens_flop"] / p["gemm_flops"], weight_bytes / p["read_bytes_per_s"]) + decode)


def probe(path: str, max_memory: str | None, kind: str, tokens: int | None = None) -> dict[str, Any]:
    """In a fresh process: load ``path`` and run ``kind`` ("analyze" or "grid256"); times, FLOPs, peak RSS.
    ``tokens``: analyze that many synthetic token ids instead of the short prompt (the forward pass and head are
    then not timed again alone)."""
    from lazarus_report.commands.analyzer import ModelAnalyzer
    from lazarus_report.core.config import AnalysisConfig, LayerStrategy
    from lazarus_report.engine import run as engine
    from lazarus_report.engine.prompt import PreparedPrompt
    from lazarus_report.lens import readout as lens
    from lazarus_report.models.hooks import capture_hidden

    mx = lens.mx
    start = time.perf_counter()
    analyzer = ModelAnalyzer.load(path, max_memory=max_memory)
    loaded = analyzer.loaded
    load_s = time.perf_counter() - start
    parts = loaded.parts
    n_layers, hidden, vocab = len(parts.layers), int(parts.args.hidden_size), int(parts.args.vocab_size)
    layers = list(range(n_layers))
    out: dict[str, Any] = {"execution": loaded.execution, "load_s": load_s, "layers": n_layers}
    load_peak = _peak_rss()
    out["gemm_flops"] = gemm_rate(3)  # in this process, just before the pass: the machine's rate right now
    out["read_bytes_per_s"] = read_rate()
    mx.clear_cache()
    with open("/proc/self/clear_refs", "w") as f:  # the rates' arrays (1.3 GB) are not the model's peak
        f.write("5")
    block_params = _block_params(loaded.config)
    if kind in ("analyze", "analyze-grid"):
        # "analyze": what `analyze --all-layers` prints (the last position); "analyze-grid": with -o/--html's grid
        config = AnalysisConfig(layer_strategy=LayerStrategy.ALL, top_k=5, compute_grid=kind == "analyze-grid")
        ids = loaded.tokenizer.encode(PROMPT) if tokens is None else list(range(1000, 1000 + tokens))
        s, c = time.perf_counter(), time.process_time()
        engine.analyze(loaded, PROMPT, config, prepared=PreparedPrompt(PROMPT, False, list(ids)))
        out["lens_s"], out["lens_cpu_s"] = time.perf_counter() - s, time.process_time() - c
        t = len(ids)
        grid_rows = lens.GRID_MIN_ROWS if t < lens.GRID_MIN_ROWS else t
        # the last position's head over every layer + the final, then the grid's (final + every layer)
        head_rows = (n_layers + 1) + ((n_layers + 1) * grid_rows if kind == "analyze-grid" else 0)
    else:
        t = 256
        ids = [int(i) for i in range(1000, 1000 + t)]
        s = time.perf_counter()
        sink = capture_hidden(parts, ids, layers)
        lens.position_grid(parts, [sink[i][0] for i in layers], sink[n_layers - 1][0], top_k=5)
        out["lens_s"] = time.perf_counter() - s
        head_rows = (n_layers + 1) * t
        del sink
    out["tokens"] = t
    out["block_params"] = block_params
    out["head_matmuls"] = 1 if kind == "analyze" else 2  # the grid reads the head again (final + every layer)
    out["forward_flop"] = 2 * t * block_params
    out["head_flop"] = 2 * head_rows * vocab * hidden
    out["lens_flop"] = out["forward_flop"] + out["head_flop"]
    if loaded.execution == "streamed":
        c = time.process_time()
        out["decode_s"] = decode_all(parts)
        out["decode_all_cpu_s"] = time.process_time() - c
    out["peak_rss"] = max(load_peak, _peak_rss())
    if tokens is not None:
        return out
    # the forward pass alone, and one head matmul over the last position of every layer, alone
    s = time.perf_counter()
    sink = capture_hidden(parts, list(ids), layers)
    mx.eval(list(sink.values()))
    out["forward_s"] = time.perf_counter() - s
    rows = mx.concatenate([sink[i][0, -1:] for i in layers] + [sink[n_layers - 1][0, -1:]], axis=0)
    del sink
    s = time.perf_counter()
    lens.head_logits_np(parts, rows)
    out["head_s"] = time.perf_counter() - s
    out["head_rows"] = n_layers + 1
    out["peak_rss"] = max(out["peak_rss"], _peak_rss())
    return out


def _timed_child(cmd: list[str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (bytes: the child's own ``ru_maxrss`` through ``wait4``) and stdout of a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env["LAZARUS_CACHE_DIR"] = str(CACHE)  # tokenizers (and any float32 conversion) stay beside the files
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        if status != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {err.read().decode()[-2000:]}")
        return wall, usage.ru_maxrss * 1024, out.read().decode()


SUITE_PROMPTS = [
    "The capital of France is",
    "The capital of Japan is",
    "The capital of Italy is",
    "The colour of the sky on a clear day is",
    "Water boils at a temperature of",
    "The largest planet in the solar system is",
    "The opposite of hot is",
    "Two plus two equals",
    "The author of Hamlet is",
    "The chemical symbol for gold is",
    "A week has seven",
    "The first month of the year is",
    "Bees make",
    "The fastest land animal is the",
    "The square root of nine is",
    "Ice is frozen",
    "The currency of the United Kingdom is the",
    "Paris is a city in",
    "The tallest mountain on Earth is Mount",
    "The language spoken in Brazil is",
]


def suite_file(directory: Path) -> Path:
    """20 short raw prompts, each tracking a token, with a check every model passes (the costs are what is measured:
    random weights answer nothing)."""
    cases = [
        {"id": f"case-{i:02d}", "prompt": p, "raw": True, "track": [" the"], "expect": {"final_prob_at_least": 0.0}}
        for i, p in enumerate(SUITE_PROMPTS)
    ]
    path = directory / "sizes-suite.yaml"
    path.write_text(json.dumps({"name": "sizes", "cases": cases}, indent=1), encoding="utf-8")
    return path


def _gb(n: float) -> str:
    return f"{n / 2**30:.2f} GB"


def _analyze_row(size: str, mix: str, memory: str | None, wall: float, p: dict[str, Any]) -> str:
    rate_here = p["gemm_flops"]
    hidden = 2048 if size == "1b" else 4096

    def pct(flops: float) -> str:
        return f"{flops / 1e9:.1f} GFLOP/s ({100 * flops / rate_here:.0f}%)"

    lens_rate = p["lens_flop"] / p["lens_s"]
    bound = roofline(p, 128256, hidden)
    fwd = pct(p["forward_flop"] / p["forward_s"]) if "forward_s" in p else "—"
    head = pct(2 * p["head_rows"] * 128256 * hidden / p["head_s"]) if "head_s" in p else "—"
    decode = "—"
    if "decode_s" in p:
        used = p["decode_s"]["blocks"] + p["decode_s"]["head"]
        decode = f"{used:.1f} s ({100 * used / p['lens_s']:.0f}% of the pass)"
    return (
        f"| {size.upper()} {mix.upper()} | {memory or 'default'} | {p['execution']} | {p['tokens']} | {wall:.1f} s "
        f"| {_gb(p['rss'])} | {p['load_s']:.1f} s | {p['lens_s']:.1f} s | {pct(lens_rate)} | {pct(bound)} "
        f"| {100 * lens_rate / bound:.0f}% | {fwd} | {head} | {decode} "
        f"| {rate_here / 1e9:.0f} GFLOP/s, {p['read_bytes_per_s'] / 2**30:.1f} GB/s read |"
    )


def bench_sizes(
    reps: int = 1,
    files: list[tuple[str, str]] | None = None,
    parts: tuple[str, ...] = ("analyze", "long", "suite", "grid"),
) -> tuple[list[str], dict]:
    """The section's Markdown rows and its numbers (``parts``: which measurements)."""
    sys.path.insert(0, str(HERE))
    import make_big_gguf as big

    rate = gemm_rate()
    rows = [f"GEMM rate (float32, (1024 x 576) @ (576 x 49,152) through MLX, best of 5): **{rate / 1e9:.0f} GFLOP/s**"]
    table = [
        "",
        "Roofline bound of each lens pass: its FLOPs / (the longer of computing them at the GEMM rate and reading its "
        "float32 weights once at the 1-thread read rate + decoding the streamed matrices it uses once), both rates "
        "measured in the same process; a 5-token pass reads every weight for 10 FLOP each (memory-bound), at 64 and "
        "256 tokens the work becomes compute-bound.",
        "",
        "| model | memory | execution | tokens | wall (process) | peak RSS | load | lens pass | lens FLOP/s (% of GEMM) "
        "| its roofline bound (% of GEMM) | lens / bound | forward alone (% GEMM) | head alone, 1 row/layer (% GEMM) "
        "| decode the pass's matrices once | GEMM and memory read rates then |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    data: dict[str, Any] = {"gemm_flops": rate}
    py = sys.executable
    if "analyze" in parts or "long" in parts:
        rows += table
        runs = [(size, mix, memory, None) for size, mix in files or FILES for memory in (None, BUDGET)]
        runs = (runs if "analyze" in parts else []) + (LONG if "long" in parts else [])
        for size, mix, memory, tokens in runs:
            path = big.cached_gguf(big.SHAPES[size], mix, log=lambda m: print(m, file=sys.stderr, flush=True))
            cmd = [py, str(HERE / "sizes.py"), "--probe", str(path), "--kind", "analyze"]
            cmd += (["--max-memory", memory] if memory else []) + (["--tokens", str(tokens)] if tokens else [])
            wall, _, text = _timed_child(cmd)
            p = json.loads(text.strip().splitlines()[-1])
            p.update(wall_s=wall, rss=p["peak_rss"])  # the process's peak without the rate measurements' arrays
            data[f"{size}-{mix}-{memory or 'default'}-analyze{tokens or ''}"] = p
            rows.append(_analyze_row(size, mix, memory, wall, p))
            print(rows[-1], file=sys.stderr, flush=True)
    if "suite" in parts:
        rows += ["", "| model | memory | 20-case suite wall | peak RSS |", "|---|---|---|---|"]
        with tempfile.TemporaryDirectory() as tmp:
            suite = suite_file(Path(tmp))
            for size, mix in SUITE_FILES if files is None else files:
                path = big.cached_gguf(big.SHAPES[size], mix)
                for memory in (None, BUDGET):
                    cmd = [py, "-m", "lazarus_report", "introspect", "suite", str(suite), "-m", str(path)]
                    cmd += ["-o", str(Path(tmp) / "out.json"), "-q"] + (["--max-memory", memory] if memory else [])
                    try:
                        wall, rss, _ = _timed_child(cmd)
                    except RuntimeError as exc:
                        rows.append(f"| {size.upper()} {mix.upper()} | {memory or 'default'} | failed: {exc} | |")
                        print(rows[-1], file=sys.stderr, flush=True)
                        continue
                    data[f"{size}-{mix}-{memory or 'default'}-suite"] = {"wall_s": wall, "rss": rss}
                    rows.append(f"| {size.upper()} {mix.upper()} | {memory or 'default'} | {wall:.1f} s | {_gb(rss)} |")
                    print(rows[-1], file=sys.stderr, flush=True)
    if "grid" in parts:
        path = big.cached_gguf(big.LLAMA_1B, "q4_k_m")
        wall, _, text = _timed_child([py, str(HERE / "sizes.py"), "--probe", str(path), "--kind", "grid256"])
        p = json.loads(text.strip().splitlines()[-1])
        g = p["lens_flop"] / p["lens_s"]
        rate = p["gemm_flops"]
        rss = p["peak_rss"]
        data["1b-grid256"] = {**p, "wall_s": wall, "rss": rss}
        rows += [
            "",
            f"1B Q4_K_M grid at 256 tokens (forward + {p['layers']} layers x 256 positions, top-5, entropy, KL): "
            f"{p['lens_s']:.1f} s, {p['lens_flop'] / 1e9:.0f} GFLOP, **{g / 1e9:.0f} GFLOP/s ({100 * g / rate:.0f}% of GEMM)**, "
            f"peak RSS {_gb(rss)}",
        ]
    return rows, data


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--probe")
    parser.add_argument("--kind", default="analyze", choices=["analyze", "analyze-grid", "grid256"])
    parser.add_argument("--max-memory")
    parser.add_argument("--tokens", type=int)
    parser.add_argument("--files", help="e.g. 1b-q4_k_m,8b-q4_k_m (default: all)")
    parser.add_argument("--parts", default="analyze,long,suite,grid", help="which measurements (default: all)")
    args = parser.parse_args()
    if args.probe:
        print(json.dumps(probe(args.probe, args.max_memory, args.kind, args.tokens)))
        return
    files = [tuple(f.split("-", 1)) for f in args.files.split(",")] if args.files else None
    parts = tuple(args.parts.split(","))
    print("\n".join(bench_sizes(files=files, parts=parts)[0]))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
