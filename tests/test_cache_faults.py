"""Fault injection for the conversion caches (issue 8, defects 3, 12 and 13).

The k-quant conversion cache (``$LAZARUS_CACHE_DIR/gguf``) on a tiny random llama written as a
Q4_K_M GGUF by ``tests/test_gguf_kquant.py``'s writer (converts in well under a second):

* bytes damaged in the middle of a cached entry (size kept) are found by the recorded sha256: the
  entry is discarded with a warning and rebuilt, never trusted;
* a conversion killed with SIGKILL leaves a temporary directory; the next run removes it;
* two first runs at once convert once: the second waits on the lock and reuses the entry;
* a truncated k-quant file fails from its header, before any conversion.

And the GGUF tokenizer cache: a damaged ``tokenizer.json`` is discarded with a warning.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_gguf_kquant import MIXED_PLAN, assert_weights_are, load, tiny_llama, write

from lazarus_report.errors import LazarusError, LazarusWarning
from lazarus_report.models import gguf as gguf_mod


@pytest.fixture(scope="module")
def llama() -> Any:
    return tiny_llama()


@pytest.fixture
def kquant(tmp_path: Path, llama: Any) -> tuple[Path, dict]:
    return write(tmp_path, "q4_k_m", llama, MIXED_PLAN, "Q4_K_M")


@pytest.fixture
def conversions(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every k-quant conversion this process runs (the real one, counted)."""
    calls: list[Path] = []
    real = gguf_mod._dequantize_with_gguf
    monkeypatch.setattr(gguf_mod, "_dequantize_with_gguf", lambda p: calls.append(p) or real(p))
    return calls


def _entry(cache: Path, path: Path) -> Path:
    return cache / "gguf" / gguf_mod.file_key(path)


def _leftovers(cache: Path) -> list[str]:
    gguf_dir = cache / "gguf"
    return sorted(p.name for p in gguf_dir.iterdir() if p.name.startswith(".")) if gguf_dir.is_dir() else []


