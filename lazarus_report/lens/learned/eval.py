"""Lens fidelity on held-out text: per layer KL(final || lens), top-1 agreement, cross-entropy.

For every used position ``n`` and layer ``l``: the lens's distribution ``q = softmax(head(T_l(h_l)))``
(``T_l`` the lens's translator, the model's own final norm and head), the model's final
distribution ``p`` (the last block's output through the same head), and

* ``kl_to_final`` = mean over positions of KL(p || q) in nats;
* ``top1_agreement`` = fraction of positions where argmax q == argmax p;
* ``cross_entropy`` = mean of -log q(true next token) (positions whose next token is in the text).

Logits come in blocks of ``ROWS`` positions through the model's head (MLX matmul), statistics in
numpy float32/float64; several lenses share each block's final distribution. Sums are kept per block of
``BOOTSTRAP_BLOCK`` consecutive positions, so each mean gets a 95% percentile-bootstrap interval that resamples
whole blocks (neighbouring positions are correlated: resampling single positions would make the intervals too
narrow).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...core.errors import LazarusError
from ...core.runtime import import_mlx
from ...results.codec import rounded
from ...results.lens_eval import LayerInterval, LensEvalEntry, LensEvalResult
from ...results.provenance import LensFidelity
from ..readout import head_logits_np
from ..stats import log_softmax, row_dots
from .artefact import Lens, model_fingerprint
from .collect import States, collect_states
from .corpus import Corpus, TokenSequences, take_tokens, tokenize

mx = import_mlx()

ROWS = 256
BOOTSTRAP_RESAMPLES = 1000  # resamples behind each 95% interval
BOOTSTRAP_BLOCK = 64  # positions per bootstrap block (consecutive, within one held-out sequence)


def measure(
    loaded: Any,
    states: States,
    lenses: Sequence[Lens],
    layers: Sequence[int] | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[list[LensFidelity]]:
    """Per lens, per layer (``layers``: default 0 .. L-2) fidelity on ``states``."""
    sums = measure_sums(loaded, states, lenses, layers, progress=progress)
    return sums.fidelity()


@dataclass
class Sums:
    """Per lens, layer and group (a block of held-out positions) the sums of the per-position values, and per group the
    positions (``count``) and positions with a true next token (``ce_count``)."""

    layers: list[int]
    kl: np.ndarray  # [lenses, layers, groups]
    agree: np.ndarray
    ce: np.ndarray
    count: np.ndarray  # [groups]
    ce_count: np.ndarray

    def fidelity(self) -> list[list[LensFidelity]]:
        n, n_ce = max(1.0, float(self.count.sum())), max(1.0, float(self.ce_count.sum()))
        kl, agree, ce = self.kl.sum(axis=2) / n, self.agree.sum(axis=2) / n, self.ce.sum(axis=2) / n_ce
        return [
            [
                LensFidelity(
                    layer=layer,
                    kl_to_final=rounded(float(kl[i, j])),
                    top1_agreement=rounded(float(agree[i, j])),
                    cross_entropy=rounded(float(ce[i, j])),
                )
                for j, layer in enumerate(self.layers)
            ]
            for i in range(kl.shape[0])
        ]

    def intervals(self, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> list[list[LayerInterval]]:
        """95% percentile-bootstrap intervals, resampling whole groups (blocks of consecutive held-out positions)
        with replacement: neighbouring positions are correlated, so resampling single positions would give
        intervals too narrow (whole sequences, only 8 for the default 2048 positions, too coarse).
        One group: the interval is the point (nothing to resample)."""
        groups = self.count.shape[0]
        rng = np.random.default_rng(seed)
        picks = rng.integers(0, groups, size=(resamples, groups))
        weights = np.stack([np.bincount(row, minlength=groups) for row in picks]).astype(np.float64)  # [B, G]
        n = np.maximum(weights @ self.count, 1.0)  # [B]
        n_ce = np.maximum(weights @ self.ce_count, 1.0)

        def bounds(total: np.ndarray, denominator: np.ndarray) -> np.ndarray:
            values = np.einsum("bg,kjg->kjb", weights, total) / denominator  # [lenses, layers, B]
            return np.percentile(values, [2.5, 97.5], axis=2)  # [2, lenses, layers]

        kl, agree, ce = bounds(self.kl, n), bounds(self.agree, n), bounds(self.ce, n_ce)
        return [
            [
                LayerInterval(
                    layer=layer,
                    kl_to_final=rounded([float(kl[0, i, j]), float(kl[1, i, j])]),
                    top1_agreement=rounded([float(agree[0, i, j]), float(agree[1, i, j])]),
                    cross_entropy=rounded([float(ce[0, i, j]), float(ce[1, i, j])]),
                )
                for j, layer in enumerate(self.layers)
            ]
            for i in range(self.kl.shape[0])
        ]


def measure_sums(
    loaded: Any,
    states: States,
    lenses: Sequence[Lens],
    layers: Sequence[int] | None = None,
    groups: np.ndarray | None = None,
    progress: Callable[[int], None] | None = None,
) -> Sums:
    """Per lens, layer and group (``groups[n]``: position n's group, default all 0) the sums of KL(final || lens),
    top-1 agreement and -log q(true next token), over one shared pass of the final distribution per block."""
    parts = loaded.parts
    n_layers = states.hidden.shape[0]
    layers = list(range(n_layers - 1)) if layers is None else list(layers)
    n = states.num_positions
    if n == 0:
        raise LazarusError("no held-out positions to measure the lens on")
    groups = np.zeros(n, dtype=np.int64) if groups is None else groups
    g_count = int(groups.max()) + 1
    shape = (len(lenses), len(layers), g_count)
    sums = Sums(layers, np.zeros(shape), np.zeros(shape), np.zeros(shape), np.zeros(g_count), np.zeros(g_count))
    for a in range(0, n, ROWS):
        b = min(n, a + ROWS)
        logp = log_softmax(head_logits_np(parts, mx.array(states.hidden[-1, a:b])))
        p = np.exp(logp)
        self_term = row_dots(p, logp)
        top = logp.argmax(axis=1)
        nxt = states.next_ids[a:b]
        rows = np.nonzero(nxt >= 0)[0]
        g = groups[a:b]
        sums.count += np.bincount(g, minlength=g_count)
        sums.ce_count += np.bincount(g[rows], minlength=g_count)
        for j, layer in enumerate(layers):
            h = states.hidden[layer, a:b]
            for i, lens in enumerate(lenses):
                logq = log_softmax(head_logits_np(parts, lens.translate(layer, mx.array(h))))
                kl = np.maximum(self_term - row_dots(p, logq), 0)
                sums.kl[i, j] += np.bincount(g, weights=kl, minlength=g_count)
                agree = (logq.argmax(axis=1) == top).astype(np.float64)
                sums.agree[i, j] += np.bincount(g, weights=agree, minlength=g_count)
                nll = -logq[rows, nxt[rows]].astype(np.float64)
                sums.ce[i, j] += np.bincount(g[rows], weights=nll, minlength=g_count)
            if progress is not None:
                progress(b - a)
    return sums


def final_cross_entropy(loaded: Any, states: States) -> float:
    total, count = 0.0, 0
    for a in range(0, states.num_positions, ROWS):
        b = min(states.num_positions, a + ROWS)
        nxt = states.next_ids[a:b]
        keep = np.nonzero(nxt >= 0)[0]
        if not len(keep):
            continue
        logp = log_softmax(head_logits_np(loaded.parts, mx.array(states.hidden[-1, a:b][keep])))
        total -= float(logp[np.arange(len(keep)), nxt[keep]].sum(dtype=np.float64))
        count += len(keep)
    return rounded(total / max(1, count))


def evaluate(
    loaded: Any,
    lens: Lens | Sequence[Lens],
    corpus: Corpus,
    *,
    tokens: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> LensEvalResult:
    """``lazarus lens eval``: the logit lens and every lens of ``lens`` (one or several) side by side on the
    corpus's held-out split (its first ``tokens`` positions; by default ``EVAL_FACTOR`` times those the fit
    measured, see ``heldout_positions``, so the intervals are about 0.7x as wide), with a bootstrap interval
    per layer over blocks of held-out positions."""
    from ...core.runtime import versions

    t0 = time.perf_counter()
    given = [lens] if isinstance(lens, Lens) else list(lens)
    logit = next((one for one in given if one.kind == "logit"), None) or Lens.logit(model_fingerprint(loaded))
    order = [logit] + [one for one in given if one is not logit]
    notes = [one.check_compatible(loaded) for one in order]
    if tokens is None:
        tokens = EVAL_FACTOR * heldout_positions(loaded.info.num_layers, loaded.info.vocab_size)
    seqs: TokenSequences = tokenize(corpus, loaded.tokenizer, fit_tokens=0, heldout_tokens=tokens)
    held = take_tokens(seqs.heldout, tokens)
    n = TokenSequences.positions(held)
    if n == 0:
        raise LazarusError("the corpus has no held-out text to evaluate on: give a larger --corpus")
    stage = _stage(progress, "collect", n)
    states = collect_states(loaded, held, stage)
    t1 = time.perf_counter()
    groups = position_blocks([max(0, len(s) - 1) for s in held])
    n_layers = states.hidden.shape[0]
    stage = _stage(progress, "measure", n * (n_layers - 1))
    sums = measure_sums(loaded, states, order, groups=groups, progress=stage)
    fidelity, intervals = sums.fidelity(), sums.intervals()
    final_ce = final_cross_entropy(loaded, states)
    t2 = time.perf_counter()
    entries = []
    for one, note, fid, ci in zip(order, notes, fidelity, intervals):
        record = one.record(note)
        entries.append(LensEvalEntry(dataclasses.replace(record, fidelity=fid), ci))
    best = min(entries[1:], key=lambda e: _mean_kl(e.lens.fidelity), default=entries[0])
    return LensEvalResult(
        model=loaded.info,
        lens=best.lens,
        logit=fidelity[0],
        corpus=corpus.description + " (held-out split)",
        corpus_sha256=corpus.sha256,
        tokens=n,
        final_cross_entropy=final_ce,
        versions=versions(),
        timings={"collect": round(t1 - t0, 3), "measure": round(t2 - t1, 3), "total": round(t2 - t0, 3)},
        entries=entries,
        interval_method=_interval_method(int(groups.max()) + 1),
        sequences=len(held),
    )


def position_blocks(lengths: Sequence[int], size: int = BOOTSTRAP_BLOCK) -> np.ndarray:
    """Each position's bootstrap block: runs of ``size`` consecutive positions, never across two sequences."""
    ids: list[np.ndarray] = []
    g = 0
    for n in lengths:
        blocks = -(-n // size)
        ids.append(g + np.arange(n) // size)
        g += blocks
    return np.concatenate(ids).astype(np.int64) if ids else np.zeros(0, dtype=np.int64)


def _interval_method(blocks: int) -> str:
    if blocks < 2:
        return "none: one block of held-out positions, nothing to resample (each range is the value itself)"
    return (
        f"95% percentile bootstrap over {blocks} blocks of up to {BOOTSTRAP_BLOCK} consecutive held-out positions "
        f"({BOOTSTRAP_RESAMPLES} resamples; whole blocks, since neighbouring positions are correlated)"
    )


def _mean_kl(rows: list[LensFidelity]) -> float:
    return sum(r.kl_to_final for r in rows) / len(rows) if rows else float("inf")


def _stage(progress: Callable[[str, int, int], None] | None, name: str, total: int) -> Callable[[int], None] | None:
    if progress is None:
        return None
    progress(name, 0, total)
    return lambda k: progress(name, k, total)


HELDOUT_EVAL_TOKENS = 2048  # held-out positions measured at fit time (fidelity in the artefact)


# ``lens eval`` reads this many times the fit's held-out positions (SmolLM2: 4,096; Gemma 3 270M: 1,344).
EVAL_FACTOR = 2

HELDOUT_LOGITS_BUDGET = 3 * 10**9  # positions x layers x vocabulary: fewer positions for large vocabularies


def heldout_positions(num_layers: int, vocab_size: int) -> int:
    """Held-out positions measured by default: 2048, or fewer when layers x vocabulary is large
    (SmolLM2, 30 layers x 49k: 2048; Gemma 3 270M, 18 layers x 262k: 672), so the measurement
    costs about the same for every model."""
    fit = HELDOUT_LOGITS_BUDGET // max(1, (num_layers - 1) * vocab_size)
    return int(max(256, min(HELDOUT_EVAL_TOKENS, fit // 32 * 32)))
