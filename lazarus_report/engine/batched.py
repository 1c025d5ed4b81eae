"""Batched lens passes: several prompts through one forward pass (prompt suites).

A suite runs the same lens (every layer, last position, no grid) over many prompts. One forward pass
over a batch ``[B, T]`` keeps BLAS busy with larger matrices than ``B`` passes over ``[1, T_i]``, and
the head runs once over every case's captured rows.

**Right padding, and why it is exact.** Each prompt's tokens sit at positions ``0 .. T_i - 1`` of its
row and the row is padded after them to the batch's longest prompt. mlx-lm's causal mask already
stops a real token from attending to anything after it, so no real token ever sees a padding token;
the rotary positions of the real tokens are ``0 .. T_i - 1``, as when the prompt runs alone (no
offset, no position ids to shift); sliding-window masks are causal too. The lens reads each row at
its own last real position, ``T_i - 1``. What the padded positions compute is never read. The
results then differ from a run alone only by the summation order of BLAS over larger matrices
(float32 rounding: probabilities agree within 1e-4, top-1 identical; tests/test_batched.py).

**Memory.** The capture keeps only each row's last real position per layer (``[B, H]``), gathered
inside the pass, never the ``[B, T, H]`` block outputs; MLX frees each block's full output once the
next block has used it. Cases are sorted by length before they are grouped, so little is padded.

**Answers.** A case with a teacher-forced answer (``config.answer``: ``engine.answer``) runs its prompt and its
answer but the last token in its row; the pass gathers the row's last prompt position and every position that
reads an answer token, and the answer's reading is made from those rows as ``engine.analyze`` makes it. An answer
that does not ride on the prompt's pass (``AnswerPlan.rides_on_prompt`` false: a generated answer, written first
per case, or one whose first tokens merged with the prompt's last) is read in a pass of its own, as
``engine.analyze`` does; its prompt runs in the batch.

What batches and what does not: the plain lens pass (``engine.analyze`` without a grid, without the
change map's spilled positions and without block outputs), with or without an answer. Causal attribution needs every block's
output of each case: the suite runner runs those cases one at a time (and says so in the result).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.errors import LazarusError
from ..results.analysis import AnalysisConfigRecord

if TYPE_CHECKING:
    from ..core.config import AnalysisConfig
    from ..lens.learned.artefact import Lens
    from ..models.families import LensParts
    from ..models.loader import LoadedModel
    from .answer import AnswerPlan
    from .prompt import PreparedPrompt
    from .run import LensRun

# Automatic batch size: as many cases as fit in this many padded tokens per forward pass (B x longest
# prompt of the batch), at most AUTO_MAX_CASES. Measured on SmolLM2 (2-core CPU, OpenBLAS): the time per
# token stops falling beyond ~1k tokens per pass, while activation memory keeps growing with it.
AUTO_TOKEN_BUDGET = 1024
AUTO_MAX_CASES = 32
# A common prefix at least this long (tokens) runs once per forward pass (capture_last_positions).
MIN_SHARED_PREFIX = 8
# Rows of float32 head logits ([rows, V]) live at once while the head runs over a batch's captured rows.
HEAD_BUDGET_BYTES = 64 * 2**20


def check_batch_size(value: Any, option: str = "--batch-size") -> None:
    """``None`` (automatic) or a whole number >= 1."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LazarusError(f"{option} must be a whole number of cases, at least 1 (got {value})")


