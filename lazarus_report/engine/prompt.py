"""Prompt preparation: the chat template, token ids, tracked tokens, the context limit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.errors import LazarusError
from ..results.analysis import TrackedToken

if TYPE_CHECKING:
    from ..models.loader import LoadedModel


@dataclass(frozen=True)
class PreparedPrompt:
    """What a prompt becomes for one model, before any forward pass."""

    text: str  # what is tokenized (chat template applied or not)
    chat_template_applied: bool
    token_ids: list[int]


def format_prompt(loaded: LoadedModel, prompt: str, use_chat_template: bool = True) -> PreparedPrompt:
    """Apply the chat template (when asked and the tokenizer has one) and tokenize."""
    if not prompt or not prompt.strip():
        raise LazarusError("the prompt is empty")
    tok = loaded.tokenizer
    if use_chat_template and tok.chat_template:
        try:
            formatted = tok.apply_chat_template(prompt)
        except LazarusError:
            raise
        except Exception as exc:
            raise LazarusError(
                f"the model's chat template failed: {exc}; use --raw to analyze the prompt as is"
            ) from None
        # The template writes BOS itself where the model wants one.
        return PreparedPrompt(formatted, True, tok.encode_plain(formatted))
    return PreparedPrompt(prompt, False, tok.encode(prompt))


def track_tokens(loaded: LoadedModel, texts: Sequence[str]) -> list[TrackedToken]:
    """The tracked strings as this model's tokenizer sees them (the first token of each is followed)."""
    out = []
    for text in texts:
        if text == "":
            raise LazarusError("cannot track an empty string")
        ids = loaded.tokenizer.encode_plain(text)
        if not ids:
            raise LazarusError(f"tracked token {text!r} encodes to no tokens for this model")
        out.append(
            TrackedToken(text=text, token_id=ids[0], token=loaded.tokenizer.token_to_str(ids[0]), num_tokens=len(ids))
        )
    return out


def check_length(loaded: LoadedModel, n_tokens: int, what: str = "the prompt") -> None:
    """``n_tokens`` (of ``what``: the prompt, or the prompt and its answer) fit the model's context."""
    if not n_tokens:
        raise LazarusError("the prompt encodes to no tokens")
    if loaded.context_length and n_tokens > loaded.context_length:
        raise LazarusError(f"{what} is {n_tokens} tokens, longer than the model's context of {loaded.context_length}")
    if loaded.unsupported_window and n_tokens > loaded.unsupported_window:
        raise LazarusError(
            f"{what} is {n_tokens} tokens, longer than this model's sliding attention window of "
            f"{loaded.unsupported_window}, which mlx-lm does not implement for {loaded.info.family}: "
            "the lens would be wrong; use a shorter prompt"
        )


class Decoder:
    """token id -> text, memoised (grids repeat the same ids many times)."""

    def __init__(self, tokenizer: Any):
        self._tok = tokenizer
        self._cache: dict[int, str] = {}

    def __call__(self, token_id: int) -> str:
        s = self._cache.get(token_id)
        if s is None:
            s = self._cache[token_id] = self._tok.token_to_str(token_id)
        return s
