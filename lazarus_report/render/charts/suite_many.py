"""A suite report's summary charts when there are too many cases for one mark per case on an axis.

Up to ``MANY_CASES`` cases, the emergence chart has a column per case and the P(target) chart a row per case
(``suite_specs``). Beyond that those charts would be thousands of pixels long (18 px per case: 18,000 px
for 1,000 cases), so the same questions are answered over all cases at once:

* where the target emerges: how many cases per layer (or relative depth) each model makes the target top-1
  from, with "never" as the last bar;
* how P(target) moved (two models): each case one point, the base's P(target) across, the tuned model's up;
  points below the diagonal lost probability.
"""

from __future__ import annotations

import altair as alt

from lazarus_report.render.charts.background import PendingChart, line_view
from lazarus_report.render.charts.scales import round_value
from lazarus_report.render.charts.style import PALETTE
from lazarus_report.render.suite_model import SuiteReport

MANY_CASES = 60  # more cases with a target than this: the charts below
DEPTH_BINS = 10  # relative-depth bins when the models differ in depth


def emergence_histogram(suite: SuiteReport, chart_id: str) -> PendingChart:
    """Cases per emergence layer (or relative-depth bin), per model; "never" last."""
    cases = suite.with_target
    tags = list(suite.tags)
    if suite.by_depth:
        labels = [f"{(b + 1) / DEPTH_BINS:.1f}" for b in range(DEPTH_BINS)]
    else:
        top = max(side.num_layers for case in cases for side in case.sides)
        labels = [str(layer) for layer in range(top)]
    labels.append("never")
    counts = {(tag, label): 0 for tag in tags for label in labels}
    for case in cases:
        for tag, side in zip(tags, case.sides):
            if side.target_emergence is None:
                label = "never"
            elif suite.by_depth:
                depth = side.target_depth or 0.0
                label = labels[min(DEPTH_BINS - 1, max(0, int(depth * DEPTH_BINS - 1e-9)))]
            else:
                label = str(side.target_emergence)
            counts[(tag, label)] += 1
    rows = [{"x": label, "m": tag, "n": n} for (tag, label), n in counts.items()]
    x_title = "Target top-1 from (relative depth, upper bin edge)" if suite.by_depth else "Target top-1 from layer"
    color = alt.Color(
        "m:N",
        title="Model",
        scale=alt.Scale(domain=tags, range=PALETTE[: len(tags)]),
        legend=alt.Legend(orient="top", direction="horizontal"),
    )
    chart = (
        alt.Chart(alt.NamedData("d"))
        .mark_bar()
        .encode(
            x=alt.X("x:N", title=x_title, sort=labels, axis=alt.Axis(labelAngle=0)),
            xOffset=alt.XOffset("m:N", sort=tags),
            y=alt.Y("n:Q", title="Cases"),
            color=color,
            tooltip=[
                alt.Tooltip("m:N", title="Model"),
                alt.Tooltip("x:N", title="Target top-1 from"),
                alt.Tooltip("n:Q", title="Cases"),
            ],
        )
        .properties(width=max(360, min(720, 14 * len(labels) * len(tags))), height=220)
    )
    who = "each model" if len(tags) == 2 else "the model"
    description = (
        f"How many of the {len(cases)} cases with a target (their first tracked token) have it become the top-1 "
        f"prediction in {who} from each {'relative depth' if suite.by_depth else 'layer'} on; the last bar counts "
        "the cases where it never does. The case table lists each case."
    )
    return line_view(chart_id, "Where the target emerges, across cases", description, chart, {"d": rows})


def target_scatter(suite: SuiteReport, chart_id: str) -> PendingChart:
    """Two models: each case's P(target) in the base (x) against the tuned model (y)."""
    cases = [c for c in suite.cases if c.delta is not None]
    points = []
    for case in cases:
        p = [side.target_prob for side in case.sides]
        points.append(
            {
                "x": round_value(p[0]),
                "y": round_value(p[1]),
                "d": round_value(case.delta),
                "g": case.group or "(no group)",
                "id": case.id,
                "s": case.status,
            }
        )
    groups = list(dict.fromkeys(point["g"] for point in points))
    axis = alt.Scale(domain=[0, 1])
    chart = alt.layer(
        alt.Chart(alt.NamedData("diagonal")).mark_rule(color="#aaaaaa").encode(x="x:Q", y="y:Q", x2="x2:Q", y2="y2:Q"),
        alt.Chart(alt.NamedData("d"))
        .mark_point(filled=True, size=30, opacity=0.6)
        .encode(
            x=alt.X("x:Q", title=f"P(target), final layer, {suite.tags[0]}", scale=axis),
            y=alt.Y("y:Q", title=f"P(target), final layer, {suite.tags[1]}", scale=axis),
            color=alt.Color(
                "g:N", title="Group", scale=alt.Scale(domain=groups, range=["#7a7a7a", "#c23b22", "#3b7d23", "#8a5cb8"])
            ),
            tooltip=[
                alt.Tooltip("id:N", title="Case"),
                alt.Tooltip("g:N", title="Group"),
                alt.Tooltip("s:N", title="Status"),
                alt.Tooltip("x:Q", title=suite.tags[0], format=".3f"),
                alt.Tooltip("y:Q", title=suite.tags[1], format=".3f"),
                alt.Tooltip("d:Q", title="Change", format="+.3f"),
            ],
        ),
    ).properties(width=320, height=320)
    return line_view(
        chart_id,
        "How P(target) moved, case by case",
        f"Each of the {len(cases)} cases with a target is one point: its target's final probability in the base "
        f"model across, in the tuned model up, coloured by the case's group. Points below the diagonal lost "
        "probability in the tuned model.",
        chart,
        {"diagonal": [{"x": 0, "y": 0, "x2": 1, "y2": 1}], "d": points},
    )
