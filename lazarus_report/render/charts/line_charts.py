"""The line charts of analysis and comparison pages without their Vega-Lite specs: id, title, description and
the hand-drawn static SVG (``line_plot_svg``) of each. ``run_specs`` / ``compare_specs`` add the spec for the
interactive page (``PendingChart.with_spec``); a ``--static`` page uses these alone, so no Altair is imported.

Every SVG shows what the live chart's default view shows: its legends (and the comparison's key to the model
tags), axis titles and ticks, the grey bands over layers where the lens is unreliable, the emergence marks."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lazarus_report.render.charts.background import PendingChart
from lazarus_report.render.charts.line_plot_svg import (
    NARROW,
    LinearPanel,
    LinearPlot,
    Plot,
    PlotAxis,
    PlotLine,
    PlotSeries,
    layer_axis,
    linear_svg,
    plot_svg,
    relative_axis,
)
from lazarus_report.render.charts.style import (
    DASHES,
    MAX_LAYERS_WITH_POINTS,
    MODEL_OPACITY,
    MODEL_STROKES,
    PALETTE,
)
from lazarus_report.render.charts.svg_sanitize import checked_svg, renumber_ids
from lazarus_report.render.report_model import ComparisonView, RunReport

ENTROPY_KL_HEIGHT = 150

JS_HEIGHT = 110  # the divergence chart's JS panel (its note sits at the bottom)

KL_HEIGHT = 160  # the divergence chart's KL panel


def _static(chart_id: str, title: str, description: str, plot: Plot | LinearPlot) -> PendingChart:
    """The chart drawn at the page's width, and (on request) for a phone."""
    draw = plot_svg if isinstance(plot, Plot) else linear_svg

    def narrow() -> str:
        return renumber_ids(checked_svg(draw(plot, NARROW)), f"{chart_id}-narrow")  # type: ignore[arg-type]

    svg = renumber_ids(checked_svg(draw(plot)), chart_id)  # type: ignore[arg-type]
    return PendingChart(chart_id, title, description, None, svg, narrow=narrow)


def unique_labels(labels: list[str]) -> list[str]:
    """``labels`` made distinct for a legend: a repeated label gets " (2)", " (3)"... after its first use."""
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return out


@dataclass(frozen=True)
class TrustBand:
    """A grey band over layers where the lens is unreliable: its x range (half a layer out on both sides) and
    the tooltip saying whose lens it is."""

    x0: float
    x1: float
    note: str


def trust_bands(runs: Sequence[RunReport], xs: Sequence[Sequence[float]], tags: Sequence[str] = ()) -> list[TrustBand]:
    """The grey bands of a chart over ``runs`` (``xs``: each run's x per captured layer; ``tags``: the models'
    names, for a chart of several): each run of unreliable layers, half a layer out on both sides; where the
    runs' bands differ, the union, cut where the set of models it covers changes (one band per piece, so the
    static and live charts shade alike and each tooltip names its models). The analysis charts, the comparison
    charts and their static SVGs all take their bands from here."""
    spans: list[tuple[float, float, int]] = []  # (from, to, run index)
    for m, (run, x) in enumerate(zip(runs, xs)):
        if not run.unreliable_layers:
            continue
        x_of = dict(zip(run.captured_layers, x))
        half = 0.5 * _x_per_layer(run.captured_layers, list(x))
        spans += [(x_of[a] - half, x_of[b] + half, m) for a, b in run.unreliable_bands]
    cuts = sorted({v for a, b, _ in spans for v in (a, b)})
    pieces: list[tuple[float, float, tuple[int, ...]]] = []
    for a, b in itertools.pairwise(cuts):
        who = tuple(sorted({m for lo, hi, m in spans if lo <= a and b <= hi}))
        if not who:
            continue
        if pieces and pieces[-1][1] == a and pieces[-1][2] == who:
            pieces[-1] = (pieces[-1][0], b, who)
        else:
            pieces.append((a, b, who))
    return [TrustBand(round(a, 6), round(b, 6), _band_note(runs, tags, who)) for a, b, who in pieces]


