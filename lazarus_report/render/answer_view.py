"""An answer read through the lens, prepared for display: the answer strip (plain data; templates lay it out).

The strip has the answer's tokens as columns and the captured layers as rows (the last on top, as in the
heatmap); each cell is the lens's probability of that answer token at that layer, coloured with the heatmap's
ten bins, with the layer's top 3 in its hover text. Under each token: the layer where it becomes top-1, and
what the model would write there instead when it would not write it. Long answers come in blocks of
``STRIP_BLOCK_TOKENS`` columns (each its own table: they stack on a page and fit paper), at most
``STRIP_MAX_TOKENS`` tokens in all. The strip is laid out twice, as the heatmap is drawn twice: in blocks of
``STRIP_NARROW_TOKENS`` columns too, which the page shows instead under its 640 px breakpoint (a phone; pure CSS,
so a static page does it too) and never prints.

A comparison shows both models' strips aligned token by token when they read the same answer tokens, with
the change of each token's final probability; otherwise (different generated answers, or different
tokenizers) both strips side by side, and each model's log-probability of the other's answer when the result
holds it (``ComparisonResult.answer_cross``).

Every string here went through ``clean_text`` or ``token_view``; HTML escaping is the templates' autoescape.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from lazarus_report.render.formatting import clean_text, finite, fmt_prob, visible_token
from lazarus_report.render.token_view import TokenView, token_view
from lazarus_report.results.analysis import AnalysisResult
from lazarus_report.results.answer import GENERATED, AnswerReading, AnswerToken
from lazarus_report.results.comparison import ComparisonResult

STRIP_BLOCK_TOKENS = 16  # columns per table
STRIP_NARROW_TOKENS = 5  # columns per table on a phone (the narrow blocks)
STRIP_MAX_TOKENS = 96  # tokens shown in all (the rest are in the embedded result JSON)
HOVER_TOP = 3  # tokens named in a cell's hover text

STOP_PHRASES = {
    "eos": "it stopped at the end-of-sequence token",
    "stop": "it stopped at a stop string (cut off)",
    "length": "it stopped at the token limit",
}


@dataclass(frozen=True)
class StripCell:
    """One (layer, answer token) cell."""

    text: str  # the probability in percent, short: "93", "<1", ">99"
    cls: str  # CSS classes: "ac ab<bin>" (colour bin), "d" (white text), "t1" (top-1), "em" (emergence layer)
    title: str  # hover: the layer, the token's probability and rank, the layer's top 3


@dataclass(frozen=True)
class StripRow:
    layer: int
    unreliable: bool  # the lens is unreliable at this layer (marked as in the layer table and the heatmap)
    is_final: bool
    cells: list[StripCell]
    down_to: int | None = None  # the lowest layer of a run of layers that read the same, folded into this row

    @property
    def label(self) -> str:
        return str(self.layer) if self.down_to is None else f"{self.down_to}–{self.layer}"


@dataclass(frozen=True)
class StripToken:
    """One answer token and what its column says under it."""

    number: int  # 1-based place in the answer
    token: TokenView
    final_prob: float | None
    final_rank: int | None
    emergence: str  # layer where it first becomes top-1, or "never"
    emergence_note: str | None  # "stays from 20" / "not top-1 at the end", when it does not stay top-1 from there
    own: TokenView | None  # what the model would write here instead (its final top-1), when it is not this token
    own_prob: float | None
    diverges: bool  # the first token the model would not write


@dataclass(frozen=True)
class StripBlock:
    caption: str
    tokens: list[StripToken]
    rows: list[StripRow]  # the last layer first


@dataclass(frozen=True)
class AnswerView:
    """One run's answer: the facts above the strip, and the strip."""

    key: str  # HTML id of the section ("run0-answer")
    generated: bool
    text: str  # the answer as given or generated
    num_tokens: int
    shown_tokens: int  # at most STRIP_MAX_TOKENS
    sequence_logprob: float | None
    sequence_prob: float | None
    mean_logprob: float | None
    divergence: StripToken | None  # the first token the model would not write (None: it writes them all)
    stop: str | None  # generated: why it stopped ("it stopped at the end-of-sequence token")
    boundary_note: str | None
    tokens: list[StripToken]
    blocks: list[StripBlock]
    narrow_blocks: list[StripBlock]  # the same strip in blocks of STRIP_NARROW_TOKENS (for a phone)
    has_unreliable: bool  # some rows are unreliable layers


@dataclass(frozen=True)
class ModelMark:
    """What one model's row under an aligned token says."""

    emergence: str
    emergence_note: str | None
    own: TokenView | None
    diverges: bool


