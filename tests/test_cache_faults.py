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
import os
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

from lazarus_report.core.errors import LazarusError, LazarusWarning
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
    from lazarus_report.core.disk_cache import cache_lock

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
    assert sorted(p.name for p in cache.iterdir() if p.name != "locks") == [f"{key}.meta.json", f"{key}.tokenizer.json"]


# issue 24: spills, signals, disks

ROOT = Path(__file__).resolve().parents[1]
SMOLLM2 = "smollm2-135m-instruct"
WEATHER_ADAPTER = ROOT / "examples" / "weather-adapter" / "adapter"


@pytest.fixture
def run_dirs(tmp_path: Path) -> tuple[dict[str, str], Path, Path, Path]:
    """A fresh $TMPDIR, cache and output folder for a command in a subprocess."""
    tmp, cache, out = tmp_path / "tmp", tmp_path / "cache", tmp_path / "out"
    for folder in (tmp, cache, out):
        folder.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp), LAZARUS_CACHE_DIR=str(cache))
    return env, tmp, cache, out


def _terminate_when(proc: subprocess.Popen, ready: Any, seconds: float = 300) -> str:
    """Send SIGTERM once ``ready()`` holds (the command is mid-run); return its stderr."""
    deadline = time.monotonic() + seconds
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"the process ended before SIGTERM ({proc.returncode}): {proc.communicate()[1]}")
        assert time.monotonic() < deadline, "the command never reached the point to interrupt"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    return proc.communicate(timeout=120)[1]


def _assert_nothing_left(tmp: Path, cache: Path, out: Path) -> None:
    assert [p.name for p in tmp.iterdir() if p.name != "mlx"] == []  # mlx/: MLX's own compiled-kernel cache
    assert [str(p) for p in cache.rglob("*") if p.name.startswith(".") or ".tmp" in p.name] == []
    assert sorted(p.name for p in out.iterdir()) == []


