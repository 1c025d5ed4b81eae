"""The lens on a model sharded over the ranks of MLX's distributed engine (``mlx.launch``).

Launched with ``mlx.launch`` (any backend; ``ring`` over Ethernet or Thunderbolt between Macs), every
rank runs the same command. ``enable`` joins the group (``mx.distributed.init()``); when it has more
than one rank, ``load_model`` shards each model right after building it and before its weights are
materialized, so a rank only ever holds its share. Two ways, both mlx-lm's where it has them:

* ``tensor``: mlx-lm's ``Model.shard(group)`` splits every attention and MLP projection over the ranks
  (all-to-sharded in, sharded-to-all out). Each block's output is all-reduced, so every rank holds
  every hidden state and the lens runs unchanged. Needs a family with ``shard`` (llama, qwen2, qwen3)
  and attention heads, key/value heads and MLP width divisible by the number of ranks.
* ``pipeline``: each rank runs a contiguous range of blocks; rank 0 runs the last range, as mlx-lm's
  ``PipelineMixin`` splits them. mlx-lm's ``pipeline(group)`` where the family's backbone has it
  (qwen2); for the other families the same split is applied here through the blocks' classes (the
  lens's own capture mechanism): a block of another rank passes its input through and holds no
  weights, the first block of a range receives the previous range's output (``recv_like``), the last
  one sends its output on (``send``). After the forward pass every rank contributes the captured
  layers it ran and zeros elsewhere to one ``all_sum``: every rank then holds every captured layer,
  exactly (x + 0 = x).

Everything after the forward pass (the head, the statistics, the grid) runs on every rank alike, in
lockstep with the collective operations of the next forward pass; only rank 0 writes outputs
(``is_output_rank``). Embeddings, the final norm and the head stay whole on every rank in both modes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.errors import LazarusError

if TYPE_CHECKING:
    from ..results.provenance import DistributedInfo

MODES = ("auto", "tensor", "pipeline")

# Environment variables the launchers set for each rank (mlx.launch: ring, jaccl, nccl; mpirun: MPI).
_RANK_VARIABLES = ("MLX_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK")


@dataclass
class _Active:
    group: Any  # mx.distributed.Group with size() > 1
    mode: str  # as asked: auto | tensor | pipeline


_active: _Active | None = None
# Set by ``enable`` when a rank variable is set but the group has one process (a stray ``MLX_RANK=1``
# outside ``mlx.launch``): the process is alone, so it is rank 0 and writes its outputs.
_alone = False


def launch_rank() -> int:
    """This process's rank as the launcher announced it (0 when not launched), without importing MLX."""
    if _active is not None:
        return int(_active.group.rank())
    if _alone:
        return 0
    for name in _RANK_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


def launched() -> bool:
    """Whether a distributed launcher started this process (it set a rank variable)."""
    return any(os.environ.get(name) for name in _RANK_VARIABLES)


def is_output_rank() -> bool:
    """Whether this process prints and writes outputs: rank 0, or a process that was not launched."""
    return launch_rank() == 0


def enable(mode: str = "auto") -> int:
    """Join MLX's distributed group; models loaded afterwards are sharded over it when it has more than
    one rank. ``mode``: ``auto`` (tensor parallel where the family and its shapes allow it, else
    pipeline), ``tensor`` or ``pipeline``. Returns the number of ranks (1: nothing is sharded)."""
    global _active, _alone
    if mode not in MODES:
        raise LazarusError(f"unknown distributed mode {mode!r} (choose from {', '.join(MODES)})")
    from ..core.runtime import import_mlx

    mx = import_mlx()
    group = mx.distributed.init()
    size = int(group.size())
    _alone = size < 2
    if size < 2:
        if mode != "auto":
            raise LazarusError(
                f"--distributed {mode} needs several ranks: start the command with mlx.launch (docs/distributed.md)"
            )
        _active = None
        return 1
    _active = _Active(group, mode)
    return size


