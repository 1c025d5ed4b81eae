"""Synthetic ``AnalysisResult`` objects for renderer tests (pure Python, deterministic, no MLX).

``make_result`` imitates a SmolLM2-135M-Instruct run on "The capital of France is" with the
ChatML template: 30 layers, " Paris" emerging in the upper third, a full layers x positions grid.
``make_hostile_result`` puts strings that try to break out of HTML, Markdown, Jinja and JSON into
every place a model or user string can reach a report.
"""

from __future__ import annotations

import math
import random

from lazarus_report.result import (
    AnalysisConfigRecord,
    AnalysisResult,
    LayerPrediction,
    ModelInfo,
    PositionGrid,
    TokenEvolution,
    TokenProb,
    TrackedAtLayer,
    TrackedToken,
)

CHATML_TOKENS = [
    "<|im_start|>", "system", "\n", "You", " are", " a", " helpful", " AI", " assistant", " named",
    " Sm", "ol", "LM", ",", " trained", " by", " Hug", "ging", " Face", "<|im_end|>", "\n",
    "<|im_start|>", "user", "\n", "The", " capital", " of", " France", " is", "<|im_end|>", "\n",
    "<|im_start|>", "assistant", "\n",
]  # fmt: skip

FILLER_TOKENS = [
    " the", " a", ",", ".", " of", " and", " in", " to", " is", "\n", " city", " capital", " France",
    " French", " Lyon", " London", " known", " located", " one", " largest", " Europe", " country",
    " first", " also", " that", " which", " The", " It", " an", " Marseille", " Berlin", " Rome",
]  # fmt: skip

# Strings a tokenizer or user can produce that must stay inert text in every output format.
HOSTILE_STRINGS = [
    "</script><script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "{{ 7*7 }}",
    "{% raw %}",
    "a|b",
    "`code`",
    "```",
    "\u202eevil",
    "\ud800",
    "\n\t ",
    '" onmouseover="alert(1)',
    "[link](https://example.com/x)",
    "<!--",
    "&amp;",
    "\\|",
    "* _x_ #",
    "- 1. # > item",
    "",
]


def _token_id(token: str) -> int:
    # Stable across processes (unlike hash()).
    return sum((i + 1) * ord(c) for i, c in enumerate(token)) % 49152


