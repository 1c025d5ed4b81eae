"""The report model: an ``AnalysisResult`` or ``ComparisonResult`` prepared for display, as plain data.

This is the only place that decides *what* a report says (which rows, which facts, which layer is
highlighted). Templates decide how it looks, ``charts`` how it is plotted; neither computes anything.
No MLX, no numpy.

A report holds a list of runs: one for ``analyze``, two for ``compare``. Everything shown per model
lives in ``RunReport``; what differs between the two models of a comparison lives in
``ComparisonView`` (``ReportModel.comparison``), built by ``build_comparison_report``.

Every string in the model has been through ``clean_text`` or ``token_view``: it encodes as UTF-8 and
cannot reorder the text around it. Escaping for HTML or Markdown happens at output time.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from lazarus_report.render.answer_view import (
    AnswerComparisonView,
    AnswerView,
    answer_palette,
    build_answer_comparison,
    build_answer_view,
)
from lazarus_report.render.change_view import ChangeView, build_change_view
from lazarus_report.render.formatting import clean_text, finite, fmt_seconds, token_repr, visible_token
from lazarus_report.render.lens_view import (
    HOW,
    analysis_trust,
    lens_facts,
    lens_name,
    lens_reading,
    trust_sentences,
    unreliable_note,
    unreliable_pairs,
)

# Re-exported: the token type of every view (defined apart so that ``answer_view`` can use it too).
from lazarus_report.render.token_view import TokenView as TokenView
from lazarus_report.render.token_view import token_view as token_view
from lazarus_report.results.analysis import AnalysisResult, TokenEvolution, TrackedToken
from lazarus_report.results.codec import first_layer_where, true_from_layer
from lazarus_report.results.comparison import ComparisonResult, LayerDivergence

# The heatmap shows the last prompt positions (where the prediction is), as many as fit a budget of
# cells so the page size does not grow with the prompt: 12 positions for 30 layers, 20 for 16 or fewer.
# A comparison shows two heatmaps and gets a smaller budget per model (8 positions for 30 layers).
HEATMAP_MAX_CELLS = 384
COMPARE_HEATMAP_MAX_CELLS = 240
HEATMAP_MIN_POSITIONS = 8
HEATMAP_MAX_POSITIONS = 20


def heatmap_positions(num_layers: int, max_cells: int = HEATMAP_MAX_CELLS) -> int:
    """How many (last) prompt positions the heatmap shows for ``num_layers`` captured layers."""
    return max(HEATMAP_MIN_POSITIONS, min(HEATMAP_MAX_POSITIONS, max_cells // max(1, num_layers)))


@dataclass(frozen=True)
class PromptToken:
    position: int
    token: TokenView


@dataclass(frozen=True)
class TopRow:
    """One row of the final top-k table."""

    rank: int
    token: TokenView
    prob: float
    tracked: bool  # the user tracks this token


@dataclass(frozen=True)
class TrackedCell:
    prob: float | None
    rank: int


@dataclass(frozen=True)
class LayerRow:
    """One row of the layer table (last prompt position)."""

    layer: int
    top: TokenView
    top_prob: float | None
    entropy: float | None
    kl_to_final: float | None
    final_token_rank: int
    tracked: list[TrackedCell]  # aligned with RunReport.tracked
    emerging: list[TokenView]  # series whose emergence layer this is (highlighted row)
    is_final: bool
    unreliable: bool = False  # the lens is known to be far from the final distribution at this layer


@dataclass(frozen=True)
class TrackedView:
    """A tracked token and what happened to it."""

    text: TokenView  # what the user passed (shown with visible whitespace, like a token)
    token: TokenView  # the tracked (first) token
    num_tokens: int
    warning: str | None
    emergence_layer: int | None
    stable_from_layer: int | None
    final_prob: float | None
    final_rank: int | None
    best_rank: int | None
    best_rank_layer: int | None
    top1_layers: str | None = None  # the captured layers where it is top-1, as runs: "12-16, 20"

    @property
    def top1_phrase(self) -> str:
        """When it is top-1, for sentences: "top-1 from layer 17" when it stays top-1 to the end, "top-1 at
        layers 12-16, final rank 3" when it does not, "never top-1"."""
        return top1_phrase(self.emergence_layer, self.top1_layers, self.final_rank)


def top1_phrase(emergence: int | None, layers: str | None, final_rank: int | None) -> str:
    if emergence is None:
        return "never top-1"
    if final_rank == 1 or layers is None:
        return f"top-1 from layer {emergence}"
    return f"top-1 at {'layer' if layers.isdigit() else 'layers'} {layers}, final rank {final_rank:,}"


