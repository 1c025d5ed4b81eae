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
class LensCell:
    value: str
    interval: str  # "2.10-2.61", or "" when the file has no intervals
    best: bool  # the lowest KL at this layer (KL table only)
    unreliable: bool  # KL above the threshold: the lens is unreliable at this layer


@dataclass(frozen=True)
class LensRow:
    layer: int
    cells: list[LensCell]


@dataclass(frozen=True)
class LensTable:
    table_id: str
    title: str
    caption: str
    rows: list[LensRow]


@dataclass(frozen=True)
class LensEvalPage:
    title: str
    generator: str
    model_id: str
    lens_names: str
    verdict: list[str]
    notes: list[str]
    overview: list[InfoRow]
    columns: list[str]  # one per lens
    tables: list[LensTable]
    threshold: str
    interval_method: str
    versions: list[InfoRow]
    timings: list[InfoRow]


METRIC_TABLES = (
    (
        "kl_to_final",
        "lens-table-kl",
        "KL to the final distribution",
        "KL(final ‖ lens), nats; lower is better",
        "{:.3f}",
    ),
    (
        "top1_agreement",
        "lens-table-top1",
        "Top-1 agreement",
        "Share of held-out tokens where the lens's top-1 is the final top-1; higher is better",
        "{:.1%}",
    ),
    ("cross_entropy", "lens-table-ce", "Cross-entropy", "Nats against the true next token; lower is better", "{:.3f}"),
)


def _tables(result: LensEvalResult) -> list[LensTable]:
    from .lens_view import best_per_layer

    entries = result.all_entries()
    best = best_per_layer(entries) if len(entries) > 1 else []
    tables = []
    for field, table_id, title, caption, fmt in METRIC_TABLES:
        rows = []
        for j, row in enumerate(entries[0].lens.fidelity):
            cells = []
            for i, e in enumerate(entries):
                f = e.lens.fidelity[j]
                interval = ""
                if e.intervals:
                    lo, hi = getattr(e.intervals[j], field)
                    interval = f"{fmt.format(lo)}–{fmt.format(hi)}"
                cells.append(
                    LensCell(
                        value=fmt.format(getattr(f, field)),
                        interval=interval,
                        best=field == "kl_to_final" and bool(best) and best[j][1] == i,
                        unreliable=f.kl_to_final > e.lens.unreliable_threshold_nats,
                    )
                )
            rows.append(LensRow(row.layer, cells))
        tables.append(LensTable(table_id, title, caption, rows))
    return tables


def build_lens_eval_page(result: LensEvalResult) -> LensEvalPage:
    from .lens_view import entry_labels, entry_name, eval_verdict

    entries = result.all_entries()
    labels = entry_labels(entries)
    overview = [
        InfoRow("Model", clean_text(result.model.model_id)),
        InfoRow(
            "Held-out text",
            clean_text(
                f"{result.corpus}, {result.tokens} tokens"
                + (f" in {result.sequences} sequences" if result.sequences else "")
            ),
        ),
        InfoRow("Model's own cross-entropy", f"{result.final_cross_entropy:.3f} nats"),
    ]
    for e, label in zip(entries, labels):
        if e.lens.kind == "logit":
            continue
        fitted = f"fitted on {e.lens.tokens or 0:,} tokens of {e.lens.corpus or 'n/a'}"
        overview.append(InfoRow(clean_text(entry_name(label)), clean_text(f"{e.lens.source or 'built in'}; {fitted}")))
    notes = [clean_text(f"{entry_name(label)}: {e.lens.note}") for e, label in zip(entries, labels) if e.lens.note]
    threshold = entries[-1].lens.unreliable_threshold_nats
    version = result.versions.get("lazarus-report", "")
    names = ", ".join(entry_name(label) for label in labels)
    return LensEvalPage(
        title=clean_text(f"Lens evaluation: {result.model.model_id}: {names}"),
        generator=clean_text(f"lazarus-report {version}".strip()),
        model_id=clean_text(result.model.model_id),
        lens_names=clean_text(names),
        verdict=[clean_text(s) for s in eval_verdict(result)],
        notes=notes,
        overview=overview,
        columns=[clean_text(label) for label in labels],
        tables=_tables(result),
        threshold=f"{threshold:g}",
        interval_method=clean_text(result.interval_method),
        versions=[InfoRow(clean_text(k), clean_text(v)) for k, v in result.versions.items()],
        timings=[InfoRow(clean_text(k), f"{v:.2f} s") for k, v in result.timings.items()],
    )


