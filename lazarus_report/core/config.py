"""What a lens run is asked to do: the configuration types and their validators (no MLX, no I/O)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from .errors import LazarusError

if TYPE_CHECKING:
    pass


class LayerStrategy(str, Enum):
    """Which layers the lens reads. The last layer (the model's own prediction) is always read."""

    ALL = "all"
    EVENLY_SPACED = "evenly_spaced"
    FIRST_LAST = "first_last"
    CUSTOM = "custom"


@dataclass
class AnalysisConfig:
    layer_strategy: LayerStrategy = LayerStrategy.EVENLY_SPACED
    layer_step: int = 4
    custom_layers: list[int] | None = None
    top_k: int = 5
    track_tokens: list[str] = field(default_factory=list)
    use_chat_template: bool = True  # applied when the tokenizer has one; False = raw prompt
    embedding_scale: float | None = None  # None: the family's own (Gemma: sqrt(hidden_size))
    compute_grid: bool = True  # the layers x positions grid (HTML heatmap, JSON)
    # Only the last N prompt positions of the grid (None: every position). The command line sets it for
    # --html without -o: the heatmap shows only the last positions (``render.report_model.heatmap_positions``).
    grid_last_positions: int | None = None
    lens: str = "logit"  # "logit", "linear" / "tuned" (fitted with `lazarus lens fit`) or a lens directory
    # Other lenses read from the same forward pass beside ``lens`` (``--lens tuned,linear``: ["linear"]); "all"
    # stands for every lens available for the model (``lens.learned.store.expand_lens_list``). The primary
    # ``lens`` is what the verdict, the terminal, the Markdown and the checks use; the others are views.
    extra_lenses: list[str] = field(default_factory=list)
    # A whole answer after the prompt, read token by token (``AnalysisResult.answer``): ``answer`` is read
    # teacher-forced (the text as given); ``generate`` lets the model write up to N tokens greedily, stopping
    # at its end-of-sequence token or at one of the ``stop`` strings (cut off before it). At most one of the two.
    answer: str | None = None
    generate: int | None = None
    stop: list[str] = field(default_factory=list)

    def validate(self, num_layers: int | None = None, vocab_size: int | None = None) -> None:
        """Raise ``LazarusError`` for settings no model can run; needs no weights, so callers check
        before loading. With a model's ``num_layers`` / ``vocab_size`` (from its config, or loaded),
        layer indices and ``top_k`` are checked against them as well."""
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1:
            raise LazarusError(f"--top-k must be at least 1 (got {self.top_k})")
        if vocab_size is not None and self.top_k > vocab_size:
            raise LazarusError(f"--top-k {self.top_k} is larger than the model's vocabulary of {vocab_size} tokens")
        if isinstance(self.layer_step, bool) or not isinstance(self.layer_step, int) or self.layer_step < 1:
            raise LazarusError(f"--layer-step must be at least 1 (got {self.layer_step})")
        strategy = LayerStrategy(self.layer_strategy)
        if strategy is LayerStrategy.CUSTOM and not self.custom_layers:
            raise LazarusError("the custom layer strategy needs layer indices: --layers 0,4,8")
        if self.custom_layers is not None and strategy is not LayerStrategy.CUSTOM:
            raise LazarusError(
                f"--layers selects custom layers; it cannot be combined with the {strategy.value!r} layer strategy"
            )
        for i in self.custom_layers or []:
            if i < 0 or (num_layers is not None and i >= num_layers):
                valid = f"0..{num_layers - 1}" if num_layers is not None else "0 or more"
                has = f"this model has {num_layers} layers, " if num_layers is not None else ""
                raise LazarusError(f"layer {i} is out of range: {has}valid indices are {valid}")
        last = self.grid_last_positions
        if last is not None and (isinstance(last, bool) or not isinstance(last, int) or last < 1):
            raise LazarusError(f"grid_last_positions must be None or at least 1 (got {last!r})")
        check_embedding_scale(self.embedding_scale)
        check_lens_spec(self.lens)
        if self.extra_lenses:
            check_lens_list([self.lens, *self.extra_lenses])
        seen: set[str] = set()
        for text in self.track_tokens:
            if text == "":
                raise LazarusError("cannot track an empty string")
            check_text(text, f"tracked token {text!r}")
            if text in seen:
                raise LazarusError(f"tracked token {text!r} is given twice")
            seen.add(text)
        check_answer_options(self.answer, self.generate, self.stop)


def check_answer_options(answer: str | None, generate: int | None, stop: Sequence[str]) -> None:
    """``--answer`` / ``--generate`` / ``--stop``: one-line errors for what no model can run."""
    if answer is not None and generate is not None:
        raise LazarusError("--answer reads a given answer and --generate writes one: use one of them")
    if answer is not None:
        if not isinstance(answer, str) or answer == "":
            raise LazarusError("the answer (--answer) is empty")
        check_text(answer, "the answer (--answer)")
    if generate is not None and (isinstance(generate, bool) or not isinstance(generate, int) or generate < 1):
        raise LazarusError(f"--generate must be at least 1 token (got {generate})")
    if stop and generate is None:
        raise LazarusError("--stop ends a generated answer: it needs --generate N")
    for text in stop:
        if not isinstance(text, str) or text == "":
            raise LazarusError("a stop string (--stop) is empty")
        check_text(text, f"the stop string {text!r}")


MAX_EMBEDDING_SCALE = 1e4  # sqrt(hidden_size) of the largest models is ~130; beyond this float32 overflows


def check_embedding_scale(scale: float | None, option: str = "--embedding-scale") -> None:
    """A user's embedding scale: None (the family's own) or a finite number in (0, 10000]."""
    if scale is None:
        return
    if not (isinstance(scale, (int, float)) and 0 < scale <= MAX_EMBEDDING_SCALE):  # also false for NaN
        raise LazarusError(f"{option} must be a positive number up to {MAX_EMBEDDING_SCALE:g} (got {scale})")


LENS_KINDS = ("logit", "linear", "tuned", "jacobian")


def check_lens_spec(spec: str, option: str = "--lens") -> None:
    """A lens kind, or an existing lens directory (its content is verified when it is loaded)."""
    if not isinstance(spec, str) or not spec:
        raise LazarusError(f"{option} must be logit, linear, tuned, jacobian or a lens directory")
    if spec in LENS_KINDS:
        return
    if not os.path.isdir(spec):
        what = "is not a directory" if os.path.exists(spec) else "names no lens kind and no such directory"
        raise LazarusError(f"{option} {spec!r} {what}: choose logit, linear, tuned, jacobian or a lens directory")


LENS_ALL = "all"  # --lens all: logit plus every lens available for the model


def split_lens_spec(spec: str, option: str = "--lens") -> tuple[str, list[str]]:
    """``--lens`` as given -> (the primary lens, the other lenses), checked (``check_lens_list``) without
    loading anything. ``tuned,linear`` -> ("tuned", ["linear"]); ``all`` -> ("logit", ["all"]): the logit
    lens first, then every lens available for the model; ``tuned,all``: the tuned lens first, then the rest."""
    if not isinstance(spec, str) or ("," not in spec and spec != LENS_ALL):
        check_lens_spec(spec, option)
        return spec, []
    items = [item.strip() for item in spec.split(",")]
    check_lens_list(items, option)
    if items[0] == LENS_ALL:
        return "logit", [LENS_ALL, *items[1:]]
    return items[0], items[1:]


def check_lens_list(items: Sequence[str], option: str = "--lens") -> None:
    """Several lenses (``--lens tuned,linear``): each a kind, a lens directory or ``all``; none twice."""
    seen: set[str] = set()
    for item in items:
        if item == "":
            raise LazarusError(f"{option}: an empty lens name in the list (e.g. --lens tuned,linear)")
        if item != LENS_ALL:
            check_lens_spec(item, option)
        key = item if item in (*LENS_KINDS, LENS_ALL) else os.path.realpath(item)
        if key in seen:
            raise LazarusError(f"{option}: the lens {item!r} is given twice")
        seen.add(key)


def check_text(text: str, what: str) -> None:
    """User text must be valid Unicode: undecodable argv bytes arrive as lone surrogates."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise LazarusError(
            f"{what} is not valid UTF-8 text (an undecodable byte or a lone surrogate at character {exc.start})"
        ) from None


def select_layers(
    strategy: LayerStrategy | str,
    num_layers: int,
    step: int = 4,
    custom: Sequence[int] | None = None,
) -> list[int]:
    """Captured layer indices (sorted, unique, always ending with the last layer)."""
    last = num_layers - 1
    strategy = LayerStrategy(strategy)
    if strategy is LayerStrategy.ALL:
        layers = list(range(num_layers))
    elif strategy is LayerStrategy.FIRST_LAST:
        layers = [0, last]
    elif strategy is LayerStrategy.EVENLY_SPACED:
        if step < 1:
            raise LazarusError(f"layer step must be at least 1 (got {step})")
        layers = list(range(0, num_layers, step))
    else:
        if not custom:
            raise LazarusError(f"custom layer strategy needs --layers, e.g. --layers 0,4,8 (valid: 0..{last})")
        bad = [i for i in custom if not 0 <= i <= last]
        if bad:
            raise LazarusError(
                f"layer {bad[0]} is out of range: this model has {num_layers} layers, valid indices are 0..{last}"
            )
        layers = list(custom)
    return sorted(set(layers) | {last})
