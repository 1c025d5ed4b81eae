"""Fitting lenses from collected residual streams.

Linear lens (Din et al. 2023): for each block ``l < L-1``, ridge least squares from the block's output
(plus a constant 1) to the last block's output, solved in float64 from the normal equations
``(X^T X + lambda D) [W; b] = X^T Y`` (``X^T X`` accumulated in blocks of rows; ``D`` is the diagonal
of ``X^T X`` without the bias entry, ``lambda = RIDGE``: a scale-free ridge).

Tuned lens (Belrose et al. 2023): translators ``h + h @ A_l + b_l`` warm-started from the linear fit
(``A = W - I``), trained with Adam on mini-batches of positions to minimise KL(final || lens) over the
full vocabulary. The gradient is written out by hand and computed with numpy's vectorised ``exp``
and BLAS matmuls (see ``head.NumpyHead.backward``): ``dL/dz = (softmax(z) - p_final) / n``, back
through the post-head transform, the head, the final RMSNorm's Jacobian and the affine map. The
final distribution of a batch is computed once and shared by every layer. A small validation slice
of the fit split picks, per layer, the best translator seen (early stopping).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...core.errors import LazarusError
from ...core.runtime import package_version
from ...results.provenance import LensFidelity
from ..stats import log_softmax, row_dots
from .artefact import Lens, model_fingerprint
from .collect import States, collect_states
from .corpus import Corpus, TokenSequences, default_corpus, take_tokens, tokenize
from .eval import heldout_positions
from .head import NumpyHead

RIDGE = 1e-3


BLOCK_ROWS = 4096


MIN_FIT_TOKENS = 1000  # below this a lens over-fits whatever the model
# Fit positions by default: a sample of the whole (shuffled) default corpus; their residual streams
# are held in memory (SmolLM2: 30 x 49,152 x 576 float32 = 3.4 GB). ``--tokens`` gives more or fewer.
DEFAULT_FIT_TOKENS = 49152


Progress = Callable[[str, int, int], None]


def min_fit_tokens(hidden_size: int) -> int:
    """Fit positions needed: the normal equations have ``H + 1`` unknowns per output; ask for 2x that."""
    return max(MIN_FIT_TOKENS, 2 * (hidden_size + 1))


def solve_affine(x: np.ndarray, y: np.ndarray, ridge: float = RIDGE) -> tuple[np.ndarray, np.ndarray]:
    """Ridge least squares ``y ~ x @ W + b`` in float64; returns (W [H, H'], b [H'])."""
    n, h = x.shape
    xtx = np.zeros((h + 1, h + 1))
    xty = np.zeros((h + 1, y.shape[1]))
    for a in range(0, n, BLOCK_ROWS):
        xb = np.empty((min(n, a + BLOCK_ROWS) - a, h + 1))
        xb[:, :h] = x[a : a + BLOCK_ROWS]
        xb[:, h] = 1.0
        xtx += xb.T @ xb
        xty += xb.T @ y[a : a + BLOCK_ROWS].astype(np.float64)
    reg = ridge * np.diag(xtx).copy()
    reg[h] = 0.0
    xtx[np.diag_indices(h + 1)] += reg + 1e-12
    try:
        sol = np.linalg.solve(xtx, xty)
    except np.linalg.LinAlgError:
        sol = np.linalg.lstsq(xtx, xty, rcond=None)[0]
    return sol[:h], sol[h]


def fit_linear(states: States, ridge: float = RIDGE, progress: Callable[[int], None] | None = None) -> Lens:
    """A linear lens (affine form) for every block but the last."""
    n_layers, _, hdim = states.hidden.shape
    weight = np.empty((n_layers - 1, hdim, hdim), dtype=np.float32)
    bias = np.empty((n_layers - 1, hdim), dtype=np.float32)
    y = states.hidden[-1]
    for layer in range(n_layers - 1):
        w, b = solve_affine(states.hidden[layer], y, ridge)
        weight[layer], bias[layer] = w, b
        if progress is not None:
            progress(1)
    return Lens(kind="linear", weight=weight, bias=bias, form="affine")


@dataclass
class TunedSettings:
    steps: int | None = None  # None: ``epochs`` passes over the fit positions, at most ``max_steps``
    epochs: float = 1.0
    max_steps: int = 144  # SmolLM2: 144 x 128 positions x 29 layers trained in 1,333 s on 2 cores (round 21)
    batch: int = 128
    lr: float = 5e-3
    betas: tuple[float, float] = (0.9, 0.999)
    validation: int = 256  # positions of the fit split held back for early stopping
    check_every: int = 15  # steps between validation checks
    seed: int = 0

    def validation_size(self, positions: int) -> int:
        """Of ``positions`` fit positions, those held back for early stopping (at most a fifth)."""
        return min(self.validation, positions // 5)

    def train_steps(self, positions: int) -> int:
        """Adam steps for ``positions`` fit positions (the validation positions not trained on)."""
        if self.steps is not None:
            return self.steps
        train = positions - self.validation_size(positions)
        return max(1, min(self.max_steps, int(self.epochs * train / self.batch)))


def kl_and_grad(
    head: NumpyHead,
    h: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    logp_final: np.ndarray,
    p_final: np.ndarray,
    self_term: np.ndarray | None = None,
    p_scaled: np.ndarray | None = None,
) -> tuple[float, np.ndarray, np.ndarray]:
    """Mean KL(final || lens) over the rows of ``h`` and its gradient w.r.t. ``A`` and ``b``.

    ``h`` ``[n, H]`` block outputs; the lens is ``x = h + h @ A + b``; ``p_final`` ``[n, V]`` and its
    log. ``self_term`` (``sum p log p`` per row) and ``p_scaled`` (``p / n``) may be passed in when
    several layers share one batch. Per row, with ``z`` the lens logits, ``m = max z`` and
    ``s = sum exp(z - m)``: ``KL = sum p log p - (p . z - m - log s)`` (as ``sum p = 1``), so
    ``log q`` is never built; the ``[n, V]`` buffer of ``z`` becomes ``exp(z - m)`` and then
    ``dL/dz = (softmax(z) - p) / n`` in place.
    """
    n = h.shape[0]
    if self_term is None:
        self_term = row_dots(p_final, logp_final)
    if p_scaled is None:
        p_scaled = p_final * p_final.dtype.type(1.0 / n)
    x = h + h @ a + b
    y, r = head.normed(x)
    z = head.post(y @ head.et)
    m = z.max(axis=1)
    cross = row_dots(p_final, z)
    e = z.copy() if head.softcap else z  # softcapping's derivative needs z itself
    np.subtract(e, m[:, None].astype(e.dtype), out=e)
    np.exp(e, out=e)
    s = e.sum(axis=1).astype(np.float64)
    kl = float(np.sum(self_term - (cross - m - np.log(s)))) / n
    e *= (1.0 / (s * n)).astype(e.dtype)[:, None]
    e -= p_scaled
    dx = head.backward(x, r, z, e)
    return kl, h.T @ dx, dx.sum(axis=0)


def _final_dist(head: NumpyHead, h_last: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = log_softmax(head.logits(h_last), in_place=True)
    return z, np.exp(z)


def fit_tuned(
    states: States,
    head: NumpyHead,
    init: Lens,
    settings: TunedSettings | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[Lens, dict[str, Any]]:
    """A tuned lens (residual form) trained from ``init`` (a linear lens); returns it and train stats."""
    cfg = settings or TunedSettings()
    n_layers, n, hdim = states.hidden.shape
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(n)
    n_val = cfg.validation_size(n)
    val, train = order[:n_val], order[n_val:]
    steps = cfg.train_steps(n)
    k = n_layers - 1
    eye = np.eye(hdim, dtype=np.float32)
    a = np.stack([init.matrix(layer)[0].astype(np.float32) - eye for layer in range(k)])
    b = np.stack([init.matrix(layer)[1].astype(np.float32) for layer in range(k)])
    ma, va = np.zeros_like(a), np.zeros_like(a)
    mb, vb = np.zeros_like(b), np.zeros_like(b)

    val_h = states.hidden[:, np.sort(val)]
    val_logp, val_p = _final_dist(head, val_h[-1]) if n_val else (None, None)

    def val_loss(layer: int, aa: np.ndarray, bb: np.ndarray) -> float:
        if not n_val:
            return 0.0
        assert val_p is not None and val_logp is not None
        x = val_h[layer] + val_h[layer] @ aa + bb
        logq = log_softmax(head.logits(x), in_place=True)
        return float(np.einsum("nv,nv->", val_p, val_logp - logq, dtype=np.float64)) / n_val

    best = [val_loss(layer, a[layer], b[layer]) for layer in range(k)]
    first = list(best)
    best_a, best_b = a.copy(), b.copy()
    train_kl = np.zeros(k)
    start = time.perf_counter()
    pos = 0
    for step in range(steps):
        if pos + cfg.batch > len(train):
            rng.shuffle(train)
            pos = 0
        idx = np.sort(train[pos : pos + cfg.batch])
        pos += cfg.batch
        batch = states.hidden[:, idx]
        logp, p = _final_dist(head, batch[-1])
        self_term = row_dots(p, logp)
        p_scaled = p * np.float32(1.0 / len(idx))
        lr = cfg.lr * 0.5 * (1 + np.cos(np.pi * step / steps))  # cosine decay
        t = step + 1
        for layer in range(k):
            kl, ga, gb = kl_and_grad(head, batch[layer], a[layer], b[layer], logp, p, self_term, p_scaled)
            train_kl[layer] = kl
            _adam_step(a[layer], ma[layer], va[layer], ga, lr, t, cfg.betas)
            _adam_step(b[layer], mb[layer], vb[layer], gb, lr, t, cfg.betas)
        if (step + 1) % cfg.check_every == 0 or step + 1 == steps:
            for layer in range(k):
                loss = val_loss(layer, a[layer], b[layer])
                if loss < best[layer]:
                    best[layer] = loss
                    best_a[layer], best_b[layer] = a[layer], b[layer]
        if progress is not None:
            progress(1)
    seconds = time.perf_counter() - start
    stats = {
        "steps": steps,
        **_settings_record(cfg, init),
        "validation_positions": int(n_val),
        "validation_kl_start": [round(x, 4) for x in first],
        "validation_kl_best": [round(x, 4) for x in best],
        "train_seconds": round(seconds, 2),
        "token_layers_per_second": round(steps * cfg.batch * k / max(seconds, 1e-9), 1),
    }
    return Lens(kind="tuned", weight=best_a, bias=best_b, form="residual"), stats


def _settings_record(cfg: TunedSettings, init: Lens) -> dict[str, Any]:
    """How a tuned lens was trained, for its record (besides the steps)."""
    return {
        "batch": cfg.batch,
        "lr": cfg.lr,
        "optimizer": f"adam (betas {cfg.betas[0]}, {cfg.betas[1]}), cosine decay to 0",
        "init": f"{init.kind} lens (A = W - I)",
        "dtype": "float32",
        "objective": "KL(final || lens), full vocabulary",
        "seed": cfg.seed,
    }


def _adam_step(
    param: np.ndarray, m: np.ndarray, v: np.ndarray, grad: np.ndarray, lr: float, t: int, betas: tuple[float, float]
) -> None:
    """Adam's step ``t`` (from 1) on ``param``, in place; ``m`` and ``v`` (its moment estimates) updated in place."""
    b1, b2 = betas
    m[...] = b1 * m + (1 - b1) * grad
    v[...] = b2 * v + (1 - b2) * grad * grad
    c1, c2 = 1 - b1**t, 1 - b2**t
    param -= lr * (m / c1) / (np.sqrt(v / c2) + 1e-8)


