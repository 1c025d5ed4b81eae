"""Causal layer attribution: which layers carry the change from model 1 to model 2 (``--attribution``).

The change is JS(model 1's final distribution, model 2's) at the last prompt position (nats). Two methods:

* **adapter-ablation** (model 2 = model 1 + a LoRA/DoRA adapter, one set of weights): for each layer,
  swap that layer's adapter modules back to their base linear layers (the module's own ``linear``; no
  copy of any weight) and measure how much of the change disappears: ``effect`` = 1 - JS(model 1,
  reverted) / change. Separately keep only that layer's adapter: ``alone`` = 1 - JS(only this layer,
  model 2) / change (1: this layer alone reproduces model 2). Layers without adapter modules get
  ``effect`` 0 and ``adapted`` false. The carriers (the smallest set carrying at least ``THRESHOLD`` of
  the change) are the layers by decreasing effect, as many as reverting them *together* needs (layers
  whose effect is exactly 0 are never carriers).
* **activation-patching** (two models of one architecture and tokenizer): model 1's block-l output (all
  positions) replaces model 2's, model 2 runs the blocks after l: ``cumulative`` at l = 1 - JS(model 1,
  patched) / change is the share undone by reverting every difference of blocks 0..l at once, and
  ``effect`` at l = cumulative(l) - cumulative(l - 1) is the share block l adds. Carriers: by
  decreasing effect until their effects sum to ``THRESHOLD`` (effects add up along the layers). The
  reverse (``reverse_patching``: model 2's block outputs into model 1, which must be loaded again)
  gives ``reverse_cumulative``.

Cost: reverting layer l leaves blocks before l unchanged, so their outputs are taken from a cached
full pass (the blocks are not run): a pass at layer l runs blocks l..L-1 only.

Both methods need the same architecture (depth, width, block structure) and tokenizer: a block output
of one model is only an input the other model's next block understands when the residual streams have
the same shape and meaning, and the change is a divergence between distributions over one vocabulary.

MLX lives here, as in ``lens``; nothing here formats prose except the one-line notes of why not.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..lens.readout import head_logits_np, mx, row_lse
from ..lens.stats import js_divergence
from ..models.hooks import capturing, embedding_scaled, swapped, swapped_class
from ..results.codec import rounded
from ..results.comparison import Attribution, LayerAttribution

if TYPE_CHECKING:
    from ..engine.run import LensRun
    from ..models.loader import LoadedModel

THRESHOLD = 0.8
METRIC = "js_last_position"
REVERSE_NOT_RUN = (
    "the reverse direction (model 2's block outputs patched into model 1) needs model 1 loaded again; not run"
)


# --- forward passes with replaced blocks ------------------------------------------------------


@contextlib.contextmanager
def replacing(parts: Any, outputs: dict[int, Any]) -> Iterator[None]:
    """Blocks in ``outputs`` return the given ``[1, T, H]`` array instead of computing anything."""

    def replaced_class(cls: type, value: Any) -> type:
        return swapped_class(cls, "Replaced", lambda self, *args, **kwargs: value)

    with swapped((parts.layers[i], replaced_class(type(parts.layers[i]), value)) for i, value in outputs.items()):
        yield


def _walk(obj: Any, path: str) -> Any:
    for name in path.split("."):
        obj = obj[int(name)] if isinstance(obj, list) else getattr(obj, name)
    return obj


def adapter_modules(parts: Any) -> dict[int, list[tuple[Any, str, Any]]]:
    """Per layer: (parent module, attribute, adapter module) of every LoRA/DoRA module in the block."""
    out: dict[int, list[tuple[Any, str, Any]]] = {}
    for i, block in enumerate(parts.layers):
        for name, module in block.named_modules():
            if name and hasattr(module, "lora_a") and hasattr(module, "lora_b") and hasattr(module, "linear"):
                parent_path, _, attr = name.rpartition(".")
                parent = _walk(block, parent_path) if parent_path else block
                out.setdefault(i, []).append((parent, attr, module))
    return out


@contextlib.contextmanager
def without_adapters(modules: Sequence[tuple[Any, str, Any]]) -> Iterator[None]:
    """Swap adapter modules back to their base linear layers (the same weight objects)."""
    try:
        for parent, attr, module in modules:
            setattr(parent, attr, module.linear)
        yield
    finally:
        for parent, attr, module in modules:
            setattr(parent, attr, module)


PIPELINE_REASON = (
    "causal attribution reruns single blocks with replaced inputs, which a model whose blocks are spread over "
    "several ranks (distributed pipeline) cannot do; run it in one process, or tensor parallel where the model "
    "allows it (--distributed tensor)"
)


def _spread_over_ranks(loaded: LoadedModel) -> bool:
    shard = loaded.parts.shard
    return shard is not None and shard.ranges is not None


def _log_probs(z: np.ndarray) -> np.ndarray:
    """``z - lse`` as the readout writes log-probabilities (``lens.readout.position_log_probs``); not
    ``stats.log_softmax``, which can differ in the last float32 digit (attribution's saved numbers stay as they were)."""
    return z - row_lse(z).astype(np.float32)[:, None]


class _Runner:
    """Forward passes of one loaded model on one prompt, counted."""

    def __init__(self, loaded: LoadedModel, ids: Sequence[int], factor: float | None):
        self.parts = loaded.parts
        self.inputs = mx.array([list(ids)], dtype=mx.int32)
        self.factor = factor
        self.n_layers = len(self.parts.layers)
        self.passes = 0

    def final(self, replace: dict[int, Any] | None = None, keep: bool = False) -> tuple[np.ndarray, dict[int, Any]]:
        """(final log-probs at the last position ``[V]``, block outputs ``{l: [1, T, H]}`` when ``keep``)."""
        last = self.n_layers - 1
        wanted = list(range(self.n_layers)) if keep else [last]
        with replacing(self.parts, replace or {}), capturing(self.parts, wanted) as sink:
            with embedding_scaled(self.parts, self.factor):
                self.parts.backbone(self.inputs)
            out = dict(sink)
        self.passes += 1
        z = head_logits_np(self.parts, out[last][0, -1:])
        if keep:
            mx.eval(*out.values())
        return _log_probs(z)[0], out if keep else {}


def _js(a: np.ndarray, b: np.ndarray) -> float:
    return float(js_divergence(a[None], b[None])[0])


def _share(after: float, change: float) -> float:
    return 1.0 - after / change if change > 0 else 0.0


def _probs(lp: np.ndarray, ids: Sequence[int]) -> list[float]:
    return [rounded(float(np.exp(np.float64(lp[i])))) for i in ids]


# --- the two methods ------------------------------------------------------------------------


def why_not(run1: LensRun, run2: LensRun) -> str | None:
    """Why causal attribution cannot compare these two runs (None when it can)."""
    m1, m2 = run1.result.model, run2.result.model
    if (m1.path, m1.adapter, m1.embedding_scale) == (m2.path, m2.adapter, m2.embedding_scale):
        return "both sides are the same model: there is no change to attribute"
    if run1.tokenizer_fingerprint != run2.tokenizer_fingerprint:
        return (
            "causal attribution needs the same tokenizer, because the change it explains is a divergence "
            "between two distributions over one vocabulary; these models use different tokenizers"
        )
    if (m1.family, m1.num_layers, m1.hidden_size) != (m2.family, m2.num_layers, m2.hidden_size):
        return (
            "causal attribution needs the same architecture, because one model's block output must be an input "
            f"the other model's next block understands (same depth, width and layout): model 1 is {m1.family} "
            f"with {m1.num_layers} layers of width {m1.hidden_size}, model 2 {m2.family} with {m2.num_layers} "
            f"of width {m2.hidden_size}"
        )
    if run1.result.token_ids != run2.result.token_ids:
        return "causal attribution needs both models to see the same tokens; their chat templates made different ones"
    return None


def is_adapter_pair(run1: LensRun, run2: LensRun, loaded2: LoadedModel) -> bool:
    """Model 2 is model 1's weights plus an adapter with modules that can be swapped out."""
    m1, m2 = run1.result.model, run2.result.model
    return (
        m1.path == m2.path
        and m1.adapter is None
        and m2.adapter is not None
        and m1.embedding_scale == m2.embedding_scale
        and bool(adapter_modules(loaded2.parts))
    )


def attribute(loaded2: LoadedModel, run1: LensRun, run2: LensRun) -> tuple[Attribution | None, str | None]:
    """Attribute the change from ``run1`` to ``run2`` to layers, with model 2 (``loaded2``) loaded.

    Returns (attribution, None), or (None, why not).
    """
    reason = why_not(run1, run2)
    if reason is not None:
        return None, reason
    if _spread_over_ranks(loaded2):
        return None, PIPELINE_REASON
    tracked_ids = [t.token_id for t in run2.result.tracked_tokens]
    tracked_text = [t.text for t in run2.result.tracked_tokens]
    start = time.perf_counter()
    runner = _Runner(loaded2, run2.result.token_ids, run2.embedding_factor)
    if is_adapter_pair(run1, run2, loaded2):
        attr = _adapter_ablation(runner, tracked_ids)
    else:
        if run1.block_outputs is None:
            return None, "activation patching needs model 1's block outputs (the run did not keep them)"
        attr = _activation_patching(runner, run1, tracked_ids)
    return Attribution(
        method=attr["method"],
        metric=METRIC,
        change=rounded(attr["change"]),
        layers=attr["layers"],
        carriers=attr["carriers"],
        carriers_share=rounded(attr["share"]) if attr["share"] is not None else None,
        threshold=THRESHOLD,
        tracked=tracked_text,
        tracked_probs=attr["tracked_probs"],
        passes=runner.passes,
        seconds=round(time.perf_counter() - start, 4),
        notes=attr["notes"],
    ), None


def _adapter_ablation(runner: _Runner, tracked_ids: Sequence[int]) -> dict[str, Any]:
    modules = adapter_modules(runner.parts)
    everything = [m for layer in sorted(modules) for m in modules[layer]]
    n = runner.n_layers
    p2, tuned = runner.final(keep=True)
    with without_adapters(everything):
        p1, base = runner.final(keep=True)
    change = _js(p1, p2)
    notes: list[str] = []
    layers: list[LayerAttribution] = []
    effects: dict[int, float] = {}
    for layer in range(n):
        if layer not in modules:
            layers.append(LayerAttribution(layer=layer, effect=0.0, changed_after=None, adapted=False))
            continue
        prefix = {i: tuned[i] for i in range(layer)}
        with without_adapters(modules[layer]):
            reverted, _ = runner.final(prefix)
        others = [m for i in sorted(modules) if i != layer for m in modules[i]]
        with without_adapters(others):
            alone, _ = runner.final({i: base[i] for i in range(layer)})
        after = _js(p1, reverted)
        effects[layer] = _share(after, change)
        layers.append(
            LayerAttribution(
                layer=layer,
                effect=rounded(effects[layer]),
                changed_after=rounded(after),
                alone=rounded(_share(_js(alone, p2), change)),
                tracked_probs=_probs(reverted, tracked_ids),
                adapted=True,
            )
        )
    carriers, share = _carriers_by_reverting(runner, modules, tuned, p1, change, effects)
    if change == 0.0:
        notes.append("both models give the same final distribution here: there is no change to attribute")
    return {
        "method": "adapter-ablation",
        "change": change,
        "layers": layers,
        "carriers": carriers,
        "share": share,
        "tracked_probs": [_probs(p1, tracked_ids), _probs(p2, tracked_ids)],
        "notes": notes,
    }


def _carriers_by_reverting(
    runner: _Runner,
    modules: dict[int, list[tuple[Any, str, Any]]],
    tuned: dict[int, Any],
    p1: np.ndarray,
    change: float,
    effects: dict[int, float],
) -> tuple[list[int], float | None]:
    """The fewest layers (by decreasing effect) whose adapters, removed together, undo ``THRESHOLD``
    of the change. Binary search over the count (more layers removed undo more, as a rule); the
    share is the one measured for the set returned."""
    # Every layer whose adapter does something (effect exactly 0: removing it changes nothing at all);
    # a layer with a negative effect alone can still be needed together with others.
    order = [layer for layer, e in sorted(effects.items(), key=lambda kv: (-kv[1], kv[0])) if e != 0.0]
    if change == 0.0 or not order:
        return [], None
    measured: dict[int, float] = {}

    def share_of(k: int) -> float:
        if k not in measured:
            chosen = sorted(order[:k])
            with without_adapters([m for i in chosen for m in modules[i]]):
                lp, _ = runner.final({i: tuned[i] for i in range(chosen[0])})
            measured[k] = _share(_js(p1, lp), change)
        return measured[k]

    lo, hi = 1, len(order)
    if share_of(hi) < THRESHOLD:
        return sorted(order), share_of(hi)
    while lo < hi:
        mid = (lo + hi) // 2
        if share_of(mid) >= THRESHOLD:
            hi = mid
        else:
            lo = mid + 1
    return sorted(order[:lo]), share_of(lo)


def _activation_patching(runner: _Runner, run1: LensRun, tracked_ids: Sequence[int]) -> dict[str, Any]:
    assert run1.block_outputs is not None
    p1 = np.asarray(run1.log_probs[-1])
    p2, _ = runner.final()
    change = _js(p1, p2)
    h1 = run1.block_outputs
    cumulative, afters, tracked = [], [], []
    for layer in range(runner.n_layers):
        patched = mx.array(h1[layer][None])
        lp, _ = runner.final({i: patched for i in range(layer + 1)})
        after = _js(p1, lp)
        afters.append(after)
        cumulative.append(_share(after, change))
        tracked.append(_probs(lp, tracked_ids))
    effects = [cumulative[0]] + [cumulative[i] - cumulative[i - 1] for i in range(1, len(cumulative))]
    layers = [
        LayerAttribution(
            layer=i,
            effect=rounded(effects[i]),
            changed_after=rounded(afters[i]),
            cumulative=rounded(cumulative[i]),
            tracked_probs=tracked[i],
        )
        for i in range(runner.n_layers)
    ]
    notes = [REVERSE_NOT_RUN]
    if change > 0 and cumulative[-1] < 0.99:
        notes.append(
            f"patching the last block's output undoes {cumulative[-1]:.0%} of the change: the rest comes from "
            "model 2's final norm and head"
        )
    carriers: list[int] = []
    total = 0.0
    if change > 0:
        for i in sorted(range(len(effects)), key=lambda i: (-effects[i], i)):
            if total >= THRESHOLD or effects[i] <= 0:
                break
            carriers.append(i)
            total += effects[i]
    return {
        "method": "activation-patching",
        "change": change,
        "layers": layers,
        "carriers": sorted(carriers),
        "share": total if carriers else None,
        "tracked_probs": [_probs(p1, tracked_ids), _probs(p2, tracked_ids)],
        "notes": notes,
    }


def reverse_patching(loaded1: LoadedModel, run1: LensRun, run2: LensRun, attribution: Attribution) -> Attribution:
    """The reverse of activation patching, with model 1 loaded (again): model 2's block-l output replaces
    model 1's, and ``reverse_cumulative`` at l = 1 - JS(patched, model 2) / change is the share of the change
    that model 2's residual stream after block l carries into model 1 (1 when every difference is in
    blocks 0..l and model 1's later blocks agree with model 2's)."""
    if attribution.method != "activation-patching" or run2.block_outputs is None or _spread_over_ranks(loaded1):
        return attribution
    start = time.perf_counter()
    runner = _Runner(loaded1, run1.result.token_ids, run1.embedding_factor)
    p2 = np.asarray(run2.log_probs[-1])
    change = float(attribution.change)
    h2 = run2.block_outputs
    layers = []
    for x in attribution.layers:
        patched = mx.array(h2[x.layer][None])
        lp, _ = runner.final({i: patched for i in range(x.layer + 1)})
        layers.append(dataclasses.replace(x, reverse_cumulative=rounded(_share(_js(lp, p2), change))))
    notes = [n for n in attribution.notes if n != REVERSE_NOT_RUN]
    return dataclasses.replace(
        attribution,
        layers=layers,
        passes=attribution.passes + runner.passes,
        seconds=round((attribution.seconds or 0.0) + time.perf_counter() - start, 4),
        notes=notes,
    )
