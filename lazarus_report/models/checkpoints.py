"""The training checkpoints of an mlx-lm adapter folder, found and checked without MLX (for ``sweep``).

mlx-lm's LoRA trainer writes ``{iteration:07d}_adapters.safetensors`` every ``--save-every`` iterations
beside ``adapters.safetensors`` (the latest weights) and ``adapter_config.json``; each checkpoint file is
read with the folder's config (``adapters.adapter_files``). Every checkpoint of a sweep is checked here
before any model loads: its config, its weight kind, and its tensors' names and shapes against the
folder's other checkpoints and the config's rank, so a checkpoint with wrong shapes stops the run at once.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import LazarusError
from .adapters import adapter_files, check_adapter, tensor_shapes

CHECKPOINT_NAME = re.compile(r"^(\d+)_adapters\.safetensors$")
FINAL_NAME = "adapters.safetensors"


@dataclass(frozen=True)
class Checkpoint:
    """One step of a sweep: an adapter (a checkpoint file or a folder) or a whole model."""

    label: str  # how outputs name the step: "step 100", or the path given
    step: int | None  # the training iteration, from the file name; None when unknown
    adapter: str | None  # what the loader applies (a checkpoint file or a folder); None for a model
    model: str | None  # a model of its own (--models); None for an adapter over the base
    sha256: str | None  # of the adapter weights file (the key a resumed sweep matches); None for a model


def step_of(path: Path) -> int | None:
    """The training iteration in a checkpoint's file name (``0000100_adapters.safetensors`` -> 100)."""
    match = CHECKPOINT_NAME.match(path.name)
    return int(match.group(1)) if match else None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise LazarusError(f"cannot read {path}: {exc.strerror or exc}") from None
    return digest.hexdigest()


def folder_checkpoints(folder: str) -> list[Checkpoint]:
    """Every checkpoint of an adapter folder in training order; ``adapters.safetensors`` last, as the final
    step, unless it is byte for byte the last numbered checkpoint (mlx-lm writes both at a save)."""
    path = Path(folder)
    if not path.is_dir():
        raise LazarusError(f"no adapter folder at {folder}")
    if not (path / "adapter_config.json").is_file():
        raise LazarusError(f"no LoRA adapter at {folder} (expected a directory with adapter_config.json)")
    numbered = sorted(
        (p for p in path.iterdir() if CHECKPOINT_NAME.match(p.name) and p.is_file()),
        key=lambda p: (step_of(p), p.name),
    )
    final = path / FINAL_NAME
    if not numbered and not final.is_file():
        raise LazarusError(f"adapter folder {folder} holds no checkpoints (no *_adapters.safetensors or {FINAL_NAME})")
    steps = [_adapter_step(str(p), f"step {step_of(p)}") for p in numbered]
    if final.is_file():
        last = steps[-1] if steps else None
        digest = file_sha256(final)
        if last is None or last.sha256 != digest:
            steps.append(Checkpoint("final", None, str(final), None, digest))
    return steps


def listed_checkpoints(adapters: list[str]) -> list[Checkpoint]:
    """The steps of an explicit list of adapters (folders or checkpoint files), in the order given."""
    out = []
    for adapter in adapters:
        _, weights = adapter_files(adapter)
        step = step_of(weights)
        out.append(_adapter_step(adapter, f"step {step}" if step is not None else adapter))
    return out


def model_steps(models: list[str]) -> list[Checkpoint]:
    """The steps of an explicit list of models (each a whole model: never resumed, as no digest is taken)."""
    return [Checkpoint(model, None, None, model, None) for model in models]


def _adapter_step(adapter: str, label: str) -> Checkpoint:
    _, weights = adapter_files(adapter)
    step = step_of(weights)
    digest = file_sha256(weights) if weights.is_file() else None
    return Checkpoint(label, step, adapter, None, digest)


def check_checkpoints(steps: list[Checkpoint]) -> None:
    """Each adapter checked (``adapters.check_adapter``), and its tensors against the config's rank and the
    first checkpoint of the same folder: the same names, dtypes and shapes. ``LazarusError`` otherwise."""
    if not steps:
        raise LazarusError("a sweep needs at least one checkpoint")
    first_of: dict[Path, tuple[str, dict[str, tuple[str, tuple[int, ...]]]]] = {}
    for step in steps:
        if step.adapter is None:
            continue
        check_adapter(step.adapter)
        folder, weights = adapter_files(step.adapter)
        shapes = tensor_shapes(weights)
        _check_rank(folder, weights, shapes)
        key = folder.resolve()
        if key not in first_of:
            first_of[key] = (str(weights), shapes)
            continue
        first, expected = first_of[key]
        for name, (_, shape) in shapes.items():
            if name not in expected:
                raise LazarusError(f"checkpoint {weights} does not match {first}: it holds {name}, which {first} lacks")
            if expected[name][1] != shape:
                raise LazarusError(
                    f"checkpoint {weights} does not match {first}: {name} has shape {list(shape)}, "
                    f"not {list(expected[name][1])}"
                )
        missing = sorted(set(expected) - set(shapes))
        if missing:
            raise LazarusError(f"checkpoint {weights} does not match {first}: {missing[0]} is missing")


def _check_rank(folder: Path, weights: Path, shapes: dict[str, tuple[str, tuple[int, ...]]]) -> None:
    """LoRA tensors are ``lora_a [in, rank]`` and ``lora_b [rank, out]``: the rank is the config's."""
    try:
        cfg = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        rank = cfg["lora_parameters"]["rank"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # check_adapter has said what is wrong with the config
    for name, (_, shape) in shapes.items():
        leaf = name.rsplit(".", 1)[-1]
        if leaf not in ("lora_a", "lora_b"):
            continue
        if len(shape) != 2 or (shape[1] if leaf == "lora_a" else shape[0]) != rank:
            raise LazarusError(
                f"checkpoint {weights}: {name} has shape {list(shape)}, which does not fit rank {rank} "
                "(adapter_config.json)"
            )