def make_result(
    *,
    num_layers: int = 30,
    tokens: list[str] | None = None,
    prompt: str = "The capital of France is",
    chat_template: bool = True,
    final_token: str = " Paris",
    final_prob: float = 0.7725,
    tracked: tuple[tuple[str, str, int], ...] = ((" Paris", " Paris", 1), (" Lyonnais", " Ly", 3)),
    emergence_at: float = 0.65,
    top_k: int = 10,
    grid: bool = True,
    layer_step: int = 1,
    model_id: str = "smollm2-135m-instruct",
    filler: list[str] | None = None,
    seed: int = 0,
) -> AnalysisResult:
    """A plausible result: the final token's probability rises in a sigmoid around ``emergence_at``.

    ``tracked`` holds (text the user passed, first token, number of tokens the text encodes to).
    """
    rng = random.Random(seed)
    filler = list(filler if filler is not None else FILLER_TOKENS)
    tokens = list(tokens if tokens is not None else (CHATML_TOKENS if chat_template else _raw_tokens(prompt)))
    formatted = "".join(tokens)
    layers = list(range(0, num_layers, layer_step))
    if layers[-1] != num_layers - 1:
        layers.append(num_layers - 1)
    last = num_layers - 1
    mid = emergence_at * last

    def final_p(layer: int) -> float:
        if layer == last:
            return final_prob
        return final_prob / (1.0 + math.exp(-(layer - mid) / 1.6))

    tracked_tokens = [
        TrackedToken(text=text, token_id=_token_id(tok), token=tok, num_tokens=n) for text, tok, n in tracked
    ]
    predictions: list[LayerPrediction] = []
    tracked_probs: list[list[float]] = [[] for _ in tracked_tokens]
    tracked_ranks: list[list[int]] = [[] for _ in tracked_tokens]
    for layer in layers:
        depth = layer / last
        p_final = final_p(layer)
        others = rng.sample([t for t in filler if t != final_token], k=min(top_k + 2, len(filler) - 1))
        # A falling-off tail of competitors; early layers are flat (high entropy).
        weights = [rng.uniform(0.5, 1.0) * (0.55 ** (i * (0.3 + depth))) for i in range(len(others))]
        scale = (1.0 - p_final) * (0.15 + 0.6 * depth) / sum(weights)
        cands = [(tok, w * scale) for tok, w in zip(others, weights)]
        cands.append((final_token, p_final))
        cands.sort(key=lambda c: -c[1])
        rank_final = 1 + sum(1 for _, p in cands if p > p_final)
        if p_final < 1e-3:
            rank_final = int(40000 * (1 - depth) ** 3) + rank_final
        top = [TokenProb(token_id=_token_id(t), token=t, prob=p) for t, p in cands[:top_k]]
        entropy = 1.1 + 8.5 * (1 - depth) ** 1.5 + (rng.uniform(0, 0.2) if layer != last else 0.0)
        kl = 0.0 if layer == last else max(0.0, 8.0 * (1 - depth) ** 1.2 + rng.uniform(-0.05, 0.05))
        at_layer = []
        for i, t in enumerate(tracked_tokens):
            if t.token == final_token:
                prob, rank = p_final, rank_final
            else:
                prob = 0.02 * math.exp(-((layer - mid * 0.7) ** 2) / 30.0) + 1e-5
                rank = 1 + sum(1 for _, p in cands if p > prob) + (0 if prob > 1e-3 else 500)
            at_layer.append(TrackedAtLayer(prob=prob, rank=rank))
            tracked_probs[i].append(prob)
            tracked_ranks[i].append(rank)
        predictions.append(
            LayerPrediction(
                layer_idx=layer,
                top_tokens=top,
                entropy=entropy,
                kl_to_final=kl,
                final_token_rank=rank_final,
                tracked=at_layer,
            )
        )
    evolutions = []
    for i, t in enumerate(tracked_tokens):
        ranks = tracked_ranks[i]
        emergence = next((layers[j] for j, r in enumerate(ranks) if r == 1), None)
        stable = None
        for j in range(len(ranks) - 1, -1, -1):
            if ranks[j] != 1:
                break
            stable = layers[j]
        evolutions.append(
            TokenEvolution(
                token=t.token,
                token_id=t.token_id,
                text=t.text,
                layers=list(layers),
                probs=tracked_probs[i],
                ranks=ranks,
                emergence_layer=emergence,
                stable_from_layer=stable,
            )
        )
    position_grid = _make_grid(rng, layers, tokens, filler, final_p, last) if grid else None
    return AnalysisResult(
        model=ModelInfo(
            model_id=model_id,
            source="alias",
            path="/opt/models/SmolLM2-135M-Instruct.Q4_1.gguf",
            family="llama",
            num_layers=num_layers,
            hidden_size=576,
            vocab_size=49152,
            tied_embeddings=True,
            embedding_scale=None,
            precision="float32 (dequantized from Q4_1)",
            device="cpu",
            blas="OpenBLAS (/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0)",
            chat_template=True,
        ),
        prompt=prompt,
        formatted_prompt=formatted,
        chat_template_applied=chat_template,
        token_ids=[_token_id(t) for t in tokens],
        tokens=tokens,
        config=AnalysisConfigRecord(
            layer_strategy="all" if layer_step == 1 else "evenly_spaced",
            layer_step=layer_step,
            custom_layers=None,
            top_k=top_k,
            track_tokens=[text for text, _, _ in tracked],
            use_chat_template=chat_template,
            embedding_scale=None,
            compute_grid=grid,
        ),
        captured_layers=list(layers),
        layer_predictions=predictions,
        tracked_tokens=tracked_tokens,
        token_evolutions=evolutions,
        grid=position_grid,
        versions={"lazarus-report": "0.1.0", "mlx": "0.32.4", "mlx-lm": "0.32.2", "python": "3.11.7"},
        timings={"load": 1.2345, "tokenize": 0.0021, "forward": 0.098, "lens": 0.412, "grid": 0.51, "total": 2.31},
    )


def _raw_tokens(prompt: str) -> list[str]:
    words = prompt.split(" ")
    return [words[0]] + [" " + w for w in words[1:]]


