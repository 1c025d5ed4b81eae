"""Synthetic ``AnalysisResult`` objects for renderer tests (pure Python, deterministic, no MLX).

``make_result`` imitates a SmolLM2-135M-Instruct run on "The capital of France is" with the
ChatML template: 30 layers, " Paris" emerging in the upper third, a full layers x positions grid.
``make_hostile_result`` puts strings that try to break out of HTML, Markdown, Jinja and JSON into
every place a model or user string can reach a report.
"""

from __future__ import annotations

import math
import random

from lazarus_report.results.analysis import (
    AnalysisConfigRecord,
    AnalysisResult,
    LayerPrediction,
    PositionGrid,
    TokenEvolution,
    TrackedAtLayer,
    TrackedToken,
)
from lazarus_report.results.provenance import ModelInfo, TokenProb

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
    # P(the last layer's top-1 at that position): the cell's own top-1 probability where they agree,
    # below it elsewhere (no rng draws: the other factories' values stay as they were).
    answers = top_tokens[-1]
    answer_probs = [
        [p if t == a else float(f"{p * (0.1 + 0.5 * layer / last):.8g}") for t, p, a in zip(row_t, row_p, answers)]
        for layer, row_t, row_p in zip(layers, top_tokens, top_probs)
    ]
    return PositionGrid(
        layers=list(layers),
        positions=list(range(n)),
        top_token_ids=top_ids,
        top_tokens=top_tokens,
        top_probs=top_probs,
        entropy=entropy,
        kl_to_final=kl,
        answer_probs=answer_probs,
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
    tilt[:4] = [2.5, -1.5, 1.0, 2.0]
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

    from lazarus_report.compare.layers import compare_results

    if kind == "hostile":
        r1 = make_hostile_result()
        r2 = dataclasses.replace(
            make_hostile_result(), model=dataclasses.replace(r1.model, adapter="<img src=x onerror=alert(3)>")
        )
        r2 = dataclasses.replace(r2, layer_predictions=list(reversed(r2.layer_predictions)))
        r2 = dataclasses.replace(
            r2,
            layer_predictions=[
                dataclasses.replace(p, layer_idx=r1.layer_predictions[i].layer_idx)
                for i, p in enumerate(r2.layer_predictions)
            ],
        )
        labels = [r1.model.model_id, "</script><b>two</b>|`x`\u202e"]
        return compare_results(
            r1,
            r2,
            _synthetic_log_probs(r1, seed=1, shift=0.0),
            _synthetic_log_probs(r2, seed=2, shift=1.0),
            fingerprints=["a", "a"],
            single_token=[[True, False, True], [True, True, False]],
            labels=labels,
            same_model=False,
            load_seconds=[0.5, 0.6],
        )
    base = make_result(model_id="smollm2-135m-instruct")
    if kind == "same_model":
        return compare_results(
            base,
            base,
            _synthetic_log_probs(base, seed=1, shift=0.0),
            _synthetic_log_probs(base, seed=1, shift=0.0),
            fingerprints=["f", "f"],
            single_token=[[True, False], [True, False]],
            labels=["smollm2-135m-instruct (1)", "smollm2-135m-instruct (2)"],
            same_model=True,
            load_seconds=[1.2, 0.4],
        )
    if kind == "same_tokenizer":
        tuned = make_result(
            model_id="smollm2-135m-instruct", seed=1, final_prob=0.52, emergence_at=0.8, final_token=" Paris"
        )
        tuned = dataclasses.replace(tuned, model=dataclasses.replace(tuned.model, adapter="adapters/weather"))
        return compare_results(
            base,
            tuned,
            _synthetic_log_probs(base, seed=1, shift=0.0),
            _synthetic_log_probs(tuned, seed=2, shift=1.0),
            fingerprints=["f", "f"],
            single_token=[[True, False], [True, False]],
            labels=["smollm2-135m-instruct", "smollm2-135m-instruct + adapters/weather"],
            same_model=False,
            load_seconds=[1.2, 1.9],
        )
    if kind == "depths":
        small = make_result(model_id="smollm2-deep-18", num_layers=18, seed=2, final_prob=0.61, emergence_at=0.5)
        return compare_results(
            base,
            small,
            _synthetic_log_probs(base, seed=1, shift=0.0),
            _synthetic_log_probs(small, seed=3, shift=1.5),
            fingerprints=["f", "f"],
            single_token=[[True, False], [True, False]],
            labels=["smollm2-135m-instruct", "smollm2-deep-18"],
            same_model=False,
            load_seconds=[1.2, 0.8],
        )
    if kind == "tokenizers":
        gemma = make_result(
            model_id="gemma3-270m",
            num_layers=18,
            seed=3,
            tokens=GEMMA_TOKENS,
            final_prob=0.41,
            emergence_at=0.7,
            tracked=((" Paris", " Paris", 1), (" Lyonnais", " Lyonnais", 1)),
        )
        gemma = dataclasses.replace(
            gemma,
            model=dataclasses.replace(
                gemma.model,
                family="gemma3_text",
                vocab_size=262144,
                hidden_size=640,
                embedding_scale=25.3,
                precision="float32 (dequantized from Q4_K, Q5_0, Q6_K, Q8_0)",
                path="/opt/models/gemma-3-270m.gguf",
            ),
        )
        return compare_results(
            base,
            gemma,
            None,
            None,
            fingerprints=["smollm", "gemma"],
            single_token=[[True, False], [True, True]],
            labels=["smollm2-135m-instruct", "gemma3-270m"],
            same_model=False,
            load_seconds=[1.2, 3.4],
        )
    raise ValueError(f"unknown comparison kind {kind!r}")


COMPARISON_KINDS = ["same_tokenizer", "depths", "tokenizers", "same_model", "hostile"]


# --- suites -----------------------------------------------------------------------------------

# (prompt, target token, the runner-up the tuned model sometimes prefers)
SUITE_PROMPTS = [
    ("The capital of France is", " Paris", " Lyon"),
    ("The capital of Germany is", " Berlin", " Munich"),
    ("The capital of Italy is", " Rome", " Milan"),
    ("The largest city in the UK is", " London", " Manchester"),
    ("Marseille is a port city in", " France", " Europe"),
    ("The Eiffel Tower is located in", " Paris", " France"),
    ("What's the weather in Paris?", " I", " The"),
]


def make_suite(
    n_cases: int = 6,
    *,
    two_models: bool = True,
    hostile: bool = False,
    num_layers: int = 30,
    tuned_layers: int | None = None,
    top_k: int = 5,
    role_checked: str | None = None,
):
    """A deterministic synthetic ``SuiteResult`` (no grid in any case result, as suite runs compute none).

    Every case comes from ``make_result`` (and, for two models, the same engine as ``make_comparison``),
    varied by the case index: where the target (the first tracked token) emerges, the final
    probabilities; some cases fail (the tuned model prefers another token, so the target never
    becomes top-1 there), some have skipped checks, some track nothing (no target), and one case
    (index 3, or the last of a shorter suite) could not run. ``hostile=True`` puts ``HOSTILE_STRINGS``
    into case ids, prompts, tokens, check texts, labels and the suite name; ``tuned_layers`` gives the
    tuned model another depth (layers are then matched by relative depth). One model: the tuned runs.
    """
    from lazarus_report.results.suite import SuiteCase, SuiteResult

    labels = ["smollm2-135m-instruct", "smollm2-135m-instruct + adapters/weather"][: 2 if two_models else 1]
    if hostile:
        labels = ["<b>base</b>|`m`\u202e", "</script><b>tuned</b>{{ 7*7 }}"][: 2 if two_models else 1]
    cases = []
    for i in range(n_cases):
        prompt, target, other = SUITE_PROMPTS[i % len(SUITE_PROMPTS)]
        case_id = f"{prompt.split()[-2].lower().strip('?')}-{i:02d}"
        if hostile:
            target, other = HOSTILE_STRINGS[i % len(HOSTILE_STRINGS)], HOSTILE_STRINGS[(i + 5) % len(HOSTILE_STRINGS)]
            case_id = target + (f"#{i}" if i >= len(HOSTILE_STRINGS) else "")
            prompt = "Say " + target + HOSTILE_STRINGS[(i + 1) % len(HOSTILE_STRINGS)]
        line = 4 + 6 * i
        if i == min(3, n_cases - 1):
            error = f"model 2 ({labels[-1]}): the prompt is longer than the model's context (8192 tokens)"
            cases.append(SuiteCase(case_id, prompt, line, None, None, [], error))
            continue
        case = _SuiteCaseSpec(i, case_id, prompt, target, other, line, two_models, hostile)
        base, tuned = case.results(num_layers, tuned_layers or num_layers, top_k)
        comparison = case.comparison(base, tuned, labels) if two_models else None
        checks = case.checks(base, tuned)
        cases.append(SuiteCase(case_id, prompt, line, None if two_models else tuned, comparison, checks))
    return SuiteResult(
        name="<script>alert('suite')</script> `capitals` | {{ 7*7 }}" if hostile else "capitals",
        source="suites/</script>.yaml" if hostile else "suites/capitals.yaml",
        source_sha256="5e" * 32,
        roles=["base", "tuned"] if two_models else ["model"],
        labels=labels,
        role_checked=role_checked,
        cases=cases,
        load_seconds=[1.2, 1.9] if two_models else [1.2],
        timings={"engine": 0.41 * n_cases, "compare": 0.02 * n_cases, "total": 0.5 * n_cases + 3.1},
        versions={"lazarus-report": "0.1.0", "mlx": "0.32.4", "mlx-lm": "0.32.2", "python": "3.11.7"},
    )


class _SuiteCaseSpec:
    """One synthetic suite case: its runs and its checks, varied by the case index ``i``."""

    def __init__(self, i, case_id, prompt, target, other, line, two_models, hostile):
        self.i, self.case_id, self.prompt, self.target, self.other = i, case_id, prompt, target, other
        self.line, self.two_models, self.hostile = line, two_models, hostile
        self.failing = i % 5 == 2  # the tuned (or only) model prefers ``other``: the target never emerges
        self.untracked = i % 7 == 5  # the case tracks nothing: no target
        self.skipped = i % 4 == 1  # one expectation is not checked
        self.side = "tuned" if two_models else "model"

    def results(self, base_layers, tuned_layers, top_k):
        import dataclasses

        i = self.i
        tokens = CHATML_TOKENS[:24] + _raw_tokens(self.prompt) + CHATML_TOKENS[-5:]
        tracked = () if self.untracked else ((self.target, self.target, 1), (self.other, self.other, 1))
        common: dict = dict(prompt=self.prompt, tokens=tokens, tracked=tracked, top_k=top_k, grid=False)
        if self.hostile:
            common["filler"] = [h for h in HOSTILE_STRINGS if h not in (self.target, self.other)] + [" a", " b"]
        base = make_result(
            num_layers=base_layers,
            seed=10 + i,
            final_token=self.target,
            final_prob=0.55 + 0.04 * (i % 6),
            emergence_at=0.55 + 0.03 * (i % 5),
            **common,
        )
        tuned_token = self.other if self.failing else self.target
        tuned = make_result(
            num_layers=tuned_layers,
            seed=100 + i,
            final_token=tuned_token,
            final_prob=0.35 + 0.05 * (i % 7),
            emergence_at=0.62 + 0.04 * (i % 6),
            **common,
        )
        if self.hostile:
            base, tuned = _hostile_metadata(base), _hostile_metadata(tuned)
        if self.two_models:
            tuned = dataclasses.replace(tuned, model=dataclasses.replace(tuned.model, adapter="adapters/weather"))
        return _engine_rounded(base), _engine_rounded(tuned)

    def comparison(self, base, tuned, labels):
        from lazarus_report.compare.layers import compare_results

        log_probs = [
            _synthetic_log_probs(base, seed=self.i, shift=0.0),
            _synthetic_log_probs(tuned, seed=self.i + 50, shift=1.0),
        ]
        single = [[True] * len(base.tracked_tokens)] * 2
        return compare_results(
            base,
            tuned,
            *log_probs,
            fingerprints=["f", "f"],
            single_token=single,
            labels=labels,
            same_model=False,
            load_seconds=[0.0, 0.0],
        )

    def checks(self, base, tuned):
        from lazarus_report.results.suite import CheckOutcome

        case_id, side, target, line = self.case_id, self.side, self.target, self.line
        top = tuned.final_top_token
        checks = [
            CheckOutcome(
                f"{side} final_top1",
                "final_top1",
                side,
                repr(target),
                repr(top),
                "failed" if self.failing else "passed",
                f"{case_id}: {side} final top-1 is {top!r}, expected {target!r}",
                line + 2,
            )
        ]
        if not self.untracked:
            emerged = tuned.token_evolutions[0].emergence_layer
            where = "never becomes top-1" if emerged is None else f"becomes top-1 at layer {emerged}"
            checks.append(
                CheckOutcome(
                    f"{side} emerges_by_layer",
                    "emerges_by_layer",
                    side,
                    "top-1 by layer 24",
                    "never top-1" if emerged is None else f"top-1 from layer {emerged}",
                    "passed" if emerged is not None and emerged <= 24 else "failed",
                    f"{case_id}: {target!r} {where} in the {side} model, expected by layer 24",
                    line + 3,
                )
            )
            if self.two_models:
                drop = base.token_evolutions[0].final_prob - tuned.token_evolutions[0].final_prob
                checks.append(
                    CheckOutcome(
                        "comparison no_regression",
                        "no_regression",
                        "comparison",
                        "final probability drops by at most 0.3",
                        f"drops by {drop:.3f}",
                        "passed" if drop <= 0.3 else "failed",
                        f"{case_id}: the probability of {target!r} drops by {drop:.3f} (tolerance 0.3)",
                        line + 4,
                        token=target,
                        tolerance=0.3,
                    )
                )
        if self.skipped:
            reason = (
                "base expectations are not checked on one model without --role base"
                if not self.two_models
                else (f"no base probability expected for {self.other!r}")
            )
            checks.append(
                CheckOutcome(
                    "base final_prob_at_least",
                    "final_prob_at_least",
                    "base",
                    f"P({target!r}) >= 0.5",
                    "not checked",
                    "skipped",
                    f"{case_id}: skipped: {reason}",
                    line + 5,
                )
            )
        return checks


def _engine_rounded(result):
    """``result`` with its floats at the 8 significant digits the engine keeps (``result.rounded``)."""
    from lazarus_report.results.analysis import AnalysisResult
    from lazarus_report.results.codec import rounded

    def walk(x):
        if isinstance(x, float):
            return rounded(x)
        if isinstance(x, list):
            return [walk(v) for v in x]
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items()}
        return x

    return AnalysisResult.from_dict(walk(result.to_dict()))