def _x_per_layer(layers: list[int], xs: list[float]) -> float:
    """How far the x axis moves per layer (1 by layer; 1 / layers by relative depth, (layer + 1) / layers)."""
    if len(layers) > 1 and layers[-1] != layers[0]:
        return (xs[-1] - xs[0]) / (layers[-1] - layers[0])
    return 1.0 if not xs or xs[0] == layers[0] else xs[0] / (layers[0] + 1)


def _band_note(runs: Sequence[RunReport], tags: Sequence[str], who: tuple[int, ...]) -> str:
    lens = " / ".join(dict.fromkeys(runs[m].lens_name for m in who))
    if len(runs) < 2 or not tags:
        whose = ""
    elif len(who) == len(runs):
        whose = " for both models"
    else:
        whose = " for " + " and ".join(tags[m] for m in who)
    return f"{lens} unreliable here{whose} (held-out KL to final above its threshold)"


def unreliable_ranges(run: RunReport) -> list[tuple[float, float]]:
    """The grey bands' x ranges of one run's charts (``trust_bands``)."""
    return [(b.x0, b.x1) for b in run_trust_bands(run)]


def run_trust_bands(run: RunReport) -> list[TrustBand]:
    """One run's grey bands, by layer."""
    return trust_bands([run], [[float(layer) for layer in run.captured_layers]])


def comparison_trust_bands(runs: Sequence[RunReport], comparison: ComparisonView) -> list[TrustBand]:
    """A comparison chart's grey bands: both models' unreliable layers, on its x axis (layer or relative depth)."""
    return trust_bands(runs, comparison.x_values, comparison.tags)


def trust_caption(runs: Sequence[RunReport], comparison: ComparisonView) -> str:
    """The sentence under a comparison chart about its grey bands: whose lens is unreliable where (from held-out
    fidelity), and which model's lens has no fidelity data (its layers cannot be marked)."""
    out = []
    bad = [tag for tag, run in zip(comparison.tags, runs) if run.unreliable_layers]
    if bad:
        lens = " / ".join(dict.fromkeys(run.lens_name for run in runs))
        whose = "both models" if len(bad) == len(runs) else " and ".join(bad)
        out.append(f" Grey bands: layers where the {lens} is unreliable for {whose} (held-out fidelity).")
    unknown = [tag for tag, run in zip(comparison.tags, runs) if not run.fidelity_known]
    if unknown:
        who = " and ".join(unknown)
        out.append(
            f" No fidelity data for {who}'s lens: {'their' if len(unknown) > 1 else 'its'} layers are not marked."
        )
    return "".join(out)


def trajectory_chart(run: RunReport, *, chart_id: str | None = None) -> PendingChart:
    """The tracked tokens' probability (log axis) and rank across layers."""
    labels = unique_labels([s.label for s in run.series])
    lines = [
        PlotLine(
            list(zip(s.layers, s.probs, s.ranks)),
            PALETTE[i % len(PALETTE)],
            emergence=s.emergence_layer,
            note=f"{label} top-1 at L{s.emergence_layer}",
        )
        for i, (label, s) in enumerate(zip(labels, run.series))
    ]
    who = "Tracked tokens" if run.series_are_tracked else "The final top-1 token"
    description = (
        f"{who} at the last prompt position: probability (top; log axis, linear one click away) and rank "
        "on a log axis (bottom) at each captured layer; dashed lines mark the layer where a token first becomes top-1."
    )
    if not run.series_are_tracked:
        description += " Its probability is shown where it is in a layer's top-k."
    ranks = [r for series in run.series for r in series.ranks]
    plot = Plot(
        lines,
        layer_axis(run.captured_layers),
        "Layer",
        max([1, *ranks]),
        [("Token", list(zip(labels, lines)))],
        bands=unreliable_ranges(run),
        points=len(run.captured_layers) <= MAX_LAYERS_WITH_POINTS,
    )
    return _static(chart_id or f"{run.key}-trajectory", "Token probability and rank across layers", description, plot)


