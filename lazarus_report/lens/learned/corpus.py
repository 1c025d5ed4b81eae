"""Text to fit and evaluate lenses on: the default corpus, or the user's .txt / .jsonl files.

The default corpus (``data/default_corpus.jsonl.gz``, shipped in the package, works offline; version 2)
holds five kinds of document, interleaved: SmolLM2-135M-Instruct's own answers to 148 varied prompts
(``answer``: stories, letters, news, recipes, dialogues, word problems, code; version 1), its answers to
200 chat questions, some with a system message (``chat``: a conversation), 80 code answers (``code``:
Python, JavaScript, TypeScript, SQL, bash, Rust, Go, C, YAML/JSON, HTML/CSS, Dockerfiles, tests) and 90
prose pieces (``prose``: essays, emails, reviews, news summaries, diaries, speeches), all sampled by
``scripts/make_lens_corpus.py`` (temperature 0.8, top-p 0.95, fixed seeds), plus 120 tool-call
conversations built by code (``tools``: JSON tool schemas in the system turn, a JSON call, the tool's
JSON result, the answer). A conversation is rendered with the model's own chat template when tokenised
(``chat_text``), so each model reads its own special tokens. Licence: the text is the output of an
Apache-2.0 model from prompts written for this project, or written for this project; it is distributed
under the project's Apache-2.0 licence. Every 8th document of each kind is the held-out split: fitting
never sees it, fidelity is measured on it.

User files: ``.txt`` (the whole file is one document) or ``.jsonl`` (one ``{"text": ...}`` object
per line, other keys ignored, or one ``{"messages": [{"role", "content"}, ...]}`` conversation). Their token sequences are split by position in the packed
stream: every 8th sequence is held out. ``read_corpus_files`` checks them before any model loads
(regular files, UTF-8 with an optional byte-order mark, no lone surrogates, JSON lines) reading block
by block; ``tokenize`` streams them again and stops once its token budgets are met, so memory is
bounded whatever a file's size. Documents longer than ``PIECE_CHARS`` are tokenised in pieces cut
just before a run of whitespace (where a word-level pre-tokeniser splits anyway).

Documents are tokenised without special tokens and cut into sequences of at most ``SEQ_LEN``
tokens, each starting with the model's BOS token when its tokenizer adds one. Documents are
first packed into one stream per split (a blank line between documents), so nearly every sequence
is full length and sequences go through the model in batches. Position 0 of
every sequence (BOS or first token) is left out of fitting and evaluation: its residual stream is
an attention sink with a norm tens of times larger than elsewhere, which would dominate a
least-squares fit while saying nothing about next-token predictions.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import itertools
import json
import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO

from ...core.errors import LazarusError

SEQ_LEN = 256  # tokens per forward pass (including BOS)
MIN_SEQ = 8  # shorter tail pieces are dropped
HELDOUT_EVERY = 8
DEFAULT_CORPUS_FILE = "default_corpus.jsonl.gz"
DEFAULT_DESCRIPTION = (
    "default v2: SmolLM2-135M-Instruct self-distilled answers, chats, code and prose, and tool-call "
    "conversations (638 documents, built in)"
)


CHAT_ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class ChatDoc:
    """A conversation document: ``(role, content)`` turns, rendered with the model's chat template
    when tokenised (see ``chat_text``)."""

    turns: tuple[tuple[str, str], ...]


Document = str | ChatDoc


@dataclass
class Corpus:
    """Documents with a fit / held-out assignment, a description and a digest of the source bytes.

    The user's files (``files``) are not held in memory: ``tokenize`` streams them, reading only what
    its token budgets need. ``mixed_docs`` are in-memory documents with no fixed split (Python API).
    """

    description: str
    sha256: str
    fit_docs: list[Document] = field(default_factory=list)
    heldout_docs: list[Document] = field(default_factory=list)
    # Documents with no fixed split (user files): their sequences are split every 8th.
    mixed_docs: list[Document] = field(default_factory=list)
    files: list[CorpusFile] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)  # documents per kind (the default corpus)

    def as_json(self) -> dict[str, Any]:
        documents = len(self.fit_docs) + len(self.heldout_docs) + len(self.mixed_docs)
        out: dict[str, Any] = {
            "description": self.description,
            "sha256": self.sha256,
            "documents": documents + sum(f.documents for f in self.files),
        }
        if self.kinds:
            out["kinds"] = dict(self.kinds)
        return out


@dataclass(frozen=True)
class CorpusFile:
    """A checked corpus file (see ``read_corpus_files``): its name as given and its documents."""

    name: str
    jsonl: bool
    documents: int


def default_corpus() -> Corpus:
    data = resources.files("lazarus_report.lens.learned").joinpath("data", DEFAULT_CORPUS_FILE).read_bytes()
    text = gzip.decompress(data).decode("utf-8")
    corpus = Corpus(description=DEFAULT_DESCRIPTION, sha256=hashlib.sha256(data).hexdigest())
    for line in text.splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        doc = row["text"] if "text" in row else chat_doc(row["messages"], DEFAULT_CORPUS_FILE)
        (corpus.heldout_docs if row.get("split") == "heldout" else corpus.fit_docs).append(doc)
        kind = row.get("kind", "answer")
        corpus.kinds[kind] = corpus.kinds.get(kind, 0) + 1
    return corpus


def chat_doc(messages: Any, where: str) -> ChatDoc:
    """``messages`` (a list of ``{"role", "content"}`` objects) checked and made a ``ChatDoc``."""
    if not isinstance(messages, list) or not messages:
        raise LazarusError(f'{where}: "messages" must be a non-empty list of {{"role", "content"}} objects')
    turns = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str) or m.get("role") not in CHAT_ROLES:
            raise LazarusError(
                f'{where}: message {i + 1} must be {{"role": "system"|"user"|"assistant", "content": "..."}}'
            )
        _check_unicode(m["content"], f"{where}: message {i + 1}")
        turns.append((m["role"], m["content"]))
    return ChatDoc(tuple(turns))


def chat_text(tok: Any, doc: ChatDoc, prefix: list[int] | None = None) -> str:
    """A conversation as the model reads it: its own chat template; a template that refuses a system
    turn (Gemma 3) gets it merged into the first user turn; no template (or a refusal still) gets
    plain ``Role: content`` paragraphs. A leading ``prefix`` (the ids the tokenizer adds anyway, which
    every sequence starts with, e.g. BOS; default: ``_bos_prefix(tok)``) is dropped from the text."""
    messages = [{"role": r, "content": c} for r, c in doc.turns]
    attempts = [messages]
    if messages[0]["role"] == "system" and len(messages) > 1 and messages[1]["role"] == "user":
        merged = {"role": "user", "content": messages[0]["content"] + "\n\n" + messages[1]["content"]}
        attempts.append([merged, *messages[2:]])
    if getattr(tok, "chat_template", None):
        for attempt in attempts:
            try:
                text = str(tok.render_messages(attempt))
            except Exception:  # a template's raise_exception, or a rendering error: try the next form
                continue
            ids = _bos_prefix(tok) if prefix is None else prefix
            bos = tok.decode(ids) if ids else ""
            return text[len(bos) :] if bos and text.startswith(bos) else text
    return "\n\n".join(f"{r.capitalize()}: {c}" for r, c in doc.turns)


READ_BYTES = 1 << 20  # corpus files are read in blocks of this size
PIECE_CHARS = 1 << 18  # longer documents are tokenised in pieces of about this many characters
MAX_JSONL_LINE = 32 << 20  # a JSONL line (one document) longer than this is refused: memory stays bounded
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_BOM = "\ufeff"


def _check_unicode(text: str, what: str) -> None:
    """``LazarusError`` naming ``what`` when ``text`` holds a lone surrogate (JSON allows one; UTF-8 does not)."""
    surrogate = _LONE_SURROGATE.search(text)
    if surrogate is not None:
        raise LazarusError(
            f"{what} is not valid Unicode text: a lone surrogate U+{ord(surrogate.group()):04X} "
            f"at character {surrogate.start()}"
        )


def _open_corpus(name: str) -> tuple[BinaryIO, bool]:
    """The file opened for reading and whether it is JSONL; ``LazarusError`` when it cannot be a corpus."""
    path = Path(name)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise LazarusError(f"--corpus {name}: no such file") from None
    except OSError as exc:
        raise LazarusError(f"--corpus {name}: cannot read it ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise LazarusError(f"--corpus {name}: is a directory, not a .txt or .jsonl file")
    if stat.S_ISFIFO(st.st_mode):
        raise LazarusError(f"--corpus {name}: is a FIFO (named pipe), not a file; save the text to a file")
    if not stat.S_ISREG(st.st_mode):
        raise LazarusError(f"--corpus {name}: is a socket or device, not a file")
    suffix = path.suffix.lower()
    if suffix not in (".txt", ".jsonl"):
        raise LazarusError(f"--corpus {name}: expected a .txt or .jsonl file")
    try:
        return open(path, "rb"), suffix == ".jsonl"
    except OSError as exc:
        raise LazarusError(f"--corpus {name}: cannot read it ({exc.strerror or exc})") from None


def _read_error(name: str, exc: OSError) -> LazarusError:
    return LazarusError(f"--corpus {name}: cannot read it ({exc.strerror or exc})")


def _text_blocks(fh: BinaryIO, name: str, digest: Any | None = None) -> Iterator[str]:
    """A text file decoded block by block (strict UTF-8, a leading byte-order mark dropped)."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset, first = 0, True
    while True:
        try:
            data = fh.read(READ_BYTES)
        except OSError as exc:
            raise _read_error(name, exc) from None
        if digest is not None:
            digest.update(data)
        try:
            text = decoder.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            raise LazarusError(f"--corpus {name}: not UTF-8 text (byte {offset + exc.start})") from None
        offset += len(data)
        if first and text:
            text = text.removeprefix(_BOM)
            first = False
        if text:
            yield text
        if not data:
            return


