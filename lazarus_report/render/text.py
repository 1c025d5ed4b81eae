"""Terminal text: the fallback view, in the shape of the spec's examples.

Tokens are printed with ``repr``-style quoting so leading spaces, newlines, control characters,
bidirectional marks and lone surrogates are visible and cannot move the cursor or reorder text.
"""

from __future__ import annotations

import re

from ..results.analysis import AnalysisResult
from ..results.answer import AnswerReading
from ..results.codec import first_layer_where
from ..results.comparison import ComparisonResult
from ..results.suite import SuiteResult
from .change_view import build_change_view
from .lens_view import analysis_trust, lens_name, other_lens_line, unreliable_note
from .report_model import comparison_tags, layer_runs, top1_phrase
from .suite_model import build_suite_report, one_line, target_text

BAR_WIDTH = 50


_ESCAPED_BYTE = re.compile(r"\\\\(x[0-9a-f]{2})")


def quote(token: str) -> str:
    """A token as visible, terminal-safe text: ``' Paris'``, ``'\\n'``, ``'\\u202e'``.

    A byte that is not valid UTF-8 on its own (byte-fallback pieces, half a character) reaches us
    already spelled ``\\xe2`` by the tokenizer; it is shown as the one escape ``'\\xe2'``, not re-escaped.
    """
    return _ESCAPED_BYTE.sub(r"\\\1", repr(token))


def name(text: str) -> str:
    """A user- or model-provided name (model ID, path, label) for the terminal: as it is when every
    character is printable, else quoted like a token, so it cannot carry terminal escapes."""
    return text if text.isprintable() else quote(text)


def bar(prob: float, width: int = BAR_WIDTH) -> str:
    return "#" * round(max(0.0, min(1.0, prob)) * width)


