"""The `peers` section: lazarus-report against TransformerLens and tuned-lens on the same model and token ids.

``python benchmarks/peers.py`` prints the section; `run.py --sections peers` writes its RESULTS.md block.

The peers run in their own environment, build/bench-peers-venv (never the product's): transformer-lens 4.3.0 and
tuned-lens 0.2.0 from the package index, torch pinned by benchmarks/peers-constraints.txt to 2.13.0, which
resolves to the local CPU wheel (any other torch spec pulls gigabytes of CUDA packages; the install is checked
for nvidia-* packages first, with `pip install --dry-run --report`). The model: the embedded SmolLM2 GGUF converted
once to a Hugging Face folder (build/bench-peers-hf) by transformers in that environment (float32 after
dequantization; `save_pretrained` refuses a GGUF-loaded model until its quantizer and `quantization_config` are
dropped). Both are cached and verified before use (the environment by importing the three packages at the pinned
versions, the folder by the sha256 of its weights recorded when it was written), and rebuilt when broken.

Each tool runs in a worker process (benchmarks/peers_worker.py), one tool at a time: first its numbers are checked
against ours (the final probability of the top token, the top-1 at every layer, the top-1 at every grid cell),
then each job is timed: one warm-up, then the median of the repetitions.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
VENV = ROOT / "build" / "bench-peers-venv"
HF_DIR = ROOT / "build" / "bench-peers-hf" / "smollm2-135m-instruct"
CONSTRAINTS = BENCH / "peers-constraints.txt"
MARKER = ".lazarus-bench-peers"  # written into what this module creates: only those it may delete
PEERS = {"transformer-lens": "4.3.0", "tuned-lens": "0.2.0"}
TORCH = "2.13.0"
ALIAS = "smollm2-135m-instruct"
PROMPT = "The capital of France is"
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
NAMES = {"ours": "ours", "tl": "TransformerLens", "tuned": "tuned-lens"}


class PeerUnavailable(Exception):
    """The peers' environment cannot be built here (offline, no wheel): reported in the section, not raised."""


def _python() -> Path:
    return VENV / "bin" / "python"


def _env() -> dict[str, str]:
    return {**os.environ, **OFFLINE}


def _venv_ok() -> bool:
    if not _python().exists():
        return False
    check = (
        "import importlib.metadata as m, torch, transformer_lens, tuned_lens, transformers, gguf; "
        f"assert torch.__version__.split('+')[0] == {TORCH!r}, torch.__version__; "
        + "; ".join(f"assert m.version({d!r}) == {v!r}" for d, v in PEERS.items())
        + "; assert not [d for d in m.distributions() if d.metadata['Name'].lower().startswith('nvidia')]"
    )
    return subprocess.run([str(_python()), "-c", check], capture_output=True, env=_env()).returncode == 0


def _remove_ours(path: Path) -> None:
    """Delete a folder this module created (it holds MARKER); refuse anything else."""
    if not path.exists() and not path.is_symlink():
        return
    if path.is_symlink() or not path.is_dir() or not (path / MARKER).is_file():
        raise PeerUnavailable(f"{path} exists and was not made by the peers benchmark: move it away")
    shutil.rmtree(path)


def ensure_venv(log: list[str]) -> Path:
    """The peers' environment, built (or rebuilt when it fails its check) with torch pinned to the CPU wheel."""
    if _venv_ok():
        return _python()
    _remove_ours(VENV)
    log.append(f"building {VENV.relative_to(ROOT)}")
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    (VENV / MARKER).write_text("made by benchmarks/peers.py\n")
    pip = [str(_python()), "-m", "pip", "install", "-q", "-c", str(CONSTRAINTS)]
    wanted = [f"torch=={TORCH}", "gguf", *(f"{d}=={v}" for d, v in PEERS.items())]
    report = VENV / "resolution.json"
    dry = subprocess.run([*pip, "--dry-run", "--report", str(report), *wanted], capture_output=True, text=True)
    if dry.returncode != 0:
        raise PeerUnavailable("pip cannot resolve the peers here: " + _last_line(dry.stderr))
    plan = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}
    cuda = sorted(n for n in plan if n.startswith("nvidia"))
    if cuda or not plan.get("torch", TORCH).startswith(TORCH):
        raise PeerUnavailable(
            f"pip would install {plan.get('torch')} torch with {', '.join(cuda) or 'no'} CUDA packages"
        )
    done = subprocess.run([*pip, *wanted], capture_output=True, text=True)
    if done.returncode != 0 or not _venv_ok():
        raise PeerUnavailable("installing the peers failed: " + _last_line(done.stderr or "the check failed"))
    return _python()


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "no output"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


