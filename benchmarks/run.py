"""`make bench`: measure lazarus-report side by side with its baselines and write RESULTS.md.

The machines are noisy, so every target is a ratio of two things measured in the same run,
interleaved (A B A B ...), and the medians are compared. Run in the `make demo` environment
(no torch: torch slows `import transformers`); the transformers/PyTorch reference runs in the
test environment as a separate worker process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the section modules beside this file

from sections import Section, block_text, check_registry, select, stamp_line, write_block

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
ALIAS = "smollm2-135m-instruct"
PROMPT = "The capital of France is"
BASE_IDS = [504, 3575, 282, 4649, 314]


def ids_of(n: int) -> list[int]:
    return (BASE_IDS * (n // len(BASE_IDS) + 1))[:n]


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def fmt(s: float) -> str:
    return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.2f} s"


# --- environment ---------------------------------------------------------------------------------


def environment() -> list[str]:
    from lazarus_report.core.runtime import preload_blas

    blas = preload_blas()
    from importlib import metadata

    versions = {d: metadata.version(d) for d in ("mlx", "mlx-lm", "numpy", "transformers") if _has(d)}
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return [
        f"- machine: {platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu})",
        f"- python {platform.python_version()}; " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        f"- BLAS: {blas}",
        f"- commit: {commit or 'n/a'}",
    ]


def _has(dist: str) -> bool:
    from importlib import metadata

    try:
        metadata.version(dist)
        return True
    except metadata.PackageNotFoundError:
        return False


# --- A: last-position lens vs the bare forward pass ---------------------------------------------


def bench_last_position(analyzer, reps: int) -> tuple[list[str], dict]:
    """The engine's whole last-position job (all layers, top-5, one tracked token, no grid)
    against the model's own forward pass."""
    from lazarus_report.core.config import AnalysisConfig, LayerStrategy
    from lazarus_report.engine import run as engine
    from lazarus_report.engine.prompt import PreparedPrompt
    from lazarus_report.lens import readout as lens

    mx = lens.mx
    parts = analyzer.loaded.parts
    model = analyzer.loaded.model
    config = AnalysisConfig(layer_strategy=LayerStrategy.ALL, top_k=5, track_tokens=[" Paris"], compute_grid=False)
    rows = [
        "| tokens | bare forward `model(x)` | backbone + last-position head | lens, all 30 layers, last position | lens / bare forward | lens / backbone+head |",
        "|---|---|---|---|---|---|",
    ]
    data = {}
    for n in (8, 64, 256):
        x = mx.array([ids_of(n)])

        def forward():
            mx.eval(model(x)[:, -1])

        def backbone_head():
            h = parts.backbone(x)
            mx.eval(parts.head(h[:, -1]))

        def lens_all():
            engine.analyze(analyzer.loaded, "", config, prepared=PreparedPrompt("", False, ids_of(n)))

        for f in (forward, backbone_head, lens_all):
            f()  # warm-up
        t = {"forward": [], "backbone": [], "lens": []}
        for _ in range(reps):
            for key, f in (("forward", forward), ("backbone", backbone_head), ("lens", lens_all)):
                s = time.perf_counter()
                f()
                t[key].append(time.perf_counter() - s)
        m = {k: median(v) for k, v in t.items()}
        data[n] = m
        rows.append(
            f"| {n} | {fmt(m['forward'])} | {fmt(m['backbone'])} | {fmt(m['lens'])} | "
            f"**{m['lens'] / m['forward']:.2f}x** | {m['lens'] / m['backbone']:.2f}x |"
        )
    return rows, data


# --- B: full grid vs the transformers/PyTorch reference -------------------------------------------


def reference_python() -> str | None:
    candidate = os.environ.get("LAZARUS_BENCH_REFERENCE_PYTHON") or str(ROOT / ".venv-test" / "bin" / "python")
    if not Path(candidate).exists():
        return None
    ok = subprocess.run([candidate, "-c", "import torch, transformers"], capture_output=True)
    return candidate if ok.returncode == 0 else None


class Reference:
    def __init__(self, python: str, gguf: str):
        self.proc = subprocess.Popen(
            [python, str(ROOT / "benchmarks" / "reference_worker.py"), gguf],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.info = json.loads(self.proc.stdout.readline())

    def run(self, job: str, n: int) -> float:
        self.proc.stdin.write(f"{job} {n}\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())["seconds"]

    def close(self) -> None:
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=30)
        except Exception:
            self.proc.kill()


def bench_grid(analyzer, reps: int) -> tuple[list[str], dict]:
    from lazarus_report.lens import readout as lens
    from lazarus_report.models.hooks import capture_hidden

    parts = analyzer.loaded.parts
    n_layers = len(parts.layers)
    layers = list(range(n_layers))
    python = reference_python()
    if python is None:
        return ["(skipped: no environment with torch; run `make install-test` first)"], {}
    ref = Reference(python, analyzer.info.path)
    rows = [
        "| tokens | lazarus grid (forward + all layers x positions, top-5, entropy, KL) | transformers/PyTorch reference, same job | lazarus / reference |",
        "|---|---|---|---|",
    ]
    data = {}
    try:
        for n in (64, 256):

            def ours():
                sink = capture_hidden(parts, ids_of(n), layers)
                lens.position_grid(parts, [sink[i][0] for i in layers], sink[n_layers - 1][0], top_k=5)

            ours()
            ref.run("grid", n)
            a, b = [], []
            for _ in range(reps):
                s = time.perf_counter()
                ours()
                a.append(time.perf_counter() - s)
                b.append(ref.run("grid", n))
            data[n] = (median(a), median(b))
            rows.append(f"| {n} | {fmt(median(a))} | {fmt(median(b))} | **{median(a) / median(b):.2f}x** |")
    finally:
        ref.close()
    return rows, data


# --- C: peak memory of the grid at 1024 tokens (fresh process) ------------------------------------


def memory_probe(n: int, max_memory: str | None = None, grid: bool = True, layer_step: int | None = None) -> dict:
    """Runs in a fresh process. Peak RSS of the load phase and, separately, of the lens phase
    (the kernel's peak-RSS mark is reset between them through /proc/self/clear_refs)."""
    from lazarus_report.commands.analyzer import ModelAnalyzer
    from lazarus_report.core.config import AnalysisConfig, LayerStrategy
    from lazarus_report.engine import run as engine
    from lazarus_report.engine.prompt import PreparedPrompt
    from lazarus_report.lens import readout as lens

    mx = lens.mx
    before = _rss_now()
    analyzer = ModelAnalyzer.load(ALIAS, max_memory=max_memory)
    from mlx.utils import tree_flatten

    model_bytes = sum(v.nbytes for _, v in tree_flatten(analyzer.loaded.model.parameters()))
    load_peak = _peak_rss()
    loaded = _rss_now()
    _reset_peak_rss()
    mx.reset_peak_memory()
    # the grid at every layer and position (or, grid=False, the last position only: the terminal view)
    strategy = LayerStrategy.EVENLY_SPACED if layer_step else LayerStrategy.ALL
    config = AnalysisConfig(layer_strategy=strategy, layer_step=layer_step or 4, top_k=5, compute_grid=grid)
    start = time.perf_counter()
    engine.analyze(analyzer.loaded, "", config, prepared=PreparedPrompt("", False, ids_of(n)))
    return {
        "lens_seconds": time.perf_counter() - start,
        "execution": analyzer.info.execution,
        "model_bytes": model_bytes,
        "rss_before_load": before,
        "rss_after_load": loaded,
        "load_peak_rss": load_peak,
        "lens_peak_rss": _peak_rss(),
        "mlx_peak": mx.get_peak_memory(),
    }


def _rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def bench_memory() -> tuple[list[str], dict]:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-probe", "1024"], capture_output=True, text=True, check=True
    )
    m = json.loads(out.stdout.strip().splitlines()[-1])
    mb = 2**20
    lens_growth = m["lens_peak_rss"] - m["rss_before_load"]
    load_growth = m["load_peak_rss"] - m["rss_before_load"]
    limit = m["model_bytes"] + 256 * mb
    rows = [
        "| measure | value |",
        "|---|---|",
        f"| model parameters (float32, as run) | {m['model_bytes'] / mb:.0f} MB |",
        f"| RSS after loading, above the process before loading | {(m['rss_after_load'] - m['rss_before_load']) / mb:.0f} MB |",
        f"| peak RSS while running the lens (forward + grid), above the process before loading | {lens_growth / mb:.0f} MB |",
        f"| MLX peak allocation while running the lens (model included) | {m['mlx_peak'] / mb:.0f} MB |",
        f"| target: model size + 256 MB | {limit / mb:.0f} MB -> **{'met' if lens_growth <= limit else 'MISSED'}** |",
        f"| (peak RSS while loading, for the record: quantized file + float32 copy + conversion temporaries) | {load_growth / mb:.0f} MB |",
    ]
    return rows, m


# --- C2: memory-bounded execution and long prompts (issue 11) --------------------------------------

BUDGET = "250MB"


def _lens_numbers(path: Path) -> tuple[list[int], dict[tuple[int, int], float], list[list[int]], list[list[float]]]:
    """(top-1 id per layer, {(layer, token id): prob} of the top-k, grid top-1 ids, grid top-1 probs) of a result."""
    data = json.loads(path.read_text(encoding="utf-8"))
    preds = data["layer_predictions"]
    top1 = [p["top_tokens"][0]["token_id"] for p in preds]
    probs = {(p["layer_idx"], t["token_id"]): t["prob"] for p in preds for t in p["top_tokens"]}
    return top1, probs, data["grid"]["top_token_ids"], data["grid"]["top_probs"]