def _make_grid(rng, layers, tokens, filler, final_p, last) -> PositionGrid:
    top_tokens, top_ids, top_probs, entropy, kl = [], [], [], [], []
    n = len(tokens)
    for layer in layers:
        depth = layer / last
        row_t, row_p, row_e, row_k = [], [], [], []
        for pos in range(n):
            if pos == n - 1:
                p = final_p(layer)
                tok = " Paris" if p > 0.2 else rng.choice(filler)
                p = max(p, rng.uniform(0.02, 0.2))
            else:
                # The next prompt token tends to win in upper layers ("copying" the continuation).
                nxt = tokens[pos + 1]
                p = rng.uniform(0.02, 0.25) + 0.6 * depth**2 * rng.random()
                tok = nxt if rng.random() < depth else rng.choice(filler)
            row_t.append(tok)
            row_p.append(min(p, 0.99))
            row_e.append(0.6 + 9.0 * (1 - depth) ** 1.4 + rng.uniform(0, 0.4))
            row_k.append(0.0 if layer == last else 7.5 * (1 - depth) ** 1.2 + rng.uniform(0, 0.3))
        top_tokens.append(row_t)
        top_ids.append([_token_id(t) for t in row_t])
        top_probs.append(row_p)
        entropy.append(row_e)
        kl.append(row_k)
    return PositionGrid(
        layers=list(layers),
        positions=list(range(n)),
        top_token_ids=top_ids,
        top_tokens=top_tokens,
        top_probs=top_probs,
        entropy=entropy,
        kl_to_final=kl,
    )


def make_small_result(**kw) -> AnalysisResult:
    """A fast, small result: 6 layers, a raw (no chat template) prompt."""
    defaults: dict = dict(num_layers=6, chat_template=False, top_k=5)
    defaults.update(kw)
    return make_result(**defaults)


def make_untracked_result(**kw) -> AnalysisResult:
    """No tracked tokens and no grid: the sections that depend on them must degrade gracefully."""
    defaults: dict = dict(num_layers=8, chat_template=False, tracked=(), grid=False, top_k=5)
    defaults.update(kw)
    return make_result(**defaults)


def make_hostile_result() -> AnalysisResult:
    """Every model/user string slot filled with ``HOSTILE_STRINGS``."""
    hostile = HOSTILE_STRINGS
    tokens = ["<|im_start|>", "user", "\n"] + hostile + ["<|im_end|>", "\n"]
    joined = "".join(h for h in hostile)
    return _hostile_metadata(
        make_result(
            num_layers=8,
            tokens=tokens,
            prompt="Say " + joined,
            final_token=hostile[0],
            tracked=((hostile[0], hostile[0], 1), (hostile[1], hostile[2], 4), (hostile[7], hostile[8], 2)),
            filler=hostile[1:],
            top_k=8,
            model_id="<b>evil</b>|`model`{{ 7*7 }}\u202e\ud800",
        )
    )


def _hostile_metadata(result: AnalysisResult) -> AnalysisResult:
    import dataclasses

    model = dataclasses.replace(
        result.model,
        family="<script>alert('family')</script>",
        precision="{{ 7*7 }} | `x`",
        blas="<img src=x onerror=alert(2)>",
        device="1. - # > device",
        path="/tmp/</script>/\u202e.gguf",
        adapter="javascript:alert(1)",
    )
    return dataclasses.replace(
        result,
        model=model,
        versions={**result.versions, "<script>k</script>": "</script>v", "evil|key": "`v`\ud800"},
        timings={**result.timings, "<b>t</b>": 0.5},
    )


# --- comparisons ----------------------------------------------------------------------------

GEMMA_TOKENS = [
    "<bos>", "<start_of_turn>", "user", "\n", "The", " capital", " of", " France", " is", "<end_of_turn>", "\n",
    "<start_of_turn>", "model", "\n",
]  # fmt: skip


def _synthetic_log_probs(result: AnalysisResult, *, seed: int, shift: float, vocab: int = 64):
    """``[layers, vocab]`` lens log-probs with the shape of real ones: noisy and model-specific early,
    converging on a shared answer late; ``shift`` moves this model's late layers away from the other's."""
    import numpy as np

    rng = np.random.default_rng(seed)
    shared = np.random.default_rng(1234).normal(size=vocab) * 3.0
    tilt = np.zeros(vocab)
    tilt[: 4] = [2.5, -1.5, 1.0, 2.0]
    n = result.model.num_layers
    rows = []
    for layer in result.captured_layers:
        depth = (layer + 1) / n
        z = shared * depth * 1.5 + rng.normal(size=vocab) * (1 - depth) * 3.0 + shift * tilt * depth
        rows.append(z - (np.log(np.exp(z - z.max()).sum()) + z.max()))
    return np.array(rows)