def layer_runs(layers: Sequence[int], flags: Sequence[bool]) -> str | None:
    """The layers where ``flags`` holds, as runs of consecutive captured layers: "12-16, 20" (None: nowhere)."""
    runs: list[list[int]] = []
    for i, (layer, flag) in enumerate(zip(layers, flags)):
        if not flag:
            continue
        if runs and i > 0 and flags[i - 1]:
            runs[-1][1] = layer
        else:
            runs.append([layer, layer])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs) or None


@dataclass(frozen=True)
class Series:
    """A token followed across the captured layers: what the trajectory chart plots.

    ``probs`` entries are None where the probability is unknown (the final top-1 is only known
    where it made a layer's top-k when it is not tracked).
    """

    label: str  # visible token
    layers: list[int]
    probs: list[float | None]
    ranks: list[int]
    emergence_layer: int | None
    tracked: bool


@dataclass(frozen=True)
class GridCell:
    layer: int
    position: int
    token: str  # visible top-1 token
    prob: float | None
    entropy: float | None
    kl_to_final: float | None
    answer_prob: float | None = None  # P(the model's final answer at this position), when the result has it


@dataclass(frozen=True)
class GridView:
    """The layers x positions heatmap data (possibly only the last positions)."""

    layers: list[int]
    positions: list[int]
    position_labels: list[str]  # "28 ␣is": position and the prompt token there
    cells: list[GridCell]
    total_positions: int
    unreliable_layers: list[int] = field(default_factory=list)  # rows marked as unreliable lens readings
    # The token that actually comes next in the prompt at each shown position ("" after the last), and
    # whether the last layer's top-1 there is that token (the model predicts its own prompt).
    next_tokens: list[str] = field(default_factory=list)
    next_predicted: list[bool] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)  # the model's final answer (last layer's top-1) per column
    has_answer_probs: bool = False  # cells carry answer_prob (results from before it have none)

    @property
    def truncated(self) -> bool:
        return len(self.positions) < self.total_positions


@dataclass(frozen=True)
class Jump:
    """The largest rise of the final top-1's probability between consecutive captured layers."""

    from_layer: int
    to_layer: int
    from_prob: float
    to_prob: float


@dataclass(frozen=True)
class Summary:
    """The facts the Markdown summary states."""

    final: TokenView
    final_prob: float
    runner_up: TokenView | None
    runner_up_prob: float | None
    final_emergence_layer: int | None  # first captured layer whose top-1 is the final top-1
    final_stable_from_layer: int | None
    entropy_first: float | None
    entropy_last: float | None
    kl_below_one_layer: int | None  # first captured layer with KL(final || layer) < 1 nat
    biggest_gain: Jump | None


@dataclass(frozen=True)
class InfoRow:
    """A label/value row for the model card, settings, versions and timings lists."""

    label: str
    value: str


@dataclass(frozen=True)
class RunReport:
    """Everything shown for one model run."""

    key: str  # stable id prefix for HTML ids ("run0")
    title: str  # model id as given
    model_facts: list[InfoRow]
    family: str
    num_layers: int
    precision: str
    device: str
    blas: str
    adapter: str | None
    prompt: str
    formatted_prompt: str
    chat_template_applied: bool
    prompt_tokens: list[PromptToken]
    tracked: list[TrackedView]
    warnings: list[str]
    final_top: list[TopRow]
    layer_rows: list[LayerRow]
    layers_note: str  # "all 30 layers" / "8 of 30 layers: 0, 4, ..."
    captured_layers: list[int]
    entropy: list[float | None]
    kl_to_final: list[float | None]
    series: list[Series]
    series_are_tracked: bool
    grid: GridView | None
    summary: Summary
    settings: list[InfoRow]
    versions: list[InfoRow]
    timings: list[InfoRow]
    lens_name: str = "logit lens"  # which lens the run shows: "logit lens", "tuned lens"...
    unreliable_layers: list[int] = field(default_factory=list)  # captured layers where the lens is unreliable
    unreliable_note: str | None = None  # the sentence that says so
    fidelity_known: bool = False  # the lens has held-out fidelity data (else no layer can be marked)
    trust: str = ""  # the lens and how far to trust it: reliable from which layer (``lens_view.analysis_trust``)
    # The same run through the other lenses read from its pass (``AnalysisResult.lens_views``): the page can
    # switch between them (the primary lens is this report); each has its own charts, table and trust sentence.
    lens_views: list[RunReport] = field(default_factory=list)
    lens_reading: LensReading | None = None  # how this lens reads the final answer (set on each lens view)
    answer: AnswerView | None = None  # the answer after the prompt, token by token (the answer strip)

    @property
    def final_is_tracked(self) -> bool:
        """The final top-1 is one of the tracked tokens: the layer table's tracked columns already give its rank."""
        final_id = self.summary.final.token_id
        return final_id is not None and any(t.token.token_id == final_id for t in self.tracked)

    @property
    def unreliable_bands(self) -> list[tuple[int, int]]:
        """Runs of consecutive captured layers where the lens is unreliable: (first, last) pairs."""
        bad = set(self.unreliable_layers)
        bands: list[tuple[int, int]] = []
        previous = None
        for layer in self.captured_layers:
            if layer in bad:
                if previous in bad:
                    bands[-1] = (bands[-1][0], layer)
                else:
                    bands.append((layer, layer))
            previous = layer
        return bands