def plan_batches(
    lengths: Sequence[int], batch_size: int | None = None, keys: Sequence[Any] | None = None
) -> list[list[int]]:
    """Group case indices into forward passes: shortest prompts first, so each pass pads little.

    ``lengths``: tokens per case. ``batch_size``: at most this many cases per pass; ``None``: automatic
    (at most ``AUTO_MAX_CASES`` cases and about ``AUTO_TOKEN_BUDGET`` padded tokens per pass; a prompt
    longer than the budget runs alone). ``keys``: cases with equal keys are kept together (before the
    lengths decide), e.g. prompts that start alike and can share their prefix. Every index appears in
    exactly one group.
    """
    check_batch_size(batch_size)
    order = sorted(range(len(lengths)), key=lambda i: (keys[i] if keys is not None else 0, lengths[i], i))
    groups: list[list[int]] = []
    for i in order:
        if groups:
            group = groups[-1]
            rows = len(group) + 1
            if batch_size is not None:
                fits = rows <= batch_size
            else:  # sorted ascending: this case is the group's longest
                fits = rows <= AUTO_MAX_CASES and rows * lengths[i] <= AUTO_TOKEN_BUDGET
            if fits:
                group.append(i)
                continue
        groups.append([i])
    return groups


@contextlib.contextmanager
def _gathering(parts: LensParts, layer_indices: Sequence[int], rows: Any, cols: Any) -> Iterator[dict[int, Any]]:
    # As hooks.capturing, but the sink holds [B, H] per layer (each row's last real token, out[rows, cols])
    # instead of [B, T, H].
    from ..models.hooks import observing_class, swapped

    sink: dict[int, Any] = {}

    def gathering_class(cls: type, index: int) -> type:
        return observing_class(cls, "Gathering", lambda h: sink.__setitem__(index, h[rows, cols]))

    with swapped((parts.layers[i], gathering_class(type(parts.layers[i]), i)) for i in layer_indices):
        yield sink


def shared_prefix(token_ids: Sequence[Sequence[int]]) -> int:
    """Tokens every prompt starts with, leaving each at least one token of its own."""
    first, limit = token_ids[0], min(len(ids) for ids in token_ids) - 1
    n = 0
    while n < limit and all(ids[n] == first[n] for ids in token_ids):
        n += 1
    return n


def _prefix_cache(parts: LensParts) -> list[Any] | None:
    """Fresh per-layer KV caches for a shared prefix, or None where sharing is not exact and simple: only
    plain ``KVCache`` layers (a rotating sliding-window cache would need its own tiling) and no sliding window."""
    from mlx_lm.models.cache import KVCache, make_prompt_cache

    if getattr(parts.args, "sliding_window", None):
        return None
    cache = make_prompt_cache(parts.model)
    if len(cache) != len(parts.layers) or any(type(c) is not KVCache for c in cache):
        return None
    return cache


def capture_last_positions(
    parts: LensParts,
    token_ids: Sequence[Sequence[int]],
    layer_indices: Sequence[int],
    embedding_factor: float | None = None,
    share_prefix: bool = True,
    positions: Sequence[Sequence[int]] | None = None,
) -> dict[int, Any]:
    """One forward pass over several prompts (right-padded); per requested block, ``[B, H]``: each
    prompt's hidden state at its own last token, in ``token_ids`` order. ``positions``: per prompt, the
    positions to gather instead (ascending): ``[sum of their counts, H]``, prompt by prompt.

    ``share_prefix``: when the prompts start with the same ``MIN_SHARED_PREFIX`` or more tokens (a chat
    template's system prompt), that prefix runs once, its keys and values are repeated for every row, and
    only the rest of each prompt runs batched, at rotary positions after the prefix (as in generation with
    mlx-lm's KV cache). Families with sliding-window caches run the whole prompts."""
    from ..lens.readout import mx
    from ..models.hooks import embedding_scaled

    lengths = [len(ids) for ids in token_ids]
    if not lengths or min(lengths) < 1:
        raise ValueError("every prompt of a batch needs at least one token")
    if positions is None:
        positions = [[n - 1] for n in lengths]
    prefix = shared_prefix(token_ids) if share_prefix and len(token_ids) > 1 else 0
    prefix = min(prefix, *(p[0] for p in positions))  # every gathered position runs in the batched part
    cache = _prefix_cache(parts) if prefix >= MIN_SHARED_PREFIX else None
    if cache is None:
        prefix = 0
    rest = [list(ids[prefix:]) for ids in token_ids]
    width = max(len(ids) for ids in rest)
    # The padding id is never attended to by a real token; the prompt's own first token keeps it a valid id.
    padded = [ids + [ids[0]] * (width - len(ids)) for ids in rest]
    inputs = mx.array(padded, dtype=mx.int32)
    rows = mx.array([r for r, p in enumerate(positions) for _ in p], dtype=mx.int32)
    cols = mx.array([c - prefix for p in positions for c in p], dtype=mx.int32)
    with embedding_scaled(parts, embedding_factor):
        if cache is not None:
            parts.backbone(mx.array([list(token_ids[0][:prefix])], dtype=mx.int32), cache=cache)
            for c in cache:  # the prefix's keys and values, once per row (offset stays at the prefix length)
                c.keys = mx.repeat(c.keys[..., :prefix, :], len(lengths), axis=0)
                c.values = mx.repeat(c.values[..., :prefix, :], len(lengths), axis=0)
        from .replay import around_blocks

        key = (tuple(token_ids[0][:prefix]), tuple(map(tuple, padded)), tuple(map(tuple, positions)), embedding_factor)
        with _gathering(parts, layer_indices, rows, cols) as sink, around_blocks(parts.layers, key, sink):
            parts.backbone(inputs, cache=cache)  # a sweep's checkpoint may skip the blocks under its adapter
    missing = [i for i in layer_indices if i not in sink]
    if missing:  # a family whose forward skips blocks would silently break the lens
        raise RuntimeError(f"blocks {missing} were not called during the forward pass")
    out = dict(sink)
    mx.eval(list(out.values()))
    return out


