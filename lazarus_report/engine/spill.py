"""Lens log-probabilities at several positions, spilled to a file and read back a layer at a time."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import LazarusError

POSITION_BUDGET_BYTES = 256 * 2**20  # per model, of float32 [L, P, V] log-probabilities


def user_span(tokens: Sequence[str], formatted: str, prompt: str) -> list[int]:
    """Positions of the tokens that hold the text the user typed (the last occurrence of ``prompt``
    in the formatted prompt), found from the decoded pieces. Empty when the pieces do not spell the
    formatted text (a piece that splits a character) or the prompt is not in it."""
    text = prompt.strip()
    if not text or "".join(tokens) != formatted:
        return []
    start = formatted.rfind(text)
    if start < 0:
        return []
    end = start + len(text)
    out, pos = [], 0
    for i, piece in enumerate(tokens):
        a, b = pos, pos + len(piece)
        pos = b
        if b > start and a < end and piece.strip():
            out.append(i)
    return out


def positions_to_keep(
    n_tokens: int, user: Sequence[int], n_layers: int, vocab: int, budget: int = POSITION_BUDGET_BYTES
) -> tuple[list[int], str]:
    """The positions whose distributions are kept for the map, and a note saying which and why."""
    per_position = 4 * n_layers * vocab
    fit = max(1, budget // per_position)
    last = n_tokens - 1
    if n_tokens <= fit:
        return list(range(n_tokens)), f"all {n_tokens} positions were compared"
    span = [p for p in user if p != last]
    span = span[len(span) - min(len(span), fit - 1) :] if fit > 1 else []
    kept = sorted(set(span) | {last})
    mib = budget // 2**20
    return kept, (
        f"{len(kept)} of {n_tokens} positions were compared (the end of your text and the last position): "
        f"all of them would need more than {mib} MiB per model"
    )


class SpilledLogProbs:
    """``[L, P, V]`` float32 in a ``.npy`` file, written and read a row block at a time with plain file I/O.

    Not memory-mapped on purpose: mapped pages that were touched count in the process's resident memory
    until the map is closed (a 37-token prompt on SmolLM2 is 218 MB per model); written through the page
    cache and read back one layer at a time, the process holds one layer (``[P, V]``, 7 MB) at most.
    ``x[layer, col] = row`` / ``x[layer, a:b] = rows`` write; ``x[layer]`` reads ``[P, V]``.
    """

    def __init__(self, path: str | Path, shape: tuple[int, int, int]):
        self.path = Path(path)
        self.shape = shape
        with spill_errors(self.path), open(self.path, "wb") as fh:
            np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": shape})
            self._offset = fh.tell()
            fh.truncate(self._offset + 4 * shape[0] * shape[1] * shape[2])
        self._fh = open(self.path, "r+b")  # noqa: SIM115 (closed by flush, reopened when written again)

    def _at(self, layer: int, col: int) -> int:
        return self._offset + 4 * (layer * self.shape[1] + col) * self.shape[2]

    def __setitem__(self, key: tuple[int, int | slice], rows: np.ndarray) -> None:
        layer, cols = key
        start = (cols.start or 0) if isinstance(cols, slice) else cols
        with spill_errors(self.path):
            if self._fh.closed:
                self._fh = open(self.path, "r+b")  # noqa: SIM115
            self._fh.seek(self._at(layer, start))
            self._fh.write(np.ascontiguousarray(rows, dtype="<f4").tobytes())

    def __getitem__(self, layer: int) -> np.ndarray:
        return self.read(layer, np.empty(self.shape[1:], dtype="<f4"))

    def read(self, layer: int, out: np.ndarray, cols: Sequence[int] | None = None) -> np.ndarray:
        """Layer ``layer`` (or only its positions ``cols``) into ``out`` (``[P or len(cols), V]`` float32, C order):
        a buffer read over and over is not page-faulted in again for every layer."""
        spans: list[tuple[int, np.ndarray]] = [(0, out)] if cols is None else [(c, out[i]) for i, c in enumerate(cols)]
        with open(self.path, "rb") as fh:
            for col, view in spans:
                fh.seek(self._at(layer, col))
                if fh.readinto(view.data.cast("B")) != view.nbytes:
                    raise OSError(f"{self.path} is shorter than its shape {self.shape}")
        return out

    def flush(self) -> None:
        if not self._fh.closed:
            with spill_errors(self.path):
                self._fh.close()


@contextlib.contextmanager
def spill_errors(path: str | Path) -> Iterator[None]:
    """An ``OSError`` while writing a temporary (spill) file, most often a full ``$TMPDIR``, becomes a
    one-line ``LazarusError`` naming the file and the cause (the temporary directory is removed as usual)."""
    try:
        yield
    except OSError as exc:
        raise LazarusError(
            f"cannot write the temporary file {path}: {exc.strerror or exc} (set TMPDIR to a folder with more room)"
        ) from None


def spill_array(directory: str | Path, name: str, shape: tuple[int, int, int]) -> SpilledLogProbs:
    """``[L, P, V]`` float32 log-probabilities on disk in ``directory`` (deleted with the directory)."""
    return SpilledLogProbs(Path(directory) / f"{name}.npy", shape)


class HeadLogProbs:
    """``[L, P, V]`` lens log-probabilities computed when read, from the lens inputs ``hidden`` (``[L, P, H]`` float32)
    and a model's head, instead of spilled: what ``SpilledLogProbs`` would hold, the same float32 values (the head over
    at least ``GRID_MIN_ROWS`` rows, then ``z - lse`` as the grid writes them), with no file and only the rows read
    computed (``compare`` of a base model and its adapter: model 1's head is model 2's). ``read`` as
    ``SpilledLogProbs.read``; ``plan`` announces the reads to come, so that several layers share one head matmul
    (each costs a pass over the head's weights, whatever its rows) within ``budget_bytes`` of logits."""

    def __init__(self, parts: Any, hidden: np.ndarray, budget_bytes: int = 48 * 2**20):
        self.parts, self.hidden = parts, hidden
        self.shape = (hidden.shape[0], hidden.shape[1], int(parts.args.vocab_size))
        self.budget_rows = max(1, budget_bytes // (4 * self.shape[2]))
        self._plan: list[tuple[int, tuple[int, ...] | None]] = []
        self._ready: dict[tuple[int, tuple[int, ...] | None], np.ndarray] = {}

    def plan(self, reads: Sequence[tuple[int, Sequence[int] | None]]) -> None:
        """The ``(layer, cols)`` reads to come, in order (a read not announced is computed alone)."""
        self._plan = [(layer, None if cols is None else tuple(cols)) for layer, cols in reads]
        self._ready = {}

    def __getitem__(self, layer: int) -> np.ndarray:
        return self.read(layer, np.empty(self.shape[1:], dtype=np.float32))

    def read(self, layer: int, out: np.ndarray, cols: Sequence[int] | None = None) -> np.ndarray:
        """Layer ``layer`` (or only its positions ``cols``): ``[P or len(cols), V]`` float32 (``out`` is not needed:
        the rows come from the head matmul that computed them)."""
        key = (layer, None if cols is None else tuple(cols))
        if key not in self._ready:
            self._compute(key)
        return self._ready.pop(key)

    def _compute(self, key: tuple[int, tuple[int, ...] | None]) -> None:
        from ..lens.readout import GRID_MIN_ROWS, NonFiniteError, head_logits_np, mx, row_lse

        upcoming = self._plan[self._plan.index(key) :] if key in self._plan else [key]
        group: list[tuple[int, tuple[int, ...] | None]] = []
        blocks: list[np.ndarray] = []
        n = 0
        for layer, cols in upcoming:
            rows = self.hidden[layer] if cols is None else self.hidden[layer, list(cols)]
            if group and (n + rows.shape[0] > self.budget_rows or (layer, cols) in self._ready):
                break
            group.append((layer, cols))
            blocks.append(rows)
            n += rows.shape[0]
        if n < GRID_MIN_ROWS:  # as the grid pads: BLAS rounds a matrix of very few rows otherwise
            blocks.append(np.broadcast_to(blocks[0][:1], (GRID_MIN_ROWS - n, self.hidden.shape[2])))
        z = head_logits_np(self.parts, mx.array(np.concatenate(blocks)))[:n]
        if not np.isfinite(z).all():
            raise NonFiniteError("the model produced NaN or infinite logits: its weights are damaged or overflow")
        np.subtract(z, row_lse(z)[:, None].astype(np.float32), out=z)
        at = 0
        for (layer, cols), rows in zip(group, blocks):
            self._ready[(layer, cols)] = z[at : at + rows.shape[0]]
            at += rows.shape[0]

    def flush(self) -> None:
        """Nothing to write (``SpilledLogProbs.flush``'s counterpart)."""
