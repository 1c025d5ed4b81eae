"""Issue 24: lens folders, imports and corpora as users hand them over (tiny random models).

* ``lens fit --out DIR`` never deletes what it did not write: a folder holding anything besides a
  lens is refused before the model loads; a symlinked ``--out`` is followed; a lens is replaced whole.
* ``lens import`` round trip: export, import (the real command), then analyze through the imported
  lens equals analyze through the original; damaged checkpoints are refused before the model loads.
* Corpora are streamed: only what ``--tokens`` needs is read and tokenised, whatever the file's size;
  lone surrogates, folders and FIFOs are refused before the model loads; a byte-order mark is accepted.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_lens_cli import assert_clean_error, invoke
from test_lens_math import WORDS, tiny_corpus

from lazarus_report.core.errors import LazarusError
from lazarus_report.lens.learned.artefact import META_FILE, WEIGHTS_FILE, Lens
from lazarus_report.lens.learned.corpus import Corpus, read_corpus_files, take_tokens, tokenize


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tiny_models import build_tiny_model

    root = tmp_path_factory.mktemp("lens-files")
    build_tiny_model("llama", root / "model", seed=0)
    rng = random.Random(0)
    (root / "corpus.txt").write_text(" ".join(rng.choice(WORDS) for _ in range(4000)), encoding="utf-8")
    (root / "cache").mkdir()
    return {"root": root, "model": root / "model", "cache": root / "cache", "corpus": root / "corpus.txt"}


@pytest.fixture(scope="module")
def a_lens(env: dict[str, Path]) -> Path:
    """A linear lens fitted by the command line (shared; tests copy it before changing anything)."""
    out = env["root"] / "fitted-lens"
    proc = invoke(
        "lens", "fit", "-m", str(env["model"]), "--corpus", str(env["corpus"]), "--out", str(out), "-q",
        cache=env["cache"],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out


def _tree(directory: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(directory)): (p.read_bytes() if p.is_file() else None) for p in sorted(directory.rglob("*"))
    }


def _copy_lens(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for name in (META_FILE, WEIGHTS_FILE):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


# --- defect 1: --out never deletes what the tool did not write ---------------------------------


def test_fit_out_into_a_folder_with_other_files_is_refused_and_keeps_them(env: dict[str, Path], tmp_path: Path) -> None:
    """The issue's reproduction with the real command: a folder holding a ``lens.json`` and the user's files."""
    proj = tmp_path / "proj"
    (proj / "sub").mkdir(parents=True)
    (proj / "sub" / "notes.md").write_text("mine")
    (proj / META_FILE).write_text("{}\n")
    (proj / "keep.txt").write_text("x\n")
    before = _tree(proj)
    proc = invoke(
        "lens", "fit", "-m", str(env["model"]), "--corpus", str(env["corpus"]), "--tokens", "1200",
        "--out", str(proj), cache=env["cache"],
    )  # fmt: skip
    assert_clean_error(proc, "is not a lens directory: it holds other files")
    assert _tree(proj) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["proj"]  # no temporary folder left


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda d, lens: (d / "keep.txt").write_text("x"), "holds other files ('keep.txt')"),
        (lambda d, lens: (d / META_FILE).write_text("{}"), "is not a lens directory"),
        (lambda d, lens: _copy_lens(lens, d / "inner") and None, "holds other files ('inner')"),
        (lambda d, lens: (d / WEIGHTS_FILE).write_text("weights of mine"), "is not a lens directory"),
    ],
    ids=["other-file", "fake-lens-json", "a-lens-one-level-down", "weights-without-lens-json"],
)
def test_out_folders_that_are_not_only_a_lens_are_refused_before_the_model(
    env: dict[str, Path], a_lens: Path, tmp_path: Path, make, fragment: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    make(out, a_lens)
    before = _tree(out)
    # A model that does not exist: the --out error must come first, before any model lookup or load.
    proc = invoke("lens", "fit", "-m", str(tmp_path / "no-model"), "--out", str(out), cache=env["cache"])
    assert_clean_error(proc, fragment)
    assert _tree(out) == before


def test_lens_with_an_extra_file_is_refused_and_kept(env: dict[str, Path], a_lens: Path, tmp_path: Path) -> None:
    out = _copy_lens(a_lens, tmp_path / "lens")
    (out / "README").write_text("about this lens")
    before = _tree(out)
    with pytest.raises(LazarusError, match=r"holds other files \('README'\)"):
        Lens.load(a_lens).save(out)
    assert _tree(out) == before


def test_fit_out_replaces_a_lens_and_fills_an_empty_folder(env: dict[str, Path], a_lens: Path, tmp_path: Path) -> None:
    old = _copy_lens(a_lens, tmp_path / "old")
    meta = json.loads((old / META_FILE).read_text())
    meta["corpus"]["description"] = "the old one"
    (old / META_FILE).write_text(json.dumps(meta))  # still a lens folder by its format tag
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o750)
    inode = empty.stat().st_ino
    for out in (old, empty):
        proc = invoke(
            "lens", "fit", "-m", str(env["model"]), "--corpus", str(env["corpus"]), "--out", str(out), "-q",
            cache=env["cache"],
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert sorted(p.name for p in out.iterdir()) == [META_FILE, WEIGHTS_FILE]
        assert Lens.load(out).meta["corpus"]["description"] == "files: corpus.txt"
    # The user's empty folder is kept, not replaced: same folder, same permissions.
    assert empty.stat().st_ino == inode and (empty.stat().st_mode & 0o777) == 0o750
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "old"]


def test_symlinked_out_is_followed(env: dict[str, Path], a_lens: Path, tmp_path: Path) -> None:
    """As ``-o`` does: the lens lands in the folder the link points to; the link stays a link."""
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "later")
    for out, where in ((link, real), (dangling, tmp_path / "later")):
        proc = invoke(
            "lens", "fit", "-m", str(env["model"]), "--corpus", str(env["corpus"]), "--out", str(out), "-q",
            cache=env["cache"],
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert out.is_symlink()
        assert sorted(p.name for p in where.iterdir()) == [META_FILE, WEIGHTS_FILE]
        Lens.load(out)
    # A link to a folder of the user's: refused, the folder untouched.
    (real / META_FILE).unlink()
    (real / "mine.txt").write_text("x")
    proc = invoke("lens", "fit", "-m", str(tmp_path / "no-model"), "--out", str(link), cache=env["cache"])
    assert_clean_error(proc, "holds other files")
    assert link.is_symlink() and (real / "mine.txt").read_text() == "x"


# --- defect 7: unwritable destinations, found before the model; write errors are exit 2 ----------


@pytest.fixture
def small_tmpfs(tmp_path: Path):
    """A 16 KiB tmpfs (root with mount rights only): a real full disk, and then a read-only one."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mnt)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root with mount rights)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