@dataclass(frozen=True)
class _Case:
    index: int
    prompt: str
    config: AnalysisConfig
    prepared: PreparedPrompt
    tracked: list[Any]
    single_token: list[bool]
    tokenize_seconds: float
    answer: AnswerPlan | None = None

    @property
    def run_ids(self) -> list[int]:
        """The tokens of its row: the prompt, and its answer but the last token when the answer rides on it."""
        return list(self.prepared.token_ids) if self.answer is None else self.answer.run_ids

    @property
    def positions(self) -> list[int]:
        """The positions its row is read at: the prompt's last, then those reading the answer's later tokens."""
        last = len(self.prepared.token_ids) - 1
        if self.answer is None or not self.answer.rides_on_prompt:
            return [last]
        return list(range(last, len(self.answer.run_ids)))


def analyze_many(
    loaded: LoadedModel,
    prompts: Sequence[str],
    configs: Sequence[AnalysisConfig],
    *,
    lens: Lens,
    batch_size: int | None = None,
    on_pass: Callable[[int], None] | None = None,
) -> Iterator[tuple[int, LensRun | LazarusError]]:
    """``engine.analyze`` over many prompts, several per forward pass: yields ``(index, LensRun)``, or
    ``(index, LazarusError)`` for a prompt that cannot run (it does not stop the others), every index once,
    batch by batch (not in prompt order), so a caller can store or drop each run before the next batch.

    Every config must read the same layers with the same embedding scale and lens, and compute no grid
    (what varies per prompt: ``top_k``, ``track_tokens``, ``use_chat_template``, ``answer``, ``generate``,
    ``stop``). ``batch_size``: see
    ``plan_batches``. ``on_pass(n)``: called after each forward pass with the number of prompts it held.
    Each result's ``timings`` carry its own tokenization and an equal share of its batch's forward pass, head
    and statistics, so summed over the cases they add up to the work done.
    """
    from ..core.config import check_text, select_layers
    from .answer import plan_answer
    from .prompt import check_length, format_prompt, track_tokens

    check_batch_size(batch_size)
    if len(prompts) != len(configs):
        raise ValueError("one config per prompt")
    if not prompts:
        return
    first = configs[0]
    shared = ("layer_strategy", "layer_step", "custom_layers", "embedding_scale", "lens")
    for config in configs:
        if config.compute_grid or any(getattr(config, k) != getattr(first, k) for k in shared):
            raise ValueError("a batch shares its layers, embedding scale and lens, and computes no grid")
    n_layers = loaded.info.num_layers
    for config in configs:
        config.validate(n_layers, loaded.info.vocab_size)
    layers = select_layers(first.layer_strategy, n_layers, first.layer_step, first.custom_layers)
    info, factor = _embedding(loaded, first)

    cases: list[_Case] = []
    failed: list[tuple[int, LazarusError]] = []
    for i, (prompt, config) in enumerate(zip(prompts, configs)):
        t0 = time.perf_counter()
        try:
            check_text(prompt, "the prompt")
            prepared = format_prompt(loaded, prompt, config.use_chat_template)
            check_length(loaded, len(prepared.token_ids))
            tracked = track_tokens(loaded, config.track_tokens)
            answer = plan_answer(loaded, prepared, config, factor)  # a generated answer is written here
        except LazarusError as exc:
            failed.append((i, exc))
            continue
        single = [len(loaded.tokenizer.encode_plain(t)) == 1 for t in config.track_tokens]
        cases.append(_Case(i, prompt, config, prepared, tracked, single, time.perf_counter() - t0, answer))
    yield from failed

    from ..core.runtime import versions
    from .prompt import Decoder

    decode = Decoder(loaded.tokenizer)
    recorded = versions()  # once: importlib.metadata costs ~9 ms per call
    for group in plan_batches([len(c.run_ids) for c in cases], batch_size, _prefix_keys(cases)):
        batch = [cases[j] for j in group]
        runs = _run_batch(loaded, batch, layers, n_layers, info, factor, lens, decode, recorded)
        if on_pass is not None:
            on_pass(len(batch))
        for case, run in zip(batch, runs):
            yield case.index, _with_answer(loaded, case, run, lens, layers, decode, factor)


