"""Two analyses of one prompt -> what differs between the models (pure numpy and Python).

Honest by construction:

* Divergences (KL both ways, Jensen-Shannon) are computed only when both models share a tokenizer
  (same vocabulary and merges), over their full last-position lens distributions.
* Different depths: layers are matched by relative depth ``(layer + 1) / num_layers``.
* Different tokenizers: top-1 agreement compares decoded token strings; divergences are reported as
  not possible, and every output says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..lens.stats import js_divergence, kl_divergence
from ..results.analysis import AnalysisResult
from ..results.codec import distinct_labels, first_layer_where, rounded, true_from_layer
from ..results.comparison import Attribution, ComparisonResult, LayerDivergence, TrackedComparison

if TYPE_CHECKING:
    from ..engine.run import LensRun


def match_layers(layers1: Sequence[int], n1: int, layers2: Sequence[int], n2: int) -> list[tuple[int, int]]:
    """Pairs (index into layers1, index into layers2): same layer when depths match, else by relative depth."""
    if n1 == n2 and list(layers1) == list(layers2):
        return [(i, i) for i in range(len(layers1))]
    rel1 = np.array([(layer + 1) / n1 for layer in layers1])
    pairs = []
    for j, l2 in enumerate(layers2):
        i = int(np.argmin(np.abs(rel1 - (l2 + 1) / n2)))
        pairs.append((i, j))
    return pairs


def compare_results(
    r1: AnalysisResult,
    r2: AnalysisResult,
    logp1: np.ndarray | None,
    logp2: np.ndarray | None,
    *,
    fingerprints: Sequence[str],
    single_token: Sequence[Sequence[bool]],
    labels: Sequence[str],
    same_model: bool,
    load_seconds: Sequence[float] = (0.0, 0.0),
) -> ComparisonResult:
    """Build the comparison. ``logp*``: ``[L, V]`` lens log-probs at the last position, one row per
    captured layer; ``single_token[m][k]``: whether tracked string k is one token for model m."""
    same_tokenizer = fingerprints[0] == fingerprints[1]
    same_tokens = r1.token_ids == r2.token_ids
    n1, n2 = r1.model.num_layers, r2.model.num_layers
    pairs = match_layers(r1.captured_layers, n1, r2.captured_layers, n2)
    alignment = "layer" if all(i == j for i, j in pairs) and n1 == n2 else "relative_depth"
    notes = _notes(same_model, same_tokenizer, same_tokens, n1, n2)
    divergences_possible = same_tokenizer and logp1 is not None and logp2 is not None
    divergences = _divergences(r1, r2, logp1 if divergences_possible else None, logp2, pairs, same_tokenizer)
    layers2 = [d.layer2 for d in divergences]
    agreements = [d.top1_agree for d in divergences]
    first_disagreement = first_layer_where(layers2, [not a for a in agreements])
    agreement_from = true_from_layer(layers2, agreements)
    largest = None
    if divergences_possible and divergences and not same_model:
        largest = max(divergences, key=lambda d: d.js or 0.0).layer2
    tracked = _tracked(r1, r2, single_token, labels, notes)
    return ComparisonResult(
        results=[r1, r2],
        labels=list(labels),
        same_model=same_model,
        same_tokenizer=same_tokenizer,
        same_tokens=same_tokens,
        alignment=alignment,
        divergences=divergences,
        first_disagreement_layer=first_disagreement,
        agreement_from_layer=agreement_from,
        largest_change_layer=largest,
        tracked=tracked,
        notes=notes,
        load_seconds=[float(x) for x in load_seconds],
    )


def _notes(same_model: bool, same_tokenizer: bool, same_tokens: bool, n1: int, n2: int) -> list[str]:
    notes: list[str] = []
    if same_model:
        notes.append("Both sides are the same model: every difference is zero by construction.")
    if not same_tokenizer:
        notes.append(
            "The models use different tokenizers, so their distributions are over different vocabularies: "
            "KL and Jensen-Shannon divergences are not possible; top-1 agreement compares decoded token strings."
        )
    elif not same_tokens:
        notes.append(
            "The prompt became different token sequences (chat templates differ), so the models did not see the "
            "same input; divergences compare their next-token predictions after their own sequences."
        )
    if n1 != n2:
        notes.append(
            f"The models have different depths ({n1} and {n2} layers): layers are matched by relative depth "
            "(layer + 1) / layers."
        )
    return notes


def _divergences(
    r1: AnalysisResult,
    r2: AnalysisResult,
    logp1: np.ndarray | None,
    logp2: np.ndarray | None,
    pairs: Sequence[tuple[int, int]],
    same_tokenizer: bool,
) -> list[LayerDivergence]:
    """One ``LayerDivergence`` per matched pair of layers; KL and JS only with both log-probs (None: not
    possible, e.g. different tokenizers)."""
    divergences_possible = logp1 is not None and logp2 is not None
    if divergences_possible:
        assert logp1 is not None and logp2 is not None
        idx1 = [i for i, _ in pairs]
        idx2 = [j for _, j in pairs]
        a, b = logp1[idx1], logp2[idx2]
        kl12, kl21, js = kl_divergence(a, b), kl_divergence(b, a), js_divergence(a, b)
    n2 = r2.model.num_layers
    divergences = []
    for k, (i, j) in enumerate(pairs):
        lp1, lp2 = r1.layer_predictions[i], r2.layer_predictions[j]
        t1, t2 = lp1.top_tokens[0], lp2.top_tokens[0]
        agree = t1.token_id == t2.token_id if same_tokenizer else t1.token == t2.token
        divergences.append(
            LayerDivergence(
                layer1=lp1.layer_idx,
                layer2=lp2.layer_idx,
                relative_depth=rounded((lp2.layer_idx + 1) / n2),
                top1_token1=t1.token,
                top1_token2=t2.token,
                top1_prob1=t1.prob,
                top1_prob2=t2.prob,
                top1_agree=agree,
                kl_12=rounded(float(kl12[k])) if divergences_possible else None,
                kl_21=rounded(float(kl21[k])) if divergences_possible else None,
                js=rounded(float(js[k])) if divergences_possible else None,
            )
        )
    return divergences


def _tracked(
    r1: AnalysisResult,
    r2: AnalysisResult,
    single_token: Sequence[Sequence[bool]],
    labels: Sequence[str],
    notes: list[str],
) -> list[TrackedComparison]:
    """Each tracked string on both sides; a note (appended to ``notes``) where it is one token on one side only."""
    tracked = []
    for k, text in enumerate(r1.config.track_tokens):
        e1, e2 = r1.token_evolutions[k], r2.token_evolutions[k]
        tracked.append(
            TrackedComparison(
                text=text,
                tokens=[e1.token, e2.token],
                single_token=[bool(single_token[0][k]), bool(single_token[1][k])],
                emergence_layers=[e1.emergence_layer, e2.emergence_layer],
                stable_from_layers=[e1.stable_from_layer, e2.stable_from_layer],
                final_probs=[e1.probs[-1], e2.probs[-1]],
                final_ranks=[e1.ranks[-1], e2.ranks[-1]],
            )
        )
        only = [labels[m] for m in (0, 1) if tracked[-1].single_token[m]]
        if len(only) == 1:
            other = labels[1] if only[0] == labels[0] else labels[0]
            notes.append(
                f"{text!r} is a single token only for {only[0]}; for {other} it is split and its first token is tracked."
            )
    return tracked


def compare_models_from_runs(
    runs: Sequence[LensRun],
    *,
    attribution: Attribution | None = None,
    attribution_note: str | None = None,
) -> ComparisonResult:
    """Glue between two engine runs (``engine.LensRun``) and ``compare_results``, plus where the models
    part (``where_they_part``) and, when given, the causal attribution."""
    c = _compare_runs(runs)
    c = where_they_part(c, runs)
    if attribution is not None or attribution_note is not None:
        c = dataclasses.replace(c, attribution=attribution, attribution_note=attribution_note)
    return c


def where_they_part(c: ComparisonResult, runs: Sequence[LensRun]) -> ComparisonResult:
    """Add the change summary, promoted/suppressed tokens, the change map and the adapted layers."""
    from ..models.adapter_config import adapted_layers
    from . import change_map as cm

    r1, r2 = c.results
    adapted = [adapted_layers(r.model.adapter, r.model.num_layers) for r in (r1, r2)]
    summary, shifts, cmap = None, [], None
    possible = all(d.js is not None for d in c.divergences) and bool(c.divergences) and not c.same_model
    if possible:
        layers2 = [d.layer2 for d in c.divergences]
        pairs = match_layers(r1.captured_layers, r1.model.num_layers, r2.captured_layers, r2.model.num_layers)
        top2 = [r2.layer_predictions[j].top_tokens[0].token_id for _, j in pairs]
        summary = cm.change_summary(
            layers2, [d.js or 0.0 for d in c.divergences], top2, r1.final_prediction[0].token_id
        )
        decode = runs[1].decode or (lambda i: str(i))
        lse1, lse2 = runs[0].log_sum_exp, runs[1].log_sum_exp
        wanted = [(len(pairs) - 1, "final layer")]
        if summary.decisive_layer is not None:
            k = layers2.index(summary.decisive_layer)
            if k != len(pairs) - 1:
                wanted.append((k, "largest JS jump"))
        for k, why in wanted:
            i, j = pairs[k]
            lse = (
                float(lse1[i]) if lse1 is not None else None,
                float(lse2[j]) if lse2 is not None else None,
            )
            shifts.append(cm.token_shifts(runs[0].log_probs[i], runs[1].log_probs[j], layers2[k], why, decode, lse))
        a, b = runs[0], runs[1]
        if (
            a.position_log_probs is not None
            and b.position_log_probs is not None
            and c.same_tokens
            and c.alignment == "layer"
            and a.kept_positions == b.kept_positions
        ):
            cmap = cm.build_change_map(
                a.position_log_probs,
                b.position_log_probs,
                r2.captured_layers,
                a.kept_positions or [],
                r2.tokens,
                a.user_positions or [],
                decode,
                a.positions_note,
                same_layers=b.same_layers_as_reference,
            )
    return dataclasses.replace(c, change_summary=summary, token_shifts=shifts, change_map=cmap, adapted_layers=adapted)


def _compare_runs(runs: Sequence[LensRun]) -> ComparisonResult:
    r1, r2 = runs[0].result, runs[1].result
    same_model = (
        r1.model.path == r2.model.path
        and r1.model.adapter == r2.model.adapter
        and r1.model.embedding_scale == r2.model.embedding_scale
    )
    return compare_results(
        r1,
        r2,
        runs[0].log_probs,
        runs[1].log_probs,
        fingerprints=[run.tokenizer_fingerprint for run in runs],
        single_token=[run.single_token for run in runs],
        labels=distinct_labels([r1.model.label, r2.model.label]),
        same_model=same_model,
        load_seconds=[run.load_seconds for run in runs],
    )
