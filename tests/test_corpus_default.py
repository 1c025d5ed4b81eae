"""The built-in default corpus (issue 21, "Better fits"): the same bytes and documents on every run,
a held-out split disjoint from the fit split by document, and the shipped lenses fitted on it."""

from __future__ import annotations

import gzip
import hashlib
import json
from importlib import resources

from lazarus_report.lens.learned.corpus import DEFAULT_CORPUS_FILE, HELDOUT_EVERY, ChatDoc, default_corpus
from lazarus_report.lens.learned.shipped import shipped_dir, shipped_records


def _data() -> bytes:
    return resources.files("lazarus_report.lens.learned").joinpath("data", DEFAULT_CORPUS_FILE).read_bytes()


def test_default_corpus_is_deterministic() -> None:
    first, second = default_corpus(), default_corpus()
    assert first.sha256 == second.sha256 == hashlib.sha256(_data()).hexdigest()
    assert first.fit_docs == second.fit_docs and first.heldout_docs == second.heldout_docs
    assert first.as_json()["documents"] == len(first.fit_docs) + len(first.heldout_docs)
    # the gzip header carries no timestamp: regenerating the file gives the same bytes
    assert _data()[4:8] == b"\0\0\0\0"


def test_heldout_split_is_disjoint_by_document() -> None:
    corpus = default_corpus()
    assert corpus.fit_docs and corpus.heldout_docs
    assert not set(corpus.fit_docs) & set(corpus.heldout_docs)
    fit_chats = [d for d in corpus.fit_docs if isinstance(d, ChatDoc)]
    # no held-out document is contained in (or contains) a fit document: no copy leaks across
    texts = [d for d in corpus.fit_docs if isinstance(d, str)]
    for held in corpus.heldout_docs:
        if isinstance(held, ChatDoc):  # a conversation: its final answer appears in no fit conversation
            assert not any(held.turns[-1] in fit.turns for fit in fit_chats)
            continue
        for doc in texts:
            assert held not in doc and doc not in held
    rows = [json.loads(line) for line in gzip.decompress(_data()).decode("utf-8").splitlines() if line.strip()]
    held_rows = [r for r in rows if r.get("split") == "heldout"]
    assert len(held_rows) == len(corpus.heldout_docs)
    assert abs(len(rows) / HELDOUT_EVERY - len(held_rows)) <= 1


# The version-1 default corpus (148 self-distilled answers): Gemma 3 270M's shipped lenses were fitted on it
# (a Gemma tuned refit on version 2 needs about 1.5 hours of this 2-core CPU); its records say so.
CORPUS_V1_SHA256 = "fa1425c62aee29c12f7ebc4c67320bc88b4433ad609b1f4e2264fef63fb091c0"
FITTED_ON_V1 = {"gemma3-270m-linear.json", "gemma3-270m-tuned.json"}


def test_shipped_lenses_record_the_corpus_they_were_fitted_on() -> None:
    corpus = default_corpus()
    records = shipped_records(shipped_dir())
    assert len(records) >= 4
    for path, meta in records:
        if path.name in FITTED_ON_V1:
            assert meta["corpus"]["sha256"] == CORPUS_V1_SHA256, path.name
            assert "148 varied prompts" in meta["corpus"]["description"], path.name
        else:
            assert meta["corpus"]["sha256"] == corpus.sha256, path.name
            assert meta["corpus"]["description"] == corpus.description, path.name
            assert meta["corpus"]["kinds"] == corpus.kinds, path.name
