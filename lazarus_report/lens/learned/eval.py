"""Lens fidelity on held-out text: per layer KL(final || lens), top-1 agreement, cross-entropy.

For every used position ``n`` and layer ``l``: the lens's distribution ``q = softmax(head(T_l(h_l)))``
(``T_l`` the lens's translator, the model's own final norm and head), the model's final
distribution ``p`` (the last block's output through the same head), and

* ``kl_to_final`` = mean over positions of KL(p || q) in nats;
* ``top1_agreement`` = fraction of positions where argmax q == argmax p;
* ``cross_entropy`` = mean of -log q(true next token) (positions whose next token is in the text).

Logits come in blocks of ``ROWS`` positions through the model's head (MLX matmul), statistics in
numpy float32/float64; several lenses share each block's final distribution.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ...core.errors import LazarusError
from ...core.runtime import import_mlx
from ...results.codec import rounded
from ...results.lens_eval import LensEvalResult
from ...results.provenance import LensFidelity
from ..readout import head_logits_np
from ..stats import log_softmax, row_dots
from .artefact import Lens
from .collect import States, collect_states
from .corpus import Corpus, TokenSequences, take_tokens, tokenize

mx = import_mlx()

ROWS = 256


def measure(
    loaded: Any,
    states: States,
    lenses: Sequence[Lens],
    layers: Sequence[int] | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[list[LensFidelity]]:
    """Per lens, per layer (``layers``: default 0 .. L-2) fidelity on ``states``."""
    parts = loaded.parts
    n_layers = states.hidden.shape[0]
    layers = list(range(n_layers - 1)) if layers is None else list(layers)
    n = states.num_positions
    if n == 0:
        raise LazarusError("no held-out positions to measure the lens on")
    kl = np.zeros((len(lenses), len(layers)))
    agree = np.zeros((len(lenses), len(layers)))
    ce = np.zeros((len(lenses), len(layers)))
    ce_count = 0
    for a in range(0, n, ROWS):
        b = min(n, a + ROWS)
        logp = log_softmax(head_logits_np(parts, mx.array(states.hidden[-1, a:b])))
        p = np.exp(logp)
        self_term = row_dots(p, logp)
        top = logp.argmax(axis=1)
        nxt = states.next_ids[a:b]
        has_next = nxt >= 0
        ce_count += int(has_next.sum())
        for j, layer in enumerate(layers):
            h = states.hidden[layer, a:b]
            for i, lens in enumerate(lenses):
                x = mx.array(h)
                logq = log_softmax(head_logits_np(parts, lens.translate(layer, x)))
                kl[i, j] += float(np.maximum(self_term - row_dots(p, logq), 0).sum())
                agree[i, j] += float((logq.argmax(axis=1) == top).sum())
                ce[i, j] -= float(logq[np.nonzero(has_next)[0], nxt[has_next]].sum(dtype=np.float64))
            if progress is not None:
                progress(b - a)
    out = []
    for i in range(len(lenses)):
        out.append(
            [
                LensFidelity(
                    layer=layer,
                    kl_to_final=rounded(kl[i, j] / n),
                    top1_agreement=rounded(agree[i, j] / n),
                    cross_entropy=rounded(ce[i, j] / max(1, ce_count)),
                )
                for j, layer in enumerate(layers)
            ]
        )
    return out


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
    lens: Lens,
    corpus: Corpus,
    *,
    tokens: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> LensEvalResult:
    """``lazarus lens eval``: the logit lens and ``lens`` on the corpus's held-out split (its first
    ``tokens`` positions; by default the same ones the fit measured, see ``fit.heldout_positions``)."""
    from ...core.runtime import versions

    t0 = time.perf_counter()
    note = lens.check_compatible(loaded)
    if tokens is None:
        tokens = heldout_positions(loaded.info.num_layers, loaded.info.vocab_size)
    seqs: TokenSequences = tokenize(corpus, loaded.tokenizer, fit_tokens=0, heldout_tokens=tokens)
    held = take_tokens(seqs.heldout, tokens)
    n = TokenSequences.positions(held)
    if n == 0:
        raise LazarusError("the corpus has no held-out text to evaluate on: give a larger --corpus")
    stage = _stage(progress, "collect", n)
    states = collect_states(loaded, held, stage)
    t1 = time.perf_counter()
    both = [Lens.logit(), lens] if lens.kind != "logit" else [lens]
    n_layers = states.hidden.shape[0]
    stage = _stage(progress, "measure", n * (n_layers - 1))
    results = measure(loaded, states, both, progress=stage)
    final_ce = final_cross_entropy(loaded, states)
    t2 = time.perf_counter()
    record = lens.record(note)
    record = type(record)(**{**record.__dict__, "fidelity": results[-1]})
    return LensEvalResult(
        model=loaded.info,
        lens=record,
        logit=results[0],
        corpus=corpus.description + " (held-out split)",
        corpus_sha256=corpus.sha256,
        tokens=n,
        final_cross_entropy=final_ce,
        versions=versions(),
        timings={"collect": round(t1 - t0, 3), "measure": round(t2 - t1, 3), "total": round(t2 - t0, 3)},
    )


def _stage(progress: Callable[[str, int, int], None] | None, name: str, total: int) -> Callable[[int], None] | None:
    if progress is None:
        return None
    progress(name, 0, total)
    return lambda k: progress(name, k, total)


HELDOUT_EVAL_TOKENS = 2048  # held-out positions measured at fit time (fidelity in the artefact)


HELDOUT_LOGITS_BUDGET = 3 * 10**9  # positions x layers x vocabulary: fewer positions for large vocabularies


def heldout_positions(num_layers: int, vocab_size: int) -> int:
    """Held-out positions measured by default: 2048, or fewer when layers x vocabulary is large
    (SmolLM2, 30 layers x 49k: 2048; Gemma 3 270M, 18 layers x 262k: 672), so the measurement
    costs about the same for every model."""
    fit = HELDOUT_LOGITS_BUDGET // max(1, (num_layers - 1) * vocab_size)
    return int(max(256, min(HELDOUT_EVAL_TOKENS, fit // 32 * 32)))