def entropy_kl_chart(run: RunReport) -> PendingChart:
    """Entropy and KL to final on separate panels (KL reaches 30 nats where entropy stays under 5)."""
    layers = run.captured_layers
    description = (
        "Entropy of each layer's lens distribution (top) and its KL divergence from the final distribution, "
        "KL(final || layer) (bottom), in nats, at the last prompt position."
    )
    if run.unreliable_layers:
        description += " Grey bands: layers where the lens is unreliable."
    panels = [
        LinearPanel(title, ENTROPY_KL_HEIGHT, [PlotSeries(list(zip(layers, values)), color)])
        for title, values, color in (
            ("Entropy (nats)", run.entropy, PALETTE[0]),
            ("KL to final (nats)", run.kl_to_final, PALETTE[1]),
        )
    ]
    plot = LinearPlot(
        panels,
        layer_axis(layers),
        "Layer",
        [],
        bands=unreliable_ranges(run),
        points=len(layers) <= MAX_LAYERS_WITH_POINTS,
    )
    return _static(f"{run.key}-entropy-kl", "Entropy and KL to final across layers", description, plot)


def model_key_lines(comparison: ComparisonView) -> list[str]:
    """The key to the short model tags: one line per model with its full name (never truncated)."""
    return [f"{tag}: {label}" for tag, label in zip(comparison.tags, comparison.labels)]


def compare_axis(comparison: ComparisonView) -> PlotAxis:
    """The comparison charts' x axis: layers, or relative depth (0 to 1) for models of different depths."""
    if comparison.alignment != "layer":
        return relative_axis()
    return layer_axis([round(x) for values in comparison.x_values for x in values])


def _model_legend(comparison: ComparisonView, *, markers: bool) -> tuple[str, list[tuple[str, PlotLine]]]:
    entries = [
        (
            tag,
            PlotLine(
                [],
                PALETTE[m],
                width=MODEL_STROKES[m],
                opacity=MODEL_OPACITY[m],
                marker=("circle", "diamond")[m] if markers else "rule",
            ),
        )
        for m, tag in enumerate(comparison.tags)
    ]
    return "Model", entries


def compare_trajectory_chart(
    runs: list[RunReport], comparison: ComparisonView, *, chart_id: str = "comparison-trajectory"
) -> PendingChart:
    """Both models' tracked tokens across layers: colour is the model, line style the token."""
    tracked = bool(comparison.tracked) and all(run.series_are_tracked for run in runs)
    series_names: list[str] = []
    lines: list[PlotLine] = []
    max_rank = 1
    for m, (run, xs) in enumerate(zip(runs, comparison.x_values)):
        x_of = dict(zip(run.captured_layers, xs))
        names = [t.text.visible for t in comparison.tracked] if tracked else [s.label for s in run.series]
        for name, s in zip(unique_labels(names), run.series):
            if name not in series_names:
                series_names.append(name)
            emergence = x_of.get(s.emergence_layer) if s.emergence_layer is not None else None
            max_rank = max([max_rank, *s.ranks])
            lines.append(
                PlotLine(
                    [(x_of[layer], p, r) for layer, p, r in zip(s.layers, s.probs, s.ranks)],
                    PALETTE[m],
                    DASHES[series_names.index(name) % len(DASHES)],
                    MODEL_STROKES[m],
                    MODEL_OPACITY[m],
                    emergence,
                    marker=("circle", "diamond")[m],
                )
            )
    who = "Each tracked token" if tracked else "Each model's final top-1 token"
    description = (
        f"{who} in both models (colour: model; line style: token) at the last prompt position: probability "
        "(top; log axis, linear one click away) and rank on a log axis (bottom); a filled marker is where the "
        "token first becomes top-1."
    )
    if not tracked:
        description += " Its probability is shown where it is in a layer's top-k."
    if comparison.alignment != "layer":
        description += " The models have different depths: the x axis is relative depth."
    description += trust_caption(runs, comparison)
    dashes = [(name, PlotLine([], "#888888", DASHES[i % len(DASHES)])) for i, name in enumerate(series_names)]
    legends = [_model_legend(comparison, markers=True), ("Tracked" if tracked else "Final top-1", dashes)]
    plot = Plot(
        lines,
        compare_axis(comparison),
        comparison.x_title,
        max_rank,
        legends,
        key=model_key_lines(comparison),
        bands=[(b.x0, b.x1) for b in comparison_trust_bands(runs, comparison)],
    )
    return _static(chart_id, "Token probability and rank, both models", description, plot)


