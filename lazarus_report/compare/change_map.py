"""Where two models' predictions part: the change map, its one-sentence summary, promoted and
suppressed tokens (pure numpy and Python; no MLX).

Shapes (L captured layers, T prompt tokens, P kept positions, V vocabulary):

* The change map needs both models' lens log-probabilities at several positions, ``[L, P, V]`` float32
  each. Models load one after the other, so model 1's must outlive it: the engine writes them to a
  file in a temporary directory (``spill``; ``SpilledLogProbs``), never more than ``POSITION_BUDGET_BYTES``
  per model: all positions when they fit, otherwise the user's own text and the last position (the
  span trimmed from its start when even that does not fit). The map then shows at most
  ``MAX_COLUMNS`` of the kept positions: the user's text, the last position, and the positions where
  the divergence is largest; ``ChangeMap.position_reasons`` says why each is shown.
* ``change_summary`` works on the last position only (one JS per captured layer), which every
  comparison has: "identical through layer 21; diverges from layer 22; decisive at layer 27".
* ``token_shifts``: one layer's two ``[V]`` log-probability rows (and their log-sum-exp, to recover
  raw logits) -> the tokens whose probability rose or fell most, and each model's top tokens ranked
  by the other.

Definitions, stated once: JS is the Jensen-Shannon divergence in nats (``compare.js_divergence``);
"identical" is JS exactly 0, or at most ``NOISE_FLOOR`` (float32 round-off: the head computed in numpy
instead of MLX moves JS by 1.7e-13 nats, float32 instead of float64 by 4.9e-12, on SmolLM2); "decisive" is the layer with the
largest single-layer increase of JS at the last position.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..engine.spill import HeadLogProbs, SpilledLogProbs
from ..lens.stats import js_divergence
from ..results.codec import rounded
from ..results.comparison import ChangeCellTop, ChangeMap, ChangeSummary, TokenShift, TokenShifts

NOISE_FLOOR = 1e-6  # nats


MAX_COLUMNS = 14


USER_COLUMNS = 8  # at most this many of the user's own tokens are shown (the last ones)


LARGEST_COLUMNS = 4


CELL_TOP_K = 3


SHIFT_COUNT = 8


def _top_ids_partition(row: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` largest entries' ids of ``row``, largest first (ties: in ``argpartition``'s order)."""
    ids = np.argpartition(-row, k - 1)[:k]
    return ids[np.argsort(-row[ids], kind="stable")]


TOP_BLOCK = 64  # entries per block whose maxima bound a row's k-th largest entry from below (``top_ids``)


def top_ids(row: np.ndarray, k: int) -> np.ndarray:
    """``_top_ids_partition(row, k)``, found among few candidates: the ``k``-th largest of the maxima of
    ``TOP_BLOCK``-entry blocks is at most the row's ``k``-th largest entry (those maxima are ``k`` distinct entries),
    so every entry of the top ``k`` is at least it. When the ``k + 1`` largest entries are all distinct the top ``k``
    and their order are unique, so the answer is the same; otherwise (a tie) the full partition decides, as before."""
    blocks = row.shape[0] // TOP_BLOCK
    if blocks <= k:
        return _top_ids_partition(row, k)
    maxima = row[: blocks * TOP_BLOCK].reshape(blocks, TOP_BLOCK).max(axis=1)
    candidates = np.flatnonzero(row >= np.partition(maxima, blocks - k)[blocks - k])
    values = row[candidates]
    order = np.argsort(-values, kind="stable")[: k + 1]
    ranked = values[order]
    if (ranked[1:] == ranked[:-1]).any():  # a tie among the k + 1 largest: as the full partition orders it
        return _top_ids_partition(row, k)
    return candidates[order[:k]]


def _pick(lp_own: np.ndarray, lp_other: np.ndarray, k: int) -> tuple[list[int], list[float], list[float]]:
    """A cell's top ``k`` ids of ``lp_own`` and both rows' log-probabilities there (``_cell_tops``' numbers)."""
    ids = top_ids(lp_own, k).tolist()
    return ids, [float(lp_own[i]) for i in ids], [float(lp_other[i]) for i in ids]


def _cell_tops(
    pick: tuple[list[int], list[float], list[float]], decode: Callable[[int], str], first: bool
) -> list[ChangeCellTop]:
    out = []
    for i, own, other in zip(*pick):
        p_own, p_other = float(np.exp(np.float64(own))), float(np.exp(np.float64(other)))
        p1, p2 = (p_own, p_other) if first else (p_other, p_own)
        out.append(ChangeCellTop(int(i), decode(int(i)), rounded(p1), rounded(p2)))
    return out


