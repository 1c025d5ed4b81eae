"""Stable bytes (issue 13): two separate runs of the same analysis write byte-identical HTML and Markdown, so
reports can be committed and diffed. Wall-clock timings stay in the JSON (``-o``) and reach the HTML and
Markdown only with ``--timings``.

The determinism tests run the command line twice in separate processes (a fresh, isolated cache each time
the first run builds the Vega bundle and the second reads it), on tiny models and (slow) on SmolLM2 with the
committed weather adapter."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from factories import make_comparison, make_result, make_suite
from test_attribution import N_LAYERS, write_tiny_adapter
from test_render_html import parse
from tiny_models import build_tiny_model

from lazarus_report.render import load_result_file
from lazarus_report.render.files import render_report_files
from lazarus_report.results.analysis import AnalysisResult
from lazarus_report.results.comparison import ComparisonResult
from lazarus_report.results.loading import without_timings
from lazarus_report.results.suite import SuiteResult

PROMPT = "The capital of France is"
TIMING_KEYS = {"timings", "load_seconds", "seconds"}


def _drop_timings(data):
    """The JSON of a result with every timing field removed (an independent walk over the plain JSON)."""
    if isinstance(data, dict):
        return {k: _drop_timings(v) for k, v in data.items() if k not in TIMING_KEYS}
    if isinstance(data, list):
        return [_drop_timings(v) for v in data]
    return data


def _timing_values(data) -> list:
    if isinstance(data, dict):
        found = [v for k, v in data.items() if k in TIMING_KEYS and v not in ({}, [], None)]
        return found + [x for v in data.values() for x in _timing_values(v)]
    if isinstance(data, list):
        return [x for v in data for x in _timing_values(v)]
    return []


def _with_attribution_seconds(c: ComparisonResult) -> ComparisonResult:
    from lazarus_report.results.comparison import Attribution

    attribution = Attribution(
        method="adapter-ablation", metric="js_last_position", change=0.5, layers=[], carriers=[],
        carriers_share=None, threshold=0.8, tracked=[], tracked_probs=[], passes=7, seconds=3.21, notes=[],
    )  # fmt: skip
    return dataclasses.replace(c, attribution=attribution)


RESULTS = {
    "analysis": make_result,
    "comparison": lambda: _with_attribution_seconds(make_comparison()),
    "suite": make_suite,
}


@pytest.mark.parametrize("kind", sorted(RESULTS))
def test_without_timings_removes_every_wall_clock_field_and_nothing_else(kind):
    result = RESULTS[kind]()
    assert _timing_values(result.to_dict())  # the factory's result has timings to remove
    stripped = without_timings(result)
    assert type(stripped) is type(result)
    assert _timing_values(stripped.to_dict()) == []
    assert _drop_timings(stripped.to_dict()) == _drop_timings(result.to_dict())
    assert without_timings(stripped) == stripped
    assert type(stripped).from_dict(json.loads(stripped.to_json())) == stripped  # still a valid result


@pytest.mark.parametrize("kind", sorted(RESULTS))
def test_reports_show_timings_only_when_asked(kind, tmp_path):
    result = RESULTS[kind]()
    html, md = tmp_path / "r.html", tmp_path / "r.md"
    plain = render_report_files(result, html_path=html, markdown_path=md, timings=False)
    timed = render_report_files(result, html_path=html, markdown_path=md, timings=True)
    for files in (plain, timed):
        assert set(files) == {html, md}
    page, page_timed = plain[html].decode(), timed[html].decode()
    for text in (page, plain[md].decode()):
        assert "Timings" not in text and "loaded in" not in text
    assert "<h3>Timings</h3>" in page_timed
    if kind == "analysis":
        assert "Timings:" in timed[md].decode()
        assert "1.23 s" in page_timed and "1.23 s" not in page  # the load time of make_result
    if kind == "comparison":
        assert "loaded in" in page_timed
        assert "7 forward passes (partial ones included), 3.21 s" in page_timed
        assert "7 forward passes (partial ones included)." in page
    # The embedded result has no timings either; re-rendering it gives the same bytes.
    html.write_bytes(plain[html])
    embedded = load_result_file(html)
    assert embedded == without_timings(result)
    assert render_report_files(embedded, html_path=html, markdown_path=md, timings=True) == plain


def test_text_view_and_json_keep_their_timings(tmp_path):
    result = make_result()
    assert result.timings and without_timings(result).timings == {}
    assert isinstance(result, AnalysisResult) and result.to_dict()["timings"] == result.timings


# --- two separate runs of the command line ------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("stable")
    build_tiny_model("llama", root / "a", seed=1, num_hidden_layers=N_LAYERS)
    adapter = write_tiny_adapter(str(root / "a"), root / "lora", num_layers=3, zero_b=set())
    return {"a": str(root / "a"), "lora": str(adapter)}


def _run(args: list[str], cache: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    env.update(LAZARUS_CACHE_DIR=str(cache), XDG_CACHE_HOME=str(cache / "xdg"), HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-m", "lazarus_report.cli.main", "introspect", *args],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc


def _twice(args: list[str], tmp_path: Path, *, json_out: bool = False) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """Run ``args`` + outputs in two separate processes (separate directories, one fresh cache) and return
    each run's files."""
    cache = tmp_path / "cache"
    outputs = []
    for n in (1, 2):
        work = tmp_path / f"run{n}"
        work.mkdir()
        extra = ["--html", "r.html", "--markdown", "r.md"] + (["-o", "r.json"] if json_out else [])
        _run([*args, *extra, "-q"], cache, work)
        outputs.append({p.name: p.read_bytes() for p in work.iterdir()})
    return outputs[0], outputs[1]


