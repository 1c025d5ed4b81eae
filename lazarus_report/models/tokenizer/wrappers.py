"""The ``Tokenizer`` API the engine uses, and its two implementations: ``GGUFTokenizer`` (a ``tokenizers``
backend rebuilt from GGUF metadata) and ``HFTokenizer`` (a transformers tokenizer or mlx-lm's wrapper)."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import tokenizers

from lazarus_report.models.tokenizer.chat_template import no_template_error, render_chat_template
from lazarus_report.models.tokenizer.fingerprint import fingerprint_from_json, fingerprint_of
from lazarus_report.models.tokenizer.pieces import PIECE_DECODERS, SPIECE_SPACE


class Tokenizer(ABC):
    """What the engine needs from a tokenizer, whichever way the model was loaded."""

    vocab_size: int
    chat_template: str | None
    bos_token_id: int | None
    eos_token_id: int | None
    kind: str  # "byte_level" (GPT-2 style "Ġ"), "sentencepiece" ("▁", <0xNN>) or "plain"

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Ids of ``text``, with BOS (and EOS) added exactly when the model's tokenizer adds them."""

    @abstractmethod
    def encode_plain(self, text: str) -> list[int]:
        """Ids of ``text`` with nothing added (for tracked tokens such as ``" Paris"``)."""

    def apply_chat_template(self, prompt: str) -> str:
        """``prompt`` as one user message followed by the generation prompt, as text."""
        return self.render_messages([{"role": "user", "content": prompt}], add_generation_prompt=True)

    @abstractmethod
    def render_messages(self, messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
        """A conversation (``role`` / ``content`` dicts) as the model's chat template renders it, as text.
        Raises ``ValueError`` when there is no template; the template's own exception when it refuses
        the conversation (e.g. roles it does not support)."""

    @abstractmethod
    def decode(self, token_ids: list[int]) -> str:
        """The text of a sequence of ids (special tokens kept), as the model's tokenizer decodes it."""

    @property
    def eos_token_ids(self) -> set[int]:
        """The ids that end a generated answer."""
        return set() if self.eos_token_id is None else {int(self.eos_token_id)}

    @abstractmethod
    def _piece(self, token_id: int) -> str | None:
        """The vocabulary entry of ``token_id`` (``"Ġcapital"``), or None when there is none."""

    def token_to_str(self, token_id: int) -> str:
        """The piece as the model sees it, as text; never raises, never yields U+FFFD for bad UTF-8.

        An id with no vocabulary entry (e.g. a padded embedding row) reads ``<id 123>``.
        """
        token_id = int(token_id)
        piece = self._piece(token_id) if token_id >= 0 else None
        if piece is None:
            return f"<id {token_id}>"
        try:
            return PIECE_DECODERS[self.kind](piece)
        except Exception:  # pragma: no cover - defensive: a display helper must not fail
            return piece

    @abstractmethod
    def fingerprint(self) -> str:
        """sha256 (hex) of the vocabulary (id -> piece) plus the merges (or unigram scores)."""


class GGUFTokenizer(Tokenizer):
    """A ``tokenizers.Tokenizer`` rebuilt from GGUF metadata, plus what the metadata says around it."""

    def __init__(self, backend: tokenizers.Tokenizer, info: Mapping[str, Any]):
        self._backend = backend
        self._info = dict(info)
        self.kind = info["kind"]
        self.vocab_size = int(info["vocab_size"])
        self.chat_template = info.get("chat_template")
        self.bos_token_id = info.get("bos_token_id")
        self.eos_token_id = info.get("eos_token_id")
        self.add_bos_token = bool(info.get("add_bos_token"))
        self.add_eos_token = bool(info.get("add_eos_token"))
        self.special_tokens: dict[str, str | None] = dict(info.get("special_tokens") or {})
        self._missing = {int(k): v for k, v in (info.get("missing_pieces") or {}).items()}
        self.name = info.get("name") or "this GGUF model"

    @property
    def backend(self) -> tokenizers.Tokenizer:
        """The underlying ``tokenizers.Tokenizer``."""
        return self._backend

    def encode(self, text: str) -> list[int]:
        ids = self.encode_plain(text)
        if self.add_bos_token and self.bos_token_id is not None:
            ids.insert(0, self.bos_token_id)
        if self.add_eos_token and self.eos_token_id is not None:
            ids.append(self.eos_token_id)
        return ids

    def encode_plain(self, text: str) -> list[int]:
        return list(self._backend.encode(text, add_special_tokens=False).ids)

    def decode(self, token_ids: list[int]) -> str:
        return str(self._backend.decode([int(i) for i in token_ids], skip_special_tokens=False))

    def render_messages(self, messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
        if not self.chat_template:
            raise no_template_error(self.name)
        return render_chat_template(self.chat_template, messages, self.special_tokens, add_generation_prompt)

    def _piece(self, token_id: int) -> str | None:
        if token_id in self._missing:
            return self._missing[token_id]
        if token_id >= self.vocab_size:
            return None
        return self._backend.id_to_token(token_id)

    def fingerprint(self) -> str:
        return str(self._info["fingerprint"])


class HFTokenizer(Tokenizer):
    """A transformers tokenizer, or mlx-lm's ``TokenizerWrapper`` around one, behind the same API."""

    def __init__(self, tok: Any):
        # mlx-lm's TokenizerWrapper keeps the transformers tokenizer as ``_tokenizer`` (a transformers
        # tokenizer's own ``_tokenizer`` is the Rust backend, which has no convert_ids_to_tokens).
        inner: Any = getattr(tok, "_tokenizer", None)
        is_wrapper = inner is not None and hasattr(inner, "convert_ids_to_tokens")
        self._tok = inner if is_wrapper else tok
        # Chat templates go through the wrapper: mlx-lm may render with its own code (custom
        # renderers) and passes the thinking switch the way its generate does.
        self._templater = tok
        template = getattr(self._tok, "chat_template", None)
        if isinstance(template, Mapping):  # several named templates: transformers uses "default"
            template = template.get("default") or next(iter(template.values()), None)
        if not template and is_wrapper and getattr(tok, "has_chat_template", False):
            template = "(chat template rendered by mlx-lm)"
        self.chat_template = str(template) if template else None
        self.bos_token_id = getattr(self._tok, "bos_token_id", None)
        self.eos_token_id = getattr(self._tok, "eos_token_id", None)
        self.vocab_size = len(self._tok)
        self.kind = self._detect_kind()
        self._fingerprint: str | None = None

    def _backend(self) -> Any:
        return getattr(self._tok, "backend_tokenizer", None)

    def _detect_kind(self) -> str:
        backend = self._backend()
        if backend is not None:
            parts = []
            for component in (backend.decoder, backend.pre_tokenizer):
                if component is not None:
                    try:
                        parts.append(component.__getstate__().decode("utf-8", "replace"))
                    except Exception:  # pragma: no cover
                        parts.append(repr(component))
            described = " ".join(parts)
            if "ByteLevel" in described:
                return "byte_level"
            if "ByteFallback" in described or "Metaspace" in described or SPIECE_SPACE in described:
                return "sentencepiece"
        vocab = self._tok.get_vocab()
        if any(p.startswith("Ġ") for p in list(vocab)[:5000]):
            return "byte_level"
        if any(SPIECE_SPACE in p for p in list(vocab)[:5000]):
            return "sentencepiece"
        return "plain"

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text))

    def encode_plain(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False))

    def decode(self, token_ids: list[int]) -> str:
        return str(self._tok.decode([int(i) for i in token_ids], skip_special_tokens=False))

    @property
    def eos_token_ids(self) -> set[int]:
        # mlx-lm's wrapper adds the generation config's end ids (e.g. Llama 3's <|eot_id|>) to the tokenizer's
        ids = getattr(self._templater, "eos_token_ids", None)
        return {int(i) for i in ids} if ids else super().eos_token_ids

    def render_messages(self, messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
        if not self.chat_template:
            raise no_template_error(getattr(self._tok, "name_or_path", None) or "this model")
        out = self._templater.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        return out if isinstance(out, str) else str(out)

    def _piece(self, token_id: int) -> str | None:
        if token_id >= self.vocab_size:
            return None
        piece = self._tok.convert_ids_to_tokens(token_id)
        return piece if isinstance(piece, str) else None

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            backend = self._backend()
            if backend is not None:
                self._fingerprint = fingerprint_from_json(json.loads(backend.to_str()))
            else:
                pieces = {i: p for p, i in self._tok.get_vocab().items()}
                self._fingerprint = fingerprint_of(pieces, None, None)
        return self._fingerprint


def tokenizer_from_hf(tok: Any) -> Tokenizer:
    """Wrap a transformers tokenizer / mlx-lm ``TokenizerWrapper`` loaded from a model directory."""
    return HFTokenizer(tok)