def bench_bounded(reps: int) -> tuple[list[str], dict]:
    """SmolLM2 analyze (all layers, grid, JSON) by default vs under --max-memory: fresh processes, interleaved."""
    import tempfile

    exe = str(Path(sys.executable).parent / "lazarus")
    out = Path(tempfile.mkdtemp(prefix="lazarus-bench-memory-"))
    base = [exe, "introspect", "analyze", "-m", ALIAS, "-p", PROMPT, "--all-layers", "-q"]
    commands = {
        "default": [*base, "-o", str(out / "default.json")],
        "bounded": [*base, "--max-memory", BUDGET, "-o", str(out / "bounded.json")],
    }
    subprocess.run(commands["default"], capture_output=True, check=True)  # warm the page cache and tokenizer cache
    walls: dict[str, list[float]] = {k: [] for k in commands}
    peaks: dict[str, list[int]] = {k: [] for k in commands}
    for _ in range(reps):
        for name, cmd in commands.items():
            wall, peak = _timed_child(cmd)
            walls[name].append(wall)
            peaks[name].append(peak)
    a_top1, a_probs, a_grid, a_gprobs = _lens_numbers(out / "default.json")
    b_top1, b_probs, b_grid, b_gprobs = _lens_numbers(out / "bounded.json")
    execution = json.loads((out / "bounded.json").read_text(encoding="utf-8"))["model"]["execution"]
    same_top1 = a_top1 == b_top1 and a_grid == b_grid
    shared = set(a_probs) & set(b_probs)
    dp = max([abs(a_probs[k] - b_probs[k]) for k in shared] or [float("nan")])
    dp_grid = max(abs(x - y) for ra, rb in zip(a_gprobs, b_gprobs) for x, y in zip(ra, rb))
    mb = 2**20
    wa, wb = median(walls["default"]), median(walls["bounded"])
    pa, pb = median(peaks["default"]), median(peaks["bounded"])
    cmd = f'`lazarus introspect analyze -m {ALIAS} -p "{PROMPT}" --all-layers -o FILE`'
    rows = [
        "| run | execution | median peak RSS (whole process) | median wall |",
        "|---|---|---|---|",
        f"| {cmd} | float32 | {pa / mb:.0f} MB | {fmt(wa)} |",
        f"| the same with `--max-memory {BUDGET}` | {execution} | {pb / mb:.0f} MB | {fmt(wb)} |",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| peak RSS, bounded / default | {pb / pa:.2f}x | <= 0.65x -> **{'met' if pb / pa <= 0.65 else 'MISSED'}** |",
        f"| wall, bounded / default | {wb / wa:.2f}x | <= 2.0x -> **{'met' if wb / wa <= 2.0 else 'MISSED'}** |",
        f"| top-1 identical at every layer (and every grid cell) | {'yes' if same_top1 else 'NO'} | yes -> "
        f"**{'met' if same_top1 else 'MISSED'}** |",
        f"| max \\|dP\\| over the top-5 of every layer / the grid's top-1 | {dp:.1e} / {dp_grid:.1e} | <= 1e-4 -> "
        f"**{'met' if max(dp, dp_grid) <= 1e-4 else 'MISSED'}** |",
    ]
    return rows, {"walls": walls, "peaks": peaks, "dp": dp, "dp_grid": dp_grid, "same_top1": same_top1}