# --- learned lenses -------------------------------------------------------------------------


def _hostile_lens_record(num_layers: int, *, kind: str = "tuned"):
    from lazarus_report.results.provenance import LensFidelity, LensRecord

    fidelity = [LensFidelity(i, 3.0 if i < num_layers // 2 else 0.5, 0.25, 4.0) for i in range(num_layers - 1)]
    logit = [LensFidelity(i, 12.0 if i < num_layers - 2 else 1.0, 0.05, 7.0) for i in range(num_layers - 1)]
    return LensRecord(
        kind=kind,
        source="/tmp/" + HOSTILE_STRINGS[0],
        digest="ab" * 32,
        fitted_for={"model_id": HOSTILE_STRINGS[1]},
        corpus=HOSTILE_STRINGS[1] + HOSTILE_STRINGS[2],
        tokens=4096,
        fidelity=fidelity,
        unreliable_threshold_nats=2.0,
        note="lens fitted on the base model, applied to base + adapter " + HOSTILE_STRINGS[0],
        logit_fidelity=logit,
    )


def make_hostile_lens_result() -> AnalysisResult:
    """The hostile analysis read through a (hostile-named) tuned lens, with the logit reading kept beside it."""
    import dataclasses

    from lazarus_report.results.analysis import LensView, logit_view_record

    result = make_hostile_result()
    record = _hostile_lens_record(result.model.num_layers)
    view = LensView(logit_view_record(record), result.layer_predictions, result.token_evolutions, result.grid)
    return dataclasses.replace(result, lens=record, lens_views=[view])


def make_hostile_lens_comparison():
    """The hostile comparison with both runs read through a (hostile-named) tuned lens and the logit lens beside
    it (the compare page's lens switch)."""
    import dataclasses

    from lazarus_report.results.analysis import LensView, logit_view_record

    comparison = make_comparison("hostile")
    runs = []
    for result in comparison.results:
        record = _hostile_lens_record(result.model.num_layers)
        view = LensView(logit_view_record(record), result.layer_predictions, result.token_evolutions, result.grid)
        runs.append(dataclasses.replace(result, lens=record, lens_views=[view]))
    return dataclasses.replace(comparison, results=runs)


def make_lens_eval(hostile: bool = False):
    """A ``lazarus lens eval`` result (the logit lens and a tuned lens side by side)."""
    from lazarus_report.results.lens_eval import LensEvalResult

    result = make_hostile_result() if hostile else make_result()
    record = _hostile_lens_record(result.model.num_layers)
    return LensEvalResult(
        model=result.model,
        lens=record,
        logit=record.logit_fidelity,
        corpus=HOSTILE_STRINGS[3] if hostile else "held-out text",
        corpus_sha256="cd" * 32,
        tokens=2048,
        final_cross_entropy=3.1,
        versions=result.versions,
        timings={"collect": 1.0, "measure": 2.0},
    )


def with_hostile_change(comparison):
    """``comparison`` (with a change map and token shifts) with every token of those filled with ``HOSTILE_STRINGS``."""
    import dataclasses

    m = comparison.change_map
    hostile = dataclasses.replace(
        m,
        tokens=[HOSTILE_STRINGS[i % len(HOSTILE_STRINGS)] for i in range(len(m.tokens))],
        tops1=[
            [[dataclasses.replace(t, token=HOSTILE_STRINGS[i % len(HOSTILE_STRINGS)]) for t in cell] for cell in row]
            for i, row in enumerate(m.tops1)
        ],
    )
    shifts = [
        dataclasses.replace(
            s, promoted=[dataclasses.replace(x, token=HOSTILE_STRINGS[k]) for k, x in enumerate(s.promoted)]
        )
        for s in comparison.token_shifts
    ]
    labels = [HOSTILE_STRINGS[2] + " (1)", HOSTILE_STRINGS[0]]
    return dataclasses.replace(comparison, change_map=hostile, token_shifts=shifts, labels=labels)


# --- answers (issue 19) ---------------------------------------------------------

ANSWER_TOKENS = [" Paris", ".", " It", " is", " known", " for", " the", " Eiffel", " Tower", "."]


def make_answer(
    layers: list[int],
    *,
    tokens: list[str] | None = None,
    start: int = 34,
    source: str = "teacher-forced",
    misses: dict[int, str] | None = None,
    final_probs: list[float] | None = None,
    emergence_at: float = 0.6,
    stop_reason: str | None = None,
    boundary_note: str = "",
    seed: int = 0,
):
    """A plausible ``AnswerReading`` over captured ``layers``: each token's lens probability rises in a sigmoid
    to its final probability (``final_probs``, default 0.55-0.95), around a depth that varies per token.
    ``misses`` maps answer indices to the token the model itself would write there (its final top-1): those
    tokens end below it (rank 2 or worse), and the first of them is the divergence point."""
    from lazarus_report.results.answer import AnswerReading, AnswerToken

    rng = random.Random(seed)
    tokens = list(tokens if tokens is not None else ANSWER_TOKENS)
    misses = dict(misses or {})
    last = layers[-1]
    out = []
    for k, tok in enumerate(tokens):
        own = misses.get(k)
        p_end = final_probs[k] if final_probs is not None else (0.12 if own is not None else rng.uniform(0.55, 0.95))
        mid = (emergence_at + rng.uniform(-0.15, 0.15)) * last
        probs, ranks, entropy, kl, tops = [], [], [], [], []
        for layer in layers:
            depth = layer / last if last else 1.0
            p = p_end if layer == last else p_end / (1.0 + math.exp(-(layer - mid) / 1.5))
            p = float(f"{p:.8g}")
            others = rng.sample([t for t in FILLER_TOKENS if t != tok and t != own], k=3)
            rival_p = (1.0 - p) * (0.2 + 0.5 * depth)
            rivals = [
                (
                    own if own is not None and layer == last else others[0],
                    max(rival_p, p + 0.3) if own and layer == last else rival_p,
                )
            ]
            rivals += [(others[1], rival_p / 3), (others[2], rival_p / 7)]
            cands = sorted([(tok, p), *rivals], key=lambda c: -c[1])
            rank = 1 + sum(1 for _, q in cands if q > p)
            if p < 1e-3:
                rank += int(20000 * (1 - depth) ** 2)
            probs.append(p)
            ranks.append(rank)
            entropy.append(round(0.8 + 8.0 * (1 - depth) ** 1.5, 6))
            kl.append(0.0 if layer == last else round(7.0 * (1 - depth) ** 1.2, 6))
            tops.append([TokenProb(token_id=_token_id(t), token=t, prob=float(f"{q:.8g}")) for t, q in cands[:3]])
        emergence = next((layers[j] for j, r in enumerate(ranks) if r == 1), None)
        stable = None
        for j in range(len(ranks) - 1, -1, -1):
            if ranks[j] != 1:
                break
            stable = layers[j]
        out.append(
            AnswerToken(
                token_id=_token_id(tok),
                token=tok,
                position=start + k,
                probs=probs,
                ranks=ranks,
                entropy=entropy,
                kl_to_final=kl,
                top_tokens=tops,
                logprob=math.log(probs[-1]),
                emergence_layer=emergence,
                stable_from_layer=stable,
            )
        )
    divergence = next((k for k, t in enumerate(out) if t.ranks[-1] != 1), None)
    return AnswerReading(
        source=source,
        text="".join(tokens),
        start=start,
        tokens=out,
        sequence_logprob=sum(t.logprob for t in out),
        divergence_index=divergence,
        stop_reason=stop_reason if source == "generated" else None,
        boundary_note=boundary_note,
    )


def with_answer(result: AnalysisResult, **kw) -> AnalysisResult:
    """``result`` with an answer after its prompt (``make_answer``'s keywords)."""
    import dataclasses

    kw.setdefault("start", len(result.token_ids))
    return dataclasses.replace(result, answer=make_answer(list(result.captured_layers), **kw))


def make_answer_result(**kw) -> AnalysisResult:
    """The demo result with a teacher-forced 10-token answer whose token 3 the model would not write."""
    return with_answer(make_result(), misses={3: " was"}, **kw)


def make_hostile_answer_result() -> AnalysisResult:
    """The hostile analysis with an answer made of ``HOSTILE_STRINGS`` (and a hostile boundary note)."""
    tokens = [s for s in HOSTILE_STRINGS if s] + ["</td><script>alert(1)</script>"]
    result = make_hostile_result()
    return with_answer(result, tokens=tokens, misses={1: "</th><b>x</b>"}, boundary_note="<b>merged</b>\u202e")


def make_answer_comparison(kind: str = "aligned"):
    """A synthetic comparison whose runs carry answers. ``kind``: "aligned" (the same teacher-forced answer,
    model 2 less sure of it), "generated" (each model wrote its own answer; ``answer_cross`` set), "one" (only
    model 1 has an answer)."""
    import dataclasses

    comparison = make_comparison("same_tokenizer")
    r1, r2 = comparison.results
    if kind == "aligned":
        a1 = with_answer(r1, seed=1)
        a2 = with_answer(r2, seed=2, misses={2: " was", 5: " by"})
        return dataclasses.replace(comparison, results=[a1, a2])
    if kind == "generated":
        a1 = with_answer(r1, seed=1, source="generated", stop_reason="eos")
        words = [" Lyon", " is", " the", " capital", "."]
        a2 = with_answer(r2, seed=2, source="generated", tokens=words, stop_reason="length")
        return dataclasses.replace(comparison, results=[a1, a2], answer_cross=[-23.5, -17.25])
    if kind == "one":
        return dataclasses.replace(comparison, results=[with_answer(r1, seed=1), r2])
    raise ValueError(kind)


def make_hostile_answer_comparison(kind: str = "aligned"):
    """The hostile comparison with hostile answers: "aligned" (the same answer tokens in both runs) or
    "generated" (each model wrote its own hostile answer; ``answer_cross`` set)."""
    import dataclasses

    comparison = make_comparison("hostile")
    tokens = [s for s in HOSTILE_STRINGS if s] + ["</td><script>alert(1)</script>"]
    r1, r2 = comparison.results
    if kind == "aligned":
        a1 = with_answer(r1, tokens=tokens, misses={1: "</th><b>x</b>"}, boundary_note="<b>merged</b>", seed=1)
        a2 = with_answer(r2, tokens=tokens, misses={2: "<i>y</i>"}, seed=2)
        return dataclasses.replace(comparison, results=[a1, a2])
    if kind == "generated":
        a1 = with_answer(r1, tokens=tokens, source="generated", stop_reason="stop", boundary_note="<b>merged</b>")
        a2 = with_answer(r2, tokens=tokens[::-1], source="generated", stop_reason="eos", seed=2)
        return dataclasses.replace(comparison, results=[a1, a2], answer_cross=[-40.5, -38.25])
    raise ValueError(kind)


# --- whole answers (issue 19): an AnswerReading on a result, token by token ------------------------------


def answer_of_pieces(
    result: AnalysisResult,
    pieces: list[str],
    *,
    final_ranks: list[int] | None = None,
    emergence: list[int | None] | None = None,
    logprobs: list[float] | None = None,
    source: str = "teacher-forced",
    stop_reason: str | None = None,
    greedy: list[str] | None = None,
) -> AnalysisResult:
    """``result`` with an answer of ``pieces`` (decoded tokens), read at every captured layer.

    Per token ``k``: ``final_ranks[k]`` (default 1), ``emergence[k]`` (the first captured layer where it is top-1;
    default: the last layer when its final rank is 1, else never; the rank is 1 from there on), ``logprobs[k]``
    (default log 0.9 for a top-1, log 0.05 otherwise), ``greedy[k]``: the model's own top-1 where the answer token
    is not (default ``" <alt>"``). Divergence and sequence log-probability follow from these.
    """
    import dataclasses as _dc

    from lazarus_report.results.answer import AnswerReading, AnswerToken

    layers = result.captured_layers
    n = len(pieces)
    final_ranks = final_ranks or [1] * n
    tokens = []
    start = len(result.token_ids)
    for k, piece in enumerate(pieces):
        rank = final_ranks[k]
        first = emergence[k] if emergence is not None else (layers[-1] if rank == 1 else None)
        lp = logprobs[k] if logprobs is not None else math.log(0.9 if rank == 1 else 0.05)
        ranks = [1 if first is not None and layer >= first else max(rank, 2) for layer in layers]
        ranks[-1] = rank
        probs = [0.9 if r == 1 else 0.05 for r in ranks]
        probs[-1] = math.exp(lp)
        alt = greedy[k] if greedy is not None else " <alt>"
        tops = [
            [TokenProb(token_id=_token_id(piece), token=piece, prob=p)]
            if r == 1
            else [TokenProb(token_id=_token_id(alt), token=alt, prob=0.5)]
            for r, p in zip(ranks, probs)
        ]
        stable = next((layer for i, layer in enumerate(layers) if all(r == 1 for r in ranks[i:])), None)
        tokens.append(
            AnswerToken(
                token_id=_token_id(piece),
                token=piece,
                position=start + k,
                probs=probs,
                ranks=ranks,
                entropy=[1.0] * len(layers),
                kl_to_final=[0.5] * len(layers),
                top_tokens=tops,
                logprob=lp,
                emergence_layer=first if rank == 1 or first is not None else None,
                stable_from_layer=stable,
            )
        )
    divergence = next((k for k, r in enumerate(final_ranks) if r != 1), None)
    answer = AnswerReading(
        source=source,
        text="".join(pieces),
        start=start,
        tokens=tokens,
        sequence_logprob=sum(t.logprob for t in tokens),
        divergence_index=divergence,
        stop_reason=stop_reason if source == "generated" else None,
    )
    return _dc.replace(result, answer=answer)  # token_ids stay the prompt's, as the engine writes them
