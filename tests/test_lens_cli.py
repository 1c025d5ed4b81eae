"""``lazarus lens fit`` / ``lens eval`` as users run them (in-process through click's ``CliRunner``, a tiny random model):
results on good input; one-line errors, exit 2 and nothing written on bad input."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest
from test_lens_math import WORDS


def invoke(*args: str, cache: Path) -> subprocess.CompletedProcess:
    """In-process (click's CliRunner): the same ``main`` the console script runs, without process start-up."""
    from click.testing import CliRunner

    from lazarus_report.cli.main import main

    env = {"LAZARUS_CACHE_DIR": str(cache), "XDG_CACHE_HOME": str(cache / "xdg")}
    result = CliRunner().invoke(main, list(args), env=env)
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


def assert_clean_error(proc: subprocess.CompletedProcess, fragment: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("Error: ") and fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tiny_models import build_tiny_model

    root = tmp_path_factory.mktemp("lens-cli")
    build_tiny_model("llama", root / "model", seed=0)
    build_tiny_model("llama", root / "other", seed=5)
    rng = random.Random(0)
    (root / "corpus.txt").write_text(" ".join(rng.choice(WORDS) for _ in range(4000)), encoding="utf-8")
    lines = [json.dumps({"text": " ".join(rng.choice(WORDS) for _ in range(300))}) for _ in range(12)]
    (root / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "empty.txt").write_text("  \n", encoding="utf-8")
    (root / "small.txt").write_text("The capital of France is Paris.", encoding="utf-8")
    (root / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (root / "bad.jsonl").write_text('{"text": "ok"}\n{"txt": 1}\n', encoding="utf-8")
    (root / "cache").mkdir()
    return {"root": root, "model": root / "model", "other": root / "other", "cache": root / "cache"}


def test_fit_into_the_cache_then_eval_by_kind(env: dict[str, Path]) -> None:
    root = env["root"]
    proc = invoke("lens", "fit", "-m", str(env["model"]), "--corpus", str(root / "corpus.txt"), cache=env["cache"])
    assert proc.returncode == 0, proc.stderr
    assert "linear lens for" in proc.stdout and "user cache" in proc.stdout
    assert list(env["cache"].glob("lenses/*/linear/lens.json"))
    out, page = root / "eval.json", root / "eval.html"
    proc = invoke(
        "lens", "eval", "-m", str(env["model"]), "--lens", "linear", "--corpus", str(root / "corpus.jsonl"),
        "-o", str(out), "--html", str(page), cache=env["cache"],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["kind"] == "lazarus-report/lens-eval"
    assert data["lens"]["kind"] == "linear" and data["lens"]["source"] == "cache"
    assert [r["layer"] for r in data["logit"]] == [0, 1] == [r["layer"] for r in data["lens"]["fidelity"]]
    # The text table shows both lenses per layer; the page has both charts.
    assert "logit" in proc.stdout and "Mean KL over layers 0-1: logit " in proc.stdout
    html = page.read_text()
    assert 'id="lens-kl"' in html and 'id="lens-agreement"' in html and "<svg" in html
    from lazarus_report.results.lens_eval import LensEvalResult

    assert LensEvalResult.load(out).tokens == data["tokens"]


def test_fit_tuned_to_a_path(env: dict[str, Path]) -> None:
    root = env["root"]
    target = root / "tuned-lens"
    proc = invoke(
        "lens", "fit", "-m", str(env["model"]), "--kind", "tuned", "--steps", "5", "--corpus", str(root / "corpus.txt"),
        "--out", str(target), cache=env["cache"],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((target / "lens.json").read_text())
    assert meta["kind"] == "tuned" and meta["form"] == "residual" and meta["fit"]["steps"] == 5


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--corpus", "empty.txt"], "no text in the corpus"),
        (["--corpus", "small.txt"], "needs at least"),
        (["--corpus", "missing.txt"], "no such file"),
        (["--corpus", "latin1.txt"], "not UTF-8"),
        (["--corpus", "bad.jsonl"], 'bad.jsonl:2: expected an object with a "text" string'),
        (["--tokens", "10"], "at least 1000 tokens"),
        (["--out", "corpus.txt"], "exists and is not a lens directory"),
        (["--out", "nowhere/lens"], "does not exist"),
    ],
)
def test_fit_bad_input(env: dict[str, Path], args: list[str], fragment: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process (CliRunner) for speed; the same ``main`` the console script runs."""
    from click.testing import CliRunner

    from lazarus_report.cli.main import main

    root = env["root"]
    monkeypatch.chdir(root)
    monkeypatch.setenv("LAZARUS_CACHE_DIR", str(env["cache"]))
    before = sorted(p.name for p in root.iterdir())
    cache_before = sorted(str(p) for p in env["cache"].rglob("*"))
    out = [] if args[0] == "--out" else ["--out", "new-lens"]
    result = CliRunner().invoke(main, ["lens", "fit", "-m", str(env["model"]), *args, *out])
    proc = subprocess.CompletedProcess([], result.exit_code, result.stdout, result.stderr)
    assert_clean_error(proc, fragment)
    assert sorted(p.name for p in root.iterdir()) == before
    assert sorted(str(p) for p in env["cache"].rglob("*")) == cache_before


def test_eval_bad_input(env: dict[str, Path]) -> None:
    root = env["root"]
    out = root / "never.json"
    proc = invoke("lens", "eval", "-m", str(env["model"]), "--lens", "sideways", "-o", str(out), cache=env["cache"])
    assert_clean_error(proc, "unknown --lens 'sideways'")
    # A damaged lens directory: refused before the model loads.
    lens_dir = root / "broken-lens"
    proc = invoke(
        "lens", "fit", "-m", str(env["model"]), "--corpus", str(root / "corpus.txt"), "--out", str(lens_dir), "-q",
        cache=env["cache"],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    weights = lens_dir / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4])
    proc = invoke("lens", "eval", "-m", str(env["model"]), "--lens", str(lens_dir), "-o", str(out), cache=env["cache"])
    assert_clean_error(proc, "is damaged")
    # A lens for another model.
    good = root / "good-lens"
    invoke(
        "lens", "fit", "-m", str(env["model"]), "--corpus", str(root / "corpus.txt"), "--out", str(good), "-q",
        cache=env["cache"],
    )  # fmt: skip
    proc = invoke("lens", "eval", "-m", str(env["other"]), "--lens", str(good), "-o", str(out), cache=env["cache"])
    assert_clean_error(proc, "was fitted for another model: the weights differ")
    # No fitted lens of that kind in the cache for this model.
    proc = invoke("lens", "eval", "-m", str(env["other"]), "--lens", "tuned", "-o", str(out), cache=env["cache"])
    assert_clean_error(proc, "--kind tuned` first")
    assert not out.exists()
