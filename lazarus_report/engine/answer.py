"""Whole answers after the prompt: read teacher-forced through the lens, or written greedily by the model first.

``plan_answer`` turns ``config.answer`` / ``config.generate`` into token ids (tokenizing the prompt and answer
as one text, or generating with mlx-lm's KV cache); ``AnswerPlan.collect`` rides on the prompt's own forward pass
(``engine.run.analyze``), keeping the hidden rows at the positions that predict the answer's tokens and handing
the prompt's rows on unchanged; ``AnswerPlan.reading`` turns them into an ``AnswerReading`` (one head matmul per
group of layers, then ``row_stats`` against the final layer). A generated answer is read the same way, in one
pass of its own over the finished text (not a lens pass per generated token).

Shapes: A answer tokens, L captured layers, H hidden size, V vocabulary. The collected rows are ``[A, H]`` per
captured layer; the head's logits ``[rows, V]`` are made in groups of layers within ``GRID_BUDGET_BYTES``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..core.errors import LazarusError
from ..results.answer import GENERATED, TEACHER_FORCED, AnswerReading, AnswerToken
from ..results.codec import first_layer_where, rounded, true_from_layer
from ..results.provenance import TokenProb
from .prompt import Decoder, PreparedPrompt, check_length

if TYPE_CHECKING:
    from ..core.config import AnalysisConfig
    from ..lens.learned.artefact import Lens
    from ..models.loader import LoadedModel

ANSWER_TOP_K = 3  # the most probable tokens kept per answer token and layer (hover in the strip)
# mlx-lm's ``generate_step`` prefills the prompt in pieces of this many tokens; the same pieces give the same tokens.
GENERATE_PREFILL = 2048


@dataclass
class AnswerPlan:
    """The answer's token ids and where they sit, before the lens pass; then the rows the pass collected."""

    source: str  # TEACHER_FORCED or GENERATED
    text: str
    prompt_ids: list[int]
    ids: list[int]  # the answer's tokens
    start: int  # index of the first answer token in the sequence read (the prompt's length unless merged)
    stop_reason: str | None = None
    boundary_note: str = ""
    seconds: float = 0.0  # generation (and tokenization) time
    rows: dict[int, list[Any]] = field(default_factory=dict)  # captured layer -> [c, H] pieces at reading positions
    final_rows: list[Any] = field(default_factory=list)  # the last block's output there

    @property
    def sequence(self) -> list[int]:
        """What the model reads: the prompt up to ``start``, then the answer."""
        return [*self.prompt_ids[: self.start], *self.ids]

    @property
    def rides_on_prompt(self) -> bool:
        """A given answer that follows the prompt's own tokens: its rows come from the prompt's forward pass.
        A generated answer is read in one pass of its own over the finished text (a fraction of the generation's
        cost), so the prompt's part stays bit for bit what it is without an answer: two models of a comparison
        write different answers, and the change map tells layers that are exactly the same apart."""
        return self.source == TEACHER_FORCED and self.start == len(self.prompt_ids)

    @property
    def run_ids(self) -> list[int]:
        """The tokens the prompt's forward pass runs over: the prompt, then the answer but its last token (no
        position reads what follows the answer)."""
        if not self.rides_on_prompt or not self.ids:
            return list(self.prompt_ids)
        return [*self.prompt_ids, *self.ids[:-1]]

    def collect(
        self, chunks: Iterator[tuple[int, dict[int, Any]]], layers: list[int], n_layers: int
    ) -> Iterator[tuple[int, dict[int, Any]]]:
        """``chunks`` (``forward_chunks`` over ``run_ids``) with the answer's reading rows kept here, and each
        chunk cut to the prompt's positions (chunks wholly after the prompt are not passed on)."""
        n_prompt = len(self.prompt_ids)
        for start, sink in chunks:
            if self.rides_on_prompt:
                self._take(start, sink, layers, n_layers)
            n_rows = sink[n_layers - 1].shape[1]
            if start >= n_prompt:
                continue
            if start + n_rows <= n_prompt:
                yield start, sink
            else:
                yield start, {i: s[:, : n_prompt - start] for i, s in sink.items()}

    def _take(self, start: int, sink: dict[int, Any], layers: list[int], n_layers: int) -> None:
        if not self.ids:
            return
        first, last = self.start - 1, self.start + len(self.ids) - 2  # the positions that read the answer
        n_rows = sink[n_layers - 1].shape[1]
        lo, hi = max(first, start), min(last + 1, start + n_rows)
        if lo >= hi:
            return
        for i in layers:
            self.rows.setdefault(i, []).append(sink[i][0, lo - start : hi - start])
        self.final_rows.append(sink[n_layers - 1][0, lo - start : hi - start])

    def reading(
        self, loaded: LoadedModel, lens: Lens, layers: list[int], decode: Decoder, factor: float | None
    ) -> AnswerReading:
        """The ``AnswerReading`` from the collected rows (a pass of its own when the boundary merged)."""
        from ..lens.readout import forward_chunks

        n_layers = loaded.info.num_layers
        if not self.rides_on_prompt and self.ids:  # generated, or the boundary merged: a pass of its own
            for start, sink in forward_chunks(loaded.parts, self.sequence[:-1], layers, factor):
                self._take(start, sink, layers, n_layers)
        tokens = _answer_tokens(loaded, self, lens, layers, decode) if self.ids else []
        divergence = next((k for k, t in enumerate(tokens) if t.ranks[-1] != 1), None)
        self.rows.clear()
        self.final_rows.clear()
        return AnswerReading(
            source=self.source,
            text=self.text,
            start=self.start,
            tokens=tokens,
            sequence_logprob=rounded(sum(t.logprob for t in tokens)) if tokens else 0.0,
            divergence_index=divergence,
            stop_reason=self.stop_reason,
            boundary_note=self.boundary_note,
        )