@dataclass(frozen=True)
class ReportModel:
    """A whole report: one run for ``analyze``; ``compare`` adds a second run and a comparison."""

    title: str
    runs: list[RunReport]
    generator: str
    comparison: ComparisonView | None = None  # set for a comparison of two runs
    # Layer-table rows carry ids (#run0-layer-23) to link to; not on a page of many reports (a suite's
    # cases: thousands of rows, and the case itself is the link, #case-<id>).
    layer_anchors: bool = True
    # The heatmap's colours for the answer strip's cells (empty when no run has an answer: no strip styles).
    answer_palette: list[str] = field(default_factory=list)

    @property
    def lens(self) -> str:
        """The lens the page reads through, capitalized: ``Tuned lens``."""
        return lenses_title(self.runs)


def build_report(
    results: Sequence[AnalysisResult],
    *,
    comparison: ComparisonView | None = None,
    heatmap_cells: int = HEATMAP_MAX_CELLS,
    key_prefix: str = "",
) -> ReportModel:
    """Prepare one or more results for display (``build_comparison_report`` for a comparison).
    ``key_prefix`` goes before every run key (``"c3-"``: ``c3-run0``), for pages that show several reports."""
    if not results:
        raise ValueError("a report needs at least one result")
    runs = [
        build_run(result, key=f"{key_prefix}run{i}", heatmap_cells=heatmap_cells) for i, result in enumerate(results)
    ]
    title = f"{lenses_title(runs)}: " + " vs ".join(r.title for r in runs)
    version = results[0].versions.get("lazarus-report", "")
    generator = clean_text(f"lazarus-report {version}".strip())
    return ReportModel(
        title=title,
        runs=runs,
        generator=generator,
        comparison=comparison,
        layer_anchors=not key_prefix,
        answer_palette=_answer_palette(runs),
    )


def lenses_title(runs: Sequence[RunReport]) -> str:
    """The lens every run was read through, for titles and headings: ``Tuned lens``; ``Tuned lens / logit
    lens`` when the runs differ."""
    names = list(dict.fromkeys(run.lens_name for run in runs)) or ["logit lens"]
    return " / ".join(names).capitalize()


def _answer_palette(runs: Sequence[RunReport]) -> list[str]:
    return answer_palette() if any(run.answer is not None for run in runs) else []


