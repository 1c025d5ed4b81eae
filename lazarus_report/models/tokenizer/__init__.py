"""Tokenizers for the models the engine loads: rebuilt from a GGUF file's metadata, or wrapped HF.

A GGUF file carries no ``tokenizer.json``: it stores the vocabulary, the merges (or SentencePiece
scores), the token types and the special token ids as metadata, under llama.cpp's key names.
:func:`tokenizer_from_gguf` turns those into a ``tokenizers.Tokenizer`` that encodes exactly like the
model's own Hugging Face tokenizer, and caches its ``tokenizer.json`` so a second run needs neither
the (slow to read) vocabulary metadata nor the build. :func:`tokenizer_from_hf` wraps a tokenizer
loaded from a model directory (transformers or mlx-lm's ``TokenizerWrapper``) behind the same API.

Importing this package is cheap: ``tokenizers``, ``jinja2`` and ``platformdirs`` are imported when
first needed, and transformers, torch and mlx-lm never are.

Layout of this package (the names below are re-exported here):

* ``wrappers``: the ``Tokenizer`` API, ``GGUFTokenizer``, ``HFTokenizer``, ``tokenizer_from_hf``;
* ``gguf_build``: a ``tokenizers.Tokenizer`` from GGUF metadata (``TokenizerBuildError``);
* ``disk_cache``: the on-disk cache and ``tokenizer_from_gguf``;
* ``chat_template``: the sandboxed chat-template renderer; ``pieces``: how a vocabulary entry reads as text;
  ``fingerprint``: the vocabulary + merges hash.
"""

from __future__ import annotations

from lazarus_report.models.tokenizer.chat_template import render_chat_template
from lazarus_report.models.tokenizer.disk_cache import default_cache_dir, tokenizer_from_gguf
from lazarus_report.models.tokenizer.gguf_build import SUPPORTED_PRE_TOKENIZERS, TokenizerBuildError
from lazarus_report.models.tokenizer.wrappers import GGUFTokenizer, HFTokenizer, Tokenizer, tokenizer_from_hf

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