def fidelity_charts(result: LensEvalResult) -> list[Any]:
    """Two charts: KL(final || lens) per layer (log scale, with the unreliable threshold) and top-1 agreement,
    a line per lens evaluated."""
    import altair as alt

    from . import charts as ch
    from .lens_view import entry_labels

    entries = result.all_entries()
    names = entry_labels(entries)
    bands = all(e.intervals for e in entries)
    rows = [
        {"layer": f.layer, "lens": name, "kl": max(f.kl_to_final, 1e-4), "agreement": f.top1_agreement}
        | (_band(e.intervals[j]) if bands else {})
        for name, e in zip(names, entries)
        for j, f in enumerate(e.lens.fidelity)
    ]
    palette = (ch.PALETTE * (1 + len(names) // len(ch.PALETTE)))[: len(names)]
    color = alt.Color("lens:N", scale=alt.Scale(domain=names, range=palette), title="Lens")
    x = alt.X("layer:Q", title="Layer (block output)", axis=alt.Axis(tickMinStep=1, format="d"))
    threshold = entries[-1].lens.unreliable_threshold_nats
    kl_line = (
        alt.Chart(alt.NamedData("fidelity"))
        .mark_line(point=True)
        .encode(x=x, y=alt.Y("kl:Q", title="KL(final ‖ lens), nats", scale=alt.Scale(type="log")), color=color)
    )
    rule = alt.Chart(alt.NamedData("threshold")).mark_rule(strokeDash=[4, 3], color="#888").encode(y=alt.Y("kl:Q"))
    agree_line = (
        alt.Chart(alt.NamedData("fidelity"))
        .mark_line(point=True)
        .encode(
            x=x,
            y=alt.Y("agreement:Q", title="Top-1 agreement", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
            color=color,
        )
    )
    kl_layers: list[Any] = [kl_line, rule]
    agree_layers: list[Any] = [agree_line]
    if bands:  # the 95% intervals as shaded bands under each line: one layer per lens with a fixed colour (a
        # band encoded by a scale, even without a legend, would hide the key of the lines)
        for name, colour in zip(names, palette):
            band = (
                alt.Chart(alt.NamedData("fidelity"))
                .mark_area(opacity=0.2, color=colour)
                .transform_filter(alt.datum.lens == name)
            )
            kl_layers.insert(0, band.encode(x=x, y="kl_lo:Q", y2="kl_hi:Q"))
            agree_layers.insert(0, band.encode(x=x, y="agree_lo:Q", y2="agree_hi:Q"))
    kl_chart = alt.layer(*kl_layers).properties(width=ch.LINE_WIDTH, height=ch.LINE_HEIGHT)
    agree_chart = alt.layer(*agree_layers).properties(width=ch.LINE_WIDTH, height=ch.LINE_HEIGHT)
    shaded = " Shaded: 95% intervals." if bands else ""
    kl_desc = (
        f"Mean KL divergence from the model's final distribution per layer, on held-out text (log scale); "
        f"the dashed line is the unreliable threshold ({threshold:g} nats).{shaded}"
    )
    agree_desc = f"Fraction of held-out positions where the lens's top-1 token is the model's final top-1.{shaded}"
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


def _band(interval: Any) -> dict[str, float]:
    return {
        "kl_lo": max(interval.kl_to_final[0], 1e-4),
        "kl_hi": max(interval.kl_to_final[1], 1e-4),
        "agree_lo": interval.top1_agreement[0],
        "agree_hi": interval.top1_agreement[1],
    }


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