@dataclass(frozen=True)
class AlignedToken:
    number: int
    token: TokenView
    marks: list[ModelMark]  # per model
    final_probs: list[float | None]  # per model
    change: float | None  # final probability, model 2 - model 1


@dataclass(frozen=True)
class AlignedBlock:
    caption: str
    tokens: list[AlignedToken]
    groups: list[list[StripRow]]  # per model, the last layer first

    @property
    def span(self) -> int:
        """Columns of a full-width row: the row headers and the tokens."""
        return len(self.tokens) + 1


@dataclass(frozen=True)
class CrossFact:
    """One model's log-probability of the other model's answer (``ComparisonResult.answer_cross``)."""

    reader: str  # tag of the model that reads ("M1")
    writer: str  # tag of the model that wrote the answer ("M2")
    logprob: float | None
    own_logprob: float | None  # the reader's log-probability of its own answer


@dataclass(frozen=True)
class AnswerComparisonView:
    """Both models' answers: aligned token by token, or side by side."""

    aligned: bool
    sides: list[AnswerView | None]  # per model (None: that run has no answer)
    blocks: list[AlignedBlock]  # aligned only
    narrow_blocks: list[AlignedBlock]  # aligned only: the same in blocks of STRIP_NARROW_TOKENS (for a phone)
    apart_reason: str | None  # why the strips stand side by side
    same_text: bool
    logprob_change: float | None  # sequence log-prob, model 2 - model 1 (aligned only)
    likelihood_ratio: str | None  # "296 times less likely" (aligned, when the change is not tiny or huge)
    cross: list[CrossFact]

    @property
    def logprob_change_label(self) -> str:
        """The change of the answer's log-probability, signed: "+1.25", "−5.69"."""
        return signed(self.logprob_change)

    @property
    def has_unreliable(self) -> bool:
        return any(side is not None and side.has_unreliable for side in self.sides)


_T = TypeVar("_T")


def _at(values: Sequence[_T], i: int) -> _T | None:
    """``values[i]``, or None past its end (a malformed result must not break the page)."""
    return values[i] if 0 <= i < len(values) else None


def signed(x: float | None, digits: int = 2) -> str:
    """A difference with its sign: "+1.25", "−5.69" (a true minus sign), "±0.00", "n/a"."""
    x = finite(x)
    if x is None:
        return "n/a"
    text = f"{abs(x):.{digits}f}"
    if float(text) == 0:
        return "±" + text
    return ("+" if x > 0 else "\u2212") + text


def answer_palette() -> list[str]:
    """The heatmap's colours, one per bin (the strip's ``ab<bin>`` classes)."""
    from lazarus_report.render.charts.style import HEATMAP_COLORS  # the charts package imports this module

    return list(HEATMAP_COLORS)


def cell_label(p: float | None) -> str:
    """A probability as a short percentage for a cell: "93", "<1", ">99", "0" ("–" when unknown)."""
    if p is None:
        return "–"
    if p == 0:
        return "0"
    if p < 0.005:
        return "<1"
    if p >= 0.995:
        return ">99"
    return str(min(99, max(1, round(100 * p))))


def _emergence(t: AnswerToken) -> tuple[str, str | None]:
    if t.emergence_layer is None:
        return "never", None
    if t.stable_from_layer is None:
        return str(t.emergence_layer), "not top-1 at the end"
    if t.stable_from_layer != t.emergence_layer:
        return str(t.emergence_layer), f"stays from {t.stable_from_layer}"
    return str(t.emergence_layer), None


def _own(t: AnswerToken) -> tuple[TokenView | None, float | None]:
    """The model's own pick at this token (its final top-1), when it is another token."""
    last = t.top_tokens[-1] if t.top_tokens else []
    if not last or last[0].token_id == t.token_id:
        return None, None
    return token_view(last[0].token, last[0].token_id), finite(last[0].prob)


def strip_token(t: AnswerToken, k: int, divergence_index: int | None) -> StripToken:
    emergence, note = _emergence(t)
    own, own_prob = _own(t)
    return StripToken(
        number=k + 1,
        token=token_view(t.token, t.token_id),
        final_prob=finite(_at(t.probs, len(t.probs) - 1)),
        final_rank=_at(t.ranks, len(t.ranks) - 1),
        emergence=emergence,
        emergence_note=note,
        own=own,
        own_prob=own_prob,
        diverges=k == divergence_index,
    )


@functools.cache
def _bins() -> tuple[list[float], float]:
    """The heatmap's bin thresholds and the probability above which its cells get white text."""
    from lazarus_report.render.charts.style import HEATMAP_DARK_TEXT_ABOVE, HEATMAP_THRESHOLDS

    return list(HEATMAP_THRESHOLDS), HEATMAP_DARK_TEXT_ABOVE