def plan_answer(
    loaded: LoadedModel, prepared: PreparedPrompt, config: AnalysisConfig, factor: float | None
) -> AnswerPlan | None:
    """The answer ``config`` asks for, as token ids after ``prepared`` (None when it asks for none). A generated
    answer is written here (greedy); the lengths are checked against the context before any forward pass."""
    if config.answer is None and config.generate is None:
        return None
    t0 = time.perf_counter()
    prompt_ids = list(prepared.token_ids)
    if config.answer is not None:
        plan = _teacher_forced(loaded, prepared, config.answer)
    else:
        assert config.generate is not None
        check_length(loaded, len(prompt_ids) + config.generate, f"the prompt and {config.generate} generated tokens")
        if getattr(loaded.parts, "shard", None) is not None:
            raise LazarusError("--generate cannot run on a model sharded over several ranks; use --answer")
        ids, reason = generate_greedy(loaded, prompt_ids, config.generate, config.stop, factor)
        plan = AnswerPlan(GENERATED, loaded.tokenizer.decode(ids), prompt_ids, ids, len(prompt_ids), reason)
    plan.seconds = time.perf_counter() - t0
    return plan


def _teacher_forced(loaded: LoadedModel, prepared: PreparedPrompt, answer: str) -> AnswerPlan:
    """The prompt's text and the answer tokenized as one text, the way the model would see them."""
    tok = loaded.tokenizer
    text = prepared.text + answer
    full = tok.encode_plain(text) if prepared.chat_template_applied else tok.encode(text)
    prompt_ids = list(prepared.token_ids)
    check_length(loaded, len(full), "the prompt with its answer")
    start = 0
    while start < min(len(full), len(prompt_ids)) and full[start] == prompt_ids[start]:
        start += 1
    if start == 0:
        raise LazarusError("the prompt and its answer tokenize to nothing the prompt's own tokens start with")
    ids = list(full[start:])
    if not ids:
        raise LazarusError(f"the answer {answer!r} adds no tokens after the prompt")
    note = ""
    if start < len(prompt_ids):
        merged = "".join(tok.token_to_str(i) for i in prompt_ids[start:])
        note = (
            f"the prompt's last {len(prompt_ids) - start} token(s) {merged!r} merged with the answer's start: "
            f"the answer is read from position {start}, as the model reads the text (its first tokens "
            "include the merged prompt text)"
        )
    return AnswerPlan(TEACHER_FORCED, answer, prompt_ids, ids, start, boundary_note=note)