def _probe(n: int, max_memory: str | None = None, grid: bool = True, layer_step: int | None = None) -> dict:
    cmd = [sys.executable, __file__, "--memory-probe", str(n)]
    if layer_step:
        cmd += ["--probe-layer-step", str(layer_step)]
    if max_memory:
        cmd += ["--probe-max-memory", max_memory]
    if not grid:
        cmd += ["--probe-no-grid"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_long_prompts() -> tuple[list[str], dict]:
    """Fresh processes: the grid at 1024 tokens against its target, and 4096-token prompts."""
    mb = 2**20
    runs = [
        ("1024", "all 30 layers x 1024 positions, top-5 (the grid)", _probe(1024)),
        (
            "4096",
            "`analyze --html`'s default layers (every 4th + the last: 9) x 4096 positions, top-5",
            _probe(4096, layer_step=4),
        ),
        ("4096", "last position only, all 30 layers (the terminal view)", _probe(4096, grid=False)),
        ("4096", f"the 9-layer grid as above, `--max-memory {BUDGET}`", _probe(4096, BUDGET, layer_step=4)),
    ]
    rows = [
        "| tokens | job | execution | peak RSS above the process before loading | model + 256 MB | lens wall |",
        "|---|---|---|---|---|---|",
    ]
    for n, job, m in runs:
        growth = m["lens_peak_rss"] - m["rss_before_load"]
        limit = m["model_bytes"] + 256 * mb
        verdict = f" -> **{'met' if growth <= limit else 'MISSED'}**" if n == "1024" else ""
        rows.append(
            f"| {n} | {job} | {m['execution']} | {growth / mb:.0f} MB | {limit / mb:.0f} MB{verdict} | "
            f"{fmt(m['lens_seconds'])} |"
        )
    return rows, {f"{n} {job}": m for n, job, m in runs}


# --- D: end to end ---------------------------------------------------------------------------------


def bench_cli(reps: int) -> tuple[list[str], dict]:
    exe = str(Path(sys.executable).parent / "lazarus")
    analyze = [exe, "introspect", "analyze", "-m", ALIAS, "-p", PROMPT, "--all-layers"]
    helpcmd = [exe, "--help"]
    subprocess.run(analyze, capture_output=True, check=True)  # warm the page cache and tokenizer cache
    t_an, t_help = [], []
    for _ in range(reps):
        for cmd, bucket in ((analyze, t_an), (helpcmd, t_help)):
            s = time.perf_counter()
            subprocess.run(cmd, capture_output=True, check=True)
            bucket.append(time.perf_counter() - s)
    a, h = median(t_an), median(t_help)
    rows = [
        "| command | median wall | target |",
        "|---|---|---|",
        f'| `lazarus introspect analyze -m {ALIAS} -p "{PROMPT}" --all-layers` | {fmt(a)} | <= 1.0 s (published lazarus: 3.7 s) -> **{"met" if a <= 1.0 else "MISSED"}** |',
        f"| `lazarus --help` | {fmt(h)} | <= 0.25 s -> **{'met' if h <= 0.25 else 'MISSED'}** |",
    ]
    return rows, {"analyze": a, "help": h}


# --- E: compare end to end and its peak memory ------------------------------------------------------


ADAPTER = ROOT / "examples" / "weather-adapter" / "adapter"
WEATHER = "What's the weather in Paris?"


def _timed_child(cmd: list[str]) -> tuple[float, int]:
    """(wall seconds, peak RSS bytes) of one child process (its own rusage, via wait4)."""
    s = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - s
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{cmd} failed: {proc.stderr.read().decode()[-500:]}")
    return wall, usage.ru_maxrss * 1024


def bench_compare(reps: int) -> tuple[list[str], dict]:
    import tempfile

    from lazarus_report.models.resolve import ALIASES, alias_path

    exe = str(Path(sys.executable).parent / "lazarus")
    # A second SmolLM2-size model that is a different file as far as lazarus knows (no reuse).
    other = Path(tempfile.mkdtemp()) / "second-model.gguf"
    os.symlink(alias_path(ALIASES[ALIAS]), other)
    analyze = [exe, "introspect", "analyze", "-m", ALIAS, "-p", WEATHER, "--all-layers", "-t", "get_weather"]
    commands = {
        "two models (two loads)": [
            exe,
            "introspect",
            "compare",
            "-m1",
            ALIAS,
            "-m2",
            str(other),
            "-p",
            WEATHER,
            "--track",
            "get_weather",
        ],
        "base vs base + LoRA adapter": [
            exe,
            "introspect",
            "compare",
            "-m1",
            ALIAS,
            "-m2",
            ALIAS,
            "--adapter2",
            str(ADAPTER),
            "-p",
            WEATHER,
            "--track",
            "get_weather",
        ],
    }
    for cmd in commands.values():
        _timed_child(cmd)  # warm caches
    walls: dict[str, list[float]] = {k: [] for k in ["analyze", *commands]}
    rss: dict[str, list[int]] = {k: [] for k in walls}
    for _ in range(reps):
        for key, cmd in (("analyze", analyze), *commands.items()):
            w, r = _timed_child(cmd)
            walls[key].append(w)
            rss[key].append(r)
    mb = 2**20
    ap = max(rss["analyze"])
    rows = [
        "| command (all 30 layers, chat template, tracked get_weather) | median wall | peak RSS | targets |",
        "|---|---|---|---|",
        f"| `analyze`, one model (reference) | {fmt(median(walls['analyze']))} | {ap / mb:.0f} MB | |",
    ]
    for key in commands:
        w, p = median(walls[key]), max(rss[key])
        rows.append(
            f"| `compare`, {key} | {fmt(w)} | {p / mb:.0f} MB ({p / ap:.2f}x analyze) | "
            f"<= 2.0 s -> **{'met' if w <= 2.0 else 'MISSED'}**; <= 1.10x -> **{'met' if p <= 1.10 * ap else 'MISSED'}** |"
        )
    return rows, {k: median(v) for k, v in walls.items()}


# --- suites: 20 cases on two models -----------------------------------------------------------------

SUITE_EXTRA = [  # 6 more cases on top of the 14 of examples/suites/weather-adapter.yaml: 20 in all
    ("weather-rome", "Is it sunny in Rome?", False, "get_weather"),
    ("weather-tokyo", "What's the forecast for Tokyo this weekend?", False, "get_weather"),
    ("chat-synonym", "Give me a synonym for happy.", False, "get_weather"),
    ("capital-japan", "The capital of Japan is", True, " Tokyo"),
    ("capital-italy", "The capital of Italy is", True, " Rome"),
    ("colour-sky", "The colour of the sky on a clear day is", True, " blue"),
]


def bench_suite_file(directory: Path) -> Path:
    """The 20-case benchmark suite: the example suite's 14 cases plus 6 more (JSON is valid YAML)."""
    import yaml

    data = yaml.safe_load((ROOT / "examples" / "suites" / "weather-adapter.yaml").read_text(encoding="utf-8"))
    for cid, prompt, raw, token in SUITE_EXTRA:
        side = "expect_tuned" if token == "get_weather" and "weather" in cid else "expect"
        check = {"final_top1": "get"} if side == "expect_tuned" else {"not_top1": "get"}
        data["cases"].append({"id": cid, "prompt": prompt, "raw": raw, "track": [token], side: check})
    assert len(data["cases"]) == 20
    path = directory / "bench-suite.yaml"
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return path


def suite_reference(suite_file: str, models: list[str], adapters: list[str | None]) -> dict:
    """The engine alone, in this process: each model loaded once, then what a standalone ``compare``
    does per prompt after loading (each side's lens run, then the comparison), timed case by case.
    No suite machinery: no spilling, checks, reports or files."""
    from lazarus_report.commands.analyzer import each_model
    from lazarus_report.commands.suite import case_config
    from lazarus_report.compare.layers import compare_models_from_runs
    from lazarus_report.suites.spec import load_suite

    spec = load_suite(suite_file)
    runs: list[list] = [[] for _ in spec.cases]
    loads, engine = [], 0.0
    start = time.perf_counter()
    for side in each_model(models, adapters, [None] * len(models)):
        loads.append(time.perf_counter() - start)
        for i, case in enumerate(spec.cases):
            s = time.perf_counter()
            runs[i].append(side.run(case.prompt, case_config(case)))
            engine += time.perf_counter() - s
        start = time.perf_counter()
    for pair in runs:
        s = time.perf_counter()
        compare_models_from_runs(pair)
        engine += time.perf_counter() - s
    return {"loads": loads, "engine": engine}


def bench_suite(reps: int) -> tuple[list[str], dict]:
    import tempfile

    from lazarus_report.models.resolve import ALIASES, alias_path

    tmp = Path(tempfile.mkdtemp())
    suite_file = bench_suite_file(tmp)
    other = tmp / "second-model.gguf"
    os.symlink(alias_path(ALIASES[ALIAS]), other)
    exe = str(Path(sys.executable).parent / "lazarus")
    variants = {
        "base vs base + LoRA adapter (one load, adapter applied in place)": ([ALIAS, ALIAS], [None, str(ADAPTER)]),
        "two models (two loads)": ([ALIAS, str(other)], [None, None]),
    }
    rows = [
        "| 20-case two-model suite | reference: loads + per-case engine | suite, JSON + JUnit + Markdown | "
        "ratio | suite with --html too | ratio | target |",
        "|---|---|---|---|---|---|---|",
    ]
    data = {}
    for label, (models, adapters) in variants.items():
        ref_cmd = [
            sys.executable,
            __file__,
            "--suite-reference",
            str(suite_file),
            "--models",
            *models,
            "--adapters",
            *[a or "-" for a in adapters],
        ]
        base = [exe, "introspect", "suite", str(suite_file), "-m1", models[0], "-m2", models[1], "-q"]
        if adapters[1]:
            base += ["--adapter2", adapters[1]]
        outputs = ["-o", str(tmp / "s.json"), "--junit", str(tmp / "s.xml"), "--markdown", str(tmp / "s.md")]
        plain, with_html = base + outputs, base + outputs + ["--html", str(tmp / "s.html")]
        _suite_child(plain)  # warm caches
        refs, walls, html_walls = [], [], []
        for _ in range(reps):
            out = subprocess.run(ref_cmd, check=True, capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            refs.append(sum(r["loads"]) + r["engine"])
            walls.append(_suite_child(plain))
            html_walls.append(_suite_child(with_html))
        ref, wall, hwall = median(refs), median(walls), median(html_walls)
        data[label] = (ref, wall, hwall)
        rows.append(
            f"| {label} | {fmt(ref)} | {fmt(wall)} | {wall / ref:.2f}x | {fmt(hwall)} | {hwall / ref:.2f}x | "
            f"<= 1.2x -> **{'met' if wall <= 1.2 * ref else 'MISSED'}** |"
        )
    return rows, data


def _suite_child(cmd: list[str]) -> float:
    """Wall seconds of one suite run (exit 1, failed expectations, is a normal outcome)."""
    s = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - s
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{cmd} failed ({proc.returncode}): {proc.stderr[-500:]}")
    return wall


# --- E3: batched suites ---------------------------------------------------------------------------------

BATCH_TEXT = (
    "the capital of France is Paris and the weather in the city of light is mild in spring while the river "
    "runs under old bridges past markets where people buy bread cheese and flowers every morning"
)
# Budgets of the 1,000-case one-model suite on SmolLM2 (docs/suites.md).
BUDGET_HTML_BYTES = 8_000_000
BUDGET_RENDER_SECONDS = 30.0
BUDGET_PEAK_RSS = 1_500 * 2**20


def batch_suite_file(directory: Path, n: int, name: str) -> Path:
    """``n`` one-model cases with prompts of 3 to 62 words (half raw, half through the chat template), each
    tracking " the" with expectations that pass or fail by case (verdicts to compare)."""
    vocabulary = BATCH_TEXT.split()
    cases = []
    for i in range(n):
        words = [vocabulary[(i * 7 + j * 3) % len(vocabulary)] for j in range(3 + (i * 37) % 60)]
        expect = {"final_prob_at_most": 0.5, "not_top1": " the"} if i % 3 else {"final_prob_at_least": 0.01}
        cases.append(
            {"id": f"case-{i:04d}", "prompt": " ".join(words), "raw": i % 2 == 0, "track": [" the"], "expect": expect}
        )
    path = directory / f"{name}.yaml"
    path.write_text(json.dumps({"name": name, "cases": cases}), encoding="utf-8")
    return path


def _verdicts(path: Path) -> list:
    data = json.loads(path.read_text(encoding="utf-8"))
    return [(c["id"], [k["status"] for k in c["checks"]], c["error"]) for c in data["cases"]]


def _suite_timed(cmd: list[str], cpu: list[float] | None = None) -> tuple[float, int]:
    """(wall seconds, peak RSS bytes) of one suite run in a child process (exit 1, failed checks, is normal);
    its CPU seconds (user + system, all threads) are appended to ``cpu``: on a shared machine they vary
    far less than the wall time."""
    s = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - s
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise RuntimeError(f"{cmd} failed: {proc.stderr.read().decode()[-500:]}")
    if cpu is not None:
        cpu.append(usage.ru_utime + usage.ru_stime)
    return wall, usage.ru_maxrss * 1024


def bench_batched(reps: int) -> tuple[list[str], dict]:
    import tempfile

    exe = str(Path(sys.executable).parent / "lazarus")
    tmp = Path(tempfile.mkdtemp())
    suite96 = batch_suite_file(tmp, 96, "batched-96")
    base = [exe, "introspect", "suite", str(suite96), "-m", ALIAS, "-q"]
    auto, one = [*base, "-o", str(tmp / "auto.json")], [*base, "--batch-size", "1", "-o", str(tmp / "one.json")]
    _suite_timed(auto)  # warm the page cache and the tokenizer cache
    walls: dict[str, list[float]] = {"auto": [], "one": []}
    cpus: dict[str, list[float]] = {"auto": [], "one": []}
    engine: dict[str, list[float]] = {"auto": [], "one": []}
    for _ in range(reps):
        for key, cmd in (("one", one), ("auto", auto)):
            walls[key].append(_suite_timed(cmd, cpus[key])[0])
            engine[key].append(json.loads((tmp / f"{key}.json").read_text())["timings"]["engine"])
    same = _verdicts(tmp / "auto.json") == _verdicts(tmp / "one.json")
    passes = json.loads((tmp / "auto.json").read_text())["execution"]["forward_passes"][0]
    a, o = median(walls["auto"]), median(walls["one"])
    ea, eo = median(engine["auto"]), median(engine["one"])
    rows = [
        "| 96-case one-model suite, SmolLM2, prompts of 5-90 tokens | --batch-size 1 | batched (auto) | ratio | target |",
        "|---|---|---|---|---|",
        f"| `suite -o` end to end (fresh process, load included) | {fmt(o)} | {fmt(a)} ({passes} forward passes) | "
        f"{a / o:.2f}x | <= 0.6x -> **{'met' if a <= 0.6 * o else 'MISSED'}**; same verdicts -> "
        f"**{'met' if same else 'MISSED'}** |",
        f"| lens work alone (the result's `timings.engine`) | {fmt(eo)} | {fmt(ea)} | {ea / eo:.2f}x | |",
        f"| CPU seconds of the whole process (user + system) | {fmt(median(cpus['one']))} | "
        f"{fmt(median(cpus['auto']))} | {median(cpus['auto']) / median(cpus['one']):.2f}x | |",
    ]
    cpu_ratio = median(cpus["auto"]) / median(cpus["one"])
    return rows, {"auto": a, "one": o, "cpu_ratio": cpu_ratio, "same_verdicts": same}


def bench_batched_1000() -> tuple[list[str], dict]:
    """1,000 cases once: the suite with every output, then the report alone from its JSON (~10 minutes)."""
    exe = str(Path(sys.executable).parent / "lazarus")
    tmp = Path(tempfile.mkdtemp())
    suite1k = batch_suite_file(tmp, 1000, "batched-1000")
    html = tmp / "k.html"
    cmd = [exe, "introspect", "suite", str(suite1k), "-m", ALIAS, "-q", "-o", str(tmp / "k.json"), "--html", str(html)]
    cmd += ["--markdown", str(tmp / "k.md"), "--junit", str(tmp / "k.xml")]
    wall, rss = _suite_timed(cmd)
    k = json.loads((tmp / "k.json").read_text())
    render_wall, render_rss = _suite_timed(
        [exe, "report", "render", str(tmp / "k.json"), "--html", str(tmp / "r.html"), "-q"]
    )
    size = html.stat().st_size
    mb = 2**20
    rows = [
        "| 1,000-case one-model suite, SmolLM2 | value | budget |",
        "|---|---|---|",
        f"| `suite -o --html --markdown --junit` end to end | {fmt(wall)} (lens work {fmt(k['timings']['engine'])}, "
        f"{k['execution']['forward_passes'][0]} forward passes) | |",
        f"| its peak RSS | {rss / mb:.0f} MB | <= {BUDGET_PEAK_RSS / mb:.0f} MB -> **{'met' if rss <= BUDGET_PEAK_RSS else 'MISSED'}** |",
        f"| HTML report size | {size / 1e6:.2f} MB | <= {BUDGET_HTML_BYTES / 1e6:.0f} MB -> "
        f"**{'met' if size <= BUDGET_HTML_BYTES else 'MISSED'}** |",
        f"| `report render k.json --html` (the report alone, fresh process) | {fmt(render_wall)}, peak RSS "
        f"{render_rss / mb:.0f} MB | <= {BUDGET_RENDER_SECONDS:.0f} s -> "
        f"**{'met' if render_wall <= BUDGET_RENDER_SECONDS else 'MISSED'}** |",
    ]
    return rows, {"k_wall": wall, "k_html": size}


# --- suites with whole answers (issue 19) ----------------------------------------------------------------


def answer_suite_file(directory: Path, n: int, answers: bool) -> Path:
    """``n`` one-model cases (the prompts of ``batch_suite_file``), each followed by an answer of eight words
    from ``BATCH_TEXT`` (one token each in SmolLM2's vocabulary, with their leading spaces). ``answers``: the
    whole answer is read (``answer:``, ``answer_top1``, ``answer_logprob_at_least``); else the case tracks the
    answer's first token only (``track``, ``final_top1``), as suites checked answers before."""
    vocabulary = BATCH_TEXT.split()
    cases = []
    for i in range(n):
        words = [vocabulary[(i * 7 + j * 3) % len(vocabulary)] for j in range(3 + (i * 37) % 60)]
        answer = "".join(" " + vocabulary[(i * 5 + j) % len(vocabulary)] for j in range(8))
        case: dict = {"id": f"case-{i:04d}", "prompt": " ".join(words), "raw": i % 2 == 0}
        if answers:
            case.update(answer=answer, expect={"answer_top1": True, "answer_logprob_at_least": -40.0})
        else:
            first = answer.split(" ")[1]
            case.update(track=[" " + first], expect={"final_top1": " " + first})
        cases.append(case)
    name = "answers-96" if answers else "first-token-96"
    path = directory / f"{name}.yaml"
    path.write_text(json.dumps({"name": name, "cases": cases}), encoding="utf-8")
    return path


def bench_suite_answers(reps: int) -> tuple[list[str], dict]:
    """A 96-case one-model suite whose every case reads an 8-token answer against the same suite with
    first-token targets, both batched (automatic size), fresh processes, interleaved."""
    import tempfile

    exe = str(Path(sys.executable).parent / "lazarus")
    tmp = Path(tempfile.mkdtemp())
    cmds = {
        key: [exe, "introspect", "suite", str(answer_suite_file(tmp, 96, key == "answers")), "-m", ALIAS, "-q"]
        + ["-o", str(tmp / f"{key}.json")]
        for key in ("first", "answers")
    }
    _suite_timed(cmds["first"])  # warm the page cache and the tokenizer cache
    walls: dict[str, list[float]] = {"first": [], "answers": []}
    cpus: dict[str, list[float]] = {"first": [], "answers": []}
    engine: dict[str, list[float]] = {"first": [], "answers": []}
    for _ in range(reps):
        for key in ("first", "answers"):
            walls[key].append(_suite_timed(cmds[key], cpus[key])[0])
            engine[key].append(json.loads((tmp / f"{key}.json").read_text())["timings"]["engine"])
    data = json.loads((tmp / "answers.json").read_text())
    lengths = [len(c["analysis"]["answer"]["tokens"]) for c in data["cases"] if c["analysis"]]
    passes = [json.loads((tmp / f"{k}.json").read_text())["execution"]["forward_passes"][0] for k in cmds]
    f, a = median(walls["first"]), median(walls["answers"])
    ef, ea = median(engine["first"]), median(engine["answers"])
    rows = [
        f"| 96-case one-model suite, SmolLM2, batched (answers of {min(lengths)}-{max(lengths)} tokens, mean "
        f"{sum(lengths) / len(lengths):.1f}) | first-token targets | whole answers | ratio | target |",
        "|---|---|---|---|---|",
        f"| `suite -o` end to end (fresh process, load included) | {fmt(f)} ({passes[0]} passes) | {fmt(a)} "
        f"({passes[1]} passes) | {a / f:.2f}x | <= 1.5x -> **{'met' if a <= 1.5 * f else 'MISSED'}** |",
        f"| lens work alone (the result's `timings.engine`) | {fmt(ef)} | {fmt(ea)} | {ea / ef:.2f}x | |",
        f"| CPU seconds of the whole process (user + system) | {fmt(median(cpus['first']))} | "
        f"{fmt(median(cpus['answers']))} | {median(cpus['answers']) / median(cpus['first']):.2f}x | |",
    ]
    return rows, {"first": f, "answers": a, "ratio": a / f}


# --- F: report rendering (model work excluded) -------------------------------------------------------


def bench_render(reps: int) -> tuple[list[str], dict]:
    from lazarus_report.render import load_result_file
    from lazarus_report.render.html import render_html
    from lazarus_report.render.markdown import render_markdown

    sample = ROOT / "sample_reports" / "compare-base-vs-weather-adapter.json"
    comparison = load_result_file(sample)
    rows = ["| report (30-layer compare, real sample) | median warm render | size | target |", "|---|---|---|---|"]
    data = {}
    for static in (False, True):
        render_html(comparison, static=static)  # warm: bundle, fonts, templates
        times = []
        for _ in range(reps):
            s = time.perf_counter()
            html = render_html(comparison, static=static)
            times.append(time.perf_counter() - s)
        m = median(times)
        size = len(html.encode("utf-8"))
        limit = 300_000 if static else 1_200_000
        data["static" if static else "interactive"] = (m, size)
        rows.append(
            f"| {'static (--static)' if static else 'interactive'} HTML | {fmt(m)} | {size / 1000:.0f} KB | "
            f"<= 0.5 s -> **{'met' if m <= 0.5 else 'MISSED'}**; <= {limit // 1000} KB -> **{'met' if size <= limit else 'MISSED'}** |"
        )
    s = time.perf_counter()
    render_markdown(comparison)
    rows.append(f"| Markdown summary | {fmt(time.perf_counter() - s)} | | |")
    return rows, data


# --- G: learned lenses and causal attribution ----------------------------------------------------


def bench_lens_cost(reps: int, lens_dir: Path) -> tuple[list[str], dict]:
    """``analyze`` (text) through a learned lens against the logit lens, fresh processes, interleaved."""
    exe = str(Path(sys.executable).parent / "lazarus")
    base = [exe, "introspect", "analyze", "-m", ALIAS, "-p", PROMPT, "--all-layers", "-q"]
    with_lens = [*base, "--lens", str(lens_dir)]
    _timed_child(with_lens)  # warm the page cache
    plain, learned = [], []
    for _ in range(reps):
        plain.append(_timed_child(base)[0])
        learned.append(_timed_child(with_lens)[0])
    p, q = median(plain), median(learned)
    kind = json.loads((lens_dir / "lens.json").read_text())["kind"]
    rows = [
        "| `analyze --all-layers` (text) | logit lens | " + kind + " lens | ratio | target |",
        "|---|---|---|---|---|",
        f"| {ALIAS} | {fmt(p)} | {fmt(q)} | {q / p:.2f}x | <= 1.1x -> **{'met' if q <= 1.1 * p else 'MISSED'}** |",
    ]
    return rows, {"logit": p, "learned": q}


# A 16-token answer for SmolLM2 after PROMPT (checked when the section runs).
ANSWER16 = " Paris, the city of light, is the largest city in France and its capital"


def bench_answers(reps: int) -> tuple[list[str], dict]:
    """``analyze --answer`` (16 tokens) and ``analyze --generate 32`` against the plain analyze of the same prompt,
    all layers, with ``--html``; fresh processes, interleaved (issue 19)."""
    import tempfile

    from lazarus_report.results.analysis import AnalysisResult

    exe = str(Path(sys.executable).parent / "lazarus")
    with tempfile.TemporaryDirectory(prefix="lazarus-bench-") as d:
        base = [exe, "introspect", "analyze", "-m", ALIAS, "-p", PROMPT, "--raw", "--all-layers", "-q"]
        plain = [*base, "--html", f"{d}/plain.html"]
        answer = [*base, "--answer", ANSWER16, "--html", f"{d}/answer.html"]
        generate = [*base, "--generate", "32", "--html", f"{d}/generate.html"]
        counted = []
        for cmd in (answer, generate):  # untimed: how many answer tokens each run reads (also warms the cache)
            subprocess.run([*cmd, "-o", f"{d}/r.json"], capture_output=True, check=True)
            counted.append(len(AnalysisResult.load(f"{d}/r.json").answer.tokens))
        n_answer, n_generated = counted
        times: dict[str, list[float]] = {"plain": [], "answer": [], "generate": []}
        for _ in range(reps):
            for key, cmd in (("plain", plain), ("answer", answer), ("generate", generate)):
                times[key].append(_timed_child(cmd)[0])
    p, a, g = (median(times[k]) for k in ("plain", "answer", "generate"))
    rows = [
        "| `analyze --raw --all-layers --html` | plain | with the answer | ratio | target |",
        "|---|---|---|---|---|",
        f"| `--answer` ({n_answer} tokens) | {fmt(p)} | {fmt(a)} | {a / p:.2f}x | <= 1.3x -> "
        f"**{'met' if a <= 1.3 * p else 'MISSED'}** |",
        f"| `--generate 32` ({n_generated} tokens written) | {fmt(p)} | {fmt(g)} | {g / p:.2f}x | <= 1.5x -> "
        f"**{'met' if g <= 1.5 * p else 'MISSED'}** |",
    ]
    return rows, {"plain": p, "answer": a, "generate": g, "answer_tokens": n_answer, "generated": n_generated}


def bench_attribution(reps: int) -> tuple[list[str], dict]:
    """compare --html with and without --attribution: adapter ablation (base vs base + LoRA) and activation
    patching (two files of one model, the reverse direction included: one more load)."""
    import tempfile

    from lazarus_report.models.resolve import ALIASES, alias_path

    exe = str(Path(sys.executable).parent / "lazarus")
    tmp = Path(tempfile.mkdtemp())
    other = tmp / "second-model.gguf"
    os.symlink(alias_path(ALIASES[ALIAS]), other)
    pairs = {
        "base vs base + LoRA (adapter ablation)": ["-m1", ALIAS, "-m2", ALIAS, "--adapter2", str(ADAPTER)],
        "two files of one model (activation patching)": ["-m1", ALIAS, "-m2", str(other)],
    }
    rows = [
        "| compare --html, weather prompt, tracked get_weather | plain | --attribution | ratio | peak RSS plain / attr | target |",
        "|---|---|---|---|---|---|",
    ]
    data = {}
    for label, models in pairs.items():
        base = [exe, "introspect", "compare", *models, "-p", WEATHER, "--track", "get_weather"]
        base += ["--html", str(tmp / "c.html"), "-q"]
        _timed_child([*base, "--attribution"])  # warm caches
        plain, attr, rp, ra = [], [], [], []
        for _ in range(reps):
            w, r = _timed_child(base)
            plain.append(w)
            rp.append(r)
            w, r = _timed_child([*base, "--attribution"])
            attr.append(w)
            ra.append(r)
        p, a = median(plain), median(attr)
        data[label] = (p, a)
        rows.append(
            f"| {label} | {fmt(p)} | {fmt(a)} | {a / p:.2f}x | {max(rp) / 2**20:.0f} / {max(ra) / 2**20:.0f} MB | "
            f"<= 3x -> **{'met' if a <= 3 * p else 'MISSED'}** |"
        )
    suite = [exe, "introspect", "suite", str(bench_suite_file(tmp)), "-m1", ALIAS, "-m2", ALIAS]
    suite += ["--adapter2", str(ADAPTER), "-o", str(tmp / "s.json"), "-q"]
    _suite_child(suite)
    sp = median([_suite_child(suite) for _ in range(max(1, reps // 2))])
    sa = median([_suite_child([*suite, "--attribution"]) for _ in range(max(1, reps // 2))])
    data["suite"] = (sp, sa)
    rows.append(f"| 20-case suite, base vs base + LoRA, -o | {fmt(sp)} | {fmt(sa)} | {sa / sp:.2f}x | | |")
    return rows, data


# --- charts: rendering the sample results' HTML (specs, static SVG, page) --------------------------------

CHART_SAMPLES = [
    "analyze-capital-raw",
    "compare-base-vs-weather-adapter",
    "compare-smollm2-vs-gemma3",
    "suite-weather-adapter",
]


def bench_charts(reps: int) -> tuple[list[str], dict]:
    """``render_html`` of the committed sample results in one warm process (the Vega bundle and the first
    vl-convert call are outside the timing): what the charts and the page cost without any model work."""
    from lazarus_report.render.html import render_html
    from lazarus_report.render.packing import load_result_file

    rows = [
        "| sample | HTML render, median | HTML bytes | static HTML render | static bytes |",
        "|---|--:|--:|--:|--:|",
    ]
    data = {}
    for name in CHART_SAMPLES:
        result = load_result_file(ROOT / "sample_reports" / f"{name}.json")
        render_html(result)  # warm: the bundle, vl-convert's first conversion
        live, static = [], []
        for _ in range(reps):
            t0 = time.perf_counter()
            page = render_html(result)
            live.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            still = render_html(result, static=True)
            static.append(time.perf_counter() - t0)
        data[name] = (median(live), median(static))
        rows.append(
            f"| {name} | {fmt(median(live))} | {len(page.encode()):,} | {fmt(median(static))} | {len(still.encode()):,} |"
        )
    return rows, data


# --- H: MLX distributed (mlx.launch, two ranks on this host) -------------------------------------------


LAUNCH_MODULE = "import sys; from mlx._distributed_utils.launch import main; sys.exit(main())"


def rank_probe(cli_args: list[str]) -> None:
    """Runs as each rank (or as the one process): the CLI in-process, then one stderr line with this
    process's rank, peak RSS (VmHWM) and CPU seconds (user + system)."""
    from lazarus_report.cli.main import main as cli_main
    from lazarus_report.models.distributed import launch_rank

    try:
        cli_main(cli_args, standalone_mode=False)
    finally:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        probe = {"rank": launch_rank(), "peak_rss": _peak_rss(), "cpu": usage.ru_utime + usage.ru_stime}
        print("PROBE " + json.dumps(probe), file=sys.stderr, flush=True)


def _probe_child(cmd: list[str]) -> tuple[float, dict[int, dict]]:
    """(wall seconds, {rank: {"peak_rss": bytes, "cpu": seconds}}) of one run of ``rank_probe`` processes."""
    s = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - s
    probes = [json.loads(line[6:]) for line in proc.stderr.splitlines() if line.startswith("PROBE ")]
    if proc.returncode != 0 or "exited with code" in proc.stderr or not probes:
        raise RuntimeError(f"{cmd} failed: {proc.stderr[-800:]}")
    return wall, {p["rank"]: p for p in probes}


def bench_distributed(reps: int) -> tuple[list[str], dict]:
    """SmolLM2 analyze (all layers, JSON with the grid): one process vs two ranks of the ring backend."""
    import socket
    import tempfile

    from lazarus_report.commands.analyzer import ModelAnalyzer
    from lazarus_report.models.loader import weight_bytes

    tmp = Path(tempfile.mkdtemp())
    args = ["introspect", "analyze", "-m", ALIAS, "-p", PROMPT, "--all-layers", "-q", "-o", str(tmp / "r.json")]
    probe = [sys.executable, __file__, "--rank-probe", "--", *args]
    launcher = Path(sys.executable).parent / "mlx.launch"
    start = [str(launcher)] if launcher.is_file() else [sys.executable, "-c", LAUNCH_MODULE]

    def two_ranks() -> list[str]:
        with socket.socket() as sock:  # a free port (the ring listens on it and the next)
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        ring = ["--backend", "ring", "-n", "2", "--starting-port", str(port), "--python", sys.executable, "--"]
        return [*start, *ring, __file__, "--rank-probe", "--", *args]

    with ModelAnalyzer.load(ALIAS) as analyzer:
        whole = weight_bytes(analyzer.loaded.model)
    _probe_child(probe)  # warm caches
    one_walls, one_rss, one_cpu, two_walls, two_rss, two_cpu = [], [], [], [], [], []
    for _ in range(reps):
        wall, p = _probe_child(probe)
        one_walls.append(wall)
        one_rss.append(p[0]["peak_rss"])
        one_cpu.append(p[0]["cpu"])
        wall, p = _probe_child(two_ranks())
        two_walls.append(wall)
        two_rss.append([p[0]["peak_rss"], p[1]["peak_rss"]])
        two_cpu.append(p[0]["cpu"] + p[1]["cpu"])
    info = json.loads((tmp / "r.json").read_text())["model"]["distributed"]
    mb = 2**20
    one, two = median(one_walls), median(two_walls)
    ranks_rss = [median([r[i] for r in two_rss]) for i in range(2)]
    layers = ", ".join(f"rank {i}: blocks {a}-{b - 1}" for i, (a, b) in enumerate(info["rank_layers"] or []))
    rows = [
        "| run | wall (median) | CPU time, all processes | peak RSS per process | weights held per process |",
        "|---|---|---|---|---|",
        f"| 1 process | {fmt(one)} | {fmt(median(one_cpu))} | {median(one_rss) / mb:.0f} MB | {whole / mb:.0f} MB |",
        f"| 2 ranks ({info['mode']}, {info['implementation']}; {layers}) | {fmt(two)} ({two / one:.2f}x) | "
        f"{fmt(median(two_cpu))} ({median(two_cpu) / median(one_cpu):.2f}x) | "
        + " / ".join(f"{r / mb:.0f} MB" for r in ranks_rss)
        + " | "
        + " / ".join(f"{b / mb:.0f} MB" for b in info["rank_weight_bytes"])
        + " |",
    ]
    return rows, {"one": one, "two": two, "one_rss": median(one_rss), "two_rss": ranks_rss, "info": info}


# --- HTML reports end to end (issue 13) ------------------------------------------------------------


HTML_TARGETS = (
    "analyze --html <= 1.5x analyze; compare --html <= 2.3x analyze; --static <= interactive; analyze <= 1.0 s"
)


def bench_html(reps: int) -> tuple[list[str], dict]:
    """Fresh processes, interleaved: text-only analyze against the same analyze writing an HTML report
    (interactive and --static), and base vs base + LoRA compare writing one. The Vega bundle's disk cache is
    warm (as on any machine after its first report)."""
    import tempfile

    exe = str(Path(sys.executable).parent / "lazarus")
    tmp = Path(tempfile.mkdtemp())
    analyze = [exe, "introspect", "analyze", "-m", ALIAS, "-p", PROMPT, "--all-layers"]
    compare = [exe, "introspect", "compare", "-m1", ALIAS, "-m2", ALIAS, "--adapter2", str(ADAPTER), "-p", PROMPT]
    commands = {
        "analyze": analyze,
        "analyze --html": [*analyze, "--html", str(tmp / "a.html")],
        "analyze --html --static": [*analyze, "--html", str(tmp / "s.html"), "--static"],
        "compare --adapter2 --html": [*compare, "--html", str(tmp / "c.html")],
    }
    for cmd in commands.values():
        _timed_child(cmd)  # warm the page cache, the tokenizer and bundle caches
    walls: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(reps):
        for key, cmd in commands.items():
            walls[key].append(_timed_child(cmd)[0])
    m = {k: median(v) for k, v in walls.items()}
    a = m["analyze"]

    def verdict(ok: bool) -> str:
        return f"**{'met' if ok else 'MISSED'}**"

    targets = {
        "analyze": f"<= 1.0 s -> {verdict(a <= 1.0)}",
        "analyze --html": f"<= 1.5x -> {verdict(m['analyze --html'] <= 1.5 * a)}",
        "analyze --html --static": f"<= interactive -> {verdict(m['analyze --html --static'] <= m['analyze --html'])}",
        "compare --adapter2 --html": f"<= 2.3x -> {verdict(m['compare --adapter2 --html'] <= 2.3 * a)}",
    }
    rows = [
        f'| command (`-m {ALIAS} -p "{PROMPT}"`, all layers; compare: `--adapter2 examples/weather-adapter/adapter`) '
        "| median wall | / analyze | target |",
        "|---|---|---|---|",
        *(f"| `{key}` | {fmt(m[key])} | {m[key] / a:.2f}x | {targets[key]} |" for key in commands),
    ]
    return rows, m


# --- issue 20: report diff -------------------------------------------------------------------------


def diff_suite_pair(directory: Path, n: int, *, two_models: bool) -> tuple[Path, Path]:
    """Two synthetic ``n``-case suite results (``-o`` JSON as the suite command writes it), built from the committed
    suite sample's cases: one-model (each case's tuned analysis) or two-model (its whole comparison), ids made
    unique. The candidate differs by known edits: every 10th case's P(target) lowered by 0.1, every 25th case's first
    check failed, five cases removed and five added."""
    import copy

    sample = json.loads((ROOT / "sample_reports" / "suite-weather-adapter.json").read_text(encoding="utf-8"))
    cases = []
    for i in range(n):
        case = copy.deepcopy(sample["cases"][i % len(sample["cases"])])
        case["id"] = f"{case['id']}-{i:04d}"
        if not two_models:
            case["analysis"], case["comparison"] = case["comparison"]["results"][1], None
        cases.append(case)
    baseline = {**sample, "cases": cases}
    if not two_models:
        baseline.update(roles=["model"], labels=sample["labels"][1:], load_seconds=sample["load_seconds"][1:])
    candidate = copy.deepcopy(baseline)
    for i, case in enumerate(candidate["cases"]):
        if i % 10 == 0:
            if two_models:
                probs = case["comparison"]["tracked"][0]["final_probs"]
                probs[1] = max(0.0, probs[1] - 0.1)
            else:
                probs = case["analysis"]["token_evolutions"][0]["probs"]
                probs[-1] = max(0.0, probs[-1] - 0.1)
        if i % 25 == 0:
            case["checks"][0]["status"] = "failed"
    for case in candidate["cases"][-5:]:
        case["id"] += "-new"
    paths = directory / "baseline.json", directory / "candidate.json"
    for path, data in zip(paths, (baseline, candidate)):
        path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return paths


def _diff_child(cmd: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one ``report diff`` process (CPU: user + system, its own rusage via wait4; on a
    loaded machine the CPU time is what a quiet one would take as wall time, the command being single-threaded);
    exit 1 (the regressions the candidate holds) is expected."""
    s = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - s
    if os.waitstatus_to_exitcode(status) != 1:
        raise RuntimeError(f"{cmd} exited {os.waitstatus_to_exitcode(status)}: {proc.stderr.read().decode()[-500:]}")
    return wall, usage.ru_utime + usage.ru_stime


def bench_drift(reps: int) -> tuple[list[str], dict]:
    """``compare --drift`` over 4,096 corpus tokens (SmolLM2 vs the weather adapter), fresh processes, wall and CPU
    (the machine is often loaded: the process's own CPU time is closer to what a quiet machine takes as wall time
    when the work is single-threaded, but BLAS runs on both cores, so report both)."""
    import tempfile

    adapter = ROOT / "examples" / "weather-adapter" / "adapter"
    exe = str(Path(sys.executable).parent / "lazarus")
    walls, cpus = [], []
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [exe, "introspect", "compare", "-m1", ALIAS, "-m2", ALIAS, "--adapter2", str(adapter), "--drift",
               "--drift-tokens", "4096", "-q", "-o", f"{tmp}/drift.json"]  # fmt: skip
        for _ in range(reps):
            s = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            _, status, usage = os.wait4(proc.pid, 0)
            walls.append(time.perf_counter() - s)
            cpus.append(usage.ru_utime + usage.ru_stime)
            if os.waitstatus_to_exitcode(status) != 0:
                raise RuntimeError(f"{cmd} failed: {proc.stderr.read().decode()[-500:]}")
        result = json.loads(Path(f"{tmp}/drift.json").read_text())
    wall, cpu = median(walls), median(cpus)
    changed = [row["layer"] for row in result["layers"] if not row["identical"]]
    rows = [
        "| run | positions | layers compared (head + JS) | wall | CPU (user + sys) | target |",
        "|---|--:|--:|--:|--:|---|",
        f"| SmolLM2 vs + weather adapter, `compare --drift` | {result['tokens']:,} | {len(changed)} of "
        f"{len(result['layers'])} (the others bit for bit the base's) | {fmt(wall)} | {fmt(cpu)} | <= 60 s: "
        f"{'met' if wall <= 60 else 'missed'} |",
    ]
    return rows, {"wall": wall, "cpu": cpu, "tokens": result["tokens"]}


def bench_diff(reps: int) -> tuple[list[str], dict]:
    """``lazarus report diff`` of two 1,000-case suite results, fresh processes: text only, then every output."""
    import tempfile

    exe = str(Path(sys.executable).parent / "lazarus")
    rows = [
        "| results (1,000 cases each) | JSON size each | `report diff -q`: wall (CPU) | with `-o --html --markdown "
        "--junit` | HTML size | target (on the CPU time where the machine is loaded) |",
        "|---|--:|--:|--:|--:|---|",
    ]
    data = {}
    with tempfile.TemporaryDirectory() as tmp:
        for two_models in (False, True):
            directory = Path(tmp) / ("two" if two_models else "one")
            directory.mkdir()
            base, cand = diff_suite_pair(directory, 1000, two_models=two_models)
            out = directory / "diff"
            plain = [exe, "report", "diff", str(base), str(cand), "-q"]
            full = [
                *plain,
                "-o",
                f"{out}.json",
                "--html",
                f"{out}.html",
                "--markdown",
                f"{out}.md",
                "--junit",
                f"{out}.xml",
            ]
            _diff_child(plain)  # warm the page cache
            t_plain, t_full = [], []
            for _ in range(reps):
                t_plain.append(_diff_child(plain))
                t_full.append(_diff_child(full))
            m_plain = median([w for w, _ in t_plain]), median([c for _, c in t_plain])
            m_full = median([w for w, _ in t_full]), median([c for _, c in t_full])
            html = Path(f"{out}.html").stat().st_size
            size = base.stat().st_size
            met = min(m_full) <= 2.0 and html <= 3_000_000
            kind = "two-model" if two_models else "one-model"
            data[kind] = {"plain": m_plain, "full": m_full, "html": html, "json": size}
            rows.append(
                f"| {kind} suites | {size / 1e6:.1f} MB | {fmt(m_plain[0])} ({fmt(m_plain[1])} CPU) | "
                f"{fmt(m_full[0])} ({fmt(m_full[1])} CPU) | {html / 1e6:.2f} MB | "
                f"<= 2 s, HTML <= 3 MB -> **{'met' if met else 'MISSED'}** |"
            )
    return rows, data


# --- checkpoint sweep (issue 20 part 2) --------------------------------------------------------------------


def sweep_checkpoints(directory: Path, n: int = 10) -> Path:
    """An adapter folder with ``n`` checkpoints as mlx-lm's trainer names them: the weather adapter's weights with
    the LoRA B matrices scaled by k/n at step k (the last is the adapter itself)."""
    import shutil

    import mlx.core as mx

    folder = directory / "checkpoints"
    folder.mkdir()
    shutil.copy(ADAPTER / "adapter_config.json", folder / "adapter_config.json")
    weights = mx.load(str(ADAPTER / "adapters.safetensors"))
    for k in range(1, n + 1):
        scaled = {name: w * (k / n) if name.endswith(".lora_b") else w for name, w in weights.items()}
        mx.save_safetensors(str(folder / f"{k * 10:07d}_adapters.safetensors"), scaled)
    shutil.copy(folder / f"{n * 10:07d}_adapters.safetensors", folder / "adapters.safetensors")  # as mlx-lm does
    return folder


def bench_sweep(reps: int) -> tuple[list[str], dict]:
    import tempfile

    exe = str(Path(sys.executable).parent / "lazarus")
    tmp = Path(tempfile.mkdtemp())
    suite_file = bench_suite_file(tmp)
    folder = sweep_checkpoints(tmp)
    suite = [exe, "introspect", "suite", str(suite_file), "-m1", ALIAS, "-m2", ALIAS, "--adapter2", str(ADAPTER)]
    suite += ["-q", "-o", str(tmp / "suite.json")]
    sweep = [exe, "introspect", "sweep", str(suite_file), "-m", ALIAS, "--adapters", str(folder), "-q"]
    sweep += ["--no-resume", "-o", str(tmp / "sweep.json")]  # the same outputs as the suite run
    _suite_timed(suite)  # warm the page cache and the tokenizer cache
    walls: dict[str, list[float]] = {"suite": [], "sweep": []}
    cpus: dict[str, list[float]] = {"suite": [], "sweep": []}
    for _ in range(reps):
        walls["suite"].append(_suite_timed(suite, cpus["suite"])[0])
        walls["sweep"].append(_suite_timed(sweep, cpus["sweep"])[0])
    one, many = median(walls["suite"]), median(walls["sweep"])
    cpu_one, cpu_many = median(cpus["suite"]), median(cpus["sweep"])
    steps = len(json.loads((tmp / "sweep.json").read_text())["steps"])
    ratio, cpu_ratio = many / one, cpu_many / cpu_one
    rows = [
        "| 20-case suite, SmolLM2 + LoRA (8 layers, rank 8) | one `suite -m2` | `sweep` over the checkpoints | ratio | "
        "target |",
        "|---|---|---|---|---|",
        f"| wall, end to end (fresh process, load included) | {fmt(one)} | {fmt(many)} ({steps} steps) | "
        f"{ratio:.2f}x | <= 4x -> **{'met' if ratio <= 4 else 'MISSED'}** |",
        f"| CPU seconds of the whole process (user + system; steadier on a shared machine) | {fmt(cpu_one)} | "
        f"{fmt(cpu_many)} | {cpu_ratio:.2f}x | <= 4x -> **{'met' if cpu_ratio <= 4 else 'MISSED'}** |",
    ]
    return rows, {"suite": one, "sweep": many, "ratio": ratio, "cpu_ratio": cpu_ratio, "steps": steps}


def bench_jacobian(dims: int, fit_tokens: int) -> tuple[list[str], dict]:
    """``lens fit --kind jacobian`` cost on SmolLM2: ``dims`` output dimensions (rows of every layer's J) of one
    128-token prompt from the default corpus, timed in this process and extrapolated to whole prompts and to
    the default fit (JACOBIAN_DEFAULT_PROMPTS prompts + the held-out measurement); with ``fit_tokens``, a real fit on that many tokens
    (fresh process) and its held-out fidelity beside the logit lens's."""
    from lazarus_report.lens.learned.corpus import default_corpus, tokenize
    from lazarus_report.lens.learned.fit import JACOBIAN_DEFAULT_PROMPTS
    from lazarus_report.lens.learned.jacobian import DIM_BATCH, MAX_SEQ_LEN, prompt_jacobians
    from lazarus_report.models.loader import load_model

    loaded = load_model(ALIAS)
    hdim = int(loaded.info.hidden_size)
    prompt = tokenize(default_corpus(), loaded.tokenizer, MAX_SEQ_LEN, fit_tokens=MAX_SEQ_LEN, heldout_tokens=0).fit[0]
    done = [0]

    class _Enough(Exception):
        pass

    def progress(n: int) -> None:
        done[0] += n
        if done[0] >= dims:
            raise _Enough

    t0 = time.perf_counter()
    try:
        prompt_jacobians(loaded, prompt, progress=progress)
    except _Enough:
        pass
    seconds = time.perf_counter() - t0
    per_prompt = seconds / done[0] * hdim
    rows = [
        "| measured | value |",
        "|---|---|",
        f"| rows timed (one {len(prompt)}-token prompt, {DIM_BATCH} rows per backward pass) | {done[0]} in {seconds:.1f} s |",
        f"| extrapolated: one prompt ({hdim} rows, every layer) | {per_prompt:.0f} s |",
        f"| extrapolated: default fit ({JACOBIAN_DEFAULT_PROMPTS} prompts), Jacobians only | "
        f"{per_prompt * JACOBIAN_DEFAULT_PROMPTS:.0f} s (target <= 1200 s for the whole fit) |",
    ]
    data: dict = {"rows": done[0], "seconds": seconds, "per_prompt": per_prompt}
    if fit_tokens:
        out = Path(tempfile.mkdtemp(prefix="jlens-bench-")) / "lens"
        t1 = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "lazarus_report",
                "lens",
                "fit",
                "-m",
                ALIAS,
                "--kind",
                "jacobian",
                "--tokens",
                str(fit_tokens),
                "--out",
                str(out),
                "-q",
            ],
            check=True,
        )
        fit_seconds = time.perf_counter() - t1
        meta = json.loads((out / "lens.json").read_text())
        fid, logit = meta["fidelity"], meta["logit_fidelity"]
        mid = len(fid) // 2
        kl = sum(f["kl_to_final"] for f in fid) / len(fid)
        kl0 = sum(f["kl_to_final"] for f in logit) / len(logit)
        rows += [
            f"| fit on {meta['tokens']} tokens ({meta['fit']['n_prompts']} prompts), end to end | {fit_seconds:.0f} s |",
            f"| held-out mean KL(final \\|\\| lens), layers 0..L-2: logit -> jacobian | {kl0:.2f} -> {kl:.2f} nats "
            f"({kl / kl0:.2f}x) |",
            f"| top-1 agreement at layer {fid[mid]['layer']}: logit -> jacobian | "
            f"{logit[mid]['top1_agreement']:.1%} -> {fid[mid]['top1_agreement']:.1%} |",
        ]
        data.update(fit_seconds=fit_seconds, kl=kl, kl_logit=kl0)
    return rows, data


# --- the registry of sections: `make bench SECTIONS=a,b`, `run.py --sections a,b`, `run.py --only a` --------------


class Context:
    """What a section function receives: the parsed options, `reps`, and the SmolLM2 analyzer (loaded on first use,
    released after each section)."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.reps: int = args.reps
        self._analyzer = None

    @property
    def analyzer(self):
        if self._analyzer is None:
            from lazarus_report.commands.analyzer import ModelAnalyzer

            self._analyzer = ModelAnalyzer.load(ALIAS)
        return self._analyzer

    def release(self) -> None:
        if self._analyzer is not None:
            self._analyzer.close()
            self._analyzer = None


def _lens_cost(ctx: Context) -> tuple[list[str], dict]:
    if not (TUNED / "lens.json").is_file():
        return [f"(skipped: no tuned lens at {TUNED.relative_to(ROOT)}; `make samples` fits it)"], {}
    return bench_lens_cost(ctx.reps, TUNED)


def _lens_fits(spec: str) -> tuple[list[str], dict]:
    from lenses import bench_lenses

    lines: list[str] = []
    data: dict = {}
    for model, kind in (pair.split(":") for pair in spec.split(",") if pair):
        rows, d = bench_lenses([model], [kind])
        lines += rows if not lines else rows[2:]
        data.update(d)
    return lines, data


def _layout(ctx: Context) -> tuple[list[str], dict]:
    from layout import bench_layout

    return bench_layout()


def _jacobian(ctx: Context) -> tuple[list[str], dict]:
    return bench_jacobian(ctx.args.jacobian_dims, ctx.args.jacobian_fit)


TUNED = ROOT / "build" / "lenses" / "smollm2-135m-instruct-tuned"
LENS_FIT_NOTE = (
    "`lazarus lens fit` end to end in a fresh process (imports, load, state collection, the fit, the held-out "
    "fidelity), then `lazarus lens eval` on the default corpus's held-out split (text the fit never saw): the "
    "logit lens and the fitted lens on the same positions. Targets (issue 9, SmolLM2): linear <= 180 s, tuned "
    "<= 1200 s; mean KL(final || lens) over layers 0..L-2 <= 0.35x the logit lens's (linear), <= 0.30x "
    "(tuned); top-1 agreement at the middle layer >= 30%."
)

# To add a section: one `Section(name, title, note, fn, minutes)` entry below. `fn` takes the Context and returns
# (Markdown rows, data); give it as "module:function" (a module under benchmarks/, imported only when the section
# runs) to keep its code out of this file, e.g. Section("sizes", "Model sizes", NOTE, "sizes:bench_sizes", 15).
# `minutes` is the rough duration here; keep each section under 15 (split a longer one into two entries).


def _sizes(c: Context) -> tuple[list[str], dict]:
    from sizes import bench_sizes

    return bench_sizes(parts=("analyze", "grid"))


def _shipped_lens(c: Context) -> tuple[list[str], dict]:
    from shipped_lens import bench_shipped_lens

    full = ROOT / "build" / "shipped-fits" / f"{ALIAS}-tuned"
    return bench_shipped_lens(c.reps, full if full.is_dir() else None)


def _lens_switch(c: Context) -> tuple[list[str], dict]:
    from lens_switch import bench_lens_switch

    return bench_lens_switch(max(c.reps, 5))


def _sizes_long(c: Context) -> tuple[list[str], dict]:
    from sizes import bench_sizes

    return bench_sizes(parts=("long",))


def _sizes_suite(c: Context) -> tuple[list[str], dict]:
    from sizes import bench_sizes

    return bench_sizes(parts=("suite",))


SECTIONS: list[Section] = [
    Section(
        "last-position",
        "Last-position lens vs the bare forward pass",
        "Target: the lens over all 30 layers at the last position <= 1.25x the bare forward pass of the same loaded "
        "model on the same tokens (mlx-lm's `model(x)`, which also computes the head at every position). "
        "The lens runs the backbone once and the head only on the captured last positions.",
        lambda c: bench_last_position(c.analyzer, c.reps),
        1,
    ),
    Section(
        "grid",
        "Full grid vs the transformers/PyTorch reference",
        "Target: no slower than the reference (transformers on PyTorch, same GGUF weights dequantized to float32, "
        "all threads) doing the same job: forward pass, then for every layer the full [T, V] log-softmax, top-5, "
        "entropy and KL to the final layer.",
        lambda c: bench_grid(c.analyzer, max(3, c.reps // 2)),
        3,
    ),
    Section(
        "limit",
        "The machine's limit: float32 GEMM rate and the grid against it",
        "MLX's float32 matmul through OpenBLAS (the package's BLAS set-up first), best of the repeats, on the head's "
        "shape over 1,024 rows and on the shapes the grid and the forward pass use; then the layers x positions grid "
        "(every layer, top-1, entropy, KL to the final layer; SmolLM2 loaded, hidden states captured in the same "
        "timing) with its FLOPs counted (head: layers x positions x vocabulary x d_model x 2, plus the forward "
        "pass) against the best GEMM rate. Target (issue 22): the 256-token grid at >= 80% of the GEMM rate.",
        "limit:bench_limit",
        5,
    ),
    Section(
        "peers",
        "Peers: TransformerLens and tuned-lens",
        "Each tool in its own worker process, one tool at a time, medians of the repetitions; the peers in their own "
        "environment (build/bench-peers-venv: transformer-lens 4.3.0, tuned-lens 0.2.0, torch 2.13.0 CPU pinned by a "
        "constraints file) on the Hugging Face folder converted from the embedded GGUF (float32), "
        "TransformerLens through `TransformerBridge.boot_transformers` with `prepend_bos=False`, tuned-lens through "
        "`PredictionTrajectory` with its logit lens; every tool reads the same token ids. The numbers are checked to "
        "agree before anything is timed. Target (issue 22): ahead of every peer on every row.",
        "peers:bench_peers",
        12,
    ),
    Section(
        "grid-memory",
        "Peak memory of the grid at 1024 tokens",
        "Fresh process; all 30 layers x 1024 positions, top-5, entropy, KL.",
        lambda c: bench_memory(),
        1,
    ),
    Section(
        "memory",
        "Memory-bounded execution",
        f"Fresh processes, interleaved, median of the repetitions; whole-process peak RSS (the kernel's, via wait4). "
        f"`--max-memory {BUDGET}` is below SmolLM2's float32 weights (513 MB), so they stay as stored (Q4_1) and each "
        "block is dequantized to float32 just before it runs (issue 11). Targets: peak RSS <= 0.65x the default run's, "
        "wall <= 2.0x, top-1 identical at every layer, probabilities within 1e-4.",
        lambda c: bench_bounded(c.reps),
        2,
    ),
    Section(
        "long-prompts",
        "Long prompts",
        "Fresh process per row; the prompt is prefilled in 128-token pieces through mlx-lm's KV cache and the grid is "
        "computed piece by piece. Peak RSS of the lens phase above the process before loading (as in the section "
        "above); target at 1024 tokens: model + 256 MB. The KV cache itself grows with the prompt "
        "(SmolLM2, float32: 46 KB per token, 188 MB at 4096).",
        lambda c: bench_long_prompts(),
        4,
    ),
    Section(
        "render",
        "Report rendering",
        "Charts + HTML from a saved 30-layer compare result (model work excluded), warm (second render in the process).",
        lambda c: bench_render(c.reps),
        1,
    ),
    Section("cli", "End to end", "Fresh processes, median of the repetitions.", lambda c: bench_cli(c.reps), 1),
    Section(
        "compare",
        "Compare end to end",
        "Fresh processes. Two models: the embedded SmolLM2 and the same GGUF under another path (two full "
        "loads, one after the other, the first released before the second loads). Base vs fine-tuned: the "
        "committed LoRA adapter (examples/weather-adapter), applied in place to the loaded base model "
        "(its import of mlx-lm's LoRA code pulls in transformers, ~0.9 s, started in the background).",
        lambda c: bench_compare(c.reps),
        2,
    ),
    Section(
        "html",
        "HTML reports end to end",
        "Fresh processes, interleaved, medians. Targets (issue 13): " + HTML_TARGETS + ". The Vega bundle comes from "
        "its disk cache (the first report on a machine builds it: ~1.3 s more, once).",
        lambda c: bench_html(c.reps),
        2,
    ),
    Section(
        "answers",
        "Whole answers",
        "Fresh processes, interleaved, medians. `analyze --raw --all-layers --html` of the same prompt, plain and with "
        "a whole answer: `--answer` (16 tokens, read in the prompt's own forward pass) and `--generate 32` (greedy with "
        "mlx-lm's KV cache, then one lens pass over the finished text). Targets (issue 19): <= 1.3x and <= 1.5x.",
        lambda c: bench_answers(c.reps),
        2,
    ),
    Section(
        "attribution",
        "Attribution",
        "Fresh processes, median of the repetitions. Target (issue 10): `compare --attribution --html` <= 3x a plain "
        "`compare --html` in the same run.",
        lambda c: bench_attribution(c.reps),
        8,
    ),
    Section(
        "lens-cost",
        "Analyze through a learned lens",
        f"Fresh processes, interleaved. The lens: {TUNED.relative_to(ROOT)} (fitted by `make samples`). Target "
        "(issue 9): analyze with a learned lens <= 1.1x the logit-lens analyze.",
        _lens_cost,
        1,
    ),
    Section(
        "lens-fits",
        "Learned lenses: linear fits, fit time and held-out fidelity",
        LENS_FIT_NOTE,
        lambda c: _lens_fits(c.args.lens_fits),
        8,
    ),
    # One tuned fit cannot be split: ~20 minutes alone here (the one section over 15).
    Section(
        "lens-fit-tuned",
        "Learned lenses: the tuned fit, fit time and held-out fidelity",
        LENS_FIT_NOTE,
        lambda c: _lens_fits("smollm2-135m-instruct:tuned"),
        22,
    ),
    Section(
        "suite",
        "Suite end to end",
        "Fresh processes. A 20-case suite (examples/suites/weather-adapter.yaml plus 6 cases) on two models. "
        "Reference: in one process, each model loaded once, then per case what a standalone `compare` does "
        "after loading (both lens runs and the comparison), timed case by case (no suite machinery). Suite: `lazarus "
        "introspect suite` writing JSON, JUnit and Markdown (and, second column, the HTML report too), process start "
        "and imports included. Target: the suite <= 1.2x the reference.",
        lambda c: bench_suite(max(2, c.reps // 2)),
        4,
    ),
    Section(
        "charts",
        "Charts",
        "`render_html` of the committed sample results, one warm process (no model work): Vega-Lite specs, the "
        "static SVG of every chart (vl-convert for the line charts, drawn here for heatmaps and suite cases) "
        "and the page. Medians.",
        lambda c: bench_charts(c.reps),
        2,
    ),
    Section(
        "distributed",
        "Distributed",
        "MLX's distributed engine on this one host: `mlx.launch --backend ring -n 2` runs two ranks of `lazarus "
        "introspect analyze -m smollm2-135m-instruct --all-layers -o r.json` (the model sharded over them, "
        "docs/distributed.md) against the same command as one process; fresh processes, interleaved, medians. Both "
        "ranks share this machine's 2 cores, so two ranks here show the cost of the split, not a speed-up; the "
        "point is the memory each rank needs.",
        lambda c: bench_distributed(max(2, c.reps // 2)),
        2,
    ),
    Section(
        "layout",
        "Report layout",
        "The committed samples rendered by this checkout, in headless Chromium (benchmarks/layout.py): widths as "
        "multiples of the box, every collapsed part open. Targets (issue 13): tables <= 1.00x at 1280 px; at 390 px "
        "a 390 px page, tables and charts <= 1.35x, no tiny chart text; the 14-case suite <= 12 A4 pages.",
        _layout,
        3,
    ),
    Section(
        "batch",
        "Batched suites",
        "Fresh processes. A 96-case one-model suite on SmolLM2 (prompts of 3-62 words, half through the chat "
        "template: 5-90 tokens), several cases per forward pass (`--batch-size` automatic) against one case per "
        "pass (`--batch-size 1`), interleaved. Target (issue 11): <= 0.6x, same verdicts.",
        lambda c: bench_batched(max(1, c.reps // 2)),
        9,
    ),
    Section(
        "batch-1000",
        "A 1,000-case suite",
        "Fresh processes. A 1,000-case one-model suite of the batched suites' kind once, with every output, and its "
        "HTML report rendered alone from the JSON. Budgets (docs): peak RSS, HTML size, re-render time.",
        lambda c: bench_batched_1000(),
        11,
    ),
    Section(
        "suite-answers",
        "Suites with whole answers",
        "Fresh processes, batched (automatic size). A 96-case one-model suite on SmolLM2 whose every case reads an "
        "8-token teacher-forced answer (`answer:`, `answer_top1`, `answer_logprob_at_least`) against the same "
        "prompts with first-token targets (`track`, `final_top1`), interleaved. Target (issue 19): <= 1.5x.",
        lambda c: bench_suite_answers(max(1, c.reps // 2)),
        6,
    ),
    Section(
        "diff",
        "Report diff",
        "Fresh processes, medians. Two synthetic 1,000-case suite results built from the committed suite sample's "
        "cases (one-model: each case's tuned analysis; two-model: the whole comparison, with its attribution and "
        "token shifts), the candidate with known edits (every 10th P(target) -0.1, every 25th case newly failing, five "
        "cases replaced). Target (issue 20): `report diff` <= 2 s, HTML <= 3 MB.",
        lambda c: bench_diff(c.reps),
        3,
    ),
    Section(
        "sweep",
        "Checkpoint sweep",
        "Fresh processes, interleaved, medians. `introspect sweep` of the 20-case benchmark suite over 10 checkpoints "
        "of SmolLM2 (the committed weather adapter with its B matrices scaled by k/10, k = 1..10: real shapes and "
        "layers, synthetic training) against one `suite -m1 BASE -m2 BASE --adapter2` run of the same suite. "
        "Target (issue 20): <= 4x.",
        lambda c: bench_sweep(max(1, c.reps // 2)),
        6,
    ),
    Section(
        "drift",
        "Drift",
        "Fresh processes, medians. `compare --drift` over 4,096 positions of the built-in corpus's held-out split "
        "(sequences of 512 tokens), SmolLM2 base vs the weather adapter: model 1 reads and spills its lens inputs, "
        "model 2 (the adapter applied in place) reads and both heads run where the two differ. Target (issue 20): "
        "<= 60 s.",
        lambda c: bench_drift(max(1, c.reps // 2)),
        12,
    ),
    Section(
        "jacobian",
        "Jacobian-lens fit cost",
        "`lens fit --kind jacobian` on SmolLM2: some output dimensions of one 128-token prompt timed in one process "
        "and extrapolated to the default fit (`--jacobian-dims`); `--jacobian-fit TOKENS` adds a real fit and its "
        "held-out fidelity. Target (issue 21): the default fit <= 1200 s.",
        _jacobian,
        2,
    ),
    Section(
        "sizes",
        "Model sizes",
        "Llama-3.2-1B and Llama-3.1-8B shapes with seeded random weights (benchmarks/make_big_gguf.py builds them "
        "once into build/big-gguf/, verified by digest): `analyze --all-layers` and a 20-case suite at default "
        "settings and `--max-memory 6GB` in child processes (wall, peak RSS), the lens pass's FLOP/s against the "
        "GEMM rate measured in the same process and its roofline bound, and the 1B grid at 256 tokens. Targets "
        "(issue 22): 8B under 6GB with peak RSS <= 6.5 GB and its lens pass >= 25% of the GEMM rate; 1B >= 50%.",
        _sizes,
        10,
    ),
    Section(
        "sizes-long",
        "Model sizes: longer prompts",
        "The `sizes` table's lens pass at 64 and 256 tokens (synthetic ids), where it becomes compute-bound: the 1B "
        "at default settings, the 8B under `--max-memory 6GB`, each against its roofline bound.",
        _sizes_long,
        9,
    ),
    Section(
        "sizes-suite",
        "Model sizes: suites",
        "A 20-case suite on the 1B and 8B files of `sizes`, default settings and `--max-memory 6GB`, in child "
        "processes (wall, peak RSS).",
        _sizes_suite,
        14,
    ),
    Section(
        "shipped-lens",
        "Shipped lenses",
        "Fresh processes, interleaved, medians: `analyze --all-layers` with the logit lens, the tuned lens shipped "
        "with the package (weighted rank-192 translators in float16) and, when build/shipped-fits holds it, the full float32 tuned lens directory. "
        "Target (issue 21): `--lens tuned` <= 1.05x the logit lens.",
        _shipped_lens,
        4,
    ),
    Section(
        "lens-switch",
        "Several lenses from one pass",
        "`analyze --lens all` (logit, then the shipped linear and tuned lenses, one forward pass) against "
        "`--lens tuned`, SmolLM2 loaded once, interleaved medians: the terminal view and `--html` (grid + page).",
        _lens_switch,
        2,
    ),
]
REGISTRY = check_registry(SECTIONS)

HEADER = (
    "# Benchmarks\n\n"
    "Written by `make bench` (benchmarks/run.py), one block per named section: `make bench SECTIONS=a,b` re-measures "
    "those and replaces only their blocks (each says when and at which commit it was measured); `run.py --only a` "
    "prints without writing. Every ratio compares two things measured in the same run, interleaved; medians of the "
    "repetitions.\n"
)


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True)
    return (out.stdout.strip() or "n/a") + ("+changes" if dirty.stdout.strip() else "")


def run_sections(chosen: list[Section], ctx: Context, write: bool) -> None:
    date = time.strftime("%Y-%m-%d", time.gmtime())
    commit = _commit()
    env = environment()
    print("\n".join(env), flush=True)
    if write:
        stamp = f"_Last written {date} at commit {commit}; each block below says when it was measured._"
        write_block(RESULTS, "environment", block_text("environment", "Environment", stamp, "", env), HEADER)
    for s in chosen:
        print(f"## {s.title} ... (`{s.name}`, ~{s.minutes:g} min)", flush=True)
        start, load = time.perf_counter(), os.getloadavg()[0]
        try:
            rows, _ = s.run(ctx)
        finally:
            ctx.release()
        load_line = f"Machine load (1-minute average) at the start / end: {load:.1f} / {os.getloadavg()[0]:.1f}."
        block = block_text(s.name, s.title, stamp_line(s.name, date, commit), s.note, [*rows, "", load_line])
        print(block, f"({time.perf_counter() - start:.0f} s)", sep="\n", flush=True)
        if write:
            write_block(RESULTS, s.name, block, HEADER)
    if write:
        print(f"wrote {RESULTS.relative_to(ROOT)}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--memory-probe", type=int)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--suite-reference", metavar="SUITE_FILE")
    parser.add_argument("--models", nargs="+")
    parser.add_argument("--adapters", nargs="+")
    parser.add_argument(
        "--sections",
        metavar="A,B",
        help="run these sections and replace their blocks in RESULTS.md ('all' or none: every section); "
        "names: " + ", ".join(REGISTRY),
    )
    parser.add_argument("--only", metavar="A,B", help="like --sections, but only printed (RESULTS.md untouched)")
    parser.add_argument("--list", action="store_true", help="list the sections with their rough minutes")
    parser.add_argument("--probe-max-memory", help="with --memory-probe: load with this --max-memory")
    parser.add_argument("--probe-no-grid", action="store_true", help="with --memory-probe: last position only")
    parser.add_argument("--probe-layer-step", type=int, help="with --memory-probe: every Nth layer, not all")
    parser.add_argument(
        "--lens-fits",
        default="smollm2-135m-instruct:linear,gemma3-270m:linear",
        help="MODEL:KIND,... lens fits timed by the lens-fits section (the tuned fit is its own section)",
    )
    parser.add_argument(
        "--jacobian-dims",
        type=int,
        default=48,
        help="jacobian section: output dimensions of one 128-token prompt to time (extrapolated to a fit)",
    )
    parser.add_argument(
        "--jacobian-fit",
        type=int,
        default=0,
        metavar="TOKENS",
        help="jacobian section: also run `lens fit --kind jacobian --tokens TOKENS` and `lens eval` (0: skip)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--rank-probe"]:  # run.py --rank-probe -- CLI ARGS (a rank of bench_distributed)
        rank_probe(argv[2:] if argv[1:2] == ["--"] else argv[1:])
        return
    args = parse_args(argv)
    if args.memory_probe:
        probe = memory_probe(args.memory_probe, args.probe_max_memory, not args.probe_no_grid, args.probe_layer_step)
        print(json.dumps(probe))
        return
    if args.suite_reference:
        adapters = [None if a == "-" else a for a in args.adapters]
        print(json.dumps(suite_reference(args.suite_reference, args.models, adapters)))
        return
    if args.list:
        for s in SECTIONS:
            print(f"{s.name:16} ~{s.minutes:>3g} min  {s.title}")
        return
    try:
        if args.only and args.sections:
            raise ValueError("give --sections or --only, not both")
        chosen = select(args.only or args.sections or "all", REGISTRY)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    run_sections(chosen, Context(args), write=not args.only)


if __name__ == "__main__":
    main()