def disable() -> None:
    """Models loaded afterwards are not sharded (the group itself stays initialized)."""
    global _active
    _active = None


def active() -> bool:
    """Whether models loaded now are sharded."""
    return _active is not None


# --- sharding a freshly built model -----------------------------------------------------------------


@dataclass
class Shard:
    """How one loaded model was shared over the ranks (this rank's view)."""

    mode: str  # tensor | pipeline
    implementation: str  # "mlx-lm Model.shard", "mlx-lm pipeline", "lazarus pipeline"
    group: Any
    num_layers: int
    ranges: list[tuple[int, int]] | None = None  # pipeline: [start, stop) of blocks per rank

    def owns(self, layer: int) -> bool:
        if self.ranges is None:
            return True
        start, stop = self.ranges[int(self.group.rank())]
        return start <= layer < stop

    def gather(self, sink: dict[int, Any], layer_indices: Sequence[int], backbone_out: Any) -> dict[int, Any]:
        """Every captured layer's ``[B, T, H]`` state on every rank (pipeline; tensor needs nothing).

        ``sink``: the captured states of this rank's own blocks; ``backbone_out``: the backbone's output,
        whose evaluation completes this rank's sends."""
        if self.ranges is None:
            return sink
        from ..core.runtime import import_mlx

        mx = import_mlx()
        # Finish this rank's stage (its send and receive) before the collective, or two ranks could
        # wait for each other: one in all_sum, the other in recv.
        mx.eval(backbone_out, *sink.values())
        zeros = mx.zeros_like(backbone_out)  # [B, T, H], like every block's output
        stacked = mx.stack([sink.get(i, zeros) for i in layer_indices])
        total = mx.distributed.all_sum(stacked, group=self.group)
        mx.eval(total)
        return {i: total[j] for j, i in enumerate(layer_indices)}

    def describe(self, weight_bytes: int) -> DistributedInfo:
        """What the result records: ranks, mode and every rank's weight memory (one collective)."""
        from ..core.runtime import import_mlx
        from ..results.provenance import DistributedInfo

        mx = import_mlx()
        # As (MiB, remainder) in int32: one int32 would overflow past 2 GiB per rank.
        high, low = divmod(int(weight_bytes), 2**20)
        mine = mx.array([[high, low]], dtype=mx.int32)
        every = mx.distributed.all_gather(mine, group=self.group)
        mx.eval(every)
        sizes = [int(h) * 2**20 + int(lo) for h, lo in every.tolist()]
        return DistributedInfo(
            ranks=int(self.group.size()),
            mode=self.mode,
            implementation=self.implementation,
            rank_weight_bytes=sizes,
            rank_layers=[list(r) for r in self.ranges] if self.ranges is not None else None,
        )


def shard_model(model: Any, config: dict[str, Any], *, adapter: str | None = None) -> Shard | None:
    """Shard a built model (weights loaded, not yet evaluated) over the active group; None when none is."""
    if _active is None:
        return None
    from .families import LensParts

    group, asked = _active.group, _active.mode
    size = int(group.size())
    parts = LensParts.of(model, config["model_type"])
    n_layers = len(parts.layers)
    why_not_tensor = _why_not_tensor(model, parts, size, adapter)
    if asked == "tensor" and why_not_tensor:
        raise LazarusError(f"cannot shard this model with tensor parallelism over {size} ranks: {why_not_tensor}")
    if asked != "pipeline" and not why_not_tensor:
        model.shard(group)
        return Shard("tensor", "mlx-lm Model.shard", group, n_layers)
    if n_layers < size:
        tensor = f"; tensor parallelism: {why_not_tensor}" if why_not_tensor else ""
        raise LazarusError(
            f"cannot shard this {config['model_type']} model over {size} ranks: pipeline parallelism needs at "
            f"least one of its {n_layers} blocks per rank{tensor}"
        )
    return _pipeline(parts, group, n_layers)