def generate_greedy(
    loaded: LoadedModel, prompt_ids: list[int], max_tokens: int, stop: list[str], factor: float | None
) -> tuple[list[int], str]:
    """Greedy decoding with mlx-lm's KV cache, as mlx-lm's ``generate_step`` does it at temperature 0 (prefill
    all prompt tokens but the last, then one token at a time; argmax of the log-probabilities). Stops at an
    end-of-sequence id (not kept), when the decoded text contains a stop string (the tokens wholly before it
    are kept), or after ``max_tokens``. Returns (ids, stop reason: "eos", "stop" or "length")."""
    from mlx_lm.models.cache import make_prompt_cache

    from ..lens.readout import mx
    from ..models.hooks import embedding_scaled

    model = loaded.parts.model
    tok = loaded.tokenizer
    eos = tok.eos_token_ids
    cache = make_prompt_cache(model)
    out: list[int] = []
    with embedding_scaled(loaded.parts, factor):
        for a in range(0, len(prompt_ids) - 1, GENERATE_PREFILL):
            piece = prompt_ids[a : min(a + GENERATE_PREFILL, len(prompt_ids) - 1)]
            model(mx.array([piece], dtype=mx.int32), cache=cache)  # the logits are never evaluated
            mx.eval([c.state for c in cache])
        y = prompt_ids[-1]
        for _ in range(max_tokens):
            logits = model(mx.array([[y]], dtype=mx.int32), cache=cache)[:, -1, :]
            logprobs = logits - mx.logsumexp(logits, keepdims=True)
            y = int(mx.argmax(logprobs, axis=-1).item())
            if y in eos:
                return out, "eos"
            out.append(y)
            if stop:
                kept = _before_stop(tok, out, stop)
                if kept is not None:
                    return kept, "stop"
    return out, "length"


def _before_stop(tok: Any, ids: list[int], stop: list[str]) -> list[int] | None:
    """The ids wholly before the first stop string in their decoded text (None: no stop string yet)."""
    text = tok.decode(ids)
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    if cut < 0:
        return None
    kept = len(ids)
    while kept and not (text[:cut].startswith(piece := tok.decode(ids[:kept])) and len(piece) <= cut):
        kept -= 1
    return ids[:kept]


def sequence_logprob(
    loaded: LoadedModel, prompt_ids: list[int], answer_ids: list[int], factor: float | None = None
) -> float:
    """The model's own (final-layer) log-probability of ``answer_ids`` after ``prompt_ids`` (natural log)."""
    import numpy as np

    from ..lens.readout import forward_chunks, head_logits_np, mx, row_lse

    if not answer_ids:
        return 0.0
    last = loaded.info.num_layers - 1
    start = len(prompt_ids)
    check_length(loaded, start + len(answer_ids), "the prompt with the other model's answer")
    pieces = []
    for a, sink in forward_chunks(loaded.parts, [*prompt_ids, *answer_ids[:-1]], [last]):
        n = sink[last].shape[1]
        lo, hi = max(start - 1, a), a + n
        if lo < hi:
            pieces.append(sink[last][0, lo - a : hi - a])
    z = head_logits_np(loaded.parts, mx.concatenate(pieces, axis=0))
    picked = z[np.arange(len(answer_ids)), answer_ids].astype(np.float64)
    return rounded(float((picked - row_lse(z)).sum()))


