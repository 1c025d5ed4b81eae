"""Where the fine-tune acts, prepared for display: the one-sentence summary, the change map, the
promoted/suppressed tables and the causal attribution (plain data; no MLX, no numpy).

Templates (HTML, Markdown) and the text view read ``ChangeView``; nothing here escapes anything.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from lazarus_report.render.formatting import clean_text, token_repr, visible_token
from lazarus_report.results.comparison import (
    Attribution,
    ChangeCellTop,
    ChangeMap,
    ChangeSummary,
    ComparisonResult,
    TokenShifts,
)

LN2 = math.log(2.0)
NEGLIGIBLE_PROB = 1e-4  # a promoted/suppressed row where both probabilities are below this (0.01%) is left out
SHIFTS_SHOWN = 3  # promoted/suppressed rows shown before "more"
COMPACT_MAP_COLUMNS = 5  # the Markdown change map's positions: the last first, then where JS is largest


def layer_ranges(layers: Sequence[int]) -> str:
    """[22, 23, 24, 26] -> "22-24, 26"."""
    out: list[str] = []
    run: list[int] = []
    for layer in sorted(layers):
        if run and layer == run[-1] + 1:
            run.append(layer)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [layer]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ", ".join(out)


def _js(x: float) -> str:
    return "0" if x == 0 else f"{x:.2f}" if x >= 0.01 else f"{x:.1e}"


def change_sentence(s: ChangeSummary | None, arrow: str = "→") -> str | None:
    """ "identical through layer 21 (JS exactly 0); diverges from layer 22; decisive at layer 26 (JS 0.10 → 0.51 → 0.69)"."""
    if s is None:
        return None
    parts = []
    floor = "JS exactly 0" if s.exactly_identical else f"JS ≤ {s.noise_floor:g} nats"
    if s.diverges_from is None:
        return f"identical at every compared layer ({floor}) at the last position"
    if s.identical_through is not None:
        parts.append(f"identical through layer {s.identical_through} ({floor})")
    parts.append(f"diverges from layer {s.diverges_from}")
    if s.decisive_layer is not None:
        trio = f" {arrow} ".join(_js(x) for x in s.decisive_js)
        parts.append(f"decisive at layer {s.decisive_layer} (JS {trio})")
    return "; ".join(parts)


@dataclass(frozen=True)
class MapCell:
    js: float
    alpha: str  # background strength in [0, 1] ("0.000"), sqrt-scaled so small divergences show
    flip: bool
    title: str  # tooltip: both models' top-k with the change in probability


@dataclass(frozen=True)
class MapRow:
    layer: int
    adapted: bool
    cells: list[MapCell]


@dataclass(frozen=True)
class MapColumn:
    position: int
    token: str  # the prompt token (escape it!)
    exact: str  # exact, ASCII-safe spelling ("' Paris'")
    reason: str


@dataclass(frozen=True)
class MapView:
    columns: list[MapColumn]
    rows: list[MapRow]  # last layer first (depth reads upwards); identical leading layers folded away
    identical_layers: str  # the folded layers ("0-21"): JS at most the noise floor at every shown position
    identical_exactly: bool  # ... and exactly 0 there
    note: str
    compact_rows: list[MapRow]  # for Markdown: the layers that differ somewhere, plus the one before
    compact_columns: list[int] = field(default_factory=list)  # for Markdown: column indices, the last position first
    compared: str = ""  # which positions were compared ("all 37 positions were compared")

    @property
    def display_columns(self) -> list[int]:
        """Column indices for the page: the last position first (the one predicting the answer, visible
        without scrolling on a phone), then the others in prompt order."""
        if not self.compact_columns:
            return list(range(len(self.columns)))
        last = self.compact_columns[0]
        return [last, *(j for j in range(len(self.columns)) if j != last)]

    @property
    def compact_note(self) -> str:
        """What the Markdown map shows (it fits a pull-request comment: at most ``COMPACT_MAP_COLUMNS``)."""
        left = len(self.columns) - len(self.compact_columns)
        more = f" ({left} more in the HTML report)" if left > 0 else ""
        return f"{self.compared}; shown: the last position first, then where JS is largest{more}"


@dataclass(frozen=True)
class ShiftRow:
    token: str  # the token as the model spells it (escape it!)
    exact: str  # exact, ASCII-safe spelling ("' Paris'")
    prob1: float
    prob2: float
    delta: float
    dlogit: float | None
    rank1: int
    rank2: int


@dataclass(frozen=True)
class ShiftView:
    title: str
    promoted: list[ShiftRow]
    suppressed: list[ShiftRow]
    top2_in_1: list[ShiftRow]
    top1_in_2: list[ShiftRow]

    @property
    def promoted_kept(self) -> list[ShiftRow]:
        """Promoted rows without those where both probabilities are below 0.01% (±0 pp says nothing)."""
        return [r for r in self.promoted if max(r.prob1, r.prob2) >= NEGLIGIBLE_PROB]

    @property
    def suppressed_kept(self) -> list[ShiftRow]:
        return [r for r in self.suppressed if max(r.prob1, r.prob2) >= NEGLIGIBLE_PROB]

    @property
    def suppressed_rose(self) -> bool:
        """A suppressed token's logit rose (its probability fell because others rose more): say so."""
        return any(r.dlogit is not None and r.dlogit > 0 for r in self.suppressed_kept[:SHIFTS_SHOWN])

    @property
    def negligible(self) -> int:
        """Rows left out: both probabilities below 0.01%."""
        return len(self.promoted) + len(self.suppressed) - len(self.promoted_kept) - len(self.suppressed_kept)


