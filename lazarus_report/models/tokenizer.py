"""Tokenizers for the models the engine loads: rebuilt from a GGUF file's metadata, or wrapped HF.

A GGUF file carries no ``tokenizer.json``: it stores the vocabulary, the merges (or SentencePiece
scores), the token types and the special token ids as metadata, under llama.cpp's key names.
:func:`tokenizer_from_gguf` turns those into a ``tokenizers.Tokenizer`` that encodes exactly like the
model's own Hugging Face tokenizer, and caches its ``tokenizer.json`` so a second run needs neither
the (slow to read) vocabulary metadata nor the build. :func:`tokenizer_from_hf` wraps a tokenizer
loaded from a model directory (transformers or mlx-lm's ``TokenizerWrapper``) behind the same API.

Importing this module is cheap: ``tokenizers``, ``jinja2`` and ``platformdirs`` are imported when
first needed, and transformers, torch and mlx-lm never are.
"""

from __future__ import annotations

import hashlib
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # pragma: no cover
    import tokenizers

__all__ = [
    "SUPPORTED_PRE_TOKENIZERS",
    "GGUFTokenizer",
    "HFTokenizer",
    "Tokenizer",
    "TokenizerBuildError",
    "default_cache_dir",
    "render_chat_template",
    "tokenizer_from_gguf",
    "tokenizer_from_hf",
]

# Bump when the way a tokenizer is built from metadata changes: old cache entries are then ignored.
CACHE_FORMAT = 1

# llama.cpp's token types (tokenizer.ggml.token_type).
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = 1, 2, 3, 4, 5, 6

SPIECE_SPACE = "\u2581"  # "▁", SentencePiece's spelling of a space
_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


class TokenizerBuildError(ValueError):
    """The GGUF metadata describes a tokenizer this module cannot build (or is incomplete)."""


# --------------------------------------------------------------------------------------------
# Byte-level alphabet (GPT-2): every byte is spelled as one printable character.
# --------------------------------------------------------------------------------------------


def _bytes_to_unicode() -> dict[int, str]:
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\u00a1"), ord("\u00ac") + 1))
        + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    )
    table: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for byte in range(256):
        if byte not in table:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


BYTE_TO_CHAR: dict[int, str] = _bytes_to_unicode()
BYTE_ALPHABET: frozenset[str] = frozenset(BYTE_TO_CHAR.values())
# str.translate table from the byte alphabet to latin-1 characters (code point == byte value).
_CHAR_TO_LATIN1 = {ord(char): chr(byte) for byte, char in BYTE_TO_CHAR.items()}


def _byte_level_spelling(text: str) -> str:
    return "".join(BYTE_TO_CHAR[b] for b in text.encode("utf-8"))


def byte_level_piece_to_str(piece: str) -> str:
    """``"Ġcapital"`` -> ``" capital"``; an incomplete UTF-8 sequence shows as ``\\xNN`` escapes."""
    if not BYTE_ALPHABET.issuperset(piece):  # a token spelled in plain text, outside the byte alphabet
        return piece
    return piece.translate(_CHAR_TO_LATIN1).encode("latin-1").decode("utf-8", "backslashreplace")


def sentencepiece_piece_to_str(piece: str) -> str:
    """``"▁Paris"`` -> ``" Paris"``, ``"<0x0A>"`` -> ``"\\n"``, ``"<0xE2>"`` -> ``"\\\\xe2"``."""
    match = _BYTE_PIECE.fullmatch(piece)
    if match is not None:
        return bytes([int(match.group(1), 16)]).decode("utf-8", "backslashreplace")
    return piece.replace(SPIECE_SPACE, " ")


_PIECE_DECODERS: dict[str, Callable[[str], str]] = {
    "byte_level": byte_level_piece_to_str,
    "sentencepiece": sentencepiece_piece_to_str,
    "plain": lambda piece: piece,
}


# --------------------------------------------------------------------------------------------
# Chat templates (rendered like transformers' apply_chat_template, without importing it)
# --------------------------------------------------------------------------------------------

_TEMPLATE_CACHE: dict[str, Any] = {}


