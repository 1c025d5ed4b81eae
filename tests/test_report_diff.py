"""``lazarus report diff``: a run diffed against its baseline (issue 20, part 1).

The expected verdicts are written by hand for the committed suite sample with known fields changed; a result
diffed with itself is all unchanged; bad input (kind mismatch, unreadable files, outputs onto the inputs) exits 2.
"""

from __future__ import annotations

import copy
import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner
from factories import make_suite
from helpers import github_like, parse

from lazarus_report.cli.main import main
from lazarus_report.render.diff_html import render_diff_html
from lazarus_report.render.diff_junit import render_diff_junit
from lazarus_report.render.diff_markdown import render_diff_markdown
from lazarus_report.render.diff_text import render_diff_text
from lazarus_report.results.codec import ResultFormatError
from lazarus_report.results.diff import DIFF_KIND, DiffResult, diff_results, digest_result

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_reports"


def _load(name: str) -> dict:
    return json.loads((SAMPLES / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def suite_json() -> dict:
    return _load("suite-weather-adapter.json")


def _case(data: dict, case_id: str) -> dict:
    return next(c for c in data["cases"] if c["id"] == case_id)


def _set_prob(data: dict, case_id: str, prob: float, side: int = 1) -> None:
    _case(data, case_id)["comparison"]["tracked"][0]["final_probs"][side] = prob


def edited(suite_json: dict) -> dict:
    """The suite sample with known fields changed (the expected verdicts are in ``EXPECTED``)."""
    d = copy.deepcopy(suite_json)
    _set_prob(d, "weather-paris", 0.90)  # 0.99944865 -> 0.90: a drop of 0.099 > 0.02
    _case(d, "weather-paris")["comparison"]["tracked"][0]["emergence_layers"][1] = 29  # 27 -> 29
    _case(d, "weather-london-rain")["checks"][2]["status"] = "failed"  # newly failing, P unchanged
    _set_prob(d, "freezing-point", 0.564516 + 0.3)  # still failing, but P rose beyond the tolerance
    for check in _case(d, "opposite-hot")["checks"]:
        check["status"] = "passed"  # newly passing
    _set_prob(d, "eiffel-tower", 0.93558403 - 0.015)  # a drop within the tolerance
    _set_prob(d, "counting", 0.2517998 - 0.02)  # a drop of exactly the tolerance: within it
    _set_prob(d, "capital-france", 0.88581319 - 0.021)  # just beyond it
    _case(d, "weather-cairo-heat")["comparison"]["attribution"]["carriers"] = [22, 23]
    _case(d, "weather-cairo-heat")["comparison"]["divergences"][-1]["js"] = 0.5
    removed = _case(d, "chat-arithmetic")
    d["cases"].remove(removed)
    added = copy.deepcopy(_case(d, "chat-romeo-juliet"))
    added["id"] = "new-case"
    d["cases"].append(added)
    return d


# id -> (verdict, transition, regression under any-drop, regression under new-failures)
EXPECTED = {
    "weather-paris": ("worse", "passing", True, False),
    "weather-london-rain": ("worse", "newly failing", True, True),
    "weather-oslo-snow": ("unchanged", "passing", False, False),
    "weather-cairo-heat": ("unchanged", "passing", False, False),
    "weather-chicago-jacket": ("unchanged", "passing", False, False),
    "chat-capital-france": ("unchanged", "passing", False, False),
    "chat-romeo-juliet": ("unchanged", "passing", False, False),
    "capital-france": ("worse", "passing", True, False),
    "eiffel-tower": ("unchanged", "passing", False, False),
    "freezing-point": ("better", "still failing", False, False),
    "opposite-hot": ("better", "newly passing", False, False),
    "counting": ("unchanged", "passing", False, False),
    "largest-planet": ("unchanged", "still failing", False, False),
}


def test_verdicts_built_by_hand(suite_json):
    d = diff_results(suite_json, edited(suite_json))
    got = {c.id: (c.verdict, c.transition, c.regression) for c in d.cases}
    assert got == {k: v[:3] for k, v in EXPECTED.items()}
    assert [c.id for c in d.added] == ["new-case"] and [c.id for c in d.removed] == ["chat-arithmetic"]
    assert d.regressed and [c.id for c in d.regressions] == ["weather-paris", "weather-london-rain", "capital-france"]
    paris = next(c for c in d.cases if c.id == "weather-paris")
    tuned = paris.subject
    assert tuned is not None and tuned.role == "tuned" and tuned.target == "get_weather"
    assert tuned.prob_delta == pytest.approx(0.90 - 0.99944865)
    assert (tuned.emergence_before, tuned.emergence_after) == (27, 29)
    assert paris.sides[0].role == "base" and paris.sides[0].prob_delta == 0
    london = next(c for c in d.cases if c.id == "weather-london-rain")
    assert london.newly_failing_checks == [_case(suite_json, "weather-london-rain")["checks"][2]["name"]]
    assert london.status_before == "passed" and london.status_after == "failed"
    cairo = next(c for c in d.cases if c.id == "weather-cairo-heat")
    assert cairo.carriers_before == [22, 27, 28, 29] and cairo.carriers_after == [22, 23]
    assert cairo.js_after == 0.5 and cairo.js_before == pytest.approx(0.6923, abs=1e-4)
    assert "1 newly failing" in d.summary and "1 newly passing" in d.summary and "3 regressions" in d.summary


def test_fail_on_new_failures_fails_only_on_newly_failing_cases(suite_json):
    d = diff_results(suite_json, edited(suite_json), fail_on="new-failures")
    assert {c.id: c.regression for c in d.cases} == {k: v[3] for k, v in EXPECTED.items()}
    assert {c.id: c.verdict for c in d.cases} == {k: v[0] for k, v in EXPECTED.items()}  # verdicts as before


def test_the_tolerance_decides_what_is_unchanged(suite_json):
    d = diff_results(suite_json, edited(suite_json), tolerance=0.2)
    verdicts = {c.id: c.verdict for c in d.cases}
    assert verdicts["weather-paris"] == "unchanged" and verdicts["capital-france"] == "unchanged"
    assert verdicts["weather-london-rain"] == "worse"  # newly failing, whatever the tolerance
    assert verdicts["freezing-point"] == "better"  # +0.3
    d0 = diff_results(suite_json, edited(suite_json), tolerance=0.0)
    assert {c.id: c.verdict for c in d0.cases}["eiffel-tower"] == "worse"
    with pytest.raises(ValueError):
        diff_results(suite_json, suite_json, tolerance=1.5)


@pytest.mark.parametrize(
    "name", ["suite-weather-adapter.json", "compare-smollm2-vs-gemma3.json", "analyze-capital-raw.json"]
)
def test_a_result_diffed_with_itself_is_all_unchanged(name):
    data = _load(name)
    d = diff_results(data, data)
    assert d.cases and all(c.verdict == "unchanged" and not c.regression for c in d.cases)
    assert not d.added and not d.removed and not d.setup and not d.warnings and not d.regressed
    assert "Every case is unchanged" in render_diff_html(d)
    assert "every case is unchanged" in render_diff_markdown(d)
    assert "Every case is unchanged." in render_diff_text(d)


def test_result_objects_and_parsed_json_give_the_same_diff(suite_json):
    from lazarus_report.results.suite import SuiteResult

    before, after = SuiteResult.from_dict(suite_json), SuiteResult.from_dict(edited(suite_json))
    assert diff_results(before, after) == diff_results(suite_json, edited(suite_json))


def test_the_json_form_round_trips_and_names_its_kind(suite_json):
    d = diff_results(suite_json, edited(suite_json), paths=("a.json", "b.json"))
    data = json.loads(d.to_json())
    assert data["kind"] == DIFF_KIND and data["schema_version"] >= 1
    assert DiffResult.from_json(d.to_json()) == d
    assert d.to_json() == diff_results(suite_json, edited(suite_json), paths=("a.json", "b.json")).to_json()


def test_analyses_are_matched_by_prompt_and_tracked_token():
    a, b = _load("analyze-capital-raw.json"), _load("analyze-capital-raw.json")
    b["prompt"] = "The capital of Italy is"
    d = diff_results(a, b)
    assert d.cases == [] and [c.prompt for c in d.added] == [b["prompt"]] and len(d.removed) == 1
    c = _load("analyze-capital-raw.json")
    c["token_evolutions"][0]["probs"][-1] = 0.5
    d = diff_results(a, c)
    assert [x.verdict for x in d.cases] == ["worse"] and d.cases[0].transition is None


def test_the_whole_answer_log_probability_is_read_when_both_sides_have_it():
    a, b = _load("analyze-capital-raw.json"), _load("analyze-capital-raw.json")
    assert diff_results(a, b).cases[0].subject.answer_logprob_delta is None  # no answer: None, not 0
    a["answer"] = {"sequence_logprob": -2.5}
    d = diff_results(a, b)
    side = d.cases[0].subject
    assert (
        side.answer_logprob_before == -2.5 and side.answer_logprob_after is None and side.answer_logprob_delta is None
    )
    b["answer"] = {"sequence_logprob": -4.0}
    d = diff_results(a, b)
    assert d.cases[0].subject.answer_logprob_delta == -1.5
    assert "−1.50" in render_diff_markdown(d) or "-1.50" in render_diff_markdown(d)


def test_setup_differences_are_listed_and_lens_or_template_mismatches_warn(suite_json):
    after = copy.deepcopy(suite_json)
    first = after["cases"][0]["comparison"]["results"]
    first[1]["model"]["adapter"] = "adapters/v2"
    first[1]["lens"] = {"kind": "tuned", "digest": "ab" * 32}
    first[0]["chat_template_applied"] = False
    after["versions"]["lazarus-report"] = "9.9.9"
    d = diff_results(suite_json, after)
    what = {s.what: s for s in d.setup}
    assert what["adapter (tuned)"].after == "adapters/v2" and not what["adapter (tuned)"].warning
    assert what["lens (tuned)"].warning and what["chat template (base)"].warning
    assert "lazarus-report version" in what
    assert len(d.warnings) == 2
    text, md, page = render_diff_text(d), render_diff_markdown(d), render_diff_html(d)
    assert text.splitlines()[:2] == [f"Warning: {w}" for w in d.warnings]
    assert any(w.startswith("the lens (tuned) differs") for w in d.warnings)
    assert md.split("\n\n")[1].startswith("> **Warning:**")
    assert page.index('class="warning"') < page.index('id="diff-runs-h"')


def test_a_changed_prompt_format_warns(suite_json):
    after = copy.deepcopy(suite_json)
    after["cases"][2]["comparison"]["results"][1]["formatted_prompt"] += " "
    d = diff_results(suite_json, after)
    assert any("prompt format" in w for w in d.warnings)


def test_kinds_must_match(suite_json):
    with pytest.raises(ResultFormatError, match="a suite result and the candidate a comparison result"):
        diff_results(suite_json, _load("compare-smollm2-vs-gemma3.json"))
    with pytest.raises(ResultFormatError, match="a lens-eval result: report diff reads"):
        digest_result(_load("lens-eval-smollm2-tuned.json"))
    with pytest.raises(ResultFormatError, match=r"cases\[0\]\.id"):
        broken = copy.deepcopy(suite_json)
        broken["cases"][0]["id"] = 3
        digest_result(broken)


# --- outputs ------------------------------------------------------------------------------------


def test_markdown_puts_regressions_first_and_collapses_the_rest(suite_json):
    md = render_diff_markdown(diff_results(suite_json, edited(suite_json)))
    assert md.index("### Regressions") < md.index("<details>") < md.index("</details>")
    regressions = md[md.index("### Regressions") : md.index("<details>")]
    assert "weather-london-rain" in regressions and "eiffel-tower" not in regressions
    html = github_like().render(md)
    assert "<details>" in html and "<table>" in html  # the collapsed table is a real table


def test_markdown_of_a_thousand_cases_fits_a_pull_request_comment():
    from lazarus_report.results.diff import CaseDiff, SideDiff

    side = SideDiff("tuned", " Paris", False, 0.9, 0.5, 1, 3, 20, 25, " Paris", " Lyon", None, None)
    cases = [
        CaseDiff(
            f"case-{i:04d}-" + "x" * 80,
            "p" * 500,
            None,
            "passed",
            "failed",
            "newly failing",
            ["c"] * 5,
            [],
            [side],
            0.1,
            0.2,
            [1, 2],
            [3],
            "worse",
            True,
            ["r" * 300],
        )
        for i in range(1000)
    ]
    base = diff_results(_load("analyze-capital-raw.json"), _load("analyze-capital-raw.json"))
    import dataclasses

    d = dataclasses.replace(base, cases=cases)
    md = render_diff_markdown(d)
    assert len(md) < 65_536 and "more regressions" in md


def test_junit_has_one_testcase_per_case_and_regressions_fail(suite_json):
    d = diff_results(suite_json, edited(suite_json))
    root = ET.fromstring(render_diff_junit(d))
    cases = root.findall(".//testcase")
    assert len(cases) == len(d.cases) + 2  # + added + removed (skipped)
    failed = [tc.get("name") for tc in cases if tc.find("failure") is not None]
    assert failed == [c.id for c in d.cases if c.regression]
    assert sorted(tc.get("name") for tc in cases if tc.find("skipped") is not None) == ["chat-arithmetic", "new-case"]


def test_hostile_strings_stay_data_in_every_output():
    suite = make_suite(20, hostile=True)
    data = suite.to_dict()
    after = copy.deepcopy(data)
    for c in after["cases"]:
        if c["comparison"] and c["comparison"]["tracked"]:
            c["comparison"]["tracked"][0]["final_probs"][1] = 0.0
    d = diff_results(data, after)
    page = render_diff_html(d)
    doc = parse(page)
    assert not doc.find_all("img") and "<script>alert" not in page
    assert len(re.findall(r"<script", page)) == 1  # the embedded JSON only
    md_html = github_like().render(render_diff_markdown(d))
    assert "<script" not in md_html and "<img" not in md_html and "<b>" not in md_html
    ET.fromstring(render_diff_junit(d))  # well-formed XML
    assert "\x1b" not in render_diff_text(d) and "\u202e" not in render_diff_text(d)


# --- the command --------------------------------------------------------------------------------


def invoke(*args: str):
    return CliRunner().invoke(main, ["report", "diff", *args], catch_exceptions=False)


def _one_line_error(result, fragment: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and fragment in lines[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture()
def pair(tmp_path, suite_json) -> tuple[Path, Path]:
    base, cand = tmp_path / "baseline.json", tmp_path / "candidate.json"
    base.write_text(json.dumps(suite_json), encoding="utf-8")
    cand.write_text(json.dumps(edited(suite_json)), encoding="utf-8")
    return base, cand


def test_a_regression_exits_1_with_every_output(pair, tmp_path):
    base, cand = pair
    out = {k: tmp_path / f"d.{k}" for k in ("json", "html", "md", "xml")}
    r = invoke(
        str(base),
        str(cand),
        "-o",
        str(out["json"]),
        "--html",
        str(out["html"]),
        "--markdown",
        str(out["md"]),
        "--junit",
        str(out["xml"]),
    )
    assert r.exit_code == 1, r.stderr
    assert "REGRESSION" in r.stdout and "weather-london-rain" in r.stdout
    assert DiffResult.load(out["json"]).regressed
    assert all(p.stat().st_size > 0 for p in out.values())
    r = invoke(str(base), str(cand), "--fail-on", "new-failures", "-q")
    assert r.exit_code == 1 and r.stdout == ""  # london-rain is newly failing
    r = invoke(str(base), str(cand), "--fail-on", "new-failures", "--tolerance", "0.5", "-q")
    assert r.exit_code == 1
    r = invoke(str(base), str(base), "-q")
    assert r.exit_code == 0


def test_only_drops_within_tolerance_exit_0(tmp_path, suite_json):
    base, cand = tmp_path / "b.json", tmp_path / "c.json"
    base.write_text(json.dumps(suite_json), encoding="utf-8")
    after = copy.deepcopy(suite_json)
    _set_prob(after, "eiffel-tower", 0.93558403 - 0.015)
    cand.write_text(json.dumps(after), encoding="utf-8")
    assert invoke(str(base), str(cand), "-q").exit_code == 0
    assert invoke(str(base), str(cand), "-q", "--tolerance", "0.01").exit_code == 1
    assert invoke(str(base), str(cand), "-q", "--tolerance", "0.01", "--fail-on", "new-failures").exit_code == 0


def test_an_html_report_reads_as_its_result(pair, tmp_path):
    from lazarus_report.render.html import render_html
    from lazarus_report.results.suite import SuiteResult

    base, cand = pair
    page = tmp_path / "baseline.html"
    page.write_text(render_html(SuiteResult.load(base), static=True), encoding="utf-8")
    r = invoke(str(page), str(cand), "-q", "-o", str(tmp_path / "d.json"))
    assert r.exit_code == 1, r.stderr
    assert (
        DiffResult.load(tmp_path / "d.json").cases
        == diff_results(json.loads(base.read_text()), json.loads(cand.read_text())).cases
    )


def test_kind_mismatch_exits_2(pair):
    base, _ = pair
    _one_line_error(
        invoke(str(base), str(SAMPLES / "compare-smollm2-vs-gemma3.json")), "diff two results of the same kind"
    )


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"\xff\xfe not text", "not a UTF-8 text file"),
        (b"{ not json", "not JSON"),
        (b'{"kind": "lazarus-report/diff", "schema_version": 2}', "diff result"),
        (b"<html><body>no result</body></html>", "HTML file without an embedded result"),
        (b"[1, 2]", "not a lazarus-report result"),
    ],
)
def test_unreadable_inputs_exit_2(pair, tmp_path, content, fragment):
    base, _ = pair
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    _one_line_error(invoke(str(base), str(bad)), fragment)


def test_missing_and_directory_inputs_exit_2(pair, tmp_path):
    base, _ = pair
    _one_line_error(invoke(str(tmp_path / "nope.json"), str(base)), "BASELINE: no such file")
    _one_line_error(invoke(str(base), str(tmp_path)), "is a directory")
    if os.geteuid() != 0:
        locked = tmp_path / "locked.json"
        locked.write_text("{}", encoding="utf-8")
        locked.chmod(0)
        _one_line_error(invoke(str(base), str(locked)), "CANDIDATE")


def test_outputs_never_overwrite_an_input_even_through_a_symlink(pair, tmp_path):
    base, cand = pair
    before = base.read_bytes()
    link = tmp_path / "link.json"
    link.symlink_to(base)
    _one_line_error(invoke(str(base), str(cand), "-o", str(link)), "is the BASELINE file")
    _one_line_error(invoke(str(base), str(cand), "--html", str(cand)), "is the CANDIDATE file")
    assert base.read_bytes() == before and link.is_symlink()
    loop = tmp_path / "loop.md"
    loop.symlink_to(loop)
    _one_line_error(invoke(str(base), str(cand), "--markdown", str(loop)), "--markdown")
    to_dir = tmp_path / "to_dir.xml"
    to_dir.symlink_to(tmp_path)
    _one_line_error(invoke(str(base), str(cand), "--junit", str(to_dir)), "is a directory")
    same = tmp_path / "same.md"
    same.symlink_to(tmp_path / "out.md")
    _one_line_error(
        invoke(str(base), str(cand), "--markdown", str(tmp_path / "out.md"), "--junit", str(same)), "name the same file"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "baseline.json", "candidate.json", "link.json", "loop.md", "same.md", "to_dir.xml",
    ]  # fmt: skip


def test_the_markdown_goes_to_the_step_summary(pair, tmp_path):
    base, cand = pair
    summary = tmp_path / "summary.md"
    md = tmp_path / "d.md"
    r = CliRunner().invoke(
        main,
        ["report", "diff", str(base), str(cand), "--markdown", str(md), "-q"],
        env={"GITHUB_STEP_SUMMARY": str(summary)},
    )
    assert r.exit_code == 1
    assert summary.read_text(encoding="utf-8") == md.read_text(encoding="utf-8") + "\n"


# --- in a browser -------------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.parametrize("width", [390, 1280])
def test_the_diff_page_renders_without_console_errors(tmp_path, suite_json, width, chromium):
    page_file = tmp_path / "diff.html"
    page_file.write_text(render_diff_html(diff_results(suite_json, edited(suite_json))), encoding="utf-8")
    ctx = chromium.new_context(viewport={"width": width, "height": 900}, offline=True)
    try:
        page = ctx.new_page()
        errors: list[str] = []
        requests: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(page_file.as_uri())
        assert errors == [] and requests == [page_file.as_uri()]
        assert page.locator("table.diff-cases tr.regression").count() == 3
        assert page.locator(".diff-chart svg circle").count() > 20
        # nothing wider than the screen but the tables' own scrolling boxes
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.screenshot(path=str(tmp_path / f"diff-{width}.png"), full_page=True)
    finally:
        ctx.close()
