"""The tokenizer fingerprint: sha256 of the vocabulary (id -> piece) plus the merges (or unigram scores)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any


def fingerprint_from_json(tokenizer_json: Mapping[str, Any]) -> str:
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