def _template_environment() -> Any:
    import jinja2
    import jinja2.ext
    import jinja2.nodes
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationBlock(jinja2.ext.Extension):
        """``{% generation %}...{% endgeneration %}`` (used to mark assistant text): renders its body."""

        tags: ClassVar[set[str]] = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_render_body"), [], [], body).set_lineno(lineno)

        def _render_body(self, caller: Any) -> str:
            return caller()

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(
        value: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None, sort_keys: bool = False
    ) -> str:
        # Like transformers: no HTML escaping (jinja's own tojson escapes <, >, &, ').
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt: str) -> str:
        from datetime import datetime

        return datetime.now().strftime(fmt)

    class TemplateDict:
        def __call__(self, *args: Any, **kwargs: Any) -> dict:
            return dict(*args, **kwargs)

        def fromkeys(self, *args: Any, **kwargs: Any) -> dict:
            return dict.fromkeys(*args, **kwargs)

    class TemplateNamespace(jinja2.utils.Namespace):
        def __init__(*args: Any, **kwargs: Any) -> None:
            self, rest = args[0], args[1:]
            attrs = dict(*rest, **kwargs)
            for name in attrs:
                TemplateNamespace._check_name(name)
            jinja2.utils.Namespace.__init__(self, attrs)

        def __setitem__(self, name: str, value: Any) -> None:
            TemplateNamespace._check_name(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

        @staticmethod
        def _check_name(name: Any) -> None:
            if isinstance(name, str) and name.startswith("_"):
                raise jinja2.exceptions.SecurityError(
                    f"chat templates cannot set underscore-prefixed namespace attributes ({name!r})"
                )

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationBlock, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    env.globals["dict"] = TemplateDict()
    env.globals["namespace"] = TemplateNamespace
    return env


def render_chat_template(template: str, prompt: str, special_tokens: Mapping[str, str | None]) -> str:
    """One user message plus the generation prompt, rendered like transformers does."""
    compiled = _TEMPLATE_CACHE.get(template)
    if compiled is None:
        compiled = _template_environment().from_string(template)
        _TEMPLATE_CACHE[template] = compiled
    tokens = {name: value for name, value in special_tokens.items() if value is not None}
    return compiled.render(
        messages=[{"role": "user", "content": prompt}],
        tools=None,
        documents=None,
        add_generation_prompt=True,
        **tokens,
    )


def _no_template_error(name: str) -> ValueError:
    return ValueError(f"{name} has no chat template; run without the chat template (raw prompt) instead")


# --------------------------------------------------------------------------------------------
# Fingerprint: vocabulary (id -> piece) plus merges (or unigram scores)
# --------------------------------------------------------------------------------------------


def _fingerprint_from_json(tokenizer_json: Mapping[str, Any]) -> str:
    model = tokenizer_json.get("model") or {}
    pieces: dict[int, str] = {}
    scores: list[float] | None = None
    vocab = model.get("vocab")
    if isinstance(vocab, Mapping):
        pieces = {int(i): str(p) for p, i in vocab.items()}
    elif isinstance(vocab, list):  # Unigram: [[piece, score], ...]
        pieces = {i: str(entry[0]) for i, entry in enumerate(vocab)}
        scores = [float(entry[1]) for entry in vocab]
    for added in tokenizer_json.get("added_tokens") or ():
        pieces.setdefault(int(added["id"]), str(added["content"]))
    merges = [
        list(m) if isinstance(m, (list, tuple)) else list(str(m).split(" ", 1)) for m in model.get("merges") or ()
    ]
    return fingerprint_of(pieces, merges, scores)


def fingerprint_of(pieces: Mapping[int, str], merges: list[list[str]] | None, scores: list[float] | None) -> str:
    digest = hashlib.sha256()
    size = max(pieces, default=-1) + 1
    digest.update(b"vocab\0")
    digest.update(json.dumps([pieces.get(i) for i in range(size)], ensure_ascii=False).encode("utf-8"))
    digest.update(b"\0merges\0")
    digest.update(json.dumps(merges or [], ensure_ascii=False).encode("utf-8"))
    if scores is not None:
        digest.update(b"\0scores\0")
        digest.update(json.dumps(scores).encode("utf-8"))
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# The API
# --------------------------------------------------------------------------------------------


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

    @abstractmethod
    def apply_chat_template(self, prompt: str) -> str:
        """``prompt`` as one user message followed by the generation prompt, as text."""

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
            return _PIECE_DECODERS[self.kind](piece)
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

    def apply_chat_template(self, prompt: str) -> str:
        if not self.chat_template:
            raise _no_template_error(self.name)
        return render_chat_template(self.chat_template, prompt, self.special_tokens)

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
        inner = getattr(tok, "_tokenizer", None)
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

    def apply_chat_template(self, prompt: str) -> str:
        if not self.chat_template:
            raise _no_template_error(getattr(self._tok, "name_or_path", None) or "this model")
        out = self._templater.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
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
                self._fingerprint = _fingerprint_from_json(json.loads(backend.to_str()))
            else:
                pieces = {i: p for p, i in self._tok.get_vocab().items()}
                self._fingerprint = fingerprint_of(pieces, None, None)
        return self._fingerprint


def tokenizer_from_hf(tok: Any) -> Tokenizer:
    """Wrap a transformers tokenizer / mlx-lm ``TokenizerWrapper`` loaded from a model directory."""
    return HFTokenizer(tok)


# --------------------------------------------------------------------------------------------
# Building from GGUF metadata
# --------------------------------------------------------------------------------------------

# Pre-tokenizer regexes, as in the models' own tokenizer.json files (and llama.cpp).
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# tokenizer.ggml.pre -> how the text is split before byte-level BPE.
_PRE_TOKENIZERS: dict[str, str] = {
    "default": "gpt2",
    "gpt2": "gpt2",
    "smollm": "digits",  # SmolLM/SmolLM2: Digits(individual_digits=True), then GPT-2's ByteLevel regex
    "starcoder": "digits",
    "refact": "digits",
    "llama-bpe": "llama3",
    "llama3": "llama3",
    "llama-v3": "llama3",
    "qwen2": "qwen2",
    "deepseek-r1-qwen": "qwen2",
}
SUPPORTED_PRE_TOKENIZERS = tuple(sorted(_PRE_TOKENIZERS))


def _byte_level_pipeline(tk: tokenizers.Tokenizer, pre: str) -> None:
    from tokenizers import Regex, decoders, normalizers, pre_tokenizers

    style = _PRE_TOKENIZERS.get(pre)
    if style is None:
        raise TokenizerBuildError(
            f"unsupported GGUF pre-tokenizer tokenizer.ggml.pre={pre!r} "
            f"(supported: {', '.join(SUPPORTED_PRE_TOKENIZERS)})"
        )
    if style == "gpt2":
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    elif style == "digits":
        tk.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
            ]
        )
    else:
        split = _LLAMA3_SPLIT if style == "llama3" else _QWEN2_SPLIT
        tk.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(split), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
        if style == "qwen2":  # Qwen2's tokenizer.json normalizes to NFC first
            tk.normalizer = normalizers.NFC()
    tk.decoder = decoders.ByteLevel()