def test_damage_in_the_middle_of_an_entry_is_found_and_rebuilt(kquant, llama, isolated_cache, conversions):
    path, stored = kquant
    load(path)
    assert len(conversions) == 1
    weights = _entry(isolated_cache, path) / "weights.safetensors"
    size = weights.stat().st_size
    with open(weights, "r+b") as fh:  # zero a stretch in the middle, keeping the size
        fh.seek(size // 3)
        fh.write(bytes(size // 3))
    assert weights.stat().st_size == size
    with pytest.warns(LazarusWarning, match=r"discarding the damaged cache entry .*sha256.*rebuilding"):
        again = load(path)
    assert len(conversions) == 2  # rebuilt, not trusted
    assert_weights_are(again, llama, stored, atol=0.0)
    load(path)  # the rebuilt entry verifies
    assert len(conversions) == 2


def test_damage_is_reported_on_stderr_by_the_command(kquant, isolated_cache):
    path, _ = kquant
    load(path)
    weights = _entry(isolated_cache, path) / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    weights.write_bytes(bytes(data))
    from helpers import lazarus

    proc = lazarus("introspect", "analyze", "-m", str(path), "-p", "ab", "--raw")  # in-process (CliRunner)
    assert proc.returncode == 0, proc.stderr
    (warning,) = proc.stderr.splitlines()
    assert warning.startswith("Warning: discarding the damaged cache entry") and "sha256" in warning


# --- subprocesses: a killed conversion, two first runs at once -------------------------------

_RUNNER = textwrap.dedent(
    """
    import hashlib, os, sys, time
    from pathlib import Path
    import numpy as np
    from lazarus_report.models import gguf as g

    mode, path, work = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    real = g._dequantize_with_gguf

    def logged(p):
        with open(work / "conversions.log", "a") as fh:
            fh.write(f"{os.getpid()}\\n")
        if mode == "first":  # hold the lock until the second run is waiting for it
            (work / "converting").touch()
            deadline = time.time() + 60
            while not (work / "second-loading").exists() and time.time() < deadline:
                time.sleep(0.05)
            time.sleep(1.0)
        return real(p)

    g._dequantize_with_gguf = logged
    if mode == "kill":
        real_save = g.mx.save_safetensors

        def stuck(*args, **kwargs):  # the weights are half way to the cache when the process dies
            real_save(*args, **kwargs)
            (work / "saving").touch()
            time.sleep(120)

        g.mx.save_safetensors = stuck
    if mode == "second":
        (work / "second-loading").touch()
    model = g.load_gguf(path)
    digest = hashlib.sha256()
    for name in sorted(model.weights):
        digest.update(np.array(model.weights[name]).tobytes())
    print(digest.hexdigest())
    """
)


def _start(mode: str, path: Path, work: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _RUNNER, mode, str(path), str(work)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(marker: Path, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the process ended early: {proc.communicate()[1]}")
        assert time.monotonic() < deadline, f"{marker.name} never appeared"
        time.sleep(0.05)


def _conversions(work: Path) -> list[str]:
    log = work / "conversions.log"
    return log.read_text().split() if log.exists() else []


@pytest.mark.slow  # processes
def test_killed_conversion_leaves_a_temporary_the_next_run_removes(kquant, llama, isolated_cache, tmp_path):
    path, stored = kquant
    work = tmp_path / "work"
    work.mkdir()
    proc = _start("kill", path, work)
    try:
        _wait_for(work / "saving", proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    stale = _leftovers(isolated_cache)
    assert len(stale) == 1 and stale[0].endswith(".tmp")  # what kill -9 leaves behind
    assert not _entry(isolated_cache, path).exists()

    again = load(path)  # the lock died with the process: this run converts and cleans up
    assert_weights_are(again, llama, stored, atol=0.0)
    assert _leftovers(isolated_cache) == []
    assert sorted(p.name for p in _entry(isolated_cache, path).iterdir()) == ["metadata.json", "weights.safetensors"]


@pytest.mark.slow  # processes
def test_two_first_runs_convert_once(kquant, isolated_cache, tmp_path):
    path, _ = kquant
    work = tmp_path / "work"
    work.mkdir()
    first = _start("first", path, work)
    _wait_for(work / "converting", first)
    second = _start("second", path, work)
    out1, err1 = first.communicate(timeout=300)
    out2, err2 = second.communicate(timeout=300)
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    assert _conversions(work) == [str(first.pid)]  # the second waited and reused the entry
    assert out1 == out2 and len(out1.strip()) == 64  # the same weights
    assert _leftovers(isolated_cache) == []


def test_stale_temporary_of_another_file_is_removed_only_when_unlocked(kquant, isolated_cache, conversions):
    from lazarus_report.models.cache import cache_lock

    path, _ = kquant
    gguf_dir = isolated_cache / "gguf"
    gguf_dir.mkdir(parents=True)
    busy = gguf_dir / ".busykey.abc.tmp"
    dead = gguf_dir / ".deadkey.abc.tmp"
    busy.mkdir()
    dead.mkdir()
    with cache_lock(isolated_cache, "gguf-busykey"):  # another conversion in progress (held here)
        load(path)
    assert _leftovers(isolated_cache) == [".busykey.abc.tmp"]  # a live conversion's is kept


# --- truncated files fail from the header --------------------------------------------------


def test_truncated_kquant_file_fails_before_converting(kquant, tmp_path, isolated_cache, conversions):
    path, _ = kquant
    cut = tmp_path / "cut.gguf"
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) - len(data) // 5])
    with pytest.raises(LazarusError) as info:
        load(cut)
    message = str(info.value)
    assert "is truncated: tensor" in message and str(cut) in message and "\n" not in message
    assert conversions == []  # found from the header, nothing dequantized


def test_gguf_cut_inside_its_header_says_so(kquant, tmp_path):
    path, _ = kquant
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(path.read_bytes()[:1024])
    with pytest.raises(LazarusError, match=r"header is truncated or damaged \(the file is 1024 bytes\)"):
        load(cut)


# --- the tokenizer cache --------------------------------------------------------------------


def test_damaged_tokenizer_cache_entry_is_discarded_with_a_warning(kquant, tmp_path):
    from lazarus_report.models.tokenizer import tokenizer_from_gguf

    path, _ = kquant
    cache = tmp_path / "tok-cache"
    first = tokenizer_from_gguf(path, cache_dir=cache)
    (tok_json,) = cache.glob("*.tokenizer.json")
    data = bytearray(tok_json.read_bytes())
    data[len(data) // 2] = ord(" ") if data[len(data) // 2] != ord(" ") else ord("x")
    tok_json.write_bytes(bytes(data))
    with pytest.warns(LazarusWarning, match="tokenizer.json does not match its recorded sha256"):
        second = tokenizer_from_gguf(path, cache_dir=cache)
    text = "The capital of France is Paris"
    assert second.encode(text) == first.encode(text)
    assert hashlib.sha256(tok_json.read_bytes()).hexdigest() != hashlib.sha256(bytes(data)).hexdigest()  # rebuilt
    np.testing.assert_equal(second.fingerprint(), first.fingerprint())


def test_tokenizer_temporaries_of_a_killed_write_are_removed(kquant, tmp_path):
    from lazarus_report.models.tokenizer import disk_cache as tokmod

    path, _ = kquant
    cache = tmp_path / "tok-cache"
    cache.mkdir()
    key, _ = tokmod._cache_key(path)
    stale = cache / f".{key}.tokenizer.json.k9x2.tmp"  # what write_bytes_atomic leaves when killed
    stale.write_bytes(b'{"half": ')
    tokmod.tokenizer_from_gguf(path, cache_dir=cache)
    assert not stale.exists()
    assert sorted(p.name for p in cache.iterdir()) == [f"{key}.meta.json", f"{key}.tokenizer.json"]
