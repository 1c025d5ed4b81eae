"""A drift result prepared for display (plain strings and numbers, shared by the text, Markdown and HTML views).

Strings from models and users (labels, corpus names, tokens) are kept raw here: each renderer escapes them for
its own output (``printable`` for the terminal, ``md_escape``/``md_token`` for Markdown, Jinja's autoescape and
``escape_xml`` for HTML and SVG)."""

from __future__ import annotations

from dataclasses import dataclass

from ..results.drift import DriftLayer, DriftResult
from .formatting import clean_text, fmt_delta, fmt_prob, visible_token

MAX_SUMMARY_TOKENS = 5


@dataclass(frozen=True)
class LayerRow:
    layer: int
    mean: str
    p90: str
    p99: str
    max: str
    changed: str  # share of top-1s changed, percent
    identical: bool


@dataclass(frozen=True)
class PromotedRow:
    token: str  # visible spelling (markers for whitespace)
    token_id: int
    count: int
    share: str
    gain: str


@dataclass(frozen=True)
class PositionRow:
    rank: int
    where: str  # "sequence 3, token 41"
    context: str  # the tokens before, visible spelling, joined
    token: str
    next_token: str
    base: str  # "␣the (42.1%)"
    tuned: str
    js: str
    base_token: str  # the same, apart: "␣the", "42.1%"
    base_prob: str
    tuned_token: str
    tuned_prob: str


@dataclass(frozen=True)
class DifferenceRow:
    """The activation-difference lens at one layer that differs from the base."""

    layer: int
    norm: str
    tokens: str  # "␣the (3.1%) · . (2.2%) …"
    top: list[tuple[str, str]]  # the same, apart: [("␣the", "3.1%"), ...]


@dataclass(frozen=True)
class DriftView:
    title: str
    labels: list[str]
    models: list[str]  # each side's one-line description
    corpus: str
    lens: str
    summary: list[str]
    layers: list[LayerRow]
    promoted: list[PromotedRow]
    positions: list[PositionRow]
    differences: list[DifferenceRow]
    difference_positions: int
    notes: list[str]
    timings: str | None
    generator: str


def js_text(x: float) -> str:
    """A JS divergence in nats: 0 exactly as "0", else four significant digits (small values stay readable)."""
    return "0" if x == 0 else f"{x:.4g}"


def _first_drift(result: DriftResult) -> DriftLayer | None:
    return next((row for row in result.layers if not row.identical and row.js_mean > 0), None)


def summary_sentences(result: DriftResult) -> list[str]:
    final = result.final
    out = [
        f"Over {result.tokens:,} positions of neutral text ({result.sequences} sequence"
        f"{'s' if result.sequences != 1 else ''}), the final-layer "
        f"distributions of the two models differ by JS {js_text(final.js_mean)} nats on average "
        f"(90th percentile {js_text(final.js_p90)}, 99th {js_text(final.js_p99)}); the top-1 prediction changed at "
        f"{fmt_prob(final.top1_changed)} of positions."
    ]
    first = _first_drift(result)
    if first is None:
        out.append("The models read the text identically at every captured layer: no drift at all.")
    else:
        same = [row.layer for row in result.layers if row.identical]
        below = f" (layers {same[0]}-{same[-1]} are bit for bit the base's)" if same and same[-1] < first.layer else ""
        peak = max(result.layers, key=lambda row: (row.js_mean, -row.layer))
        out.append(
            f"Drift starts at layer {first.layer}{below}; the mean JS is largest at layer {peak.layer} "
            f"({js_text(peak.js_mean)} nats)."
        )
    if result.promoted:
        listed = ", ".join(f"{visible_token(t.token)} ({t.count}×)" for t in result.promoted[:MAX_SUMMARY_TOKENS])
        out.append(f"Where the final top-1 changed, the fine-tune most often predicts: {listed}.")
    return out


def _describe(result: DriftResult, k: int) -> str:
    info = result.models[k]
    adapter = f" + adapter {info.adapter}" if info.adapter else ""
    return f"{info.model_id}{adapter} ({info.family}, {info.num_layers} layers, {info.precision})"


def build_drift_view(result: DriftResult) -> DriftView:
    layers = [
        LayerRow(
            layer=row.layer,
            mean=js_text(row.js_mean),
            p90=js_text(row.js_p90),
            p99=js_text(row.js_p99),
            max=js_text(row.js_max),
            changed=fmt_prob(row.top1_changed),
            identical=row.identical,
        )
        for row in result.layers
    ]
    promoted = [
        PromotedRow(visible_token(t.token), t.token_id, t.count, fmt_prob(t.share), fmt_delta(t.mean_gain))
        for t in result.promoted
    ]
    positions = [
        PositionRow(
            rank=i + 1,
            where=f"sequence {p.sequence}, token {p.position}",
            context="".join(visible_token(t) for t in p.context),
            token=visible_token(p.token),
            next_token="—" if p.next_token is None else visible_token(p.next_token),
            base=f"{visible_token(p.base_top1.token)} ({fmt_prob(p.base_top1.prob)})",
            tuned=f"{visible_token(p.tuned_top1.token)} ({fmt_prob(p.tuned_top1.prob)})",
            js=js_text(p.js),
            base_token=visible_token(p.base_top1.token),
            base_prob=fmt_prob(p.base_top1.prob),
            tuned_token=visible_token(p.tuned_top1.token),
            tuned_prob=fmt_prob(p.tuned_top1.prob),
        )
        for i, p in enumerate(result.top_positions)
    ]
    differences = [
        DifferenceRow(
            layer=d.layer,
            norm=f"{d.norm:.4g}",
            tokens=" · ".join(f"{visible_token(t.token)} ({fmt_prob(t.prob)})" for t in d.top_tokens),
            top=[(visible_token(t.token), fmt_prob(t.prob)) for t in d.top_tokens],
        )
        for d in result.activation_difference
        if d.top_tokens
    ]
    timings = None
    if result.timings:
        timings = ", ".join(f"{k} {v:.2f} s" for k, v in result.timings.items())
    lens = result.lens.kind + (f" ({result.lens.source})" if result.lens.source else "")
    return DriftView(
        title=f"Drift: {result.labels[0]} → {result.labels[1]}",
        labels=list(result.labels),
        models=[_describe(result, 0), _describe(result, 1)],
        corpus=f"{result.corpus}; {result.tokens:,} positions in {result.sequences} sequences of up to "
        f"{result.sequence_length} tokens",
        lens=lens,
        summary=summary_sentences(result),
        layers=layers,
        promoted=promoted,
        positions=positions,
        differences=differences,
        difference_positions=result.activation_positions,
        notes=list(result.notes),
        timings=timings,
        generator=clean_text(f"lazarus-report {result.versions.get('lazarus-report', '')}".strip()),
    )