def fit_lens(
    model: Any,
    kind: str = "linear",
    *,
    corpus: Corpus | None = None,
    tokens: int | None = None,
    adapter: str | None = None,
    tuned: TunedSettings | None = None,
    heldout_tokens: int | None = None,
    progress: Progress | None = None,
) -> Lens:
    """Fit a ``kind`` lens ("linear" | "tuned") for ``model`` (id or ``LoadedModel``) on ``corpus``.

    ``tokens``: fit positions to use (default: the whole fit split). The held-out split (at most
    ``heldout_tokens`` positions) measures the fidelity stored in the artefact.
    """
    if kind not in ("linear", "tuned", "jacobian"):
        raise LazarusError(f"cannot fit a {kind!r} lens (choose linear, tuned or jacobian)")
    if tokens is not None and tokens < MIN_FIT_TOKENS and kind != "jacobian":
        raise LazarusError(f"--tokens {tokens}: a lens needs at least {MIN_FIT_TOKENS} tokens to fit")
    corpus = corpus or default_corpus()
    start = time.perf_counter()
    if isinstance(model, str):
        from ...models.loader import load_model

        loaded = load_model(model, adapter=adapter)
    elif hasattr(model, "parts"):
        loaded = model
    else:  # a ModelAnalyzer
        loaded = model.loaded
    if kind == "jacobian":
        return _fit_jacobian_lens(loaded, corpus, tokens, heldout_tokens, progress, start)
    fit_seqs, held = _fit_and_heldout(loaded, corpus, tokens, heldout_tokens)
    n_fit = TokenSequences.positions(fit_seqs)

    t0 = time.perf_counter()
    states = collect_states(loaded, fit_seqs, _stage(progress, "collect", n_fit))
    t1 = time.perf_counter()
    n_layers = states.hidden.shape[0]
    lens = fit_linear(states, progress=_stage(progress, "solve", n_layers - 1))
    t2 = time.perf_counter()
    fit_info: dict[str, Any] = {
        "ridge": RIDGE,
        "collect_seconds": round(t1 - t0, 2),
        "solve_seconds": round(t2 - t1, 2),
    }
    if kind == "tuned":
        head = NumpyHead.of(loaded.parts)
        cfg = tuned or TunedSettings()
        steps = cfg.train_steps(n_fit)
        lens, stats = fit_tuned(states, head, lens, cfg, _stage(progress, "train", steps))
        fit_info.update(stats)
    del states
    t_held = time.perf_counter()
    held_states = collect_states(loaded, held)
    n_held = held_states.num_positions
    logit_fidelity, fidelity = measure_fidelity(loaded, held_states, lens, progress)
    t3 = time.perf_counter()
    fit_info["heldout_seconds"] = round(t3 - t_held, 2)
    lens.meta = _fit_meta(loaded, corpus, n_fit, n_held, t3 - start, fit_info, fidelity, logit_fidelity)
    return lens