def compare_entropy_kl_chart(runs: list[RunReport], comparison: ComparisonView) -> PendingChart:
    """Both models' entropy and KL to final, one panel each, colour the model."""
    description = (
        "Entropy of each layer's lens distribution (top) and its KL divergence from the same model's final "
        "distribution, KL(final || layer) (bottom), in nats, at the last prompt position; colour is the model."
    ) + trust_caption(runs, comparison)
    panels = []
    for title, field in (("Entropy (nats)", "entropy"), ("KL to final (nats)", "kl_to_final")):
        series = [
            PlotSeries(list(zip(xs, getattr(run, field))), PALETTE[m], width=MODEL_STROKES[m], opacity=MODEL_OPACITY[m])
            for m, (run, xs) in enumerate(zip(runs, comparison.x_values))
        ]
        panels.append(LinearPanel(title, ENTROPY_KL_HEIGHT, series))
    plot = LinearPlot(
        panels,
        compare_axis(comparison),
        comparison.x_title,
        [_model_legend(comparison, markers=False)],
        key=model_key_lines(comparison),
        bands=[(b.x0, b.x1) for b in comparison_trust_bands(runs, comparison)],
    )
    return _static("comparison-entropy-kl", "Entropy and KL to final, both models", description, plot)


def divergence_chart(comparison: ComparisonView, runs: Sequence[RunReport] = ()) -> PendingChart:
    """JS divergence (its own panel: bounded by ln 2) over KL both ways, per matched layer (``runs``: the two
    models' reports, for the grey bands over layers where either lens is unreliable)."""
    m1, m2 = comparison.tags
    kls = [f"KL({m1} || {m2})", f"KL({m2} || {m1})"]
    largest = comparison.largest_change
    description = (
        f"How far apart the two models' next-token distributions are at each matched layer (last prompt "
        f"position), in nats: Jensen-Shannon divergence (top; symmetric, at most ln 2 = 0.69) and KL both ways "
        f"(bottom; KL({m1} || {m2}) weighs by what {m1} believes)."
    )
    if largest is not None:
        description += f" The dashed line marks the largest JS divergence (layer {largest.label})."
    if runs:
        description += trust_caption(runs, comparison)

    def x(row: Any) -> float:
        return row.layer2 if comparison.alignment == "layer" else row.x

    rules = [(x(largest), "#888888")] if largest is not None else []
    note = (x(largest), f"largest JS: layer {largest.label}") if largest is not None else None
    js = LinearPanel(
        "JS (nats)",
        JS_HEIGHT,
        [PlotSeries([(x(r), r.js) for r in comparison.rows], "#1a1a1a")],
        domain=(0.0, 0.7),
        rules=rules,
        note=note,
    )
    styles = [(PALETTE[0], [1.0, 0.0]), (PALETTE[1], [6.0, 3.0])]
    kl = LinearPanel(
        "KL (nats)",
        KL_HEIGHT,
        [
            PlotSeries([(x(r), v) for r, v in zip(comparison.rows, values)], color, dash)
            for values, (color, dash) in zip(
                ([r.kl_12 for r in comparison.rows], [r.kl_21 for r in comparison.rows]), styles
            )
        ],
        rules=rules,
    )
    legend = ("", [(name, PlotLine([], color, dash)) for name, (color, dash) in zip(kls, styles)])
    plot = LinearPlot(
        [js, kl],
        compare_axis(comparison),
        comparison.x_title,
        [legend],
        bands=[(b.x0, b.x1) for b in comparison_trust_bands(runs, comparison)] if runs else [],
        points=len(comparison.rows) <= MAX_LAYERS_WITH_POINTS,
    )
    return _static("comparison-divergence", "Divergence between the models across layers", description, plot)


def run_line_charts(run: RunReport) -> list[PendingChart]:
    """One run's static line charts, in page order."""
    return [trajectory_chart(run), entropy_kl_chart(run)]


def comparison_line_charts(runs: list[RunReport], comparison: ComparisonView) -> list[PendingChart]:
    """A comparison's static line charts, in page order."""
    charts = [compare_trajectory_chart(runs, comparison), compare_entropy_kl_chart(runs, comparison)]
    if comparison.has_divergences:
        charts.append(divergence_chart(comparison, runs))
    return charts