def _generate_merges(vocab: Mapping[str, int], scores: Mapping[str, float] | None) -> list[tuple[str, str]]:
    """BPE merges implied by a vocabulary: every split of a token into two tokens, best first.

    Ordered like transformers' ``generate_merges`` (which the reference tokenizers use): by the merged
    token's score, highest first (or by id, lowest first, without scores), then the longer left part.
    """
    ranking = scores if scores is not None else vocab
    merges: list[tuple[str, str, float]] = []
    for token, rank in ranking.items():
        local = []
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in vocab and right in vocab:
                local.append((left, right, rank))
        if len(local) > 1:
            local.sort(key=lambda m: (vocab[m[0]], vocab[m[1]]))
        merges.extend(local)
    merges.sort(key=lambda m: (m[2], len(m[0]), len(m[1])), reverse=scores is not None)
    return [(m[0], m[1]) for m in merges]


def _parse_merges(merges: Any) -> list[tuple[str, str]]:
    pairs = [tuple(str(m).split(" ", 1)) for m in merges]
    bad = next((m for m in pairs if len(m) != 2), None)
    if bad is not None:
        raise TokenizerBuildError(f"malformed entry in tokenizer.ggml.merges: {' '.join(bad)!r}")
    return pairs  # type: ignore[return-value]


