"""Terminal text for ``lazarus lens fit`` and ``lazarus lens eval`` (plain data in, text out; no MLX)."""

from __future__ import annotations

from typing import Any

from ..results.lens_eval import LensEvalResult
from ..results.provenance import LensRecord
from .lens_view import best_per_layer, entry_labels, entry_name, eval_verdict, fidelity_summary, layer_ranges
from .suite_model import one_line


def render_fit_summary(record: LensRecord, meta: dict[str, Any], path: str, cached: bool) -> str:
    s = fidelity_summary(record.fidelity)
    fit = meta.get("fit") or {}
    lines = [
        f"{record.kind} lens for {one_line(str((record.fitted_for or {}).get('model_id')))}"
        + (
            f" (+ adapter {one_line(str((record.fitted_for or {}).get('adapter')))})"
            if (record.fitted_for or {}).get("adapter")
            else ""
        ),
        f"  Saved: {one_line(path)}" + (" (user cache: --lens " + record.kind + " finds it)" if cached else ""),
        f"  Corpus: {one_line(record.corpus or '')}",
        f"  Fitted on {record.tokens} tokens in {meta.get('fit_seconds', 0):.1f} s"
        + (
            f" ({fit.get('n_prompts')} prompt{'' if fit.get('n_prompts') == 1 else 's'}, Jacobians {fit.get('jacobian_seconds', 0):.1f} s"
            if record.kind == "jacobian"
            else f" (collect {fit.get('collect_seconds', 0):.1f} s, solve {fit.get('solve_seconds', 0):.1f} s"
        )
        + (
            f", train {fit.get('train_seconds', 0):.1f} s at {fit.get('token_layers_per_second', 0):.0f} token-layers/s"
            if record.kind == "tuned"
            else ""
        )
        + f", held-out {fit.get('heldout_seconds', 0):.1f} s)",
    ]
    if s:
        lines.append(
            f"  Held-out ({meta.get('heldout_tokens')} tokens): mean KL(final || lens) {s['mean_kl']:.3f} nats over "
            f"layers 0-{record.fidelity[-1].layer}; top-1 agreement at layer {int(s['mid_layer'])}: {s['mid_top1']:.1%}"
        )
        bad = record.unreliable_layers()
        if bad:
            lines.append(f"  Unreliable (KL > {record.unreliable_threshold_nats:g} nats): layers {layer_ranges(bad)}")
    return "\n".join(lines) + "\n"


METRICS = (
    ("kl_to_final", "KL(final || lens), nats", "{:.3f}"),
    ("top1_agreement", "top-1 agreement with the final prediction", "{:.1%}"),
    ("cross_entropy", "cross-entropy against the true next token, nats", "{:.3f}"),
)


def render_eval_text(result: LensEvalResult) -> str:
    """The verdict first, then per metric one table: a row per layer, a column per lens (value and 95% interval)."""
    entries = result.all_entries()
    labels = entry_labels(entries)
    lines = [
        f"Lens evaluation: {', '.join(entry_name(one_line(label)) for label in labels)} on "
        f"{one_line(result.model.model_id)}",
        "",
        *eval_verdict(result),
        "",
        f"  Held-out text: {one_line(result.corpus)}, {result.tokens} tokens"
        + (f" in {result.sequences} sequences" if result.sequences else ""),
        f"  Model's own next-token cross-entropy: {result.final_cross_entropy:.3f} nats",
    ]
    for e, label in zip(entries, labels):
        if e.lens.note:
            lines.append(f"  Note ({one_line(label)}): {one_line(e.lens.note)}")
        if e.lens.source:
            lines.append(f"  {one_line(label)}: {one_line(e.lens.source)}")
    intervals = all(e.intervals for e in entries)
    width = 22 if intervals else 10
    best = {layer: (b, clear) for layer, b, clear in best_per_layer(entries)}
    for field, title, fmt in METRICS:
        lines += ["", f"{title}" + (" [95% interval]" if intervals else "")]
        lines.append(f"{'layer':>5}  " + "  ".join(f"{one_line(label)[:width]:>{width}}" for label in labels))
        for j, row in enumerate(entries[0].lens.fidelity):
            cells = []
            for e in entries:
                value = fmt.format(getattr(e.lens.fidelity[j], field))
                if e.lens.fidelity[j].kl_to_final > e.lens.unreliable_threshold_nats:
                    value = "≈" + value
                if intervals:
                    lo, hi = getattr(e.intervals[j], field)
                    value += f" [{fmt.format(lo)}-{fmt.format(hi)}]"
                cells.append(f"{value:>{width}}")
            flag = ""
            if field == "kl_to_final" and len(entries) > 1:
                b, clear = best[row.layer]
                flag = f"  best: {one_line(labels[b])}" + ("" if clear else " (close)")
            lines.append(f"{row.layer:>5}  " + "  ".join(cells) + flag)
    means = [fidelity_summary(e.lens.fidelity).get("mean_kl", float("nan")) for e in entries]
    rows = entries[0].lens.fidelity
    if rows:
        parts = [
            f"{one_line(label)} {mean:.3f}" + (f" ({mean / means[0]:.2f}x)" if i and means[0] > 0 else "")
            for i, (label, mean) in enumerate(zip(labels, means))
        ]
        lines += ["", f"Mean KL over layers {rows[0].layer}-{rows[-1].layer}: {', '.join(parts)}."]
    if intervals and result.interval_method:
        lines += ["", f"Intervals: {one_line(result.interval_method)}."]
    threshold = entries[-1].lens.unreliable_threshold_nats
    lines.append(f"≈ marks an unreliable layer for that lens: its KL is above {threshold:g} nats.")
    return "\n".join(lines) + "\n"
