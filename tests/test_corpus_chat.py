"""The default corpus's kinds (version 2: chat answers, tool calls, code, prose beside the version-1
answers) and conversations rendered with each model's chat template (issue 21, "Better fits")."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from importlib import resources
from pathlib import Path

import pytest

from lazarus_report.core.errors import LazarusError
from lazarus_report.lens.learned.corpus import (
    DEFAULT_CORPUS_FILE,
    HELDOUT_EVERY,
    ChatDoc,
    Corpus,
    chat_text,
    default_corpus,
    read_corpus_files,
    tokenize,
)
from tests.tiny_models import save_tiny_tokenizer

KINDS = {"answer", "chat", "tools", "code", "prose"}


def _rows() -> list[dict]:
    data = resources.files("lazarus_report.lens.learned").joinpath("data", DEFAULT_CORPUS_FILE).read_bytes()
    return [json.loads(line) for line in gzip.decompress(data).decode("utf-8").splitlines() if line.strip()]


def test_every_kind_is_in_both_splits_and_held_out_every_8th_within_its_kind() -> None:
    rows = _rows()
    assert {r.get("kind", "answer") for r in rows} == KINDS
    for kind in KINDS:
        mine = [r for r in rows if r.get("kind", "answer") == kind]
        held = [r["split"] == "heldout" for r in mine]
        # every 8th document of the kind (before the kinds were shuffled together)
        assert sum(held) == len(mine) // HELDOUT_EVERY > 0, kind
    corpus = default_corpus()
    assert corpus.kinds == dict(Counter(r.get("kind", "answer") for r in rows))
    assert corpus.as_json()["kinds"] == corpus.kinds
    # the kinds are interleaved: the first eighth of the fit split already holds every kind
    fit_kinds = [r.get("kind", "answer") for r in rows if r["split"] == "fit"]
    assert set(fit_kinds[: len(fit_kinds) // 8]) == KINDS


def test_tool_conversations_call_in_json_and_answer_from_the_result() -> None:
    tools = [r["messages"] for r in _rows() if r.get("kind") == "tools"]
    assert len(tools) >= 100
    assert len({turns[1]["content"] for turns in tools}) == len(tools)  # every request once
    for turns in tools:
        assert [t["role"] for t in turns] == ["system", "user", "assistant", "user", "assistant"]
        call = json.loads(turns[2]["content"])
        assert set(call) == {"tool", "arguments"} and call["tool"] in turns[0]["content"]
        assert turns[3]["content"].startswith("Tool result: ")
        json.loads(turns[3]["content"].removeprefix("Tool result: "))


def test_conversation_documents_are_disjoint_across_splits() -> None:
    corpus = default_corpus()
    fit_chats = {d for d in corpus.fit_docs if isinstance(d, ChatDoc)}
    held_chats = {d for d in corpus.heldout_docs if isinstance(d, ChatDoc)}
    assert fit_chats and held_chats and not fit_chats & held_chats


TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)
# Like Gemma 3's: roles must alternate user/assistant, and there is no system role.
STRICT = (
    "{% for m in messages %}{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant') }}{% endif %}"
    "<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
)
CONVERSATION = ChatDoc((("system", "Be brief."), ("user", "Capital of France?"), ("assistant", "Paris.")))


def _tokenizer(tmp_path: Path, template: str | None):
    from transformers import AutoTokenizer

    from lazarus_report.models.tokenizer.wrappers import tokenizer_from_hf

    save_tiny_tokenizer(tmp_path, chat_template=template)
    return tokenizer_from_hf(AutoTokenizer.from_pretrained(str(tmp_path)))


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (TEMPLATE, "<s>system\nBe brief.</s>\n<s>user\nCapital of France?</s>\n<s>assistant\nParis.</s>\n"),
        (STRICT, "<s>user: Be brief.\n\nCapital of France?</s><s>assistant: Paris.</s>"),
        (None, "System: Be brief.\n\nUser: Capital of France?\n\nAssistant: Paris."),
    ],
    ids=["template", "system-refused-so-merged", "no-template"],
)
def test_a_conversation_is_rendered_with_the_models_template_or_a_fallback(tmp_path, template, expected) -> None:
    tok = _tokenizer(tmp_path, template)
    assert chat_text(tok, CONVERSATION) == expected
    # the template's special tokens are tokens in the fit sequences, not spelled-out text
    seqs = tokenize(Corpus(description="t", sha256="0" * 64, fit_docs=[CONVERSATION] * 20), tok, fit_tokens=None)
    ids = [i for s in seqs.fit for i in s]
    assert (tok.encode_plain("<s>")[0] in ids) == (template is not None)


def test_user_jsonl_conversations_are_read_and_checked(tmp_path) -> None:
    good = tmp_path / "c.jsonl"
    good.write_text(
        json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})
        + "\n"
        + json.dumps({"text": "plain text"})
        + "\n",
        encoding="utf-8",
    )
    assert read_corpus_files([str(good)]).as_json()["documents"] == 2
    bad = tmp_path / "d.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": 3}]}) + "\n", encoding="utf-8")
    with pytest.raises(LazarusError, match=r"d.jsonl:1: message 1 must be"):
        read_corpus_files([str(bad)])


@pytest.mark.slow
def test_smollm2_reads_conversations_through_its_chat_template(smollm2_loaded) -> None:
    tok = smollm2_loaded.tokenizer
    text = chat_text(tok, CONVERSATION)
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    im_start = tok.encode_plain("<|im_start|>")
    assert len(im_start) == 1
    first = tokenize(default_corpus(), tok, fit_tokens=8192, heldout_tokens=1024)
    again = tokenize(default_corpus(), tok, fit_tokens=8192, heldout_tokens=1024)
    assert first == again
    assert im_start[0] in {i for s in first.fit for i in s}