def _prefix_keys(cases: Sequence[_Case]) -> list[tuple[int, ...]]:
    """Per case, its first ``MIN_SHARED_PREFIX`` tokens when another case starts with them too (e.g. the chat
    template's system prompt), else ``()``: prompts that can share a prefix are batched together."""
    heads = [tuple(c.prepared.token_ids[:MIN_SHARED_PREFIX]) for c in cases]
    counts: dict[tuple[int, ...], int] = {}
    for head in heads:
        counts[head] = counts.get(head, 0) + 1
    return [head if counts[head] > 1 and len(head) == MIN_SHARED_PREFIX else () for head in heads]


def _embedding(loaded: LoadedModel, config: AnalysisConfig) -> tuple[Any, float | None]:
    """(model info as recorded, factor on the embeddings): as ``engine.analyze`` decides them."""
    info = loaded.info
    scale = config.embedding_scale if config.embedding_scale is not None else loaded.parts.reference_embedding_scale
    if scale is None:
        return info, None
    builtin = loaded.parts.builtin_embedding_scale or 1.0
    return dataclasses.replace(info, embedding_scale=scale), scale / builtin


def _gather(
    parts: LensParts, batch: list[_Case], layers: list[int], n_layers: int, factor: float | None
) -> dict[int, Any]:
    """The batch's forward pass (``capture_last_positions`` at each case's ``positions``); each case's answer rows
    (``AnswerPlan.rows`` / ``final_rows``) kept in its plan. Returns ``[B, H]`` per block: each case's last prompt
    position, as ``capture_last_positions`` gives without answers."""
    from ..lens.readout import mx

    positions = [c.positions for c in batch]
    gathered = capture_last_positions(parts, [c.run_ids for c in batch], layers, factor, positions=positions)
    firsts, at = [], 0
    for case in batch:
        n = len(case.positions)
        firsts.append(at)
        if case.answer is not None and case.answer.rides_on_prompt:
            for i in layers:
                case.answer.rows[i] = [gathered[i][at : at + n]]
            case.answer.final_rows = [gathered[n_layers - 1][at : at + n]]
        at += n
    if at == len(batch):
        return gathered
    index = mx.array(firsts, dtype=mx.int32)
    return {i: gathered[i][index] for i in gathered}


