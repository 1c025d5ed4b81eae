"""Suite runs: each model loads once, every case equals a standalone compare/analyze of its prompt,
errors stay with their case, JUnit is valid XML with one test per expectation, and the command's
exit codes (0 all hold, 1 some failed, 2 bad input) with nothing written on bad input."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lazarus_report.commands.analyzer import ModelAnalyzer
from lazarus_report.commands.compare import compare_models
from lazarus_report.commands.suite import run_suite
from lazarus_report.core.config import AnalysisConfig, LayerStrategy
from lazarus_report.render.junit import render_junit
from lazarus_report.results.suite import FAILED, PASSED, SKIPPED, CheckOutcome, SuiteCase, SuiteResult
from lazarus_report.suites.spec import parse_suite

ROOT = Path(__file__).resolve().parents[1]

TINY_SUITE = """
name: tiny
cases:
  - id: capital
    prompt: The capital of France is
    raw: true
    track: [" Paris", " the"]
    expect:
      final_prob_at_most: 0.99
  - id: weather
    prompt: What's the weather?
    raw: true
    track: ["e"]
    expect:
      not_top1: "zzz-never-a-token"
    no_regression_of: final_prob
  - id: long
    prompt: "{long}"
    raw: true
    expect:
      final_prob_at_most: {{"a": 1.0}}
