"""Suite reports at scale (issue 11): the first ``DETAIL_LIMIT`` cases in failures-first order are shown in
full and the rest in brief, the summary charts count over every case once there are too many for one mark
per case, and the JSON conversion behind ``-o`` and the embedded result is exact and fast enough."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from altair.utils.schemapi import validate_jsonschema
from altair.vegalite.v6.schema import load_schema
from factories import make_comparison, make_hostile_result, make_result, make_suite
from markupsafe import escape

from lazarus_report.render import charts
from lazarus_report.render.charts.suite_many import MANY_CASES
from lazarus_report.render.html import render_html
from lazarus_report.render.packing import pack_result, unpack_result
from lazarus_report.render.suite_model import DETAIL_LIMIT, STATUS_ORDER, build_suite_report
from lazarus_report.results.analysis import RESULT_KIND
from lazarus_report.results.codec import dumps_json, plain_dict, with_header
from lazarus_report.results.comparison import COMPARISON_KIND
from lazarus_report.results.suite import SuiteResult

N_CASES = 130


@pytest.fixture(scope="module")
def suite() -> SuiteResult:
    return make_suite(N_CASES, two_models=True)


def test_first_cases_failing_first_are_shown_in_full_the_rest_in_brief(suite):
    report = build_suite_report(suite)
    ran = [i for i in range(N_CASES) if suite.cases[i].results]
    expected = sorted(ran, key=lambda i: (STATUS_ORDER[suite.cases[i].status], i))[:DETAIL_LIMIT]
    full = [c.index for c in report.cases if c.report is not None]
    assert sorted(full) == sorted(expected) and len(full) == DETAIL_LIMIT
    brief = [c for c in report.cases if not c.detailed]
    assert all(c.report is None and c.sides and c.checks for c in brief)  # the overview still has their numbers
    assert report.brief_count == len(brief) == sum(1 for c in suite.cases if c.results) - len(full)
    everything = build_suite_report(suite, detail_limit=N_CASES)
    assert everything.brief_count == 0 and all(c.detailed for c in everything.cases)


def test_small_suites_are_shown_in_full():
    report = build_suite_report(make_suite(12))
    assert report.brief_count == 0 and all(c.report is not None for c in report.cases if c.sides)


def test_long_suite_page_has_every_case_and_details_only_for_the_first(suite):
    page = render_html(suite)
    assert len(re.findall(r'<details class="case" id=', page)) == N_CASES
    assert len(re.findall(r'<details class="case-layers"', page)) == DETAIL_LIMIT
    assert page.count('class="note brief"') == build_suite_report(suite).brief_count
    assert 'id="cases-pager"' in page and 'id="case-pager"' in page
    static = render_html(suite, static=True)
    assert "cases-pager" not in static and "<script>" not in static  # no scripts: one long page


def test_summary_charts_count_every_case_beyond_many_cases(suite):
    report = build_suite_report(suite)
    assert len(report.with_target) > MANY_CASES
    views = charts.finish(charts.start_suite_charts(report))["suite"]
    assert [v.chart_id for v in views] == ["suite-emergence", "suite-target-change"]
    schema = load_schema()
    for view in views:
        validate_jsonschema(view.spec, schema)
        assert view.svg.startswith("<svg") and 'width="' in view.svg
        width = float(re.search(r'width="([\d.]+)"', view.svg).group(1))
        assert width < 1000  # not a column per case
    bars = views[0].spec["datasets"]["d"]
    for m, tag in enumerate(report.tags):
        counted = {row["x"]: row["n"] for row in bars if row["m"] == tag}
        assert sum(counted.values()) == len(report.with_target)
        never = sum(1 for c in report.with_target if c.sides[m].target_emergence is None)
        assert counted["never"] == never
        for layer in {c.sides[m].target_emergence for c in report.with_target} - {None}:
            expected = sum(1 for c in report.with_target if c.sides[m].target_emergence == layer)
            assert counted[str(layer)] == expected
    points = views[1].spec["datasets"]["d"]
    assert len(points) == sum(1 for c in report.cases if c.delta is not None)
    for point, case in zip(points, [c for c in report.cases if c.delta is not None]):
        assert point["x"] == pytest.approx(case.sides[0].target_prob, abs=5e-5)  # plot data: 4 decimals
        assert point["y"] == pytest.approx(case.sides[1].target_prob, abs=5e-5)


def test_few_cases_keep_one_mark_per_case():
    report = build_suite_report(make_suite(12))
    views = charts.finish(charts.start_suite_charts(report))["suite"]
    rows = views[0].spec["datasets"]["d"]
    assert {row["id"] for row in rows} == {c.id for c in report.with_target}  # one point per case and model


def _analysis_asdict(result):
    d = dataclasses.asdict(result)
    if d["answer"] is None:  # written only when there is one, as are the config's answer settings
        del d["answer"]
        for name in ("answer", "generate", "stop"):
            del d["config"][name]
    if not d["lens_views"]:  # written only when other lenses were read, as is the config's extra_lenses
        del d["lens_views"]
        if not d["config"].get("extra_lenses"):
            d["config"].pop("extra_lenses", None)
    return with_header(RESULT_KIND, d)


def test_plain_dict_is_dataclasses_asdict():
    for result in (make_result(), make_hostile_result()):
        assert dumps_json(result.to_dict()) == dumps_json(_analysis_asdict(result))
    comparison = make_comparison("same_tokenizer")
    old = dataclasses.asdict(comparison)
    old["results"] = [_analysis_asdict(r) for r in comparison.results]
    if old["answer_cross"] is None:  # written only with generated answers
        del old["answer_cross"]
    assert dumps_json(comparison.to_dict()) == dumps_json(with_header(COMPARISON_KIND, old))
    suite = make_suite(5)
    assert plain_dict(suite.cases[0], skip=("analysis", "comparison"))["comparison"] is None
    assert list(plain_dict(suite)) == [f.name for f in dataclasses.fields(SuiteResult)]
    assert SuiteResult.from_json(suite.to_json()) == suite


def test_large_suites_pack_fast_and_unpack_exactly(suite):
    data = suite.to_dict()
    assert len(json.dumps(data)) > 4 * 2**20  # above XZ_FAST_ABOVE_BYTES: packed at the fast preset
    assert unpack_result(json.loads(json.dumps(pack_result(data)))) == json.loads(dumps_json(data, indent=None))


def test_the_report_says_how_the_cases_ran():
    from lazarus_report.render.suite_model import execution_text
    from lazarus_report.results.suite import SuiteExecution

    suite = make_suite(6)
    assert execution_text(suite) == "" and all(row.label != "Forward passes" for row in build_suite_report(suite).facts)
    batched = dataclasses.replace(suite, execution=SuiteExecution(True, None, [1, 1]))
    assert execution_text(batched) == "batched: 1 / 1 passes for 5 cases (automatic size)"
    note = "one case at a time: --attribution needs every block's output of each case"
    single = dataclasses.replace(suite, execution=SuiteExecution(False, None, [5, 5], note))
    assert execution_text(single) == f"one case at a time (5 / 5 passes): {note}"
    facts = {row.label: row.value for row in build_suite_report(single).facts}
    assert facts["Forward passes"] == execution_text(single)
    assert str(escape(note)) in render_html(single, static=True)  # as Jinja escapes it
