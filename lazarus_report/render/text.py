"""Terminal text: the fallback view, in the shape of the spec's examples.

Tokens are printed with ``repr``-style quoting so leading spaces, newlines, control characters,
bidirectional marks and lone surrogates are visible and cannot move the cursor or reorder text.
"""

from __future__ import annotations

from ..result import AnalysisResult

BAR_WIDTH = 50


def quote(token: str) -> str:
    """A token as visible, terminal-safe text: ``' Paris'``, ``'\\n'``, ``'\\u202e'``."""
    return repr(token)


def bar(prob: float, width: int = BAR_WIDTH) -> str:
    return "#" * int(round(max(0.0, min(1.0, prob)) * width))


def model_block(result: AnalysisResult) -> list[str]:
    m = result.model
    lines = [
        f"Model: {m.model_id}",
        f"  Family: {m.family}",
        f"  Layers: {m.num_layers}",
        f"  Hidden size: {m.hidden_size}",
        f"  Vocab size: {m.vocab_size}",
        f"  Tied embeddings: {m.tied_embeddings}",
    ]
    if m.embedding_scale is not None:
        lines.append(f"  Embedding scale: {m.embedding_scale:.4f}")
    if m.final_logit_softcap:
        lines.append(f"  Final logit softcap: {m.final_logit_softcap:g}")
    if m.adapter:
        lines.append(f"  Adapter: {m.adapter}")
    lines.append(f"  Precision: {m.precision}")
    lines.append(f"  Device: {m.device}" + (f" (BLAS: {m.blas})" if m.device == "cpu" else ""))
    return lines


def render_text(result: AnalysisResult) -> str:
    lines = model_block(result)
    lines.append("")
    lines.append(f"Analyzing: {quote(result.prompt)}")
    if result.chat_template_applied:
        lines.append("Chat template: applied (--raw analyzes the exact prompt)")
    elif result.model.chat_template:
        lines.append("Chat template: not applied (--raw)")
    lines.append("")
    lines.append(f"Tokens ({len(result.tokens)}): [{', '.join(quote(t) for t in result.tokens)}]")
    lines.append(f"Captured layers: {result.captured_layers}")
    for warning in result.warnings:
        lines.append(f"Warning: {warning}")

    lines += ["", "=== Final Prediction ==="]
    for tp in result.final_prediction:
        lines.append(f"  {tp.prob:.4f} {bar(tp.prob)} {quote(tp.token)}")

    lines += ["", "=== Logit Lens (top prediction at each layer) ==="]
    width = len(str(result.captured_layers[-1]))
    for lp in result.layer_predictions:
        lines.append(f"  Layer {lp.layer_idx:>{width}}: {quote(lp.top_token)} ({lp.top_prob:.4f})")

    if result.token_evolutions:
        lines += ["", "=== Token Evolution ==="]
        for tracked, evo in zip(result.tracked_tokens, result.token_evolutions):
            label = quote(evo.token)
            if tracked.multi_token:
                label += f" (first token of {quote(tracked.text)}, {tracked.num_tokens} tokens)"
            lines.append(f"Token {label}:")
            for layer, p, r in zip(evo.layers, evo.probs, evo.ranks):
                lines.append(f"  Layer {layer:>{width}}: {p:.4f} {bar(p)} (rank {r})")
            if evo.emergence_layer is None:
                lines.append(f"  --> Never top-1 (final rank {evo.ranks[-1]})")
            else:
                lines.append(f"  --> Becomes top-1 at layer {evo.emergence_layer}")
                if evo.stable_from_layer is not None and evo.stable_from_layer != evo.emergence_layer:
                    lines.append(f"  --> Stays top-1 from layer {evo.stable_from_layer}")
                elif evo.stable_from_layer is None:
                    lines.append(f"  --> Not top-1 at the last layer (final rank {evo.ranks[-1]})")
    return "\n".join(lines) + "\n"