def _assert_identical(first: dict[str, bytes], second: dict[str, bytes]) -> None:
    assert set(first) == set(second)
    for name in ("r.html", "r.md"):
        assert first[name] == second[name], f"{name} differs between two runs"
    assert b"Timings" not in first["r.html"] and b"Timings" not in first["r.md"]
    assert b"Versions" in first["r.html"]  # the footer is there, without timings


@pytest.mark.slow  # fresh processes (the same bytes across processes)
def test_two_runs_of_analyze_write_the_same_bytes(tiny, tmp_path):
    first, second = _twice(
        ["analyze", "-m", tiny["a"], "-p", PROMPT, "--raw", "--all-layers", "-t", " Paris"], tmp_path
    )
    _assert_identical(first, second)
    assert load_result_file(tmp_path / "run1" / "r.html").timings == {}


@pytest.mark.slow  # fresh processes (the same bytes across processes)
def test_two_runs_of_compare_with_attribution_write_the_same_bytes(tiny, tmp_path):
    args = ["compare", "-m1", tiny["a"], "-m2", tiny["a"], "--adapter2", tiny["lora"], "-p", PROMPT, "--raw"]
    first, second = _twice([*args, "--attribution"], tmp_path, json_out=True)
    _assert_identical(first, second)
    # The JSON keeps every timing (and so differs between runs, as wall clocks do).
    c = json.loads(first["r.json"])
    assert c["load_seconds"] and c["attribution"]["seconds"] > 0 and c["results"][0]["timings"]["lens"] >= 0
    assert load_result_file(tmp_path / "run1" / "r.html") == without_timings(ComparisonResult.from_dict(c))


@pytest.mark.slow  # fresh processes (the same bytes across processes)
def test_timings_flag_shows_them(tiny, tmp_path):
    _run(
        ["analyze", "-m", tiny["a"], "-p", PROMPT, "--raw", "--html", "t.html", "--markdown", "t.md", "--timings"],
        tmp_path / "cache",
        tmp_path,
    )
    page = (tmp_path / "t.html").read_text(encoding="utf-8")
    footer = parse(page).find("footer")
    assert footer.find("details").find("summary").text().endswith("Versions, settings and timings")
    assert "<h3>Timings</h3>" in page and "- **Timings:** load" in (tmp_path / "t.md").read_text(encoding="utf-8")
    assert set(load_result_file(tmp_path / "t.html").timings) >= {"load", "lens", "grid"}
    # report render: --timings shows what the file holds; without it, none.
    proc = subprocess.run(
        [sys.executable, "-m", "lazarus_report.cli.main", "report", "render", "t.html", "--html", "plain.html",
         "--markdown", "plain.md", "-q"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
        env={**os.environ, "LAZARUS_CACHE_DIR": str(tmp_path / "cache")},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Timings" not in (tmp_path / "plain.html").read_text(encoding="utf-8")
    assert "Timings" not in (tmp_path / "plain.md").read_text(encoding="utf-8")


@pytest.mark.slow  # fresh processes (the same bytes across processes)
def test_a_suite_run_twice_writes_the_same_bytes(tiny, tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: stable\ncases:\n  - id: capital\n    prompt: The capital of France is\n    raw: true\n"
        "    expect_tuned:\n      final_top1: ' Paris'\n  - id: other\n    prompt: hello world\n"
        "    expect_tuned:\n      not_top1: ' the'\n",
        encoding="utf-8",
    )
    args = ["suite", str(suite), "-m1", tiny["a"], "-m2", tiny["a"], "--adapter2", tiny["lora"]]
    cache = tmp_path / "cache"
    pages = []
    for n in (1, 2):
        work = tmp_path / f"run{n}"
        work.mkdir()
        env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
        env["LAZARUS_CACHE_DIR"] = str(cache)
        proc = subprocess.run(
            [sys.executable, "-m", "lazarus_report.cli.main", "introspect", *args, "--html", "r.html", "--markdown",
             "r.md", "-q"],
            capture_output=True, text=True, env=env, cwd=work, timeout=900,
        )  # fmt: skip
        assert proc.returncode in (0, 1), proc.stderr  # the check may pass or fail: the verdict is not the point
        pages.append(((work / "r.html").read_bytes(), (work / "r.md").read_bytes()))
    assert pages[0] == pages[1]
    suite_result = load_result_file(tmp_path / "run1" / "r.html")
    assert isinstance(suite_result, SuiteResult) and suite_result.timings == {} and suite_result.load_seconds == []


@pytest.mark.slow
def test_two_runs_of_the_real_compare_write_the_same_bytes(tmp_path):
    """SmolLM2, base vs the committed weather adapter: the report a PR would commit."""
    adapter = Path(__file__).resolve().parents[1] / "examples" / "weather-adapter" / "adapter"
    args = [
        "compare", "-m1", "smollm2-135m-instruct", "-m2", "smollm2-135m-instruct", "--adapter2", str(adapter),
        "-p", "What's the weather in Paris?", "--track", "get_weather",
    ]  # fmt: skip
    first, second = _twice(args, tmp_path)
    _assert_identical(first, second)