def _lazarus(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "lazarus_report.cli.main", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.slow
def test_sigterm_during_compare_removes_the_spill(smollm2_gguf, run_dirs):
    env, tmp, cache, out = run_dirs
    prompt = " ".join(f"word{i} and more" for i in range(100))
    # -m2 names the same file by its path: two loads, so model 1's distributions are spilled (the same name would
    # apply the adapter to model 1's weights and compute the change map from the lens inputs, with no file).
    proc = _lazarus(
        "introspect", "compare", "-m1", SMOLLM2, "-m2", str(smollm2_gguf), "--adapter2", str(WEATHER_ADAPTER),
        "-p", prompt, "-o", str(out / "c.json"), "--html", str(out / "c.html"), "-q", env=env,
    )  # fmt: skip
    err = _terminate_when(proc, lambda: any(tmp.glob("lazarus-compare-*/positions-*.npy")))
    assert proc.returncode == 143, err
    assert err == "Error: terminated (SIGTERM)\n"
    _assert_nothing_left(tmp, cache, out)


@pytest.mark.slow
def test_sigterm_during_a_two_model_suite_removes_the_spill(smollm2_gguf, run_dirs):
    env, tmp, cache, out = run_dirs
    suite = tmp.parent / "suite.jsonl"
    suite.write_text("".join(f'{{"id": "c{i}", "prompt": "Fact {i}: the sky is"}}\n' for i in range(60)))
    proc = _lazarus(
        "introspect", "suite", str(suite), "-m1", SMOLLM2, "-m2", SMOLLM2, "--adapter2", str(WEATHER_ADAPTER),
        "-o", str(out / "s.json"), "--junit", str(out / "s.xml"), "-q", env=env,
    )  # fmt: skip
    err = _terminate_when(proc, lambda: any(tmp.glob("lazarus-suite-*/*.npy")))
    assert proc.returncode == 143, err
    assert err == "Error: terminated (SIGTERM)\n"
    _assert_nothing_left(tmp, cache, out)


@pytest.mark.slow
def test_sigterm_during_lens_fit_leaves_nothing(smollm2_gguf, run_dirs):
    env, tmp, cache, out = run_dirs
    words = ["the", "cat", "sat", "on", "a", "mat", "while", "dogs", "run", "far", "from", "home"]
    corpus = tmp.parent / "small.txt"
    corpus.write_text("\n".join(" ".join(words[(i * 7 + j) % len(words)] for j in range(12)) for i in range(200)))
    proc = _lazarus(
        "lens", "fit", "-m", SMOLLM2, "--corpus", str(corpus), "--tokens", "1200", "--out", str(out / "lens"),
        "-q", env=env,
    )  # fmt: skip
    # The tokenizer is cached once the model has loaded: the fit is then collecting activations.
    err = _terminate_when(proc, lambda: any(cache.rglob("*.meta.json")))
    assert proc.returncode == 143, err
    assert err == "Error: terminated (SIGTERM)\n"
    _assert_nothing_left(tmp, cache, out)


SPILL_SUITE = """
name: spill
cases:
  - id: a
    prompt: The capital of France is
    raw: true
    track: [" Paris"]
  - id: b
    prompt: What's the weather?
    raw: true
  - id: c
    prompt: One two three four
    raw: true
  - id: long
    prompt: "{long}"
    raw: true
"""


@pytest.fixture(scope="module")
def tiny_two(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    from tiny_models import build_tiny_model

    base, other = tmp_path_factory.mktemp("base"), tmp_path_factory.mktemp("other")
    build_tiny_model("llama", base, seed=1)
    build_tiny_model("llama", other, seed=2)
    return str(base), str(other)


def test_two_model_suite_spill_stays_within_its_budget(tiny_two, monkeypatch, tmp_path):
    """Model 1's spilled runs never take more than the budget (here: one case), the suite then runs in
    rounds, and every case equals the one-round run; the directory is gone afterwards."""
    import tempfile

    from lazarus_report.commands import suite as runner
    from lazarus_report.suites.spec import parse_suite

    spec = parse_suite(SPILL_SUITE.format(long="word " * 400), "spill.yaml")
    base, other = tiny_two
    whole = runner.run_suite(spec, [base, other], batch_size=1)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    on_disk: list[int] = []
    real_spill = runner._spill

    def measured(array: Any, path: Path) -> Any:  # the real spill, then what the directory holds
        kept = real_spill(array, path)
        on_disk.append(sum(p.stat().st_size for p in path.parent.iterdir()))
        return kept

    monkeypatch.setattr(runner, "_spill", measured)
    monkeypatch.setattr(runner, "SPILL_BUDGET_BYTES", 1)  # one case per round
    ticks: list[int] = []
    rounds = runner.run_suite(spec, [base, other], batch_size=1, progress=ticks.append)
    one_case = max(on_disk)
    assert len(on_disk) == 3 and all(size == one_case for size in on_disk)  # never two cases at once
    assert sum(ticks) == 2 * len(spec.cases)
    assert list(tmp_path.iterdir()) == []
    for got, want in zip(rounds.cases, whole.cases):
        assert (got.id, got.error, got.checks) == (want.id, want.error, want.checks)
        if want.comparison is not None:
            assert got.comparison.divergences == want.comparison.divergences
            assert got.comparison.tracked == want.comparison.tracked
            assert got.comparison.token_shifts == want.comparison.token_shifts
    # Batched, with the real budget: one round, the same cases.
    batched = runner.run_suite(spec, [base, other])
    assert [c.status for c in batched.cases] == [c.status for c in whole.cases]


# issue 24: validation


def test_two_first_tokenizer_builds_at_once_build_once(kquant, tmp_path, monkeypatch):
    # the tokenizer cache is locked as the others are: the second caller waits, then reads the entry
    import threading

    from lazarus_report.models.tokenizer import disk_cache as tokmod

    path, _ = kquant
    cache = tmp_path / "tok-cache"
    builds: list[int] = []
    real = tokmod.build_from_metadata

    def slow_build(meta):
        builds.append(1)
        time.sleep(0.5)  # long enough for the other thread to find no entry and try to build it
        return real(meta)

    monkeypatch.setattr(tokmod, "build_from_metadata", slow_build)
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(tokmod.tokenizer_from_gguf(path, cache_dir=cache)))]
    threads.append(threading.Thread(target=lambda: results.append(tokmod.tokenizer_from_gguf(path, cache_dir=cache))))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 2 and len(builds) == 1
    text = "The capital of France is Paris"
    assert results[0].encode(text) == results[1].encode(text)