@dataclass(frozen=True)
class AttributionRow:
    layer: int
    effect: float
    width: str  # bar width: |effect| against the largest |effect| of the table ("37.5%")
    negative: bool
    alone: float | None
    cumulative: float | None
    reverse_cumulative: float | None
    changed_after: float | None
    tracked_probs: list[float]
    carrier: bool

    @property
    def share(self) -> str:
        """The effect as a share of the change: ``+1.87%``."""
        return f"{self.effect * 100:+.2f}%"

    @property
    def alone_share(self) -> str | None:
        return None if self.alone is None else f"{self.alone * 100:+.2f}%"


@dataclass(frozen=True)
class AttributionView:
    method: str
    explanation: str
    change: float
    rows: list[AttributionRow]  # layers with an intervention (adapter-ablation: the adapted layers)
    quiet_layers: str  # "0-21: no adapter modules, effect 0" (or "")
    carriers: str  # "22, 27-29"
    carriers_sentence: str
    tracked: list[str]  # exact spellings of the tracked strings
    tracked_probs: list[list[float]]
    notes: list[str]
    cost: str
    tracked_visible: list[str] = field(default_factory=list)  # the tracked strings with visible whitespace (␣)


@dataclass(frozen=True)
class ChangeView:
    sentence: str | None
    sentence_plain: str | None  # with "->" (terminal)
    adapted_layers: str  # "22-29" (model 2's adapter, else model 1's), or ""
    map: MapView | None
    map_missing: str | None
    shifts: list[ShiftView]
    attribution: AttributionView | None
    attribution_note: str | None


def _cell_title(m: ChangeMap, li: int, j: int, tags: Sequence[str]) -> str:
    def line(tag: str, tops: list[ChangeCellTop], first: bool) -> str:
        items = []
        for t in tops:
            own, other = (t.prob1, t.prob2) if first else (t.prob2, t.prob1)
            items.append(f"{token_repr(t.token)} {own:.3f} ({'+' if own >= other else '-'}{abs(own - other):.3f})")
        return f"{tag}: " + ", ".join(items)

    head = f"layer {m.layers[li]}, position {m.positions[j]} {token_repr(m.tokens[j])}: JS {m.js[li][j]:.4g} nats"
    flip = " (top-1 differs)" if m.flips[li][j] else ""
    return clean_text(
        "\n".join([head + flip, line(tags[0], m.tops1[li][j], True), line(tags[1], m.tops2[li][j], False)])
    )


def _map_view(m: ChangeMap, adapted: set[int], tags: Sequence[str], floor: float) -> MapView:
    rows = []
    for li, layer in enumerate(m.layers):
        cells = [
            MapCell(
                js=v,
                alpha=f"{math.sqrt(max(0.0, min(1.0, v / LN2))):.3f}",
                flip=m.flips[li][j],
                title=_cell_title(m, li, j, tags),
            )
            for j, v in enumerate(m.js[li])
        ]
        rows.append(MapRow(layer, layer in adapted, cells))
    differ = [i for i, r in enumerate(rows) if any(c.js > floor for c in r.cells)]
    compact = rows[max(0, differ[0] - 1) :] if differ else rows[-1:]
    folded = rows[: differ[0]] if differ else rows[:-1]
    return MapView(
        identical_layers=layer_ranges([r.layer for r in folded]),
        identical_exactly=all(c.js == 0.0 for r in folded for c in r.cells),
        columns=[
            MapColumn(p, t, token_repr(t), clean_text(r)) for p, t, r in zip(m.positions, m.tokens, m.position_reasons)
        ],
        rows=list(reversed(rows[len(folded) :])),
        note=clean_text(
            f"{m.note}; shown: {len(m.positions)} positions (your text, the last position and where JS is largest)"
        ),
        compact_rows=compact,
        compact_columns=_compact_columns(m),
        compared=clean_text(m.note),
    )


def _compact_columns(m: ChangeMap) -> list[int]:
    """The last position first, then the positions where JS is largest at any layer (in prompt order)."""
    if not m.positions:
        return []
    last = max(range(len(m.positions)), key=lambda j: m.positions[j])
    peak = [max((row[j] for row in m.js), default=0.0) for j in range(len(m.positions))]
    others = sorted((j for j in range(len(m.positions)) if j != last), key=lambda j: (-peak[j], j))
    return [last, *sorted(others[: COMPACT_MAP_COLUMNS - 1])]


