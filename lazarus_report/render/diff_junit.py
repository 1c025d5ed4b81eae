"""JUnit XML for a diff: one ``<testcase>`` per case, a regression as a ``<failure>``; cases only in the baseline
(removed) or only in the candidate (added) are ``<skipped>``. Deterministic (no timestamps); strings XML 1.0
cannot carry are escaped as in ``render/junit.py``."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from ..results.diff import DiffResult
from .diff_view import build_diff_view

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _text(value: object) -> str:
    return _NOT_XML.sub(
        lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}", str(value)
    )


def render_diff_junit(d: DiffResult) -> str:
    view = build_diff_view(d)
    name = f"lazarus diff {d.candidate.name}"
    tests = len(view.rows) + len(view.added) + len(view.removed)
    summary = {
        "tests": str(tests),
        "failures": str(len(view.regressions)),
        "errors": "0",
        "skipped": str(len(view.added) + len(view.removed)),
        "time": "0",
    }
    root = ET.Element("testsuites", {"name": _text(name), **summary})
    ts = ET.SubElement(root, "testsuite", {"name": _text(name), **summary})
    props = ET.SubElement(ts, "properties")
    for key, value in (
        ("baseline", d.baseline.path or d.baseline.name),
        ("candidate", d.candidate.path or d.candidate.name),
        ("tolerance", f"{d.tolerance:g}"),
        ("fail_on", d.fail_on),
        *((f"warning.{i + 1}", w) for i, w in enumerate(d.warnings)),
    ):
        ET.SubElement(props, "property", name=_text(key), value=_text(value))
    classname = _text(f"diff.{d.candidate.name}")
    for r in sorted(view.rows, key=lambda r: r.index):
        tc = ET.SubElement(ts, "testcase", classname=classname, name=_text(d.cases[r.index].id), time="0")
        if r.regression:
            message = "; ".join(d.cases[r.index].reasons) or r.verdict
            el = ET.SubElement(tc, "failure", message=_text(message), type=_text(r.verdict))
            el.text = _text(
                f"status: {r.status}\nP(target): {r.prob} ({r.delta_text})\nrank: {r.rank}\n"
                f"top-1 from layer: {r.emergence}\nprompt: {d.cases[r.index].prompt}"
            )
    for refs, why in ((d.added, "added: not in the baseline"), (d.removed, "removed: not in the candidate")):
        for ref in refs:
            tc = ET.SubElement(ts, "testcase", classname=classname, name=_text(ref.id), time="0")
            ET.SubElement(tc, "skipped", message=_text(why))
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
