"""The terminal view of a diff: warnings, the verdict and summary, regressions, then the other changed cases."""

from __future__ import annotations

from ..core.errors import printable
from ..results.diff import UNCHANGED, DiffResult
from .diff_view import CaseRow, build_diff_view

MAX_LISTED = 50  # changed cases listed one by one (all of them are in the JSON, Markdown and HTML)


def _case_line(r: CaseRow) -> str:
    target = f"P({r.target}) {r.prob} ({r.delta_text})" if r.target is not None else "no target"
    status = f"{r.status}, " if r.transition != "—" else ""
    return f"  {r.verdict:<9} {r.id}: {status}{target}, rank {r.rank}, top-1 from layer {r.emergence}"


def render_diff_text(d: DiffResult) -> str:
    view = build_diff_view(d)
    lines = [f"Warning: {w}" for w in view.warnings]
    lines += [
        f"Diff ({view.kind}): {view.verdict}",
        f"  {view.summary}",
        f"  baseline:  {view.baseline}",
        f"  candidate: {view.candidate}",
        f"  {view.policy}",
    ]
    if view.setup:
        lines.append("Setup differences:")
        lines += [
            f"  {what}: {before} → {after}{'  (warning)' if warn else ''}" for what, before, after, warn in view.setup
        ]
    changed = [r for r in view.rows if r.verdict != UNCHANGED or r.regression]
    if view.regressions:
        lines.append("Regressions:")
        for r in view.regressions[:MAX_LISTED]:
            lines.append(_case_line(r))
            lines += [f"      {reason}" for reason in r.reasons]
    others = [r for r in changed if not r.regression]
    if others:
        lines.append("Other changes:")
        lines += [_case_line(r) for r in others[:MAX_LISTED]]
    if len(view.regressions) > MAX_LISTED or len(others) > MAX_LISTED:
        lines.append(f"  ... (at most {MAX_LISTED} listed per group: the JSON, Markdown and HTML have every case)")
    for title, refs in (("Added", view.added), ("Removed", view.removed)):
        if refs:
            lines.append(f"{title} cases: " + ", ".join(ref[0] for ref in refs[:MAX_LISTED]))
    if view.all_unchanged:
        lines.append("Every case is unchanged.")
    return "\n".join(printable(line) for line in lines) + "\n"