def _get(meta: Mapping[str, Any], key: str, default: Any = None) -> Any:
    value = meta.get(key, default)
    return default if value is None else value


def _build_from_metadata(metadata: Mapping[str, Any]) -> tuple[tokenizers.Tokenizer, dict[str, Any]]:
    from tokenizers import AddedToken, decoders, normalizers, pre_tokenizers
    from tokenizers import Tokenizer as BackendTokenizer
    from tokenizers.models import BPE

    # Plain Python values, also when handed mx.load's metadata (mx.array scalars and arrays) as is.
    meta = {
        k: (v.tolist() if hasattr(v, "tolist") else v)
        for k, v in metadata.items()
        if k.startswith(("tokenizer.", "general."))
    }

    model = _get(meta, "tokenizer.ggml.model")
    tokens = meta.get("tokenizer.ggml.tokens")
    if not model or not tokens:
        raise TokenizerBuildError("the GGUF metadata has no tokenizer (tokenizer.ggml.model / tokens missing)")
    tokens = [str(t) for t in tokens]
    token_types = [int(t) for t in (meta.get("tokenizer.ggml.token_type") or ())]
    architecture = str(_get(meta, "general.architecture", ""))
    pre = str(_get(meta, "tokenizer.ggml.pre", "default"))
    merges_meta = meta.get("tokenizer.ggml.merges")

    def special_id(name: str) -> int | None:
        value = meta.get(f"tokenizer.ggml.{name}")
        return int(value) if value is not None and 0 <= int(value) < len(tokens) else None

    ids = {name: special_id(f"{name}_id") for name in ("bos_token", "eos_token", "unknown_token", "padding_token")}
    special_tokens = {
        "bos_token": tokens[ids["bos_token"]] if ids["bos_token"] is not None else None,
        "eos_token": tokens[ids["eos_token"]] if ids["eos_token"] is not None else None,
        "unk_token": tokens[ids["unknown_token"]] if ids["unknown_token"] is not None else None,
        "pad_token": tokens[ids["padding_token"]] if ids["padding_token"] is not None else None,
    }

    if model == "gpt2":
        kind = "byte_level"
        spelled = [t if BYTE_ALPHABET.issuperset(t) else _byte_level_spelling(t) for t in tokens]
        vocab = {t: i for i, t in enumerate(spelled)}
        if merges_meta is None:
            raise TokenizerBuildError("byte-level GGUF tokenizer without tokenizer.ggml.merges")
        merges = _parse_merges(merges_meta)
        backend = BackendTokenizer(
            BPE(
                vocab=vocab,
                merges=merges,
                dropout=None,
                continuing_subword_prefix="",
                end_of_word_suffix="",
                fuse_unk=False,
            )
        )
        _byte_level_pipeline(backend, pre)
        control_ok = BYTE_ALPHABET.issuperset  # a "control" token spelled outside the alphabet is a mislabel
        add_bos_default = False
    elif model == "llama":
        kind = "sentencepiece"
        unk = special_tokens["unk_token"] or "<unk>"
        if architecture in ("gemma", "gemma2", "gemma3"):
            # Gemma files store runs of spaces as real spaces; its tokenizer spells them "▁▁".
            spelled = [SPIECE_SPACE * len(t) if " " in t and not t.strip() else t for t in tokens]
            vocab = {t: i for i, t in enumerate(spelled)}
            # No merges in the file, and the scores don't follow the merge order: the file order does.
            merges = _generate_merges(vocab, {t: -i for i, t in enumerate(spelled)})
            backend = BackendTokenizer(
                BPE(vocab=vocab, merges=merges, fuse_unk=True, unk_token=unk, dropout=None, byte_fallback=True)
            )
            backend.normalizer = normalizers.Replace(" ", SPIECE_SPACE)
            backend.pre_tokenizer = pre_tokenizers.Split(pattern=" ", behavior="merged_with_previous", invert=False)
        else:
            spelled = list(tokens)
            vocab = {t: i for i, t in enumerate(spelled)}
            if merges_meta is not None:
                merges = _parse_merges(merges_meta)
            else:
                scores = meta.get("tokenizer.ggml.scores")
                if scores is None:
                    raise TokenizerBuildError("SentencePiece GGUF tokenizer with neither merges nor scores")
                merges = _generate_merges(vocab, dict(zip(spelled, (float(s) for s in scores), strict=False)))
            backend = BackendTokenizer(
                BPE(
                    vocab=vocab,
                    merges=merges,
                    fuse_unk=True,
                    unk_token=unk if unk in vocab else None,
                    dropout=None,
                    byte_fallback=True,
                )
            )
            prefix = bool(_get(meta, "tokenizer.ggml.add_space_prefix", True))
            backend.pre_tokenizer = pre_tokenizers.Metaspace(
                replacement=SPIECE_SPACE, prepend_scheme="first" if prefix else "never", split=False
            )
        backend.decoder = decoders.Sequence(
            [decoders.Replace(SPIECE_SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
        )
        control_ok = None
        add_bos_default = True  # llama.cpp adds BOS to a SentencePiece vocabulary that does not say otherwise
    else:
        raise TokenizerBuildError(
            f"unsupported GGUF tokenizer tokenizer.ggml.model={model!r} (supported: 'gpt2', 'llama')"
        )

    # Control tokens (type 3) are special tokens; user-defined ones (type 4, like "<think>") are added
    # tokens. Both are matched whole in the raw text instead of being cut into pieces.
    control = [
        AddedToken(t, normalized=False, special=True)
        for t, tt in zip(tokens, token_types, strict=False)
        if tt == TOKEN_CONTROL and (control_ok is None or control_ok(t))
    ]
    if control:
        backend.add_special_tokens(control)
    user_defined = [
        AddedToken(t, normalized=False, special=False)
        for t, tt in zip(tokens, token_types, strict=False)
        if tt == TOKEN_USER_DEFINED and t in vocab
    ]
    if user_defined:
        backend.add_tokens(user_defined)
    # Named special tokens that are not marked control are still matched whole (as transformers does).
    added = {str(t) for t in control}
    named = [
        AddedToken(t, normalized=False, special=True)
        for t in dict.fromkeys(v for v in special_tokens.values() if v is not None)
        if t not in added and t in vocab
    ]
    if named:
        backend.add_special_tokens(named)

    missing = {i: t for i, t in enumerate(tokens) if vocab.get(spelled[i]) != i}
    pieces = {i: t for t, i in vocab.items()}
    for token_id, added_token in backend.get_added_tokens_decoder().items():
        pieces.setdefault(int(token_id), str(added_token.content))
    add_bos = meta.get("tokenizer.ggml.add_bos_token")
    add_eos = meta.get("tokenizer.ggml.add_eos_token")
    template = meta.get("tokenizer.chat_template")
    info = {
        "kind": kind,
        "vocab_size": len(tokens),
        "bos_token_id": ids["bos_token"],
        "eos_token_id": ids["eos_token"],
        "add_bos_token": bool(add_bos_default if add_bos is None else add_bos),
        "add_eos_token": bool(add_eos) if add_eos is not None else False,
        "special_tokens": special_tokens,
        "chat_template": str(template) if template else None,
        "missing_pieces": {
            str(i): (_byte_level_spelling(t) if kind == "byte_level" else t) for i, t in missing.items()
        },
        "fingerprint": fingerprint_of(pieces, [list(m) for m in merges], None),
        "name": str(meta.get("general.name") or "") or None,
        "model": model,
        "pre": pre,
        "architecture": architecture,
    }
    return backend, info


# --------------------------------------------------------------------------------------------
# The cache
# --------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    from .cache import cache_root

    return cache_root() / "tokenizers"


def _cache_key(path: Path) -> tuple[str, dict[str, Any]]:
    resolved = path.resolve()
    stat = resolved.stat()
    import tokenizers

    source = {
        "path": str(resolved),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "format": CACHE_FORMAT,
        "tokenizers": tokenizers.__version__,  # a newer library may write JSON an older one cannot read
    }
    # "<path hash>-<version hash>": entries for an older version of the same file can be found and removed.
    path_key = hashlib.sha256(str(resolved).encode("utf-8")).hexdigest()[:16]
    version_key = hashlib.sha256(json.dumps(source, sort_keys=True).encode("utf-8")).hexdigest()[:16]
    return f"{path_key}-{version_key}", source


def _atomic_write(target: Path, data: bytes) -> None:
    from ..result import write_bytes_atomic

    target.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(target, data)


def _cache_paths(cache_dir: Path, key: str) -> tuple[Path, Path]:
    return cache_dir / f"{key}.tokenizer.json", cache_dir / f"{key}.meta.json"


def _load_cached(cache_dir: Path, key: str, source: Mapping[str, Any]) -> GGUFTokenizer | None:
    """The cached tokenizer, or None when there is none or it is not exactly what was written."""
    from tokenizers import Tokenizer as BackendTokenizer

    tok_path, meta_path = _cache_paths(cache_dir, key)
    try:
        info = json.loads(meta_path.read_bytes())
        if not isinstance(info, dict) or info.get("source") != dict(source):
            return None
        data = tok_path.read_bytes()
        if hashlib.sha256(data).hexdigest() != info.get("tokenizer_sha256"):
            from .cache import warn_cache_discarded

            warn_cache_discarded(tok_path, "tokenizer.json does not match its recorded sha256")
            return None
        return GGUFTokenizer(BackendTokenizer.from_str(data.decode("utf-8")), info)
    except Exception:  # missing, unreadable or corrupt: rebuild
        return None


def _store(
    cache_dir: Path, key: str, source: Mapping[str, Any], backend: tokenizers.Tokenizer, info: dict[str, Any]
) -> None:
    tok_path, meta_path = _cache_paths(cache_dir, key)
    data = backend.to_str().encode("utf-8")
    record = dict(info, source=dict(source), tokenizer_sha256=hashlib.sha256(data).hexdigest())
    # tokenizer.json first, the small meta file last: the meta file's hash makes a half-written pair fail.
    _atomic_write(tok_path, data)
    _atomic_write(meta_path, json.dumps(record, ensure_ascii=False).encode("utf-8"))
    # Entries for earlier versions of this file (another size or mtime) will never be read again.
    path_key = key.split("-", 1)[0]
    # So are temporaries of a write that was killed (a concurrent writer that loses its temporary
    # here only skips caching: its rename fails with OSError, which the caller ignores).
    for stale in [*cache_dir.glob(f"{path_key}-*"), *cache_dir.glob(f".{path_key}-*.tmp")]:
        if not stale.name.startswith(key):
            try:
                stale.unlink()
            except OSError:
                pass


MetadataSource = Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None


def tokenizer_from_gguf(
    path: str | Path,
    metadata: MetadataSource = None,
    cache_dir: Path | None = None,
) -> GGUFTokenizer:
    """The tokenizer of a GGUF file, from the cache when its ``tokenizer.json`` was built before.

    ``metadata`` is the file's metadata as plain Python values, a callable returning it (called only
    when the tokenizer has to be built), or None to read it with ``read_gguf_metadata``. The cache
    lives in ``cache_dir`` (default: :func:`default_cache_dir`), keyed by the file's resolved path,
    size and mtime; an entry that cannot be read or does not match its recorded hash is rebuilt.
    """
    path = Path(path)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key, source = _cache_key(path)

    cached = _load_cached(cache_dir, key, source)
    if cached is not None:
        return cached
    if metadata is None:
        from .gguf_metadata import read_gguf_metadata

        meta: Mapping[str, Any] = read_gguf_metadata(path)
    elif callable(metadata):
        meta = metadata()
    else:
        meta = metadata
    backend, info = _build_from_metadata(meta)
    if not info.get("name"):
        info["name"] = path.name
    try:
        _store(cache_dir, key, source, backend, info)
    except OSError:
        pass  # a read-only cache only costs the next run a rebuild
    return GGUFTokenizer(backend, info)