def _shift_rows(items) -> list[ShiftRow]:
    return [
        ShiftRow(
            token=s.token,
            exact=token_repr(s.token),
            prob1=s.prob1,
            prob2=s.prob2,
            delta=s.prob2 - s.prob1,
            dlogit=(s.logit2 - s.logit1) if s.logit1 is not None and s.logit2 is not None else None,
            rank1=s.rank1,
            rank2=s.rank2,
        )
        for s in items
    ]


def _shift_view(s: TokenShifts) -> ShiftView:
    title = f"At the final layer ({s.layer})" if s.why == "final layer" else f"At layer {s.layer} (largest JS jump)"
    return ShiftView(
        title=title,
        promoted=_shift_rows(s.promoted),
        suppressed=_shift_rows(s.suppressed),
        top2_in_1=_shift_rows(s.top2_in_1),
        top1_in_2=_shift_rows(s.top1_in_2),
    )


METHOD_TEXT = {
    "adapter-ablation": (
        "Adapter ablation: each adapted layer's adapter is removed alone (effect = share of the change that "
        "disappears) and, separately, kept alone (alone = share of the change it reproduces by itself)."
    ),
    "activation-patching": (
        "Activation patching: model 1's block output (all positions) replaces model 2's at each layer; "
        "cumulative = share of the change undone by reverting blocks 0..l at once, effect = the share block l adds; "
        "reverse = share of the change model 2's block output reproduces when patched into model 1."
    ),
}


def _attribution_view(a: Attribution) -> AttributionView:
    carriers = set(a.carriers)
    acting = [x for x in a.layers if x.changed_after is not None]
    largest = max((abs(x.effect) for x in acting), default=0.0) or 1.0
    quiet = [x.layer for x in a.layers if x.changed_after is None]
    rows = [
        AttributionRow(
            layer=x.layer,
            effect=x.effect,
            width=f"{min(100.0, abs(x.effect) / largest * 100):.1f}%",
            negative=x.effect < 0,
            alone=x.alone,
            cumulative=x.cumulative,
            reverse_cumulative=x.reverse_cumulative,
            changed_after=x.changed_after,
            tracked_probs=list(x.tracked_probs),
            carrier=x.layer in carriers,
        )
        for x in acting
    ]
    if a.carriers:
        one = len(a.carriers) == 1
        share = f"{a.carriers_share:.0%}" if a.carriers_share is not None else "?"
        who = f"Layer {a.carriers[0]} carries" if one else f"Layers {layer_ranges(a.carriers)} carry"
        if a.method == "adapter-ablation":
            how = f"removing {'its adapter' if one else 'their adapters together'} undoes {share} of it"
        else:
            how = f"{'its effect is' if one else 'their effects sum to'} {share} of it"
        sentence = f"{who} the change: {how} (threshold {a.threshold:.0%})."
    else:
        sentence = "No layer carries the change (there is none to attribute)."
    return AttributionView(
        method=a.method,
        explanation=METHOD_TEXT.get(a.method, a.method),
        change=a.change,
        rows=rows,
        quiet_layers=(
            f"{'layer' if len(quiet) == 1 else 'layers'} {layer_ranges(quiet)}: no adapter modules, effect 0"
            if quiet
            else ""
        ),
        carriers=layer_ranges(a.carriers),
        carriers_sentence=sentence,
        tracked=[token_repr(t) for t in a.tracked],
        tracked_visible=[visible_token(t) for t in a.tracked],
        tracked_probs=a.tracked_probs,
        notes=[clean_text(n) for n in a.notes],
        cost=f"{a.passes} forward passes (partial ones included)"
        + (f", {a.seconds:.2f} s" if a.seconds is not None else ""),
    )


def build_change_view(c: ComparisonResult, tags: Sequence[str]) -> ChangeView | None:
    """``None`` when the comparison holds none of it (files written before these fields existed)."""
    if c.change_summary is None and c.change_map is None and c.attribution is None and c.attribution_note is None:
        return None
    adapted = next((a for a in reversed(c.adapted_layers) if a), [])
    floor = c.change_summary.noise_floor if c.change_summary is not None else 0.0
    map_missing = None
    if c.change_map is None:
        if c.same_model:
            map_missing = "no change map: both sides are the same model, so every difference is zero"
        elif not c.same_tokenizer or not c.same_tokens:
            map_missing = "no change map: it needs the same tokenizer and the same tokens on both sides"
        elif c.alignment != "layer":
            map_missing = "no change map: the models have different depths"
        else:
            map_missing = (
                "no change map: this run compared the last position only (compare with -o, --html or "
                "--markdown compares every position)"
            )
    return ChangeView(
        sentence=change_sentence(c.change_summary),
        sentence_plain=change_sentence(c.change_summary, "->"),
        adapted_layers=layer_ranges(adapted),
        map=_map_view(c.change_map, set(adapted), tags, floor) if c.change_map is not None else None,
        map_missing=map_missing,
        shifts=[_shift_view(s) for s in c.token_shifts],
        attribution=_attribution_view(c.attribution) if c.attribution is not None else None,
        attribution_note=clean_text(c.attribution_note) if c.attribution_note else None,
    )