def build_run(result: AnalysisResult, *, key: str = "run0", heatmap_cells: int = HEATMAP_MAX_CELLS) -> RunReport:
    model = result.model
    layers = [p.layer_idx for p in result.layer_predictions]
    final_top_token = result.final_prediction[0]
    summary = _summary(result, final_top_token.token)
    tracked_ids = {t.token_id for t in result.tracked_tokens}
    unreliable = set(result.unreliable_layers)

    evolution_of = dict(enumerate(result.token_evolutions))  # aligned with tracked_tokens
    tracked_views = [_tracked_view(t, evolution_of.get(i)) for i, t in enumerate(result.tracked_tokens)]
    series, series_are_tracked = _series(result)
    emergence_by_layer: dict[int, list[TokenView]] = {}
    for layer, view in _emergence_sources(result, series, tracked_views):
        if layer is not None:
            emergence_by_layer.setdefault(layer, []).append(view)

    rows = [
        LayerRow(
            layer=p.layer_idx,
            top=token_view(p.top_tokens[0].token, p.top_tokens[0].token_id) if p.top_tokens else token_view(""),
            top_prob=finite(p.top_tokens[0].prob) if p.top_tokens else None,
            entropy=finite(p.entropy),
            kl_to_final=finite(p.kl_to_final),
            final_token_rank=p.final_token_rank,
            tracked=[TrackedCell(finite(t.prob), t.rank) for t in p.tracked],
            emerging=emergence_by_layer.get(p.layer_idx, []),
            is_final=i == len(result.layer_predictions) - 1,
            unreliable=p.layer_idx in unreliable,
        )
        for i, p in enumerate(result.layer_predictions)
    ]
    return RunReport(
        key=key,
        title=clean_text(model.model_id),
        model_facts=_model_facts(result),
        family=clean_text(model.family),
        num_layers=model.num_layers,
        precision=clean_text(model.precision),
        device=clean_text(model.device),
        blas=clean_text(model.blas),
        adapter=clean_text(model.adapter) if model.adapter else None,
        prompt=clean_text(result.prompt),
        formatted_prompt=clean_text(result.formatted_prompt),
        chat_template_applied=result.chat_template_applied,
        prompt_tokens=[
            PromptToken(i, token_view(tok, result.token_ids[i] if i < len(result.token_ids) else None))
            for i, tok in enumerate(result.tokens)
        ],
        tracked=tracked_views,
        warnings=[clean_text(w) for w in result.warnings],
        final_top=[
            TopRow(
                rank=i + 1,
                token=token_view(tp.token, tp.token_id),
                prob=finite(tp.prob) or 0.0,
                tracked=tp.token_id in tracked_ids,
            )
            for i, tp in enumerate(result.final_prediction)
        ],
        layer_rows=rows,
        layers_note=_layers_note(layers, model.num_layers),
        captured_layers=layers,
        entropy=[finite(p.entropy) for p in result.layer_predictions],
        kl_to_final=[finite(p.kl_to_final) for p in result.layer_predictions],
        series=series,
        series_are_tracked=series_are_tracked,
        grid=_grid_view(result, heatmap_cells),
        summary=summary,
        settings=_settings(result),
        versions=[InfoRow(clean_text(k), clean_text(v)) for k, v in result.versions.items()],
        timings=[InfoRow(clean_text(k), fmt_seconds(v)) for k, v in result.timings.items()],
        lens_name=lens_name(result.lens_kind),
        unreliable_layers=result.unreliable_layers,
        unreliable_note=unreliable_note(result),
        fidelity_known=result.lens is not None and bool(result.lens.fidelity),
        trust=analysis_trust(result, summary.final_emergence_layer),
        lens_views=_lens_views(result, key, heatmap_cells),
        answer=build_answer_view(result, key),
    )


def _lens_views(result: AnalysisResult, key: str, heatmap_cells: int) -> list[RunReport]:
    """The run through each of its other lenses (their keys: ``run0-lens1``, ...), with how each reads the final
    answer; the answer strip stays with the primary lens (it was read through that one only)."""
    views = []
    for i in range(len(result.lens_views)):
        through = result.through_lens(i)
        assert through is not None
        view = build_run(through, key=f"{key}-lens{i + 1}", heatmap_cells=heatmap_cells)
        views.append(dataclasses.replace(view, lens_reading=lens_reading_of(through)))
    return views


@dataclass(frozen=True)
class LensReading:
    """How one lens reads the model's final answer at the last position (the one line per other lens)."""

    lens_name: str  # "tuned lens"
    final: TokenView  # the model's final top-1
    first_layer: int | None  # the first captured layer where that token is this lens's top-1
    agree: int  # at how many captured layers it is
    captured: int  # of how many


def lens_reading_of(result: AnalysisResult) -> LensReading:
    first, agree, total = lens_reading(result)
    top = result.final_prediction[0]
    return LensReading(lens_name(result.lens_kind), token_view(top.token, top.token_id), first, agree, total)


# --- pieces -------------------------------------------------------------------


def _tracked_view(t: TrackedToken, evo: TokenEvolution | None) -> TrackedView:
    best_rank = best_layer = None
    final_prob = final_rank = None
    emergence = stable = None
    if evo is not None and evo.ranks:
        best_rank = min(evo.ranks)
        best_layer = evo.layers[evo.ranks.index(best_rank)]
        final_prob, final_rank = finite(evo.probs[-1]), evo.ranks[-1]
        emergence, stable = evo.emergence_layer, evo.stable_from_layer
    return TrackedView(
        text=token_view(t.text),
        token=token_view(t.token, t.token_id),
        num_tokens=t.num_tokens,
        warning=clean_text(t.warning) if t.warning else None,
        emergence_layer=emergence,
        stable_from_layer=stable,
        final_prob=final_prob,
        final_rank=final_rank,
        best_rank=best_rank,
        best_rank_layer=best_layer,
        top1_layers=layer_runs(evo.layers, [r == 1 for r in evo.ranks]) if evo is not None else None,
    )