def _jsonl_docs(fh: BinaryIO, name: str, digest: Any | None = None) -> Iterator[Document]:
    """The non-blank ``"text"`` (or the ``"messages"`` conversation) of every line of a JSONL file, each
    line checked."""
    lineno = 0
    while True:
        try:
            line = fh.readline(MAX_JSONL_LINE + 1)
        except OSError as exc:
            raise _read_error(name, exc) from None
        if not line:
            return
        lineno += 1
        if digest is not None:
            digest.update(line)
        if len(line) > MAX_JSONL_LINE:
            raise LazarusError(
                f"--corpus {name}:{lineno}: line longer than {MAX_JSONL_LINE >> 20} MiB; "
                "split the text into several lines (documents) or give it as a .txt file"
            )
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise LazarusError(f"--corpus {name}:{lineno}: not UTF-8 text (byte {exc.start} of the line)") from None
        if lineno == 1:
            text = text.removeprefix(_BOM)
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LazarusError(f"--corpus {name}:{lineno}: not JSON ({exc.msg})") from None
        except RecursionError:
            raise LazarusError(f"--corpus {name}:{lineno}: not JSON (nested too deeply)") from None
        if isinstance(row, dict) and "messages" in row and "text" not in row:
            yield chat_doc(row["messages"], f"--corpus {name}:{lineno}")
            continue
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise LazarusError(
                f'--corpus {name}:{lineno}: expected an object with a "text" string or a "messages" list'
            )
        doc = row["text"]
        _check_unicode(doc, f'--corpus {name}:{lineno}: "text"')
        if doc.strip():
            yield doc