def model_block(result: AnalysisResult) -> list[str]:
    m = result.model
    lines = [
        f"Model: {name(m.model_id)}",
        f"  Family: {name(m.family)}",
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
        lines.append(f"  Adapter: {name(m.adapter)}")
    lines.append(f"  Precision: {name(m.precision)}")
    lines.append(f"  Device: {m.device}" + (f" (BLAS: {name(m.blas)})" if m.device == "cpu" else ""))
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
    lines.append(
        f"Lens: {lens_name(result.lens_kind)}" + (f" ({result.lens.note})" if result.lens and result.lens.note else "")
    )
    top1 = [p.final_token_rank == 1 for p in result.layer_predictions]
    emergence = first_layer_where([p.layer_idx for p in result.layer_predictions], top1)
    lines.append(f"Trust: {analysis_trust(result, emergence)}")
    for view in result.lens_readings()[1:]:  # the other lenses read from the same pass: one line each
        lines.append(f"Also: {other_lens_line(view, quote(view.final_top_token))}")
    note = unreliable_note(result)
    if note:
        lines.append(f"Note: {note}")
    for warning in result.warnings:
        lines.append(f"Warning: {warning}")

    lines += ["", "=== Final Prediction ==="]
    for tp in result.final_prediction:
        lines.append(f"  {tp.prob:.4f} {bar(tp.prob)} {quote(tp.token)}")

    lines += ["", f"=== {lens_name(result.lens_kind).title()} (top prediction at each layer) ==="]
    width = len(str(result.captured_layers[-1]))
    unreliable = set(result.unreliable_layers)
    for lp in result.layer_predictions:
        mark = "  ≈ (unreliable)" if lp.layer_idx in unreliable else ""
        lines.append(f"  Layer {lp.layer_idx:>{width}}: {quote(lp.top_token)} ({lp.top_prob:.4f}){mark}")

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
            elif evo.stable_from_layer is None:  # top-1 somewhere, but not at the end
                runs = layer_runs(evo.layers, [r == 1 for r in evo.ranks])
                lines.append(f"  --> {top1_phrase(evo.emergence_layer, runs, evo.ranks[-1]).capitalize()}")
            else:
                lines.append(f"  --> Becomes top-1 at layer {evo.emergence_layer}")
                if evo.stable_from_layer != evo.emergence_layer:
                    lines.append(f"  --> Stays top-1 from layer {evo.stable_from_layer}")
    if result.answer is not None:
        lines += ["", "=== Answer ==="] + answer_lines([result.answer], [""])
    return "\n".join(lines) + "\n"


STOP_WORDS = {"eos": "ended by the model's end-of-sequence token", "stop": "cut before a stop string"}


def _answer_how(a: AnswerReading) -> str:
    how = f"{a.source}, {len(a.tokens)} token{'' if len(a.tokens) == 1 else 's'}"
    if a.stop_reason is not None:
        how += ", " + STOP_WORDS.get(a.stop_reason, "stopped at the --generate limit")
    return how


def _parting(a: AnswerReading) -> str:
    if a.divergence_index is None:
        return "greedy decoding writes every token of it"
    t = a.tokens[a.divergence_index]
    return (
        f"greedy decoding parts from it at token {a.divergence_index + 1}, {quote(t.token)} "
        f"(rank {t.final_rank}; the model's own top-1 there is {quote(t.final_top.token)})"
    )


def answer_lines(answers: list[AnswerReading | None], labels: list[str]) -> list[str]:
    """Whole answers as a compact table: per token, each answer's token, final probability, rank and the
    layer where it becomes top-1; the sequence log-probability and where greedy decoding parts from it.
    Several answers (a comparison) sit side by side, one column group per label."""
    lines: list[str] = []
    shown = [(label, a) for label, a in zip(labels, answers) if a is not None]
    for label, a in shown:
        head = f"{label}: " if label else ""
        lines.append(f"{head}{quote(a.text)} ({_answer_how(a)})")
        lines.append(f"  sequence log-prob {a.sequence_logprob:.4f} nats (final layer); {_parting(a)}")
        if a.boundary_note:
            lines.append(f"  note: {one_line(a.boundary_note)}")
    n = max((len(a.tokens) for _, a in shown), default=0)
    if not n:
        return lines
    cells = [[_answer_cell(a, k) for _, a in shown] for k in range(n)]
    width = max(len("token"), *(len(c[0]) for row in cells for c in row))
    group = f"{'token':<{width}} {'prob':>7} {'rank':>7} {'top-1 from':>10}"
    if len(shown) > 1:
        lines.append("       " + "   ".join(f"{name(label):<{len(group)}}" for label, _ in shown).rstrip())
    lines.append(f"  {'#':>3}  " + "   ".join(group for _ in shown))
    for k, row in enumerate(cells):
        parts = [f"{c[0]:<{width}} {c[1]:>7} {c[2]:>7} {c[3]:>10}" for c in row]
        lines.append(f"  {k + 1:>3}  " + "   ".join(parts).rstrip())
    return lines


def _answer_cell(a: AnswerReading, k: int) -> tuple[str, str, str, str]:
    if k >= len(a.tokens):
        return ("", "", "", "")
    t = a.tokens[k]
    emerges = "never" if t.emergence_layer is None else str(t.emergence_layer)
    return (quote(t.token), f"{t.final_prob:.4f}", str(t.final_rank), emerges)


def render_comparison_text(comparison: ComparisonResult) -> str:
    """The compare view in the spec's shape, plus where the models disagree."""
    c = comparison
    r1, r2 = c.results
    labels = [name(label) for label in c.labels]
    w = max(36, *(len(label) for label in labels))
    lenses = " / ".join(dict.fromkeys(lens_name(r.lens_kind) for r in c.results))
    lines = [f"Loading: {label} ({seconds:.2f} s)" for label, seconds in zip(labels, c.load_seconds)]
    lines.append(f"Lens: {lenses}")
    for label, r in zip(labels, c.results):
        m = r.model
        lines.append(f"  {label}: {m.family}, {m.num_layers} layers, {m.precision}")
    for label, r in zip(labels, c.results):  # the other lenses read from the same passes: one line each
        for view in r.lens_readings()[1:]:
            lines.append(f"  Also, {label}: {other_lens_line(view, quote(view.final_top_token))}")
    lines += ["", "=" * 70, f"Prompt: {quote(r1.prompt)}", "=" * 70]
    if r1.chat_template_applied or r2.chat_template_applied:
        applied = [label for label, r in zip(labels, c.results) if r.chat_template_applied]
        lines.append(f"Chat template applied for: {', '.join(applied)} (--raw analyzes the exact prompt)")
    for warning in dict.fromkeys(r1.warnings + r2.warnings):
        lines.append(f"Warning: {warning}")

    lines += ["", "=== Final Predictions ===", f"{'Model':<{w}}  {'Top Token':<16} {'Prob':>6}", "-" * (w + 25)]
    for label, r in zip(labels, c.results):
        top = r.final_prediction[0]
        lines.append(f"{label:<{w}}  {quote(top.token):<16} {top.prob:.4f}")

    if c.tracked:
        lines += ["", "=== Token Evolution Comparison ==="]
        for t in c.tracked:
            lines += ["", f"Token {quote(t.text)}:"]
            for k, label in enumerate(labels):
                emerges = (
                    f"emerges at layer {t.emergence_layers[k]}" if t.emergence_layers[k] is not None else "never top-1"
                )
                split = "" if t.single_token[k] else f" (not one token: tracking {quote(t.tokens[k])})"
                lines.append(
                    f"  {label:<{w}}: {emerges}, final prob {t.final_probs[k]:.4f} (rank {t.final_ranks[k]}){split}"
                )

    answers = [r.answer for r in c.results]
    if any(a is not None for a in answers):
        tags = comparison_tags(c)
        legend = ", ".join(f"{tag} = {label}" for tag, label in zip(tags, labels))
        lines += ["", f"=== Answers ({legend}) ==="] + answer_lines(answers, tags)
        if c.answer_cross is not None:
            lines.append(
                f"  Each model's log-prob of the other's answer: {tags[0]} gives {tags[1]}'s "
                f"{c.answer_cross[0]:.4f} nats, {tags[1]} gives {tags[0]}'s {c.answer_cross[1]:.4f} nats"
            )

    lines += _change_lines(c)

    lines += ["", "=== Where the models disagree ==="]
    if c.first_disagreement_layer is None:
        lines.append("  Top-1 predictions agree at every compared layer.")
    else:
        lines.append(f"  First top-1 disagreement: layer {c.first_disagreement_layer}")
        if c.agreement_from_layer is None:
            lines.append("  The final top-1 predictions differ.")
        else:
            lines.append(f"  Top-1 agree from layer {c.agreement_from_layer} through the last layer")
    if c.largest_change_layer is not None:
        d = next(d for d in c.divergences if d.layer2 == c.largest_change_layer)
        lines.append(f"  Largest difference (Jensen-Shannon): layer {d.layer2} (JS {d.js:.4f} nats)")

    lines += ["", "=== Layer by layer (last position) ==="]
    has_div = any(d.js is not None for d in c.divergences)
    head = f"  {'layer':>9}  {'top-1 (1)':<14} {'top-1 (2)':<14} agree"
    if has_div:
        head += f" {'KL(1||2)':>9} {'KL(2||1)':>9} {'JS':>7}"
    lines.append(head)
    lines += _pair_lines(c)
    if c.notes:
        lines += ["", "Notes:"] + [f"  - {n}" for n in c.notes]
    return "\n".join(lines) + "\n"


def _pair_lines(c: ComparisonResult) -> list[str]:
    """The per-layer rows; runs of layers where both distributions are identical (KL and JS exactly 0, the
    same top-1) fold into one line."""

    def identical(d) -> bool:
        return c.alignment == "layer" and d.top1_agree and d.js == 0 and not d.kl_12 and not d.kl_21

    runs: list[list] = []
    for d in c.divergences:
        if runs and identical(d) and identical(runs[-1][-1]):
            runs[-1].append(d)
        else:
            runs.append([d])
    lines = []
    for run in runs:
        if len(run) > 1:
            span = f"{run[0].layer2}-{run[-1].layer2}"
            lines.append(f"  {span:>9}  identical in both models (KL and JS exactly 0)")
            continue
        d = run[0]
        pair = f"{d.layer1}" if d.layer1 == d.layer2 and c.alignment == "layer" else f"{d.layer1}/{d.layer2}"
        row = f"  {pair:>9}  {quote(d.top1_token1)[:14]:<14} {quote(d.top1_token2)[:14]:<14} {'yes' if d.top1_agree else 'NO ':<5}"
        if d.js is not None:
            row += f" {d.kl_12:9.4f} {d.kl_21:9.4f} {d.js:7.4f}"
        lines.append(row)
    return lines


def _change_lines(c: ComparisonResult) -> list[str]:
    """Where the models part: the sentence, the compact change map, promoted/suppressed, the attribution."""
    tags = comparison_tags(c)
    view = build_change_view(c, tags)
    if view is None:
        return []
    lines = ["", "=== Where the models part ==="]
    if view.sentence_plain:
        adapted = f" (adapted layers: {view.adapted_layers})" if view.adapted_layers else ""
        lines.append(f"  {view.sentence_plain[0].upper()}{view.sentence_plain[1:]}{adapted}.")
    if view.map is not None:
        mp = view.map
        lines.append(f"  Change map, JS (nats) per layer x position (* = top-1 differs); {mp.note}:")
        lines.append("  " + f"{'layer':>6} " + " ".join(f"{col.position:>7}" for col in mp.columns))
        lines.append("  " + f"{'':>6} " + " ".join(f"{col.exact[:7]:>7}" for col in mp.columns))
        for row in reversed(mp.compact_rows):
            cells = " ".join(f"{cell.js:6.3f}{'*' if cell.flip else ' '}" for cell in row.cells)
            lines.append(f"  {row.layer:>6} {cells}")
        if mp.identical_layers:
            lines.append(f"  layers {mp.identical_layers}: identical at every shown position")
    elif view.map_missing:
        lines.append(f"  ({view.map_missing})")
    for sv in view.shifts:
        lines.append(f"  {sv.title}, {tags[1]} against {tags[0]}:")
        for name, rows in (("promoted", sv.promoted[:5]), ("suppressed", sv.suppressed[:5])):
            items = ", ".join(f"{r.exact} {r.prob1:.4f}->{r.prob2:.4f}" for r in rows)
            lines.append(f"    {name}: {items}")
    if view.attribution is not None:
        a = view.attribution
        lines.append(f"  Attribution ({a.method}): {a.carriers_sentence}")
        for r in a.rows:
            extra = f" alone {r.alone:+.4f}" if r.alone is not None else f" cumulative {r.cumulative:+.4f}"
            mark = " carrier" if r.carrier else ""
            lines.append(f"    layer {r.layer:>3}: effect {r.effect:+.4f}{extra}{mark}")
        if a.quiet_layers:
            lines.append(f"    {a.quiet_layers}")
        lines.extend(f"    note: {n}" for n in a.notes)
    elif view.attribution_note:
        lines.append(f"  No causal attribution: {view.attribution_note}")
    return lines


SUITE_STATUS_WORDS = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP", "error": "ERROR"}
SUITE_ID_WIDTH = 28


def render_suite_text(suite: SuiteResult) -> str:
    """A suite run for the terminal: a header, one line per case (status, id, each model's final top-1,
    where the target becomes top-1 in each model), the failing checks' messages, then the counts."""
    report = build_suite_report(suite)
    models = " · ".join(f"{tag} = {one_line(label)}" for tag, label in zip(report.tags, report.labels))
    lines = [
        f"Suite: {one_line(report.name)} ({one_line(report.source)}, sha256 {one_line(report.source_sha256[:12])})",
        f"Models: {models}" + (f" (also checked as {report.role_checked})" if report.role_checked else ""),
        f"Lens: {report.lens.lower()}",
        "",
        f"Cases (each model's final top-1; the layer from which the target is top-1): {' / '.join(report.tags)}",
    ]
    rows = []
    for view, case in zip(report.cases, suite.cases):
        head = f"{SUITE_STATUS_WORDS[view.status]:<5}  {one_line(view.id, SUITE_ID_WIDTH)}"
        if not case.results:
            rows.append((head, "could not run", ""))
            continue
        target = target_text(case)
        where = (
            "no target"
            if target is None
            else (f"target {quote(target)}: " + " / ".join(side.emergence_text for side in view.sides))
        )
        if view.final_js is not None:
            where += f"; JS {view.final_js:.3f}" + (", top-1 changed" if view.top1_changed else "")
        if view.carriers:
            where += f"; carried by layers {view.carriers}"
        rows.append((head, " / ".join(quote(r.final_top_token) for r in case.results), where))
    widths = [max([0, *(len(row[k]) for row in rows)]) for k in (0, 1)]
    lines += [f"  {head:<{widths[0]}}  {finals:<{widths[1]}}  {where}".rstrip() for head, finals, where in rows]
    failures = report.failures
    if failures:
        lines += ["", "Failures:"]
        for view in failures:
            case_id = one_line(view.id, SUITE_ID_WIDTH)
            if view.error is not None:
                lines.append(f"  {case_id} (line {view.line}) ERROR could not run: {view.error}")
            for check in view.failing_checks:  # the expectation's line, as in the JSON and JUnit
                lines.append(f"  {case_id} (line {check.line}) {SUITE_STATUS_WORDS[check.status]} {check.message}")
    if report.groups:
        lines += ["", "Groups: " + " · ".join(f"{g.name}: {g.passed} of {g.cases} passed" for g in report.groups)]
    if report.carrier_layers:
        lines += [f"Layers that carry the change (cases): {report.carrier_layers}"]
    from .drift_suite import suite_drift_text  # suite --drift

    lines += suite_drift_text(suite)
    lines += ["", f"{report.verdict}: {report.counts_line}"]
    return "\n".join(lines) + "\n"