CONVERT = """
import sys, torch
from pathlib import Path
from transformers import AutoModelForCausalLM, AutoTokenizer
gguf, out = Path(sys.argv[1]), Path(sys.argv[2])
tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
# save_pretrained refuses a GGUF-loaded model while it carries its quantizer (the weights are float32 by now)
model.hf_quantizer = None
if hasattr(model.config, "quantization_config"):
    del model.config.quantization_config
assert all(p.dtype == torch.float32 for p in model.parameters())
model.save_pretrained(out)
tok.save_pretrained(out)
"""


def ensure_hf_folder(python: Path, gguf: Path, log: list[str]) -> Path:
    """The GGUF as a Hugging Face folder (float32 safetensors), verified by the digest recorded when written."""
    record = HF_DIR / MARKER
    weights = HF_DIR / "model.safetensors"
    if record.is_file() and weights.is_file():
        meta = json.loads(record.read_text())
        if meta.get("source_sha256") == _sha256(gguf) and meta.get("sha256") == _sha256(weights):
            return HF_DIR
    _remove_ours(HF_DIR)
    log.append(f"converting {gguf.name} to {HF_DIR.relative_to(ROOT)}")
    tmp = HF_DIR.with_name(HF_DIR.name + ".partial")
    _remove_ours(tmp)
    tmp.mkdir(parents=True)
    (tmp / MARKER).write_text("{}")
    out = subprocess.run([str(python), "-c", CONVERT, str(gguf), str(tmp)], capture_output=True, text=True, env=_env())
    if out.returncode != 0:
        raise PeerUnavailable("converting the GGUF failed: " + _last_line(out.stderr))
    (tmp / MARKER).write_text(
        json.dumps({"source_sha256": _sha256(gguf), "sha256": _sha256(tmp / "model.safetensors")})
    )
    tmp.rename(HF_DIR)
    return HF_DIR


def smollm2_gguf() -> Path:
    from lazarus_report.models.resolve import resolve_model

    return Path(resolve_model(ALIAS).path)


class Worker:
    def __init__(self, python: str, tool: str, model: str):
        self.proc = subprocess.Popen(
            [python, str(BENCH / "peers_worker.py"), tool, model],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=_env(),
        )
        self.hello = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line:
            raise RuntimeError(f"the worker {self.proc.args[2:4]} stopped")
        return json.loads(line)

    def ask(self, request: str) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write(request + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        except Exception:
            self.proc.kill()
            self.proc.wait()


JOBS = [("last", 5), ("grid", 64), ("grid", 256)]


def _timed_fresh(cmd: list[str]) -> float:
    s = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=_env())
    return time.perf_counter() - s


def agreement(ours: dict, peer: dict) -> dict[str, Any]:
    layers = sum(a == b for a, b in zip(ours["top1_layers"], peer["top1_layers"]))
    cells = [(a == b) for ra, rb in zip(ours["grid_top1"], peer["grid_top1"]) for a, b in zip(ra, rb)]
    return {
        "final_p": peer["final_p"],
        "dp": abs(peer["final_p"] - ours["final_p"]),
        "layers": layers,
        "n_layers": len(ours["top1_layers"]),
        "cells": sum(cells),
        "n_cells": len(cells),
    }


def agrees(a: dict) -> bool:
    return a["dp"] <= 1e-3 and a["layers"] == a["n_layers"] and a["cells"] >= 0.99 * a["n_cells"]