@pytest.mark.slow  # mounts a tmpfs
def test_fit_out_onto_a_full_disk_is_a_clean_error(env: dict[str, Path], small_tmpfs: Path) -> None:
    for out in (small_tmpfs / "lens", small_tmpfs):  # a new folder, and the (empty) mount point itself
        proc = invoke(
            "lens", "fit", "-m", str(env["model"]), "--corpus", str(env["corpus"]), "--out", str(out),
            cache=env["cache"],
        )  # fmt: skip
        assert_clean_error(proc, f"cannot write the lens to {out}: No space left on device")
        assert list(small_tmpfs.iterdir()) == []  # the temporary folder is gone


@pytest.mark.slow  # mounts a tmpfs
def test_eval_outputs_onto_a_full_disk_are_clean_errors(env: dict[str, Path], a_lens: Path, small_tmpfs: Path) -> None:
    filler = small_tmpfs / "filler"
    with pytest.raises(OSError), open(filler, "wb") as fh:  # fill the disk: empty files fit, data does not
        while True:
            fh.write(b"x" * 4096)
            fh.flush()
    for option in ("-o", "--html"):
        out = small_tmpfs / "eval.out"
        proc = invoke(
            "lens", "eval", "-m", str(env["model"]), "--lens", str(a_lens), "--corpus", str(env["corpus"]),
            option, str(out), "-q", cache=env["cache"],
        )  # fmt: skip
        assert_clean_error(proc, f"{option} {out}: cannot write it (No space left on device)")
        assert sorted(p.name for p in small_tmpfs.iterdir()) == ["filler"]


