"""JUnit XML for a suite run: one ``<testcase>`` per expectation, so CI systems list them natively.

Layout (the de-facto schema GitLab, Jenkins and the GitHub JUnit actions read)::

    <testsuites name="lazarus suite NAME" tests= failures= errors= skipped= time=>
      <testsuite name="NAME" ...>
        <properties> models, roles, suite file and its sha256 </properties>
        <testcase classname="NAME.CASE_ID" name="tuned final_top1" file="suite.yaml" line="12">
          <failure message="one line" type="final_top1">expected / actual</failure>   (or <error>, <skipped>)
        </testcase>

A case that could not run at all is one ``<testcase name="run">`` with an ``<error>``. A case with an answer
(``answer:`` / ``generate:``) adds one ``answer (ROLE): ...`` line per model to each failure's text (its tokens,
sequence log-probability, where greedy decoding departs from it, or the generated text), as the Markdown does.
Model strings are data: characters XML 1.0 cannot carry (control characters, lone surrogates) are
written as ``\\xNN`` / ``\\uXXXX`` escapes; everything else is escaped by ElementTree.
Deterministic: no timestamps or host names; ``time`` is the suite's measured engine time.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from ..results.suite import ERROR, FAILED, PASSED, SKIPPED, CheckOutcome, SuiteCase, SuiteResult
from .suite_model import answer_line

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _text(value: object) -> str:
    return _NOT_XML.sub(
        lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}", str(value)
    )


def render_junit(suite: SuiteResult) -> str:
    rows: list[tuple[SuiteCase, CheckOutcome | None]] = [
        (case, check) for case in suite.cases for check in ([*case.checks] if case.checks else [None])
    ]
    drift = SuiteCase("drift", "(neutral text)", 0, None, None, suite.drift_checks)  # suite --drift: max_drift_js
    rows += [(drift, check) for check in suite.drift_checks]
    statuses = [check.status if check is not None else (ERROR if case.error else PASSED) for case, check in rows]
    summary = {
        "tests": str(len(rows)),
        "failures": str(statuses.count(FAILED)),
        "errors": str(statuses.count(ERROR)),
        "skipped": str(statuses.count(SKIPPED)),
        "time": f"{suite.timings.get('engine', 0.0):.3f}",
    }
    root = ET.Element("testsuites", {"name": _text(f"lazarus suite {suite.name}"), **summary})
    ts = ET.SubElement(root, "testsuite", {"name": _text(suite.name), **summary})
    props = ET.SubElement(ts, "properties")
    for key, value in (
        [("suite.file", suite.source), ("suite.sha256", suite.source_sha256)]
        + [(f"model.{role}", label) for role, label in zip(suite.roles, suite.labels)]
        + ([("role_checked", suite.role_checked)] if suite.role_checked else [])
    ):
        ET.SubElement(props, "property", name=_text(key), value=_text(value))
    for (case, check), status in zip(rows, statuses):
        tc = ET.SubElement(
            ts,
            "testcase",
            classname=_text(f"{suite.name}.{case.id}"),
            name=_text(check.name if check is not None else "run"),
            file=_text(suite.source),
            line=str(check.line if check is not None else case.line),
            time="0",
        )
        if status == PASSED:
            continue
        if check is None:  # the case could not run
            el = ET.SubElement(tc, "error", message=_text(case.error), type="case")
            el.text = _text(case.error)
            continue
        tag = {FAILED: "failure", ERROR: "error", SKIPPED: "skipped"}[status]
        el = ET.SubElement(tc, tag, message=_text(check.message))
        if tag != "skipped":
            el.set("type", _text(check.check))
            answers = [
                f"\nanswer ({role}): {line}"
                for role, result in zip(suite.roles, case.results)
                if (line := answer_line(result)) is not None
            ]
            el.text = _text(
                f"expected: {check.expected}\nactual: {check.actual}\ncase: {case.id}\nprompt: {case.prompt}"
                + "".join(answers)
            )
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
