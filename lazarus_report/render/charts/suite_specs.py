"""A suite report's charts: where the target emerges across cases, and a compact trajectory per case."""

from __future__ import annotations

from typing import Any

import altair as alt

from lazarus_report.render.charts.background import PendingChart, line_view, unvalidated
from lazarus_report.render.charts.compare_specs import compare_trajectory_spec
from lazarus_report.render.charts.run_specs import trajectory_spec
from lazarus_report.render.charts.scales import round_value, tick_step
from lazarus_report.render.charts.style import PALETTE, shorten
from lazarus_report.render.charts.suite_many import MANY_CASES, emergence_histogram, target_scatter
from lazarus_report.render.suite_model import CaseView, SuiteReport

SUITE_CHART_ID = "suite-emergence"
DUMBBELL_CHART_ID = "suite-target-change"


CASE_LABEL_CHARS = 28


@unvalidated
def start_suite_charts(suite: SuiteReport) -> dict[str, list[PendingChart]]:
    """A suite report's charts: ``{"suite": [emergence across cases, P(target) base to tuned], <case key>:
    [trajectory], ...}``.

    Each case's trajectory is the single-prompt chart (``compare_trajectory_spec`` or ``trajectory_spec``) with
    a compact static SVG (``plot_svg``); the page stores the cases' specs as patches of one shared
    spec (``shared_specs``)."""
    out: dict[str, list[PendingChart]] = {}
    if suite.with_target and len(suite.with_target) > MANY_CASES:  # one mark per case would not fit: see suite_many
        out["suite"] = [emergence_histogram(suite, SUITE_CHART_ID)]
        if suite.two_models and any(case.delta is not None for case in suite.cases):
            out["suite"].append(target_scatter(suite, DUMBBELL_CHART_ID))
    elif suite.with_target:
        out["suite"] = [_emergence(suite)]
        if suite.two_models and any(case.delta is not None for case in suite.cases):
            out["suite"].append(_dumbbell(suite))
    for case in suite.cases:
        report = case.report
        if report is None:
            continue
        chart_id = f"{case.key}-trajectory"
        if report.comparison is not None:
            out[case.key] = [compare_trajectory_spec(report.runs, report.comparison, chart_id=chart_id, compact=True)]
        else:
            out[case.key] = [trajectory_spec(report.runs[0], chart_id=chart_id, compact=True)]
    return out


def _dumbbell(suite: SuiteReport) -> PendingChart:
    """P(target) in the base and in the tuned model per case, joined by a line, cases sorted by the change
    (largest drop first); the line is coloured by the case's group, so collateral damage shows at a glance."""
    cases = sorted((c for c in suite.cases if c.delta is not None), key=lambda c: (c.delta, c.index))
    order = [f"{c.index + 1}. {shorten(c.id, CASE_LABEL_CHARS)}" for c in cases]
    pairs, points, bands = _dumbbell_rows(suite, cases, order)
    y = alt.Y("y:N", title=None, sort=order, axis=alt.Axis(labelLimit=180))
    x = alt.X("x:Q", title="P(target), final layer", scale=alt.Scale(domain=[0, 1]))
    groups = list(dict.fromkeys(pair["g"] for pair in pairs))
    tags = list(suite.tags)
    chart = alt.layer(
        *([_tolerance_bands(y, x)] if bands else []),
        alt.Chart(alt.NamedData("pairs"))
        .mark_rule(strokeWidth=3, opacity=0.6)
        .encode(
            y=y,
            x=x,
            x2="x2:Q",
            color=alt.Color(
                "g:N", title="Group", scale=alt.Scale(domain=groups, range=["#7a7a7a", "#c23b22", "#3b7d23", "#8a5cb8"])
            ),
            tooltip=[
                alt.Tooltip("id:N", title="Case"),
                alt.Tooltip("g:N", title="Group"),
                alt.Tooltip("s:N", title="Status"),
            ],
        ),
        alt.Chart(alt.NamedData("d"))
        .mark_point(filled=True, size=55, opacity=0.95)
        .encode(
            y=y,
            x=x,
            shape=alt.Shape("m:N", title="Model", scale=alt.Scale(domain=tags, range=["circle", "diamond"])),
            fill=alt.Fill("m:N", title="Model", scale=alt.Scale(domain=tags, range=PALETTE[:2])),
            tooltip=[
                alt.Tooltip("id:N", title="Case"),
                alt.Tooltip("m:N", title="Model"),
                alt.Tooltip("x:Q", title="P(target)", format=".3f"),
                alt.Tooltip("d:Q", title="Change (tuned - base)", format="+.3f"),
            ],
        ),
    ).properties(width=360, height=max(120, 18 * len(cases)))
    return line_view(
        DUMBBELL_CHART_ID,
        "How P(target) moved, case by case",
        "Each case's target probability at the final layer in the base (circle) and the tuned model (diamond), "
        "joined by a line coloured by the case's group; the cases are sorted by the change, largest drop first."
        + (
            " The grey band is each case's no-regression tolerance: a diamond left of its band failed that check."
            if bands
            else ""
        ),
        chart,
        {"pairs": pairs, "d": points, **({"bands": bands} if bands else {})},
    )