def _fit_meta(
    loaded: Any,
    corpus: Corpus,
    n_fit: int,
    n_held: int,
    seconds: float,
    fit_info: dict[str, Any],
    fidelity: list[LensFidelity],
    logit_fidelity: list[LensFidelity],
) -> dict[str, Any]:
    return {
        "model": model_fingerprint(loaded),
        "corpus": corpus.as_json(),
        "tokens": n_fit,
        "heldout_tokens": n_held,
        "fit_seconds": round(seconds, 2),
        "fit": fit_info,
        "fidelity": [f.__dict__ for f in fidelity],
        "logit_fidelity": [f.__dict__ for f in logit_fidelity],
        "created_with": " ".join(filter(None, ["lazarus-report", package_version("lazarus-report")])),
    }


JACOBIAN_DEFAULT_PROMPTS = 3  # prompts of 128 tokens: each costs hidden-size backward passes (see jacobian.py)


def _fit_jacobian_lens(
    loaded: Any,
    corpus: Corpus,
    tokens: int | None,
    heldout_tokens: int | None,
    progress: Progress | None,
    start: float,
) -> Lens:
    """The Jacobian lens: ``J_l`` averaged over prompts of the fit split (``tokens`` positions; default
    ``JACOBIAN_DEFAULT_PROMPTS`` prompts of ``MAX_SEQ_LEN`` tokens), measured on the held-out split."""
    from .jacobian import MAX_SEQ_LEN, SKIP_FIRST, fit_jacobian, jacobian_lens_weights

    if heldout_tokens is None:
        heldout_tokens = heldout_positions(loaded.info.num_layers, loaded.info.vocab_size)
    budget = tokens if tokens is not None else JACOBIAN_DEFAULT_PROMPTS * (MAX_SEQ_LEN - 1)
    seqs = tokenize(corpus, loaded.tokenizer, MAX_SEQ_LEN, fit_tokens=budget, heldout_tokens=0)
    prompts = [s for s in take_tokens(seqs.fit, budget) if len(s) > SKIP_FIRST + 1]
    held = take_tokens(
        tokenize(corpus, loaded.tokenizer, fit_tokens=0, heldout_tokens=heldout_tokens).heldout, heldout_tokens
    )
    if not prompts:
        raise LazarusError(
            f"the corpus has no prompt longer than {SKIP_FIRST + 1} tokens to fit a Jacobian lens on: give a larger --corpus"
        )
    if TokenSequences.positions(held) == 0:
        raise LazarusError("the corpus has no held-out text to measure the lens on: give a larger --corpus")
    hdim = int(loaded.info.hidden_size)
    jac, fit_info = fit_jacobian(loaded, prompts, progress=_stage(progress, "jacobian", hdim * len(prompts)))
    weight, bias = jacobian_lens_weights(jac)
    lens = Lens(kind="jacobian", weight=weight, bias=bias, form="affine")
    t_held = time.perf_counter()
    held_states = collect_states(loaded, held)
    logit_fidelity, fidelity = measure_fidelity(loaded, held_states, lens, progress)
    fit_info["heldout_seconds"] = round(time.perf_counter() - t_held, 2)
    n_fit = TokenSequences.positions(prompts)
    lens.meta = _fit_meta(
        loaded,
        corpus,
        n_fit,
        held_states.num_positions,
        time.perf_counter() - start,
        fit_info,
        fidelity,
        logit_fidelity,
    )
    return lens