def read_corpus_files(paths: list[str]) -> Corpus:
    """Check the user's corpus files (no model needed): regular files, .txt or .jsonl, UTF-8 (a
    byte-order mark allowed), valid Unicode, some text. Each file is read once, block by block
    (memory stays bounded whatever its size); its text is read again, as far as needed, when tokenised."""
    if not paths:
        return default_corpus()
    digest = hashlib.sha256()
    files: list[CorpusFile] = []
    for name in paths:
        fh, jsonl = _open_corpus(name)
        file_digest = hashlib.sha256()
        with fh:
            if jsonl:
                documents = sum(1 for _ in _jsonl_docs(fh, name, file_digest))
            else:
                documents = 0
                for block in _text_blocks(fh, name, file_digest):  # all of it: the digest, UTF-8
                    documents = documents or int(bool(block.strip()))
        digest.update(file_digest.digest())
        files.append(CorpusFile(name=name, jsonl=jsonl, documents=documents))
    if not any(f.documents for f in files):
        raise LazarusError(f"--corpus {', '.join(paths)}: no text in the corpus")
    shown = ", ".join(Path(p).name for p in paths)
    return Corpus(description=f"files: {shown}", sha256=digest.hexdigest(), files=files)


def _pieces(text: str) -> Iterator[str]:
    """``text`` cut into pieces of about ``PIECE_CHARS`` characters, each cut just before a run of
    whitespace (a piece starts with the whitespace, as a word-level pre-tokeniser splits it)."""
    return _streamed_pieces(iter((text,)))


def _doc_pieces(doc: Document, tok: Any, prefix: list[int]) -> Iterator[str]:
    """A document as text pieces: a conversation rendered for ``tok``'s model first (``prefix``: see ``chat_text``)."""
    return _pieces(chat_text(tok, doc, prefix) if isinstance(doc, ChatDoc) else doc)


def _cut(text: str, at: int) -> int:
    """A cut position at most ``at``: where a run of whitespace starts, else ``at``."""
    i = at
    while i > at // 2:
        if text[i].isspace() and not text[i - 1].isspace():
            return i
        i -= 1
    return at


