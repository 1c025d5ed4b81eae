"""Reproduce the lenses shipped in ``lazarus_report/lens/shipped/`` (see docs/lenses.md, "Shipped lenses").

Three steps, each its own command (the fits are long: run them under ``nice``, one at a time):

    python scripts/fit_shipped_lenses.py fit -m gemma3-270m --kinds linear,tuned --out build/shipped-fits
    python scripts/fit_shipped_lenses.py options build/shipped-fits/gemma3-270m-tuned -m gemma3-270m
    python scripts/fit_shipped_lenses.py pack build/shipped-fits/gemma3-270m-tuned -m gemma3-270m --storage lowrank64

The shipped files were made with (issue 21; SmolLM2's in round 21 on the version-2 default corpus, Gemma's
in round 20 on version 1, restore its data file from git to reproduce them):

    fit -m smollm2-135m-instruct --kinds linear,tuned          # 49,152 positions; 144 Adam steps of 128
    pack build/shipped-fits/smollm2-135m-instruct-linear -m smollm2-135m-instruct --storage wlowrank48
    pack build/shipped-fits/smollm2-135m-instruct-tuned -m smollm2-135m-instruct --storage wlowrank192
    fit -m gemma3-270m --kinds linear                          # all 28.9k fit tokens
    pack build/shipped-fits/gemma3-270m-linear -m gemma3-270m --storage wlowrank48
    fit -m gemma3-270m --kinds tuned --tokens 6144 --steps 12 --batch 128 --validation 128 --lr 1e-3
    pack build/shipped-fits/gemma3-270m-tuned -m gemma3-270m --storage wlowrank160

``fit`` collects the residual streams of the default corpus once and fits the linear lens, then the tuned
lens warm-started from it (as ``lazarus lens fit`` does, one collection for both), each saved as an
ordinary full-precision lens directory with its held-out fidelity. ``options`` measures the storage
options (float16, low-rank translators of rank 32/64/128 in float16) on the held-out split and prints
size, mean KL and middle-layer top-1 per option. ``pack`` writes the chosen storage into the package
(``<model alias>-<kind>.safetensors`` + ``.json``) with its fidelity re-measured as stored.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STORAGES = ("float32", "float16", "lowrank32", "lowrank64", "lowrank128")


def _load(model: str) -> Any:
    from lazarus_report.models.loader import load_model

    return load_model(model)


def _heldout_states(loaded: Any, positions: int | None = None) -> Any:
    from lazarus_report.lens.learned.collect import collect_states
    from lazarus_report.lens.learned.corpus import default_corpus, take_tokens, tokenize
    from lazarus_report.lens.learned.eval import heldout_positions

    n = positions or heldout_positions(loaded.info.num_layers, loaded.info.vocab_size)
    held = take_tokens(tokenize(default_corpus(), loaded.tokenizer, fit_tokens=0, heldout_tokens=n).heldout, n)
    return collect_states(loaded, held)


def cmd_fit(args: argparse.Namespace) -> None:
    from lazarus_report.lens.learned import fit as fitmod
    from lazarus_report.lens.learned.collect import collect_states
    from lazarus_report.lens.learned.corpus import TokenSequences, default_corpus

    kinds = args.kinds.split(",")
    start = time.perf_counter()
    loaded = _load(args.model)
    corpus = default_corpus()
    fit_seqs, held = fitmod._fit_and_heldout(loaded, corpus, args.tokens, None)
    n_fit = TokenSequences.positions(fit_seqs)
    held_states = collect_states(loaded, held)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def save(lens: Any, kind: str, fit_info: dict[str, Any]) -> None:
        logit_fid, fid = fitmod.measure_fidelity(loaded, held_states, lens, None)
        seconds = time.perf_counter() - start
        lens.meta = fitmod._fit_meta(
            loaded, corpus, n_fit, held_states.num_positions, seconds, fit_info, fid, logit_fid
        )
        path = lens.save(out / f"{args.model}-{kind}")
        print(f"{kind}: {_summary(fid)} -> {path}", flush=True)

    t0 = time.perf_counter()
    states = collect_states(loaded, fit_seqs)
    t1 = time.perf_counter()
    linear = fitmod.fit_linear(states)
    t2 = time.perf_counter()
    print(f"collect {t1 - t0:.0f} s, solve {t2 - t1:.0f} s ({n_fit} fit tokens)", flush=True)
    info: dict[str, Any] = {
        "ridge": fitmod.RIDGE,
        "collect_seconds": round(t1 - t0, 2),
        "solve_seconds": round(t2 - t1, 2),
    }
    if "linear" in kinds:
        save(linear, "linear", dict(info))
    if "tuned" in kinds:
        from lazarus_report.lens.learned.head import NumpyHead

        cfg = fitmod.TunedSettings(steps=args.steps)
        if args.batch:
            cfg.batch = args.batch
        if args.validation:
            cfg.validation = args.validation
        if args.lr:
            cfg.lr = args.lr
        t3 = time.perf_counter()

        def tick(k: int, done: list[int] = [0]) -> None:  # noqa: B006
            done[0] += k
            if done[0] % 5 == 0:
                print(f"  step {done[0]} at {time.perf_counter() - t3:.0f} s", flush=True)

        tuned, stats = fitmod.fit_tuned(states, NumpyHead.of(loaded.parts), linear, cfg, tick)
        print(f"tuned: {stats['steps']} steps in {time.perf_counter() - t3:.0f} s", flush=True)
        del states
        save(tuned, "tuned", {**info, **stats})


def _summary(fidelity: list[Any]) -> str:
    kl = float(np.mean([f.kl_to_final for f in fidelity]))
    mid = fidelity[len(fidelity) // 2]
    return f"mean KL {kl:.3f} nats, layer {mid.layer} top-1 {100 * mid.top1_agreement:.1f}%"


def _moments(loaded: Any, tokens: int) -> np.ndarray:
    """Each block's input second moment E[h h^T] over the first ``tokens`` positions of the fit split
    (never the held-out split the fidelity is measured on)."""
    from lazarus_report.lens.learned.collect import collect_states
    from lazarus_report.lens.learned.corpus import default_corpus, take_tokens, tokenize

    seqs = take_tokens(tokenize(default_corpus(), loaded.tokenizer, fit_tokens=tokens, heldout_tokens=0).fit, tokens)
    hidden = collect_states(loaded, seqs).hidden[:-1].astype(np.float64)
    return np.einsum("lnh,lnk->lhk", hidden, hidden) / hidden.shape[1]


_MOMENTS: dict[int, np.ndarray] = {}


def _stored(full: Any, storage: str, loaded: Any, tokens: int) -> Any:
    from lazarus_report.lens.learned.shipped import stored_lens

    moments = None
    if storage.startswith("wlowrank"):
        if tokens not in _MOMENTS:  # collected once per run, shared by every weighted option
            _MOMENTS[tokens] = _moments(loaded, tokens)
        moments = _MOMENTS[tokens]
    lens = stored_lens(full, storage, moments)
    if moments is not None:
        lens.meta["shipped_moments_tokens"] = tokens
    return lens


def cmd_options(args: argparse.Namespace) -> None:
    from lazarus_report.lens.learned.artefact import Lens
    from lazarus_report.lens.learned.eval import measure

    loaded = _load(args.model)
    full = Lens.load(args.lens)
    held = _heldout_states(loaded, args.heldout)
    options = [s for s in args.storages.split(",")]
    lenses = [Lens.logit()] + [_stored(full, s, loaded, args.moment_tokens) for s in options]
    results = measure(loaded, held, lenses)
    print(f"{'storage':<12} {'bytes':>12} {'mean KL':>9} {'mid top-1':>10}")
    for name, lens, fid in zip(["logit", *options], lenses, results, strict=True):
        size = len(lens.weights_bytes()) if lens.kind != "logit" else 0
        kl = float(np.mean([f.kl_to_final for f in fid]))
        mid = fid[len(fid) // 2]
        print(f"{name:<12} {size:>12,} {kl:>9.3f} {100 * mid.top1_agreement:>9.1f}%  (layer {mid.layer})")


def cmd_pack(args: argparse.Namespace) -> None:
    from lazarus_report.lens.learned.artefact import Lens
    from lazarus_report.lens.learned.eval import measure
    from lazarus_report.lens.learned.shipped import shipped_dir, write_shipped

    loaded = _load(args.model)
    full = Lens.load(args.lens)
    lens = _stored(full, args.storage, loaded, args.moment_tokens)
    held = _heldout_states(loaded)
    # the logit lens's fidelity on these positions is the full lens's (same held-out split): measured once
    lenses = [lens] if full.meta.get("logit_fidelity") else [Lens.logit(), lens]
    results = measure(loaded, held, lenses)
    fid = results[-1]
    lens.meta["fidelity"] = [f.__dict__ for f in fid]
    if len(results) == 2:
        lens.meta["logit_fidelity"] = [f.__dict__ for f in results[0]]
    lens.meta["heldout_tokens"] = held.num_positions
    lens.meta["full_fidelity"] = full.meta.get("fidelity")  # before compression, for comparison
    path = write_shipped(lens, Path(args.dest) if args.dest else shipped_dir(), args.model)
    print(f"{args.model} {lens.kind} as {args.storage}: {_summary(fid)} -> {path}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("fit")
    p.add_argument("-m", "--model", required=True)
    p.add_argument("--kinds", default="linear,tuned")
    p.add_argument("--tokens", type=int, default=None)
    p.add_argument("--steps", type=int, default=None, help="tuned: Adam steps (default: one epoch, at most 144)")
    p.add_argument("--batch", type=int, default=None, help="tuned: positions per Adam step (default 128)")
    p.add_argument("--validation", type=int, default=None, help="tuned: fit positions held back for early stopping")
    p.add_argument("--lr", type=float, default=None, help="tuned: Adam's peak learning rate (default 5e-3)")
    p.add_argument("--out", default="build/shipped-fits")
    p.set_defaults(func=cmd_fit)
    p = sub.add_parser("options")
    p.add_argument("lens")
    p.add_argument("-m", "--model", required=True)
    p.add_argument("--storages", default=",".join(STORAGES))
    p.add_argument("--heldout", type=int, default=None, help="held-out positions (default: as the fit measured)")
    p.add_argument("--moment-tokens", type=int, default=4096, help="wlowrankR: fit positions for E[h h^T]")
    p.set_defaults(func=cmd_options)
    p = sub.add_parser("pack")
    p.add_argument("lens")
    p.add_argument("-m", "--model", required=True)
    p.add_argument("--storage", required=True, help="float32, float16 or lowrankR (R: the rank, e.g. lowrank48)")
    p.add_argument("--moment-tokens", type=int, default=4096, help="wlowrankR: fit positions for E[h h^T]")
    p.add_argument("--dest", default=None, help="default: the package's shipped-lens folder")
    p.set_defaults(func=cmd_pack)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
