"""The report model: an ``AnalysisResult`` prepared for display, as plain data.

This is the only place that decides *what* a report says (which rows, which facts, which layer is
highlighted). Templates decide how it looks, ``charts`` how it is plotted; neither computes anything.
No MLX, no numpy.

A report holds a list of runs: one for ``analyze``, two for ``compare``. Everything shown per model
lives in ``RunReport``; the comparison between runs plugs into ``ReportModel.comparison`` and gets its
own section slot in the page (``templates/html/sections/comparison.html.j2``).

Every string in the model has been through ``clean_text`` or ``token_view``: it encodes as UTF-8 and
cannot reorder the text around it. Escaping for HTML or Markdown happens at output time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from lazarus_report.render.formatting import (
    Segment,
    clean_text,
    finite,
    fmt_seconds,
    token_repr,
    token_segments,
    visible_token,
)
from lazarus_report.result import AnalysisResult, TokenEvolution, TrackedToken

# The heatmap shows the last prompt positions (where the prediction is), as many as fit a budget of
# cells so the page size does not grow with the prompt: 12 positions for 30 layers, 20 for 16 or fewer.
HEATMAP_MAX_CELLS = 384
HEATMAP_MIN_POSITIONS = 8
HEATMAP_MAX_POSITIONS = 20


def heatmap_positions(num_layers: int) -> int:
    """How many (last) prompt positions the heatmap shows for ``num_layers`` captured layers."""
    return max(HEATMAP_MIN_POSITIONS, min(HEATMAP_MAX_POSITIONS, HEATMAP_MAX_CELLS // max(1, num_layers)))


@dataclass(frozen=True)
class TokenView:
    """A token ready to show: visible whitespace markers, exact spelling for tooltips."""

    visible: str  # one printable line, e.g. "␣Paris"
    segments: list[Segment]
    exact: str  # ASCII-safe exact spelling, e.g. "' Paris'"
    token_id: int | None = None


def token_view(token: str, token_id: int | None = None) -> TokenView:
    return TokenView(visible_token(token), token_segments(token), token_repr(token), token_id)


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


@dataclass(frozen=True)
class GridView:
    """The layers x positions heatmap data (possibly only the last positions)."""

    layers: list[int]
    positions: list[int]
    position_labels: list[str]  # "28 ␣is": position and the prompt token there
    cells: list[GridCell]
    total_positions: int

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


@dataclass(frozen=True)
class ReportModel:
    """A whole report: one run for ``analyze``; ``compare`` adds a second run and a comparison."""

    title: str
    runs: list[RunReport]
    generator: str
    comparison: Any | None = None  # filled by the compare command's report model (section slot)


def build_report(results: Sequence[AnalysisResult], *, comparison: Any | None = None) -> ReportModel:
    """Prepare one or more results for display."""
    if not results:
        raise ValueError("a report needs at least one result")
    runs = [build_run(result, key=f"run{i}") for i, result in enumerate(results)]
    if len(runs) == 1:
        title = f"Logit lens: {runs[0].title}"
    else:
        title = "Logit lens: " + " vs ".join(r.title for r in runs)
    version = results[0].versions.get("lazarus-report", "")
    generator = clean_text(f"lazarus-report {version}".strip())
    return ReportModel(title=title, runs=runs, generator=generator, comparison=comparison)


def build_run(result: AnalysisResult, *, key: str = "run0") -> RunReport:
    model = result.model
    layers = [p.layer_idx for p in result.layer_predictions]
    final_top_token = result.final_prediction[0]
    tracked_ids = {t.token_id for t in result.tracked_tokens}

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
            TopRow(rank=i + 1, token=token_view(tp.token, tp.token_id), prob=finite(tp.prob) or 0.0,
                   tracked=tp.token_id in tracked_ids)
            for i, tp in enumerate(result.final_prediction)
        ],
        layer_rows=rows,
        layers_note=_layers_note(layers, model.num_layers),
        captured_layers=layers,
        entropy=[finite(p.entropy) for p in result.layer_predictions],
        kl_to_final=[finite(p.kl_to_final) for p in result.layer_predictions],
        series=series,
        series_are_tracked=series_are_tracked,
        grid=_grid_view(result),
        summary=_summary(result, final_top_token.token),
        settings=_settings(result),
        versions=[InfoRow(clean_text(k), clean_text(v)) for k, v in result.versions.items()],
        timings=[InfoRow(clean_text(k), fmt_seconds(v)) for k, v in result.timings.items()],
    )


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
    emergence = next((layer for layer, r in zip(layers, ranks) if r == 1), None)
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


def _grid_view(result: AnalysisResult) -> GridView | None:
    grid = result.grid
    if grid is None or not grid.layers or not grid.positions:
        return None
    keep = list(range(len(grid.positions)))[-heatmap_positions(len(grid.layers)):]
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
        )
        for i, layer in enumerate(grid.layers)
        for j in keep
    ]
    return GridView(list(grid.layers), positions, labels, cells, total_positions=len(grid.positions))


def _summary(result: AnalysisResult, final_token: str) -> Summary:
    preds = result.layer_predictions
    final = result.final_prediction
    layers = [p.layer_idx for p in preds]
    ranks = [p.final_token_rank for p in preds]
    emergence = next((layer for layer, r in zip(layers, ranks) if r == 1), None)
    stable = None
    for layer, r in zip(reversed(layers), reversed(ranks)):
        if r != 1:
            break
        stable = layer
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
    for (l0, p0), (l1, p1) in zip(known, known[1:]):
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
        ("Schema version", str(result.schema_version)),
    ]
    return [InfoRow(label, clean_text(value)) for label, value in rows]

