"""A ``tokenizers.Tokenizer`` rebuilt from GGUF metadata (llama.cpp's key names): byte-level BPE (GPT-2,
SmolLM, Llama 3, Qwen2 pre-tokenizers) and SentencePiece BPE (Llama, Gemma), special and user-defined tokens."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # pragma: no cover
    import tokenizers

from lazarus_report.models.tokenizer.fingerprint import fingerprint_of
from lazarus_report.models.tokenizer.pieces import BYTE_ALPHABET, SPIECE_SPACE, byte_level_spelling

# llama.cpp's token types (tokenizer.ggml.token_type).
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = 1, 2, 3, 4, 5, 6


class TokenizerBuildError(ValueError):
    """The GGUF metadata describes a tokenizer this module cannot build (or is incomplete)."""


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


def build_from_metadata(metadata: Mapping[str, Any]) -> tuple[tokenizers.Tokenizer, dict[str, Any]]:
    meta = _plain_metadata(metadata)
    model = _get(meta, "tokenizer.ggml.model")
    tokens = meta.get("tokenizer.ggml.tokens")
    if not model or not tokens:
        raise TokenizerBuildError("the GGUF metadata has no tokenizer (tokenizer.ggml.model / tokens missing)")
    tokens = [str(t) for t in tokens]
    token_types = [int(t) for t in (meta.get("tokenizer.ggml.token_type") or ())]
    architecture = str(_get(meta, "general.architecture", ""))
    pre = str(_get(meta, "tokenizer.ggml.pre", "default"))
    ids, special_tokens = _special_tokens(meta, tokens)

    if model == "gpt2":
        kind = "byte_level"
        built = _byte_level(meta, tokens, pre)
        control_ok = BYTE_ALPHABET.issuperset  # a "control" token spelled outside the alphabet is a mislabel
        add_bos_default = False
    elif model == "llama":
        kind = "sentencepiece"
        built = _sentencepiece(meta, tokens, architecture, special_tokens["unk_token"] or "<unk>")
        control_ok = None
        add_bos_default = True  # llama.cpp adds BOS to a SentencePiece vocabulary that does not say otherwise
    else:
        raise TokenizerBuildError(
            f"unsupported GGUF tokenizer tokenizer.ggml.model={model!r} (supported: 'gpt2', 'llama')"
        )
    backend, spelled, vocab, merges = built
    _add_whole_tokens(backend, tokens, token_types, vocab, special_tokens, control_ok)

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
        "missing_pieces": {str(i): (byte_level_spelling(t) if kind == "byte_level" else t) for i, t in missing.items()},
        "fingerprint": fingerprint_of(pieces, [list(m) for m in merges], None),
        "name": str(meta.get("general.name") or "") or None,
        "model": model,
        "pre": pre,
        "architecture": architecture,
    }
    return backend, info


class _Built(NamedTuple):
    """A backend tokenizer and what it was built from: the tokens as the backend spells them (index = id),
    the vocabulary of those spellings, the merges."""

    backend: tokenizers.Tokenizer
    spelled: list[str]
    vocab: dict[str, int]
    merges: list[tuple[str, str]]


def _plain_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The tokenizer's and general keys as plain Python values, also when handed mx.load's metadata
    (mx.array scalars and arrays) as is."""
    return {
        k: (v.tolist() if hasattr(v, "tolist") else v)
        for k, v in metadata.items()
        if k.startswith(("tokenizer.", "general."))
    }


def _special_tokens(meta: dict[str, Any], tokens: list[str]) -> tuple[dict[str, int | None], dict[str, str | None]]:
    """The ids of the named special tokens (``bos_token``... ``padding_token``; None when absent or out of
    range) and their texts under transformers' names (``bos_token``, ``eos_token``, ``unk_token``, ``pad_token``)."""

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
    return ids, special_tokens


def _byte_level(meta: dict[str, Any], tokens: list[str], pre: str) -> _Built:
    """A byte-level BPE (GGUF ``gpt2``): tokens respelled in the byte alphabet, the file's merges."""
    from tokenizers import Tokenizer as BackendTokenizer
    from tokenizers.models import BPE

    spelled = [t if BYTE_ALPHABET.issuperset(t) else byte_level_spelling(t) for t in tokens]
    vocab = {t: i for i, t in enumerate(spelled)}
    merges_meta = meta.get("tokenizer.ggml.merges")
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
    return _Built(backend, spelled, vocab, merges)


def _sentencepiece(meta: dict[str, Any], tokens: list[str], architecture: str, unk: str) -> _Built:
    """A SentencePiece vocabulary (GGUF ``llama``) as a BPE with byte fallback; Gemma's its own way."""
    from tokenizers import Tokenizer as BackendTokenizer
    from tokenizers import decoders, normalizers, pre_tokenizers
    from tokenizers.models import BPE

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
        merges_meta = meta.get("tokenizer.ggml.merges")
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
    backend.decoder = decoders.Sequence([decoders.Replace(SPIECE_SPACE, " "), decoders.ByteFallback(), decoders.Fuse()])
    return _Built(backend, spelled, vocab, merges)


def _add_whole_tokens(
    backend: tokenizers.Tokenizer,
    tokens: list[str],
    token_types: list[int],
    vocab: dict[str, int],
    special_tokens: dict[str, str | None],
    control_ok: Callable[[str], bool] | None,
) -> None:
    """Control tokens (type 3) are special tokens; user-defined ones (type 4, like "<think>") are added
    tokens. Both are matched whole in the raw text instead of being cut into pieces."""
    from tokenizers import AddedToken

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