def make_comparison(kind: str = "same_tokenizer"):
    """A ``ComparisonResult`` built by the real engine (``compare_results``) from synthetic runs.

    ``kind``:
      * ``"same_tokenizer"``: base vs fine-tuned (LoRA adapter), same tokenizer and depth (30 layers);
      * ``"depths"``: 30 vs 18 layers, same tokenizer: layers matched by relative depth;
      * ``"tokenizers"``: different tokenizers and depths (a Gemma-like 18-layer model): no divergences,
        different prompt tokens, a tracked string split in one model only;
      * ``"same_model"``: the same model twice: every difference is zero;
      * ``"hostile"``: hostile strings in every model/user string slot of both runs.
    """
    import dataclasses

    from lazarus_report.compare import compare_results

    if kind == "hostile":
        r1 = make_hostile_result()
        r2 = dataclasses.replace(make_hostile_result(), model=dataclasses.replace(r1.model, adapter="<img src=x onerror=alert(3)>"))
        r2 = dataclasses.replace(r2, layer_predictions=list(reversed(r2.layer_predictions)))
        r2 = dataclasses.replace(r2, layer_predictions=[
            dataclasses.replace(p, layer_idx=r1.layer_predictions[i].layer_idx) for i, p in enumerate(r2.layer_predictions)
        ])
        labels = [r1.model.model_id, "</script><b>two</b>|`x`\u202e"]
        return compare_results(
            r1, r2, _synthetic_log_probs(r1, seed=1, shift=0.0), _synthetic_log_probs(r2, seed=2, shift=1.0),
            fingerprints=["a", "a"], single_token=[[True, False, True], [True, True, False]],
            labels=labels, same_model=False, load_seconds=[0.5, 0.6],
        )
    base = make_result(model_id="smollm2-135m-instruct")
    if kind == "same_model":
        return compare_results(
            base, base, _synthetic_log_probs(base, seed=1, shift=0.0), _synthetic_log_probs(base, seed=1, shift=0.0),
            fingerprints=["f", "f"], single_token=[[True, False], [True, False]],
            labels=["smollm2-135m-instruct (1)", "smollm2-135m-instruct (2)"], same_model=True, load_seconds=[1.2, 0.4],
        )
    if kind == "same_tokenizer":
        tuned = make_result(model_id="smollm2-135m-instruct", seed=1, final_prob=0.52, emergence_at=0.8,
                            final_token=" Paris")
        tuned = dataclasses.replace(tuned, model=dataclasses.replace(tuned.model, adapter="adapters/weather"))
        return compare_results(
            base, tuned, _synthetic_log_probs(base, seed=1, shift=0.0), _synthetic_log_probs(tuned, seed=2, shift=1.0),
            fingerprints=["f", "f"], single_token=[[True, False], [True, False]],
            labels=["smollm2-135m-instruct", "smollm2-135m-instruct + adapters/weather"], same_model=False,
            load_seconds=[1.2, 1.9],
        )
    if kind == "depths":
        small = make_result(model_id="smollm2-deep-18", num_layers=18, seed=2, final_prob=0.61, emergence_at=0.5)
        return compare_results(
            base, small, _synthetic_log_probs(base, seed=1, shift=0.0), _synthetic_log_probs(small, seed=3, shift=1.5),
            fingerprints=["f", "f"], single_token=[[True, False], [True, False]],
            labels=["smollm2-135m-instruct", "smollm2-deep-18"], same_model=False, load_seconds=[1.2, 0.8],
        )
    if kind == "tokenizers":
        gemma = make_result(
            model_id="gemma3-270m", num_layers=18, seed=3, tokens=GEMMA_TOKENS, final_prob=0.41, emergence_at=0.7,
            tracked=((" Paris", " Paris", 1), (" Lyonnais", " Lyonnais", 1)),
        )
        gemma = dataclasses.replace(gemma, model=dataclasses.replace(
            gemma.model, family="gemma3_text", vocab_size=262144, hidden_size=640, embedding_scale=25.3,
            precision="float32 (dequantized from Q4_K, Q5_0, Q6_K, Q8_0)", path="/opt/models/gemma-3-270m.gguf",
        ))
        return compare_results(
            base, gemma, None, None, fingerprints=["smollm", "gemma"], single_token=[[True, False], [True, True]],
            labels=["smollm2-135m-instruct", "gemma3-270m"], same_model=False, load_seconds=[1.2, 3.4],
        )
    raise ValueError(f"unknown comparison kind {kind!r}")


COMPARISON_KINDS = ["same_tokenizer", "depths", "tokenizers", "same_model", "hostile"]
