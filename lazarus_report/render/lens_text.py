"""Terminal text for ``lazarus lens fit`` and ``lazarus lens eval`` (plain data in, text out; no MLX)."""

from __future__ import annotations

from typing import Any

from ..results.lens_eval import LensEvalResult
from ..results.provenance import LensRecord
from .lens_view import fidelity_summary, layer_ranges
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


def render_eval_text(result: LensEvalResult) -> str:
    lens = result.lens
    name = f"{lens.kind} lens" + (f" ({one_line(lens.source)})" if lens.source else "")
    lines = [
        f"Lens evaluation: {name} vs the logit lens on {one_line(result.model.model_id)}",
        f"  Held-out text: {one_line(result.corpus)}, {result.tokens} tokens",
        f"  Model's own next-token cross-entropy: {result.final_cross_entropy:.3f} nats",
    ]
    if lens.note:
        lines.append(f"  Note: {one_line(lens.note)}")
    lines.append("")
    same = lens.kind == "logit"
    if same:
        lines.append(f"{'layer':>5}  {'KL to final':>11}  {'top-1 agree':>11}  {'cross-ent.':>10}")
        for r in lens.fidelity:
            lines.append(f"{r.layer:>5}  {r.kl_to_final:>11.3f}  {r.top1_agreement:>11.1%}  {r.cross_entropy:>10.3f}")
    else:
        lines.append(f"{'':>5}  {'KL(final || lens), nats':^23}  {'top-1 agreement':^19}  {'cross-entropy, nats':^21}")
        lines.append(
            f"{'layer':>5}  {'logit':>10} {lens.kind:>12}  {'logit':>8} {lens.kind:>10}  {'logit':>9} {lens.kind:>11}"
        )
        for lo, le in zip(result.logit, lens.fidelity):
            flag = " !" if le.kl_to_final > lens.unreliable_threshold_nats else ""
            lines.append(
                f"{le.layer:>5}  {lo.kl_to_final:>10.3f} {le.kl_to_final:>12.3f}  {lo.top1_agreement:>8.1%} "
                f"{le.top1_agreement:>10.1%}  {lo.cross_entropy:>9.3f} {le.cross_entropy:>11.3f}{flag}"
            )
    s_lens = fidelity_summary(lens.fidelity)
    s_logit = fidelity_summary(result.logit)
    lines.append("")
    if not same and s_lens and s_logit:
        ratio = s_lens["mean_kl"] / s_logit["mean_kl"] if s_logit["mean_kl"] > 0 else float("nan")
        lines.append(
            f"Mean KL over layers 0-{lens.fidelity[-1].layer}: logit {s_logit['mean_kl']:.3f}, {lens.kind} "
            f"{s_lens['mean_kl']:.3f} ({ratio:.2f}x). Top-1 agreement at layer {int(s_lens['mid_layer'])}: "
            f"logit {s_logit['mid_top1']:.1%}, {lens.kind} {s_lens['mid_top1']:.1%}."
        )
        lines.append(f"! = unreliable: KL above {lens.unreliable_threshold_nats:g} nats.")
    elif s_lens:
        lines.append(f"Mean KL over layers 0-{lens.fidelity[-1].layer}: {s_lens['mean_kl']:.3f} nats.")
    return "\n".join(lines) + "\n"