def _series(result: AnalysisResult) -> tuple[list[Series], bool]:
    """Tracked tokens across layers; without tracked tokens, the final top-1 token instead."""
    if result.token_evolutions:
        return [
            Series(
                label=visible_token(e.token),
                layers=list(e.layers),
                probs=[finite(p) for p in e.probs],
                ranks=list(e.ranks),
                emergence_layer=e.emergence_layer,
                tracked=True,
            )
            for e in result.token_evolutions
        ], True
    final_id = result.final_prediction[0].token_id
    layers, probs, ranks = [], [], []
    for p in result.layer_predictions:
        layers.append(p.layer_idx)
        ranks.append(p.final_token_rank)
        probs.append(next((finite(t.prob) for t in p.top_tokens if t.token_id == final_id), None))
    emergence = first_layer_where(layers, [r == 1 for r in ranks])
    label = visible_token(result.final_top_token)
    return [Series(label, layers, probs, ranks, emergence, tracked=False)], False


def _emergence_sources(
    result: AnalysisResult, series: list[Series], tracked_views: list[TrackedView]
) -> list[tuple[int | None, TokenView]]:
    """(layer, token) pairs whose layer row is highlighted as an emergence."""
    if tracked_views:
        return [(t.emergence_layer, t.token) for t in tracked_views]
    top = result.final_prediction[0]
    return [(series[0].emergence_layer, token_view(top.token, top.token_id))]


def _layers_note(layers: list[int], num_layers: int) -> str:
    if layers == list(range(num_layers)):
        return f"all {num_layers} layers"
    shown = ", ".join(str(x) for x in layers)
    return f"{len(layers)} of {num_layers} layers: {shown}"


def _grid_view(result: AnalysisResult, max_cells: int) -> GridView | None:
    grid = result.grid
    if grid is None or not grid.layers or not grid.positions:
        return None
    keep = list(range(len(grid.positions)))[-heatmap_positions(len(grid.layers), max_cells) :]
    positions = [grid.positions[j] for j in keep]
    labels = []
    for pos in positions:
        tok = visible_token(result.tokens[pos]) if 0 <= pos < len(result.tokens) else "?"
        labels.append(f"{pos} {tok}")
    cells = [
        GridCell(
            layer=layer,
            position=grid.positions[j],
            token=visible_token(grid.top_tokens[i][j]),
            prob=finite(grid.top_probs[i][j]),
            entropy=finite(grid.entropy[i][j]),
            kl_to_final=finite(grid.kl_to_final[i][j]),
            answer_prob=finite(grid.answer_probs[i][j]) if grid.answer_probs is not None else None,
        )
        for i, layer in enumerate(grid.layers)
        for j in keep
    ]
    bad = set(result.unreliable_layers)
    # The next prompt token, starred where the last layer's top-1 is that token (only when the grid holds
    # the model's last layer: an earlier layer's top-1 is not the model's prediction).
    last_is_final = grid.layers[-1] == result.model.num_layers - 1
    next_tokens, next_predicted = [], []
    for j in keep:
        nxt = grid.positions[j] + 1
        known = nxt < len(result.tokens)
        next_tokens.append(visible_token(result.tokens[nxt]) if known else "")
        next_predicted.append(
            known
            and last_is_final
            and nxt < len(result.token_ids)
            and grid.top_token_ids[-1][j] == result.token_ids[nxt]
        )
    return GridView(
        list(grid.layers),
        positions,
        labels,
        cells,
        total_positions=max(len(grid.positions), len(result.tokens)),  # a grid may hold only the last positions
        unreliable_layers=[layer for layer in grid.layers if layer in bad],
        next_tokens=next_tokens,
        next_predicted=next_predicted,
        answers=[visible_token(grid.top_tokens[-1][j]) for j in keep] if last_is_final else [],
        has_answer_probs=grid.answer_probs is not None and last_is_final,
    )


def _summary(result: AnalysisResult, final_token: str) -> Summary:
    preds = result.layer_predictions
    final = result.final_prediction
    layers = [p.layer_idx for p in preds]
    top1 = [p.final_token_rank == 1 for p in preds]
    emergence = first_layer_where(layers, top1)
    stable = true_from_layer(layers, top1)
    kl_layer = next((p.layer_idx for p in preds if finite(p.kl_to_final) is not None and p.kl_to_final < 1.0), None)
    # The final top-1's probability per layer is known where it made the layer's top-k.
    final_id = final[0].token_id
    known = [
        (p.layer_idx, prob)
        for p in preds
        for prob in [next((finite(t.prob) for t in p.top_tokens if t.token_id == final_id), None)]
        if prob is not None
    ]
    gain = None
    for (l0, p0), (l1, p1) in itertools.pairwise(known):
        if p1 > p0 and (gain is None or p1 - p0 > gain.to_prob - gain.from_prob):
            gain = Jump(l0, l1, p0, p1)
    return Summary(
        final=token_view(final[0].token, final[0].token_id),
        final_prob=finite(final[0].prob) or 0.0,
        runner_up=token_view(final[1].token, final[1].token_id) if len(final) > 1 else None,
        runner_up_prob=finite(final[1].prob) if len(final) > 1 else None,
        final_emergence_layer=emergence,
        final_stable_from_layer=stable,
        entropy_first=finite(preds[0].entropy),
        entropy_last=finite(preds[-1].entropy),
        kl_below_one_layer=kl_layer,
        biggest_gain=gain,
    )