@pytest.mark.slow  # mounts a tmpfs
def test_read_only_destinations_fail_before_the_model(env: dict[str, Path], small_tmpfs: Path, tmp_path: Path) -> None:
    (small_tmpfs / "cache").mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    no_model = str(tmp_path / "no-model")
    proc = invoke("lens", "fit", "-m", no_model, "--out", str(small_tmpfs / "lens"), cache=env["cache"])
    assert_clean_error(proc, f"cannot write the lens to {small_tmpfs / 'lens'}: Read-only file system")
    # The default destination, the user cache, is probed too (it used to fail after the whole fit).
    proc = invoke("lens", "fit", "-m", no_model, cache=small_tmpfs / "cache")
    assert_clean_error(proc, f"user cache {small_tmpfs / 'cache' / 'lenses'}: Read-only file system")
    proc = invoke("lens", "import", "-m", no_model, str(tmp_path), cache=small_tmpfs / "cache")
    assert_clean_error(proc, "Read-only file system")


def test_cache_under_a_file_fails_before_the_model(env: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    proc = invoke("lens", "fit", "-m", str(tmp_path / "no-model"), cache=tmp_path / "file" / "cache")
    assert_clean_error(proc, "cannot write the lens to the user cache")
    assert (tmp_path / "file").read_text() == "x"


# --- defect 2: lens import ---------------------------------------------------------------------


def test_import_round_trip_analyzes_as_the_original(env: dict[str, Path], a_lens: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from lazarus_report.commands.analyzer import ModelAnalyzer
    from lazarus_report.core.config import AnalysisConfig, LayerStrategy

    ckpt, imported = tmp_path / "ckpt", tmp_path / "imported"
    proc = invoke("lens", "export", str(a_lens), str(ckpt), cache=env["cache"])
    assert proc.returncode == 0, proc.stderr
    proc = invoke("lens", "import", "-m", str(env["model"]), str(ckpt), "--out", str(imported), cache=env["cache"])
    assert proc.returncode == 0, proc.stderr
    back = Lens.load(imported)
    assert back.kind == "tuned" and back.form == "residual"
    assert [f["layer"] for f in back.meta["fidelity"]] == [0, 1] and back.meta["heldout_tokens"] > 0
    assert [f["layer"] for f in back.meta["logit_fidelity"]] == [0, 1]
    config = AnalysisConfig(layer_strategy=LayerStrategy.ALL, use_chat_template=False)
    with ModelAnalyzer.load(str(env["model"])) as a:
        original = a.lens_run("the world is big", AnalysisConfig(**{**config.__dict__, "lens": str(a_lens)}))
        through = a.lens_run("the world is big", AnalysisConfig(**{**config.__dict__, "lens": str(imported)}))
    assert not np.allclose(original.log_probs[0], a_logit_run(env, config)[0], atol=1e-3)  # the lens matters
    np.testing.assert_allclose(through.log_probs, original.log_probs, atol=1e-5, rtol=0)


def a_logit_run(env: dict[str, Path], config) -> np.ndarray:
    from lazarus_report.commands.analyzer import ModelAnalyzer

    with ModelAnalyzer.load(str(env["model"])) as a:
        return a.lens_run("the world is big", config).log_probs


def _checkpoint(a_lens: Path, where: Path) -> Path:
    from lazarus_report.lens.learned.tuned_lens_io import export_tuned_lens

    return export_tuned_lens(Lens.load(a_lens), where)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_import_refuses_non_finite_tensors_before_the_model(
    env: dict[str, Path], a_lens: Path, tmp_path: Path, bad: float
) -> None:
    torch = pytest.importorskip("torch")
    ckpt = _checkpoint(a_lens, tmp_path / "ckpt")
    state = torch.load(ckpt / "params.pt", weights_only=True)
    state["2.weight"][3, 5] = bad
    torch.save(state, ckpt / "params.pt")
    out = tmp_path / "imported"
    proc = invoke("lens", "import", "-m", str(tmp_path / "no-model"), str(ckpt), "--out", str(out), cache=env["cache"])
    assert_clean_error(proc, "tensor 2.weight contains NaN or infinite values")
    assert not out.exists()


def test_import_refuses_a_pickle_payload_without_torch_advice(
    env: dict[str, Path], a_lens: Path, tmp_path: Path
) -> None:
    torch = pytest.importorskip("torch")
    ckpt = _checkpoint(a_lens, tmp_path / "ckpt")
    torch.save({"1.weight": _Payload()}, ckpt / "params.pt")
    proc = invoke("lens", "import", "-m", str(tmp_path / "no-model"), str(ckpt), cache=env["cache"])
    line = proc.stderr.strip()
    assert_clean_error(proc, "params.pt holds objects other than tensors, refused")
    assert "weights_only" not in line and "Re-running" not in line
    assert not (tmp_path / "pwned").exists()


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_import_refuses_wrong_shapes_and_missing_translators(
    env: dict[str, Path], a_lens: Path, tmp_path: Path
) -> None:
    torch = pytest.importorskip("torch")
    ckpt = _checkpoint(a_lens, tmp_path / "ckpt")
    state = torch.load(ckpt / "params.pt", weights_only=True)
    state["1.weight"] = state["1.weight"][:, :10]
    torch.save(state, ckpt / "params.pt")
    proc = invoke("lens", "import", "-m", str(tmp_path / "no-model"), str(ckpt), cache=env["cache"])
    assert_clean_error(proc, "translator 1 has shape [64, 10]")
    del state["1.weight"]
    torch.save(state, ckpt / "params.pt")
    proc = invoke("lens", "import", "-m", str(tmp_path / "no-model"), str(ckpt), cache=env["cache"])
    assert_clean_error(proc, "translator 1 is missing")
    proc = invoke("lens", "import", "-m", str(tmp_path / "no-model"), str(tmp_path / "nope"), cache=env["cache"])
    assert_clean_error(proc, "no tuned-lens checkpoint at")


# --- defect 8: corpora checked like prompts -----------------------------------------------------


@pytest.mark.parametrize(
    "name, content, fragment",
    [
        ("s.jsonl", '{"text": "\\ud800 x"}\n', 's.jsonl:1: "text" is not valid Unicode text: a lone surrogate U+D800'),
        ("s2.jsonl", '{"text": "ok"}\n{"text": "a \\udfff"}\n', 's2.jsonl:2: "text" is not valid Unicode'),
        ("dir.txt", None, "is a directory"),
        ("fifo.txt", "fifo", "is a FIFO (named pipe)"),
        ("bad.jsonl", b"\xef\xbb\xbf\xef\xbb\xbf{}\n", "bad.jsonl:1: not JSON"),  # only one BOM is dropped
    ],
)
def test_bad_corpora_fail_before_the_model(env: dict[str, Path], tmp_path: Path, name: str, content, fragment) -> None:
    path = tmp_path / name
    if content is None:
        path.mkdir()
    elif content == "fifo":
        os.mkfifo(path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    proc = invoke("lens", "fit", "-m", str(tmp_path / "no-model"), "--corpus", str(path), cache=env["cache"])
    assert_clean_error(proc, fragment)


def test_corpora_with_a_byte_order_mark_are_accepted(env: dict[str, Path], tmp_path: Path) -> None:
    from lazarus_report.models.loader import load_model

    text = (env["corpus"]).read_text(encoding="utf-8")
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    rows = "\n".join(json.dumps({"text": text[i : i + 2000]}) for i in range(0, len(text), 2000))
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + rows.encode("utf-8") + b"\n")
    (tmp_path / "plain.txt").write_text(text, encoding="utf-8")
    tok = load_model(str(env["model"])).tokenizer
    plain = tokenize(read_corpus_files([str(tmp_path / "plain.txt")]), tok)
    assert tokenize(read_corpus_files([str(tmp_path / "bom.txt")]), tok) == plain  # the mark is not text
    corpus = read_corpus_files([str(tmp_path / "bom.jsonl")])
    assert corpus.as_json()["documents"] == len(range(0, len(text), 2000))
    proc = invoke(
        "lens", "fit", "-m", str(env["model"]), "--corpus", str(tmp_path / "bom.jsonl"), "--out",
        str(tmp_path / "lens"), "-q", cache=env["cache"],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


# --- defect 5: only what --tokens needs is read and tokenised -----------------------------------


class _CountingTokenizer:
    """The real tokenizer, counting the characters it is asked to encode."""

    def __init__(self, tok):
        self.tok, self.chars, self.longest = tok, 0, 0

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text)

    def encode_plain(self, text: str) -> list[int]:
        self.chars += len(text)
        self.longest = max(self.longest, len(text))
        return self.tok.encode_plain(text)


def _big_line(path: Path, megabytes: int) -> Path:
    rng = random.Random(1)
    words = " ".join(rng.choice(WORDS) for _ in range(200_000))  # ~1 MB, one line
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(megabytes):
            fh.write(words + " ")
    return path


def test_budgets_tokenise_only_a_prefix_and_give_the_same_sequences(env: dict[str, Path], tmp_path: Path) -> None:
    from lazarus_report.lens.learned.eval import heldout_positions
    from lazarus_report.models.loader import load_model

    tok = load_model(str(env["model"])).tokenizer
    big = _big_line(tmp_path / "big.txt", 20)
    corpus = read_corpus_files([str(big)])
    counting = _CountingTokenizer(tok)
    held_budget = heldout_positions(3, 1000)
    seqs = tokenize(corpus, counting, fit_tokens=1200, heldout_tokens=held_budget)
    assert counting.chars < 2_000_000 and counting.longest <= 1 << 19  # not 20 MB, and never all at once
    assert sum(len(s) - 1 for s in take_tokens(seqs.fit, 1200)) == 1200
    # The same first sequences as tokenising everything (checked on a corpus small enough for that).
    small = tiny_corpus(60_000, seed=3)
    full = tokenize(small, tok)
    some = tokenize(small, tok, fit_tokens=1200, heldout_tokens=held_budget)
    assert take_tokens(some.fit, 1200) == take_tokens(full.fit, 1200)
    assert take_tokens(some.heldout, held_budget) == take_tokens(full.heldout, held_budget)
    assert len(some.fit) < len(full.fit)


def test_streamed_documents_split_at_whitespace_keep_the_text() -> None:
    from lazarus_report.lens.learned.corpus import PIECE_CHARS, _pieces

    rng = random.Random(2)
    text = " ".join(rng.choice(WORDS) for _ in range(PIECE_CHARS // 2)) + "\n\n  end"
    pieces = list(_pieces(text))
    assert "".join(pieces) == text and len(pieces) > 1
    assert all(len(p) <= PIECE_CHARS for p in pieces)
    assert all(p[0].isspace() and not p[1].isspace() for p in pieces[1:])  # cut before a single space
    assert list(_pieces("x" * (PIECE_CHARS + 5))) == ["x" * PIECE_CHARS, "xxxxx"]  # no whitespace: cut anyway


@pytest.mark.slow  # measures a process's peak memory
def test_fit_on_a_huge_one_line_corpus_has_bounded_memory(env: dict[str, Path], tmp_path: Path) -> None:
    """The issue's case (a 19.5 MB single-line corpus, --tokens 1200) with the real command."""
    big = _big_line(tmp_path / "big.txt", 20)
    script = (
        "import resource, subprocess, sys;"
        "p = subprocess.run(sys.argv[1:]);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(p.returncode)"
    )
    cmd = [
        sys.executable,
        "-m",
        "lazarus_report.cli.main",
        "lens",
        "fit",
        "-m",
        str(env["model"]),
        "--corpus",
        str(big),
    ]
    cmd += ["--tokens", "1200", "--out", str(tmp_path / "lens"), "-q"]
    environ = {**os.environ, "LAZARUS_CACHE_DIR": str(env["cache"]), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", script, *cmd], capture_output=True, text=True, env=environ, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    peak_mb = int(proc.stdout.split()[-1]) / 1024  # ru_maxrss: KiB on Linux
    assert peak_mb < 900, peak_mb
    assert Lens.load(tmp_path / "lens").meta["tokens"] == 1200


def test_corpus_digest_and_documents_cover_the_whole_file(tmp_path: Path) -> None:
    import hashlib

    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps({"text": f"doc {i}"}) + "\n" for i in range(5)) + "\n", encoding="utf-8")
    corpus = read_corpus_files([str(path)])
    assert corpus.as_json()["documents"] == 5
    assert corpus.sha256 == hashlib.sha256(hashlib.sha256(path.read_bytes()).digest()).hexdigest()
    assert isinstance(corpus, Corpus) and not corpus.mixed_docs  # nothing held in memory