def test_orphaned_tokenizer_entries_are_removed(kquant, tmp_path):
    # entries of an older cache format, or for a GGUF file that is gone, are never read again
    import json

    from lazarus_report.models.tokenizer import disk_cache as tokmod

    path, _ = kquant
    cache = tmp_path / "tok-cache"
    cache.mkdir()
    other = tmp_path / "other.gguf"
    other.write_bytes(b"GGUF")
    kept = {"path": str(other), "format": tokmod.CACHE_FORMAT}
    records = {
        "0123456789abcdef-0123456789abcdef": {"path": str(path), "format": tokmod.CACHE_FORMAT - 1},  # old format
        "1111111111111111-2222222222222222": {"path": str(tmp_path / "deleted.gguf"), "format": tokmod.CACHE_FORMAT},
        "3333333333333333-4444444444444444": kept,  # current and its file exists: another model's entry
    }
    for name, source in records.items():
        (cache / f"{name}.meta.json").write_text(json.dumps({"source": source}), encoding="utf-8")
        (cache / f"{name}.tokenizer.json").write_text("{}", encoding="utf-8")
    (cache / "notes.meta.json").write_text("not ours", encoding="utf-8")  # not a name this cache writes
    tokmod.tokenizer_from_gguf(path, cache_dir=cache)
    key, _ = tokmod._cache_key(path)
    names = sorted(p.name for p in cache.iterdir() if p.name != "locks")
    assert names == sorted(
        [
            f"{key}.meta.json",
            f"{key}.tokenizer.json",
            "3333333333333333-4444444444444444.meta.json",
            "3333333333333333-4444444444444444.tokenizer.json",
            "notes.meta.json",
        ]
    )


# issue 24: lens files


@pytest.fixture(scope="module")
def lens_model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import random

    from test_lens_math import WORDS
    from tiny_models import build_tiny_model

    root = tmp_path_factory.mktemp("lens-cache-faults")
    build_tiny_model("llama", root / "model", seed=0)
    rng = random.Random(0)
    (root / "corpus.txt").write_text(" ".join(rng.choice(WORDS) for _ in range(4000)), encoding="utf-8")
    return {"model": root / "model", "corpus": root / "corpus.txt"}


def _fit_into_cache(lens_model: dict[str, Path], cache: Path):
    from test_lens_cli import invoke

    args = ["lens", "fit", "-m", str(lens_model["model"]), "--corpus", str(lens_model["corpus"]), "-q"]
    return invoke(*args, cache=cache)


def test_a_damaged_cached_lens_is_replaced_but_foreign_files_never_deleted(lens_model, tmp_path):
    from test_lens_cli import assert_clean_error

    from lazarus_report.lens.learned.artefact import Lens

    cache = tmp_path / "cache"
    assert _fit_into_cache(lens_model, cache).returncode == 0
    (entry,) = cache.glob("lenses/*/linear")
    (entry / "lens.json").write_text("{not json")  # damaged: the next fit rebuilds it
    proc = _fit_into_cache(lens_model, cache)
    assert proc.returncode == 0, proc.stderr
    Lens.load(entry)
    (entry / "mine.txt").write_text("not the tool's")  # something the tool did not write: refused
    proc = _fit_into_cache(lens_model, cache)
    assert_clean_error(proc, "holds other files ('mine.txt')")
    assert (entry / "mine.txt").read_text() == "not the tool's"
    assert sorted(p.name for p in entry.parent.iterdir()) == ["linear"]  # no temporary left


@pytest.mark.slow  # mounts a tmpfs
def test_lens_cache_on_a_full_disk_is_a_clean_error(lens_model, tmp_path):
    from test_lens_cli import assert_clean_error

    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root with mount rights)")
    try:
        proc = _fit_into_cache(lens_model, mnt / "cache")
        assert_clean_error(proc, "No space left on device")
        assert "cannot write the lens to" in proc.stderr and str(mnt / "cache" / "lenses") in proc.stderr
        leftovers = [p for p in (mnt / "cache").rglob("*") if p.is_file() or p.name.startswith(".")]
        assert leftovers == []
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