def _answer_tokens(
    loaded: LoadedModel, plan: AnswerPlan, lens: Lens, layers: list[int], decode: Decoder
) -> list[AnswerToken]:
    """Per answer token: each captured layer's lens probability, exact rank, entropy, KL to the final layer and
    top-3 at the position that predicts it."""
    import numpy as np

    from ..lens.readout import GRID_BUDGET_BYTES, FinalReference, NonFiniteError, head_logits_np, mx, row_stats

    parts = loaded.parts
    ids = np.asarray(plan.ids)
    n = len(plan.ids)
    rows = np.arange(n)
    z_final = head_logits_np(parts, mx.concatenate(plan.final_rows, axis=0))
    final = FinalReference.of(z_final)
    last = loaded.info.num_layers - 1
    per_group = max(1, GRID_BUDGET_BYTES // (4 * parts.args.vocab_size * n))
    cols: dict[str, list[Any]] = {k: [] for k in ("probs", "ranks", "entropy", "kl", "top_ids", "top_probs", "lp")}
    for g0 in range(0, len(layers), per_group):
        group = layers[g0 : g0 + per_group]
        inner = [i for i in group if i != last]
        z_all = (
            head_logits_np(parts, mx.concatenate([lens.translate(i, mx.concatenate(plan.rows[i], 0)) for i in inner]))
            if inner
            else None
        )
        for i in group:
            z = z_final if i == last else z_all[inner.index(i) * n : (inner.index(i) + 1) * n]  # type: ignore[index]
            if not np.isfinite(z).all():
                raise NonFiniteError("the model produced NaN or infinite logits: its weights are damaged or overflow")
            st = row_stats(z, ANSWER_TOP_K, final)
            picked = z[rows, ids]
            lp = picked.astype(np.float64) - st.lse
            cols["lp"].append(lp)
            cols["probs"].append(np.exp(lp))
            cols["ranks"].append(1 + (z > picked[:, None]).sum(axis=1))
            cols["entropy"].append(st.entropy)
            cols["kl"].append(st.kl_to_final)
            cols["top_ids"].append(st.top_ids)
            cols["top_probs"].append(st.top_probs)
        del z_all
    return [_token(plan, k, layers, cols, decode) for k in range(n)]


def _token(plan: AnswerPlan, k: int, layers: list[int], cols: dict[str, list[Any]], decode: Decoder) -> AnswerToken:
    ranks = [int(r[k]) for r in cols["ranks"]]
    top1 = [r == 1 for r in ranks]
    return AnswerToken(
        token_id=int(plan.ids[k]),
        token=decode(plan.ids[k]),
        position=plan.start + k,
        probs=rounded([float(p[k]) for p in cols["probs"]]),
        ranks=ranks,
        entropy=rounded([float(e[k]) for e in cols["entropy"]]),
        kl_to_final=rounded([float(d[k]) for d in cols["kl"]]),
        top_tokens=[
            [TokenProb(int(i), decode(int(i)), rounded(float(p))) for i, p in zip(ids[k], probs[k])]
            for ids, probs in zip(cols["top_ids"], cols["top_probs"])
        ],
        logprob=rounded(float(cols["lp"][-1][k])),
        emergence_layer=first_layer_where(layers, top1),
        stable_from_layer=true_from_layer(layers, top1),
    )


def cross_logprob(loaded: LoadedModel, own: Any, other: Any, same_tokenizer: bool, factor: float | None) -> float:
    """This model's log-probability of another model's answer after its own prompt (``own`` and ``other``:
    ``AnalysisResult``s; ``compare --generate``). The other's token ids when the tokenizers are the same, else
    its text tokenized by this model's tokenizer, as ``--answer`` would."""
    answer = other.answer
    if answer is None or not answer.tokens:
        return 0.0
    if same_tokenizer:
        return sequence_logprob(loaded, list(own.token_ids), [t.token_id for t in answer.tokens], factor)
    prepared = PreparedPrompt(own.formatted_prompt, own.chat_template_applied, list(own.token_ids))
    plan = _teacher_forced(loaded, prepared, answer.text)
    return sequence_logprob(loaded, plan.sequence[: plan.start], plan.ids, factor)