def _cell(t: AnswerToken, i: int, layer: int, is_final: bool, unreliable: bool) -> StripCell:
    thresholds, dark_above = _bins()
    p = finite(_at(t.probs, i))
    rank = _at(t.ranks, i)
    shade = 0.0 if p is None else round(p, 4)  # as the heatmap bins its cells
    cls = f"ac ab{bisect.bisect_right(thresholds, shade)}"
    if shade > dark_above:
        cls += " d"
    if rank == 1:
        cls += " t1"
    if layer == t.emergence_layer:
        cls += " em"
    where = f"Layer {layer}" + (" (final)" if is_final else "") + (" · unreliable lens reading" if unreliable else "")
    rank_text = f", rank {rank:,}" if rank is not None else ""
    lines = [f"{where}: {visible_token(t.token)} {fmt_prob(p)}{rank_text}"]
    top = _at(t.top_tokens, i) or []
    if top:
        lines.append(
            f"Top {min(HOVER_TOP, len(top))}: "
            + " · ".join(f"{visible_token(tp.token)} {fmt_prob(finite(tp.prob))}" for tp in top[:HOVER_TOP])
        )
    return StripCell(cell_label(p), cls, "\n".join(lines))


def strip_rows(tokens: Sequence[AnswerToken], layers: Sequence[int], unreliable: set[int]) -> list[StripRow]:
    """The rows of a strip over ``tokens``: one per captured layer, the last first; consecutive layers whose cells
    read the same (text and marks: no top-1 or emergence among them) fold into one row (``fold_strip_rows``)."""
    last = len(layers) - 1
    rows = [
        StripRow(
            layer=layer,
            unreliable=layer in unreliable,
            is_final=i == last,
            cells=[_cell(t, i, layer, i == last, layer in unreliable) for t in tokens],
        )
        for i, layer in reversed(list(enumerate(layers)))
    ]
    return fold_strip_rows(rows)


def _reads_the_same(a: StripRow, b: StripRow) -> bool:
    return (
        not (a.is_final or b.is_final)
        and a.unreliable == b.unreliable
        and [(c.text, c.cls) for c in a.cells] == [(c.text, c.cls) for c in b.cells]
    )


def fold_strip_rows(rows: Sequence[StripRow]) -> list[StripRow]:
    """Runs of consecutive rows (the last layer first) that read the same fold into the run's top row, labelled
    with its layer range; each cell's hover says which layers it stands for (it keeps the top layer's top 3)."""
    out: list[StripRow] = []
    for row in rows:
        if out and _reads_the_same(out[-1], row):
            out[-1] = dataclasses.replace(out[-1], down_to=row.layer)
        else:
            out.append(row)
    return [_with_range_titles(r) for r in out]


def _with_range_titles(row: StripRow) -> StripRow:
    if row.down_to is None:
        return row
    note = f"Layers {row.down_to}–{row.layer} read the same; shown: layer {row.layer}.\n"
    return dataclasses.replace(row, cells=[dataclasses.replace(c, title=note + c.title) for c in row.cells])


def _block_caption(start: int, end: int, shown: int, total: int, size: int) -> str:
    if shown <= size and shown == total:
        return f"The answer's {total} token{'s' if total != 1 else ''} by layer: probability of each, in %"
    return f"Answer tokens {start + 1}-{end} of {total} by layer: probability of each, in %"


def build_answer_view(result: AnalysisResult, key: str) -> AnswerView | None:
    """The answer section of one run (None when the result has no answer)."""
    answer = result.answer
    if answer is None:
        return None
    layers = list(result.captured_layers)
    bad = set(result.unreliable_layers)
    shown = answer.tokens[:STRIP_MAX_TOKENS]
    tokens = [strip_token(t, k, answer.divergence_index) for k, t in enumerate(shown)]

    def blocks_of(size: int) -> list[StripBlock]:
        return [
            StripBlock(
                caption=_block_caption(start, min(start + size, len(shown)), len(shown), len(answer.tokens), size),
                tokens=tokens[start : start + size],
                rows=strip_rows(shown[start : start + size], layers, bad),
            )
            for start in range(0, len(shown), size)
        ]

    div = answer.divergence_index
    divergence = None
    if div is not None and 0 <= div < len(answer.tokens):
        divergence = tokens[div] if div < len(tokens) else strip_token(answer.tokens[div], div, div)
    logprob = finite(answer.sequence_logprob)
    return AnswerView(
        key=f"{key}-answer",
        generated=answer.source == GENERATED,
        text=clean_text(answer.text),
        num_tokens=len(answer.tokens),
        shown_tokens=len(shown),
        sequence_logprob=logprob,
        sequence_prob=math.exp(logprob) if logprob is not None and logprob < 700 else None,
        mean_logprob=logprob / len(answer.tokens) if logprob is not None and answer.tokens else None,
        divergence=divergence,
        stop=STOP_PHRASES.get(answer.stop_reason or "") if answer.source == GENERATED else None,
        boundary_note=clean_text(answer.boundary_note) if answer.boundary_note else None,
        tokens=tokens,
        blocks=blocks_of(STRIP_BLOCK_TOKENS),
        narrow_blocks=blocks_of(STRIP_NARROW_TOKENS),
        has_unreliable=any(layer in bad for layer in layers),
    )