def _dumbbell_rows(
    suite: SuiteReport, cases: list[CaseView], labels: list[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The dumbbell's datasets for ``cases`` (labelled ``labels``): one line per case (base to tuned), one
    point per case and model, and each no-regression tolerance band (from base - tolerance to base)."""
    pairs, points, bands = [], [], []
    for case, label in zip(cases, labels):
        p = [side.target_prob for side in case.sides]
        group = case.group or "(no group)"
        pairs.append(
            {"y": label, "x": round_value(p[0]), "x2": round_value(p[1]), "g": group, "id": case.id, "s": case.status}
        )
        if case.tolerance is not None and p[0] is not None:
            # no_regression_of final_prob: tuned passes anywhere right of base - tolerance
            floor = max(0.0, p[0] - case.tolerance)
            bands.append(
                {
                    "y": label,
                    "x": round_value(floor),
                    "x2": round_value(p[0]),
                    "t": round_value(case.tolerance),
                    "id": case.id,
                }
            )
        for tag, value in zip(suite.tags, p):
            points.append({"y": label, "x": round_value(value), "m": tag, "id": case.id, "d": round_value(case.delta)})
    return pairs, points, bands


def _tolerance_bands(y: alt.Y, x: alt.X) -> alt.Chart:
    """The dumbbell's grey bands: where the tuned model's P(target) passes each case's no_regression_of check."""
    return (
        alt.Chart(alt.NamedData("bands"))
        .mark_bar(color="#9aa7b5", opacity=0.3, height=12)
        .encode(
            y=y,
            x=x,
            x2="x2:Q",
            tooltip=[
                alt.Tooltip("id:N", title="Case"),
                alt.Tooltip("t:Q", title="Tolerance (no_regression_of)", format=".3f"),
                alt.Tooltip("x:Q", title="Tuned must stay at or above", format=".3f"),
            ],
        )
    )


def _emergence(suite: SuiteReport) -> PendingChart:
    """Where each case's target first becomes top-1, per model, across the cases (in suite order).
    A target that never becomes top-1 sits in a "never" band above the last layer; with models of
    different depths the y axis is relative depth."""
    cases = suite.with_target
    if suite.by_depth:
        top, never, ticks = 1.0, 1.15, [0, 0.2, 0.4, 0.6, 0.8, 1.0]
        y_title, label = "Target top-1 from (relative depth)", "format(datum.value, '.1f')"
    else:
        top = max(side.num_layers for case in cases for side in case.sides) - 1
        step = max(1, round(tick_step(0, top, 6)))
        never, ticks = top + 2.5, list(range(0, top + 1, step))
        y_title, label = "Target top-1 from layer", "datum.value"
    band = [{"y": top + (never - top) * 0.3, "y2": never + (never - top) * 0.6}]
    rows, pairs = [], []
    for case in cases:
        x = f"{case.index + 1}. {shorten(case.id, CASE_LABEL_CHARS)}"
        ys = []
        for tag, side in zip(suite.tags, case.sides):
            value = side.target_depth if suite.by_depth else side.target_emergence
            y = never if value is None else round_value(value)
            ys.append(y)
            rows.append({"x": x, "m": tag, "y": y, "e": side.emergence_text, "id": case.id, "s": case.status})
        if len(ys) == 2:
            pairs.append({"x": x, "y": ys[0], "y2": ys[1]})
    order = [f"{case.index + 1}. {shorten(case.id, CASE_LABEL_CHARS)}" for case in cases]
    x = alt.X("x:N", title="Case (suite order)", sort=order, axis=alt.Axis(labelAngle=-50, labelLimit=140))
    y = alt.Y(
        "y:Q",
        title=y_title,
        scale=alt.Scale(domain=[0, never + (never - top) * 0.6], nice=False),
        axis=alt.Axis(values=[*ticks, never], labelExpr=f"datum.value > {top} ? 'never' : {label}"),
    )
    tooltip = [
        alt.Tooltip("id:N", title="Case"),
        alt.Tooltip("m:N", title="Model"),
        alt.Tooltip("e:N", title="Target top-1 from"),
        alt.Tooltip("s:N", title="Status"),
    ]
    layers: list[Any] = [
        alt.Chart(alt.NamedData("band")).mark_rect(color="#eeeeee").encode(y=y, y2="y2:Q"),
    ]
    if pairs:
        layers.append(alt.Chart(alt.NamedData("pairs")).mark_rule(color="#aaaaaa").encode(x=x, y=y, y2="y2:Q"))
    tags = list(suite.tags)
    layers.append(
        alt.Chart(alt.NamedData("d"))
        .mark_point(filled=True, size=60, opacity=0.9)
        .encode(
            x=x,
            y=y,
            tooltip=tooltip,
            color=alt.Color(
                "m:N",
                title="Model",
                scale=alt.Scale(domain=tags, range=PALETTE[: len(tags)]),
                legend=alt.Legend(orient="top", direction="horizontal"),
            ),
            shape=alt.Shape(
                "m:N", title="Model", scale=alt.Scale(domain=tags, range=["circle", "diamond"][: len(tags)])
            ),
        )
    )
    chart = alt.layer(*layers).properties(width=max(360, 18 * len(cases)), height=220)
    who = "each model" if len(tags) == 2 else "the model"
    description = (
        f"For each case with a target (its first tracked token), the {'relative depth' if suite.by_depth else 'layer'} "
        f"where the target first becomes the top-1 prediction in {who}; the band at the top holds the cases where it "
        "never does."
    )
    if len(tags) == 2:
        description += " A grey line joins a case's base and tuned points."
    return line_view(
        SUITE_CHART_ID,
        "Where the target emerges, across cases",
        description,
        chart,
        {"band": band, "pairs": pairs, "d": rows},
    )
