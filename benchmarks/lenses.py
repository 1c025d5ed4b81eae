"""Learned lenses: fit time end to end and held-out fidelity against the logit lens.

``python benchmarks/lenses.py [--model smollm2-135m-instruct] [--kind linear --kind tuned]`` runs, per
kind, ``lazarus lens fit -m MODEL --kind KIND --out TMP -q`` (a fresh process: imports, model load,
state collection, the fit and the held-out fidelity; timed end to end) and then
``lazarus lens eval -m MODEL --lens TMP -o eval.json -q`` on the default corpus's held-out split
(the logit lens and the fitted lens on the same positions). Prints Markdown lines; from
``benchmarks/run.py`` call ``bench_lenses(models, kinds)`` which returns ``(lines, data)`` like the other
sections.

Targets (issue 9): SmolLM2 ``linear`` <= 180 s, ``tuned`` <= 1200 s end to end; mean KL(final || lens)
over layers 0..L-2 <= 0.35x the logit lens's (linear) and <= 0.30x (tuned), tuned <= linear; top-1
agreement with the final prediction at the middle layer >= 30%.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LAZARUS = [sys.executable, "-m", "lazarus_report.cli.main"]


def _summary(rows: list[dict]) -> tuple[float, float, int]:
    """(mean KL, middle layer's top-1 agreement, middle layer), as every lens view reports them."""
    from lazarus_report.render.lens_view import fidelity_summary
    from lazarus_report.results.provenance import LensFidelity

    s = fidelity_summary([LensFidelity(**r) for r in rows])
    return s["mean_kl"], s["mid_top1"], int(s["mid_layer"])


def bench_lens(model: str, kind: str, workdir: Path) -> dict:
    out = workdir / f"{model}-{kind}"
    start = time.perf_counter()
    subprocess.run([*LAZARUS, "lens", "fit", "-m", model, "--kind", kind, "--out", str(out), "-q"], check=True)
    fit_seconds = time.perf_counter() - start
    meta = json.loads((out / "lens.json").read_text())
    report = workdir / f"{model}-{kind}-eval.json"
    start = time.perf_counter()
    subprocess.run([*LAZARUS, "lens", "eval", "-m", model, "--lens", str(out), "-o", str(report), "-q"], check=True)
    eval_seconds = time.perf_counter() - start
    ev = json.loads(report.read_text())
    logit_kl, logit_mid, mid_layer = _summary(ev["logit"])
    lens_kl, lens_mid, _ = _summary(ev["lens"]["fidelity"])
    return {
        "model": model,
        "kind": kind,
        "fit_seconds": round(fit_seconds, 1),
        "fit_breakdown": meta.get("fit", {}),
        "tokens": meta["tokens"],
        "eval_seconds": round(eval_seconds, 1),
        "eval_tokens": ev["tokens"],
        "logit_mean_kl": round(logit_kl, 3),
        "lens_mean_kl": round(lens_kl, 3),
        "ratio": round(lens_kl / logit_kl, 3),
        "mid_layer": mid_layer,
        "logit_mid_top1": round(logit_mid, 3),
        "lens_mid_top1": round(lens_mid, 3),
        "per_layer": {"logit": ev["logit"], "lens": ev["lens"]["fidelity"]},
    }


def bench_lenses(models: list[str], kinds: list[str]) -> tuple[list[str], dict]:
    lines = [
        "| model | kind | fit end to end | fit tokens | held-out tokens | mean KL logit | mean KL lens | ratio | "
        "top-1 at middle layer (logit -> lens) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    data: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            for kind in kinds:
                r = bench_lens(model, kind, Path(tmp))
                data[f"{model}/{kind}"] = r
                lines.append(
                    f"| {model} | {kind} | {r['fit_seconds']:.0f} s | {r['tokens']} | {r['eval_tokens']} | "
                    f"{r['logit_mean_kl']:.2f} | {r['lens_mean_kl']:.2f} | {r['ratio']:.2f}x | "
                    f"layer {r['mid_layer']}: {r['logit_mid_top1']:.0%} -> {r['lens_mid_top1']:.0%} |"
                )
                print(lines[-1], flush=True)
    return lines, data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", dest="models")
    parser.add_argument("--kind", action="append", dest="kinds", choices=["linear", "tuned"])
    parser.add_argument("--json", metavar="FILE", help="Also write the measurements as JSON.")
    args = parser.parse_args()
    lines, data = bench_lenses(args.models or ["smollm2-135m-instruct"], args.kinds or ["linear", "tuned"])
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