def _layer(
    lp: np.ndarray | SpilledLogProbs | HeadLogProbs, layer: int, out: np.ndarray, cols: Sequence[int] | None = None
) -> np.ndarray:
    """``lp[layer]`` (``[P, V]``), or its rows ``cols``: read into ``out`` when ``lp`` is on disk (or computed when
    read: ``HeadLogProbs``)."""
    if isinstance(lp, (SpilledLogProbs, HeadLogProbs)):
        return lp.read(layer, out, cols)
    rows = np.asarray(lp[layer])
    return rows if cols is None else rows[list(cols)]


def _plan(lp: np.ndarray | SpilledLogProbs | HeadLogProbs, reads: list[tuple[int, Sequence[int] | None]]) -> None:
    """Announce the reads of ``lp`` to come (``HeadLogProbs`` computes several layers in one head matmul)."""
    if isinstance(lp, HeadLogProbs):
        lp.plan(reads)


def build_change_map(
    lp1: np.ndarray,
    lp2: np.ndarray,
    layers: Sequence[int],
    kept: Sequence[int],
    tokens: Sequence[str],
    user: Sequence[int],
    decode: Callable[[int], str],
    note: str,
    same_layers: Sequence[int] = (),
) -> ChangeMap:
    """The map over ``layers`` x the chosen columns of ``kept`` (``lp*``: ``[L, P, V]``, P = len(kept)).
    ``same_layers``: layer indices where ``lp2`` is ``lp1`` (model 2's lens read exactly model 1's input there;
    ``lp2`` holds nothing for them)."""
    n_layers, n_kept = lp1.shape[0], lp1.shape[1]
    js = np.empty((n_layers, n_kept))
    top1 = np.empty((n_layers, n_kept), dtype=np.int64)
    top2 = np.empty((n_layers, n_kept), dtype=np.int64)
    buffers = (np.empty(lp1.shape[1:], dtype=np.float32), np.empty(lp2.shape[1:], dtype=np.float32))
    same = set(same_layers)
    computed = isinstance(lp1, HeadLogProbs) or isinstance(lp2, HeadLogProbs)  # rows cost a head pass, not a read
    picks: dict[int, list[tuple[Any, Any]]] = {}
    _plan(lp1, [(li, None) for li in range(n_layers) if li not in same])
    _plan(lp2, [(li, None) for li in range(n_layers) if li not in same])
    for li in range(n_layers):  # one layer at a time: [P, V] float64 temporaries only
        if li in same:  # lp2 is lp1 there: JS exactly 0 and no flip (top1 is read only where top2 differs)
            js[li], top1[li], top2[li] = 0.0, 0, 0
            continue
        a, b = _layer(lp1, li, buffers[0]), _layer(lp2, li, buffers[1])
        # Rows equal bit for bit have JS exactly 0 (the layers below an adapter: most of a LoRA's map).
        differ = ~(a == b).all(axis=1)
        js[li] = 0.0
        if differ.any():
            js[li, differ] = js_divergence(a[differ], b[differ])
        top1[li], top2[li] = a.argmax(axis=1), b.argmax(axis=1)
        if computed:  # every cell's tops now: the shown columns of this layer need no second head pass
            picks[li] = [(_pick(a[c], b[c], CELL_TOP_K), _pick(b[c], a[c], CELL_TOP_K)) for c in range(n_kept)]
    last = len(tokens) - 1
    reasons: dict[int, list[str]] = {}
    user_kept = [p for p in kept if p in set(user) and p != last]
    for p in user_kept[-USER_COLUMNS:]:
        reasons.setdefault(p, []).append("your text")
    if last in kept:
        reasons.setdefault(last, []).append("last")
    peak = js.max(axis=0)
    for j in np.argsort(-peak, kind="stable").tolist():
        if len([p for p, r in reasons.items() if "largest JS" in r]) >= LARGEST_COLUMNS or len(reasons) >= MAX_COLUMNS:
            break
        if peak[j] <= NOISE_FLOOR:
            break
        reasons.setdefault(kept[j], []).append("largest JS")
    shown = sorted(reasons)
    cols = [list(kept).index(p) for p in shown]
    tops1, tops2 = _shown_tops(lp1, lp2, cols, same, picks, decode)
    return ChangeMap(
        layers=list(layers),
        positions=shown,
        position_reasons=[", ".join(reasons[p]) for p in shown],
        tokens=[tokens[p] for p in shown],
        js=rounded(js[:, cols].tolist()),
        flips=(top1[:, cols] != top2[:, cols]).tolist(),
        tops1=tops1,
        tops2=tops2,
        computed_positions=n_kept,
        total_positions=len(tokens),
        note=note,
    )