"""


@pytest.fixture(scope="module")
def tiny_pair(tiny_model_dir):
    return str(tiny_model_dir("llama", seed=1)), str(tiny_model_dir("llama", seed=2))  # shared, read-only


@pytest.fixture
def spec():
    # The tiny models' context is 256 positions; the "long" case is longer than that.
    return parse_suite(TINY_SUITE.format(long="word " * 400), "tiny.yaml")


@pytest.fixture
def count_loads(monkeypatch):
    """Count real model loads (the loader runs as usual)."""
    calls: list[str] = []
    real = ModelAnalyzer._ensure_loaded

    def counting(self):
        if self._loaded is None:
            calls.append(self._model_id)
        return real(self)

    monkeypatch.setattr(ModelAnalyzer, "_ensure_loaded", counting)
    return calls


def test_two_models_each_load_once_and_cases_match_standalone_compare(tiny_pair, spec, count_loads):
    base, other = tiny_pair
    ticks: list[int] = []
    # One case per forward pass: bit for bit what a standalone compare computes (batched runs agree
    # within float32 rounding: tests/test_batched.py).
    suite = run_suite(spec, [base, other], progress=ticks.append, batch_size=1)
    assert count_loads == [base, other]  # one load per model for all three cases
    assert sum(ticks) == len(spec.cases) * 2
    assert suite.roles == ["base", "tuned"] and suite.two_models
    assert [c.id for c in suite.cases] == ["capital", "weather", "long"]
    for case_spec, case in zip(spec.cases[:2], suite.cases[:2]):
        assert case.error is None and case.analysis is None
        alone = compare_models(
            base,
            other,
            case_spec.prompt,
            AnalysisConfig(
                layer_strategy=LayerStrategy.ALL,
                use_chat_template=False,
                track_tokens=case_spec.track,
                top_k=case_spec.top_k,
                compute_grid=False,
            ),
        )
        got = case.comparison
        assert [d.js for d in got.divergences] == [d.js for d in alone.divergences]
        assert [d.kl_12 for d in got.divergences] == [d.kl_12 for d in alone.divergences]
        assert got.tracked == alone.tracked
        for a, b in zip(got.results, alone.results):
            assert a.layer_predictions == b.layer_predictions and a.token_evolutions == b.token_evolutions
            assert a.grid is None
    long = suite.cases[2]
    assert long.status == "error" and long.comparison is None
    assert "model 1" in long.error and "longer than the model's context" in long.error
    assert suite.status == "error"
    assert SuiteResult.from_json(suite.to_json()) == suite


def test_same_base_with_adapter_loads_once(tiny_pair, spec, count_loads, tmp_path):
    base, _ = tiny_pair
    suite = run_suite(spec, [base, base])
    assert count_loads == [base]
    assert suite.load_seconds[1] == 0.0
    assert suite.labels == [f"{base} (1)", f"{base} (2)"]
    # Same weights on both sides: every divergence is zero and top-1 agrees everywhere.
    for case in suite.cases[:2]:
        assert all(d.js == 0.0 and d.top1_agree for d in case.comparison.divergences)
        assert all(c.status == PASSED for c in case.checks)


def test_one_model_run_skips_comparative_checks(tiny_pair, spec):
    base, _ = tiny_pair
    suite = run_suite(spec, [base], batch_size=1)
    assert suite.roles == ["model"] and not suite.two_models
    weather = suite.cases[1]
    assert weather.comparison is None and weather.analysis is not None
    statuses = {c.check: c.status for c in weather.checks}
    assert statuses["no_regression"] == SKIPPED and statuses["not_top1"] == PASSED
    alone = ModelAnalyzer.load(base).run(
        "What's the weather?",
        AnalysisConfig(
            layer_strategy=LayerStrategy.ALL, use_chat_template=False, track_tokens=["e"], compute_grid=False
        ),
    )
    assert weather.analysis.layer_predictions == alone.layer_predictions


def _check(name: str, status: str, message: str, line: int = 3) -> CheckOutcome:
    return CheckOutcome(name, "final_top1", "tuned", 'top-1 " Paris"', 'top-1 " London"', status, message, line)


def test_junit_is_valid_xml_with_one_testcase_per_expectation():
    hostile = '</testcase>\x01\x1b[31m\ud800 & <x> "q" \u202e'
    suite = SuiteResult(
        name="s",
        source="suite.yaml",
        source_sha256="0" * 64,
        roles=["base", "tuned"],
        labels=["a", hostile],
        role_checked=None,
        cases=[
            SuiteCase(
                hostile,
                hostile,
                2,
                None,
                None,
                [
                    _check("tuned final_top1", FAILED, hostile),
                    _check("base final_top1", PASSED, "ok"),
                    _check("comparison no_regression", SKIPPED, "needs two models"),
                ],
            ),
            SuiteCase("broken", "p", 9, None, None, [], "model 2 (x): the prompt is too long"),
        ],
        load_seconds=[1.0, 0.0],
        timings={"engine": 1.5},
        versions={},
    )
    text = render_junit(suite)
    root = ET.fromstring(text.encode("utf-8"))  # parses: no raw control characters or surrogates
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == ("4", "1", "1", "1")
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == 4
    failed = cases[0]
    assert failed.get("classname").startswith("s.</testcase>") and failed.get("line") == "3"
    assert "\\x01" in failed.find("failure").get("message") and "\\ud800" in failed.find("failure").get("message")
    assert cases[2].find("skipped") is not None
    assert cases[3].get("name") == "run" and cases[3].find("error").get("message").startswith("model 2")
    assert render_junit(suite) == text  # deterministic


# --- the command, on the real embedded model and the committed fine-tune ---------------------------------

EXAMPLE = ROOT / "examples" / "suites" / "weather-adapter.yaml"
ADAPTER = ROOT / "examples" / "weather-adapter" / "adapter"


def _lazarus(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    from helpers import lazarus

    return lazarus(*args, env=env)  # in-process (click's CliRunner)


@pytest.mark.slow
def test_example_suite_base_vs_fine_tuned(smollm2_gguf, tmp_path):
    out = {k: tmp_path / f"suite.{k}" for k in ("json", "xml", "md", "html")}
    summary = tmp_path / "step-summary.md"
    proc = _lazarus(
        "introspect",
        "suite",
        str(EXAMPLE),
        "-m1",
        "smollm2-135m-instruct",
        "-m2",
        "smollm2-135m-instruct",
        "--adapter2",
        str(ADAPTER),
        "-o",
        str(out["json"]),
        "--junit",
        str(out["xml"]),
        "--markdown",
        str(out["md"]),
        "--html",
        str(out["html"]),
        env={"GITHUB_STEP_SUMMARY": str(summary)},
    )
    suite = SuiteResult.load(out["json"])
    # The fine-tune has real side effects on general knowledge, which the suite exists to catch.
    assert suite.status == FAILED and proc.returncode == 1, proc.stderr
    assert proc.stderr == ""  # no progress bar when stderr is not a terminal
    by_id = {c.id: c for c in suite.cases}
    checks = {(c.id, k.name): k for c in suite.cases for k in c.checks}
    # What the fine-tune was trained for: weather questions now start the tool call.
    for cid in ("weather-paris", "weather-london-rain", "weather-oslo-snow"):
        tuned = by_id[cid].comparison.results[1]
        assert tuned.final_top_token == "get" and tuned.final_prediction[0].prob > 0.9
        assert checks[(cid, "tuned final_top1")].status == PASSED
        assert checks[(cid, "base not_top1 'get'")].status == PASSED
    assert all(k.status == PASSED for k in by_id["capital-france"].checks)
    failed = [k for c in suite.cases for k in c.checks if k.status == FAILED]
    assert failed and all(k.message for k in failed)
    # JUnit: one test case per expectation; the failure count agrees with the JSON.
    root = ET.parse(out["xml"]).getroot()
    assert int(root.get("tests")) == sum(len(c.checks) for c in suite.cases)
    assert int(root.get("failures")) == len(failed)
    # Text view printed, Markdown written and appended to the step summary, HTML embeds the run.
    assert "weather-paris" in proc.stdout
    md = out["md"].read_text(encoding="utf-8")
    assert summary.read_text(encoding="utf-8").strip() == md.strip()
    from lazarus_report.render import load_result_file
    from lazarus_report.results.loading import without_timings

    # The HTML embeds the run without wall-clock times (stable bytes; --timings keeps them).
    assert load_result_file(out["html"]) == without_timings(suite) != suite


def test_bad_suite_file_is_one_line_exit_2_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("cases:\n  - id: a\n    prompt: hi\n    expct:\n      final_top1: x\n", encoding="utf-8")
    out = tmp_path / "out.json"
    proc = _lazarus(
        "introspect", "suite", str(bad), "-m", "no-such-model", "-o", str(out), "--junit", str(tmp_path / "j.xml")
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("Error: ") and f"{bad}:4:" in proc.stderr
    assert "expct" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


def test_validate_loads_no_model_and_option_misuse_is_exit_2(tmp_path):
    proc = _lazarus("introspect", "suite", str(EXAMPLE), "--validate")
    assert proc.returncode == 0 and "14 cases" in proc.stdout and "valid" in proc.stdout
    proc = _lazarus("introspect", "suite", str(EXAMPLE), "-m", "a", "-m1", "b", "-m2", "c")
    assert proc.returncode == 2 and "not both" in proc.stderr
    proc = _lazarus("introspect", "suite", str(EXAMPLE), "-m1", "b")
    assert proc.returncode == 2 and "-m1 BASE -m2 TUNED" in proc.stderr
    proc = _lazarus("introspect", "suite", str(tmp_path / "missing.yaml"), "--validate")
    assert proc.returncode == 2 and "missing.yaml" in proc.stderr and proc.stderr.count("\n") == 1


def test_missing_adapter_fails_before_loading(tmp_path, count_loads):
    from lazarus_report.core.errors import LazarusError

    spec = parse_suite("cases:\n  - id: a\n    prompt: hi\n", "s.yaml")
    with pytest.raises(LazarusError, match="adapter"):
        run_suite(spec, ["x", "x"], adapters=[None, str(tmp_path / "nope")])
    assert count_loads == []


def test_suite_exit_code_is_0_when_everything_holds(tiny_pair, tmp_path):
    base, _ = tiny_pair
    good = tmp_path / "good.jsonl"
    good.write_text(
        '{"id": "a", "prompt": "The capital of France is", "raw": true, "track": [" Paris"],'
        ' "expect": {"final_prob_at_most": 1.0}}\n',
        encoding="utf-8",
    )
    proc = _lazarus("introspect", "suite", str(good), "-m", base, "-q", "--junit", str(tmp_path / "j.xml"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    root = ET.parse(tmp_path / "j.xml").getroot()
    assert (root.get("tests"), root.get("failures")) == ("1", "0")