def _fit_and_heldout(
    loaded: Any, corpus: Corpus, tokens: int | None, heldout_tokens: int | None
) -> tuple[list[list[int]], list[list[int]]]:
    """The corpus's fit sequences (``tokens`` positions, default ``DEFAULT_FIT_TOKENS``) and held-out ones
    (``heldout_tokens``, default ``heldout_positions``); too few of either is a one-line error."""
    hdim = int(loaded.info.hidden_size)
    if tokens is None:
        tokens = DEFAULT_FIT_TOKENS
    if heldout_tokens is None:
        heldout_tokens = heldout_positions(loaded.info.num_layers, loaded.info.vocab_size)
    # Only what the budgets need is read and tokenised (a huge corpus costs no more than a small one).
    seqs = tokenize(corpus, loaded.tokenizer, fit_tokens=tokens, heldout_tokens=heldout_tokens)
    fit_seqs = take_tokens(seqs.fit, tokens)
    n_fit = TokenSequences.positions(fit_seqs)
    need = min_fit_tokens(hdim)
    if n_fit < need:
        raise LazarusError(
            f"the corpus has {n_fit} tokens to fit on; a lens for this model (hidden size {hdim}) needs at "
            f"least {need}: give a larger --corpus (about {need * 9 // 8 + 1} tokens with the held-out split)"
        )
    held = take_tokens(seqs.heldout, heldout_tokens)
    if TokenSequences.positions(held) == 0:
        raise LazarusError("the corpus has no held-out text to measure the lens on: give a larger --corpus")
    return fit_seqs, held