def _model_facts(result: AnalysisResult) -> list[InfoRow]:
    m = result.model
    rows = [
        ("Model", m.model_id),
        ("Family", m.family),
        ("Layers", str(m.num_layers)),
        ("Hidden size", str(m.hidden_size)),
        ("Vocabulary", f"{m.vocab_size:,}"),
        ("Precision", m.precision),
        ("Device", m.device),
        ("BLAS", m.blas),
        ("Tied embeddings", "yes" if m.tied_embeddings else "no"),
        ("Source", m.source + (f" ({m.path})" if m.path else "")),
    ]
    if m.embedding_scale is not None:
        rows.append(("Embedding scale", f"{m.embedding_scale:g}"))
    if m.final_logit_softcap is not None:
        rows.append(("Final logit softcap", f"{m.final_logit_softcap:g}"))
    if m.adapter:
        rows.append(("LoRA adapter", m.adapter))
    return [InfoRow(label, clean_text(value)) for label, value in rows]


def _settings(result: AnalysisResult) -> list[InfoRow]:
    c = result.config
    rows = [
        ("Layer strategy", c.layer_strategy + (f" (step {c.layer_step})" if c.layer_step != 1 else "")),
        ("Custom layers", ", ".join(str(x) for x in c.custom_layers) if c.custom_layers else "none"),
        ("Top-k", str(c.top_k)),
        ("Tracked tokens", ", ".join(token_repr(t) for t in c.track_tokens) if c.track_tokens else "none"),
        ("Chat template", "applied" if result.chat_template_applied else "not applied (raw prompt)"),
        ("Embedding scale override", "auto" if c.embedding_scale is None else f"{c.embedding_scale:g}"),
        ("Position grid", "computed" if c.compute_grid else "not computed"),
        *lens_facts(result.lens),
        ("Schema version", str(result.schema_version)),
    ]
    return [InfoRow(label, clean_text(value)) for label, value in rows]


# --- comparison -----------------------------------------------------------------


@dataclass(frozen=True)
class PairRow:
    """One matched pair of layers in the per-layer comparison table (last prompt position)."""

    layer1: int
    layer2: int
    label: str  # "12" (same layer in both) or "6 / 12" (model 1 layer / model 2 layer)
    place: str  # for sentences: "layer 12" or "M1 layer 6 / M2 layer 12"
    x: float  # where the pair sits on the charts' x axis (layer, or relative depth)
    relative_depth: float
    tops: list[TokenView]  # top-1 of each model
    top_probs: list[float | None]
    agree: bool
    kl_12: float | None
    kl_21: float | None
    js: float | None
    marks: list[str]  # "first disagreement", "agree from here", "largest JS"
    unreliable: bool = False  # the lens is unreliable at this layer (either model's), from held-out fidelity

    @property
    def anchor(self) -> str:
        """The row's id in the page, for links: "layer-12", or "layer-6-12" (M1 layer / M2 layer)."""
        return f"layer-{self.layer2}" if self.label == str(self.layer2) else f"layer-{self.layer1}-{self.layer2}"


@dataclass(frozen=True)
class PairRun:
    """Consecutive rows of the per-layer comparison, one row of a compact table: several only when the two
    models' distributions are identical at each of them (JS and KL exactly 0, the same top-1)."""

    rows: list[PairRow]

    @property
    def first(self) -> PairRow:
        return self.rows[0]

    @property
    def folded(self) -> bool:
        return len(self.rows) > 1

    @property
    def unreliable(self) -> bool:
        return all(row.unreliable for row in self.rows)

    @property
    def label(self) -> str:
        return self.rows[0].label if len(self.rows) == 1 else f"{self.rows[0].label}-{self.rows[-1].label}"


def fold_identical(rows: Sequence[PairRow]) -> list[PairRun]:
    """``rows`` with runs of identical layers (both models' distributions exactly equal) folded into one."""

    def same(row: PairRow) -> bool:
        return row.agree and row.js == 0 and not row.kl_12 and not row.kl_21 and not row.marks and "/" not in row.label

    out: list[PairRun] = []
    for row in rows:
        if out and same(row) and same(out[-1].rows[-1]) and row.unreliable == out[-1].rows[-1].unreliable:
            out[-1].rows.append(row)
        else:
            out.append(PairRun([row]))
    return out