def _with_answer(
    loaded: LoadedModel,
    case: _Case,
    run: LensRun | LazarusError,
    lens: Lens,
    layers: list[int],
    decode: Any,
    factor: float | None,
) -> LensRun | LazarusError:
    """``run`` with its case's answer read from the rows its pass gathered (as ``engine.analyze`` reads it)."""
    if case.answer is None or isinstance(run, LazarusError):
        return run
    try:
        answer = case.answer.reading(loaded, lens, layers, decode, factor)
    except LazarusError as exc:
        return exc
    timings = {**run.result.timings, "answer": round(case.answer.seconds, 4)}
    return dataclasses.replace(run, result=dataclasses.replace(run.result, answer=answer, timings=timings))


def _run_batch(
    loaded: LoadedModel,
    batch: list[_Case],
    layers: list[int],
    n_layers: int,
    info: Any,
    factor: float | None,
    lens: Lens,
    decode: Any,
    recorded_versions: dict[str, str],
) -> list[LensRun | LazarusError]:
    """One forward pass over ``batch``, the head over every case's rows, then each case's statistics."""
    from ..lens.readout import NonFiniteError, head_logits_np, mx, stats_from_logits
    from ..results.analysis import AnalysisResult
    from .run import LensRun, layer_predictions_of, token_evolutions_of

    parts = loaded.parts
    t1 = time.perf_counter()
    sink = _gather(parts, batch, layers, n_layers, factor)
    # Per case: its captured layers as the lens reads them, then the last block's output (the final row).
    per_case = len(layers) + 1
    rows = mx.concatenate(
        [mx.stack([lens.translate(i, sink[i]) for i in layers], axis=1), sink[n_layers - 1][:, None, :]], axis=1
    ).reshape(len(batch) * per_case, -1)
    chunk = max(1, HEAD_BUDGET_BYTES // (4 * parts.args.vocab_size * per_case))  # cases per head matmul
    shared_seconds = time.perf_counter() - t1
    runs: list[LensRun | LazarusError] = []
    for c0 in range(0, len(batch), chunk):
        t_head = time.perf_counter()
        z = head_logits_np(parts, rows[c0 * per_case : (c0 + min(chunk, len(batch) - c0)) * per_case])
        shared_seconds += time.perf_counter() - t_head
        for j, case in enumerate(batch[c0 : c0 + chunk]):
            t_case = time.perf_counter()
            tracked_ids = [t.token_id for t in case.tracked]
            try:
                stats = stats_from_logits(z[j * per_case : (j + 1) * per_case], case.config.top_k, tracked_ids)
            except NonFiniteError as exc:
                runs.append(exc)
                continue
            ids = case.prepared.token_ids
            result = AnalysisResult(
                model=info,
                prompt=case.prompt,
                formatted_prompt=case.prepared.text,
                chat_template_applied=case.prepared.chat_template_applied,
                token_ids=list(ids),
                tokens=[decode(i) for i in ids],
                config=AnalysisConfigRecord.of(case.config),
                captured_layers=list(layers),
                layer_predictions=layer_predictions_of(stats, layers, decode),
                tracked_tokens=case.tracked,
                token_evolutions=token_evolutions_of(stats, layers, case.tracked),
                grid=None,
                versions=dict(recorded_versions),
                timings={
                    "load": round(loaded.load_seconds, 4),
                    "tokenize": round(case.tokenize_seconds, 4),
                    "lens": time.perf_counter() - t_case,  # its share of the batch is added below
                    "grid": 0.0,
                },
                lens=lens.record(),
            )
            runs.append(
                LensRun(
                    result=result,
                    log_probs=stats.log_probs,
                    tokenizer_fingerprint=loaded.tokenizer.fingerprint(),
                    single_token=case.single_token,
                    load_seconds=float(loaded.load_seconds),
                    log_sum_exp=stats.lse,
                    embedding_factor=factor,
                    decode=decode,
                )
            )
        del z
    share = shared_seconds / len(batch)
    for run in runs:
        if not isinstance(run, LazarusError):
            run.result.timings["lens"] = round(run.result.timings["lens"] + share, 4)
    return runs