def _shown_tops(
    lp1: np.ndarray | SpilledLogProbs | HeadLogProbs,
    lp2: np.ndarray | SpilledLogProbs | HeadLogProbs,
    cols: list[int],
    same: set[int],
    picks: dict[int, list[tuple[Any, Any]]],
    decode: Callable[[int], str],
) -> tuple[list[Any], list[Any]]:
    """Each layer's cell tops at the shown columns ``cols`` (model 1's, model 2's): from ``picks`` where the first
    pass took them (layer index -> per kept column), else from both rows read again (``same``: ``lp2`` is ``lp1``)."""
    n_layers = lp1.shape[0]
    tops1, tops2 = [], []
    rows = (np.empty((len(cols), lp1.shape[2]), dtype=np.float32), np.empty((len(cols), lp2.shape[2]), np.float32))
    _plan(lp1, [(li, cols) for li in range(n_layers) if li not in picks])
    _plan(lp2, [(li, cols) for li in range(n_layers) if li not in same and li not in picks])
    for li in range(n_layers):
        if li in picks:
            chosen = [picks[li][c] for c in cols]
        else:
            a = _layer(lp1, li, rows[0], cols)
            b = a if li in same else _layer(lp2, li, rows[1], cols)
            chosen = [(_pick(a[i], b[i], CELL_TOP_K), _pick(b[i], a[i], CELL_TOP_K)) for i in range(len(cols))]
        tops1.append([_cell_tops(one, decode, True) for one, _ in chosen])
        tops2.append([_cell_tops(two, decode, False) for _, two in chosen])
    return tops1, tops2


def change_summary(
    layers: Sequence[int], js: Sequence[float], top2_ids: Sequence[int], top1_final_id: int
) -> ChangeSummary:
    """From last-position JS per captured layer (model-2 layers) and model 2's top-1 id per layer."""
    js = [float(x) for x in js]
    identical = [x <= NOISE_FLOOR for x in js]
    through = None
    for layer, same in zip(layers, identical):
        if not same:
            break
        through = layer
    lead = js[: list(layers).index(through) + 1] if through is not None else []
    diverges = next((layer for layer, same in zip(layers, identical) if not same), None)
    decisive, trio = None, []
    if diverges is not None:
        steps = [js[0]] + [js[i] - js[i - 1] for i in range(1, len(js))]
        k = int(np.argmax(steps))
        decisive = layers[k]
        trio = [js[k - 1] if k > 0 else 0.0, js[k], js[-1]]
    final2 = top2_ids[-1]
    from_layer = None
    for layer, tid in reversed(list(zip(layers, top2_ids))):
        if tid != final2:
            break
        from_layer = layer
    return ChangeSummary(
        noise_floor=NOISE_FLOOR,
        identical_through=through,
        exactly_identical=bool(lead) and all(x == 0.0 for x in lead),
        diverges_from=diverges,
        decisive_layer=decisive,
        decisive_js=rounded(trio),
        final_top1_from=from_layer,
        final_top1_changed=final2 != top1_final_id,
    )


def _rank(lp: np.ndarray, i: int) -> int:
    return int(1 + (lp > lp[i]).sum())


def token_shifts(
    lp1: np.ndarray,
    lp2: np.ndarray,
    layer: int,
    why: str,
    decode: Callable[[int], str],
    lse: tuple[float | None, float | None] = (None, None),
    n: int = SHIFT_COUNT,
) -> TokenShifts:
    """Promoted / suppressed tokens between two ``[V]`` log-probability rows of one layer.

    ``lse``: each row's log-sum-exp of the raw logits (logit = log-prob + lse), when known.
    """
    a, b = lp1.astype(np.float64), lp2.astype(np.float64)
    p1, p2 = np.exp(a), np.exp(b)
    delta = p2 - p1

    def shift(i: int) -> TokenShift:
        return TokenShift(
            token_id=i,
            token=decode(i),
            prob1=rounded(float(p1[i])),
            prob2=rounded(float(p2[i])),
            logit1=rounded(float(a[i] + lse[0])) if lse[0] is not None else None,
            logit2=rounded(float(b[i] + lse[1])) if lse[1] is not None else None,
            rank1=_rank(a, i),
            rank2=_rank(b, i),
        )

    def top(values: np.ndarray) -> list[int]:
        idx = np.argpartition(-values, n - 1)[:n]
        return idx[np.argsort(-values[idx], kind="stable")].tolist()

    promoted = [i for i in top(delta) if delta[i] > 0]
    suppressed = [i for i in top(-delta) if delta[i] < 0]
    return TokenShifts(
        layer=layer,
        why=why,
        promoted=[shift(i) for i in promoted],
        suppressed=[shift(i) for i in suppressed],
        top2_in_1=[shift(i) for i in top(b)[:5]],
        top1_in_2=[shift(i) for i in top(a)[:5]],
    )