def heldout_fidelity(
    loaded: Any,
    lens: Lens,
    corpus: Corpus | None = None,
    tokens: int | None = None,
    progress: Progress | None = None,
) -> None:
    """Measure ``lens`` on the corpus's held-out split and store the result in its metadata."""
    corpus = corpus or default_corpus()
    if tokens is None:
        tokens = heldout_positions(loaded.info.num_layers, loaded.info.vocab_size)
    held = take_tokens(tokenize(corpus, loaded.tokenizer, fit_tokens=0, heldout_tokens=tokens).heldout, tokens)
    states = collect_states(loaded, held, _stage(progress, "collect", TokenSequences.positions(held)))
    logit_fidelity, fidelity = measure_fidelity(loaded, states, lens, progress)
    lens.meta["fidelity"] = [f.__dict__ for f in fidelity]
    lens.meta["logit_fidelity"] = [f.__dict__ for f in logit_fidelity]
    lens.meta["heldout_tokens"] = states.num_positions
    lens.meta["heldout_corpus"] = corpus.as_json()


def measure_fidelity(
    loaded: Any, states: States, lens: Lens, progress: Progress | None
) -> tuple[list[LensFidelity], list[LensFidelity]]:
    """[the logit lens's fidelity, ``lens``'s fidelity] on ``states`` (the same positions)."""
    from .eval import measure

    n_layers = states.hidden.shape[0]
    total = states.num_positions * (n_layers - 1)
    logit, fidelity = measure(loaded, states, [Lens.logit(), lens], progress=_stage(progress, "measure", total))
    return logit, fidelity


def _stage(progress: Progress | None, name: str, total: int) -> Callable[[int], None] | None:
    if progress is None:
        return None
    progress(name, 0, total)
    return lambda k: progress(name, k, total)
