"""``compare --drift``: two models over a neutral corpus (by default the held-out split of the lens corpus the
package ships), per captured layer: JS(base, tuned) over every position, the share of top-1s changed, the tokens
the fine-tune promotes, and the positions where the final distributions part most.

Model 1 loads, reads the corpus and leaves its lens inputs on disk (``engine.drift.read_base``); it is released
(its head stays) and model 2 loads (or model 1 takes model 2's adapter in place) and is compared with it
(``engine.drift.read_tuned``). Memory: one model, one more head, one sequence's residual streams.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.config import AnalysisConfig, LayerStrategy, select_layers
from ..core.errors import LazarusError
from ..results.codec import rounded
from ..results.drift import ActivationDifference, DriftLayer, DriftPosition, DriftResult, DriftToken, PromotedToken
from .analyzer import each_model

if TYPE_CHECKING:
    from ..lens.learned.corpus import Corpus

DRIFT_TOKENS = 4096  # corpus positions read by default
DRIFT_SEQ_LEN = 512  # tokens per forward pass (at most the model's context)
MAX_PROMOTED = 20
MAX_POSITIONS = 20
CONTEXT_TOKENS = 8  # tokens shown before a listed position


def corpus_sequences(loaded: Any, corpus: Corpus, tokens: int, seq_len: int = DRIFT_SEQ_LEN) -> list[list[int]]:
    """The first ``tokens`` positions of ``corpus`` as token sequences of at most ``seq_len`` tokens (and at most
    the model's context): the held-out split of the default corpus (text no lens was fitted on), or all of the
    user's files."""
    from ..lens.learned.corpus import TokenSequences, take_tokens, tokenize

    if loaded.context_length:
        seq_len = min(seq_len, int(loaded.context_length))
    if corpus.fit_docs or corpus.heldout_docs:  # the built-in corpus: its held-out split
        seqs = tokenize(corpus, loaded.tokenizer, seq_len, fit_tokens=0, heldout_tokens=tokens).heldout
    else:
        split = tokenize(corpus, loaded.tokenizer, seq_len, fit_tokens=tokens, heldout_tokens=tokens)
        seqs = split.fit + split.heldout
    seqs = take_tokens([s for s in seqs if len(s) >= 2], tokens)
    if TokenSequences.positions(seqs) == 0:
        raise LazarusError("the corpus is too short: it holds no token to compare the models on")
    return seqs


def measure_drift(
    model1: str,
    model2: str,
    config: AnalysisConfig | None = None,
    *,
    adapter1: str | None = None,
    adapter2: str | None = None,
    corpus: Corpus | None = None,
    tokens: int = DRIFT_TOKENS,
    precision: str = "auto",
    max_memory: int | str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> DriftResult:
    """Drift of model 2 from model 1 on neutral text (``DriftResult``). ``config``: the layers (strategy) and the
    lens; ``corpus``: default ``lens.learned.corpus.default_corpus()``; ``tokens``: positions read (at most).
    ``progress(stage, done, total)``: "model 1" / "model 2" positions."""
    from ..engine.drift import ACT_DIFF_POSITIONS, read_base, read_tuned
    from ..lens.learned.collect import embedding_factor
    from ..lens.learned.corpus import default_corpus

    config = config or AnalysisConfig(layer_strategy=LayerStrategy.ALL)
    if tokens < 1:
        raise LazarusError("--drift-tokens must be at least 1")
    corpus = corpus or default_corpus()
    t0 = time.perf_counter()
    infos: list[Any] = []
    loads: list[float] = []
    seqs: list[list[int]] = []
    with tempfile.TemporaryDirectory(prefix="lazarus-drift-") as spill:
        base = None
        arrays = None
        for side in each_model((model1, model2), (adapter1, adapter2), (None, None), precision, max_memory):
            loaded = side.analyzer.loaded
            if loaded.parts.shard is not None:
                raise LazarusError("--drift does not run under mlx.launch yet")
            lens = side.analyzer.lens(config.lens)
            factor = embedding_factor(loaded)
            loads.append(float(loaded.load_seconds))
            infos.append(loaded.info)
            try:
                if side.number == 1:
                    n = loaded.info.num_layers
                    layers = select_layers(config.layer_strategy, n, config.layer_step, config.custom_layers)
                    seqs, record = corpus_sequences(loaded, corpus, tokens), lens.record()
                    shared = _shared_blocks(model1, model2, adapter1, adapter2, n)
                    base = read_base(
                        loaded, lens, layers, seqs, spill, factor, _stage(progress, "model 1", seqs), shared
                    )
                else:
                    assert base is not None
                    if loaded.info.num_layers != infos[0].num_layers:
                        raise LazarusError("drift compares layer by layer: the two models must have the same depth")
                    arrays = read_tuned(loaded, lens, base, seqs, factor, _stage(progress, "model 2", seqs))
                    decode = _decoder(loaded)
            except LazarusError as exc:
                raise LazarusError(f"model {side.number} ({side.model_id}): {exc}") from None
            del loaded, lens, side
        assert arrays is not None and base is not None
        layers = base.layers
        del base
    t1 = time.perf_counter()
    return DriftResult(
        models=infos,
        labels=_labels(model1, model2, adapter1, adapter2),
        lens=record,
        corpus=corpus.description + (" (held-out split)" if corpus.heldout_docs else ""),
        corpus_sha256=corpus.sha256,
        sequences=len(seqs),
        tokens=int(arrays.js.shape[1]),
        sequence_length=max(len(s) for s in seqs),
        layers=layer_rows(layers, arrays),
        final_layer=layers[-1],
        promoted=promoted_tokens(arrays, decode),
        top_positions=top_positions(arrays, seqs, decode),
        notes=_notes(infos, adapter1, adapter2),
        versions=_versions(),
        timings={"load": round(sum(loads), 4), "total": round(t1 - t0, 4)},
        activation_difference=activation_differences(layers, arrays, decode),
        activation_positions=ACT_DIFF_POSITIONS,
    )


def _shared_blocks(model1: str, model2: str, adapter1: str | None, adapter2: str | None, num_layers: int) -> int:
    """Base vs base + adapter (the adapter applied in place, ``each_model``): the leading blocks the adapter leaves
    alone, which model 2 need not run (``engine.drift.read_tuned`` checks it on the loaded modules); else 0."""
    if model1 != model2 or adapter1 is not None or adapter2 is None:
        return 0
    from ..models.adapter_config import adapted_layers

    adapted = adapted_layers(adapter2, num_layers)
    return min(adapted) if adapted else 0


def _versions() -> dict[str, str]:
    from ..core.runtime import versions

    return versions()


def _decoder(loaded: Any) -> Any:
    from ..engine.prompt import Decoder

    return Decoder(loaded.tokenizer)


def _stage(progress: Callable[[str, int, int], None] | None, name: str, seqs: list[list[int]]) -> Any:
    if progress is None:
        return None
    total = sum(len(s) - 1 for s in seqs)
    done = [0]
    progress(name, 0, total)

    def step(n: int) -> None:
        done[0] += n
        progress(name, done[0], total)

    return step


def _labels(model1: str, model2: str, adapter1: str | None, adapter2: str | None) -> list[str]:
    from ..results.codec import distinct_labels

    def label(model: str, adapter: str | None) -> str:
        return f"{model} + {adapter}" if adapter else model

    return distinct_labels([label(model1, adapter1), label(model2, adapter2)])


def _notes(infos: list[Any], adapter1: str | None, adapter2: str | None) -> list[str]:
    notes = []
    if adapter1 is None and adapter2 is None and infos[0].path == infos[1].path:
        notes.append("the same model on both sides: drift is 0 by construction")
    return notes


def layer_rows(layers: list[int], arrays: Any) -> list[DriftLayer]:
    """Per captured layer: mean, 90th and 99th percentiles and maximum of JS over all positions, share of top-1s
    changed, and whether the layer was bit for bit identical."""
    rows = []
    for j, layer in enumerate(layers):
        js = arrays.js[j]
        p90, p99 = np.percentile(js, [90, 99]) if len(js) else (0.0, 0.0)
        rows.append(
            DriftLayer(
                layer=layer,
                js_mean=rounded(float(js.mean())),
                js_p90=rounded(float(p90)),
                js_p99=rounded(float(p99)),
                js_max=rounded(float(js.max())),
                top1_changed=rounded(float(arrays.changed[j].mean())),
                identical=bool(arrays.identical[j]),
            )
        )
    return rows


def promoted_tokens(arrays: Any, decode: Any, limit: int = MAX_PROMOTED) -> list[PromotedToken]:
    """The tuned model's final top-1 where it differs from the base's, counted per token (most frequent first;
    ties: the larger mean gain, then the smaller id), with the mean of p_tuned(token) - p_base(token) there."""
    where = np.nonzero(arrays.tuned_top != arrays.base_top)[0]
    n = len(arrays.tuned_top)
    out = []
    ids, counts = np.unique(arrays.tuned_top[where], return_counts=True)
    gains = arrays.tuned_top_prob[where] - arrays.base_prob_of_tuned[where]
    for token_id, count in zip(ids.tolist(), counts.tolist()):
        gain = float(gains[arrays.tuned_top[where] == token_id].mean())
        out.append(
            PromotedToken(
                token_id=token_id,
                token=decode(token_id),
                count=count,
                share=rounded(count / n),
                mean_gain=rounded(gain),
            )
        )
    out.sort(key=lambda t: (-t.count, -t.mean_gain, t.token_id))
    return out[:limit]


def top_positions(
    arrays: Any, seqs: list[list[int]], decode: Any, limit: int = MAX_POSITIONS, context: int = CONTEXT_TOKENS
) -> list[DriftPosition]:
    """The positions with the largest final-layer JS (ties: corpus order), with the tokens before them."""
    js = arrays.js[-1]
    where: list[tuple[int, int]] = [(k, i) for k, s in enumerate(seqs) for i in range(1, len(s))]
    order = [int(i) for i in np.lexsort((np.arange(len(js)), -js)) if js[i] > 0][:limit]
    out = []
    for i in order:
        k, pos = where[i]
        seq = seqs[k]
        out.append(
            DriftPosition(
                sequence=k,
                position=pos,
                js=rounded(float(js[i])),
                context=[decode(t) for t in seq[max(1, pos - context) : pos]],
                token=decode(seq[pos]),
                next_token=decode(seq[pos + 1]) if pos + 1 < len(seq) else None,
                base_top1=_token(decode, arrays.base_top[i], arrays.base_top_prob[i]),
                tuned_top1=_token(decode, arrays.tuned_top[i], arrays.tuned_top_prob[i]),
            )
        )
    return out


def activation_differences(layers: list[int], arrays: Any, decode: Any) -> list[ActivationDifference]:
    """The activation-difference lens per captured layer (``engine.drift._difference_lens``)."""
    return [
        ActivationDifference(
            layer=layer,
            norm=rounded(arrays.diff_norm[j]),
            top_tokens=[_token(decode, i, p) for i, p in arrays.diff_top[j]],
        )
        for j, layer in enumerate(layers)
    ]


def _token(decode: Any, token_id: Any, prob: Any) -> DriftToken:
    return DriftToken(token_id=int(token_id), token=decode(int(token_id)), prob=rounded(float(prob)))