def bench_peers(ctx: Any = None) -> tuple[list[str], dict]:
    reps = 5 if ctx is None else ctx.reps
    log: list[str] = []
    try:
        python = ensure_venv(log)
        gguf = smollm2_gguf()
        hf = ensure_hf_folder(python, gguf, log)
    except PeerUnavailable as e:
        return [f"(peers not measured: {e})"], {}
    pythons = {"ours": sys.executable, "tl": str(python), "tuned": str(python)}
    models = {"ours": ALIAS, "tl": str(hf), "tuned": str(hf)}
    checks: dict[str, dict] = {}
    times: dict[str, dict[str, float]] = {}
    for tool in ("ours", "tl", "tuned"):  # one tool at a time, each in its own process
        w = Worker(pythons[tool], tool, models[tool])
        try:
            checks[tool] = w.ask("check")
            if tool != "ours" and not agrees(agreement(checks["ours"], checks[tool])):
                continue  # numbers that disagree are not timed
            times[tool] = {}
            for job, n in JOBS:
                w.ask(f"{job} {n}")  # warm-up
                times[tool][f"{job} {n}"] = statistics.median(w.ask(f"{job} {n}")["seconds"] for _ in range(reps))
        finally:
            w.close()
    # end to end from the shell: fresh processes, the prompt tokenized by each tool
    lazarus = [sys.executable, "-m", "lazarus_report", "introspect", "analyze", "-m", ALIAS, "-p", PROMPT]
    shell = {
        "ours": [*lazarus, "--raw", "--all-layers"],
        "tl": [str(python), str(BENCH / "peers_worker.py"), "tl", str(hf), "--once", PROMPT],
        "tuned": [str(python), str(BENCH / "peers_worker.py"), "tuned", str(hf), "--once", PROMPT],
    }
    for tool in times:
        _timed_fresh(shell[tool])  # warm the page cache
        times[tool]["shell"] = statistics.median(_timed_fresh(shell[tool]) for _ in range(reps))
    agree = {t: agreement(checks["ours"], checks[t]) for t in ("tl", "tuned")}
    return _rows(checks, agree, times, log), {"checks": agree, "times": times}


def _rows(checks: dict, agree: dict, times: dict, log: list[str]) -> list[str]:
    ours_p = checks["ours"]["final_p"]
    lines = [*(f"({line})" for line in log), "Agreement with ours before timing (5 tokens; grid: 64 tokens):", ""]
    lines += ["| tool | final p(top token) | top-1 per layer | grid top-1 cells | timed |", "|---|---|---|---|---|"]
    lines.append(f"| ours | {ours_p:.5f} | | | yes |")
    for t, a in agree.items():
        lines.append(
            f"| {NAMES[t]} | {a['final_p']:.5f} (Δp {a['dp']:.1e}) | {a['layers']}/{a['n_layers']} | "
            f"{a['cells']:,}/{a['n_cells']:,} | {'yes' if t in times else '**no: the numbers disagree**'} |"
        )
    labels = {
        "last 5": "last-position lens, 5 tokens, model loaded",
        "grid 64": "layers x positions grid (entropy, KL, top-1), 64 tokens",
        "grid 256": "the same grid, 256 tokens",
        "shell": "end to end from the shell, 5 tokens",
    }

    def cell(tool: str, key: str) -> str:
        s = times.get(tool, {}).get(key)
        return "—" if s is None else f"{s:.2f} s"

    def ratio(tool: str, key: str) -> str:
        a, b = times["ours"].get(key), times.get(tool, {}).get(key)
        return "—" if a is None or b is None else f"**{a / b:.2f}x**"

    lines += [
        "",
        "| work (medians) | ours | TransformerLens | tuned-lens | ours / TL | ours / tuned-lens |",
        "|---|---|---|---|---|---|",
    ]
    ahead = True
    for key, label in labels.items():
        for t in ("tl", "tuned"):
            b = times.get(t, {}).get(key)
            ahead &= b is None or times["ours"][key] < b
        lines.append(
            f"| {label} | {cell('ours', key)} | {cell('tl', key)} | {cell('tuned', key)} | {ratio('tl', key)} | "
            f"{ratio('tuned', key)} |"
        )
    lines += ["", f"Ahead of every peer on every row: **{'met' if ahead else 'MISSED'}**."]
    return lines


if __name__ == "__main__":
    print("\n".join(bench_peers()[0]))