@dataclass(frozen=True)
class TrackedPair:
    """A tracked string in both models."""

    text: TokenView  # what the user passed
    tokens: list[TokenView]  # the tracked (first) token in each model
    single_token: list[bool]
    emergence_layers: list[int | None]
    stable_from_layers: list[int | None]
    final_probs: list[float | None]
    final_ranks: list[int]
    top1_layers: list[str | None] = field(default_factory=lambda: [None, None])  # per model, as TrackedView's

    def top1_phrase(self, m: int) -> str:
        return top1_phrase(self.emergence_layers[m], self.top1_layers[m], self.final_ranks[m])


@dataclass(frozen=True)
class ComparisonView:
    """What differs between the two runs of a comparison (``ReportModel.runs`` holds the runs)."""

    labels: list[str]  # how the report names each model
    tags: list[str]  # short names for table headers: ["M1", "M2"]
    same_model: bool
    same_tokenizer: bool
    same_tokens: bool
    same_formatted_prompt: bool
    alignment: str  # "layer" | "relative_depth"
    x_title: str  # the charts' x axis: "Layer" or "Relative depth ..."
    x_values: list[list[float]]  # per run, aligned with run.captured_layers
    notes: list[str]
    rows: list[PairRow]
    has_divergences: bool
    divergence_note: str | None  # why KL/JS are missing, when they are
    first_disagreement: PairRow | None
    agreement_from: PairRow | None
    largest_change: PairRow | None
    disagreeing_pairs: int
    final_agree: bool
    tracked: list[TrackedPair]
    load_seconds: list[str]
    heatmap_cuts: list[str]  # runs whose heatmap shows only the last positions: "M1: 8 of 35 positions"
    change: ChangeView | None = None  # where the fine-tune acts: sentence, change map, shifts, attribution
    answer: AnswerComparisonView | None = None  # both models' answers, aligned token by token or side by side
    trust: list[str] = field(default_factory=list)  # the lens and which layers to trust (lens_view.trust_sentences)
    lens_how: str = ""  # what the lens does, one phrase

    @property
    def has_unreliable(self) -> bool:
        return any(row.unreliable for row in self.rows)

    @property
    def compact_rows(self) -> list[PairRun]:
        """The per-layer rows with identical layers folded (Markdown, terminal)."""
        return fold_identical(self.rows)


COMPARE_TAGS = ["M1", "M2"]
TUNED_TAGS = ["base", "tuned"]


def comparison_tags(comparison: ComparisonResult) -> list[str]:
    """The two sides' short names: "base" and "tuned" when model 2 is model 1 with an adapter, else M1 and M2."""
    m1, m2 = comparison.results[0].model, comparison.results[1].model
    return TUNED_TAGS if m1.path == m2.path and m1.adapter is None and m2.adapter is not None else COMPARE_TAGS


def build_comparison_report(
    comparison: ComparisonResult, *, key_prefix: str = "", tags: Sequence[str] | None = None
) -> ReportModel:
    """Prepare a comparison for display: both runs, and what differs between them. ``key_prefix`` as
    for ``build_report``; ``tags`` are the short names of the two sides (default ``comparison_tags``)."""
    tags = comparison_tags(comparison) if tags is None else tags
    results = comparison.results
    if len(results) != 2:
        raise ValueError("a comparison holds exactly two results")
    runs = [
        build_run(r, key=f"{key_prefix}run{i}", heatmap_cells=COMPARE_HEATMAP_MAX_CELLS) for i, r in enumerate(results)
    ]
    labels = [clean_text(label) for label in comparison.labels]
    title = f"{lenses_title(runs)}: " + " vs ".join(labels)
    version = results[0].versions.get("lazarus-report", "")
    generator = clean_text(f"lazarus-report {version}".strip())
    view = _comparison_view(comparison, labels, runs, [clean_text(t) for t in tags])
    return ReportModel(
        title=title,
        runs=runs,
        generator=generator,
        comparison=view,
        layer_anchors=not key_prefix,
        answer_palette=_answer_palette(runs),
    )