# --- comparison -----------------------------------------------------------------


def _mark(t: AnswerToken, k: int, reading: AnswerReading) -> ModelMark:
    emergence, note = _emergence(t)
    own, _ = _own(t)
    return ModelMark(emergence, note, own, k == reading.divergence_index)


def _aligned(readings: list[AnswerReading], results: Sequence[AnalysisResult], size: int) -> list[AlignedBlock]:
    """Both readings aligned token by token, in blocks of ``size`` tokens."""
    shown = min(len(readings[0].tokens), STRIP_MAX_TOKENS)
    total = len(readings[0].tokens)
    blocks = []
    for start in range(0, shown, size):
        end = min(start + size, shown)
        tokens = []
        for k in range(start, end):
            pair = [r.tokens[k] for r in readings]
            finals = [finite(_at(t.probs, len(t.probs) - 1)) for t in pair]
            change = finals[1] - finals[0] if finals[0] is not None and finals[1] is not None else None
            tokens.append(
                AlignedToken(
                    number=k + 1,
                    token=token_view(pair[0].token, pair[0].token_id),
                    marks=[_mark(t, k, r) for t, r in zip(pair, readings)],
                    final_probs=finals,
                    change=change,
                )
            )
        groups = [
            strip_rows(r.tokens[start:end], list(res.captured_layers), set(res.unreliable_layers))
            for r, res in zip(readings, results)
        ]
        blocks.append(AlignedBlock(_block_caption(start, end, shown, total, size), tokens, groups))
    return blocks


def _ratio(change: float | None, tags: Sequence[str]) -> str | None:
    """ "M2 finds it 296 times less likely than M1" for a log-probability change (None when tiny or huge)."""
    if change is None or abs(change) < 0.01 or abs(change) > 60:
        return None
    factor = math.exp(abs(change))
    return f"{tags[1]} finds it {factor:,.3g} times {'more' if change > 0 else 'less'} likely than {tags[0]}"


def build_answer_comparison(
    comparison: ComparisonResult, sides: list[AnswerView | None], tags: Sequence[str]
) -> AnswerComparisonView | None:
    """Both models' answers (None when neither run has one). ``sides`` are the runs' own answer views."""
    readings = [r.answer for r in comparison.results]
    if readings[0] is None and readings[1] is None:
        return None
    same_text = readings[0] is not None and readings[1] is not None and readings[0].text == readings[1].text
    aligned = False
    reason = None
    if readings[0] is None or readings[1] is None:
        reason = f"only {tags[0] if readings[0] is not None else tags[1]} has an answer"
    elif not same_text:
        reason = "the two models wrote different answers"
    elif not comparison.same_tokenizer or [t.token_id for t in readings[0].tokens] != [
        t.token_id for t in readings[1].tokens
    ]:
        reason = "the models split the answer into different tokens"
    else:
        aligned = True
    change = None
    if aligned:
        assert readings[0] is not None and readings[1] is not None
        lp = [finite(r.sequence_logprob) for r in (readings[0], readings[1])]
        change = lp[1] - lp[0] if lp[0] is not None and lp[1] is not None else None
    cross_values = getattr(comparison, "answer_cross", None)  # set by compare --generate
    cross = []
    if cross_values is not None and len(cross_values) == 2 and not aligned:
        own = [s.sequence_logprob if s is not None else None for s in sides]
        cross = [
            CrossFact(tags[0], tags[1], finite(cross_values[0]), own[0]),
            CrossFact(tags[1], tags[0], finite(cross_values[1]), own[1]),
        ]
    present = [r for r in readings if r is not None]
    return AnswerComparisonView(
        aligned=aligned,
        sides=sides,
        blocks=_aligned(present, comparison.results, STRIP_BLOCK_TOKENS) if aligned else [],
        narrow_blocks=_aligned(present, comparison.results, STRIP_NARROW_TOKENS) if aligned else [],
        apart_reason=reason,
        same_text=same_text,
        logprob_change=change,
        likelihood_ratio=_ratio(change, tags) if aligned else None,
        cross=cross,
    )
