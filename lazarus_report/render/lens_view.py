"""How every report names the lens it shows and marks the layers where that lens is unreliable
(pure functions over ``result.LensRecord``; stdlib only)."""

from __future__ import annotations

from collections.abc import Sequence

from ..results.analysis import AnalysisResult
from ..results.codec import true_from_layer
from ..results.lens_eval import LensEvalEntry, LensEvalResult
from ..results.provenance import LensFidelity, LensRecord

LENS_NAMES = {"logit": "logit lens", "linear": "linear lens", "tuned": "tuned lens", "jacobian": "Jacobian lens"}

HOW = {
    "logit": "each layer's residual stream through the model's own final norm and head",
    "linear": "each layer's residual stream mapped by a fitted affine map to the last layer's, then the model's head",
    "tuned": "each layer's residual stream through a trained translator (h + Ah + b), then the model's head",
    "jacobian": "each layer's residual stream times the corpus-averaged Jacobian of the last layer's output "
    "with respect to it (J h), then the model's head",
}


def lens_name(kind: str) -> str:
    """ "logit lens", "linear lens", "tuned lens" (unknown kinds are named as they are)."""
    return LENS_NAMES.get(kind, f"{kind} lens")


def layer_ranges(layers: Sequence[int], captured: Sequence[int] | None = None) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0-2, 5, 7-8"``. With ``captured``, runs are consecutive in that list
    (so every 4th layer of an evenly spaced capture still reads as one range)."""
    if captured is None:
        captured = range(min(layers), max(layers) + 1) if layers else []
    order = list(captured)
    index = {layer: i for i, layer in enumerate(order)}
    chosen = sorted((layer for layer in set(layers) if layer in index), key=index.__getitem__)
    runs: list[list[int]] = []
    for layer in chosen:
        if runs and index[layer] == index[runs[-1][-1]] + 1:
            runs[-1].append(layer)
        else:
            runs.append([layer])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


def lens_facts(record: LensRecord | None) -> list[tuple[str, str]]:
    """(label, value) rows describing the lens, for the model card and the settings lists."""
    kind = record.kind if record is not None else "logit"
    rows = [("Lens", f"{lens_name(kind)}: {HOW.get(kind, kind)}")]
    if record is None:
        return rows
    if record.source:
        rows.append(("Lens artefact", record.source + (f" (sha256 {record.digest[:12]})" if record.digest else "")))
    if record.corpus and kind != "logit":
        tokens = f"{record.tokens:,} tokens of " if record.tokens else ""
        rows.append(("Lens fitted on", f"{tokens}{record.corpus}"))
    if record.fidelity:
        rows.append(("Lens fidelity", fidelity_line(record)))
    if record.note:
        rows.append(("Lens note", record.note))
    return rows


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def fidelity_summary(rows: list[LensFidelity]) -> dict[str, float]:
    """Mean KL, top-1 agreement and cross-entropy over the layers, and the middle layer's agreement."""
    if not rows:
        return {}
    mid = rows[len(rows) // 2] if len(rows) % 2 else rows[len(rows) // 2 - 1]
    return {
        "mean_kl": _mean([r.kl_to_final for r in rows]),
        "mean_top1": _mean([r.top1_agreement for r in rows]),
        "mean_ce": _mean([r.cross_entropy for r in rows]),
        "mid_layer": float(mid.layer),
        "mid_top1": mid.top1_agreement,
    }


def fidelity_line(record: LensRecord) -> str:
    """One line: mean held-out KL over the measured layers, and the middle layer's top-1 agreement."""
    s = fidelity_summary(record.fidelity)
    first, last = record.fidelity[0].layer, record.fidelity[-1].layer
    return (
        f"held-out KL to the final distribution {s['mean_kl']:.2f} nats on average over layers {first}-{last}; "
        f"top-1 agrees with the final prediction on {100 * s['mid_top1']:.0f}% of positions at layer "
        f"{int(s['mid_layer'])}"
    )


def unreliable_note(result: AnalysisResult) -> str | None:
    """The sentence that warns about unreliable layers (None when none are known)."""
    bad = result.unreliable_layers
    if not bad or result.lens is None:
        return None
    threshold = result.lens.unreliable_threshold_nats
    return (
        f"The {lens_name(result.lens_kind)} is unreliable at layers {layer_ranges(bad, result.captured_layers)}: "
        f"on held-out text it is more than {threshold:g} nats (KL) from the model's final distribution there, "
        "so its readings at those layers say little about what the model computes."
    )


MARK_LEGEND = "≈ marks an unreliable layer: from the lens's held-out fidelity, not from this prompt"


def trust_sentences(results: Sequence[AnalysisResult], tags: Sequence[str]) -> list[str]:
    """Which lens the page reads through and how far to trust each layer, for pages of several runs
    (compare, suite): one sentence per distinct lens record, then the legend of the ≈ marks."""
    out: list[str] = []
    seen: dict[tuple, list[str]] = {}
    for tag, result in zip(tags, results):
        lens = result.lens
        known = lens is not None and bool(lens.fidelity)
        key = (result.lens_kind, known, tuple(result.unreliable_layers))
        seen.setdefault(key, []).append(tag)
    for (kind, known, bad), who in seen.items():
        whose = "" if len(seen) == 1 else f" ({' and '.join(who)})"
        name = lens_name(kind)
        result = results[list(tags).index(who[0])]
        if not known:
            out.append(
                f"Read through the {name}{whose}: no fidelity data, so no layer is marked (unknown is not reliable)."
            )
        elif bad:
            threshold = result.lens.unreliable_threshold_nats if result.lens is not None else 2.0
            out.append(
                f"Read through the {name}{whose}: unreliable at layers {layer_ranges(list(bad), result.captured_layers)} "
                f"(held-out KL above {threshold:g} nats)."
            )
        else:
            out.append(f"Read through the {name}{whose}: reliable at every captured layer on held-out text.")
    if any(bad for (_, _, bad) in seen):
        out.append(MARK_LEGEND[0].upper() + MARK_LEGEND[1:] + ".")
    return out


def unreliable_pairs(results: Sequence[AnalysisResult]) -> tuple[set[int], set[int]]:
    """Each run's unreliable layers (model 1's, model 2's)."""
    first = set(results[0].unreliable_layers) if results else set()
    second = set(results[1].unreliable_layers) if len(results) > 1 else set()
    return first, second


# --- lens eval: which lens is best where ---------------------------------------------------------------------


def entry_labels(entries: Sequence[LensEvalEntry]) -> list[str]:
    """A short label per evaluated lens: its kind ("tuned"), with its source when two share a kind."""
    kinds = [e.lens.kind for e in entries]
    return [
        kind if kinds.count(kind) == 1 else f"{kind} ({e.lens.source or i + 1})"
        for i, (kind, e) in enumerate(zip(kinds, entries))
    ]


def entry_name(label: str) -> str:
    """ "tuned" -> "tuned lens"; "tuned (DIR)" -> "tuned lens (DIR)"."""
    kind, sep, rest = label.partition(" (")
    return lens_name(kind) + (f" ({rest}" if sep else "")


def best_per_layer(entries: Sequence[LensEvalEntry]) -> list[tuple[int, int, bool]]:
    """Per layer: (layer, index of the lens with the lowest KL, whether it is clearly best: its interval's
    upper bound below every other lens's lower bound; without intervals, clearly = strictly lowest)."""
    out = []
    for j, row in enumerate(entries[0].lens.fidelity):
        kls = [e.lens.fidelity[j].kl_to_final for e in entries]
        best = min(range(len(entries)), key=kls.__getitem__)
        clear = True
        for i, e in enumerate(entries):
            if i == best:
                continue
            if entries[best].intervals and e.intervals:
                clear &= entries[best].intervals[j].kl_to_final[1] < e.intervals[j].kl_to_final[0]
            else:
                clear &= kls[best] < kls[i]
        out.append((row.layer, best, clear and len(entries) > 1))
    return out


def _mean_kl(rows: Sequence[LensFidelity]) -> float:
    return _mean([r.kl_to_final for r in rows])


def eval_verdict(result: LensEvalResult) -> list[str]:
    """The lens evaluation's answer, first on every format: which lens is most faithful, from which layer it
    can be trusted and how often it agrees with the final prediction there, below which layer no lens is
    reliable, and which lens is best at which layers."""
    entries = result.all_entries()
    labels = entry_labels(entries)
    fid = [e.lens.fidelity for e in entries]
    if not fid[0]:
        return ["No layer was measured."]
    threshold = entries[-1].lens.unreliable_threshold_nats
    layers = [r.layer for r in fid[0]]
    first, last = layers[0], layers[-1]
    means = [_mean_kl(rows) for rows in fid]
    best = min(range(len(entries)), key=means.__getitem__)
    name = entry_name(labels[best])
    out = []
    if len(entries) == 1:
        out.append(f"Only the {name} was evaluated: mean KL to the final distribution {means[0]:.2f} nats.")
    else:
        others = ", ".join(f"{labels[i]} {means[i]:.2f}" for i in range(len(entries)) if i != best)
        out.append(
            f"The {name} is the most faithful lens here: mean KL to the final distribution {means[best]:.2f} nats "
            f"over layers {first}-{last} ({others})."
        )
    reliable = [[r.kl_to_final <= threshold for r in rows] for rows in fid]
    start = true_from_layer(layers, reliable[best])
    if start is not None:
        tail = [r.top1_agreement for r in fid[best] if r.layer >= start]
        out.append(
            f"From layer {start} the {name} is reliable (KL at most {threshold:g} nats) and agrees with the final "
            f"prediction on at least {100 * min(tail):.0f}% of held-out tokens ({100 * tail[-1]:.0f}% at layer {last})."
        )
    any_reliable = [any(flags[j] for flags in reliable) for j in range(len(layers))]
    lowest = next((layer for layer, ok in zip(layers, any_reliable) if ok), None)
    if lowest is None:
        out.append(f"No lens is reliable at any measured layer (KL above {threshold:g} nats everywhere).")
    elif lowest > first:
        out.append(
            f"Below layer {lowest} no lens is reliable: every lens is more than {threshold:g} nats from the final "
            "distribution there."
        )
    else:
        out.append(f"At layer {first} already a lens is reliable (KL at most {threshold:g} nats).")
    if len(entries) > 1:
        out.append(_best_where(best_per_layer(entries), labels, layers))
    return out


def _best_where(best: list[tuple[int, int, bool]], labels: list[str], layers: list[int]) -> str:
    parts = []
    for i, label in enumerate(labels):
        mine = [layer for layer, b, _ in best if b == i]
        if mine:
            parts.append(f"{label} at {'layer' if len(mine) == 1 else 'layers'} {layer_ranges(mine, layers)}")
    close = [layer for layer, _, clear in best if not clear]
    text = "Lowest KL per layer: " + "; ".join(parts) + "."
    if close:
        text += f" Too close to call (95% intervals overlap) at layers {layer_ranges(close, layers)}."
    return text


def analysis_trust(result: AnalysisResult, emergence_layer: int | None = None) -> str:
    """An analysis page's answer to "how far can I trust this lens": the layer it is reliable from (held-out
    fidelity), the layers marked ≈, whether the final prediction emerges at a marked layer; without fidelity
    data, that nothing is marked and why (unknown is not reliable)."""
    name = lens_name(result.lens_kind)
    lens = result.lens
    if lens is None or not lens.fidelity:
        return (
            f"{name[0].upper()}{name[1:]}, with no held-out fidelity for it on this model: no layer is marked "
            "(unknown is not reliable; lazarus lens eval measures it)."
        )
    layers = list(result.captured_layers)
    bad = set(result.unreliable_layers)
    threshold = lens.unreliable_threshold_nats
    start = true_from_layer(layers, [layer not in bad for layer in layers])
    if not bad:
        text = (
            f"{name[0].upper()}{name[1:]}, reliable at every captured layer (held-out KL at most {threshold:g} nats)."
        )
    elif start is None or start == layers[-1]:
        text = (
            f"{name[0].upper()}{name[1:]}, reliable only at the last layer ({layers[-1]}, the model's own output): "
            f"the other captured layers are marked ≈ (held-out KL above {threshold:g} nats), read them as rough."
        )
    else:
        text = (
            f"{name[0].upper()}{name[1:]}, reliable from layer {start} (held-out KL at most {threshold:g} nats); "
            f"layers {layer_ranges(sorted(bad), layers)} are marked ≈: read them as rough."
        )
    if emergence_layer is not None and emergence_layer in bad:
        text += f" The final prediction emerges at layer {emergence_layer}, where the lens is unreliable."
    return text


def lens_reading(result: AnalysisResult) -> tuple[int | None, int, int]:
    """How a lens reads the model's final answer at the last position: (the first captured layer where the final
    top-1 is this lens's top-1, or None; at how many captured layers it is; how many layers were captured)."""
    layers = [p.layer_idx for p in result.layer_predictions]
    top1 = [p.final_token_rank == 1 for p in result.layer_predictions]
    first = next((layer for layer, flag in zip(layers, top1) if flag), None)
    return first, sum(top1), len(layers)


def other_lens_line(result: AnalysisResult, shown_token: str) -> str:
    """One line for a lens read beside the primary (``result`` through it): ``tuned lens reads ' Paris' from
    layer 18, top-1 at 4 of 8 captured layers``. ``shown_token``: the final answer, already escaped by the
    caller for its output (terminal, Markdown)."""
    first, agree, total = lens_reading(result)
    name = lens_name(result.lens_kind)
    where = f"from layer {first}" if first is not None else "at no captured layer"
    return f"{name} reads {shown_token} {where} (top-1 at {agree} of {total} captured layers)"