def _comparison_view(c: ComparisonResult, labels: list[str], runs: list[RunReport], tags: list[str]) -> ComparisonView:
    r1, r2 = c.results
    n1, n2 = r1.model.num_layers, r2.model.num_layers
    by_depth = c.alignment != "layer"
    if by_depth:
        x_title = f"Relative depth, (layer + 1) / layers ({n1} and {n2} layers)"
        x_values = [[_depth(layer, r.model.num_layers) for layer in r.captured_layers] for r in (r1, r2)]
    else:
        x_title = "Layer"
        x_values = [[float(layer) for layer in r.captured_layers] for r in (r1, r2)]
    divs = c.divergences
    bad1, bad2 = unreliable_pairs(c.results)
    has_divergences = bool(divs) and all(finite(d.js) is not None for d in divs)
    largest = c.largest_change_layer if has_divergences else None
    rows = []
    for d in divs:
        marks = []
        if c.first_disagreement_layer is not None and d.layer2 == c.first_disagreement_layer and not d.top1_agree:
            marks.append("first disagreement")
        # "Agree from here" only after a disagreement (otherwise it is the first layer, and says nothing).
        if c.first_disagreement_layer is not None and d.layer2 == c.agreement_from_layer:
            marks.append("agree from here")
        if largest is not None and d.layer2 == largest:
            marks.append("largest JS")
        row = _pair_row(d, by_depth, marks, tags)
        rows.append(dataclasses.replace(row, unreliable=d.layer1 in bad1 or d.layer2 in bad2))
    first = next((r for r in rows if "first disagreement" in r.marks), None)
    agree_from = next((r for r in rows if "agree from here" in r.marks), None)
    largest_row = next((r for r in rows if "largest JS" in r.marks), None)
    divergence_note = None
    if not has_divergences:
        divergence_note = "KL and Jensen-Shannon divergences are left out: " + (
            "the models use different tokenizers, so their distributions are over different vocabularies."
            if not c.same_tokenizer
            else "this comparison holds none."
        )
    final_agree = divs[-1].top1_agree if divs else r1.final_top_token == r2.final_top_token
    return ComparisonView(
        labels=labels,
        tags=tags,
        same_model=c.same_model,
        same_tokenizer=c.same_tokenizer,
        same_tokens=c.same_tokens,
        same_formatted_prompt=r1.formatted_prompt == r2.formatted_prompt,
        alignment=c.alignment,
        x_title=x_title,
        x_values=x_values,
        notes=[clean_text(n) for n in c.notes],
        rows=rows,
        has_divergences=has_divergences,
        divergence_note=divergence_note,
        first_disagreement=first,
        agreement_from=agree_from,
        largest_change=largest_row,
        disagreeing_pairs=sum(1 for d in divs if not d.top1_agree),
        final_agree=final_agree,
        tracked=[
            TrackedPair(
                text=token_view(t.text),
                tokens=[token_view(tok) for tok in t.tokens],
                single_token=list(t.single_token),
                emergence_layers=list(t.emergence_layers),
                stable_from_layers=list(t.stable_from_layers),
                final_probs=[finite(p) for p in t.final_probs],
                final_ranks=list(t.final_ranks),
                top1_layers=[run.tracked[i].top1_layers if i < len(run.tracked) else None for run in runs],
            )
            for i, t in enumerate(c.tracked)
        ],
        load_seconds=[fmt_seconds(s) for s in c.load_seconds],
        heatmap_cuts=[
            f"{tag}: {len(run.grid.positions)} of {run.grid.total_positions} positions"
            for tag, run in zip(tags, runs)
            if run.grid is not None and run.grid.truncated
        ],
        change=build_change_view(c, tags),
        answer=build_answer_comparison(c, [run.answer for run in runs], tags),
        trust=[clean_text(t) for t in trust_sentences(c.results, tags)],
        lens_how=HOW.get(r2.lens_kind, lens_name(r2.lens_kind)),
    )


def _depth(layer: int, num_layers: int) -> float:
    return (layer + 1) / max(1, num_layers)


def _pair_row(d: LayerDivergence, by_depth: bool, marks: list[str], tags: list[str]) -> PairRow:
    paired = by_depth or d.layer1 != d.layer2
    return PairRow(
        layer1=d.layer1,
        layer2=d.layer2,
        label=f"{d.layer1} / {d.layer2}" if paired else str(d.layer2),
        place=f"{tags[0]} layer {d.layer1} / {tags[1]} layer {d.layer2}" if paired else f"layer {d.layer2}",
        x=d.relative_depth if by_depth else float(d.layer2),
        relative_depth=d.relative_depth,
        tops=[token_view(d.top1_token1), token_view(d.top1_token2)],
        top_probs=[finite(d.top1_prob1), finite(d.top1_prob2)],
        agree=d.top1_agree,
        kl_12=finite(d.kl_12),
        kl_21=finite(d.kl_21),
        js=finite(d.js),
        marks=marks,
    )