def _why_not_tensor(model: Any, parts: Any, size: int, adapter: str | None) -> str | None:
    if not callable(getattr(model, "shard", None)):
        return f"mlx-lm has no tensor-parallel sharding for the {parts.family.name} family"
    if adapter is not None:
        return "mlx-lm cannot shard LoRA adapter layers (use --distributed pipeline, or auto)"
    args = parts.args
    heads = getattr(args, "num_attention_heads", None)
    sizes = {
        "attention heads": heads,
        "key/value heads": getattr(args, "num_key_value_heads", None) or heads,
        "MLP width": getattr(args, "intermediate_size", None),
    }
    for what, n in sizes.items():
        if not isinstance(n, int) or n % size:
            return f"its {n} {what} do not divide into {size} equal parts"
    return None


def _split(n_layers: int, size: int) -> list[tuple[int, int]]:
    """mlx-lm's ``PipelineMixin`` split: even, the low ranks get the extra blocks, rank 0 the last ones."""
    base, extra = divmod(n_layers, size)
    counts = [base + (1 if r < extra else 0) for r in range(size)]
    ranges = []
    for r in range(size):
        start = sum(counts[r + 1 :])
        ranges.append((start, start + counts[r]))
    return ranges


def _pipeline(parts: Any, group: Any, n_layers: int) -> Shard:
    import importlib

    from .mlx_lm_light import model_module

    size, rank = int(group.size()), int(group.rank())
    ranges = _split(n_layers, size)
    backbone = parts.backbone
    model_module("llama")  # makes mlx_lm.models importable without mlx-lm's heavy __init__
    mixin = importlib.import_module("mlx_lm.models.pipeline").PipelineMixin
    if mixin is not None and isinstance(backbone, mixin):
        backbone.pipeline(group)
        if (backbone.start_idx, backbone.end_idx) != ranges[rank]:  # a future mlx-lm splitting differently
            raise RuntimeError(f"mlx-lm split the blocks as {backbone.start_idx}..{backbone.end_idx}, not {ranges}")
        return Shard("pipeline", "mlx-lm pipeline", group, n_layers, ranges)
    start, stop = ranges[rank]
    blocks = parts.layers
    for i, block in enumerate(blocks):
        if not start <= i < stop:
            for key in list(block.keys()):  # its weights: never materialized (lazy) and never used
                del block[key]
            block.__class__ = _elsewhere_class(type(block))
    # rank r + 1 runs the blocks just before this rank's; rank r - 1 the ones just after.
    receive = rank + 1 if rank + 1 < size else None
    send = rank - 1 if rank > 0 else None
    if start == stop - 1:
        blocks[start].__class__ = _stage_class(type(blocks[start]), group, receive, send)
    else:
        blocks[start].__class__ = _stage_class(type(blocks[start]), group, receive, None)
        blocks[stop - 1].__class__ = _stage_class(type(blocks[stop - 1]), group, None, send)
    return Shard("pipeline", "lazarus pipeline", group, n_layers, ranges)


def _elsewhere_class(cls: type) -> type:
    """A block another rank runs: passes the residual stream through untouched."""
    from .hooks import swapped_class

    return swapped_class(cls, "Elsewhere", lambda self, x, *args, **kwargs: x)


def _stage_class(cls: type, group: Any, receive: int | None, send: int | None) -> type:
    """The first (``receive``) or last (``send``) block of this rank's range."""
    from .hooks import mx, swapped_class

    def __call__(self: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
        if receive is not None:
            x = mx.distributed.recv_like(x, receive, group=group)
        out = cls.__call__(self, x, *args, **kwargs)
        if send is not None:
            out = mx.distributed.send(out, send, group=group)
        return out

    return swapped_class(cls, "Stage", __call__)


def layers_here(parts_layers: Sequence[Any], shard: Shard) -> list[Any]:
    """The lens's block list: the block where this rank runs it, None where another rank does."""
    if shard.ranges is None:
        return list(parts_layers)
    full = list(parts_layers) + [None] * (shard.num_layers - len(parts_layers))
    return [block if shard.owns(i) else None for i, block in enumerate(full)]
