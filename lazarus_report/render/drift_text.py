"""The terminal view of a drift result: the summary, the per-layer table, the promoted tokens, the top positions."""

from __future__ import annotations

from ..core.errors import printable
from ..results.drift import DriftResult
from .drift_view import build_drift_view

MAX_LISTED = 10  # promoted tokens and positions in the terminal (the JSON, Markdown and HTML have more)


def render_drift_text(result: DriftResult) -> str:
    view = build_drift_view(result)
    lines = [view.title, f"  model 1: {view.models[0]}", f"  model 2: {view.models[1]}"]
    lines += [f"  corpus: {view.corpus}", f"  lens: {view.lens}", ""]
    lines += view.summary
    lines += ["", "JS(model 1, model 2) per layer, nats, over every position:"]
    lines.append(f"  {'layer':>5} {'mean':>10} {'p90':>10} {'p99':>10} {'max':>10} {'top-1 changed':>14}")
    for row in view.layers:
        mark = "  (identical)" if row.identical else ""
        lines.append(
            f"  {row.layer:>5} {row.mean:>10} {row.p90:>10} {row.p99:>10} {row.max:>10} {row.changed:>14}{mark}"
        )
    if view.promoted:
        lines += ["", "Tokens the fine-tune promotes (final top-1 where the base's differs):"]
        for t in view.promoted[:MAX_LISTED]:
            lines.append(f"  {t.token!s:<16} {t.count:>6}× ({t.share} of positions), mean gain {t.gain}")
    if view.positions:
        lines += ["", "Largest final-layer drift:"]
        for p in view.positions[:MAX_LISTED]:
            lines.append(f"  {p.rank:>2}. JS {p.js} at {p.where}: …{p.context}[{p.token}]")
            lines.append(f"      base {p.base} → tuned {p.tuned}; the text goes on with {p.next_token}")
    if view.differences:
        lines += ["", f"Activation difference (tuned - base, mean over the first {view.difference_positions} positions "
                  "of each sequence) read through the lens, last layers:"]  # fmt: skip
        lines += [f"  layer {d.layer:>3} (norm {d.norm}): {d.tokens}" for d in view.differences[-3:]]
    for note in view.notes:
        lines.append(f"Note: {note}")
    if view.timings:
        lines.append(f"Timings: {view.timings}")
    return "\n".join(printable(line) for line in lines) + "\n"
