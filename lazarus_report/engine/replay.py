"""The blocks a LoRA adapter leaves alone, run once: a sweep replays the base's hidden state below the adapter.

An mlx-lm LoRA adapter adapts the last ``num_layers`` blocks; the blocks below the first adapted one compute
bit for bit what the base's do on the same tokens. A sweep runs the same batched passes on the base and then on
every checkpoint, so ``BlockReplay`` records, during the base's passes, the output of block ``start - 1``
(``[B, T, H]``, keyed by the exact padded inputs and the embedding scale) and, during a checkpoint's pass over
the same inputs, gives it back: blocks ``0 .. start - 2`` return their input unchanged and block ``start - 1``
returns the recorded state, so only the adapted blocks run. A pass whose inputs were not recorded (a case whose
generated answer differs between the models changes its batch) runs every block as usual.

Only the batched pass's main call is replayed; a shared prefix (``batched.capture_last_positions``) still runs
through every block, so each block's KV cache holds it and the attention masks are mlx-lm's own. The active
replay is a context variable (``replaying``), set around the suite's batched passes by ``commands.sweep``.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

_ACTIVE: contextvars.ContextVar[BlockReplay | None] = contextvars.ContextVar("lazarus_block_replay", default=None)


@dataclass
class BlockReplay:
    """Hidden states entering block ``start``, recorded on one model and replayed on another whose blocks below
    ``start`` are the same (``recording``: which of the two this pass is)."""

    start: int  # the first adapted block (>= 1)
    recording: bool = True
    states: dict[tuple[Any, ...], Any] = field(default_factory=dict)  # inputs -> block start-1's output
    gathered: dict[tuple[Any, ...], dict[int, Any]] = field(default_factory=dict)  # inputs -> rows of blocks < start
    replayed: int = 0  # passes that skipped the blocks below ``start``
    usable: bool = True  # False once a block's output turned out not to be a plain array (never replayed then)

    def clear(self) -> None:
        self.states.clear()
        self.gathered.clear()


def active_replay() -> BlockReplay | None:
    return _ACTIVE.get()


@contextlib.contextmanager
def replaying(replay: BlockReplay | None) -> Iterator[None]:
    """``replay`` is used by the batched passes run inside the ``with`` block (None: none is)."""
    token = _ACTIVE.set(replay)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


@contextlib.contextmanager
def around_blocks(layers: Any, key: tuple[Any, ...], sink: dict[int, Any]) -> Iterator[None]:
    """The active replay (if any) applied to one forward pass over ``layers`` (the model's blocks) whose inputs
    ``key`` names: record block ``start - 1``'s output, or skip the blocks below ``start`` with a recorded one.
    ``sink``: what the pass gathers per block (``batched._gathering``); the skipped blocks' entries are the
    recorded pass's."""
    from ..models.hooks import swapped, swapped_class

    replay = active_replay()
    if replay is None or not replay.usable or not 1 <= replay.start < len(layers):
        yield
        return
    last = layers[replay.start - 1]
    if replay.recording:
        cls = type(last)

        def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
            out = cls.__call__(self, *args, **kwargs)
            if isinstance(out, tuple):  # a family whose blocks return more than the hidden state
                replay.usable = False
            else:
                replay.states[key] = out
            return out

        with swapped([(last, swapped_class(cls, "Recording", __call__))]):
            yield
        if key in replay.states:
            from ..core.runtime import import_mlx

            import_mlx().eval(replay.states[key])
        replay.gathered[key] = {i: sink[i] for i in range(replay.start) if i in sink}
        return
    state = replay.states.get(key)
    if state is None:
        yield
        return
    replay.replayed += 1

    def passing(cls: type) -> type:
        return swapped_class(cls, "Skipped", lambda self, x, *args, **kwargs: x)

    swaps = [(layers[i], passing(type(layers[i]))) for i in range(replay.start - 1)]
    replayed = swapped_class(type(last), "Replayed", lambda self, x, *args, **kwargs: state)
    with swapped([*swaps, (last, replayed)]):
        yield
    sink.update(replay.gathered[key])
