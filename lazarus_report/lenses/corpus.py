"""Text to fit and evaluate lenses on: the default corpus, or the user's .txt / .jsonl files.

The default corpus (``data/default_corpus.jsonl.gz``, shipped in the package, works offline) is
self-distilled: SmolLM2-135M-Instruct's own answers to 148 varied seed prompts (stories, letters,
history, science, news with dates and figures, recipes and instructions, dialogues, word problems,
Python/JavaScript/SQL/bash code), sampled once by ``scripts/make_lens_corpus.py`` (temperature 0.8,
top-p 0.95, fixed seed). Licence: the text is the output of an Apache-2.0 model from prompts
written for this project; it is distributed under the project's Apache-2.0 licence. Every 8th
document is the held-out split: fitting never sees it, fidelity is measured on it.

User files: ``.txt`` (the whole file is one document) or ``.jsonl`` (one ``{"text": ...}`` object
per line; other keys are ignored). Their token sequences are split by position in the packed
stream: every 8th sequence is held out.

Documents are tokenised without special tokens and cut into sequences of at most ``SEQ_LEN``
tokens, each starting with the model's BOS token when its tokenizer adds one. Documents are
first packed into one stream per split (a blank line between documents), so nearly every sequence
is full length and sequences go through the model in batches. Position 0 of
every sequence (BOS or first token) is left out of fitting and evaluation: its residual stream is
an attention sink with a norm tens of times larger than elsewhere, which would dominate a
least-squares fit while saying nothing about next-token predictions.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import LazarusError

SEQ_LEN = 256  # tokens per forward pass (including BOS)
MIN_SEQ = 8  # shorter tail pieces are dropped
HELDOUT_EVERY = 8
DEFAULT_CORPUS_FILE = "default_corpus.jsonl.gz"
DEFAULT_DESCRIPTION = "default: SmolLM2-135M-Instruct self-distilled answers to 148 varied prompts (built in)"


@dataclass
class Corpus:
    """Documents with a fit / held-out assignment, a description and a digest of the source bytes."""

    description: str
    sha256: str
    fit_docs: list[str] = field(default_factory=list)
    heldout_docs: list[str] = field(default_factory=list)
    # Documents with no fixed split (user files): their sequences are split every 8th.
    mixed_docs: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "sha256": self.sha256,
            "documents": len(self.fit_docs) + len(self.heldout_docs) + len(self.mixed_docs),
        }


def default_corpus() -> Corpus:
    data = resources.files("lazarus_report.lenses").joinpath("data", DEFAULT_CORPUS_FILE).read_bytes()
    text = gzip.decompress(data).decode("utf-8")
    corpus = Corpus(description=DEFAULT_DESCRIPTION, sha256=hashlib.sha256(data).hexdigest())
    for line in text.splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        (corpus.heldout_docs if row.get("split") == "heldout" else corpus.fit_docs).append(row["text"])
    return corpus


def read_corpus_files(paths: list[str]) -> Corpus:
    """Read and check the user's corpus files (no model needed): exist, UTF-8, some text."""
    if not paths:
        return default_corpus()
    digest = hashlib.sha256()
    docs: list[str] = []
    for name in paths:
        path = Path(name)
        if not path.is_file():
            raise LazarusError(f"--corpus {name}: no such file")
        if path.suffix.lower() not in (".txt", ".jsonl"):
            raise LazarusError(f"--corpus {name}: expected a .txt or .jsonl file")
        try:
            data = path.read_bytes()
            text = data.decode("utf-8")
        except OSError as exc:
            raise LazarusError(f"--corpus {name}: cannot read it ({exc.strerror})") from None
        except UnicodeDecodeError as exc:
            raise LazarusError(f"--corpus {name}: not UTF-8 text (byte {exc.start})") from None
        digest.update(hashlib.sha256(data).digest())
        if path.suffix.lower() == ".txt":
            if text.strip():
                docs.append(text)
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LazarusError(f"--corpus {name}:{lineno}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise LazarusError(f'--corpus {name}:{lineno}: expected an object with a "text" string')
            if row["text"].strip():
                docs.append(row["text"])
    if not docs:
        raise LazarusError(f"--corpus {', '.join(paths)}: no text in the corpus")
    shown = ", ".join(Path(p).name for p in paths)
    return Corpus(description=f"files: {shown}", sha256=digest.hexdigest(), mixed_docs=docs)


@dataclass
class TokenSequences:
    """Token sequences ready for forward passes, split into fit and held-out."""

    fit: list[list[int]]
    heldout: list[list[int]]

    @staticmethod
    def positions(seqs: list[list[int]]) -> int:
        """Positions used per layer (position 0 of each sequence left out)."""
        return sum(len(s) - 1 for s in seqs)


def _bos_prefix(tok: Any) -> list[int]:
    plain = tok.encode_plain("a")
    full = tok.encode("a")
    if plain and plain[0] in full:
        return full[: full.index(plain[0])]
    return []


def _chunks(ids: list[int], prefix: list[int], seq_len: int) -> list[list[int]]:
    body = seq_len - len(prefix)
    out = []
    for a in range(0, len(ids), body):
        piece = ids[a : a + body]
        if len(piece) >= MIN_SEQ:
            out.append(prefix + piece)
    return out


def _packed(docs: list[str], tok: Any, prefix: list[int], seq_len: int) -> list[list[int]]:
    """Documents joined into one token stream (a blank line between them), cut into full sequences."""
    sep = tok.encode_plain("\n\n")
    stream: list[int] = []
    for d in docs:
        if stream:
            stream.extend(sep)
        stream.extend(tok.encode_plain(d))
    return _chunks(stream, prefix, seq_len)


def tokenize(corpus: Corpus, tok: Any, seq_len: int = SEQ_LEN) -> TokenSequences:
    prefix = _bos_prefix(tok)
    fit = _packed(corpus.fit_docs, tok, prefix, seq_len)
    heldout = _packed(corpus.heldout_docs, tok, prefix, seq_len)
    mixed = _packed(corpus.mixed_docs, tok, prefix, seq_len)
    for i, c in enumerate(mixed):
        (heldout if i % HELDOUT_EVERY == HELDOUT_EVERY - 1 else fit).append(c)
    if mixed and not heldout and len(fit) >= 2:
        heldout.append(fit.pop())
    return TokenSequences(fit=fit, heldout=heldout)


def take_tokens(seqs: list[list[int]], budget: int | None) -> list[list[int]]:
    """The first sequences holding ``budget`` positions (the last one cut), or all of them."""
    if budget is None:
        return seqs
    out: list[list[int]] = []
    left = budget
    for s in seqs:
        if left <= 0:
            break
        n = len(s) - 1
        if n <= left:
            out.append(s)
            left -= n
        else:
            out.append(s[: left + 1])
            left = 0
    return out
