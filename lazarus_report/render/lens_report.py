"""HTML for ``lazarus lens eval --html``: the fidelity of a lens and of the logit lens per layer.

Plain data in (``LensEvalResult``), one self-contained page out, built like the analysis reports:
Altair specs drawn live by vegaEmbed, each also inlined as a static SVG (vl-convert), the page
shell and styles of ``html/page.html.j2``. No MLX here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..results.lens_eval import LensEvalResult
from .environment import html_environment, html_json
from .formatting import clean_text
from .report_model import InfoRow


@dataclass(frozen=True)
class LensRow:
    layer: int
    values: list[str]
    reliable: bool


@dataclass(frozen=True)
class LensEvalPage:
    title: str
    generator: str
    model_id: str
    lens_name: str
    note: str | None
    overview: list[InfoRow]
    columns: list[str]
    rows: list[LensRow]
    threshold: str
    versions: list[InfoRow]
    timings: list[InfoRow]


def build_lens_eval_page(result: LensEvalResult) -> LensEvalPage:
    from .lens_text import fidelity_summary

    lens = result.lens
    kind = lens.kind
    s_lens, s_logit = fidelity_summary(lens.fidelity), fidelity_summary(result.logit)
    overview = [
        InfoRow("Model", clean_text(result.model.model_id)),
        InfoRow("Lens", clean_text(f"{kind}" + (f" ({lens.source})" if lens.source else ""))),
        InfoRow("Fitted on", clean_text(f"{lens.corpus or 'n/a'}, {lens.tokens or 0} tokens")),
        InfoRow("Held-out text", clean_text(f"{result.corpus}, {result.tokens} tokens")),
        InfoRow("Model's own cross-entropy", f"{result.final_cross_entropy:.3f} nats"),
    ]
    if s_lens and s_logit and kind != "logit":
        overview.append(
            InfoRow("Mean KL(final ‖ lens)", f"logit {s_logit['mean_kl']:.3f}, {kind} {s_lens['mean_kl']:.3f} nats")
        )
        overview.append(
            InfoRow(
                f"Top-1 agreement, layer {int(s_lens['mid_layer'])}",
                f"logit {s_logit['mid_top1']:.1%}, {kind} {s_lens['mid_top1']:.1%}",
            )
        )
    rows = []
    same = kind == "logit"
    for lo, le in zip(result.logit, lens.fidelity):
        values = [f"{lo.kl_to_final:.3f}", f"{lo.top1_agreement:.1%}", f"{lo.cross_entropy:.3f}"]
        if not same:
            values = [
                f"{lo.kl_to_final:.3f}",
                f"{le.kl_to_final:.3f}",
                f"{lo.top1_agreement:.1%}",
                f"{le.top1_agreement:.1%}",
                f"{lo.cross_entropy:.3f}",
                f"{le.cross_entropy:.3f}",
            ]
        rows.append(LensRow(le.layer, values, le.kl_to_final <= lens.unreliable_threshold_nats))
    columns = (
        ["KL logit", "Top-1 logit", "CE logit"]
        if same
        else ["KL logit", f"KL {kind}", "Top-1 logit", f"Top-1 {kind}", "CE logit", f"CE {kind}"]
    )
    version = result.versions.get("lazarus-report", "")
    return LensEvalPage(
        title=clean_text(f"Lens evaluation: {result.model.model_id}, {kind}"),
        generator=clean_text(f"lazarus-report {version}".strip()),
        model_id=clean_text(result.model.model_id),
        lens_name=f"{kind} lens",
        note=clean_text(lens.note) if lens.note else None,
        overview=overview,
        columns=columns,
        rows=rows,
        threshold=f"{lens.unreliable_threshold_nats:g}",
        versions=[InfoRow(clean_text(k), clean_text(v)) for k, v in result.versions.items()],
        timings=[InfoRow(clean_text(k), f"{v:.2f} s") for k, v in result.timings.items()],
    )


def fidelity_charts(result: LensEvalResult) -> list[Any]:
    """Two charts: KL(final || lens) per layer (log scale, with the unreliable threshold) and top-1 agreement."""
    import altair as alt

    from . import charts as ch

    lens = result.lens
    names = ["logit"] if lens.kind == "logit" else ["logit", lens.kind]
    series = [result.logit] if lens.kind == "logit" else [result.logit, lens.fidelity]
    rows = [
        {
            "layer": f.layer,
            "lens": name,
            "kl": max(f.kl_to_final, 1e-4),
            "agreement": f.top1_agreement,
        }
        for name, fid in zip(names, series)
        for f in fid
    ]
    color = alt.Color("lens:N", scale=alt.Scale(domain=names, range=ch.PALETTE[: len(names)]), title="Lens")
    x = alt.X("layer:Q", title="Layer (block output)", axis=alt.Axis(tickMinStep=1, format="d"))
    threshold = lens.unreliable_threshold_nats
    kl_line = (
        alt.Chart(alt.NamedData("fidelity"))
        .mark_line(point=True)
        .encode(x=x, y=alt.Y("kl:Q", title="KL(final ‖ lens), nats", scale=alt.Scale(type="log")), color=color)
    )
    rule = alt.Chart(alt.NamedData("threshold")).mark_rule(strokeDash=[4, 3], color="#888").encode(y=alt.Y("kl:Q"))
    kl_chart = alt.layer(kl_line, rule).properties(width=ch.LINE_WIDTH, height=ch.LINE_HEIGHT)
    agree_chart = (
        alt.Chart(alt.NamedData("fidelity"))
        .mark_line(point=True)
        .encode(
            x=x,
            y=alt.Y("agreement:Q", title="Top-1 agreement", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
            color=color,
        )
        .properties(width=ch.LINE_WIDTH, height=ch.LINE_HEIGHT)
    )
    kl_desc = (
        f"Mean KL divergence from the model's final distribution per layer, on held-out text (log scale); "
        f"the dashed line is the unreliable threshold ({threshold:g} nats)."
    )
    agree_desc = "Fraction of held-out positions where the lens's top-1 token is the model's final top-1."
    from .charts.background import line_view

    pending = [
        line_view(
            "lens-kl",
            "KL to the final distribution",
            kl_desc,
            kl_chart,
            {"fidelity": rows, "threshold": [{"kl": threshold}]},
        ),
        line_view("lens-agreement", "Top-1 agreement", agree_desc, agree_chart, {"fidelity": rows}),
    ]
    return [p.result() for p in pending]


def render_lens_eval_html(result: LensEvalResult, *, static: bool = False) -> str:
    from .html import vega_bundle_markup

    page = build_lens_eval_page(result)
    charts = fidelity_charts(result)
    return (
        html_environment()
        .get_template("html/lens_eval.html.j2")
        .render(
            report=page,
            charts={"lens": charts},
            specs={} if static else {c.chart_id: html_json(c.spec) for c in charts},
            summary_html="",
            result_json=html_json(result.to_dict()),
            result_script_id="lazarus-result",
            static=static,
            vega_bundle=None if static else vega_bundle_markup(),
        )
    )
