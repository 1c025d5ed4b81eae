"""The lens math on tiny random models: exact linear recovery, identity at the last layer, the tuned
lens's hand-derived gradient against finite differences, and the numpy head against the model's own."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from lazarus_report.lens.learned.artefact import Lens
from lazarus_report.lens.learned.collect import States, collect_states
from lazarus_report.lens.learned.corpus import Corpus, tokenize
from lazarus_report.lens.learned.fit import TunedSettings, fit_linear, fit_tuned, kl_and_grad, solve_affine
from lazarus_report.lens.learned.head import NumpyHead

WORDS = [
    "The",
    "capital",
    "of",
    "France",
    "is",
    "Paris",
    "and",
    "the",
    "world",
    "is",
    "big",
    "hello",
    "12",
    "def",
    "return",
    "print",
    "x",
    "in",
    "to",
    "a",
]


def tiny_corpus(n_words: int = 4000, seed: int = 0) -> Corpus:
    rng = random.Random(seed)
    return Corpus(description="tiny", sha256="0" * 64, mixed_docs=[" ".join(rng.choice(WORDS) for _ in range(n_words))])


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tiny_models import build_tiny_model

    root = tmp_path_factory.mktemp("tiny-lens")
    out = {}
    for family in ("llama", "gemma2", "gemma3_text"):
        build_tiny_model(family, root / family)
        out[family] = root / family
    return out


def _load(path: Path):
    from lazarus_report.models.loader import load_model

    return load_model(str(path))


def test_linear_fit_recovers_a_known_affine_map_exactly() -> None:
    rng = np.random.default_rng(1)
    n, h = 3000, 24
    x = rng.standard_normal((n, h)).astype(np.float32) * rng.uniform(0.5, 3.0, h).astype(np.float32)
    w_true = rng.standard_normal((h, h)) / np.sqrt(h)
    b_true = rng.standard_normal(h)
    y = (x.astype(np.float64) @ w_true + b_true).astype(np.float32)
    w, b = solve_affine(x, y, ridge=0.0)
    np.testing.assert_allclose(w, w_true, atol=2e-5)
    np.testing.assert_allclose(b, b_true, atol=2e-5)
    # Through the whole linear fit: three "layers", the last one an exact affine image of each other.
    other = rng.standard_normal((n, h)).astype(np.float32)
    states = States(hidden=np.stack([x, other, y]), next_ids=np.full(n, -1))  # last layer: y
    lens = fit_linear(states, ridge=0.0)
    got_w, got_b = lens.matrix(0)
    np.testing.assert_allclose(got_w, w_true, atol=2e-5)
    np.testing.assert_allclose(got_b, b_true, atol=2e-5)
    np.testing.assert_allclose(lens.translate_np(0, x), y, atol=1e-3)
    # The last layer has no translator: identity.
    assert lens.translate_np(2, y) is y


@pytest.mark.parametrize("family", ["llama", "gemma2", "gemma3_text"])
def test_lens_at_last_layer_is_the_models_own_logits(tiny_models: dict[str, Path], family: str) -> None:
    import mlx.core as mx

    from lazarus_report.lens.readout import head_logits_np
    from lazarus_report.models.hooks import capture_hidden

    loaded = _load(tiny_models[family])
    seqs = tokenize(tiny_corpus(1500), loaded.tokenizer)
    states = collect_states(loaded, seqs.fit)
    lens = fit_linear(states)
    last = len(loaded.parts.layers) - 1
    ids = seqs.heldout[0][:20]
    # The model's own forward pass (its builtin embedding scale, so no override here).
    sink = capture_hidden(loaded.parts, ids, [0, last])
    h = sink[last][0]
    assert lens.translate(last, h) is h
    ours = head_logits_np(loaded.parts, lens.translate(last, h))
    theirs = loaded.model(mx.array([ids])).astype(mx.float32)[0]
    mx.eval(theirs)
    np.testing.assert_allclose(ours, np.asarray(theirs), atol=1e-4, rtol=1e-4)
    # And a non-identity layer really changes the states.
    h0 = sink[0][0]
    moved = np.asarray(lens.translate(0, h0)) - np.asarray(h0)
    assert np.abs(moved).max() > 1e-2


@pytest.mark.parametrize("family", ["llama", "gemma2", "gemma3_text"])
def test_numpy_head_matches_the_model_and_its_gradient_matches_finite_differences(
    tiny_models: dict[str, Path], family: str
) -> None:
    import mlx.core as mx

    loaded = _load(tiny_models[family])
    head = NumpyHead.of(loaded.parts)
    assert (head.softcap is not None) == (family == "gemma2")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, head.hidden_size)).astype(np.float32) * 3
    theirs = np.asarray(loaded.parts.logits(mx.array(x)).astype(mx.float32))
    np.testing.assert_allclose(head.logits(x), theirs, atol=1e-4, rtol=1e-4)

    hdim = head.hidden_size
    h = rng.standard_normal((12, hdim)) * 2
    a = rng.standard_normal((hdim, hdim)) * 0.05
    b = rng.standard_normal(hdim) * 0.05
    zf = head.logits(rng.standard_normal((12, hdim)).astype(np.float32)).astype(np.float64)
    logp = zf - zf.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    p = np.exp(logp)
    # Everything in float64 for the finite differences (the head's matrices are float32: fine).
    head64 = NumpyHead(head.et.astype(np.float64), head.gain.astype(np.float64), head.eps, head.softcap, head.scale)
    kl, ga, gb = kl_and_grad(head64, h, a, b, logp, p)
    assert kl > 0
    eps = 1e-5
    for i, j in [(0, 0), (5, 17), (hdim - 1, 3), (20, hdim - 2)]:
        ap, am = a.copy(), a.copy()
        ap[i, j] += eps
        am[i, j] -= eps
        fd = (kl_and_grad(head64, h, ap, b, logp, p)[0] - kl_and_grad(head64, h, am, b, logp, p)[0]) / (2 * eps)
        assert fd == pytest.approx(ga[i, j], rel=1e-4, abs=1e-8)
    for j in [0, 7, hdim - 1]:
        bp, bm = b.copy(), b.copy()
        bp[j] += eps
        bm[j] -= eps
        fd = (kl_and_grad(head64, h, a, bp, logp, p)[0] - kl_and_grad(head64, h, a, bm, logp, p)[0]) / (2 * eps)
        assert fd == pytest.approx(gb[j], rel=1e-4, abs=1e-8)


def test_tuned_lens_training_lowers_validation_kl_from_the_linear_start(tiny_models: dict[str, Path]) -> None:
    loaded = _load(tiny_models["llama"])
    seqs = tokenize(tiny_corpus(6000, seed=2), loaded.tokenizer)
    states = collect_states(loaded, seqs.fit)
    linear = fit_linear(states)
    head = NumpyHead.of(loaded.parts)
    tuned, stats = fit_tuned(states, head, linear, TunedSettings(steps=60, batch=64, lr=1e-3, validation=400))
    assert tuned.kind == "tuned" and tuned.form == "residual"
    start, best = stats["validation_kl_start"], stats["validation_kl_best"]
    assert all(b <= s for b, s in zip(best, start))
    assert sum(best) < sum(start)
    # the settings are recorded with the lens (issue 21: the record says how it was fitted)
    assert stats["steps"] == 60 and stats["batch"] == 64 and stats["init"].startswith("linear")
    assert stats["dtype"] == "float32" and stats["optimizer"].startswith("adam") and stats["seed"] == 0
    # Residual form: the stored A is W - I of the affine map it applies.
    w, bias = tuned.matrix(0)
    x = states.hidden[0, :5]
    np.testing.assert_allclose(tuned.translate_np(0, x), x @ w + bias, atol=1e-4)


def test_logit_lens_translate_is_identity() -> None:
    lens = Lens.logit()
    x = np.ones((2, 3), dtype=np.float32)
    assert lens.translate_np(0, x) is x


class _Tok:
    """A stand-in tokenizer with the two calls the corpus code makes: one id per character, BOS 0."""

    def encode_plain(self, text: str) -> list[int]:
        return [1 + ord(c) % 50 for c in text]

    def encode(self, text: str) -> list[int]:
        return [0, *self.encode_plain(text)]


def test_corpus_packing_split_and_budget() -> None:
    from lazarus_report.lens.learned.corpus import HELDOUT_EVERY, SEQ_LEN, TokenSequences, take_tokens
    from lazarus_report.lens.learned.eval import heldout_positions

    docs = ["x" * 300, "y" * 1000, "z" * 2000]
    seqs = tokenize(Corpus(description="d", sha256="0", mixed_docs=docs), _Tok())
    every = seqs.fit + seqs.heldout
    assert all(s[0] == 0 and len(s) <= SEQ_LEN for s in every)  # BOS first, at most SEQ_LEN
    stream = sum(len(s) - 1 for s in every)
    assert stream == 3300 + 2 * 2  # packed: the documents plus a two-character separator between them
    assert len(seqs.heldout) == len(every) // HELDOUT_EVERY
    # A token budget counts positions (position 0 of each sequence is not one).
    taken = take_tokens(seqs.fit, 600)
    assert TokenSequences.positions(taken) == 600
    assert take_tokens(seqs.fit, None) is seqs.fit
    assert heldout_positions(30, 49152) == 2048 and heldout_positions(18, 262144) == 672


# --- issue 18: one log-softmax (lens/stats.py) ---


def test_log_softmax_is_one_definition_in_place_or_not() -> None:
    from lazarus_report.lens.stats import log_softmax

    z = np.random.default_rng(0).normal(size=(3, 50)).astype(np.float32) * 10
    kept = z.copy()
    out = log_softmax(z)
    assert np.array_equal(z, kept)  # not in place: the logits are untouched
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.exp(out.astype(np.float64)).sum(axis=1), 1.0, atol=1e-5)
    expected = (z.astype(np.float64) - np.log(np.exp(z.astype(np.float64)).sum(axis=1, keepdims=True))).astype(
        np.float32
    )
    np.testing.assert_allclose(out, expected, atol=2e-6)
    same = log_softmax(z, in_place=True)
    assert same is z and np.array_equal(same, out)  # in place: the same numbers in the same buffer