def _file_documents(spec: CorpusFile, tok: Any, prefix: list[int]) -> Iterator[Iterator[str]]:
    """The documents of a checked corpus file, each as an iterator of text pieces (streamed)."""
    fh, _ = _open_corpus(spec.name)
    with fh:
        if spec.jsonl:
            for doc in _jsonl_docs(fh, spec.name):
                yield _doc_pieces(doc, tok, prefix)
        elif spec.documents:
            yield _streamed_pieces(_text_blocks(fh, spec.name))


def _streamed_pieces(blocks: Iterator[str]) -> Iterator[str]:
    pending = ""
    for block in blocks:
        pending += block
        while len(pending) > PIECE_CHARS:
            cut = _cut(pending, PIECE_CHARS)
            yield pending[:cut]
            pending = pending[cut:]
    if pending:
        yield pending


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


class _Packer:
    """Documents joined into one token stream (a blank line between them), cut into sequences of
    ``seq_len`` tokens (the prefix included) as the stream grows: only the unfinished sequence is held."""

    def __init__(self, tok: Any, prefix: list[int], seq_len: int):
        self.tok, self.prefix, self.body = tok, prefix, seq_len - len(prefix)
        self.sep = tok.encode_plain("\n\n")
        self.buf: list[int] = []
        self.started = False
        self.out: list[list[int]] = []

    def document(self, pieces: Iterable[str]) -> Iterator[None]:
        """Add a document piece by piece; yields after each piece (the caller may stop there)."""
        first = True
        for piece in pieces:
            if first and self.started:
                self.buf.extend(self.sep)
            first = False
            ids = self.tok.encode_plain(piece)
            self.started = self.started or bool(ids)
            self.buf.extend(ids)
            while len(self.buf) >= self.body:
                self.out.append(self.prefix + self.buf[: self.body])
                del self.buf[: self.body]
            yield

    def finish(self) -> list[list[int]]:
        if len(self.buf) >= MIN_SEQ:
            self.out.append(self.prefix + self.buf)
        self.buf = []
        return self.out


def _packed(docs: Iterable[Iterable[str]], tok: Any, prefix: list[int], seq_len: int) -> list[list[int]]:
    packer = _Packer(tok, prefix, seq_len)
    for doc in docs:
        for _ in packer.document(doc):
            pass
    return packer.finish()


def tokenize(
    corpus: Corpus,
    tok: Any,
    seq_len: int = SEQ_LEN,
    *,
    fit_tokens: int | None = None,
    heldout_tokens: int | None = None,
) -> TokenSequences:
    """The corpus as token sequences. With budgets (positions, as ``take_tokens`` counts them), the
    user's documents are read and tokenised only until the fit split holds ``fit_tokens`` positions
    and the held-out split ``heldout_tokens``: the first sequences are those the whole corpus would
    give, so ``take_tokens`` of them is the same, and memory stays bounded whatever the files' size."""
    prefix = _bos_prefix(tok)
    fit = (
        _packed((_doc_pieces(d, tok, prefix) for d in corpus.fit_docs), tok, prefix, seq_len) if fit_tokens != 0 else []
    )
    heldout = _packed((_doc_pieces(d, tok, prefix) for d in corpus.heldout_docs), tok, prefix, seq_len)
    packer = _Packer(tok, prefix, seq_len)
    mixed_fit: list[list[int]] = []
    mixed_held: list[list[int]] = []
    need_fit = None if fit_tokens is None else fit_tokens - TokenSequences.positions(fit)
    need_held = None if heldout_tokens is None else heldout_tokens - TokenSequences.positions(heldout)
    have = [0, 0]  # positions in mixed_fit, mixed_held

    def drain() -> None:
        for c in packer.out:
            i = len(mixed_fit) + len(mixed_held)
            held = i % HELDOUT_EVERY == HELDOUT_EVERY - 1
            (mixed_held if held else mixed_fit).append(c)
            have[held] += len(c) - 1
        packer.out.clear()

    def enough() -> bool:
        return (need_fit is not None and have[0] >= need_fit) and (need_held is not None and have[1] >= need_held)

    docs = itertools.chain(
        ([_doc_pieces(d, tok, prefix)] for d in corpus.mixed_docs),
        (_file_documents(f, tok, prefix) for f in corpus.files),
    )
    done = False
    for group in docs:
        for doc in group:
            for _ in packer.document(doc):
                drain()
                if enough():
                    done = True
                    break
            if done:
                break
        if done:
            break
    if not done:
        packer.finish()
        drain()
    fit.extend(mixed_fit)
    heldout.extend(mixed_held)
    if (mixed_fit or mixed_held) and not heldout and len(fit) >= 2:
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
